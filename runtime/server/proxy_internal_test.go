package server

import (
	"bytes"
	"net/netip"
	"testing"
)

// parseForwarded reads RFC 7239's lists: quoted values (IPv6 in brackets,
// with a port), parameters in any case, whitespace around ',' and ';',
// empty elements and pairs; anything else refuses the line.
func TestParseForwarded(t *testing.T) {
	for _, c := range []struct {
		line string
		want []string // each element's address ("-": names none); nil: refused
		raw  []string
	}{
		{`for=192.0.2.60;proto=http;by=203.0.113.43`, []string{"192.0.2.60:0"}, []string{`for=192.0.2.60;proto=http;by=203.0.113.43`}},
		{`For="[2001:db8:cafe::17]:4711"`, []string{"[2001:db8:cafe::17]:4711"}, nil},
		{`for="[2001:db8:cafe::17]"`, []string{"[2001:db8:cafe::17]:0"}, nil},
		{`for=192.0.2.43, for=198.51.100.17`, []string{"192.0.2.43:0", "198.51.100.17:0"}, []string{"for=192.0.2.43", "for=198.51.100.17"}},
		{` for=192.0.2.43 ;  proto=https  ,, ;, FOR=198.51.100.17 `, []string{"192.0.2.43:0", "-", "198.51.100.17:0"}, []string{"for=192.0.2.43 ;  proto=https", ";", "FOR=198.51.100.17"}},
		{`for=unknown, for=_hidden, for="_gazonk", proto=https`, []string{"-", "-", "-", "-"}, nil},
		{`for="unknown:4711"`, []string{"-"}, nil},
		{`for="192.0.2.43:_p1"`, []string{"192.0.2.43:0"}, nil},
		{`for="[2001:db8::1]:_p1"`, []string{"[2001:db8::1]:0"}, nil},
		{`for=192.0.2.43:4711`, []string{"192.0.2.43:4711"}, nil},                 // unquoted, as naive proxies write it
		{`for=2001:db8::1`, []string{"[2001:db8::1]:0"}, nil},                     // the same
		{`for="[fe80::1%eth0]"`, []string{"[fe80::1]:0"}, nil},                    // a zone is dropped
		{`for="a\"b\\c";x=",;"`, []string{"-"}, []string{`for="a\"b\\c";x=",;"`}}, // quoted pairs, separators quoted
		{`for="192.0.2.\43"`, []string{"192.0.2.43:0"}, nil},
		{`forx=1;fo=2;f_r=3;FoR=192.0.2.43`, []string{"192.0.2.43:0"}, nil}, // only "for" is read
		{`for0=00`, []string{"-"}, nil},
		{`for=192.0.2.43;x="`, nil, nil},  // unterminated
		{`for=192.0.2.43;x="\`, nil, nil}, // the same, escaped
		{`for=192.0.2.43;for=192.0.2.44`, nil, nil},
		{`for=192.0.2.43 x=1`, nil, nil},
		{`for="192.0.2.43"x`, nil, nil},
		{`for=`, nil, nil},
		{`for`, nil, nil},
		{`=1`, nil, nil},
		{`for="a` + "\x01" + `"`, nil, nil},
		{`for=a"b"`, nil, nil},
		{``, []string{}, nil},
	} {
		elems, ok := parseForwarded([]byte(c.line))
		if !ok {
			if c.want != nil {
				t.Errorf("%q refused", c.line)
			}
			continue
		}
		if c.want == nil {
			t.Errorf("%q read as %d elements, want refused", c.line, len(elems))
			continue
		}
		var got []string
		for _, e := range elems {
			if a, ok := e.addr(); ok {
				got = append(got, a.String())
			} else {
				got = append(got, "-")
			}
		}
		if len(got) != len(c.want) {
			t.Errorf("%q: %q, want %q", c.line, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%q: %q, want %q", c.line, got, c.want)
				break
			}
		}
		for i, r := range c.raw {
			if string(elems[i].raw) != r {
				t.Errorf("%q: element %d is %q, want %q", c.line, i, elems[i].raw, r)
			}
		}
	}
}

// FuzzParseForwarded: whatever a client writes before the element a
// trusted proxy appends (", for=..." on the same line), the line is
// refused or its last element is the proxy's, naming the address it
// wrote: no quote or escape of the client's swallows it. And the trusted
// chain greenroom gives the guest, the elements joined again, reads as
// the same elements.
func FuzzParseForwarded(f *testing.F) {
	for _, s := range []string{``, `for=198.51.100.9`, `for=198.51.100.9;x="`, `x="\`, `for="[2001:db8::1]`,
		`for=1.2.3.4;host="a,b"`, `a=b;;c=d,,`, `for=_x;x="\""`, `"`, `;`, `,`} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(3))
	}
	appended := []struct {
		elem string
		addr netip.AddrPort
	}{
		{`for=203.0.113.7`, netip.MustParseAddrPort("203.0.113.7:0")},
		{`for="[2001:db8:cafe::17]:4711"`, netip.MustParseAddrPort("[2001:db8:cafe::17]:4711")},
		{`for="203.0.113.7:80";proto=https;host="example.com"`, netip.MustParseAddrPort("203.0.113.7:80")},
		{`proto=https;for="[2001:db8::2]"`, netip.MustParseAddrPort("[2001:db8::2]:0")},
	}
	f.Fuzz(func(t *testing.T, client []byte, which uint8) {
		elems, ok := parseForwarded(client)
		if ok {
			// The guest's line: the elements joined.
			var joined [][]byte
			for _, e := range elems {
				joined = append(joined, e.raw)
			}
			again, ok := parseForwarded(bytes.Join(joined, []byte(", ")))
			if !ok || len(again) != len(elems) {
				t.Fatalf("%q: joined again, %d elements (ok %v), want %d", client, len(again), ok, len(elems))
			}
			for i := range again {
				a1, ok1 := elems[i].addr()
				a2, ok2 := again[i].addr()
				if !bytes.Equal(again[i].raw, elems[i].raw) || a1 != a2 || ok1 != ok2 {
					t.Fatalf("%q: element %d %q (%v) joined again reads %q (%v)", client, i, elems[i].raw, a1, again[i].raw, a2)
				}
			}
		}
		p := appended[int(which)%len(appended)]
		line := append(append(bytes.Clone(client), ", "...), p.elem...)
		elems, ok = parseForwarded(line)
		if !ok {
			return
		}
		if len(elems) == 0 {
			t.Fatalf("%q: no element", line)
		}
		last := elems[len(elems)-1]
		if a, ok := last.addr(); !ok || a != p.addr || string(last.raw) != p.elem {
			t.Fatalf("%q: last element %q names %v (%v), want %q naming %v", line, last.raw, a, ok, p.elem, p.addr)
		}
	})
}
