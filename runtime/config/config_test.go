package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/logging"
	"github.com/jackc/pgx/v5"
)

func env(m map[string]string) LookupEnv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func read(t *testing.T, text string, vars map[string]string) (*Config, error) {
	t.Helper()
	return Read([]Source{{Name: "config.toml", Data: []byte(text)}}, env(vars))
}

func mustRead(t *testing.T, text string, vars map[string]string) *Config {
	t.Helper()
	c, err := read(t, text, vars)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return c
}

const contract = `
[server]
listen = "127.0.0.1:7007"
body_limit = "4MiB"

[log]
level = "info"      # debug | info | warn | error
format = "text"     # text | json

[runtime]
cache_dir = ".greenroom/cache"   # wazero compilation cache

[plugins.hello]                   # id: [a-z][a-z0-9-]{0,62}; mounted at /api/hello
path = "plugins/hello/hello.wasm"
sha256 = ""                       # optional pin; a mismatch refuses that plugin
[plugins.hello.limits]
memory = "64MiB"                  # linear memory cap per instance
timeout = "5s"                    # per request
instances = 4                     # max concurrent instances (the pool)
queue_timeout = "1s"              # wait for a free instance, then 503
max_requests = 10000              # retire an instance after this many calls
[plugins.hello.config]            # the plugin's own settings, any TOML values
greeting = "hello"
api_key = "${HELLO_API_KEY}"      # values that came from ${VAR} count as secrets
`

// The defaults the issues name, for a config that sets only what it must:
// limits.max_requests 10000 and limits.retire_memory 3/4 of memory (issue
// 2), log_rate 100 and log_burst 200 (issue 5), and the rest of the
// example values of issues 2, 5 and 6 as what a plugin table, [reading]
// and [auth.jwt] get when they leave them out; rate limiting, CORS and
// dangerously_disable off (issue 6).
func TestIssueDefaults(t *testing.T) {
	c := mustRead(t, "[plugins.hello]\npath = \"hello.wasm\"\n[auth.jwt]\njwks_url = \"https://idp.example/jwks.json\"\nissuer = \"https://idp.example\"\naudience = \"greenroom\"\n", nil)
	if c.Server.Listen != "127.0.0.1:7007" || c.Server.BodyLimit != 4<<20 {
		t.Errorf("server: listen %q, body_limit %d", c.Server.Listen, c.Server.BodyLimit)
	}
	if c.Log.Level != "info" || c.Log.Format != "text" || c.Runtime.CacheDir != ".greenroom/cache" {
		t.Errorf("log %+v, runtime %+v", c.Log, c.Runtime)
	}
	l := c.Plugins["hello"].Limits
	if l.Memory != 64<<20 || l.Timeout.D() != 5*time.Second || l.Instances != 4 || l.QueueTimeout.D() != time.Second ||
		l.MaxRequests != 10000 || l.RetireMemory != 48<<20 || l.EffectiveRetireMemory() != 48<<20 {
		t.Errorf("plugin limits: %+v", l)
	}
	if l.LogRate != 100 || l.LogBurst != 200 || c.Plugins["hello"].LogLevel != "" {
		t.Errorf("log limits: log_rate %v, log_burst %d, log_level %q", l.LogRate, l.LogBurst, c.Plugins["hello"].LogLevel)
	}
	if c.Reading.MaxBytes != 16<<20 || c.Reading.Timeout.D() != 30*time.Second || len(c.Reading.Allow) != 0 {
		t.Errorf("reading: %+v", c.Reading)
	}
	if c.Server.RateLimit.PerSecond() != 0 || len(c.Server.CORS.Origins) != 0 || c.Auth.DangerouslyDisable {
		t.Errorf("rate limit %+v, cors %+v, dangerously_disable %v: want all off", c.Server.RateLimit, c.Server.CORS, c.Auth.DangerouslyDisable)
	}
	if j := c.Auth.JWT; strings.Join(j.Algorithms, ",") != "RS256,ES256,EdDSA" || j.SubjectClaim != "sub" || j.Leeway.D() > time.Minute {
		t.Errorf("auth.jwt: %+v", j)
	}
}

// The config snippets of issues 5 (logger, URL reader) and 6
// (authentication), verbatim with their comments, beside the keys their
// text names (log_level, log_rate, log_burst, public_routes, admin,
// [auth.jwt]'s keys, rate_limit with burst, [server.cors] origins,
// dangerously_disable): every key is accepted under the name the issue
// gives it, and decodes to what it says.
const contractAuthAndReading = `
[server]
rate_limit = "100/s"
burst = 200
[server.cors]
origins = ["https://portal.example.com"]

[reading]
allow = [{ host = "raw.githubusercontent.com", paths = ["/backstage/"] }, { host = "*.example.com" }]
max_bytes = "16MiB"
timeout = "30s"

[plugins.docs]
path = "plugins/docs/docs.wasm"
log_level = "warn"
[plugins.docs.limits]
log_rate = 100
log_burst = 200
[plugins.docs.capabilities]
urlreader = ["raw.githubusercontent.com/backstage/"]

[[integrations.github]]
host = "raw.githubusercontent.com"
token = "${GITHUB_TOKEN}"   # added by the host for that host only; the plugin never sees it

[plugins.todo]
path = "plugins/todo/todo.wasm"
[plugins.hello]
path = "plugins/hello/hello.wasm"
public_routes = ["/ping"]

[auth]
dangerously_disable = false
[auth.tokens.ci]
token = "${CI_TOKEN}"        # at least 32 characters, else a config error
subject = "service:ci"
plugins = ["todo"]           # optional: only these plugins; others get 403
[auth.tokens.ops]
token = "${OPS_TOKEN}"
subject = "service:ops"
admin = true
[auth.jwt]
jwks_url = "https://idp.example.com/.well-known/jwks.json"
issuer = "https://idp.example.com"
audience = "greenroom"
algorithms = ["RS256", "ES256", "EdDSA"]
subject_claim = "email"
admin_claim = "groups"
admin_value = "greenroom-admins"
`

func TestContractAuthAndReading(t *testing.T) {
	const gh, ci, ops = "ghp_contract0123456789", "ci-token-0123456789abcdef0123456789", "ops-token-0123456789abcdef0123456789"
	c := mustRead(t, contractAuthAndReading, map[string]string{"GITHUB_TOKEN": gh, "CI_TOKEN": ci, "OPS_TOKEN": ops})
	r := c.Reading
	if len(r.Allow) != 2 || r.Allow[0].Host != "raw.githubusercontent.com" || strings.Join(r.Allow[0].Paths, ",") != "/backstage/" ||
		r.Allow[1].Host != "*.example.com" || r.MaxBytes != 16<<20 || r.Timeout.D() != 30*time.Second {
		t.Errorf("reading: %+v", r)
	}
	d := c.Plugins["docs"]
	if d.LogLevel != "warn" || d.Limits.LogRate != 100 || d.Limits.LogBurst != 200 ||
		strings.Join(d.Capabilities.URLReader, ",") != "raw.githubusercontent.com/backstage/" {
		t.Errorf("plugins.docs: log_level %q, limits %+v, capabilities %+v", d.LogLevel, d.Limits, d.Capabilities)
	}
	if gs := c.Integrations.List("github"); len(gs) != 1 || gs[0].Host != "raw.githubusercontent.com" || gs[0].Token != gh {
		t.Errorf("integrations.github: %+v", gs)
	}
	if strings.Join(c.Plugins["hello"].PublicRoutes, ",") != "/ping" {
		t.Errorf("public_routes: %q", c.Plugins["hello"].PublicRoutes)
	}
	if tk := c.Auth.Tokens["ci"]; tk == nil || tk.Token != ci || tk.Subject != "service:ci" || strings.Join(tk.Plugins, ",") != "todo" || tk.Admin || tk.Type != "service" {
		t.Errorf("auth.tokens.ci: %+v", tk)
	}
	if tk := c.Auth.Tokens["ops"]; tk == nil || !tk.Admin || len(tk.Plugins) != 0 {
		t.Errorf("auth.tokens.ops: %+v", tk)
	}
	j := c.Auth.JWT
	if j == nil || j.JWKSURL != "https://idp.example.com/.well-known/jwks.json" || j.Issuer != "https://idp.example.com" || j.Audience != "greenroom" ||
		strings.Join(j.Algorithms, ",") != "RS256,ES256,EdDSA" || j.SubjectClaim != "email" || j.AdminClaim != "groups" || j.AdminValue != "greenroom-admins" {
		t.Errorf("auth.jwt: %+v", j)
	}
	if c.Auth.DangerouslyDisable || c.Server.RateLimit.PerSecond() != 100 || c.Server.RateBurst != 200 ||
		strings.Join(c.Server.CORS.Origins, ",") != "https://portal.example.com" {
		t.Errorf("auth %+v, server rate %+v burst %d, cors %+v", c.Auth, c.Server.RateLimit, c.Server.RateBurst, c.Server.CORS)
	}
	// The tokens are secrets, for every log line and config print.
	secrets := strings.Join(c.Secrets(), "\n")
	for _, s := range []string{gh, ci, ops} {
		if !strings.Contains(secrets, s) {
			t.Errorf("%q is not a secret", s)
		}
	}
	out, err := c.Print()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{gh, ci, ops} {
		if strings.Contains(string(out), s) {
			t.Errorf("config print shows %q", s)
		}
	}
	// A token under 32 characters is a config error.
	if _, err := read(t, contractAuthAndReading, map[string]string{"GITHUB_TOKEN": gh, "CI_TOKEN": "0123456789abcdef0123456789abcde", "OPS_TOKEN": ops}); err == nil ||
		!strings.Contains(err.Error(), "auth.tokens.ci.token: must be at least 32 characters") {
		t.Errorf("31-character token: %v", err)
	}
}

