package urlreader

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/config"
)

func mustConfig(t testing.TB, text string) *config.Config {
	t.Helper()
	cfg, err := config.Read([]config.Source{{Name: "config.toml", Data: []byte(text)}}, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// Every spelling of an internal address that some resolver or URL parser
// reads as that address is refused before anything is resolved or dialled.
func TestHostSpellingsRefused(t *testing.T) {
	cases := []struct {
		url  string
		kind Kind
		want string
	}{
		{"http://2130706433/", Denied, "non-canonical spelling of the IPv4 address 127.0.0.1"},
		{"http://0177.0.0.1/", Denied, "127.0.0.1"},
		{"http://0x7f.0.0.1/", Denied, "127.0.0.1"},
		{"http://0X7F.0.0.1/", Denied, "127.0.0.1"},
		{"http://0x7f000001/", Denied, "127.0.0.1"},
		{"http://017700000001/", Denied, "127.0.0.1"},
		{"http://127.1/", Denied, "127.0.0.1"},
		{"http://127.0.1/", Denied, "127.0.0.1"},
		{"http://127.000.000.001/", Denied, "127.0.0.1"},
		{"http://0/", Denied, "0.0.0.0"},
		{"http://0251.0376.0251.0376/", Denied, "169.254.169.254"},
		{"http://2852039166/", Denied, "169.254.169.254"},
		{"http://[::ffff:127.0.0.1]/", Denied, "IPv6 spelling of the IPv4 address 127.0.0.1"},
		{"http://[::ffff:7f00:1]/", Denied, "127.0.0.1"},
		{"http://[0:0:0:0:0:ffff:a9fe:a9fe]/", Denied, "169.254.169.254"},
		{"http://[::127.0.0.1]/", Denied, "127.0.0.1"},
		{"http://[fe80::1%25eth0]/", Invalid, "zones are refused"},
		{"http://1.2.3.999/", Invalid, "ends in a number but is not an IPv4 address"},
		{"http://08.0.0.1/", Invalid, "ends in a number"},
		{"http://user:pw@example.com/", Denied, "credentials in the URL are refused"},
		{"ftp://example.com/", Invalid, `scheme "ftp" is not supported`},
		{"//example.com/x", Invalid, "not an absolute URL"},
		{"http:///x", Invalid, "no host"},
		{"http://exämple.com/", Invalid, "not an ASCII host name"},
		// Unicode letters whose lower case is ASCII: the Kelvin sign
		// (U+212A) is "k" and the capital I with a dot (U+0130) "i" to
		// strings.ToLower, which made these hosts kiwi.example.com and
		// raw.githubusercontent.com, read (with the integration's token)
		// where their name, to IDNA, is another host.
		{"https://\u212aiwi.example.com/", Invalid, "not an ASCII host name"},
		{"https://%E2%84%AAiwi.example.com/", Invalid, "not an ASCII host name"},
		{"https://raw.g\u0130thubusercontent.com/backstage/", Invalid, "not an ASCII host name"},
		{"https://\u0130nternal.example.com/", Invalid, "not an ASCII host name"},
		{"http://a..b/", Invalid, "empty label"},
		{"https://example.com/a/../b", Invalid, "dot segments"},
		{"https://example.com/a/%2e%2e/b", Invalid, "dot segments"},
		// A segment whose part before its first ';' is a dot segment:
		// Tomcat, Spring and Jetty strip ";params" and read it as one.
		{"http://host.test/allowed/..;/x", Invalid, "dot segments"},
		{"http://host.test/allowed/..;jsessionid=1/x", Invalid, "dot segments"},
		{"http://host.test/allowed/.;/x", Invalid, "dot segments"},
		{"http://host.test/allowed/..;", Invalid, "dot segments"},
		{"http://host.test/allowed/%2e%2e;/x", Invalid, "dot segments"},
		{"http://host.test/allowed/.%2E;x/y", Invalid, "dot segments"},
		{"http://host.test/allowed/..%3b/x", Invalid, "dot segments"},
		{"http://host.test/allowed/..%3B/x", Invalid, "dot segments"},
		{"http://host.test/allowed/..;a;b/x", Invalid, "dot segments"},
		{"https://example.com/a%5cb", Invalid, "backslashes"},
		{"https://example.com/a%5Cb", Invalid, "backslashes"},
		// An encoded slash is parsed (check refuses it under a path
		// prefix), but not a dot segment it makes.
		{"https://example.com/a%2F..%2Fb", Invalid, "dot segments"},
		{"https://example.com/a%2f%2e%2e%2fb", Invalid, "dot segments"},
		// Go would send these with %2F decoded to "/".
		{"https://example.com/g%2Fp/a b.md", Invalid, "an encoded slash (%2F) beside characters left unescaped"},
		{"https://example.com/g%2fp/a{b}|\u00e9", Invalid, "an encoded slash (%2F) beside characters left unescaped"},
		// Encoded twice: a server, or a proxy before it, that decodes
		// twice reads these as "..", "/" and "\\".
		{"http://host.test/allowed/%252e%252e/x", Invalid, "dot segments"},
		{"http://host.test/allowed/%252E./x", Invalid, "dot segments"},
		{"http://host.test/allowed/..%253b/x", Invalid, "dot segments"},
		{"http://host.test/allowed/%252e%252e%253Bx/y", Invalid, "dot segments"},
		{"http://host.test/allowed/..%252Fx", Invalid, "dot segments"},
		{"http://host.test/allowed/%252f../x", Invalid, "dot segments"},
		{"http://host.test/allowed/a%252F%252e%252e%252Fx", Invalid, "dot segments"},
		{"http://host.test/allowed/..%255Cx", Invalid, "backslashes"},
		{"https://example.com:99999/", Invalid, "bad port"},
		{"https://ex%61mple.com/", Invalid, "invalid URL escape"},
		{"https://example.com/" + strings.Repeat("a", maxURL), Invalid, "over the limit"},
	}
	for _, tc := range cases {
		_, err := parseTarget(tc.url)
		if err == nil || KindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v (%v), want %v containing %q", tc.url, err, KindOf(err), tc.kind, tc.want)
		}
	}
	for raw, want := range map[string]string{
		"HTTPS://Example.COM./a?b=1#frag": "https://example.com/a?b=1",
		"http://127.0.0.1:8080/x":         "http://127.0.0.1:8080/x",
		"https://[2001:db8::1]/":          "https://[2001:db8::1]/",
		// ';' outside a dot segment is an ordinary character.
		"https://example.com/a;v=1/b":  "https://example.com/a;v=1/b",
		"https://example.com/a/...;/b": "https://example.com/a/...;/b",
		"https://example.com/a/x..;/b": "https://example.com/a/x..;/b",
		"https://example.com/a/;../b":  "https://example.com/a/;../b",
		// A percent sign encoded is an ordinary character elsewhere.
		"https://example.com/100%25/b": "https://example.com/100%25/b",
		"https://example.com/%252e.md": "https://example.com/%252e.md",
		// Encoded slashes stay encoded, as written.
		"https://example.com/p/group%2Fproject/f/docs%2findex.md/raw?ref=main": "https://example.com/p/group%2Fproject/f/docs%2findex.md/raw?ref=main",
		"https://example.com/a%252Fb":                                          "https://example.com/a%252Fb",
		"https://example.com/g%2Fp/a%20b%7B%7D.md":                             "https://example.com/g%2Fp/a%20b%7B%7D.md",
		"https://example.com/a%252Fb/c d":                                      "https://example.com/a%252Fb/c%20d",
	} {
		tg, err := parseTarget(raw)
		if err != nil || tg.u.String() != want {
			t.Errorf("%s: %v %v, want %s", raw, tg, err, want)
		}
	}
}

func TestInternalAddresses(t *testing.T) {
	internal := map[string]string{
		"127.0.0.1":              "loopback",
		"127.255.0.9":            "loopback",
		"::1":                    "loopback",
		"0.0.0.0":                "unspecified",
		"::":                     "unspecified",
		"10.1.2.3":               "private",
		"172.16.0.1":             "private",
		"172.31.255.255":         "private",
		"192.168.1.1":            "private",
		"fd00::1":                "unique local",
		"169.254.169.254":        "link-local",
		"fe80::1":                "link-local",
		"100.64.0.1":             "CGNAT",
		"224.0.0.1":              "multicast",
		"ff02::1":                "multicast",
		"255.255.255.255":        "broadcast",
		"::ffff:127.0.0.1":       "loopback (127.0.0.0/8), IPv4-mapped",
		"::ffff:169.254.169.254": "link-local",
		"::ffff:10.0.0.1":        "private",
		"64:ff9b::7f00:1":        "loopback (127.0.0.0/8), through NAT64",
		"64:ff9b::a9fe:a9fe":     "link-local",
		"2002:7f00:1::1":         "loopback (127.0.0.0/8), through 6to4",
		"::ffff:0:7f00:1":        "loopback (127.0.0.0/8), IPv4-translated",
		"::ffff:0:a9fe:a9fe":     "link-local",
		"2002:c0a8:101::1":       "private",
		// Teredo: the client's address is the last 32 bits inverted
		// (0x80fffffe is 127.0.0.1), the server's bits 32-63.
		"2001:0:4136:e378:8000:63bf:80ff:fffe": "loopback (127.0.0.0/8), through Teredo (its client)",
		"2001:0:4136:e378:8000:63bf:5601:5601": "(169.254.0.0/16), through Teredo (its client)",
		"2001:0:a00:1:8000:63bf:f7f7:f7f7":     "private (RFC 1918) (10.0.0.0/8), through Teredo (its server)",
		"2001:0:4136:e378:8000:63bf:f7f7:f7f7": "",
		// ISATAP: an interface identifier 0:5efe or 200:5efe, then IPv4.
		"2001:db8::5efe:7f00:1":         "loopback (127.0.0.0/8), through ISATAP",
		"2a00:1450::200:5efe:a9fe:a9fe": "(169.254.0.0/16), through ISATAP",
		"2a00:1450::5efe:808:808":       "",
		"2a00:1450::100:5efe:7f00:1":    "",
		"::7f00:1":                      "IPv4-compatible",
		"fec0::1":                       "site-local",
		"192.0.0.8":                     "IETF",
		"198.18.0.1":                    "benchmarking",
		"168.63.129.16":                 "Azure's platform endpoint",
		"::ffff:168.63.129.16":          "Azure",
		"168.63.129.17":                 "",
		"fe80::1%eth0":                  "scoped",
		"64:ff9b:1::1":                  "NAT64",
		"100::1":                        "discard",
		"0.1.2.3":                       "unspecified",
		"::ffff:0.0.0.0":                "unspecified",
		"::ffff:255.255.255.255":        "broadcast",
		"::ffff:100.100.100.100":        "CGNAT",
		"::ffff:fd00:0:0":               "",
		"2606:4700:4700::1111":          "",
		"8.8.8.8":                       "",
		"64:ff9b::808:808":              "",
		"2002:808:808::1":               "",
		"::ffff:1.1.1.1":                "",
		"::ffff:0:808:808":              "",
		"172.32.0.1":                    "",
		"100.128.0.1":                   "",
		"169.255.0.1":                   "",
		"2001:db8::1":                   "",
		"::ffff:203.0.113.1":            "",
		"2a00:1450:4001:80b::200e":      "",
	}
	for s, want := range internal {
		a := netip.MustParseAddr(s)
		got := internalReason(a)
		if want == "" && got != "" || want != "" && !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", s, got, want)
		}
	}
}

