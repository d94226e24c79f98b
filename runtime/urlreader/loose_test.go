package urlreader

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// Under a path prefix, a segment that servers which decode the path more
// often, or read it more loosely, than the checks that refuse a path
// whatever the rules take for a dot segment is refused with ERR_DENIED,
// naming the rule and the grant: encoded three times or more
// (%25252e%25252e, and %25252F an encoded slash as %252F is), with
// invisible characters, white space or more dots that a server trims or
// drops (.%e2%80%8b., ..%20, ...), in look-alike dots or beside
// look-alike slashes that Windows' best-fit conversion or IDNA maps
// (U+3002, U+2215, U+2044, U+2216, ¥), in overlong UTF-8 of non-ASCII
// characters, or in IIS's %u002e. They were all read, and could climb
// out of the prefix on such a server. Where the rule and the grant cover
// the whole host they are read as before, and ordinary names (%25 once,
// café, Chinese, a look-alike inside a name) are read under a prefix.
func TestPathRuleLooseDotSegments(t *testing.T) {
	r, err := New(mustConfig(t, `
[reading]
allow = [
  { host = "host.test", scheme = "http", paths = ["/allowed/"] },
  { host = "whole.test", scheme = "http" },
]
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	prefix := r.For("docs", []string{"host.test/allowed/"})
	whole := r.For("docs", []string{"whole.test"})
	pathGrant := r.For("docs", []string{"whole.test/allowed/"})
	wholeGrant := r.For("docs", []string{"host.test"})

	ordinary := []string{
		"/allowed/x", "/allowed/50%25off.md", "/allowed/100%25", "/allowed/%2541", "/allowed/%25zz",
		"/allowed/caf%c3%a9", "/allowed/cafe%cc%81", "/allowed/caf\u00e9.md",
		"/allowed/%e4%b8%ad%e6%96%87/%e8%af%b4%e6%98%8e%e3%80%82md", "/allowed/\u65e5\u672c\u8a9e/\u8aac\u660e.md",
		"/allowed/file%e2%80%a4txt", "/allowed/a..b", "/allowed/.hidden", "/allowed/v1.2.3/a...b", "/allowed/..x",
		"/allowed/%c2%a5100", "/allowed/%c2%bd-cup.md", "/allowed/a%e2%88%95b", "/allowed/a%e2%81%84b", "/allowed/a%e2%88%96b",
		"/allowed/a%20b", "/allowed/%20", "/allowed/%e2%80%8bx", "/allowed/x%c2%ad", "/allowed/%e2%80%a6x",
		"/allowed/%25uface", "/allowed/a%252Ub", "/allowed/x;y", "/allowed/%25%25", "/allowed/C++", "/allowed/a+b", "/allowed/a:b", "/allowed/x..:y",
		"/allowed/%" + strings.Repeat("25", 8) + "41", // "A" after nine decodings
	}
	loose := []string{
		// Percent-encoded three times or more.
		"/allowed/%25252e%25252e/x",
		"/allowed/%25252E%25252E/x",
		"/allowed/.%25252e/x",
		"/allowed/%2525252e%2525252e/x",
		"/allowed/%252525252e%252525252e/x",
		"/allowed/x%25252F..%25252Fy",
		"/allowed/..%25252Fx",
		"/allowed/%25252e%25252e%25253Bx/y",
		"/allowed/x%25255C..",
		"/allowed/%" + strings.Repeat("25", 8) + "2e./x", // "." after nine decodings
		// IIS's %u escapes, as a server that decodes twice reads them.
		"/allowed/%25u002e%25u002e/x",
		"/allowed/%25U002E./x",
		"/allowed/x%25u2215..",
		// Invisible characters, white space, more dots: trimmed or
		// dropped by some servers (Windows trims trailing dots and
		// spaces), they leave a dot segment.
		"/allowed/.%e2%80%8b./x",
		"/allowed/..%e2%80%8b/x",
		"/allowed/.%ef%bb%bf./x",
		"/allowed/.%c2%ad./x",
		"/allowed/..%e2%81%a0/x",
		"/allowed/..%e2%80%8e/x",
		"/allowed/.%cc%81./x",
		"/allowed/..%09/x",
		"/allowed/..%0a/x",
		"/allowed/..%0d/x",
		"/allowed/..%0b/x",
		"/allowed/..%7f/x",
		"/allowed/..%20/x",
		"/allowed/%20../x",
		"/allowed/.%20./x",
		"/allowed/..%c2%a0/x",
		"/allowed/..%e3%80%80/x",
		"/allowed/.../x",
		"/allowed/..../x",
		"/allowed/..%ff/x",
		"/allowed/..%2509/x",
		"/allowed/..%252520/x",
		"/allowed/...;x/y",
		"/allowed/..+/x",
		"/allowed/.%2B./x",
		"/allowed/..::$INDEX_ALLOCATION/x",
		"/allowed/..%3A%3A$INDEX_ALLOCATION/x",
		// Look-alike dots, and dots beside look-alike slashes and
		// backslashes (best-fit: U+2215, U+2044, U+29F8, U+2216, U+29F5,
		// ¥ in code page 932, ₩ in 949).
		"/allowed/%e3%80%82%e3%80%82/x",
		"/allowed/%ef%bd%a1%ef%bd%a1/x",
		"/allowed/%ef%b8%92./x",
		"/allowed/%e2%80%a6/x",
		"/allowed/%ef%b8%99/x",
		"/allowed/..%e2%88%95x",
		"/allowed/x%e2%88%95..%e2%88%95y",
		"/allowed/..%e2%81%84x",
		"/allowed/..%e2%a7%b8x",
		"/allowed/..%e2%88%96x",
		"/allowed/..%e2%a7%b5x",
		"/allowed/..%c2%a5x",
		"/allowed/..%e2%82%a9x",
		"/allowed/..%ef%bf%a5x",
		"/allowed/..%252525e2%25252588%25252595x",
		// Overlong UTF-8 of non-ASCII dots and slashes: U+FF0E and
		// U+3002 in four bytes, U+2215 in four and in five.
		"/allowed/%f0%8f%bc%8e%f0%8f%bc%8e/x",
		"/allowed/%f0%83%80%82%f0%83%80%82/x",
		"/allowed/..%f0%82%88%95x",
		"/allowed/..%f8%80%82%88%95x",
		"/allowed/%2525f0%25258f%2525bc%25258e./x",
	}
	check := func(p *PluginReader, host, path string) error {
		_, err := p.check("http://" + host + path)
		return err
	}
	for _, path := range ordinary {
		if err := check(prefix, "host.test", path); err != nil {
			t.Errorf("%s: ordinary path refused under a prefix: %v", path, err)
		}
	}
	const why = ", read only where both the allow rule and the plugin's grant cover the whole host: under a path prefix a server could read it out of the prefix; "
	for _, path := range loose {
		// Refused under a prefix: the rule's, the grant's, or both.
		for _, tc := range []struct {
			p     *PluginReader
			host  string
			names string
		}{
			{prefix, "host.test", `reading.allow[0] allows it only under its paths and the grant "host.test/allowed/" in plugins.docs.capabilities.urlreader covers a path prefix. To read it, the operator gives host host.test an allow rule without paths and grants it whole (plugins.docs.capabilities.urlreader = ["host.test"])`},
			{wholeGrant, "host.test", `reading.allow[0] allows it only under its paths. To read it`},
			{pathGrant, "whole.test", `; the grant "whole.test/allowed/" in plugins.docs.capabilities.urlreader covers a path prefix. To read it`},
		} {
			err := check(tc.p, tc.host, path)
			if err == nil || KindOf(err) != Denied || !strings.Contains(err.Error(), why) || !strings.Contains(err.Error(), tc.names) {
				t.Errorf("%s%s: err = %v, want it denied under a prefix naming %s", tc.host, path, err, tc.names)
			}
		}
		// Read as before where the rule and the grant cover the whole
		// host.
		if err := check(whole, "whole.test", path); err != nil {
			t.Errorf("whole.test%s: refused for a whole host: %v", path, err)
		}
	}
	// An encoded slash encoded three times or more is one as %252F is:
	// read for a whole host, and sent as written; refused under a prefix
	// as an encoded slash.
	for _, path := range []string{"/allowed/a%25252Fb", "/allowed/a%2525252fb", "/allowed/a%2525u002fb", "/allowed/a%2525f0%252580%252580%2525afb"} {
		tg, err := whole.check("http://whole.test" + path)
		if err != nil || tg.u.EscapedPath() != path {
			t.Errorf("whole.test%s: %+v, %v, want it read as written", path, tg, err)
		}
		if err := check(prefix, "host.test", path); err == nil || KindOf(err) != Denied || !strings.Contains(err.Error(), "refused: the path holds an encoded slash (%2F, or %252F encoded twice or more)") {
			t.Errorf("host.test%s: err = %v, want it denied as an encoded slash", path, err)
		}
	}
	// A backslash encoded three times or more: read for a whole host,
	// refused under a prefix (twice or less it is refused everywhere).
	if err := check(prefix, "host.test", "/allowed/a%25255Cb"); err == nil || KindOf(err) != Denied || !strings.Contains(err.Error(), "refused: the path holds a backslash that servers which decode it again or read it loosely find") {
		t.Errorf("backslash encoded three times: err = %v", err)
	}
	if err := check(whole, "whole.test", "/allowed/a%25255Cb"); err != nil {
		t.Errorf("backslash encoded three times, whole host: %v", err)
	}
	// Still encoded after nine decodings: read only for a whole host.
	deep := "/allowed/%" + strings.Repeat("25", 9) + "41"
	if err := check(prefix, "host.test", deep); err == nil || !strings.Contains(err.Error(), "a segment still percent-encoded after 9 decodings") {
		t.Errorf("%s: err = %v, want it denied as too deep", deep, err)
	}
	if err := check(whole, "whole.test", deep); err != nil {
		t.Errorf("%s, whole host: %v", deep, err)
	}
}

// pctAll percent-encodes every byte of s.
func pctAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02x", s[i])
	}
	return b.String()
}

// pctPct percent-encodes the percent signs of s.
func pctPct(s string) string { return strings.ReplaceAll(s, "%", "%25") }

// Dot segments spelled at random from the spellings above, each dot its
// own way, encoded once more at random, with invisible characters
// between, beside a slash or a look-alike, and the whole segment
// percent-encoded up to six times: none is read under a prefix.
func TestPathRuleLooseDotSegmentsGenerated(t *testing.T) {
	r, err := New(mustConfig(t, "[reading]\nallow = [{ host = \"host.test\", scheme = \"http\", paths = [\"/allowed/\"] }]\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := r.For("docs", []string{"host.test/allowed/"})
	dots := []string{".", "\u2024", "\uff0e", "\u3002", "\ufe52", "\xc0\xae", "\xe0\x80\xae", "\xf0\x8f\xbc\x8e", "\xf0\x83\x80\x82", "%2e", "%u002e", "\uff05\uff12\uff45"}
	ign := []string{"", "", "", "\u200b", "\ufeff", "\u00ad", "\t", " ", "\x00", "\u2060", "\u200e"}
	rng := rand.New(rand.NewPCG(1, 2))
	fails := 0
	for i := 0; i < 5000 && fails < 20; i++ {
		var seg strings.Builder
		n := 1 + rng.IntN(3)
		for j := 0; j < n; j++ {
			d := dots[rng.IntN(len(dots))]
			// This dot encoded up to three more times.
			k := rng.IntN(4)
			for ; k > 0; k-- {
				if rng.IntN(2) == 0 {
					d = pctAll(d)
				} else {
					d = pctPct(d)
				}
			}
			seg.WriteString(d)
			seg.WriteString(ign[rng.IntN(len(ign))])
		}
		s := seg.String()
		if rng.IntN(3) == 0 {
			s = "x" + []string{"\u2215", "\u2044", "\u2216", "\u00a5", "/", "\\"}[rng.IntN(6)] + s
		}
		// The segment encoded once, and up to five more times.
		k := rng.IntN(6)
		s = pctAll(s)
		for ; k > 0; k-- {
			s = pctPct(s)
		}
		u := "http://host.test/allowed/" + s + "/x"
		if len(u) > maxURL {
			continue
		}
		if _, err := p.check(u); err == nil {
			fails++
			t.Errorf("read: %s", u)
		}
	}
}

// The same rule on real reads: a whole host reads such a path, and the
// server gets it as written; under a prefix, read directly, as a
// redirect from a whole host, or hop by hop by the plugin's client, it
// is refused and nothing reaches the server.
func TestLooseDotSegmentsReadAndRedirected(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Host+" "+r.RequestURI)
		mu.Unlock()
		if to := r.URL.Query().Get("to"); to != "" {
			w.Header().Set("Location", to)
			w.WriteHeader(http.StatusFound)
			return
		}
		fmt.Fprint(w, "ok")
	})
	r := reader(t, `
[reading]
allow = [
  { host = "whole.test", scheme = "http" },
  { host = "prefix.test", scheme = "http", paths = ["/allowed/"] },
]
`, mapResolver{"whole.test": {"127.0.0.1"}, "prefix.test": {"127.0.0.1"}}, srv)
	p := r.For("p", []string{"whole.test", "prefix.test/allowed/"})
	at := func(host string) string { return "http://" + host + ":" + srv.port() }
	seenSince := func(n int) []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen[n:]...)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
	for _, path := range []string{"/allowed/%25252e%25252e/x", "/allowed/.%e2%80%8b./x", "/allowed/..%20/x", "/allowed/.../x", "/allowed/..%e2%88%95x", "/allowed/%e3%80%82%e3%80%82/x"} {
		n := count()
		if resp, err := read(p, at("whole.test")+path); err != nil || string(resp.Body) != "ok" {
			t.Errorf("whole.test%s: %+v, %v", path, resp, err)
		} else if got := seenSince(n); len(got) != 1 || got[0] != "whole.test:"+srv.port()+" "+path {
			t.Errorf("whole.test%s: server saw %q", path, got)
		}
		n = count()
		const why = "take for a dot segment"
		_, err := read(p, at("prefix.test")+path)
		wantErr(t, err, Denied, why, "reading.allow[1] allows it only under its paths")
		_, err = p.Read(t.Context(), Request{URL: at("prefix.test") + path, Hop: true})
		wantErr(t, err, Denied, why)
		from := at("whole.test") + "/r?to=" + url.QueryEscape(at("prefix.test")+path)
		_, err = read(p, from)
		wantErr(t, err, Denied, "redirect from "+from+": ", why)
		if got := seenSince(n); len(got) != 1 || !strings.HasPrefix(got[0], "whole.test:"+srv.port()+" /r?to=") {
			t.Errorf("prefix.test%s: server saw %q", path, got)
		}
	}
}