func TestContract(t *testing.T) {
	c := mustRead(t, contract, map[string]string{"HELLO_API_KEY": "s3cret-value"})
	h := c.Plugins["hello"]
	if h == nil {
		t.Fatal("no plugin hello")
	}
	if c.Server.BodyLimit != 4<<20 || h.Limits.Memory != 64<<20 || h.Limits.Timeout.D() != 5*time.Second ||
		h.Limits.Instances != 4 || h.Limits.QueueTimeout.D() != time.Second || h.Limits.MaxRequests != 10000 {
		t.Errorf("limits not decoded: %+v %+v", c.Server, h.Limits)
	}
	// The default, 3/4 of memory, is filled in: config print and the
	// plugins API show what is in effect (they showed 0B).
	if got := h.Limits.RetireMemory; got != 48<<20 {
		t.Errorf("retire memory default = %d, want 3/4 of memory", got)
	}
	if v, _ := h.ConfigValue("api_key"); v != "s3cret-value" {
		t.Errorf("api_key = %q", v)
	}
	if got := c.Secrets(); len(got) != 1 || got[0] != "s3cret-value" {
		t.Errorf("secrets = %q", got)
	}
	if keys := c.PluginSecretKeys("hello"); len(keys) != 1 || keys[0] != "api_key" {
		t.Errorf("secret keys = %q", keys)
	}
	out, err := c.Print()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3cret-value") || !strings.Contains(string(out), Redacted) {
		t.Errorf("print leaks or does not redact:\n%s", out)
	}
	if !strings.Contains(string(out), "retire_memory = '48MiB'") {
		t.Errorf("print does not show the retire_memory in effect:\n%s", out)
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name, text string
		want       []string
	}{
		{"unknown key with line", "[server]\nlisten = \"127.0.0.1:1\"\nlistne = \"x\"\n", []string{"config.toml:3: server.listne: unknown key \"listne\""}},
		{"unknown top-level table", "\n[srever]\nlisten = \"x\"\n", []string{"config.toml:2: srever: unknown key"}},
		{"unknown plugin limit", "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\nmemroy = \"1MiB\"\n", []string{"config.toml:4: plugins.a.limits.memroy: unknown key"}},
		{"missing env var", "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.config]\nkey = \"${NOPE}\"\n", []string{"config.toml:4: plugins.a.config.key: environment variable NOPE is not set"}},
		{"bad duration", "[plugins.a]\npath = \"a.wasm\"\nlimits = { timeout = \"5 parsecs\" }\n", []string{"config.toml:3: plugins.a.limits.timeout: invalid duration \"5 parsecs\""}},
		{"bad size", "[server]\nbody_limit = \"lots\"\n", []string{"config.toml:2: server.body_limit: invalid size \"lots\""}},
		{"header_limit too small", "[server]\nheader_limit = \"1KiB\"\n", []string{"config.toml:2: server.header_limit: must be from 4KiB to 1MiB, got 1024 bytes"}},
		{"header_limit too large", "[server]\nheader_limit = \"2MiB\"\n", []string{"config.toml:2: server.header_limit: must be from 4KiB to 1MiB, got 2097152 bytes"}},
		{"max_connections zero", "[server]\nmax_connections = 0\n", []string{"config.toml:2: server.max_connections: must be from 1 to 262144, got 0"}},
		{"max_connections too many", "[server]\nmax_connections = 300000\n", []string{"config.toml:2: server.max_connections: must be from 1 to 262144, got 300000"}},
		{"db_max_size on PostgreSQL", "[database]\nclient = \"pg\"\nconnection = \"postgres://localhost/x\"\n[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\ndb_max_size = \"1GiB\"\n", []string{"config.toml:7: plugins.a.limits.db_max_size: is enforced on SQLite only"}},
		{"db_max_size too small", "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\ndb_max_size = \"4KiB\"\n", []string{"config.toml:4: plugins.a.limits.db_max_size: must be at least 64KiB (or 0 for no bound), got 4KiB"}},
		{"request_budget under body_limit", "[server]\nbody_limit = \"8MiB\"\nrequest_budget = \"4MiB\"\n", []string{"config.toml:3: server.request_budget: (4MiB) must be at least server.body_limit (8MiB)"}},
		{"response_budget zero", "[server]\nresponse_budget = \"0\"\n", []string{"config.toml:2: server.response_budget: must be more than 0"}},
		{"max_response over response_budget", "[server]\nresponse_budget = \"8MiB\"\n[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\nmax_response = \"9MiB\"\n", []string{"config.toml:6: plugins.a.limits.max_response: (9MiB) must not exceed server.response_budget (8MiB)"}},
		{"default max_response over response_budget", "[server]\nresponse_budget = \"1MiB\"\n[plugins.a]\npath = \"a.wasm\"\n", []string{"plugins.a.limits.max_response: (16MiB) must not exceed server.response_budget (1MiB)"}},
		{"wrong type", "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\ninstances = \"four\"\n", []string{"config.toml:4: plugins.a.limits.instances: want an integer, got string \"four\""}},
		{"size of a wrong type", "[server]\nbody_limit = true\nresponse_budget = 1.5\n", []string{"config.toml:2: server.body_limit: want a size (a whole number of bytes, or a string with a unit such as \"4MiB\"), got boolean true",
			"config.toml:3: server.response_budget: want a size"}},
		{"metrics on the main listener", "[server]\nlisten = \"127.0.0.1:7007\"\nmetrics_listen = \"127.0.0.1:7007\"\n", []string{"config.toml:3: server.metrics_listen: 127.0.0.1:7007 is server.listen's address (127.0.0.1:7007)"}},
		{"metrics on the main listener by name", "[server]\nlisten = \"127.0.0.1:7007\"\nmetrics_listen = \"localhost:7007\"\n", []string{"config.toml:3: server.metrics_listen: localhost:7007 is server.listen's address (127.0.0.1:7007), or overlaps it"}},
		{"metrics on every address of the main port", "[server]\nlisten = \"127.0.0.1:7007\"\nmetrics_listen = \"0.0.0.0:7007\"\n", []string{"config.toml:3: server.metrics_listen: 0.0.0.0:7007 is server.listen's address"}},
		{"metrics on the main port, all addresses", "[server]\nlisten = \":7007\"\nmetrics_listen = \"[::1]:7007\"\n", []string{"config.toml:3: server.metrics_listen: [::1]:7007 is server.listen's address"}},
		{"db_max_result too large", "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\ndb_max_result = \"3GiB\"\n", []string{"plugins.a.limits.db_max_result: must be at most 1GiB, got 3GiB"}},
		{"db_statement_timeout past PostgreSQL's", "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\ndb_statement_timeout = \"600h\"\n", []string{"config.toml:4: plugins.a.limits.db_statement_timeout: must be at most 596h31m23.647s (PostgreSQL's statement_timeout takes at most 2147483647 ms), got 600h0m0s"}},
		{"migration_timeout past PostgreSQL's", "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\nmigration_timeout = \"596h31m23.648s\"\n", []string{"config.toml:4: plugins.a.limits.migration_timeout: must be at most 596h31m23.647s"}},
		{"migration_timeout zero", "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\nmigration_timeout = \"0s\"\n", []string{"config.toml:4: plugins.a.limits.migration_timeout: must be more than 0"}},
		{"log_rate nan", "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\nlog_rate = nan\n", []string{"config.toml:4: plugins.a.limits.log_rate: want a finite number, got NaN"}},
		{"log_rate inf", "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\nlog_rate = inf\n", []string{"plugins.a.limits.log_rate: want a finite number, got +Inf"}},
		{"gc_percent out of range", "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\ngc_percent = -5\n", []string{"plugins.a.limits.gc_percent: must be -1 (off), 0 (Go's default, 100) or a percentage up to 10000, got -5"}},
		{"bad plugin id", "[plugins.Hello]\npath = \"a.wasm\"\n", []string{"config.toml:1: plugins.Hello: plugin id \"Hello\" is invalid"}},
		{"missing path", "[plugins.a]\n", []string{"plugins.a.path: must name a .wasm file"}},
		{"syntax", "[server\n", []string{"config.toml:1: TOML syntax error at column"}},
		{"syntax on a later line", "[server]\nlisten = \"x\"\nbody_limit = = 3\n", []string{"config.toml:3: TOML syntax error at column 14"}},
		{"short token", "[auth.tokens.ci]\ntoken = \"short\"\nsubject = \"service:ci\"\n", []string{"config.toml:2: auth.tokens.ci.token: must be at least 32 characters"}},
		{"short token in bytes only", "[auth.tokens.ci]\ntoken = \"€€€€€€€€€€€\"\nsubject = \"service:ci\"\n", []string{"config.toml:2: auth.tokens.ci.token: must be at least 32 characters"}},
		{"token with a newline", "[auth.tokens.ci]\ntoken = \"0123456789abcdef0123456789abcdef\\n\"\nsubject = \"service:ci\"\n", []string{"config.toml:2: auth.tokens.ci.token: must not begin or end with whitespace"}},
		{"blank subject", "[auth.tokens.ci]\ntoken = \"0123456789abcdef0123456789abcdef\"\nsubject = \"  \"\n", []string{"config.toml:3: auth.tokens.ci.subject: must not be empty"}},
		{"subject with a newline", "[auth.tokens.ci]\ntoken = \"0123456789abcdef0123456789abcdef\"\nsubject = \"service:ci\\n\"\n", []string{"config.toml:3: auth.tokens.ci.subject: must not begin or end with whitespace"}},
		{"subject with a control character", "[auth.tokens.ci]\ntoken = \"0123456789abcdef0123456789abcdef\"\nsubject = \"service:\\u001bci\"\n", []string{"config.toml:3: auth.tokens.ci.subject: must not contain control characters"}},
		{"token for no plugin", "[auth.tokens.ci]\ntoken = \"0123456789abcdef0123456789abcdef\"\nsubject = \"service:ci\"\nplugins = []\n", []string{"config.toml:4: auth.tokens.ci.plugins: is empty: list the plugins the token may call"}},
		{"jwt none", "[auth.jwt]\njwks_url = \"https://idp/jwks\"\nissuer = \"i\"\naudience = \"a\"\nalgorithms = [\"none\", \"HS256\"]\n", []string{"auth.jwt.algorithms[0]: \"none\" is not allowed", "auth.jwt.algorithms[1]: \"HS256\" is not allowed"}},
		{"jwt blank or padded", "[auth.jwt]\njwks_url = \"https://idp/jwks\"\nissuer = \"  \"\naudience = \"greenroom\\n\"\nsubject_claim = \" sub\"\n", []string{
			"config.toml:3: auth.jwt.issuer: must not be empty", "config.toml:4: auth.jwt.audience: must not begin or end with whitespace",
			"config.toml:5: auth.jwt.subject_claim: must not begin or end with whitespace"}},
		{"jwt leeway", "[auth.jwt]\njwks_url = \"https://idp/jwks\"\nissuer = \"i\"\naudience = \"a\"\nleeway = \"-1s\"\n", []string{"config.toml:5: auth.jwt.leeway: invalid duration \"-1s\": negative"}},
		{"token type", "[auth.tokens.ci]\ntoken = \"0123456789abcdef0123456789abcdef\"\nsubject = \"service:ci\"\ntype = \"robot\"\n", []string{"auth.tokens.ci.type: must be service or user, got \"robot\""}},
		{"public routes", "[plugins.a]\npath = \"a.wasm\"\npublic_routes = [\"ping\", \"/x?y=1\", \"/static/*\", \"/a b\", \"/files/{path...}\"]\n", []string{
			"plugins.a.public_routes[0]: route \"ping\" must start with /", "public_routes[1]: route \"/x?y=1\" must be a path only",
			"public_routes[2]: route \"/static/*\": public routes are exact paths", "public_routes[3]: route \"/a b\" must not contain spaces",
			"public_routes[4]: route \"/files/{path...}\": public routes are exact paths"}},
		{"lease too short", "[scheduler]\nlease = \"500ms\"\n", []string{"config.toml:2: scheduler.lease: must be at least 1s, got 500ms"}},
		{"lease too long", "[scheduler]\nlease = \"600000h\"\n", []string{"config.toml:2: scheduler.lease: must be at most 24h (a replica that dies mid-run holds its task this long), got 600000h"}},
		{"sqlite_memory too small", "[database]\nsqlite_memory = \"1MiB\"\n", []string{"config.toml:2: database.sqlite_memory: must be at least 64MiB (or 0 for no bound), got 1MiB"}},
		{"body_limit over 2GiB", "[server]\nbody_limit = \"3GiB\"\nrequest_budget = \"4GiB\"\n", []string{"config.toml:2: server.body_limit: must be at most 2130706431 bytes (2GiB less 16MiB and one byte"}},
		{"body_limit just over the envelope's room", "[server]\nbody_limit = 2130706432\nrequest_budget = \"4GiB\"\n", []string{"config.toml:2: server.body_limit: must be at most 2130706431 bytes"}},
		{"read_timeout zero", "[server]\nread_timeout = \"0s\"\nwrite_timeout = \"0s\"\nidle_timeout = \"0s\"\n", []string{"config.toml:2: server.read_timeout: must be more than 0", "config.toml:3: server.write_timeout: must be more than 0"}},
		{"cors", "[server.cors]\norigins = [\"https://ok.example\", \"example.com\", \"https://a.example/path\", \"https://x,y\", \"*\"]\nmethods = [\"GET\", \"BAD METHOD\"]\nheaders = [\"X-Ok\", \"a:b\"]\nmax_age = -1\nallow_credentials = true\n", []string{
			"server.cors.origins[1]: origin \"example.com\" must start with http:// or https://", "server.cors.origins[2]: origin \"https://a.example/path\" must be a scheme and a host",
			"server.cors.origins[3]", "server.cors.origins[4]: \"*\" allows every origin and cannot be combined", "server.cors.allow_credentials: cannot be true with origin \"*\"",
			"server.cors.methods[1]: \"BAD METHOD\" is not an HTTP method", "server.cors.headers[1]: \"a:b\" is not an HTTP header name", "server.cors.max_age: must not be negative"}},
		{"host patterns that could never match", "[[reading.allow]]\nhost = \"ex!ample.com\"\n[[reading.allow]]\nhost = \"example.com?x=1\"\n[[reading.allow]]\nhost = \".\"\n[[reading.allow]]\nhost = \"*.a..b\"\n[[reading.allow]]\nhost = \"127.1\"\n[[reading.allow]]\nhost = \"*.Example.COM.\"\n[[reading.allow]]\nhost = \"10.0.0.1\"\n" +
			"[[integrations.generic]]\nhost = \"docs\\texample\"\n[plugins.a]\npath = \"a.wasm\"\ncapabilities.urlreader = [\"ok.example/x\", \"b\\u0000d.example/\"]\n", []string{
			"config.toml:2: reading.allow[0].host: host \"ex!ample.com\" must be a host name, optionally starting with \"*.\": byte 2 ('!') is not a letter",
			"config.toml:4: reading.allow[1].host: host \"example.com?x=1\" must be a host name", "config.toml:6: reading.allow[2].host: host \".\" must be a host name, optionally starting with \"*.\": it has an empty label",
			"config.toml:8: reading.allow[3].host: host \"*.a..b\" must be a host name, optionally starting with \"*.\": it has an empty label",
			"config.toml:10: reading.allow[4].host: host \"127.1\" must be a host name, optionally starting with \"*.\": it ends in a number but is not an IPv4 address",
			"integrations.generic[0].host: must be a plain host name", "plugins.a.capabilities.urlreader[1]: host \"b\\x00d.example\" must be a host name"}},
		{"cors origins that are not origins", "[server.cors]\norigins = [\"https://app.example.com:99999\", \"https://app!.example.com\", \"https://app..example.com\", \"https://*.example.com:443\", \"http://[::1]:8080\", \"https://app.example.com:\"]\n", []string{
			"server.cors.origins[0]: origin \"https://app.example.com:99999\" has a port that is not a number from 1 to 65535",
			"server.cors.origins[1]: origin \"https://app!.example.com\" has a host that is not a host name: byte 3 ('!')",
			"server.cors.origins[2]: origin \"https://app..example.com\" has a host that is not a host name: it has an empty label",
			"server.cors.origins[5]: origin \"https://app.example.com:\" has a port"}},
		{"negative size", "[server]\nbody_limit = -1\n", []string{"config.toml:2: server.body_limit: must not be negative, got -1"}},
		{"nested default", "[server]\nlisten = \"${A:-${B}}\"\n", []string{"config.toml:2: server.listen: nested ${ in \"${A:-${B}}\" is not supported"}},
		{"escape in a default", "[log]\nlevel = \"${NOPE:-$${x}\"\n", []string{"config.toml:2: log.level: nested ${ in \"${NOPE:-$${x}\" is not supported"}},
		{"all at once", "[server]\nlistne = 1\n[log]\nlevel = \"loud\"\n[plugins.a]\npath = \"a.wasm\"\nlimits.timeout = \"soon\"\nconfig.k = \"${MISSING}\"\n",
			[]string{"config.toml:2: server.listne: unknown key", "config.toml:4: log.level: must be one of", "config.toml:7: plugins.a.limits.timeout: invalid duration", "config.toml:8: plugins.a.config.k: environment variable MISSING is not set"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := read(t, tc.text, nil)
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err = %v, want Errors", err)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain %q:\n%s", w, msg)
				}
			}
			if len(es) < len(tc.want) {
				t.Errorf("got %d errors, want at least %d:\n%s", len(es), len(tc.want), msg)
			}
		})
	}
}

func TestSubstitution(t *testing.T) {
	vars := map[string]string{"HOST": "10.0.0.1", "EMPTY": ""}
	c := mustRead(t, `
[server]
listen = "${HOST}:${PORT:-7007}"
[plugins.a]
path = "$${NOT_A_VAR}/a.wasm"
[plugins.a.config]
empty = "${EMPTY}"
defaulted = "${EMPTY:-fallback}"
`, vars)
	if c.Server.Listen != "10.0.0.1:7007" {
		t.Errorf("listen = %q", c.Server.Listen)
	}
	if c.Plugins["a"].Path != "${NOT_A_VAR}/a.wasm" {
		t.Errorf("escaped path = %q", c.Plugins["a"].Path)
	}
	if v, _ := c.Plugins["a"].ConfigValue("empty"); v != "" {
		t.Errorf("empty = %q", v)
	}
	if v, _ := c.Plugins["a"].ConfigValue("defaulted"); v != "fallback" {
		t.Errorf("defaulted = %q", v)
	}
	if !c.IsSecretPath("server.listen") || c.IsSecretPath("plugins.a.config.defaulted") {
		t.Errorf("secret paths wrong: listen %v defaulted %v", c.IsSecretPath("server.listen"), c.IsSecretPath("plugins.a.config.defaulted"))
	}
	if _, err := read(t, "[server]\nlisten = \"${BAD NAME}\"\n", nil); err == nil || !strings.Contains(err.Error(), "invalid variable reference") {
		t.Errorf("bad reference: %v", err)
	}
	// A substituted value is data, not TOML: quotes and newlines stay in the string.
	c = mustRead(t, "[plugins.a]\npath = \"a.wasm\"\nconfig.k = \"${V}\"\n", map[string]string{"V": "x\"\n[server]\nlisten = \"0.0.0.0:1\""})
	if c.Server.Listen != "127.0.0.1:7007" {
		t.Errorf("substitution injected config: listen = %q", c.Server.Listen)
	}
}