const rulesConfig = `
[reading]
allow = [
  { host = "raw.githubusercontent.com", paths = ["/backstage/"] },
  { host = "*.example.com" },
  { host = "plain.test", scheme = "http", paths = ["/docs"] },
]
`

func TestAllowListAndGrants(t *testing.T) {
	r, err := New(mustConfig(t, rulesConfig), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := r.For("docs", []string{"raw.githubusercontent.com/backstage/", "*.example.com", "plain.test/docs"})
	narrow := r.For("narrow", []string{"a.example.com/only/"})
	// Granted more than the rules allow: the rules refuse.
	wide := r.For("wide", []string{"raw.githubusercontent.com", "*.example.com", "example.com", "plain.test", "evil.com", "aexample.com"})
	if r.For("none", nil) != nil {
		t.Error("a plugin without grants got a reader")
	}
	cases := []struct {
		p    *PluginReader
		url  string
		want string // "" means allowed
	}{
		{p, "https://raw.githubusercontent.com/backstage/backstage/master/README.md", ""},
		{p, "https://RAW.githubusercontent.com./backstage/x", ""},
		// The grant is checked first: a plugin learns nothing of the
		// rules for URLs it may not ask for.
		{p, "https://raw.githubusercontent.com/backstagex/x", `not granted to plugin docs by plugins.docs.capabilities.urlreader ["raw.githubusercontent.com/backstage/" "*.example.com" "plain.test/docs"]`},
		{p, "https://evil.com/", "not granted to plugin docs"},
		{p, "http://raw.githubusercontent.com/backstage/x", `scheme http is not allowed by reading.allow[0]; it allows https only`},
		{p, "https://a.example.com/x", ""},
		{p, "https://a.b.example.com/x", ""},
		{p, "http://a.example.com/", "scheme http is not allowed by reading.allow[1]"},
		{p, "http://plain.test/docs", ""},
		{p, "http://plain.test/docs/a", ""},
		{p, "https://plain.test/docs/a", ""},
		// Rules name themselves by place, not by the hosts and paths
		// they list (a ${VAR} may hold one).
		{wide, "https://raw.githubusercontent.com/backstagex/x", `reading.allow[0] matches host raw.githubusercontent.com, but none of its paths covers /backstagex/x`},
		{wide, "https://evil.com/", "refused: no [reading] allow rule matches host evil.com"},
		{wide, "https://example.com/", "no [reading] allow rule matches host example.com"},
		{wide, "https://aexample.com/x", "no [reading] allow rule matches"},
		{wide, "http://plain.test/docsx", `reading.allow[2] matches host plain.test, but none of its paths covers /docsx`},
		{narrow, "https://a.example.com/only/x", ""},
		{narrow, "https://a.example.com/other", `not granted to plugin narrow by plugins.narrow.capabilities.urlreader ["a.example.com/only/"]`},
		{narrow, "https://b.example.com/only/x", "not granted to plugin narrow"},
		{narrow, "https://raw.githubusercontent.com/backstage/x", "not granted"},
		// A grant without a trailing "/" covers whole segments; a path it
		// starts but cuts inside a segment is told so (a builder granted
		// "plain.test/docs" for /docs.json read only "not granted").
		{p, "http://plain.test/docs.json", `"plain.test/docs" covers /docs and the paths under /docs/, not /docs.json (a prefix that ends in "/" covers every path that starts with it)`},
	}
	for _, tc := range cases {
		_, err := tc.p.check(tc.url)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.url, err)
		case tc.want != "" && (err == nil || KindOf(err) != Denied || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err = %v, want denied with %q", tc.url, err, tc.want)
		case tc.want != "" && !strings.Contains(tc.want, "covers /docs and") && strings.Contains(err.Error(), "covers every path"):
			t.Errorf("%s: err = %v, hints at a segment where no grant cuts one", tc.url, err)
		}
	}
	empty, _ := New(mustConfig(t, ""), Options{})
	if _, err := empty.For("x", []string{"example.com"}).check("https://example.com/"); err == nil || !strings.Contains(err.Error(), "[reading] allow is empty") {
		t.Errorf("empty allow list: %v", err)
	}
}

