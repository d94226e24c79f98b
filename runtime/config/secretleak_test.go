package config

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// A malformed ${ reference in database.connection or auth.jwt.jwks_url
// fails the substitution, which empties the value: its password was then
// in no secret list, and the error quoted the value whole, password,
// userinfo and query. The error quotes the value with its credentials
// [REDACTED], and not a malformed reference written inside one.
func TestMalformedReferenceHidesCredential(t *testing.T) {
	jwt := "[auth.jwt]\nissuer = \"i\"\naudience = \"a\"\njwks_url = %q\n"
	db := "[database]\nclient = \"pg\"\nconnection = %q\n"
	for _, tc := range []struct {
		name, format, value, want string
		leaks                     []string
	}{
		{"url password", db, "postgres://app:Pw9@db.internal/${app", `unclosed ${ in "postgres://[REDACTED]@db.internal/${app"`, []string{"Pw9", "app:"}},
		{"short password", db, "postgres://u:xy@h/${DB", `"postgres://[REDACTED]@h/${DB"`, []string{"xy"}},
		{"query password", db, "postgres://u@h/db?password=Qp1&sslpassword=Qs2&x=${", `"postgres://[REDACTED]@h/db?[REDACTED]"`, []string{"Qp1", "Qs2"}},
		{"reference in the password", db, "postgres://u:${P-W:-dflt}@h/db", "invalid variable reference in a credential of the value", []string{"dflt", "P-W"}},
		{"nested", db, "postgres://u:Ab1${X:-${Y}}@h/db", `nested ${ in "postgres://[REDACTED]@h/db"`, []string{"Ab1"}},
		{"keyword form", db, "host=h password=Kw1 sslpassword='S p' ${", `"host=h password=[REDACTED] sslpassword='[REDACTED]' ${"`, []string{"Kw1", "S p"}},
		{"keyword form with a URL in it", db, "host=h password=Kw2x application_name=http://a ${", `"host=h password=[REDACTED] application_name=http://a ${"`, []string{"Kw2x"}},
		{"jwks userinfo", jwt, "https://svc:Jp7@idp.example/${x", `"https://[REDACTED]@idp.example/${x"`, []string{"Jp7", "svc"}},
		{"jwks token user", jwt, "https://tok123@idp.example/jwks${", `"https://[REDACTED]@idp.example/jwks${"`, []string{"tok123"}},
		{"jwks query", jwt, "https://idp.example/jwks?access_token=Qt9&format=${x", `"https://idp.example/jwks?[REDACTED]"`, []string{"Qt9", "access_token"}},
		{"jwks reference in the query", jwt, "https://idp.example/jwks?k=${A B}", "invalid variable reference in a credential of the value", []string{"A B"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refusedWithout(t, fmt.Sprintf(tc.format, tc.value), nil, tc.want, tc.leaks...)
		})
	}
	// Other keys still quote the value whole.
	_, err := read(t, "[log]\nlevel = \"de${bug\"\n", nil)
	if err == nil || !strings.Contains(err.Error(), `unclosed ${ in "de${bug"`) {
		t.Errorf("err = %v", err)
	}
}