func TestMergeKeyByKey(t *testing.T) {
	base := Source{Name: "base.toml", Data: []byte(`
[server]
listen = "127.0.0.1:7007"
body_limit = "4MiB"
[plugins.hello]
path = "hello.wasm"
limits = { timeout = "5s", instances = 2 }
config = { greeting = "hello", nested = { a = 1, b = true } }
`)}
	override := Source{Name: "prod.toml", Data: []byte(`
[server]
listen = "0.0.0.0:8080"
[plugins.hello.limits]
instances = 8
[plugins.hello.config.nested]
b = false
`)}
	c, err := Read([]Source{base, override}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	h := c.Plugins["hello"]
	if c.Server.Listen != "0.0.0.0:8080" || c.Server.BodyLimit != 4<<20 {
		t.Errorf("server = %+v", c.Server)
	}
	if h.Limits.Instances != 8 || h.Limits.Timeout.D() != 5*time.Second {
		t.Errorf("limits = %+v", h.Limits)
	}
	flat := h.FlatConfig()
	if flat["greeting"] != "hello" || flat["nested.a"] != "1" || flat["nested.b"] != "false" {
		t.Errorf("flat config = %v", flat)
	}
	if o := c.Origin("server.listen"); o != "prod.toml:3" {
		t.Errorf("origin of server.listen = %q", o)
	}
	if o := c.Origin("server.body_limit"); o != "base.toml:4" {
		t.Errorf("origin of server.body_limit = %q", o)
	}
}

func TestConfigValueFormats(t *testing.T) {
	c := mustRead(t, `
[plugins.a]
path = "a.wasm"
secrets = ["pin"]
[plugins.a.config]
n = 42
f = 1.0
g = 2.5
b = true
list = ["x", 1]
big = 1_000_000
hex = 0xff
exp = 1e10
trail = 2.50
inf = inf
day = 2026-01-02
at = 07:30:00
when = 1979-05-27T07:32:00-08:00
pin = 0x1234
"max conns" = 0x10
"a.b" = 1_000
[plugins.a.config.db]
host = "h"
port = 5_432
`, nil)
	p := c.Plugins["a"]
	// Numbers, booleans and date-times as their TOML text, as written.
	for k, want := range map[string]string{"n": "42", "f": "1.0", "g": "2.5", "b": "true", "list": `["x",1]`, "db.host": "h", "db.port": "5_432",
		"big": "1_000_000", "hex": "0xff", "exp": "1e10", "trail": "2.50", "inf": "inf", "day": "2026-01-02", "at": "07:30:00", "when": "1979-05-27T07:32:00-08:00", "max conns": "0x10"} {
		if got, ok := p.ConfigValue(k); !ok || got != want {
			t.Errorf("%s = %q, %v; want %q", k, got, ok, want)
		}
		if got := p.FlatConfig()[k]; got != want {
			t.Errorf("FlatConfig()[%s] = %q; want %q", k, got, want)
		}
	}
	// A quoted key with a dot is one key: FlatConfig has it whole.
	if got := p.FlatConfig()["a.b"]; got != "1_000" {
		t.Errorf(`FlatConfig()["a.b"] = %q, want 1_000`, got)
	}
	// A later file's value replaces the text too.
	merged, err := Read([]Source{
		{Name: "a.toml", Data: []byte("[plugins.a]\npath = \"a.wasm\"\n[plugins.a.config]\nx = 0xff\ny = 1_000\n")},
		{Name: "b.toml", Data: []byte("[plugins.a.config]\nx = \"text\"\ny = 7\n")},
	}, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if x, _ := merged.Plugins["a"].ConfigValue("x"); x != "text" {
		t.Errorf("x = %q after a later file set a string", x)
	}
	if y, _ := merged.Plugins["a"].ConfigValue("y"); y != "7" {
		t.Errorf("y = %q after a later file set 7", y)
	}
	// A listed secret is redacted as the plugin reads it.
	if secrets := strings.Join(c.Secrets(), " "); !strings.Contains(secrets, "0x1234") {
		t.Errorf("secrets %q lack the pin as written", secrets)
	}
	if _, ok := p.ConfigValue("missing"); ok {
		t.Error("missing key found")
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]Size{"4MiB": 4 << 20, "512KiB": 512 << 10, "1GiB": 1 << 30, "100": 100, "16MB": 16e6, "2.5MiB": 5 << 19,
		// Exact decimals: a float64 product misses these by a rounding error.
		"4.1MB": 4_100_000, "8.2MB": 8_200_000, "16.1KB": 16_100, "4.1GB": 4_100_000_000, "0.3KB": 300, "1e6": 1_000_000, "1.5E3B": 1500} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1MiB", "lots", "1XB", "NaN", "1.9B", "4.0001KiB", "0.5",
		"1/2MiB", "0x10", "1e999999999", "1.2.3", ".", "1e", "8EiB", "9223372036854775808", "+-1e3"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
}

func TestAuthKeys(t *testing.T) {
	c := mustRead(t, `
[auth.tokens.ci]
token = "${CI_TOKEN}"
subject = "service:ci"
plugins = ["todo"]
[auth.tokens.ops]
token = "ops-token-0123456789abcdef0123456789"
subject = "user:default/ops"
type = "user"
admin = true
[auth.jwt]
jwks_url = "https://idp.example/jwks"
issuer = "https://idp.example"
audience = "greenroom"
[plugins.hello]
path = "hello.wasm"
public_routes = ["/ping", "/"]
[server]
rate_limit = "100/s"
rate_burst = 200
[server.cors]
origins = ["https://app.example", "https://*.example.org", "http://localhost:3000"]
`, map[string]string{"CI_TOKEN": "ci-token-0123456789abcdef0123456789"})
	if ci := c.Auth.Tokens["ci"]; ci.Type != "service" || ci.Plugins[0] != "todo" || ci.Admin {
		t.Errorf("ci = %+v", ci)
	}
	if ops := c.Auth.Tokens["ops"]; ops.Type != "user" || !ops.Admin {
		t.Errorf("ops = %+v", ops)
	}
	j := c.Auth.JWT
	if j == nil || j.SubjectClaim != "sub" || j.Leeway.D() != 30*time.Second || j.PrincipalType != "user" || len(j.Algorithms) != 3 {
		t.Errorf("jwt defaults = %+v", j)
	}
	if c.Server.RateLimit.PerSecond() != 100 || c.Server.RateBurst != 200 {
		t.Errorf("rate = %+v burst %d", c.Server.RateLimit, c.Server.RateBurst)
	}
	secrets := strings.Join(c.Secrets(), " ")
	if !strings.Contains(secrets, "ci-token-0123456789abcdef0123456789") || !strings.Contains(secrets, "ops-token-0123456789abcdef0123456789") {
		t.Errorf("tokens are not secrets: %q", secrets)
	}
	out, err := c.Print()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "-token-0123456789") {
		t.Errorf("config print shows a token:\n%s", out)
	}
	// A token without plugins (all of them) prints without the key: the
	// `plugins = []` it printed is refused as input.
	if strings.Contains(string(out), "plugins = []") || !strings.Contains(string(out), "plugins = ['todo']") {
		t.Errorf("config print of the tokens' plugins:\n%s", out)
	}
}

// A key listed in a plugin's secrets that holds a table or an array is
// secret in every value under it: each is registered for log redaction, as
// the plugin would log it, and config print shows each as [REDACTED].
func TestListedSecretSubtrees(t *testing.T) {
	c := mustRead(t, `
[plugins.a]
path = "a.wasm"
secrets = ["creds", "keys", "pin", "nested", "flag", "rate", "api key"]
[plugins.a.config]
greeting = "hello-in-clear"
"api key" = "quoted-key-secret"
port = 8080
enabled = true
creds = { password = "hunter2-long", deep = { otp = 135792468 } }
keys = ["key-one-1234", "array-secret-value-one"]
pin = 987654321
rate = 12.5
flag = true
nested = [{ k = "inline-table-secret-in-array" }, [2468013579]]
`, nil)
	values := []string{"quoted-key-secret", "hunter2-long", "135792468", "key-one-1234", "array-secret-value-one", "987654321", "12.5", "inline-table-secret-in-array", "2468013579"}
	secrets := c.Secrets()
	for _, v := range values {
		if !slices.Contains(secrets, v) {
			t.Errorf("Secrets() lacks %q: %q", v, secrets)
		}
	}
	if slices.Contains(secrets, "true") {
		t.Errorf("Secrets() holds a boolean, which would be cut out of every log line: %q", secrets)
	}

	// What a plugin logs, whole or value by value, leaks nothing.
	var buf bytes.Buffer
	log, _, err := logging.New(&buf, "text", "info", secrets)
	if err != nil {
		t.Fatal(err)
	}
	whole, _ := c.Plugins["a"].ConfigValue("creds")
	log.WithField("creds", whole).Info("keys: " + strings.Join(values, " "))
	for _, v := range values {
		if strings.Contains(buf.String(), v) {
			t.Errorf("log leaks %q: %s", v, buf.String())
		}
	}

	out, err := c.Print()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range append(values, "flag = true") {
		if strings.Contains(string(out), v) {
			t.Errorf("config print shows %q:\n%s", v, out)
		}
	}
	for _, want := range []string{"greeting = 'hello-in-clear'", "port = 8080", "enabled = true", "pin = '[REDACTED]'", "flag = '[REDACTED]'", "keys = ['[REDACTED]', '[REDACTED]']"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("config print lacks %q:\n%s", want, out)
		}
	}
}

// A password written in database.connection is a secret: config print
// shows [REDACTED] in its place, and it is registered for log redaction.
func TestConnectionPassword(t *testing.T) {
	cases := []struct {
		conn, print string
		secrets     []string
	}{
		{"postgres://u:literal-db-password@db.internal:5432/app", "postgres://u:[REDACTED]@db.internal:5432/app", []string{"literal-db-password"}},
		{"postgresql://u:p%40ss+word@h/db?sslmode=disable", "postgresql://u:[REDACTED]@h/db?sslmode=disable", []string{"p%40ss+word", "p@ss+word", "p@ss word"}},
		{"postgres://u:pa/ss?w@rd@h/db", "postgres://u:[REDACTED]@h/db", []string{"pa/ss?w@rd"}},
		{"postgres://h/db?sslmode=require&password=query-secret&user=u", "postgres://h/db?sslmode=require&password=[REDACTED]&user=u", []string{"query-secret"}},
		{"postgres://h/db?pass%77ord=encoded-key-secret", "postgres://h/db?pass%77ord=[REDACTED]", []string{"encoded-key-secret"}},
		{"postgres://u@h/db", "postgres://u@h/db", nil},
		{"host=h user=u password=kv-secret-1 dbname=app", "host=h user=u password=[REDACTED] dbname=app", []string{"kv-secret-1"}},
		{`host=h password = 'it\'s a secret' dbname=app`, `host=h password = '[REDACTED]' dbname=app`, []string{`it\'s a secret`, "it's a secret"}},
		// sslpassword decrypts the client's TLS key: a password too.
		{"host=h sslkey=/k.pem sslpassword=kv-key-pass password=kv-secret-2", "host=h sslkey=/k.pem sslpassword=[REDACTED] password=[REDACTED]", []string{"kv-key-pass", "kv-secret-2"}},
		{`sslpassword = 'key pass\'s' dbname=app`, `sslpassword = '[REDACTED]' dbname=app`, []string{`key pass\'s`, "key pass's"}},
		{"file:.greenroom/data", "file:.greenroom/data", nil},
		// pgx reads a string as a URL only when it starts with
		// postgres:// or postgresql://: a "://" elsewhere in the
		// keyword/value form (a value that is a URL, or holds one) left
		// its password in the errors that quote the value
		// (TestSQLiteConnectionErrorHidesPassword,
		// TestMalformedReferenceHidesCredential).
		{"host=db user=app password=kv-secret-3 application_name=http://x", "host=db user=app password=[REDACTED] application_name=http://x", []string{"kv-secret-3"}},
		{"host=db password=ab://kv-secret-4@h dbname=app", "host=db password=[REDACTED] dbname=app", []string{"ab://kv-secret-4@h"}},
		{"host=db password=kv-secret-6 options=x://u:notpw@h", "host=db password=[REDACTED] options=x://u:notpw@h", []string{"kv-secret-6"}},
		// A '/' and an '@' after a "://" in a value of the keyword/value
		// form are no URL's userinfo to refuse: pgx takes them as written.
		{"host=db password=p://h/kv-secret-8@x", "host=db password=[REDACTED]", []string{"p://h/kv-secret-8@x"}},
		// pgx (as libpq) separates pairs with \v and \f too.
		{"host=db\vpassword=kv-secret-5\fdbname=app", "host=db\vpassword=[REDACTED]\fdbname=app", []string{"kv-secret-5"}},
		// Not a URL pgx reads, nor keyword/value: its userinfo is still hidden.
		{"POSTGRES://u:url-secret-7@h/db", "POSTGRES://u:[REDACTED]@h/db", []string{"url-secret-7"}},
	}
	for _, tc := range cases {
		t.Run(tc.conn, func(t *testing.T) {
			if _, err := pgx.ParseConfig(tc.conn); err == nil {
				if got, err := ParsePGConnection(tc.conn); err != nil {
					t.Errorf("ParsePGConnection: %v", err)
				} else if got.Password != "" && !slices.Contains(tc.secrets, got.Password) {
					t.Errorf("pgx's password %q is none of the secrets %q", got.Password, tc.secrets)
				}
			}
			if got := redactConnection(tc.conn); got != tc.print {
				t.Errorf("redactConnection = %q, want %q", got, tc.print)
			}
			if got := connectionSecrets(tc.conn); !slices.Equal(got, tc.secrets) {
				t.Errorf("connectionSecrets = %q, want %q", got, tc.secrets)
			}
		})
	}

	c := mustRead(t, "[database]\nclient = \"pg\"\nconnection = \"postgres://u:literal-db-password@host/db\"\n", nil)
	out, err := c.Print()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "literal-db-password") || !strings.Contains(string(out), "connection = 'postgres://u:[REDACTED]@host/db'") {
		t.Errorf("config print shows the database password:\n%s", out)
	}
	if !slices.Contains(c.Secrets(), "literal-db-password") {
		t.Errorf("database password is not a secret: %q", c.Secrets())
	}
}