// A path rule means what it says: a "..;" segment, which Tomcat- and
// Spring-style servers read as "..", cannot climb out of the prefix.
func TestPathRuleDotSegmentWithParameters(t *testing.T) {
	r, err := New(mustConfig(t, "[reading]\nallow = [{ host = \"host.test\", scheme = \"http\", paths = [\"/allowed/\"] }]\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := r.For("docs", []string{"host.test/allowed/"})
	if _, err := p.check("http://host.test/allowed/x"); err != nil {
		t.Fatalf("allowed path refused: %v", err)
	}
	for _, u := range []string{
		"http://host.test/allowed/..;/x",
		"http://host.test/allowed/..;/..;/etc/passwd",
		"http://host.test/allowed/%2e%2e;/x",
		"http://host.test/allowed/..%3B/x",
		"http://host.test/allowed/.;/../x",
	} {
		_, err := p.check(u)
		if err == nil || KindOf(err) != Invalid || !strings.Contains(err.Error(), "dot segments") {
			t.Errorf("%s: err = %v, want refused naming dot segments", u, err)
		}
	}
}

// A segment that lax servers read as a dot segment or a slash is refused
// too: with a NUL in it (Jetty read "..%00" and ".%00" as dot segments,
// CVE-2021-34429), or spelled in overlong UTF-8 ("%c0%ae" is "." to
// Tomcat, CVE-2008-2938; "%c0%af" and "%c1%9c" are slashes to IIS). They
// passed, and climbed out of a rule's path prefix on such a server.
func TestPathRuleLaxDotSegments(t *testing.T) {
	r, err := New(mustConfig(t, "[reading]\nallow = [{ host = \"host.test\", scheme = \"http\", paths = [\"/allowed/\"] }]\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := r.For("docs", []string{"host.test/allowed/"})
	// Bytes like these in a name are no dot segment: still read.
	for _, u := range []string{"http://host.test/allowed/%c0%c1", "http://host.test/allowed/caf%c3%a9", "http://host.test/allowed/%e0%a4%85", "http://host.test/allowed/..x%00", "http://host.test/allowed/%f8%88%80%80%ae%f8%88%80%80%ae", "http://host.test/allowed/%fc%80%80%80%80"} {
		if _, err := p.check(u); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for _, u := range []string{
		"http://host.test/allowed/..%00/x",
		"http://host.test/allowed/.%00/../x",
		"http://host.test/allowed/%00..%00/x",
		"http://host.test/allowed/%c0%ae%c0%ae/x",
		"http://host.test/allowed/.%c0%ae/x",
		"http://host.test/allowed/%e0%80%ae%e0%80%ae/x",
		"http://host.test/allowed/%f0%80%80%ae./x",
		"http://host.test/allowed/%c0%ae%c0%ae;x/x",
		"http://host.test/allowed/%25c0%25ae%25c0%25ae/x",
		"http://host.test/allowed/..%2500/x",
		"http://host.test/allowed/x%c0%af..%c0%af..%c0%afx",
		"http://host.test/allowed/x%c1%9c..%c1%9cx",
		"http://host.test/allowed/x%e0%81%9c..%e0%81%9cx",
		"http://host.test/allowed/x%f0%80%80%af..",
		// The obsolete five- and six-byte forms, which old decoders
		// still read: "/" and ".".
		"http://host.test/allowed/x%f8%80%80%80%af..",
		"http://host.test/allowed/x%fc%80%80%80%80%af..",
		"http://host.test/allowed/%f8%80%80%80%ae%f8%80%80%80%ae/x",
		"http://host.test/allowed/%fc%80%80%80%80%ae./x",
		"http://host.test/allowed/x%f8%80%80%81%9c..",
		"http://host.test/allowed/%25f8%2580%2580%2580%25ae./x",
		// An overlong NUL is dropped like a NUL.
		"http://host.test/allowed/..%c0%80/x",
		"http://host.test/allowed/.%e0%80%80./x",
	} {
		_, err := p.check(u)
		if err == nil || KindOf(err) != Invalid {
			t.Errorf("%s: err = %v, want it refused", u, err)
		}
	}
}

func TestPathUnder(t *testing.T) {
	for _, tc := range []struct {
		path, prefix string
		want         bool
	}{
		{"/a", "", true}, {"/docs", "/docs", true}, {"/docs/x", "/docs", true}, {"/docsx", "/docs", false},
		{"/docs/", "/docs/", true}, {"/docs/x", "/docs/", true}, {"/docs", "/docs/", false}, {"/", "/", true},
	} {
		if got := pathUnder(tc.path, tc.prefix); got != tc.want {
			t.Errorf("pathUnder(%q, %q) = %v", tc.path, tc.prefix, got)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	for text, want := range map[string]string{
		"[reading]\nallow = [{ host = \"*.corp\", internal = true }]\n": "needs an exact host",
		"[reading]\nmax_bytes = \"2GiB\"\n":                             "at most 1GiB",
		"[[integrations.github]]\nhost = \"a.com\"\ntoken = \"t1\"\n[[integrations.gitlab]]\nhost = \"A.com\"\ntoken = \"t2\"\n":            "already has a credential in integrations.github[0]",
		"[[integrations.generic]]\nhost = \"a.com\"\ntoken = \"t\"\nheader = \"Bad Header\"\n":                                              "not an HTTP header name",
		"[[integrations.generic]]\nhost = \"*.a.com\"\ntoken = \"t\"\n":                                                                     "plain host name",
		"[[integrations.generic]]\nhost = \"*.a.com:443\"\ntoken = \"t\"\n":                                                                 "plain host name",
		"[[integrations.generic]]\nhost = \"a.com:0\"\ntoken = \"t\"\n":                                                                     "from 1 to 65535",
		"[[integrations.generic]]\nhost = \"a.com:65536\"\ntoken = \"t\"\n":                                                                 "from 1 to 65535",
		"[[integrations.generic]]\nhost = \"a.com:\"\ntoken = \"t\"\n":                                                                      "from 1 to 65535",
		"[[integrations.generic]]\nhost = \"a.com:+1\"\ntoken = \"t\"\n":                                                                    "from 1 to 65535",
		"[[integrations.generic]]\nhost = \"[::1]:443\"\ntoken = \"t\"\n":                                                                   "plain host name",
		"[[integrations.github]]\nhost = \"a.com:8443\"\ntoken = \"t1\"\n[[integrations.gitlab]]\nhost = \"A.com.:8443\"\ntoken = \"t2\"\n": "already has a credential in integrations.github[0]",
	} {
		_, err := config.Read([]config.Source{{Name: "c.toml", Data: []byte(text)}}, func(string) (string, bool) { return "", false })
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", text, err, want)
		}
	}
	// A host and the same host on one port are two integrations.
	text := "[[integrations.github]]\nhost = \"a.com\"\ntoken = \"token-one\"\n[[integrations.gitlab]]\nhost = \"a.com:8443\"\ntoken = \"token-two\"\n"
	if _, err := config.Read([]config.Source{{Name: "c.toml", Data: []byte(text)}}, func(string) (string, bool) { return "", false }); err != nil {
		t.Errorf("a host and the same host on one port: %v", err)
	}
}

// A refusal tells the plugin nothing of the rules' hosts and paths, which
// may be an operator's secrets (an audit's: a plugin granted one path of
// a host read another rule's ${VAR} path, and the host of a third, from
// its errors).
func TestRefusalsKeepTheRulesToThemselves(t *testing.T) {
	r, err := New(mustConfig(t, `
[reading]
allow = [
  { host = "localhost", scheme = "http", internal = true, paths = ["/v1/exports/c2VjcmV0/"] },
  { host = "localhost", scheme = "http", internal = true, paths = ["/pub/"] },
  { host = "internal-reports.corp.example" },
]
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*PluginReader{r.For("narrow", []string{"localhost/pub/"}), r.For("wide", []string{"localhost", "nothing.example"})} {
		for _, u := range []string{"http://localhost/x", "https://nothing.example/x", "http://localhost/pub/../v1/x"} {
			_, err := p.check(u)
			if err == nil {
				t.Errorf("%s read %s", p.id, u)
				continue
			}
			for _, secret := range []string{"c2VjcmV0", "internal-reports", "/v1/exports"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("%s reading %s was told %q: %v", p.id, u, secret, err)
				}
			}
		}
	}
}

// TestPathRuleCompatibilityDotSegments: servers that normalise a path's
// Unicode (NFKC, as Python's and Java's frameworks can, or Windows'
// best-fit mapping to ASCII) read a fullwidth full stop (U+FF0E), a
// one- or two-dot leader (U+2024, U+2025) or a small full stop (U+FE52)
// as '.', and a fullwidth solidus or reverse solidus (U+FF0F, U+FF3C) as
// '/' and '\': "/allowed/．．/admin" climbed out of the rule's prefix
// there, as "..%00" did on Jetty.
func TestPathRuleCompatibilityDotSegments(t *testing.T) {
	r, err := New(mustConfig(t, "[reading]\nallow = [{ host = \"host.test\", scheme = \"http\", paths = [\"/allowed/\"] }]\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := r.For("docs", []string{"host.test/allowed/"})
	// Names that are no dot segment and hold no slash, normalised or not.
	for _, u := range []string{
		"http://host.test/allowed/caf%c3%a9", "http://host.test/allowed/%e6%97%a5%e6%9c%ac",
		"http://host.test/allowed/%ef%bc%8ex", "http://host.test/allowed/file%e2%80%a4txt",
		"http://host.test/allowed/%ef%ac%81le",                  // ﬁ ligature: "file"
		"http://host.test/allowed/%ef%bc%85%ef%bc%92%ef%bc%90x", // ％２０x: " x"
		"http://host.test/allowed/%ef%bc%85%ef%bc%92%ef%bd%85x", // ％２ｅx: ".x"
	} {
		if _, err := p.check(u); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for _, u := range []string{
		"http://host.test/allowed/%ef%bc%8e%ef%bc%8e/admin",
		"http://host.test/allowed/%EF%BC%8E%EF%BC%8E/admin",
		"http://host.test/allowed/\uff0e\uff0e/admin",
		"http://host.test/allowed/.%ef%bc%8e/admin",
		"http://host.test/allowed/%ef%bc%8e/../admin",
		"http://host.test/allowed/%e2%80%a5/admin",
		"http://host.test/allowed/%e2%80%a4%e2%80%a4/admin",
		"http://host.test/allowed/%ef%b9%92%ef%b9%92/admin",
		"http://host.test/allowed/%ef%bc%8e%ef%bc%8e;x/admin",
		"http://host.test/allowed/%25ef%25bc%258e%25ef%25bc%258e/admin",
		"http://host.test/allowed/x%ef%bc%8f..%ef%bc%8fadmin",
		"http://host.test/allowed/x%ef%bc%bc..%ef%bc%bcadmin",
		// Normalised, then percent-decoded: fullwidth percent signs and
		// digits (U+FF05, U+FF12, U+FF45...) are %2e%2e and %2F in NFKC.
		"http://host.test/allowed/%ef%bc%85%ef%bc%92%ef%bd%85%ef%bc%85%ef%bc%92%ef%bd%85/admin",
		"http://host.test/allowed/\uff05\uff12\uff45\uff05\uff12\uff25/admin",
		"http://host.test/allowed/%ef%bc%85%ef%bc%92%ef%bd%85./admin",
		"http://host.test/allowed/%ef%bc%852e%ef%bc%852e;x/admin",
		"http://host.test/allowed/x%ef%bc%85%ef%bc%92%ef%bc%a6..%ef%bc%85%ef%bc%92%ef%bc%a6admin",
		"http://host.test/allowed/x%ef%bc%85%ef%bc%92f..",
		"http://host.test/allowed/x%ef%bc%852%ef%bc%a6..",
		"http://host.test/allowed/x%252%ef%bc%a6..",
		"http://host.test/allowed/x%ef%bc%855%ef%bc%a3..",
		"http://host.test/allowed/%ef%bc%85c0%ef%bc%85ae%ef%bc%85c0%ef%bc%85ae/admin",
		"http://host.test/allowed/%ef%bc%85ef%ef%bc%85bc%ef%bc%858e./admin",
		"http://host.test/allowed/%25ef%25bc%2585%25ef%25bc%2592%25ef%25bd%2585./admin",
	} {
		_, err := p.check(u)
		if err == nil || KindOf(err) != Invalid {
			t.Errorf("%s: err = %v, want it refused", u, err)
		}
	}
	// A slash spelled in fullwidth percent-encoding is refused whatever
	// the rule, for a whole host too; an encoded slash spelled in ASCII
	// beside characters NFKC changes (a decomposed é) is an encoded slash
	// as any other, for check to read for whole hosts only.
	if _, err := parseTarget("http://host.test/g%ef%bc%85%ef%bc%92%ef%bc%a6p/x"); err == nil || KindOf(err) != Invalid {
		t.Errorf("fullwidth %%2F: err = %v, want it refused", err)
	}
	for _, u := range []string{"http://host.test/cafe%cc%81%2Fx", "http://host.test/cafe%cc%81%252Fx"} {
		if tg, err := parseTarget(u); err != nil || !tg.encSlash {
			t.Errorf("%s: %+v, %v, want it parsed with an encoded slash", u, tg, err)
		}
	}
}