// A connection string that is not what the client wants is quoted in its
// error with its passwords [REDACTED] (a PostgreSQL URL where SQLite wants
// a directory quoted the password: the log's substring redaction leaves
// one under 4 characters), and one with a part from the environment, or a
// jwks_url with one, is [REDACTED] whole: a short part from the
// environment is no more redacted from free text than a short password.
func TestSQLiteConnectionErrorHidesPassword(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("q7", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sqlite := "[database]\nclient = \"sqlite\"\nconnection = %q\n"
	jwt := "[auth.jwt]\nissuer = \"i\"\naudience = \"a\"\njwks_url = %q\n"
	for _, tc := range []struct {
		name, format, value string
		vars                map[string]string
		want                string
		leaks               []string
	}{
		{"url password", sqlite, "postgres://u:pw@db.internal/app", nil, `got "postgres://u:[REDACTED]@db.internal/app"`, []string{":pw@"}},
		{"query password", sqlite, "postgres://h/db?password=x1&sslmode=disable", nil, `got "postgres://h/db?password=[REDACTED]&sslmode=disable"`, []string{"x1"}},
		{"keyword password", sqlite, "host=h password=k1 sslpassword=k2", nil, `got "host=h password=[REDACTED] sslpassword=[REDACTED]"`, []string{"k1", "k2"}},
		{"keyword password beside a URL", sqlite, "host=h password=k3 application_name=http://a", nil, `got "host=h password=[REDACTED] application_name=http://a"`, []string{"k3"}},
		{"password from the environment", sqlite, "postgres://u:${P}@h/db", map[string]string{"P": "pw"}, `got "[REDACTED]"`, []string{":pw@", "u:", "h/db"}},
		{"host from the environment", sqlite, "postgres://u@${H}/db", map[string]string{"H": "h1"}, `got "[REDACTED]"`, []string{"h1"}},
		{"directory from the environment", sqlite, "file:${D}", map[string]string{"D": "q7"}, "database.connection: names a file, or a directory under one or a symbolic link to nothing, where the directory would be (the directory that holds the SQLite databases)", []string{"q7"}},
		{"jwks_url from the environment", jwt, "ftp://${H}/jwks", map[string]string{"H": "idp"}, `must be an http(s) URL, got "[REDACTED]"`, []string{"idp", "ftp"}},
		{"jwks_url literal", jwt, "ftp://u:pw@idp/jwks", nil, `must be an http(s) URL, got "ftp://u:[REDACTED]@idp/jwks"`, []string{":pw@"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refusedWithout(t, fmt.Sprintf(tc.format, tc.value), tc.vars, tc.want, tc.leaks...)
		})
	}
	// The plain-http warning, logged at each start, names the host of a
	// jwks_url written in the file, not of one from the environment.
	c := mustRead(t, fmt.Sprintf(jwt, "${J}"), map[string]string{"J": "http://i9:80/jwks"})
	if w := c.Warnings(); len(w) != 1 || strings.Contains(w[0], "i9") || !strings.Contains(w[0], "auth.jwt.jwks_url: is fetched over plain http:// from its host, which is not this machine") {
		t.Errorf("Warnings = %q", w)
	}
}

// The URL parsers quote what they stumble on (net/url: `invalid port
// ":xx" after host`, `parse "postgres://..."`; pgx: `unknown sslcertmode
// value: zz`, a file's path), a fragment of the value that no redaction
// of the secret it came from finds. A database.connection or jwks_url
// with a part from the environment is refused with the reason, without
// any of them.
func TestEnvURLParseErrorQuotesNoFragment(t *testing.T) {
	pg := "[database]\nclient = \"pg\"\nconnection = %q\n"
	jwt := "[auth.jwt]\nissuer = \"i\"\naudience = \"a\"\njwks_url = %q\n"
	for _, tc := range []struct {
		name, format, value, v, want string
		leaks                        []string
	}{
		{"pg port", pg, "${V}", "postgres://u@dbhost:xx/db", "database.connection: does not parse: invalid port", []string{"xx", "dbhost"}},
		{"pg port of a host part", pg, "postgres://u@${V}/db", "h9:x7", "database.connection: does not parse: invalid port", []string{"x7", "h9"}},
		{"pg escape", pg, "postgres://u@h/${V}", "d%z1", "database.connection: does not parse: failed to parse as URL", []string{"%z1", "z1"}},
		{"pg sslcertmode", pg, "postgres://u@h/db?sslcertmode=${V}", "zq", "does not parse: invalid sslcertmode", []string{"zq"}},
		{"pg target_session_attrs", pg, "postgres://u@h/db?target_session_attrs=${V}", "zq", "does not parse: unknown target_session_attrs value", []string{"zq"}},
		{"pg file", pg, "postgres://u@h/db?sslmode=verify-full&sslrootcert=${V}", "q7.crt", "does not parse: failed to configure TLS", []string{"q7"}},
		{"jwks host", jwt, "${V}", "https://id p/jwks", "does not parse as a URL: invalid character in host name", []string{`" "`, "id p"}},
		{"jwks escape", jwt, "https://${V}/jwks", "i%zq", "does not parse as a URL: invalid URL escape", []string{"zq"}},
		{"jwks port", jwt, "https://idp:${V}/jwks", "99999", "has a port that is not from 1 to 65535", []string{"99999"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := refusedWithout(t, fmt.Sprintf(tc.format, tc.value), map[string]string{"V": tc.v}, tc.want, append(tc.leaks, "`")...)
			if n := strings.Count(msg, `"`); n != 0 {
				t.Errorf("error quotes something:\n%s", msg)
			}
		})
	}
	// Written in the file, the reason keeps what the parser quotes.
	_, err := read(t, fmt.Sprintf(pg, "postgres://u@h/db?sslcertmode=zq"), nil)
	if err == nil || !strings.Contains(err.Error(), "unknown sslcertmode value: zq") {
		t.Errorf("err = %v", err)
	}
}

// A size, duration or rate with a part from the environment that does not
// parse is refused without the value: "${V}MiX" quoted "12MiX", and the
// log's redaction leaves a secret under 4 characters; nor with what was
// computed from it ("1.123456KB" is not a whole number of bytes:
// "(1123.456)").
func TestSecretSizeErrorShowsNoDigits(t *testing.T) {
	for _, tc := range []struct {
		name, text, v, want string
	}{
		{"unit", "[server]\nbody_limit = \"${V}MiX\"\n", "12", `server.body_limit: invalid size "[REDACTED]" (want e.g.`},
		{"fraction", "[server]\nbody_limit = \"${V}\"\n", "1.123456KB", `server.body_limit: size "[REDACTED]" is not a whole number of bytes`},
		{"fraction short", "[server]\nbody_limit = \"${V}KiB\"\n", "1.9", `server.body_limit: size "[REDACTED]" is not a whole number of bytes`},
		{"too large", "[database]\nsqlite_memory = \"${V}TiB\"\n", "9e9", `database.sqlite_memory: size "[REDACTED]" is too large`},
		{"duration", "[server]\nread_timeout = \"${V}x\"\n", "12", `server.read_timeout: invalid duration "[REDACTED]" (want a Go duration`},
		{"negative duration", "[server]\nread_timeout = \"-${V}s\"\n", "12", `server.read_timeout: invalid duration "[REDACTED]": negative`},
		{"rate", "[server]\nrate_limit = \"${V}/d\"\n", "12", `server.rate_limit: invalid rate "[REDACTED]" (want e.g.`},
		{"rate too large", "[server]\nrate_limit = \"${V}/s\"\n", "5e9", `server.rate_limit: rate "[REDACTED]": at most 1000000000 per period`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := read(t, tc.text, map[string]string{"V": tc.v})
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error does not contain %q:\n%s", tc.want, msg)
			}
			// No digit but those of the line and the bounds.
			rest := strings.TrimPrefix(msg, "config: config.toml:2: ")
			for _, bound := range []string{"512KiB", "64MiB", "1GiB", "1000000000", "5s", "250ms", "1m30s", "100/s", "600/m"} {
				rest = strings.ReplaceAll(rest, bound, "")
			}
			if strings.ContainsAny(rest, "0123456789") {
				t.Errorf("error shows digits:\n%s", msg)
			}
		})
	}
	// Written in the file, the value is quoted.
	_, err := read(t, "[server]\nbody_limit = \"12MiX\"\n", nil)
	if err == nil || !strings.Contains(err.Error(), `invalid size "12MiX"`) {
		t.Errorf("err = %v", err)
	}
}

