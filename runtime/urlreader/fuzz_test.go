package urlreader

import (
	"strings"
	"testing"
)

// parseTarget takes URLs from untrusted plugins and redirects from
// untrusted servers: it never panics, and whatever it accepts has a
// canonical host that is not a non-canonical spelling of an IPv4 address.
//
//	go test -fuzz FuzzParseTarget ./runtime/urlreader/
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"https://example.com/a", "http://2130706433/", "http://[::ffff:127.0.0.1]/", "http://0x7f.1/", "https://a..b/", "http://127.0.0.1:80/x/../y"} {
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
	})
}