// Errors never show a value substituted from the environment, whichever
// check rejects it.
func TestErrorsRedactSecrets(t *testing.T) {
	cases := []struct {
		name, text, value string
		want              string
	}{
		{"validation", "[log]\nlevel = \"${V}\"\n", "hunter2-secret", `log.level: must be one of debug, info, warn, error, got "[REDACTED]"`},
		{"part of a value", "[server]\nlisten = \"${V}:99999\"\n", "hunter2-secret", `server.listen: invalid address "[REDACTED]": host must be`},
		{"whole address", "[server]\nlisten = \"${V}\"\n", "127.0.0.1:hunter2-secret", `server.listen: invalid address "[REDACTED]": the port must be`},
		{"quotes escaped", "[log]\nformat = \"${V}\"\n", "hunter\"2\nsecret", `log.format: must be text or json, got "[REDACTED]"`},
		{"short", "[log]\nformat = \"${V}\"\n", "xy", `log.format: must be text or json, got "[REDACTED]"`},
		{"decoding", "[plugins.a]\npath = \"a.wasm\"\nlimits.instances = \"${V}\"\n", "hunter2-secret", `plugins.a.limits.instances: want an integer, got string "[REDACTED]"`},
		{"text value", "[server]\nbody_limit = \"${V}\"\n", "hunter2-secret", `server.body_limit: invalid size "[REDACTED]"`},
		{"database", "[database]\nclient = \"sqlite\"\nconnection = \"${V}\"\n", "postgres://u:pw@h/db", `got "[REDACTED]"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := read(t, tc.text, map[string]string{"V": tc.value})
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error does not contain %q:\n%s", tc.want, msg)
			}
			leaks := []string{tc.value, strconv.Quote(tc.value)}
			if strings.Contains(tc.value, "hunter2-secret") {
				leaks = append(leaks, "hunter2-secret") // a part of the value
			}
			for _, leak := range leaks {
				if strings.Contains(msg, leak) {
					t.Errorf("error shows the secret %q:\n%s", tc.value, msg)
				}
			}
		})
	}
}

// Files are merged before substitution: a later file overrides a key whose
// earlier value names an unset variable, an overridden ${VAR} is neither
// substituted nor secret, and errors name the file and line of the value
// that is used.
func TestMergeThenSubstitute(t *testing.T) {
	base := Source{Name: "base.toml", Data: []byte("[plugins.hello]\npath = \"hello.wasm\"\n[plugins.hello.config]\napi_key = \"${HELLO_API_KEY}\"\nother = \"${OTHER:-x}\"\n")}
	over := Source{Name: "over.toml", Data: []byte("[plugins.hello.config]\napi_key = \"literal-override\"\n")}
	for _, vars := range []map[string]string{nil, {"HELLO_API_KEY": "s3cret-value"}} {
		c, err := Read([]Source{base, over}, env(vars))
		if err != nil {
			t.Fatalf("env %v: %v", vars, err)
		}
		if v, _ := c.Plugins["hello"].ConfigValue("api_key"); v != "literal-override" {
			t.Errorf("api_key = %q", v)
		}
		if c.IsSecretPath("plugins.hello.config.api_key") || len(c.Secrets()) != 0 {
			t.Errorf("overridden ${VAR} is secret: %v %q", c.IsSecretPath("plugins.hello.config.api_key"), c.Secrets())
		}
		out, err := c.Print()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "api_key = 'literal-override'") {
			t.Errorf("config print does not show the literal override:\n%s", out)
		}
	}

	over = Source{Name: "over.toml", Data: []byte("[server]\nlisten = \"${NOPE2}\"\n")}
	_, err := Read([]Source{base, over}, env(nil))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"base.toml:4: plugins.hello.config.api_key: environment variable HELLO_API_KEY is not set", "over.toml:2: server.listen: environment variable NOPE2 is not set"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
}

// A syntax error in one file reports the syntax errors only: the merged
// config lacks that file, and validating it would report false errors.
func TestSyntaxErrorSkipsValidation(t *testing.T) {
	broken := Source{Name: "base.toml", Data: []byte("[plugins.hello]\npath = \"hello.wasm\"\nx = = 1\n")}
	other := Source{Name: "over.toml", Data: []byte("[plugins.hello.limits]\ninstances = 2\n")}
	also := Source{Name: "third.toml", Data: []byte("[server\n")}
	_, err := Read([]Source{broken, other, also}, env(nil))
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("err = %v, want Errors", err)
	}
	if len(es) != 2 || !strings.HasPrefix(es[0].Error(), "base.toml:3: TOML syntax error") || !strings.HasPrefix(es[1].Error(), "third.toml:1: TOML syntax error") {
		t.Errorf("want the two syntax errors only, got:\n%v", err)
	}
}

// Only the array element that came from the environment is secret.
func TestArrayElementSecret(t *testing.T) {
	c := mustRead(t, "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.config]\narr = [\"${A1}\", \"${NOPE:-d2}\", \"lit\"]\n", map[string]string{"A1": "env-secret-1"})
	out, err := c.Print()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "arr = ['[REDACTED]', 'd2', 'lit']") {
		t.Errorf("config print:\n%s", out)
	}
	if !slices.Equal(c.Secrets(), []string{"env-secret-1"}) {
		t.Errorf("secrets = %q", c.Secrets())
	}
	var buf bytes.Buffer
	log, _, err := logging.New(&buf, "text", "info", c.Secrets())
	if err != nil {
		t.Fatal(err)
	}
	v, _ := c.Plugins["a"].ConfigValue("arr")
	log.Info("arr: " + v)
	if strings.Contains(buf.String(), "env-secret-1") {
		t.Errorf("log leaks the substituted value: %s", buf.String())
	}
}

// A file may start with a UTF-8 byte order mark.
func TestByteOrderMark(t *testing.T) {
	c := mustRead(t, "\xef\xbb\xbf[server]\nlisten = \"127.0.0.1:1\"\n", nil)
	if c.Server.Listen != "127.0.0.1:1" || c.Origin("server.listen") != "config.toml:2" {
		t.Errorf("listen = %q at %q", c.Server.Listen, c.Origin("server.listen"))
	}
}

// Finding keys' lines is linear: 100k keys took over a minute when each
// line was counted from the start of the file. (The keys are spread over
// tables of 100: go-toml's own duplicate-key check still scans a table's
// siblings, quadratic in the keys of one table.)
func TestLargeFileIsLinear(t *testing.T) {
	file := func(keys int) string {
		var b strings.Builder
		b.WriteString("[plugins.a]\npath = \"a.wasm\"\n")
		for i := range keys {
			if i%100 == 0 {
				fmt.Fprintf(&b, "[plugins.a.config.t%d]\n", i/100)
			}
			fmt.Fprintf(&b, "key_%d = \"value-%d\"\n", i, i)
		}
		return b.String()
	}
	// The best of three reads of n keys.
	read := func(n int) (time.Duration, *Config) {
		text := file(n)
		best := time.Duration(math.MaxInt64)
		var c *Config
		for range 3 {
			start := time.Now()
			c = mustRead(t, text, nil)
			best = min(best, time.Since(start))
		}
		return best, c
	}
	small, _ := read(10000)
	large, c := read(100000)
	// Ten times the keys: about ten times the time when linear, a hundred
	// when quadratic (20k keys once took 3 s). A ratio, not a time, so
	// that a slow machine (or -race) does not fail it; 60x, as a busy one
	// made it 44x once.
	if large > 60*small {
		t.Errorf("100k keys took %v, 10k %v: %.0fx for 10x the keys", large, small, float64(large)/float64(small))
	}
	if o := c.Origin("plugins.a.config.t999.key_99999"); o != "config.toml:101002" {
		t.Errorf("origin = %q", o)
	}
}

// go-toml's decoder checks each key against the entries decoded since its
// table (quadratic in a table's keys: 200 000 keys in one table, 2 MB,
// took 46 s) and builds every level of a key before the depth is checked
// (one 16 MB dotted key took 34 s and 4.7 GB): a pass over the file
// refuses both first, naming the line.
func TestDecodeWorkIsBounded(t *testing.T) {
	wide := func(n int) string {
		var b strings.Builder
		b.WriteString("[plugins.x]\npath = \"x.wasm\"\n[plugins.x.config]\n")
		for i := range n {
			fmt.Fprintf(&b, "k%d = 1\n", i)
		}
		return b.String()
	}
	if c := mustRead(t, wide(10000), nil); len(c.Plugins["x"].Config) != 10000 {
		t.Errorf("10 000 keys in one table: %d read", len(c.Plugins["x"].Config))
	}
	_, err := read(t, wide(200000), nil)
	if err == nil || !strings.Contains(err.Error(), "too many keys in one table") || !strings.Contains(err.Error(), "config.toml:") {
		t.Errorf("200 000 keys in one table: %v", err)
	}
	// The same in an inline table, which go-toml checks the same way (a
	// review: 80 000 keys in one took 10 s).
	inline := func(n int) string {
		var b strings.Builder
		b.WriteString("[plugins.x]\npath = \"x.wasm\"\n[plugins.x.config]\nbig = {")
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "k%d = 1", i)
		}
		b.WriteString("}\n")
		return b.String()
	}
	if c := mustRead(t, inline(10000), nil); len(c.Plugins["x"].Config["big"].(map[string]any)) != 10000 {
		t.Error("10 000 keys in one inline table: not all read")
	}
	_, err = read(t, inline(100000), nil)
	if err == nil || !strings.Contains(err.Error(), "too many keys in one table") || !strings.Contains(err.Error(), "config.toml:4") {
		t.Errorf("100 000 keys in one inline table: %v", err)
	}
	// Memory, not time, tells the key built whole (665 MiB) from the key
	// refused first (113 MiB, the parser's nodes of its parts): a
	// deterministic measure.
	deep := "a" + strings.Repeat(".a", 800000) + " = 1\n"
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err = read(t, deep, nil)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "levels deep") || !strings.Contains(err.Error(), "config.toml:1") {
		t.Errorf("a key 800 000 levels deep: %v", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
		t.Errorf("refusing a key 800 000 levels deep (%d bytes) allocated %d MiB", len(deep), alloc>>20)
	}
	deep = "t = { " + deep[:len(deep)-1] + " }\n"
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err = read(t, deep, nil)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "levels deep") || !strings.Contains(err.Error(), "config.toml:1") {
		t.Errorf("a key 800 000 levels deep in an inline table: %v", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
		t.Errorf("refusing a key 800 000 levels deep in an inline table allocated %d MiB", alloc>>20)
	}
	// A long key multiplies the work of every key under it (a review:
	// 20 000 keys under a 200 KB table name took 14 s and 3.9 GB): a
	// key, its table's name and inline tables counted, is at most 4 KiB.
	long := strings.Repeat("k", 200<<10)
	for name, text := range map[string]string{
		"table":        "[x.y." + long + "]\na = 1\n",
		"key":          "[x]\n" + long + " = 1\n",
		"inline table": "[x]\ny = { " + long + " = { k1 = 1, k2 = 2 } }\n",
		"under table":  "[" + strings.Repeat("t", 4000) + "]\n" + strings.Repeat("k", 200) + " = 1\n",
	} {
		if _, err := read(t, text, nil); err == nil || !strings.Contains(err.Error(), "a key longer than 4096 bytes") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := read(t, "[plugins.x]\npath = \"x.wasm\"\n[plugins.x.config]\n"+strings.Repeat("k", 4000)+" = 1\n", nil); err != nil {
		t.Errorf("a key of 4 000 bytes: %v", err)
	}
	// Depth is counted as the config's rule counts it: 64 levels in an
	// inline table under a table are read.
	ok := "[a.b]\nc = { " + strings.Repeat("d.", 60) + "e = 1 }\n"
	if _, err := read(t, ok, nil); err != nil && strings.Contains(err.Error(), "levels deep") {
		t.Errorf("64 levels: %v", err)
	}
}

// Load reads regular files of at most MaxFileSize bytes only.
func TestLoadRefuses(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok.toml")
	if err := os.WriteFile(ok, []byte("[server]\nlisten = \"127.0.0.1:1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := Load([]string{ok}, env(nil)); err != nil || c.Server.Listen != "127.0.0.1:1" {
		t.Fatalf("load: %v", err)
	}
	big := filepath.Join(dir, "big.toml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Load([]string{big}, env(nil)); err == nil || !strings.Contains(err.Error(), big+": 16777217 bytes is larger than the limit of 16MiB") {
		t.Errorf("big file: %v", err)
	}
	if _, err := Load([]string{dir}, env(nil)); err == nil || !strings.Contains(err.Error(), dir+": not a regular file") {
		t.Errorf("directory: %v", err)
	}
	if _, err := os.Stat("/dev/zero"); err == nil {
		if _, err := Load([]string{"/dev/zero"}, env(nil)); err == nil || !strings.Contains(err.Error(), "/dev/zero: not a regular file") {
			t.Errorf("/dev/zero: %v", err)
		}
	}
}

// A file that cannot be read does not hide the syntax errors of the files
// that could (an audit: only the read error was reported); the merged
// config is not validated without all its files.
func TestLoadReportsOtherFilesWhenOneIsMissing(t *testing.T) {
	dir := t.TempDir()
	dup := filepath.Join(dir, "dup.toml")
	if err := os.WriteFile(dup, []byte("[server]\nlisten = \"127.0.0.1:1\"\nlisten = \"x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fine := filepath.Join(dir, "fine.toml")
	if err := os.WriteFile(fine, []byte("[server]\nlisten = 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.toml")
	_, err := Load([]string{dup, fine, missing}, env(nil))
	if err == nil {
		t.Fatal("loaded with a missing file")
	}
	for _, want := range []string{"read config file: stat " + missing, dup + ":3:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "listen") && strings.Contains(err.Error(), fine) {
		t.Errorf("the merged config was validated without all its files: %v", err)
	}
}

// nan and inf, which TOML allows and JSON cannot hold, come back in a
// table or an array as the strings TOML spells them with, so that the
// plugin can decode the JSON; and a config holding nan equals itself (it
// counted as changed on every reload).
func TestConfigNaN(t *testing.T) {
	text := `
[plugins.a]
path = "a.wasm"
[plugins.a.config]
list = [inf, nan, -inf, 1.5]
[plugins.a.config.nested]
x = nan
y = 2
`
	p := mustRead(t, text, nil).Plugins["a"]
	if v, _ := p.ConfigValue("list"); v != `["inf","nan","-inf",1.5]` {
		t.Errorf("list = %s", v)
	}
	if v, _ := p.ConfigValue("nested"); v != `{"x":"nan","y":2}` {
		t.Errorf("nested = %s", v)
	}
	if v, _ := p.ConfigValue("nested.x"); v != "nan" {
		t.Errorf("nested.x = %s", v)
	}
	if math.IsNaN(p.Config["nested"].(map[string]any)["x"].(float64)) == false {
		t.Error("the config's own value was changed")
	}
	again := mustRead(t, text, nil).Plugins["a"]
	if !p.Equal(again) {
		t.Error("a plugin config holding nan does not equal itself")
	}
	other := mustRead(t, strings.Replace(text, "y = 2", "y = 3", 1), nil).Plugins["a"]
	if p.Equal(other) {
		t.Error("different configs are equal")
	}
}

// probeNumbers lists numbers under a listed secret key: an inline table as
// an operator writes it, with a hex integer, a plain one, one past 2^53
// (which a float64 cannot hold exactly) and a float; short is too short
// to redact, in any form.
const probeNumbers = `
[plugins.probe]
path = "p.wasm"
secrets = ["nested", "ratio", "short"]
[plugins.probe.config]
nested = { inner = "nestedsecretvalue", n = 0x1F2E3D4C, pin = 12345678, big = 98765432109876543 }
ratio = 31415926.5e3
short = 100
`

// A plugin that reads a secret table as JSON and decodes it into
// map[string]any holds its numbers as float64s, which logrus's text format
// (fmt's %v) writes as 1.2345678e+07 and encoding/json as 98765432109876540
// for 98765432109876543: those forms are secrets too.
func TestSecretNumbersAsFloats(t *testing.T) {
	c := mustRead(t, probeNumbers, nil)
	secrets := c.Secrets()
	for _, want := range []string{
		"nestedsecretvalue",
		"0x1F2E3D4C", "523124044", "5.23124044e+08",
		"12345678", "1.2345678e+07",
		"98765432109876543", "98765432109876540", "9.876543210987654e+16",
		"31415926.5e3", "3.14159265e+10", "31415926500",
	} {
		if !slices.Contains(secrets, want) {
			t.Errorf("Secrets() lacks %q: %q", want, secrets)
		}
	}
	// 100 is too short to redact (the redactor skips it); its float form
	// 1e+02 is not, and must not be registered in its stead.
	if slices.Contains(secrets, "1e+02") {
		t.Errorf("Secrets() holds 1e+02, a form of a secret under 4 characters: %q", secrets)
	}

	leaks := []string{"nestedsecretvalue", "523124044", "5.23124044", "12345678", "1.2345678", "9876543210987654", "9.876543210987654", "31415926500", "3.14159265"}
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			log, _, err := logging.New(&buf, format, "info", secrets)
			if err != nil {
				t.Fatal(err)
			}
			text, _ := c.Plugins["probe"].ConfigValue("nested")
			var m map[string]any
			if err := json.Unmarshal([]byte(text), &m); err != nil {
				t.Fatal(err)
			}
			for k, v := range m {
				log.WithField(k, v).Info("field " + k)
			}
			again, _ := json.Marshal(m)
			log.WithField("whole", string(again)).WithField("v", fmt.Sprint(m)).Info("whole")
			ratio, _ := c.Plugins["probe"].ConfigValue("ratio")
			f, _ := strconv.ParseFloat(ratio, 64)
			log.WithField("ratio", f).Infof("ratio %v %s", f, strconv.FormatFloat(f, 'f', -1, 64))
			for _, leak := range leaks {
				if strings.Contains(buf.String(), leak) {
					t.Errorf("log leaks %q:\n%s", leak, buf.String())
				}
			}
		})
	}
}

// A type error at a secret key names the type it found, never the value:
// a token written as a number is still the token.
func TestSecretTypeErrors(t *testing.T) {
	cases := []struct {
		name, text string
		want       string
		leaks      []string
	}{
		{"token integer", "[auth.tokens.ci2]\ntoken = 1234567890123456789\nsubject = \"service:ci\"\n",
			"config.toml:2: auth.tokens.ci2.token: want a string, got an integer", []string{"1234567890123456789", "1.234567890123456789e+18"}},
		{"integration token float", "[[integrations.github]]\nhost = \"github.com\"\ntoken = 9876543210987654321.5\n",
			"config.toml:3: integrations.github[0].token: want a string, got a float", []string{"9876543210987654321", "9.876543210987655e+18", "9876543210987655000"}},
		{"token boolean", "[auth.tokens.ci2]\ntoken = true\nsubject = \"service:ci\"\n",
			"auth.tokens.ci2.token: want a string, got a boolean", []string{"true"}},
		{"token written as the table", "[auth.tokens]\nci3 = \"inline-token-0123456789abcdefghij\"\n",
			`config.toml:2: auth.tokens.ci3: want a table, got string "[REDACTED]"`, []string{"inline-token"}},
		{"integration written as a string", "[integrations]\ngithub = \"ghp_0123456789abcdefghij\"\n",
			`config.toml:2: integrations.github: want an array, got string "[REDACTED]"`, []string{"ghp_"}},
		{"integration written as a number", "[integrations]\ngithub = [12345678901234]\n",
			`config.toml:2: integrations.github[0]: want a table, got an integer`, []string{"12345678901234"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := read(t, tc.text, nil)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error does not contain %q:\n%s", tc.want, msg)
			}
			for _, leak := range tc.leaks {
				if strings.Contains(msg, leak) {
					t.Errorf("error shows the secret %q:\n%s", leak, msg)
				}
			}
		})
	}
	// A value that is no secret is still quoted.
	if _, err := read(t, "[plugins.a]\npath = \"a.wasm\"\nlimits.instances = 4.5\n", nil); err == nil || !strings.Contains(err.Error(), "want an integer, got float 4.5") {
		t.Errorf("err = %v, want the value quoted", err)
	}
}

// The decoder knows every key the config treats as a secret before it has
// decoded anything: values from the environment, tokens, the tables that
// hold them, and the keys a plugin's secrets list names.
func TestSecretKeysBeforeDecoding(t *testing.T) {
	merged, _, _, _, err := parse([]byte(`
[plugins.a]
path = "a.wasm"
secrets = ["db", "pin"]
[plugins.a.config]
db = { password = "x" }
pin = 1234
pinx = 5
`))
	if err != nil {
		t.Fatal(err)
	}
	secret := secretKeys(merged, map[string]bool{"log.level": true})
	for path, want := range map[string]bool{
		"log.level": true, "log.format": false,
		"auth.tokens.ci.token": true, "auth.tokens.ci": true, "auth.tokens": true, "auth.tokens.ci.subject": false,
		"integrations.github[0].token": true, "integrations.github[0]": true, "integrations.github": true, "integrations.github[0].host": false,
		"plugins.a.config.db": true, "plugins.a.config.db.password": true, "plugins.a.config.pin": true, "plugins.a.config.pinx": false,
		"plugins.a.path": false, "plugins.b.config.db": false,
	} {
		if got := secret(path); got != want {
			t.Errorf("secret(%q) = %v, want %v", path, got, want)
		}
	}
}

// A password in auth.jwt.jwks_url's userinfo is a secret, as one in
// database.connection is: config print masks it, the log redactor knows
// it, and an error that quotes the URL does not show it.
func TestJWKSURLPassword(t *testing.T) {
	const jwt = "[auth.jwt]\nissuer = \"https://idp/\"\naudience = \"greenroom\"\njwks_url = "
	c := mustRead(t, jwt+"\"http://svc:hunter2password@127.0.0.1:18399/jwks\"\n", nil)
	if !slices.Contains(c.Secrets(), "hunter2password") {
		t.Errorf("jwks_url password is not a secret: %q", c.Secrets())
	}
	out, err := c.Print()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "hunter2password") || !strings.Contains(string(out), "jwks_url = 'http://svc:[REDACTED]@127.0.0.1:18399/jwks'") {
		t.Errorf("config print shows the jwks_url password:\n%s", out)
	}
	var buf bytes.Buffer
	log, _, err := logging.New(&buf, "text", "info", c.Secrets())
	if err != nil {
		t.Fatal(err)
	}
	log.WithField("jwks_url", c.Auth.JWT.JWKSURL).Warn("could not fetch the JWKS")
	if strings.Contains(buf.String(), "hunter2password") {
		t.Errorf("log shows the jwks_url password: %s", buf.String())
	}

	// Percent-encoded, it is a secret as written and decoded.
	c = mustRead(t, jwt+"\"https://svc:hunter%32pass%40word@idp.example/jwks\"\n", nil)
	for _, want := range []string{"hunter%32pass%40word", "hunter2pass@word"} {
		if !slices.Contains(c.Secrets(), want) {
			t.Errorf("Secrets() lacks %q: %q", want, c.Secrets())
		}
	}
	// Without a password, a user name as long as a token is the
	// credential (https://TOKEN@host/); so is a query parameter named
	// for one. Other parameters and a short name are not: as log
	// secrets they would cut words such as json out of every line.
	c = mustRead(t, jwt+"\"https://Tok3nAsUser-0123456789@idp.example:8443/jwks?access_token=Qu3ryT0ken&apiKey=a%2Bb123&format=json\"\n", nil)
	if got, want := c.Secrets(), []string{"Tok3nAsUser-0123456789", "Qu3ryT0ken", "a%2Bb123", "a+b123"}; !slices.Equal(got, want) {
		t.Errorf("Secrets() = %q, want %q", got, want)
	}
	if out, _ := c.Print(); !strings.Contains(string(out), "jwks_url = 'https://[REDACTED]@idp.example:8443/jwks?access_token=[REDACTED]&apiKey=[REDACTED]&format=json'") {
		t.Errorf("config print:\n%s", out)
	}
	// With an empty password (TOKEN:), the user name is the credential
	// too.
	c = mustRead(t, jwt+"\"http://JwksUserOnlyToken_abcdef:@127.0.0.1:18399/jwks.json\"\n", nil)
	if !slices.Contains(c.Secrets(), "JwksUserOnlyToken_abcdef") {
		t.Errorf("Secrets() lacks the user name: %q", c.Secrets())
	}
	if out, _ := c.Print(); !strings.Contains(string(out), "jwks_url = 'http://[REDACTED]:@127.0.0.1:18399/jwks.json'") {
		t.Errorf("config print:\n%s", out)
	}
	c = mustRead(t, jwt+"\"https://service@idp.example/jwks?tenant=main\"\n", nil)
	if len(c.Secrets()) != 0 {
		t.Errorf("secrets = %q, want none", c.Secrets())
	}
	// database.connection keeps its user name and other parameters, but
	// sslpassword (which decrypts the client's key) is a password.
	c = mustRead(t, "[database]\nclient = \"pg\"\nconnection = \"postgres://u@127.0.0.1/d?sslmode=disable&sslpassword=K3yPass\"\n", nil)
	if !slices.Equal(c.Secrets(), []string{"K3yPass"}) {
		t.Errorf("connection secrets = %q, want the sslpassword only", c.Secrets())
	}
	if out, _ := c.Print(); !strings.Contains(string(out), "postgres://u@127.0.0.1/d?sslmode=disable&sslpassword=[REDACTED]") {
		t.Errorf("config print:\n%s", out)
	}
	_, err = read(t, jwt+"\"https://idp.example:99999/jwks\"\n", nil)
	if err == nil || !strings.Contains(err.Error(), `auth.jwt.jwks_url: has port "99999": want 1 to 65535`) {
		t.Errorf("out-of-range port: err = %v", err)
	}

	_, err = read(t, jwt+"\"ftp://svc:hunter2password@idp.example/jwks\"\n", nil)
	if err == nil || strings.Contains(err.Error(), "hunter2password") || !strings.Contains(err.Error(), "auth.jwt.jwks_url: must be an http(s) URL") {
		t.Errorf("err = %v, want the URL refused without its password", err)
	}
	// A URL that does not parse is refused by the config (the runtime
	// went on without JWTs), and with a '/' in the password the parser's
	// message quoted the password's start as a port: not repeated.
	for raw, want := range map[string]string{
		"https://svc:Secr3tPrefix/Rest0fPassword@idp.example/jwks": "has an '@' after its host: percent-encode a '/', '?', '#' or '@' in the user name or password",
		"https://svc:Secr3t#Rest0fPassword@idp.example/jwks":       "has an '@' after its host",
		"https://svc:abc/Secr3tRest0f@idp.example/jwks":            "has an '@' after its host",
		"https://svc:12/Secr3tRest0f@idp.example/jwks":             "has an '@' after its host", // parsed, as host svc:12
		"https://svc:Secr3t%zzRest0f@idp.example/jwks":             "does not parse as a URL (a '/'",
		"https://idp.example/jwks%zz":                              `does not parse as a URL: invalid URL escape "%zz"`,
		"https:///jwks":                                            "has no host",
		// No '@': the parser takes the password for the port.
		"https://svc:Secr3tRest0f":          "does not parse as a URL: what follows the host's ':' is not a port",
		"https://svc:Secr3t#Rest0f":         "does not parse as a URL: what follows the host's ':' is not a port",
		"https://svc:Secr3tRest0f/jwks?x=1": "does not parse as a URL: what follows the host's ':' is not a port",
	} {
		_, err := read(t, jwt+strconv.Quote(raw)+"\n", nil)
		if err == nil || strings.Contains(err.Error(), "Secr3t") || strings.Contains(err.Error(), "Rest0f") || !strings.Contains(err.Error(), "auth.jwt.jwks_url: "+want) {
			t.Errorf("%s: err = %v, want it refused with %q and without the password", raw, err, want)
		}
	}
}

// A user name that is a credential is redacted from the log also as Go
// writes it back into a URL, escaped for the userinfo: url.URL.Redacted
// (the JWKS warnings' jwks_url field) and the HTTP client's errors quote
// it so, "Tok!en" as "Tok%21en", and ',' and ';' as they are (which a
// path segment would escape).
func TestJWKSURLUserEscaped(t *testing.T) {
	const jwt = "[auth.jwt]\nissuer = \"https://idp/\"\naudience = \"greenroom\"\njwks_url = "
	for _, user := range []string{"JwksUserTok!en*abcdef(1)", "JwksUserTok!en;abc,def(1)"} {
		raw := "http://" + user + "@127.0.0.1:18399/jwks.json"
		c := mustRead(t, jwt+strconv.Quote(raw)+"\n", nil)
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		_, clientErr := (&http.Client{Transport: failingTransport{}}).Get(raw)
		var buf bytes.Buffer
		log, _, err := logging.New(&buf, "text", "info", c.Secrets())
		if err != nil {
			t.Fatal(err)
		}
		log.WithField("jwks_url", u.Redacted()).WithError(clientErr).Warn("could not fetch the JWKS")
		if strings.Contains(buf.String(), "JwksUser") || strings.Count(buf.String(), logging.Redacted) != 2 {
			t.Errorf("%s: log shows the user name: %s", user, buf.String())
		}
	}
}

// failingTransport fails every request, as an unreachable server does.
type failingTransport struct{}

func (failingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("connection refused")
}

// A rate's count is bounded: "1e20/s" would overflow the limiter's burst
// (it became a limit of 1 request per second).
func TestRateBounds(t *testing.T) {
	for text, ok := range map[string]bool{
		"100/s": true, "1e9/s": true, "0.5/m": true,
		"1e20/s": false, "1000000001/h": false, "0/s": false, "-1/s": false, "NaN/s": false, "x": false,
	} {
		var r Rate
		if err := r.UnmarshalText([]byte(text)); (err == nil) != ok {
			t.Errorf("%q: err = %v, want ok %v", text, err, ok)
		}
	}
}

// A quoted key containing a dot and a nested path name the same key for
// greenroom.Config ("t.x"): the plugin would read one of them at random,
// so the config is refused, naming both with their lines.
func TestFlatNameCollision(t *testing.T) {
	_, err := read(t, `[plugins.cfgp]
path = "a.wasm"
secrets = ["t.x"]
[plugins.cfgp.config]
"t.x" = "flatsecretvalue"
t = { x = "nestedsecretvalue" }
`, nil)
	if err == nil {
		t.Fatal("no error for two keys named t.x")
	}
	want := `config.toml:5: plugins.cfgp.config."t.x": names the same key "t.x" as plugins.cfgp.config.t.x (config.toml:6)`
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error does not contain %q:\n%v", want, err)
	}
	for _, leak := range []string{"flatsecretvalue", "nestedsecretvalue"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("error shows %q:\n%v", leak, err)
		}
	}
	// Deeper, and across files: "a.b" = { c } and [a.b] d: a.b collides once.
	_, err = Read([]Source{
		{Name: "one.toml", Data: []byte("[plugins.p]\npath = \"a.wasm\"\n[plugins.p.config]\n\"a.b\" = { c = 1 }\n")},
		{Name: "two.toml", Data: []byte("[plugins.p.config.a.b]\nd = 2\n")},
	}, env(nil))
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || !strings.Contains(es[0].Error(), `one.toml:4: plugins.p.config."a.b": names the same key "a.b" as plugins.p.config.a.b (two.toml:1)`) {
		t.Errorf("err = %v, want one collision of a.b", err)
	}
}

// Two plugins must not get the same PostgreSQL role or schema: each would
// read and write the other's data. Long ids are cut and keep 32 bits of
// a hash, so two of them that agree on their first 47 bytes and on those
// bits share both; the config is refused, naming both with their lines.
// An id that only spells another's cut name does not (pgname).
func TestPluginNameCollision(t *testing.T) {
	// Found by search: sha256 of both begins baba18f4.
	a := "hash-collision-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-000000pdb"
	b := "hash-collision-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-000000umw"
	_, err := read(t, "[plugins."+a+"]\npath = \"a.wasm\"\n\n[plugins."+b+"]\npath = \"b.wasm\"\n", nil)
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("err = %v, want two errors (schema and role)", err)
	}
	for i, want := range []string{
		"config.toml:4: plugins." + b + ": would get the same PostgreSQL schema (plugin_hash_collision_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx_baba18f4) as plugins." + a + " (config.toml:1)",
		"config.toml:4: plugins." + b + ": would get the same PostgreSQL role (gr_<database hash>_hash_collision_xxxxxxxxxxxxxxxxxxxxxxxxxxx_baba18f4) as plugins." + a + " (config.toml:1)",
	} {
		if !strings.Contains(es[i].Error(), want) {
			t.Errorf("error %d = %v\nwant %s", i, es[i], want)
		}
	}
	// The pair of the audit: the short id spells the long one's role
	// (and, 5 bytes longer, its schema) but gets names of its own.
	long := "auddb-" + strings.Repeat("l", 57)
	for _, short := range []string{"auddb-llllllllllllllllllllllllllllllllllll-85869fbc", "auddb-lllllllllllllllllllllllllllllllllllllllll-85869fbc"} {
		mustRead(t, "[plugins."+long+"]\npath = \"a.wasm\"\n[plugins."+short+"]\npath = \"b.wasm\"\n", nil)
	}
}

// A secrets entry names a key as greenroom.Config does: a quoted key with
// a dot in it ("t.x") can be marked secret, and its value is redacted.
func TestSecretQuotedDottedKey(t *testing.T) {
	c := mustRead(t, `[plugins.p]
path = "a.wasm"
secrets = ["t.x", "u.v.w"]
[plugins.p.config]
"t.x" = "flatsecretvalue"
u = { "v.w" = "mixedsecretvalue" }
plain = "in-clear"
`, nil)
	p := c.Plugins["p"]
	flat := p.FlatConfig()
	for key, want := range map[string]string{"t.x": "flatsecretvalue", "u.v.w": "mixedsecretvalue"} {
		if flat[key] != want {
			t.Errorf("FlatConfig()[%q] = %q, want %q", key, flat[key], want)
		}
		if v, ok := p.ConfigValue(key); !ok || v != want {
			t.Errorf("ConfigValue(%q) = %q, %v", key, v, ok)
		}
		if !slices.Contains(c.Secrets(), want) {
			t.Errorf("Secrets() lacks %q: %q", want, c.Secrets())
		}
	}
	out, err := c.Print()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "secretvalue") || !strings.Contains(string(out), "in-clear") {
		t.Errorf("config print:\n%s", out)
	}
}

// A value whose substitution failed is reported once, naming the variable
// in clear, and is not checked further: no error about text the operator
// never wrote ("${L}" is no address), nor about a token's length.
func TestFailedSubstitutionIsNotValidated(t *testing.T) {
	const tok = "[auth.tokens.%s]\ntoken = \"${CI_TOKEN}\"\nsubject = \"service:ci\"\n"
	cases := []struct {
		name, text string
		want       []string
	}{
		{"address and duration", "[server]\nlisten = \"${L}\"\nread_timeout = \"${T}\"\n", []string{
			"config.toml:2: server.listen: environment variable L is not set (and ${L} has no default; write ${L:-default} to give one)",
			"config.toml:3: server.read_timeout: environment variable T is not set"}},
		{"token", fmt.Sprintf(tok, "ci"), []string{
			"config.toml:2: auth.tokens.ci.token: environment variable CI_TOKEN is not set (and ${CI_TOKEN} has no default; write ${CI_TOKEN:-default} to give one)"}},
		{"two tokens", fmt.Sprintf(tok, "a") + fmt.Sprintf(tok, "b"), []string{
			"config.toml:2: auth.tokens.a.token: environment variable CI_TOKEN is not set",
			"config.toml:5: auth.tokens.b.token: environment variable CI_TOKEN is not set"}},
		{"plugin path", "[plugins.a]\npath = \"${P}\"\n", []string{"config.toml:2: plugins.a.path: environment variable P is not set"}},
		{"token of the wrong type", "[auth.tokens.ci]\ntoken = 12\nsubject = \"service:ci\"\n", []string{
			"config.toml:2: auth.tokens.ci.token: want a string, got an integer"}},
		{"token table of the wrong type", "[auth.tokens]\nci = 12\n", []string{"config.toml:2: auth.tokens.ci: want a table, got an integer"}},
		{"malformed reference in a token", "[auth.tokens.ci]\ntoken = \"abcdefghij0123456789abcdefghij${X\"\nsubject = \"service:ci\"\n", []string{
			"config.toml:2: auth.tokens.ci.token: unclosed ${ in the value"}},
		{"duration of the wrong type", "[plugins.a]\npath = \"a.wasm\"\nlimits.timeout = 0.5\n", []string{
			"config.toml:3: plugins.a.limits.timeout: want a string, got float 0.5"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := read(t, tc.text, nil)
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err = %v, want Errors", err)
			}
			if len(es) != len(tc.want) {
				t.Errorf("got %d errors, want %d:\n%v", len(es), len(tc.want), err)
			}
			for i, w := range tc.want {
				if i < len(es) && !strings.Contains(es[i].Error(), w) {
					t.Errorf("error %d = %q, want it to contain %q", i, es[i].Error(), w)
				}
			}
			if strings.Contains(err.Error(), Redacted) {
				t.Errorf("error redacts text that is no secret:\n%v", err)
			}
			if strings.Contains(err.Error(), "abcdefghij") {
				t.Errorf("error quotes a token:\n%v", err)
			}
		})
	}
}

// Every unset variable of a value is reported, not only the first.
func TestEveryUnsetVariable(t *testing.T) {
	_, err := read(t, "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.config]\ntwo = \"${UA}${UB:-b}${UC}\"\n", nil)
	if err == nil {
		t.Fatal("no error")
	}
	for _, name := range []string{"UA", "UC"} {
		want := "config.toml:4: plugins.a.config.two: environment variable " + name + " is not set"
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "UB") {
		t.Errorf("error names UB, which has a default:\n%v", err)
	}
}

// An error about a table that only sub-tables define points at the first
// line that created it, implied parents included, whatever its id.
func TestImpliedTableOrigins(t *testing.T) {
	cases := []struct {
		name, text string
		want       []string
	}{
		{"plugin from its limits", "# raise hello timeout\n[plugins.helo.limits]\ntimeout = \"10s\"\n", []string{
			"o.toml:2: plugins.helo.path: must name a .wasm file"}},
		{"jwt from a sub-table", "[auth.jwt.x]\ny = 1\n", []string{
			"o.toml:1: auth.jwt.x: unknown key", "o.toml:1: auth.jwt.jwks_url: must be an http(s) URL", "o.toml:1: auth.jwt.issuer: must not be empty"}},
		{"quoted id", "[plugins.\"a b\"]\npath = \"a.wasm\"\n", []string{`o.toml:1: plugins."a b": plugin id "a b" is invalid`}},
		{"quoted id with a dot", "\n[plugins.\"a.b\".limits]\n", []string{`o.toml:2: plugins."a.b": plugin id "a.b" is invalid`, `o.toml:2: plugins."a.b".path: must name`}},
		{"non-ascii id", "[plugins.\"é\"]\npath = \"a.wasm\"\n", []string{`o.toml:1: plugins."é": plugin id "é" is invalid`}},
		{"empty id", "[plugins.\"\"]\npath = \"a.wasm\"\n", []string{`o.toml:1: plugins."": plugin id "" is invalid`}},
		{"plain header later", "[plugins.one]\npath = \"a.wasm\"\n[plugins.two.limits]\ntimeout = \"1s\"\n[plugins]\n", []string{
			"o.toml:3: plugins.two.path: must name a .wasm file"}},
		{"quoted token name", "[auth.tokens.\"c i\"]\ntoken = \"short\"\nsubject = \"s\"\n", []string{`o.toml:2: auth.tokens."c i".token: must be at least 32 characters`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read([]Source{{Name: "o.toml", Data: []byte(tc.text)}}, env(nil))
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err = %v, want Errors", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			for _, e := range es {
				if e.Origin == "" {
					t.Errorf("error without a location: %v", e)
				}
			}
		})
	}
}

// A SQLite connection is checked as start-up reads it: file:DIRECTORY,
// with a directory, and no SQLite URI of a single database.
func TestSQLiteConnection(t *testing.T) {
	for _, conn := range []string{"file:", "file::memory:", ":memory:", "file:/x?mode=ro", "/x?mode=ro", "", "data"} {
		t.Run(conn, func(t *testing.T) {
			_, err := read(t, fmt.Sprintf("[database]\nclient = \"sqlite\"\nconnection = %q\n", conn), nil)
			want := "config.toml:3: database.connection: for client sqlite, want file:DIRECTORY"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want %q", err, want)
			}
		})
	}
	for _, conn := range []string{"file:.greenroom/data", "file:/var/lib/greenroom", "./data", "/var/lib/greenroom", "file:data"} {
		if _, err := read(t, fmt.Sprintf("[database]\nconnection = %q\n", conn), nil); err != nil {
			t.Errorf("%q: %v", conn, err)
		}
	}
}

// A PostgreSQL connection string that start-up could not parse is refused
// by the config (config check said OK), and the refusal shows no part of a
// password: with a '/' in one, pgx's message quoted the rest of it.
func TestPGConnection(t *testing.T) {
	for conn, want := range map[string]string{
		"postgres://svc:Secr3tPrefix/Rest0fPassword@127.0.0.1:5432/postgres%zz": "database.connection: has an '@' after its host",
		"postgres://svc:Secr3tPrefix/Rest0fPassword@127.0.0.1:5432/postgres":    "database.connection: has an '@' after its host",
		"postgres://svc:5432/Secr3tRest0f@db.example/app":                       "database.connection: has an '@' after its host", // parsed, as host svc
		"postgres://db.example/app?application_name=a@b":                        "database.connection: has an '@' after its host",
		"postgres://svc:Secr3t%zzRest0f@127.0.0.1:5432/postgres":                "database.connection: does not parse: cannot parse the connection string: ",
		"postgres://svc:Secr3tPass@127.0.0.1:5432/postgres?sslmode=bogus":       "(sslmode is invalid)",
		// The reason, not the hint, though the secret is in the query too
		// (an audit): the quoted string is left out.
		"postgres://u:Secr3tValue-xyz987@h/db?sslmode=Secr3tValue-xyz987": "database.connection: does not parse: cannot parse the connection string: failed to configure TLS (sslmode is invalid)",
		"postgres://127.0.0.1:99999/postgres":                             "database.connection: does not parse: cannot parse",
	} {
		_, err := read(t, fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", conn), nil)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "Secr3t") || strings.Contains(err.Error(), "Rest0f") {
			t.Errorf("%s: err = %v, want %q without the password", conn, err, want)
		}
	}
	for _, conn := range []string{"postgres://127.0.0.1:5432/postgres?sslmode=disable", "postgresql://u:p%2Fw@db.example/app", "postgres:///app?host=/run/postgresql",
		"postgres://u%40corp:p%40ss@db.example/app", "postgres://u@db.example/app?application_name=a%40b", "postgres://u:p@h1:5432,h2:5433/app?target_session_attrs=read-write"} {
		if _, err := read(t, fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", conn), nil); err != nil {
			t.Errorf("%q: %v", conn, err)
		}
	}
}

// cors.methods holds its effective default after load, so that config
// print shows it (it showed []). rate_burst stays 0 ("N of rate_limit"):
// written out, a later layer changing rate_limit would inherit it.
func TestEffectiveDefaults(t *testing.T) {
	c := mustRead(t, "[server]\nrate_limit = \"3/m\"\n", nil)
	if c.Server.RateBurst != 0 || !slices.Equal(c.Server.CORS.Methods, DefaultCORSMethods) {
		t.Errorf("rate_burst %d, cors.methods %v", c.Server.RateBurst, c.Server.CORS.Methods)
	}
	out, err := c.Print()
	if err != nil || !strings.Contains(string(out), "methods = ['GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'PATCH']") {
		t.Errorf("config print (%v):\n%s", err, out)
	}
}

func TestSameListener(t *testing.T) {
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"127.0.0.1:7007", "127.0.0.1:7007", true},
		{"localhost:7007", "127.0.0.1:7007", true},
		{"0.0.0.0:7007", "127.0.0.1:7007", true},
		{":7007", "[::1]:7007", true},
		{"[::]:7007", "127.0.0.1:7007", true},
		{"127.0.0.1:7007", "127.0.0.1:9090", false},
		{"127.0.0.1:7007", "127.0.0.2:7007", false},
		{"127.0.0.1:7007", "[::1]:7007", false},
		{"127.0.0.1:0", "127.0.0.1:0", false},
	} {
		if got := sameListener(c.a, c.b); got != c.same {
			t.Errorf("sameListener(%q, %q) = %v, want %v", c.a, c.b, got, c.same)
		}
	}
}

// PluginSecrets returns a plugin's own secrets only: its listed keys'
// values and what its table got from the environment, not another
// plugin's, a token or a value substituted elsewhere.
func TestPluginSecrets(t *testing.T) {
	c := mustRead(t, `[auth.tokens.ci]
token = "${CI_TOKEN}"
subject = "ci"
[plugins.a]
path = "a.wasm"
secrets = ["key"]
[plugins.a.config]
key = "listed-secret-a1"
dsn = "user:${A_PASS}@db"
plain = "not-a-secret"
[plugins.b]
path = "b.wasm"
secrets = ["key"]
[plugins.b.config]
key = "listed-secret-b2"
`, map[string]string{"CI_TOKEN": "ci-token-value-0123456789abcdef0123456789", "A_PASS": "a-pass-value-456"})
	got := c.PluginSecrets("a")
	slices.Sort(got)
	if want := []string{"a-pass-value-456", "listed-secret-a1"}; !slices.Equal(got, want) {
		t.Errorf("PluginSecrets(a) = %q, want %q", got, want)
	}
	if got := c.PluginSecrets("none"); got != nil {
		t.Errorf("PluginSecrets(none) = %q", got)
	}
}

// Keys nest at most maxKeyDepth levels, counted across table headers,
// dotted keys, arrays and inline tables: each level cost the runtime work
// over the levels below it, and a 4 KB plugin config of 2000 dotted levels
// passed config check and held serve's start (and its SIGTERM) for minutes
// (an audit's).
func TestKeysNestBoundedDeep(t *testing.T) {
	dotted := func(n int) string { return strings.TrimSuffix(strings.Repeat("a.", n), ".") }
	const head = "[plugins.hello]\npath = \"hello.wasm\"\n"
	for _, tc := range []struct {
		name, text string
		ok         bool
	}{
		// plugins.hello.config = 3 levels before the config's own keys.
		{"dotted, at the bound", head + "[plugins.hello.config]\n" + dotted(maxKeyDepth-3) + " = 1\n", true},
		{"dotted, past it", head + "[plugins.hello.config]\n" + dotted(maxKeyDepth-2) + " = 1\n", false},
		{"2000 dotted levels", head + "[plugins.hello.config]\n" + dotted(2000) + " = 1\n", false},
		{"a table header past it", head + "[plugins.hello.config." + dotted(maxKeyDepth) + "]\nx = 1\n", false},
		{"inline tables past it", head + "[plugins.hello.config]\nx = " + strings.Repeat("{a = ", maxKeyDepth) + "1" + strings.Repeat("}", maxKeyDepth) + "\n", false},
		{"arrays past it", head + "[plugins.hello.config]\nx = " + strings.Repeat("[", maxKeyDepth) + "1" + strings.Repeat("]", maxKeyDepth) + "\n", false},
	} {
		c, err := read(t, tc.text, nil)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.ok:
			if n := len(c.Plugins["hello"].FlatConfig()); n != maxKeyDepth-3 {
				t.Errorf("%s: %d flat config keys, want %d", tc.name, n, maxKeyDepth-3)
			}
		case err == nil:
			t.Errorf("%s: accepted", tc.name)
		case !strings.Contains(err.Error(), "config.toml:") || !strings.Contains(err.Error(), "keys nest more than 64 levels deep"):
			t.Errorf("%s: %v, want the depth refused with its line", tc.name, err)
		}
	}
}

// A wildcard origin needs a domain name after "*.": the CORS middleware
// reads "https://*.[::1]" as "https://.[::1]", which does not parse, and
// panicked at start-up on an origin config check had passed (an audit's).
func TestCORSWildcardOrigins(t *testing.T) {
	for origin, ok := range map[string]bool{
		"https://*.example.org":      true,
		"https://*.example.org:8443": true,
		"http://*.localhost:3000":    true,
		"https://[::1]:8080":         true,
		"https://*.[::1]":            false,
		"https://*.[::1]:8080":       false,
		"https://*.127.0.0.1":        false,
		"https://*.127.0.0.1:80":     false,
	} {
		_, err := read(t, "[server.cors]\norigins = ["+strconv.Quote(origin)+"]\n", nil)
		if ok != (err == nil) {
			t.Errorf("%s: err = %v, want ok %v", origin, err, ok)
		}
	}
}

// An integration's token goes in a request header: one with a newline
// from an environment file (or any control character) is refused by the
// config, not by every read of its host with net/http's words (an
// audit's), and without quoting it.
func TestIntegrationTokenWhitespace(t *testing.T) {
	for _, tok := range []string{"abcdefghijklmnopqrstuvwxyz123456\n", " abcdefghijklmnopqrstuvwxyz123456", "abcdefghijklm\x01nopqrstuvwxyz"} {
		_, err := read(t, "[[integrations.generic]]\nhost = \"docs.example\"\ntoken = \"${DOC_TOKEN}\"\n", map[string]string{"DOC_TOKEN": tok})
		if err == nil || !strings.Contains(err.Error(), "integrations.generic[0].token: must not") || strings.Contains(err.Error(), "abcdefghijklm") {
			t.Errorf("token %q: %v, want it refused without quoting it", tok, err)
		}
	}
	mustRead(t, "[[integrations.generic]]\nhost = \"docs.example\"\ntoken = \"${DOC_TOKEN}\"\n", map[string]string{"DOC_TOKEN": "abcdefghijklmnopqrstuvwxyz123456"})
}

// An integration token shorter than MinIntegrationTokenLength bytes is
// loaded (operators are trusted, and the token is what its host issued)
// and warned about, without quoting it: the URL reader's redaction of it
// matches ordinary text and tells a guessing plugin when it hit. An empty
// one (a variable left unset) sends nothing and is not warned about.
func TestIntegrationTokenTooShort(t *testing.T) {
	for _, tc := range []struct {
		tok  string
		want string
	}{
		{"abc", "integrations.generic[0].token: is under 8 bytes"},
		{"abcdefg", "integrations.generic[0].token: is under 8 bytes"},
		{"ab\u00e9d", "is under 8 bytes"}, // bytes, not characters
		{"abcdefgh", ""},
		{"", ""},
	} {
		cfg, err := read(t, "[[integrations.generic]]\nhost = \"docs.example\"\ntoken = \"${DOC_TOKEN}\"\n", map[string]string{"DOC_TOKEN": tc.tok})
		if err != nil {
			t.Errorf("token %q: %v, want it loaded", tc.tok, err)
			continue
		}
		w := strings.Join(cfg.Warnings(), "\n")
		switch {
		case tc.want == "" && w != "":
			t.Errorf("token %q: warnings %q, want none", tc.tok, w)
		case tc.want != "" && !strings.Contains(w, tc.want):
			t.Errorf("token %q: warnings %q, want %q", tc.tok, w, tc.want)
		case tc.want != "" && strings.Contains(w, tc.tok):
			t.Errorf("token %q: the warning quotes it: %q", tc.tok, w)
		}
	}
}

// server.shutdown_timeout is more than 0 (negative durations are refused
// as such everywhere); under a second is taken: a shutdown with nothing
// to finish exits 0 however short it is (TestSubSecondShutdownTimeout in
// cmd/greenroom; it was refused under 1s from 2026-12-02 to 2026-12-07).
func TestShutdownDurations(t *testing.T) {
	for text, want := range map[string]string{
		"[server]\nshutdown_timeout = \"0s\"\n":                          "server.shutdown_timeout: must be more than 0, got 0s",
		"[server]\nshutdown_timeout = \"500ms\"\n":                       "",
		"[server]\nshutdown_timeout = \"1s\"\nshutdown_delay = \"0s\"\n": "",
	} {
		_, err := read(t, text, nil)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), "config.toml:2: "+want)) {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
}

// A rate limit whose window (burst / rate) passes a day is refused: a
// tiny rate overflowed Go's durations and became a one-second window.
func TestRateLimitWindowBounded(t *testing.T) {
	for text, ok := range map[string]bool{
		"[server]\nrate_limit = \"1e-300/s\"\n":                false,
		"[server]\nrate_limit = \"0.01/h\"\n":                  false,
		"[server]\nrate_limit = \"1/h\"\n":                     true,
		"[server]\nrate_limit = \"1/h\"\nrate_burst = 24\n":    true,
		"[server]\nrate_limit = \"1/h\"\nrate_burst = 25\n":    false,
		"[server]\nrate_limit = \"100/s\"\nrate_burst = 500\n": true,
	} {
		_, err := read(t, text, nil)
		if ok != (err == nil) || err != nil && !strings.Contains(err.Error(), "server.rate_limit: with a burst of") {
			t.Errorf("%q: %v, want ok %v", text, err, ok)
		}
	}
}

// The rate limit's burst is also read as server.burst, the word the issue
// that specified it used beside rate_limit; setting both is an error, and
// errors about it point at the line that set it.
func TestBurstAlias(t *testing.T) {
	c := mustRead(t, "[server]\nrate_limit = \"10/s\"\nburst = 30\n", nil)
	if c.Server.RateBurst != 30 {
		t.Errorf("burst = 30 read as rate_burst %d", c.Server.RateBurst)
	}
	for text, want := range map[string]string{
		"[server]\nrate_limit = \"10/s\"\nrate_burst = 20\nburst = 30\n": "config.toml:4: server.burst: is another name for server.rate_burst, which is set too (at config.toml:3)",
		"[server]\nburst = 30\n":                           "config.toml:2: server.rate_burst: is set but server.rate_limit is not",
		"[server]\nrate_limit = \"10/s\"\nburst = -1\n":    "config.toml:3: server.rate_burst: must not be negative",
		"[server]\nrate_limit = \"10/s\"\nburst = \"x\"\n": "config.toml:3: server.rate_burst",
	} {
		if _, err := read(t, text, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
	// Reported with every other problem of the config, as any error is:
	// it was reported alone.
	text := "[server]\nrate_limit = \"10/s\"\nrate_burst = 20\nburst = 30\n[log]\nlevel = \"loud\"\n"
	_, err := read(t, text, nil)
	for _, want := range []string{"config.toml:4: server.burst: is another name", "config.toml:6: log.level: must be one of"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
}

// config print writes a value holding "${" (written "$${" in its file) so
// that it reads back as the same value, not as a reference to a variable
// (an audit's round trip: "$${USER_NAME}" printed as '${USER_NAME}').
func TestPrintEscapesReferences(t *testing.T) {
	for _, v := range []string{"$${USER_NAME}", "a $$${B} c", "plain $ and $$ and {}"} {
		c := mustRead(t, "[plugins.hello]\npath = \"hello.wasm\"\n[plugins.hello.config]\nx = "+strconv.Quote(v)+"\n", nil)
		want, _ := c.Plugins["hello"].ConfigValue("x")
		out, err := c.Print()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Read([]Source{{Name: "printed.toml", Data: out}}, env(map[string]string{"USER_NAME": "someone", "B": "bee"}))
		if err != nil {
			t.Fatalf("%q: printed config does not read back: %v\n%s", v, err, out)
		}
		if got, _ := back.Plugins["hello"].ConfigValue("x"); got != want {
			t.Errorf("%q: read as %q, printed and read back as %q", v, want, got)
		}
	}
}

// config print writes a plugin's numbers, booleans and date-times as
// written, which is how the plugin reads them (greenroom.Config("hex") is
// "0xff"): the printed config reads back as the same config (an audit's
// 0xff printed as 255). Secrets stay redacted.
func TestPrintKeepsLiterals(t *testing.T) {
	text := "[plugins.hello]\npath = \"hello.wasm\"\nsecrets = [\"pin\"]\n[plugins.hello.config]\n" +
		"hex = 0xff\nunder = 1_000\nf = 1e3\nb = true\nd = 2026-01-02\nt = 07:30:00\narr = [0o17, 1_0]\nnested.deep = 0b101\n\"quoted.key\" = 0x10\npin = 0x1234\n"
	c := mustRead(t, text, nil)
	want := c.Plugins["hello"].FlatConfig()
	out, err := c.Print()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "0x1234") || !strings.Contains(string(out), "pin = '[REDACTED]'") {
		t.Errorf("the secret's literal is printed:\n%s", out)
	}
	back, err := Read([]Source{{Name: "printed.toml", Data: out}}, env(nil))
	if err != nil {
		t.Fatalf("printed config does not read back: %v\n%s", err, out)
	}
	got := back.Plugins["hello"].FlatConfig()
	for k, v := range want {
		if k == "pin" {
			continue
		}
		if got[k] != v {
			t.Errorf("%s: read as %q, printed and read back as %q", k, v, got[k])
		}
	}
}

// An error about an element of an array written over several lines
// points at the element's line, not the key's.
func TestArrayElementLines(t *testing.T) {
	_, err := read(t, "[server.cors]\norigins = [\n  \"https://ok.example\",\n  \"nope\",\n]\n[[integrations.generic]]\nhost = \"a.example\"\n[[integrations.generic]]\nhost = \"\"\n", nil)
	for _, want := range []string{"config.toml:4: server.cors.origins[1]:", "config.toml:9: integrations.generic[1].host: must not be empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
}

// A runtime.cache_dir (or SQLite database directory) that names a file, or
// lies under one, is refused by config check, as serve refuses it, with
// its line (relative to the file that set it).
func TestCacheDirNotADirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "afile"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte("[runtime]\ncache_dir = \"afile\"\n"), 0o644)
	afile := filepath.Join(dir, "afile")
	if _, err := Load([]string{cfg}, env(nil)); err == nil || !strings.Contains(err.Error(), cfg+":2: runtime.cache_dir: "+afile+" is not a directory") {
		t.Errorf("err = %v", err)
	}
	// Under a file, neither directory could be made (an audit: config
	// check said OK, serve failed, the SQLite one without file:line).
	os.WriteFile(cfg, []byte("[runtime]\ncache_dir = \"afile/cache\"\n[database]\nconnection = \"file:afile/data\"\n"), 0o644)
	_, err := Load([]string{cfg}, env(nil))
	for _, want := range []string{
		cfg + ":2: runtime.cache_dir: " + afile + " is not a directory, so " + afile + "/cache cannot be made",
		cfg + ":4: database.connection: " + afile + " is not a directory, so " + afile + "/data cannot be made (the directory that holds the SQLite databases)",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
	os.WriteFile(cfg, []byte("[runtime]\ncache_dir = \"cache\"\n"), 0o644)
	if _, err := Load([]string{cfg}, env(nil)); err != nil {
		t.Errorf("a cache_dir not made yet: %v", err)
	}
}

// TOML substitutes ${VAR} only inside strings, so a number or boolean from
// the environment arrives as a string: at a key that wants a number or a
// boolean it is taken as the one it spells (it was "want an integer, got
// string"), with or without a default; a string written as such is not.
func TestTypedValuesFromEnvironment(t *testing.T) {
	text := "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\ninstances = \"${N}\"\ngc_percent = \"${GC:-200}\"\ninterruptible = \"${I}\"\n[plugins.a.capabilities]\ndatabase = \"${DB:-true}\"\n"
	c := mustRead(t, text, map[string]string{"N": "7", "I": "false"})
	p := c.Plugins["a"]
	if p.Limits.Instances != 7 || p.Limits.GCPercent != 200 || p.Limits.Interruptible || !p.Capabilities.Database {
		t.Errorf("limits %+v, database %v", p.Limits, p.Capabilities.Database)
	}
	for _, tc := range []struct{ text, want string }{
		{"instances = \"${N}\"", `want an integer, got string`},
		{"instances = \"4\"", `want an integer, got string "4"`},
		{"interruptible = \"${N}\"", `want true or false, got string`},
	} {
		_, err := read(t, "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\n"+tc.text+"\n", map[string]string{"N": "four"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.text, err, tc.want)
		}
	}
}

// A token scoped to a plugin the config does not have loads (the scope
// fails closed) with a warning naming the key and its line: config check
// said nothing of a typo such as "helo" (an audit).
func TestWarningsNameTokensScopedToUnknownPlugins(t *testing.T) {
	c := mustRead(t, "[plugins.hello]\npath = \"a.wasm\"\n[auth.tokens.ci]\ntoken = \"0123456789abcdef0123456789abcdef\"\nsubject = \"ci\"\ntype = \"service\"\nplugins = [\"hello\", \"helo\"]\n", nil)
	w := c.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], `config.toml:7: auth.tokens.ci.plugins[1]: names plugin "helo", which this config does not have`) {
		t.Errorf("Warnings = %q", w)
	}
	c = mustRead(t, "[plugins.hello]\npath = \"a.wasm\"\n[auth.tokens.ci]\ntoken = \"0123456789abcdef0123456789abcdef\"\nsubject = \"ci\"\ntype = \"service\"\nplugins = [\"hello\"]\n", nil)
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("Warnings = %q, want none", w)
	}
}

// Connections' read buffers (server.header_limit each) that could take
// more than a GiB together are warned of, naming the key the config set
// and its line; the defaults (160 MiB) are not.
func TestWarningsNameConnectionBuffersOverAGiB(t *testing.T) {
	for _, tc := range []struct {
		text, want string
	}{
		{"", ""},
		{"[server]\nheader_limit = \"64KiB\"\nmax_connections = 16384\n", ""}, // 1 GiB exactly
		{"[server]\nheader_limit = \"1MiB\"\n", "config.toml:2: server.header_limit: server.header_limit (1MiB) × server.max_connections (10000) is 9.8 GiB"},
		{"[server]\nmax_connections = 100000\n", "config.toml:2: server.max_connections: server.header_limit (16KiB) × server.max_connections (100000) is 1.5 GiB"},
		{"[server]\nmax_connections = 100000\nheader_limit = \"32KiB\"\n", "config.toml:3: server.header_limit: server.header_limit (32KiB) × server.max_connections (100000) is 3.1 GiB"},
	} {
		wantOneWarning(t, tc.text, tc.want)
	}
}

// A JWKS fetched over plain http:// from another machine is warned of,
// naming the key's line and the host (never the URL, which may hold a
// password): whoever sits on the path could serve keys of its own and
// forge any token. https://, and http:// to this machine's loopback, are
// not.
func TestWarningsNamePlainHTTPJWKS(t *testing.T) {
	for _, tc := range []struct {
		url, want string
	}{
		{"http://idp.example.com/jwks", "config.toml:2: auth.jwt.jwks_url: is fetched over plain http:// from idp.example.com, which is not this machine"},
		{"http://svc:pa55word@10.0.0.7:8080/jwks", "config.toml:2: auth.jwt.jwks_url: is fetched over plain http:// from 10.0.0.7:8080,"},
		{"http://[2001:db8::1]/jwks", "from [2001:db8::1],"},
		{"https://idp.example.com/jwks", ""},
		{"http://127.0.0.1:8080/jwks", ""},
		{"http://127.8.9.10/jwks", ""},
		{"http://[::1]:8080/jwks", ""},
		{"http://localhost/jwks", ""},
		{"http://LocalHost.:9000/jwks", ""},
	} {
		c := mustRead(t, "[auth.jwt]\njwks_url = \""+tc.url+"\"\nissuer = \"https://idp/\"\naudience = \"greenroom\"\n", nil)
		w := c.Warnings()
		switch {
		case tc.want == "" && len(w) != 0:
			t.Errorf("%s: Warnings = %q, want none", tc.url, w)
		case tc.want != "" && (len(w) != 1 || !strings.Contains(w[0], tc.want)):
			t.Errorf("%s: Warnings = %q, want %q", tc.url, w, tc.want)
		case len(w) == 1 && strings.Contains(w[0], "pa55word"):
			t.Errorf("%s: the warning quotes the password: %q", tc.url, w)
		}
	}
}

// Host patterns and origins that name real hosts stay valid: a trailing
// dot (a browser on https://app.example.com./ sends it in its Origin),
// underscores, upper case, IPv4 and IPv6 addresses, ports.
func TestSensibleHostsAndOriginsAccepted(t *testing.T) {
	mustRead(t, `[server.cors]
origins = ["https://app.example.com.", "https://*.Example.COM:443", "http://[::1]:8080", "http://127.0.0.1:3000", "http://localhost:3000"]
[[reading.allow]]
host = "*.Example.COM."
[[reading.allow]]
host = "my_host.internal"
[[reading.allow]]
host = "10.0.0.1"
[[integrations.generic]]
host = "ghe.example.com:8443"
`, nil)
}

// Found by an audit of the config, each with its own check below:
//   - an array a later file replaces leaves no line of the earlier file's
//     elements behind (an error in it named the earlier file's line);
//   - a body_limit past its bound is one error, not also request_budget's;
//   - a static token with a control character, which no Authorization
//     header can carry, is refused;
//   - a cache directory that is a symbolic link to nothing is refused.
func TestAuditedConfigErrors(t *testing.T) {
	first := Source{Name: "c.toml", Data: []byte("[reading]\nallow = [\n  { host = \"a.example.com\",\n    paths = [\"/x\"] },\n]\n[[integrations.github]]\nhost = \"gh.example.com\"\n")}
	second := Source{Name: "d.toml", Data: []byte("# later\n# file\n[reading]\nallow = [{ paths = [\"/y\"] }]\n[[integrations.github]]\ntoken = \"abcdefghijklmnopqrstuvwxyz0123456789\"\n")}
	_, err := Read([]Source{first, second}, env(nil))
	for _, want := range []string{"d.toml:4: reading.allow[0].host: must not be empty", "d.toml:5: integrations.github[0].host: must not be empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "c.toml") {
		t.Errorf("an error names the replaced file: %v", err)
	}

	_, err = read(t, "[server]\nbody_limit = \"3GiB\"\n", nil)
	if err == nil || !strings.Contains(err.Error(), "server.body_limit") || strings.Contains(err.Error(), "request_budget") {
		t.Errorf("a body_limit past its bound: %v, want its own error alone", err)
	}

	_, err = read(t, "[auth.tokens.ci]\ntoken = \"${T}\"\nsubject = \"service:ci\"\n", map[string]string{"T": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\x00bbbb"})
	if err == nil || !strings.Contains(err.Error(), "auth.tokens.ci.token: must not contain control characters") || strings.Contains(err.Error(), "aaaaaaaa") {
		t.Errorf("a token with a NUL: %v", err)
	}

	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte("[runtime]\ncache_dir = \"dangling\"\n"), 0o644)
	if _, err := Load([]string{cfg}, env(nil)); err == nil || !strings.Contains(err.Error(), cfg+":2: runtime.cache_dir: "+filepath.Join(dir, "dangling")+" is a symbolic link to nothing") {
		t.Errorf("a dangling link as cache_dir: %v", err)
	}
}

// config print looks a plugin up by the id in a key's path: it looped
// over every plugin for every key it printed, quadratic in the plugins (an
// audit: 4000 plugins, 21 s of CPU; 1.6 s now). A ratio of the best of
// three prints of 4000 and of 400 plugins, not a time: an 8 s bound on
// the 4000 failed on a loaded machine (8.2 s, with nothing quadratic).
// Linear is 10x; the quadratic print was some 60x.
func TestPrintLinearInPlugins(t *testing.T) {
	read := func(n int) *Config {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "[plugins.p%d]\npath = \"p.wasm\"\n[plugins.p%d.config]\nk = 1\n", i, i)
		}
		return mustRead(t, b.String(), nil)
	}
	once := func(c *Config, n int) time.Duration {
		// Each print from a collected heap: a collection that fell in
		// one print of the 4000 and none of the 400 made 58x.
		runtime.GC()
		start := cpuTime(t)
		out, err := c.Print()
		d := cpuTime(t) - start
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(out, []byte(fmt.Sprintf("[plugins.p%d.config]", n-1))) {
			t.Errorf("the last plugin is not printed")
		}
		return d
	}
	// The process's CPU time, not the wall clock: other processes on a
	// loaded machine (a CI run's other packages) took the wall clock's
	// ratio from 12x to 49x. The best of seven of each, taken in turns.
	// Linear is about 10x (12-18x measured); the quadratic print this
	// guards against was about 100x, so 50x leaves room for the noise
	// that is left (the collector's other threads, the caches).
	c400, c4000 := read(400), read(4000)
	small, large := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
	for range 7 {
		small = min(small, once(c400, 400))
		large = min(large, once(c4000, 4000))
	}
	t.Logf("4000 plugins %v, 400 %v of CPU: %.1fx", large, small, float64(large)/float64(small))
	if large > 50*small {
		t.Errorf("config print of 4000 plugins took %v of CPU, of 400 %v: %.0fx for 10x the plugins", large, small, float64(large)/float64(small))
	}
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// A [database] key the chosen client ignores is warned of, naming the key
// and its line (database.isolation with SQLite was accepted silently,
// where it means nothing); not refused, since a later file switching the
// client cannot unset it. Left at its default, or with its own client,
// no warning. The client, which may come from the environment, is not
// quoted.
func TestWarningsNameDatabaseKeysOfTheOtherClient(t *testing.T) {
	pg := "client = \"pg\"\nconnection = \"postgres://u@db/app\"\n"
	for _, tc := range []struct {
		text, want string
	}{
		{"[database]\nisolation = \"schema\"\n", `config.toml:2: database.isolation: is ignored: it applies to client "pg" only`},
		{"[database]\nclient = \"sqlite\"\nisolation = \"role\"\n", `config.toml:3: database.isolation: is ignored: it applies to client "pg" only`},
		{"[database]\n" + pg + "sqlite_memory = \"2GiB\"\n", `config.toml:4: database.sqlite_memory: is ignored: it applies to client "sqlite" only`},
		{"[database]\n" + pg + "isolation = \"schema\"\n", ""},
		{"[database]\nsqlite_memory = \"2GiB\"\n", ""},
		{"[database]\n" + pg, ""},
		{"", ""},
	} {
		wantOneWarning(t, tc.text, tc.want)
	}
	// A later file that switches the client to SQLite loads, the
	// earlier file's isolation warned of at its line.
	c, err := Read([]Source{
		{Name: "base.toml", Data: []byte("[database]\n" + pg + "isolation = \"schema\"\n")},
		{Name: "dev.toml", Data: []byte("[database]\nclient = \"sqlite\"\nconnection = \"file:data\"\n")},
	}, env(nil))
	if err != nil {
		t.Fatalf("base.toml + dev.toml: %v, want them loaded", err)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.HasPrefix(w[0], "base.toml:4: database.isolation: is ignored") {
		t.Errorf("base.toml + dev.toml: Warnings = %q", w)
	}
	// With the client from the environment, its value is not quoted.
	c = mustRead(t, "[database]\nclient = \"${C}\"\nisolation = \"schema\"\n", map[string]string{"C": "sqlite"})
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "database.isolation: is ignored") || strings.Contains(w, `"sqlite"`) {
		t.Errorf("client from the environment: Warnings = %q", w)
	}
}

func TestWarningsNameTrustedProxiesOfEveryAddress(t *testing.T) {
	for _, tc := range []struct {
		text, want string
	}{
		{"[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"0.0.0.0/0\"]\n", `config.toml:2: server.trusted_proxies[1]: "0.0.0.0/0" trusts every IPv4 address as a proxy`},
		{"[server]\ntrusted_proxies = [\"::/0\"]\n", `config.toml:2: server.trusted_proxies[0]: "::/0" trusts every IPv6 address as a proxy`},
		{"[server]\ntrusted_proxies = [\"0.0.0.0/1\", \"128.0.0.0/1\", \"127.0.0.1\", \"::1\"]\n", ""},
		{"", ""},
	} {
		wantOneWarning(t, tc.text, tc.want)
	}
	// From the environment, the entry is not quoted.
	c := mustRead(t, "[server]\ntrusted_proxies = [\"${P}\"]\n", map[string]string{"P": "::/0"})
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, `server.trusted_proxies[0]: "[REDACTED]" trusts every IPv6 address`) || strings.Contains(w, "::/0") {
		t.Errorf("entry from the environment: Warnings = %q", w)
	}
}

// wantOneWarning checks that the config text gives no warning (want "")
// or exactly one, containing want.
func wantOneWarning(t *testing.T, text, want string) {
	t.Helper()
	w := mustRead(t, text, nil).Warnings()
	switch {
	case want == "" && len(w) != 0:
		t.Errorf("%q: Warnings = %q, want none", text, w)
	case want != "" && (len(w) != 1 || !strings.Contains(w[0], want)):
		t.Errorf("%q: Warnings = %q, want %q", text, w, want)
	}
}