// What a value from the environment decodes to is as secret as the value:
// "5120KiB" decodes to 5MiB, "3600s" to 1h0m0s, "0987" to 987, none of
// which the errors' redaction (of the value as written) finds, and a
// short one (":80", "12") it leaves anyway. The checks that print a
// decoded value print [REDACTED] for one from the environment, in their
// own key's error and in another's that names it; so does the warning
// about header_limit × max_connections.
func TestSecretDerivedFormsRedacted(t *testing.T) {
	plugin := "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\n"
	for _, tc := range []struct {
		name, text, v, want string
		leaks               []string
	}{
		{"size", "[database]\nsqlite_memory = \"${V}\"\n", "5120KiB", "database.sqlite_memory: must be at least 64MiB (or 0 for no bound), got [REDACTED]", []string{"5MiB"}},
		{"duration", "[auth.jwt]\njwks_url = \"https://idp/j\"\nissuer = \"i\"\naudience = \"a\"\nleeway = \"${V}\"\n", "3600s", "auth.jwt.leeway: must be at most 5m, got [REDACTED]", []string{"1h0m0s"}},
		{"lease", "[scheduler]\nlease = \"${V}\"\n", "10ms", "scheduler.lease: must be at least 1s, got [REDACTED]", []string{"10ms"}},
		{"integer", plugin + "instances = \"${V}\"\n", "02000", "plugins.a.limits.instances: must be between 1 and 1024, got [REDACTED]", []string{"2000"}},
		{"negative integer", "[server]\nmax_connections = \"${V}\"\n", "-7", "server.max_connections: must be from 1 to 262144, got [REDACTED]", []string{"-7"}},
		{"header limit", "[server]\nheader_limit = \"${V}\"\n", "2MiB", "server.header_limit: must be from 4KiB to 1MiB, got [REDACTED]", []string{"2097152"}},
		{"named by another key", "[server]\nbody_limit = \"${V}\"\nrequest_budget = \"1MiB\"\n", "2048KiB", "server.request_budget: (1MiB) must be at least server.body_limit ([REDACTED])", []string{"2MiB"}},
		{"memory pair", plugin + "memory = \"${V}\"\nretire_memory = \"64MiB\"\n", "32768KiB", "plugins.a.limits.retire_memory: (64MiB) must not exceed limits.memory ([REDACTED])", []string{"32MiB"}},
		{"budget", "[server]\nresponse_budget = \"${V}\"\n" + plugin + "max_response = \"2MiB\"\n", "1024KiB", "plugins.a.limits.max_response: (2MiB) must not exceed server.response_budget ([REDACTED])", []string{"1MiB"}},
		{"statement timeout", plugin + "db_statement_timeout = \"${V}\"\n", "9000h", "plugins.a.limits.db_statement_timeout: must be at most 596h31m23.647s (PostgreSQL's statement_timeout takes at most 2147483647 ms), got [REDACTED]", []string{"9000h0m0s", "0m0s"}},
		{"listen", "[server]\nlisten = \":80\"\nmetrics_listen = \"${V}\"\n", ":80", "server.metrics_listen: [REDACTED] is server.listen's address", []string{":80 is"}},
		{"rate window", "[server]\nrate_limit = \"${V}/h\"\nrate_burst = 100\n", "1", "server.rate_limit: with its burst makes a window of more than the 24h0m0s a window may last: raise the rate", []string{"window of 3.6e+05s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refusedWithout(t, tc.text, map[string]string{"V": tc.v}, tc.want, tc.leaks...)
		})
	}
	c := mustRead(t, "[server]\nheader_limit = \"${V}\"\nmax_connections = 262144\n", map[string]string{"V": "1024KiB"})
	if w := c.Warnings(); len(w) != 1 || strings.Contains(w[0], "1MiB") || !strings.Contains(w[0], "server.header_limit ([REDACTED]) × server.max_connections (262144) is [REDACTED] GiB") {
		t.Errorf("Warnings = %q", w)
	}
}

