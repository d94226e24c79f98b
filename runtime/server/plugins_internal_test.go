package server

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// resolveDotsByList is resolveDots as first written (a list of segments):
// the reference the one-pass version must agree with.
func resolveDotsByList(p []byte) ([]byte, bool) {
	segs := bytes.Split(bytes.ReplaceAll(p[1:], []byte("\\"), []byte("/")), []byte("/"))
	out := make([][]byte, 0, len(segs))
	trailing := false
	for i, seg := range segs {
		last := i == len(segs)-1
		switch strings.ToLower(string(seg)) {
		case "..", ".%2e", "%2e.", "%2e%2e":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			trailing = last
		case ".", "%2e":
			trailing = last
		default:
			out = append(out, seg)
		}
	}
	res := append([]byte{'/'}, bytes.Join(out, []byte("/"))...)
	if trailing && len(out) > 0 {
		res = append(res, '/')
	}
	return res, !bytes.Equal(res, p)
}

func TestResolveDotsAgreesWithSegmentList(t *testing.T) {
	parts := []string{"/", "\\", ".", "..", "%2e", "%2E", "%2", "a", "bc", "...", ".a"}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		var b strings.Builder
		b.WriteByte('/')
		for n := rng.IntN(8); n > 0; n-- {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		p := []byte(b.String())
		got, changed := resolveDots(p)
		want, wantChanged := resolveDotsByList(p)
		if !bytes.Equal(got, want) || changed != wantChanged {
			t.Fatalf("resolveDots(%q) = %q, %v; want %q, %v", p, got, changed, want, wantChanged)
		}
	}
}

// A guest's Location costs the host a few copies of it at most, however
// it is made up (it once cost 53 copies: 848 MB for a 16 MB one); the
// server's header_limit bounds it besides.
func TestMountLocationAllocatesLittle(t *testing.T) {
	for _, v := range []string{
		"/." + strings.Repeat("/", 4<<20),
		strings.Repeat("/a", 2<<20),
		"/" + strings.Repeat("%2E./", 1<<20),
		" " + strings.Repeat("a\\", 2<<20) + "\t",
	} {
		loc := []byte(v)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		got, ok, err := mountLocation("p", []byte("/x/y"), []byte("Location"), loc, 1<<30)
		runtime.ReadMemStats(&after)
		if err != nil || !ok || !bytes.HasPrefix(got, []byte("/api/p/")) {
			t.Fatalf("%.20q...: %.40q %v %v", v, got, ok, err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(5*len(loc)) {
			t.Errorf("%.20q... (%d bytes): allocated %d bytes, %.1f times its size", v, len(loc), alloc, float64(alloc)/float64(len(loc)))
		}
	}
}

// One longer than the limit, that would be mounted, is refused; one that
// passes as it is (an absolute URL) is not the host's to bound.
func TestMountLocationLimit(t *testing.T) {
	long := "/" + strings.Repeat("a", 100)
	if _, _, err := mountLocation("p", []byte("/"), []byte("Location"), []byte(long), 100); err == nil || !strings.Contains(err.Error(), "server.header_limit") {
		t.Errorf("a %d-byte path with a 100-byte limit: %v", len(long), err)
	}
	if _, _, err := mountLocation("p", []byte("/"), []byte("Location"), []byte(long[:100]), 100); err != nil {
		t.Errorf("a 100-byte path with a 100-byte limit: %v", err)
	}
	abs := "https://elsewhere.test" + long
	if _, ok, err := mountLocation("p", []byte("/"), []byte("Location"), []byte(abs), 100); ok || err != nil {
		t.Errorf("an absolute URL: %v %v", ok, err)
	}
}

// The host drops a guest's header whose value holds a control character
// (a line break would split the response; an escape reaches a terminal),
// whatever the guest's SDK did with it first.
func TestForwardResponseHeaderRefusesControlCharacters(t *testing.T) {
	for _, v := range []string{"a\r\nInjected: 1", "a\nb", "a\rb", "\x1b[2J", "a\x00b", "a\x7fb"} {
		if forwardResponseHeader([]byte("X-Test"), []byte(v)) {
			t.Errorf("%q forwarded", v)
		}
	}
	for _, v := range []string{"plain", "a\tb", "", "a  Injected: 1"} {
		if !forwardResponseHeader([]byte("X-Test"), []byte(v)) {
			t.Errorf("%q dropped", v)
		}
	}
}
