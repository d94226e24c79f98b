package urlreader

import (
	"net/url"
	"strings"
	"testing"
)

// parseTarget takes URLs from untrusted plugins and redirects from
// untrusted servers: it never panics, and whatever it accepts has a
// canonical host that is not a non-canonical spelling of an IPv4 address.
//
//	go test -fuzz FuzzParseTarget ./runtime/urlreader/
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"https://example.com/a", "http://2130706433/", "http://[::ffff:127.0.0.1]/", "http://0x7f.1/", "https://a..b/", "http://127.0.0.1:80/x/../y", "http://h.test/a/..;/b", "http://h.test/a/%2e.%3b/b", "http://h.test/a/%252e%252e/b", "http://h.test/g%2Fp/f%2Fx.md/raw?ref=main", "http://h.test/a%252F..%252Fb", "http://h.test/g%2Fp/a b", "http://h.test/a/%c0%ae%c0%ae/b", "http://h.test/a/%f8%80%80%80%ae./b", "http://h.test/a/%ef%bc%8e%ef%bc%8e/b", "http://h.test/a/%ef%bc%85%ef%bc%92%ef%bd%85./b", "http://h.test/a/x%ef%bc%85%ef%bc%92%ef%bc%a6../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		tg, err := parseTarget(raw)
		if err != nil {
			return
		}
		if _, ok := parseLegacyIPv4(tg.host); ok && !strings.Contains(tg.host, ".") {
			t.Fatalf("%q accepted with numeric host %q", raw, tg.host)
		}
		if tg.u.User != nil || tg.host == "" {
			t.Fatalf("%q accepted: %+v", raw, tg)
		}
		// No segment is a dot segment, not even once a server strips
		// its ";parameters" (Tomcat, Spring) or decodes it again: a
		// path prefix holds.
		// A server that decodes twice reads ..%252F's pieces as segments.
		for _, seg := range strings.Split(tg.path, "/") {
			twice, _ := url.PathUnescape(seg)
			for _, s := range append([]string{seg}, strings.Split(twice, "/")...) {
				if s, _, _ = strings.Cut(s, ";"); s == "." || s == ".." {
					t.Fatalf("%q accepted with dot segment in path %q", raw, tg.path)
				}
				// Nor as a lax server reads it: without NULs, overlong
				// UTF-8 decoded, in NFKC, then percent-decoded.
				if l := lax(s); l != s {
					for _, p := range strings.Split(unescapeLax(l), "/") {
						if p, _, _ = strings.Cut(p, ";"); p == "." || p == ".." {
							t.Fatalf("%q accepted with segment %q, a dot segment as %q to lax servers", raw, s, l)
						}
					}
				}
			}
		}
		// What is sent holds an encoded slash (once or twice) only where
		// the target says so, for check to refuse it under a prefix; and
		// no backslash.
		sent := strings.ToLower(tg.u.EscapedPath())
		if !tg.encSlash && (strings.Contains(sent, "%2f") || strings.Contains(sent, "%252f")) {
			t.Fatalf("%q accepted with an encoded slash in %q not noted", raw, sent)
		}
		if strings.Contains(sent, "%5c") || strings.Contains(sent, "\\") {
			t.Fatalf("%q accepted with a backslash in %q", raw, sent)
		}
	})
}