// config print shows a retire_memory left to its default as the value in
// effect, 3/4 of memory: a memory from the environment was [REDACTED] and
// told all the same by it ("24MiB" for "${V}" with V=32MiB). One set in
// the file is shown.
func TestPrintRedactsRetireMemoryOfASecretMemory(t *testing.T) {
	plugin := "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\nmemory = \"${V}\"\n"
	for _, tc := range []struct{ text, want, leak string }{
		{plugin, "retire_memory = '[REDACTED]'", "24MiB"},
		{plugin + "retire_memory = \"20MiB\"\n", "retire_memory = '20MiB'", "24MiB"},
	} {
		c := mustRead(t, tc.text, map[string]string{"V": "32MiB"})
		out, err := c.Print()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), tc.want) || strings.Contains(string(out), tc.leak) || !strings.Contains(string(out), "memory = '[REDACTED]'") {
			t.Errorf("config print, want %q and no %q:\n%s", tc.want, tc.leak, out)
		}
	}
	// Written in the file, memory and its derived retire_memory are shown.
	c := mustRead(t, "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\nmemory = \"32MiB\"\n", nil)
	if out, _ := c.Print(); !strings.Contains(string(out), "retire_memory = '24MiB'") {
		t.Errorf("config print of a memory written in the file:\n%s", out)
	}
}

