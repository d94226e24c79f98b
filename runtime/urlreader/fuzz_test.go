package urlreader

import (
	"net/url"
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"
)

// parseTarget takes URLs from untrusted plugins and redirects from
// untrusted servers: it never panics, and whatever it accepts has a
// canonical host that is not a non-canonical spelling of an IPv4 address.
//
//	go test -fuzz FuzzParseTarget ./runtime/urlreader/
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"https://example.com/a", "http://2130706433/", "http://[::ffff:127.0.0.1]/", "http://0x7f.1/", "https://a..b/", "http://127.0.0.1:80/x/../y", "http://h.test/a/..;/b", "http://h.test/a/%2e.%3b/b", "http://h.test/a/%252e%252e/b", "http://h.test/g%2Fp/f%2Fx.md/raw?ref=main", "http://h.test/a%252F..%252Fb", "http://h.test/g%2Fp/a b", "http://h.test/a/%c0%ae%c0%ae/b", "http://h.test/a/%f8%80%80%80%ae./b", "http://h.test/a/%ef%bc%8e%ef%bc%8e/b", "http://h.test/a/%ef%bc%85%ef%bc%92%ef%bd%85./b", "http://h.test/a/x%ef%bc%85%ef%bc%92%ef%bc%a6../b",
		"http://h.test/a/%25252e%25252e/b", "http://h.test/a/x%25252F..%25252Fb", "http://h.test/a/a%25252Fb", "http://h.test/a/a%25255Cb", "http://h.test/a/%25u002e%25u002e/b",
		"http://h.test/a/%" + strings.Repeat("25", 9) + "41", "http://h.test/a/.%e2%80%8b./b", "http://h.test/a/.%c2%ad./b", "http://h.test/a/..%09/b", "http://h.test/a/..%20/b",
		"http://h.test/a/.../b", "http://h.test/a/%e3%80%82%e3%80%82/b", "http://h.test/a/..%e2%88%95b", "http://h.test/a/..%e2%81%84b", "http://h.test/a/..%e2%88%96b",
		"http://h.test/a/..%c2%a5b", "http://h.test/a/%f0%8f%bc%8e%f0%8f%bc%8e/b", "http://h.test/a/..%f8%80%82%88%95b", "http://h.test/a/caf%c3%a9/%e4%b8%ad%e6%96%87/50%25off"} {
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
		// Nor, unless it is read only for a whole host, as a server
		// reads it that decodes it up to nine times, in NFKC or not,
		// drops invisible characters, trims spaces and dots, and takes
		// U+2215, U+2044, U+2216 and ¥ for separators; and a slash
		// found so is an encoded slash.
		if tg.wholeOnly == "" {
			for _, seg := range strings.Split(tg.path, "/") {
				s := seg
				for level := 0; level < 10; level++ {
					for _, r := range []string{s, norm.NFKC.String(s)} {
						if level > 0 && strings.Contains(r, "/") && !tg.encSlash {
							t.Fatalf("%q accepted with segment %q, %q after %d more decodings, its slash not noted", raw, seg, r, level)
						}
						r = strings.NewReplacer("\u200b", "", "\ufeff", "", "\u00ad", "", "\t", "", "\n", "", "\r", "", " ", "", "\x00", "", "\u3002", ".").Replace(r)
						for _, p := range strings.FieldsFunc(r, func(c rune) bool { return strings.ContainsRune("/\\\u2215\u2044\u2216\u00a5", c) }) {
							if p, _, _ = strings.Cut(p, ";"); p != "" && strings.Trim(p, ".") == "" {
								t.Fatalf("%q accepted with segment %q, %q after %d more decodings, its piece %q a dot segment to some server", raw, seg, r, level, p)
							}
						}
					}
					s = unescapeLax(s)
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
