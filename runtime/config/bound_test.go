package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// A value an error quotes is cut to its first maxQuoted bytes, with its
// length: a 1 MiB string at a bad key was quoted whole (twice for
// server.listen, whose net error repeated it), into the error and the
// log. The error still names the key, its file and line, and what was
// wrong.
func TestErrorsBoundQuotedValues(t *testing.T) {
	big := strings.Repeat("A", 1<<20)
	for _, tc := range []struct{ name, text, want string }{
		{"listen", "[server]\nlisten = \"" + big + "\"\n", `config.toml:2: server.listen: invalid address "AAAA`},
		{"level", "[log]\nlevel = \"" + big + "\"\n", `config.toml:2: log.level: must be one of debug, info, warn, error, got "AAAA`},
		{"origin", "[server.cors]\norigins = [\"" + big + "\"]\n", `config.toml:2: server.cors.origins[0]: origin "AAAA`},
		{"unclosed reference", "[log]\nlevel = \"${" + big + "\"\n", `config.toml:2: log.level: unclosed ${ in "${AAAA`},
		{"size", "[server]\nbody_limit = \"" + big + "\"\n", `config.toml:2: server.body_limit: invalid size "AAAA`},
		{"wrong type", "[plugins.a]\npath = \"a.wasm\"\nlimits.instances = \"" + big + "\"\n", `plugins.a.limits.instances: want an integer, got string "AAAA`},
		{"escaped", "[log]\nlevel = \"" + strings.Repeat(`\u0001`, 1<<16) + "\"\n", `got "\x01\x01`},
		{"unknown key", "[server]\n" + strings.Repeat("k", 4000) + " = 1\n", `config.toml:2: server.kkkk`},
		// A quote as a rune literal ('"') starts no quoted string: the
		// words after it are not taken for one and cut.
		{"rune literal", "[server.cors]\norigins = [\"https://a\\\"b" + big + "\"]\n", `byte 1 ('"') is not a letter, digit, '-', '_' or '.' (write an internationalised name in its xn-- form) (want e.g. "https://app.example.com"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := read(t, tc.text, nil)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error does not contain %q:\n%.500s", tc.want, msg)
			}
			if !strings.Contains(msg, " bytes, cut)") {
				t.Errorf("error does not give the cut value's length:\n%.500s", msg)
			}
			// The key itself may be up to 4 KiB (twice: as the key and as
			// the unknown key it names); a value is not quoted whole.
			if len(msg) > 10<<10 {
				t.Errorf("error is %d bytes", len(msg))
			}
		})
	}
}

// A value with any part from the environment is quoted as "[REDACTED]"
// whole, however short the part: a secret under 4 characters is not
// redacted from free text, and "x${L}" with L=ab was quoted as "xab". A
// secret's length is not told either ("must be at least 32 characters,
// got 8").
func TestErrorsQuoteNoSecretPart(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		vars       map[string]string
		want       string
		leaks      []string
	}{
		{"level", "[log]\nlevel = \"x${L}\"\n", map[string]string{"L": "ab"}, `log.level: must be one of debug, info, warn, error, got "[REDACTED]"`, []string{"xab", `ab"`}},
		{"listen", "[server]\nlisten = \"${L}y\"\n", map[string]string{"L": "98"}, `server.listen: invalid address "[REDACTED]"`, []string{"98y", "98"}},
		{"listen port", "[server]\nlisten = \"${V}:99999\"\n", map[string]string{"V": "1.2.3.4"}, `server.listen: invalid address "[REDACTED]"`, []string{"1.2.3.4", "99999"}},
		{"origin", "[server.cors]\norigins = [\"https://a${H}\"]\n", map[string]string{"H": "!b"}, `server.cors.origins[0]: origin "[REDACTED]"`, []string{"!b", "'!'", "byte"}},
		{"reading host", "[reading]\nallow = [{ host = \"a${H}\" }]\n", map[string]string{"H": "!b"}, `reading.allow[0].host: host "[REDACTED]"`, []string{"!b", "'!'", "byte"}},
		{"route length", "[plugins.a]\npath = \"a.wasm\"\npublic_routes = [\"/${R}\"]\n", map[string]string{"R": strings.Repeat("r", 2000)}, `plugins.a.public_routes[0]: route is longer than 1024 bytes`, []string{"2001", "rrrr"}},
		{"token length", "[auth.tokens.ci]\ntoken = \"abc\"\nsubject = \"s\"\n", nil, `auth.tokens.ci.token: must be at least 32 characters`, []string{"got 3", "abc"}},
		{"token length from env", "[auth.tokens.ci]\ntoken = \"${T}\"\nsubject = \"s\"\n", map[string]string{"T": "abcdefgh"}, `auth.tokens.ci.token: must be at least 32 characters`, []string{"got 8", "abcdefgh"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refusedWithout(t, tc.text, tc.vars, tc.want, tc.leaks...)
		})
	}
	// An integration token's warning does not tell its length either.
	c := mustRead(t, "[[integrations.github]]\nhost = \"github.com\"\ntoken = \"${T}\"\n", map[string]string{"T": "abcde"})
	w := strings.Join(c.Warnings(), "\n")
	if !strings.Contains(w, "integrations.github[0].token: is under 8 bytes") || strings.Contains(w, "5 bytes") {
		t.Errorf("warnings:\n%s", w)
	}
}

// server.cors.origins are kept as a browser sends its Origin, which the
// CORS middleware compares them with: "https://app.example:443" never
// matched a page at https://app.example, whose Origin has no port. What
// is not an origin is refused, naming the key and what is wrong.
func TestCORSOriginsNormalized(t *testing.T) {
	c := mustRead(t, `[server.cors]
origins = ["https://app.example:443", "http://plain.example:80/", "https://*.sub.example:443", "https://[0:0::1]:443", "HTTPS://Caps.Example.", "https://other.example:8443", "http://x.example:443", "https://[::FFFF:1.2.3.4]:80"]
`, nil)
	want := []string{"https://app.example", "http://plain.example", "https://*.sub.example", "https://[::1]", "https://caps.example.", "https://other.example:8443", "http://x.example:443", "https://[::ffff:1.2.3.4]:80"}
	if !slices.Equal(c.Server.CORS.Origins, want) {
		t.Errorf("origins = %q, want %q", c.Server.CORS.Origins, want)
	}
	for o, why := range map[string]string{
		"https://app.example/path":      "with no path, query or wildcard",
		"https://app.example/?q=1":      "with no path, query or wildcard",
		"https://app.example#f":         "with no path, query or wildcard",
		"https://app.example//":         "with no path, query or wildcard",
		"https://user@app.example":      "with no path, query or wildcard",
		"https://user:pw@app.example":   "with no path, query or wildcard",
		"https://*":                     "with no path, query or wildcard",
		"https://app.*.example":         "with no path, query or wildcard",
		"*.example.com":                 "must start with http:// or https://",
		"app.example":                   "must start with http:// or https://",
		"ftp://app.example":             "must start with http:// or https://",
		"https://app.example:0":         "has a port that is not a number from 1 to 65535",
		"https://app.example:65536":     "has a port that is not a number from 1 to 65535",
		"https://app.example:":          "has a port that is not a number from 1 to 65535",
		"https://[fe80::1%25eth0]:8080": "is not a valid origin",
		"https://*.[::1]":               "wildcard before an IP address",
		"https://bücher.example":        "write an internationalised name in its xn-- form",
	} {
		_, err := read(t, "[server.cors]\norigins = ["+strconv.Quote(o)+"]\n", nil)
		if err == nil || !strings.Contains(err.Error(), "config.toml:2: server.cors.origins[0]: origin "+strconv.Quote(o)) || !strings.Contains(err.Error(), why) {
			t.Errorf("%s: err = %v, want %q", o, err, why)
		}
	}
}

// ${VAR} is substituted in string values only, never in keys: a key that
// holds "${" is refused, naming it and its line, where it was taken as
// written ("${K}" = 1 in a plugin's config was a key named "${K}", which
// the plugin asking for the variable's value never found; a token named
// "${N}" was a token of that name). Nothing else is reported about what
// is under it (a plugin id's pattern).
func TestReferenceInKeyRefused(t *testing.T) {
	vars := map[string]string{"K": "kk", "P": "pp", "N": "nn"}
	for _, tc := range []struct{ text, want string }{
		{"[plugins.a]\npath = \"a.wasm\"\n[plugins.a.config]\n\"${K}\" = 1\n", `config.toml:4: plugins.a.config."${K}": a key cannot hold "${"`},
		{"[plugins.a]\npath = \"a.wasm\"\n[plugins.a.config]\nt = { \"x${K}\" = 1 }\n", `config.toml:4: plugins.a.config.t."x${K}": a key cannot hold "${"`},
		{"[plugins.a]\npath = \"a.wasm\"\n[plugins.a.config]\n\"$${K}\" = 1\n", `config.toml:4: plugins.a.config."$${K}": a key cannot hold "${"`},
		{"[plugins.\"${P}\"]\npath = \"a.wasm\"\n", `config.toml:1: plugins."${P}": a key cannot hold "${"`},
		{"[auth.tokens.\"${N}\"]\ntoken = \"0123456789abcdef0123456789abcdef\"\nsubject = \"s\"\n", `config.toml:1: auth.tokens."${N}": a key cannot hold "${"`},
	} {
		_, err := read(t, tc.text, vars)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "${...} is substituted in string values only") {
			t.Errorf("%q: err = %v, want %q", tc.text, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "plugin id") {
			t.Errorf("%q: a follow-on error: %v", tc.text, err)
		}
	}
}

// A local date, time or date-time where a key wants something else is
// named as what it is: the error said "got toml.LocalDate", a Go type.
func TestLocalDateTypeNamed(t *testing.T) {
	for text, want := range map[string]string{
		"[log]\nlevel = 1979-05-27\n":          "log.level: want a string, got a date",
		"[log]\nlevel = 07:32:00\n":            "log.level: want a string, got a time",
		"[log]\nlevel = 1979-05-27T07:32:00\n": "log.level: want a string, got a date-time",
	} {
		if _, err := read(t, text, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", text, err, want)
		}
	}
}

// A warning is bounded as an error is (a 1 MiB host in a plain http://
// jwks_url made a 1 MiB warning, at every start and reload), and a path
// longer than any the system opens is refused, where it failed at
// start-up with an error quoting it whole (log, error page, admin API).
func TestWarningsAndPathsBounded(t *testing.T) {
	big := strings.Repeat("a", 1<<20)
	c := mustRead(t, "[auth.jwt]\njwks_url = \"http://"+big+".example/jwks\"\nissuer = \"i\"\naudience = \"a\"\n", nil)
	w := c.Warnings()
	if len(w) != 1 || len(w[0]) > 4<<10 || !strings.Contains(w[0], "config.toml:2: auth.jwt.jwks_url: is fetched over plain http://") || !strings.Contains(w[0], "bytes, cut)") {
		t.Errorf("warnings: %d, %.300q", len(w), w)
	}
	long := strings.Repeat("d/", 2100)
	for _, tc := range []struct {
		text string
		vars map[string]string
		want string
	}{
		{"[plugins.a]\npath = \"" + long + "a.wasm\"\n", nil, "config.toml:2: plugins.a.path: is 4206 bytes, longer than 4096, the longest path the system opens"},
		{"[runtime]\ncache_dir = \"" + long + "\"\n", nil, "config.toml:2: runtime.cache_dir: is 4200 bytes, longer than 4096"},
		{"[database]\nconnection = \"file:" + long + "\"\n", nil, "config.toml:2: database.connection: is 4205 bytes, longer than 4096"},
		{"[runtime]\ncache_dir = \"${D}\"\n", map[string]string{"D": long}, "config.toml:2: runtime.cache_dir: is longer than 4096 bytes, the longest path the system opens"},
	} {
		_, err := read(t, tc.text, tc.vars)
		if err == nil || !strings.Contains(err.Error(), tc.want) || len(err.Error()) > 4<<10 {
			t.Errorf("err = %.300v, want %q", err, tc.want)
		}
	}
}

// At most MaxErrors errors are listed, the rest counted: 150 000 unknown
// keys (a 1 MB file) made a 48 MB message, in config check's output, the
// reload's log line and the admin API's answer.
func TestErrorsCapped(t *testing.T) {
	var b strings.Builder
	for p := range 30 {
		fmt.Fprintf(&b, "[plugins.p%d]\npath = \"a.wasm\"\n[plugins.p%d.limits]\n", p, p)
		for k := range 100 {
			fmt.Fprintf(&b, "k%d = 1\n", k)
		}
	}
	_, err := read(t, b.String(), nil)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != MaxErrors+1 {
		t.Fatalf("%d errors, want %d: %.300v", len(errs), MaxErrors+1, err)
	}
	if last := errs[MaxErrors].Error(); last != fmt.Sprintf("and %d more errors, not listed: fix these first", 3000-MaxErrors) {
		t.Errorf("last error %q", last)
	}
	if first := errs[0].Error(); !strings.HasPrefix(first, "config.toml:4: plugins.p0.limits.k0: unknown key") {
		t.Errorf("first error %q", first)
	}
}

// A duration written right but longer than a Go duration holds is said
// to be too long, where the error asked for "a Go duration such as 5s"
// (time's error says "invalid" for both).
func TestDurationTooLong(t *testing.T) {
	for text, want := range map[string]string{
		"[plugins.a]\npath = \"a.wasm\"\nlimits.timeout = \"9999999999h\"\n": `plugins.a.limits.timeout: invalid duration "9999999999h": too long (a duration is at most 2562047h47m16.854775807s)`,
		"[server]\nread_timeout = \"2562047h47m16.854775807s1ns\"\n":         `server.read_timeout: invalid duration "2562047h47m16.854775807s1ns": too long`,
		"[server]\nread_timeout = \"5 s\"\n":                                 `server.read_timeout: invalid duration "5 s" (want a Go duration such as "5s"`,
		"[server]\nread_timeout = \"1e3s\"\n":                                `server.read_timeout: invalid duration "1e3s" (want a Go duration such as "5s"`,
		"[server]\nread_timeout = \"-9999999999h\"\n":                        `server.read_timeout: invalid duration "-9999999999h": too long`,
	} {
		if _, err := read(t, text, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", text, err, want)
		}
	}
	refusedWithout(t, "[server]\nread_timeout = \"${D}h\"\n", map[string]string{"D": "99999999999"}, `server.read_timeout: invalid duration "[REDACTED]": too long`, "99999999999")
}

// server.trusted_proxies takes IP addresses and networks in CIDR
// notation; anything else is refused naming the entry and its line, a
// network with bits past its length with the two readings it may mean,
// and an entry from the environment without being quoted.
func TestTrustedProxiesChecked(t *testing.T) {
	c := mustRead(t, "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\", \"::1\", \"fd00::/8\"]\n", nil)
	for _, s := range c.Server.TrustedProxies {
		if _, err := ParseTrustedProxy(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for tp, why := range map[string]string{
		"10.0.0.0/33":         "is not a network in CIDR notation",
		"10.0.0/8":            "is not a network in CIDR notation",
		"":                    "is not an IP address",
		"proxy.internal":      "is not an IP address",
		"10.0.0.1:80":         "is not an IP address",
		"10.0.0.1/8":          `has bits set past its prefix length: write "10.0.0.0/8" for the network, or "10.0.0.1" for the one address`,
		"fe80::1%eth0":        "has a zone",
		"::ffff:10.0.0.1":     "is an IPv4 address written as IPv6",
		"::ffff:10.0.0.0/104": "is an IPv4 network written as IPv6",
	} {
		_, err := read(t, "[server]\nlisten = \"127.0.0.1:7007\"\ntrusted_proxies = [\"::1\", "+strconv.Quote(tp)+"]\n", nil)
		if err == nil || !strings.Contains(err.Error(), "config.toml:3: server.trusted_proxies[1]: "+strconv.Quote(tp)+" "+why) {
			t.Errorf("%q: err = %v, want %q", tp, err, why)
		}
	}
	_, err := read(t, "[server]\ntrusted_proxies = [\"${TP}\"]\n", map[string]string{"TP": "10.99.0.1/8"})
	if err == nil || !strings.Contains(err.Error(), `server.trusted_proxies[0]: "[REDACTED]" has bits set`) || strings.Contains(err.Error(), "10.99") {
		t.Errorf("from the environment: err = %v", err)
	}
}