// refusedWithout reads a config of text with vars, wants it refused with
// an error that contains want and none of leaks, and returns the error's
// text.
func refusedWithout(t *testing.T, text string, vars map[string]string, want string, leaks ...string) string {
	t.Helper()
	_, err := read(t, text, vars)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if !strings.Contains(msg, want) {
		t.Errorf("error does not contain %q:\n%s", want, msg)
	}
	for _, leak := range leaks {
		if strings.Contains(msg, leak) {
			t.Errorf("error shows %q:\n%s", leak, msg)
		}
	}
	return msg
}

// A plugin's limits from the environment, and retire_memory left to its
// default under a memory from there, are secret to whatever shows them
// (LimitSecret): the admin API's limits (ShownLimits) showed them decoded,
// "36MiB" for "${V}" with V=37748736, which the redaction of the value as
// written does not match, and 3/4 of it as retire_memory. Limits written
// in the file are shown as before.
func TestShownLimitsRedactsLimitsFromTheEnvironment(t *testing.T) {
	c := mustRead(t, "[plugins.a]\npath = \"a.wasm\"\nlimits = { memory = \"${M}\", instances = \"${I}\", timeout = \"7300ms\" }\n[plugins.b]\npath = \"b.wasm\"\n[plugins.b.limits]\nmemory = \"${M}\"\nretire_memory = \"20MiB\"\n",
		map[string]string{"M": "37748736", "I": "13"})
	a, b := c.Plugins["a"], c.Plugins["b"]
	for _, tc := range []struct {
		p      *Plugin
		key    string
		secret bool
	}{
		{a, "memory", true}, {a, "retire_memory", true}, {a, "instances", true}, {a, "timeout", false}, {a, "max_requests", false},
		{b, "memory", true}, {b, "retire_memory", false}, {b, "instances", false},
	} {
		if got := tc.p.LimitSecret(tc.key); got != tc.secret {
			t.Errorf("LimitSecret(%q) = %v, want %v", tc.key, got, tc.secret)
		}
	}
	out, err := json.Marshal(a.ShownLimits())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), `{"memory":"[REDACTED]","timeout":"7.3s","instances":"[REDACTED]",`) || !strings.Contains(string(out), `"retire_memory":"[REDACTED]"`) ||
		strings.Contains(string(out), "36MiB") || strings.Contains(string(out), "27MiB") || strings.Contains(string(out), "13") {
		t.Errorf("a's limits: %s", out)
	}
	if out, _ := json.Marshal(b.ShownLimits()); !strings.Contains(string(out), `"memory":"[REDACTED]"`) || !strings.Contains(string(out), `"retire_memory":"20MiB"`) {
		t.Errorf("b's limits: %s", out)
	}
	// Nothing secret: read back as the limits.
	var plain struct{ Limits Limits }
	p := mustRead(t, "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\nmemory = \"32MiB\"\ninstances = 13\n", nil).Plugins["a"]
	shown, _ := json.Marshal(map[string]any{"Limits": p.ShownLimits()})
	if err := json.Unmarshal(shown, &plain); err != nil || plain.Limits != p.Limits || !strings.Contains(string(shown), `"retire_memory":"24MiB"`) {
		t.Errorf("limits written in the file: %s, read back %+v (%v)", shown, plain.Limits, err)
	}
}
