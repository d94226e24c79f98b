package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/internal/authtest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

const (
	ciToken      = "ci-token-0123456789abcdef0123456789"
	opsToken     = "ops-token-0123456789abcdef0123456789"
	todoToken    = "todo-token-0123456789abcdef0123456789"
	unknownToken = "unknown-token-0123456789abcdef012345"
)

// authConfig: ci may call every plugin, ops is an admin user, todo-bot
// may call only "todo"; JWTs from idp, admins by group. hello asks for
// /ping, /healthz and /whoami to be public; the operator lists /ping
// (asked: public), /echo (not asked: stays protected) and not /healthz
// (asked, not listed: stays protected).
func authConfig(idp *authtest.IdP, extra string) string {
	return fmt.Sprintf(`
[auth.tokens.ci]
token = %q
subject = "service:ci"
[auth.tokens.ops]
token = %q
subject = "user:default/ops"
type = "user"
admin = true
[auth.tokens.todo]
token = %q
subject = "service:todo-bot"
plugins = ["todo"]
[auth.jwt]
jwks_url = %q
issuer = %q
audience = %q
admin_claim = "groups"
admin_value = "greenroom-admins"
[plugins.hello]
path = %q
public_routes = ["/ping", "/echo"]
%s`, ciToken, opsToken, todoToken, idp.JWKSURL, authtest.Issuer, authtest.Audience, helloWasm, extra)
}

func startAuth(t *testing.T, cfg string) *servertest.Instance {
	t.Helper()
	return servertest.Start(t, cfg, servertest.Options{CacheDir: cacheDir, Anonymous: true})
}

func bearer(token string) []string {
	if token == "" {
		return nil
	}
	return []string{"Authorization", "Bearer " + token}
}

// The matrix of the issue: every kind of credential against every kind of
// route, with the exact status.
func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	idp := authtest.New(t)
	in := startAuth(t, authConfig(idp, ""))
	// The todo token's one plugin is not configured here: a warning.
	if !strings.Contains(in.Log.String(), "auth.tokens.todo.plugins[0]: names plugin") {
		t.Error("no warning at start about the todo token's unknown plugin")
	}

	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := authtest.Claims("user:default/jane")
		if edit != nil {
			edit(c)
		}
		return c
	}
	now := time.Now()
	valid := claims(nil)
	admin := claims(func(c jwt.MapClaims) { c["groups"] = []string{"greenroom-admins"} })

	const (
		protected = "/api/hello/whoami"  // not listed by the operator
		public    = "/api/hello/ping"    // asked and listed
		asked     = "/api/hello/healthz" // asked, not listed
		listed    = "/api/hello/echo"    // listed, not asked
		adminAPI  = "/.greenroom/plugins/v1/"
	)
	routes := []string{protected, public, asked, listed, adminAPI}
	rows := []struct {
		name  string
		token string
		want  [5]int // protected, public, asked, listed, admin
	}{
		{"none", "", [5]int{401, 200, 401, 401, 401}},
		{"static valid", ciToken, [5]int{200, 200, 200, 200, 403}},
		{"static admin", opsToken, [5]int{200, 200, 200, 200, 200}},
		{"static restricted to another plugin", todoToken, [5]int{403, 200, 403, 403, 403}},
		{"static unknown", unknownToken, [5]int{401, 200, 401, 401, 401}},
		{"JWT valid RS256", idp.Sign(t, "RS256", valid), [5]int{200, 200, 200, 200, 403}},
		{"JWT valid ES256", idp.Sign(t, "ES256", valid), [5]int{200, 200, 200, 200, 403}},
		{"JWT valid EdDSA", idp.Sign(t, "EdDSA", valid), [5]int{200, 200, 200, 200, 403}},
		{"JWT admin", idp.Sign(t, "ES256", admin), [5]int{200, 200, 200, 200, 200}},
		{"JWT expired", idp.Sign(t, "RS256", claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })), [5]int{401, 200, 401, 401, 401}},
		{"JWT not yet valid", idp.Sign(t, "RS256", claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })), [5]int{401, 200, 401, 401, 401}},
		{"JWT wrong issuer", idp.Sign(t, "RS256", claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.test" })), [5]int{401, 200, 401, 401, 401}},
		{"JWT wrong audience", idp.Sign(t, "RS256", claims(func(c jwt.MapClaims) { c["aud"] = "another-service" })), [5]int{401, 200, 401, 401, 401}},
		{"JWT alg none", authtest.AlgNone(t, admin), [5]int{401, 200, 401, 401, 401}},
		{"JWT HS256 signed with the public key", idp.HS256WithPublicKey(t, admin), [5]int{401, 200, 401, 401, 401}},
		{"JWT unknown kid", authtest.SignWith(t, jwt.SigningMethodRS256, idp.RSA, "unknown-kid", admin), [5]int{401, 200, 401, 401, 401}},
		{"JWT tampered signature", authtest.Tamper(idp.Sign(t, "RS256", admin)), [5]int{401, 200, 401, 401, 401}},
		{"JWT tampered claims", authtest.TamperPayload(t, idp.Sign(t, "RS256", valid), admin), [5]int{401, 200, 401, 401, 401}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			for i, path := range routes {
				status, h, body := in.DoAnon(t, "GET", path, nil, bearer(row.token)...)
				if status != row.want[i] {
					t.Errorf("%s: got %d %s, want %d", path, status, body, row.want[i])
					continue
				}
				switch status {
				case 401:
					e := errorBody(t, body)
					if e["code"] != "unauthenticated" || !strings.HasPrefix(h.Get("WWW-Authenticate"), `Bearer realm="greenroom"`) {
						t.Errorf("%s: 401 with %s, WWW-Authenticate %q", path, body, h.Get("WWW-Authenticate"))
					}
					if row.token != "" && !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
						t.Errorf("%s: invalid credential without error=invalid_token: %q", path, h.Get("WWW-Authenticate"))
					}
				case 403:
					if e := errorBody(t, body); e["code"] != "forbidden" || !strings.Contains(h.Get("WWW-Authenticate"), "insufficient_scope") {
						t.Errorf("%s: 403 with %s, WWW-Authenticate %q", path, body, h.Get("WWW-Authenticate"))
					}
				}
			}
		})
	}

	// Every refusal is audited, with who, what and why; no line holds a
	// credential, not even redacted (nothing tried to log one).
	log := in.Log.String()
	denied, admins := 0, 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `"audit":"denied"`) {
			denied++
			for _, f := range []string{`"principal":`, `"credential":`, `"ip":`, `"path":`, `"reason":`, `"status":`} {
				if !strings.Contains(line, f) {
					t.Errorf("audit line without %s: %s", f, line)
				}
			}
		}
		if strings.Contains(line, `"audit":"admin"`) {
			admins++
		}
	}
	wantDenied := 0
	for _, row := range rows {
		for _, st := range row.want {
			if st == 401 || st == 403 {
				wantDenied++
			}
		}
	}
	if denied != wantDenied || admins != 2 {
		t.Errorf("audit: %d denied lines (want %d), %d admin actions (want 2)", denied, wantDenied, admins)
	}
	for _, want := range []string{
		`"reason":"JWT expired"`, `"reason":"JWT not valid yet (nbf)"`, `JWT issuer is not`, `JWT audience does not include`,
		`JWT algorithm \"none\" is not allowed`, `JWT algorithm \"HS256\" is not allowed`, `JWT signing key \"unknown-kid\" is not in the issuer's JWKS`,
		`"reason":"JWT signature is invalid"`, `"reason":"unknown token"`, `"reason":"no credential"`,
		`"reason":"token:todo is restricted to plugins todo"`, `"reason":"token:ci is not an admin credential"`, `"reason":"jwt is not an admin credential"`,
		`"principal":"service:todo-bot"`, `"credential":"invalid"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	if strings.Contains(log, "[REDACTED]") {
		t.Error("a credential reached the log (redacted)")
	}
	for _, row := range rows {
		for _, part := range strings.Split(row.token, ".") {
			if len(part) > 8 && strings.Contains(log, part) {
				t.Errorf("%s: the log holds part of the token", row.name)
			}
		}
	}
	if n := strings.Count(log, "plugin asks to make /healthz public, but plugins.hello.public_routes does not list it"); n != 1 {
		t.Errorf("asked-but-not-listed logged %d times, want once", n)
	}
	if !strings.Contains(log, "public_routes lists routes the plugin does not ask to open") || !strings.Contains(log, `"routes":["/echo"]`) {
		t.Error("listed-but-not-asked route not logged")
	}
}

// Public routes are exact paths relative to the mount, for every method;
// anything else about them stays protected.
func TestPublicRouteMatching(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, authConfig(idp, ""))
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/api/hello/ping", 200},
		{"GET", "/api/hello/ping?x=1", 200},
		{"POST", "/api/hello/ping", 405}, // reaches the plugin, whose mux has GET only
		{"GET", "/api/hello/ping/", 401},
		{"GET", "/api/hello/p%69ng", 401},
		{"GET", "/api/hello//ping", 401},
		{"GET", "/api/hello/PING", 401},
		{"GET", "/api/hello/ping/x", 401},
		{"GET", "/api/hello", 401},
		{"GET", "/api/nope/ping", 401}, // an unknown plugin has no public routes
		{"GET", "/api/", 401},
		{"GET", "/api", 401}, // once a panic that took the server down
		{"HEAD", "/api", 401},
		{"GET", "/API?x=1", 404},             // routed as sent, letter case included
		{"GET", "/x/../api/hello/ping", 404}, // routed as sent: not under /api/
		{"GET", "//api/hello/ping", 404},
	} {
		if status, _, body := in.DoAnon(t, tc.method, tc.path, nil); status != tc.want {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, status, body, tc.want)
		}
	}
	// With a credential, what does not exist is 404, and a restricted
	// token gets 403 for any plugin but its own.
	for _, tc := range []struct {
		token, path string
		want        int
	}{
		{ciToken, "/api/nope/ping", 404},
		{ciToken, "/api/", 404},
		{ciToken, "/api", 404},
		{todoToken, "/api/nope/ping", 403},
	} {
		if status, _, body := in.DoAnon(t, "GET", tc.path, nil, bearer(tc.token)...); status != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.path, status, body, tc.want)
		}
	}
	// Malformed Authorization headers are refused like invalid tokens.
	for _, h := range []string{"Basic " + ciToken, ciToken, "Bearer", "Bearer " + ciToken + " extra"} {
		if status, _, body := in.DoAnon(t, "GET", "/api/hello/whoami", nil, "Authorization", h); status != 401 {
			t.Errorf("Authorization %q: %d %s", h, status, body)
		}
	}
	// Two Authorization headers are ambiguous: refused whatever their order
	// or validity, even two valid ones, and on the admin API too.
	// One of them empty counts as two as well.
	for _, pair := range [][2]string{{ciToken, unknownToken}, {unknownToken, ciToken}, {todoToken, ciToken}, {opsToken, opsToken}, {"", ciToken}, {opsToken, ""}} {
		for _, path := range []string{"/api/hello/whoami", "/.greenroom/plugins/v1/"} {
			req, err := http.NewRequest("GET", in.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			header := func(tok string) string {
				if tok == "" {
					return ""
				}
				return "Bearer " + tok
			}
			req.Header["Authorization"] = []string{header(pair[0]), header(pair[1])}
			resp, err := in.Anon.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 401 || !strings.Contains(string(body), "one Authorization header") {
				t.Errorf("%s with two credentials: %d %s, want 401", path, resp.StatusCode, body)
			}
		}
	}
}

func TestPublicRouteOnlyDuringInit(t *testing.T) {
	t.Parallel()
	in := start(t, hostileConfig("2s", 1))
	status, _, body := in.Get(t, "/api/hostile/public-codes")
	if status != 200 || body != `{"init_malformed":-3,"late":-2}` {
		t.Errorf("public_route codes: %d %s, want ERR_INVALID during init for a malformed route, ERR_DENIED after", status, body)
	}
	// A call at the wrong time is no capability denial.
	fams := scrape(t, func(path string) (int, string) { s, _, b := in.Get(t, path); return s, b })
	if v := value(fams, "greenroom_capability_denials_total", "plugin", "hostile"); v > 0 {
		t.Errorf("capability_denials_total{hostile} = %v after a late public_route, want none", v)
	}
	if v := value(fams, "greenroom_hostfunc_calls_total", "plugin", "hostile", "function", "public_route"); v < 2 {
		t.Errorf("hostfunc_calls_total{hostile,public_route} = %v, want the calls counted", v)
	}
}

// A header the client names in Connection is hop-by-hop: it does not
// reach the guest (RFC 9110, 7.6.1).
func TestConnectionNamedHeadersDropped(t *testing.T) {
	in := start(t, fmt.Sprintf("[plugins.hello]\npath = %q\n", helloWasm))
	status, _, body := in.Get(t, "/api/hello/echo", "Connection", "X-Bar, keep-alive", "X-Bar", "hop", "X-Kept", "yes")
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	var echo struct{ Headers map[string][]string }
	if err := json.Unmarshal([]byte(body), &echo); err != nil {
		t.Fatal(err)
	}
	if _, ok := echo.Headers["X-Bar"]; ok || len(echo.Headers["X-Kept"]) != 1 {
		t.Errorf("guest headers: %v", echo.Headers)
	}
	// Named in a second Connection header too.
	conn, err := net.Dial("tcp", strings.TrimPrefix(in.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: keep-alive\r\nConnection: X-Foo\r\nX-Foo: hop\r\nX-Kept: yes\r\nConnection: close\r\n\r\n", in.Token)
	raw, _ := io.ReadAll(conn)
	if !strings.Contains(string(raw), "X-Kept") || strings.Contains(string(raw), "X-Foo") {
		t.Errorf("with two Connection headers the guest saw: %s", raw)
	}
}

// The names a Connection header lists are gathered once: each header was
// checked against every token of every Connection list, so a head of
// thousands of names and thousands of headers cost time quadratic in its
// size, before any limits.timeout (an audit: 17 s of CPU for 256 KiB;
// this head took 0.4 s, 26 s before; the bound is generous).
func TestConnectionNamesAreLinear(t *testing.T) {
	in := start(t, fmt.Sprintf("[server]\nheader_limit = \"1MiB\"\n[plugins.hello]\npath = %q\n", helloWasm))
	var head strings.Builder
	fmt.Fprintf(&head, "GET /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: X-Dropped, ", in.Token)
	for i := 0; i < 64<<10; i++ {
		head.WriteString("a,")
	}
	head.WriteString("close\r\nX-DROPPED: hop\r\nX-Kept: yes\r\n")
	for i := 0; i < 40<<10; i++ {
		head.WriteString("B: v\r\n")
	}
	head.WriteString("\r\n")
	conn, err := net.Dial("tcp", strings.TrimPrefix(in.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, head.String()); err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(conn)
	took := time.Since(start)
	if !strings.HasPrefix(string(raw), "HTTP/1.1 200") || !strings.Contains(string(raw), "X-Kept") || strings.Contains(string(raw), "X-Dropped") {
		t.Errorf("a %d KiB head: %.300s", head.Len()>>10, raw)
	}
	if took > 5*time.Second {
		t.Errorf("a %d KiB head with %d names in Connection took %v", head.Len()>>10, 64<<10, took)
	}
}

// The guest sees who calls, never how: no Authorization, no cookies; nor
// a caller's claim to be someone, in the headers authenticating proxies
// set (a plugin ported from behind one could trust them).
func TestGuestNeverSeesCredentials(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, authConfig(idp, ""))
	claims := []string{"X-Forwarded-User", "X_Forwarded_User", "Remote-User", "X-Remote-User", "X-Auth-Request-User",
		"X-Auth-Request-Email", "x-auth-request-preferred-username", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Webauth-User",
		"Cookie2", "X-Amzn-Oidc-Data", "X-Goog-Iap-Jwt-Assertion", "Cf-Access-Jwt-Assertion", "CF_ACCESS_AUTHENTICATED_USER_EMAIL",
		"X-Ms-Client-Principal", "X-Ms-Token-Aad-Id-Token",
		// Remote-User's siblings (Authelia's forward auth sets all four),
		// and the client certificate a proxy that verified it passes on
		// (Envoy and Istio, Traefik), Pomerium's and authentik's.
		"Remote-Groups", "Remote-Email", "Remote-Name", "X-Forwarded-Client-Cert", "X-Forwarded-Tls-Client-Cert",
		"X-Forwarded-Tls-Client-Cert-Info", "X-Pomerium-Jwt-Assertion", "X-Authentik-Username", "X-Authentik-Groups",
		"X-Authentik-Email", "X-Authentik-Name", "X-Authentik-Uid", "X-Authentik-Jwt",
		// Google Cloud Endpoints and API Gateway, AWS API Gateway, Kong.
		"X-Endpoint-Api-Userinfo", "X-Apigateway-Api-Userinfo", "X-Forwarded-Authorization",
		"X-Amzn-Remapped-Authorization", "X-Consumer-Id", "X-Consumer-Custom-Id", "X-Consumer-Username",
		"X-Consumer-Groups", "X-Credential-Identifier", "X-Authenticated-Userid", "X-Authenticated-Scope",
		"X-Authenticated-Groups", "X-Anonymous-Consumer",
		// Tailscale Serve and Teleport's application access name the
		// user (Teleport in a JWT it signs); Keycloak Gatekeeper names
		// the user and passes on the access token; ingress-nginx and
		// Kong's tls-metadata-headers pass the client certificate they
		// verified; Grafana's auth proxy headers beside X-Webauth-User.
		"Tailscale-User-Login", "Tailscale-User-Name", "Tailscale-User-Profile-Pic", "Teleport-Jwt-Assertion",
		"X-Auth-Username", "X-Auth-Email", "X-Auth-Userid", "X-Auth-Subject", "X-Auth-Roles", "X-Auth-Groups",
		"X-Auth-Token", "X-Auth-Audience", "X-Auth-Expiresin",
		"Ssl-Client-Cert", "Ssl-Client-Verify", "Ssl-Client-Subject-Dn", "Ssl-Client-Issuer-Dn",
		"X-Client-Cert", "X-Client-Cert-Subject-Dn", "X-Client-Cert-Issuer-Dn", "X-Client-Cert-Fingerprint",
		"X-Client-Cert-Serial", "X-Webauth-Email", "X-Webauth-Name",
		// Families dropped by prefix, whatever follows it and however
		// long: the Kubernetes front proxy's extra attributes, Vouch
		// Proxy's user, tokens and claims.
		"X-Remote-Extra-Scopes", "x_remote_extra_a-very-long-attribute-name-beyond-any-listed-header", "X-Vouch-User",
		"X-Vouch-Idp-Idtoken", "X-Vouch-Idp-Claims-Groups", "X-VOUCH-IDP-CLAIMS-EMAIL"}
	for _, token := range []string{ciToken, idp.Sign(t, "RS256", authtest.Claims("user:default/jane"))} {
		headers := []string{"Authorization", "Bearer " + token, "Cookie", "session=abc", "Proxy-Authorization", "Basic eDp5", "X-Kept", "yes"}
		for _, h := range claims {
			headers = append(headers, h, "admin")
		}
		status, _, body := in.DoAnon(t, "GET", "/api/hello/echo", nil, headers...)
		if status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		var echo struct{ Headers map[string][]string }
		if err := json.Unmarshal([]byte(body), &echo); err != nil {
			t.Fatal(err)
		}
		for _, h := range []string{"Authorization", "Cookie", "Proxy-Authorization"} {
			if _, ok := echo.Headers[h]; ok {
				t.Errorf("guest received %s", h)
			}
		}
		for k := range echo.Headers {
			for _, h := range claims {
				if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), strings.ReplaceAll(h, "_", "-")) {
					t.Errorf("guest received %s (sent as %s)", k, h)
				}
			}
		}
		if echo.Headers["X-Kept"][0] != "yes" || strings.Contains(body, token) {
			t.Errorf("echo = %s", body)
		}
	}
}

type whoami struct {
	Type    string
	Subject string
	Claims  map[string]any
}

func getWhoami(t *testing.T, in *servertest.Instance, path, token string) whoami {
	t.Helper()
	status, _, body := in.DoAnon(t, "GET", path, nil, bearer(token)...)
	if status != 200 {
		t.Fatalf("%s: %d %s", path, status, body)
	}
	var w whoami
	if err := json.Unmarshal([]byte(body), &w); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return w
}

// Principal fields arrive intact in the guest (greenroom.PrincipalFrom).
func TestPrincipalReachesGuest(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, authConfig(idp, ""))
	c := authtest.Claims("user:default/jane")
	c["email"] = "jane@example.com"
	c["groups"] = []string{"dev", "ops"}
	c["nested"] = map[string]any{"n": 1.5, "ok": true}
	c["unicode"] = "Zoë ✓"
	w := getWhoami(t, in, "/api/hello/whoami", idp.Sign(t, "EdDSA", c))
	if w.Type != "user" || w.Subject != "user:default/jane" {
		t.Errorf("jwt principal = %+v", w)
	}
	want, _ := json.Marshal(c)
	var wantMap map[string]any
	json.Unmarshal(want, &wantMap)
	got, _ := json.Marshal(w.Claims)
	want, _ = json.Marshal(wantMap)
	if string(got) != string(want) {
		t.Errorf("claims = %s\nwant     %s", got, want)
	}

	w = getWhoami(t, in, "/api/hello/whoami", ciToken)
	if w.Type != "service" || w.Subject != "service:ci" || w.Claims != nil {
		t.Errorf("static principal = %+v", w)
	}
	w = getWhoami(t, in, "/api/hello/whoami", opsToken)
	if w.Type != "user" || w.Subject != "user:default/ops" {
		t.Errorf("user token principal = %+v", w)
	}

	// On a public route: an anonymous caller, a credential for another
	// plugin and an invalid one are all no principal; a valid one is
	// passed on.
	pub := startAuth(t, authConfig(idp, fmt.Sprintf("[plugins.other]\npath = %q\npublic_routes = [\"/whoami\"]\n", helloWasm)))
	for _, token := range []string{"", todoToken, unknownToken, authtest.Tamper(idp.Sign(t, "RS256", c))} {
		if w := getWhoami(t, pub, "/api/other/whoami", token); w.Type != "none" || w.Subject != "" || w.Claims != nil {
			t.Errorf("public route, token %.12q: %+v", token, w)
		}
	}
	if w := getWhoami(t, pub, "/api/other/whoami", ciToken); w.Type != "service" || w.Subject != "service:ci" {
		t.Errorf("public route with a valid token: %+v", w)
	}
	if w := getWhoami(t, pub, "/api/other/whoami", idp.Sign(t, "ES256", c)); w.Type != "user" || w.Claims["email"] != "jane@example.com" {
		t.Errorf("public route with a valid JWT: %+v", w)
	}
}

func TestRateLimit(t *testing.T) {
	idp := authtest.New(t)
	// 3 requests per 3 minutes: nothing refills during the test.
	in := startAuth(t, authConfig(idp, "[server]\nrate_limit = \"1/m\"\nrate_burst = 3\n"))
	for i := 1; i <= 4; i++ {
		status, h, body := in.DoAnon(t, "GET", "/api/hello/whoami", nil, bearer(ciToken)...)
		if i <= 3 && status != 200 {
			t.Fatalf("request %d: %d %s", i, status, body)
		}
		if i == 4 {
			retry, err := strconv.Atoi(h.Get("Retry-After"))
			if status != 429 || err != nil || retry < 1 || retry > 180 || errorBody(t, body)["code"] != "rate_limited" {
				t.Fatalf("past the burst: %d %s Retry-After %q", status, body, h.Get("Retry-After"))
			}
		}
	}
	// Per principal: another credential has its own budget, and so does
	// every principal of JWTs...
	if status, _, _ := in.DoAnon(t, "GET", "/api/hello/whoami", nil, bearer(opsToken)...); status != 200 {
		t.Errorf("another principal limited: %d", status)
	}
	// ...and so does a JWT of the same subject: another kind of
	// credential, another principal
	// (TestRateLimitJWTCannotSpendAStaticTokensBudget).
	jane := idp.Sign(t, "RS256", authtest.Claims("service:ci"))
	if status, _, _ := in.DoAnon(t, "GET", "/api/hello/whoami", nil, bearer(jane)...); status != 200 {
		t.Errorf("JWT of a static token's subject: %d, want 200", status)
	}
	// Unauthenticated requests are limited by IP, failed ones included.
	for i := 1; i <= 4; i++ {
		status, _, _ := in.DoAnon(t, "GET", "/api/hello/ping", nil)
		if want := map[bool]int{true: 200, false: 429}[i <= 3]; status != want {
			t.Errorf("anonymous request %d: %d, want %d", i, status, want)
		}
	}
	// Health checks are never limited.
	for i := 0; i < 10; i++ {
		for _, path := range []string{"/.greenroom/health/v1/liveness", "/.greenroom/health/v1/readiness/"} {
			if status, _, _ := in.DoAnon(t, "GET", path, nil); status != 200 {
				t.Fatalf("%s %d: %d", path, i, status)
			}
		}
	}
	// A path in another case is no health endpoint (routing is
	// case-sensitive): it is limited like any other request.
	if status, _, _ := in.DoAnon(t, "GET", "/.GREENROOM/Health/v1/readiness", nil); status != 429 {
		t.Errorf("/.GREENROOM/Health/v1/readiness past the limit: %d, want 429", status)
	}
	if !strings.Contains(in.Log.String(), `"reason":"rate limit of 3 requests per 3m0s exceeded"`) {
		t.Error("rate limiting not audited")
	}
	// A health request with a credential is verified (readiness names
	// plugins to an admin), so it is counted and audited like any other:
	// readiness is no unlimited oracle for guessing tokens. This client's
	// IP used its budget above.
	if status, _, _ := in.DoAnon(t, "GET", "/.greenroom/health/v1/readiness", nil, bearer(opsToken+"x")...); status != 429 {
		t.Errorf("readiness with a guessed token past the limit: %d, want 429", status)
	}
	if !strings.Contains(in.Log.String(), `"path":"/.greenroom/health/v1/readiness","principal":"anonymous","reason":"rate limit`) {
		t.Errorf("the limited readiness guess is not audited:\n%s", in.Log.String())
	}
	if status, _, _ := in.DoAnon(t, "GET", "/.greenroom/health/v1/readiness", nil); status != 200 {
		t.Errorf("readiness probe without a credential: %d, want 200", status)
	}
	// A limited plugin request is counted under its plugin, like a 401.
	m := scrape(t, func(path string) (int, string) {
		status, _, body := in.DoAnon(t, "GET", path, nil, bearer(opsToken)...)
		return status, body
	})
	if n := value(m, "greenroom_http_requests_total", "plugin", "hello", "status", "429"); n < 1 {
		t.Errorf("429s counted under hello: %v", n)
	}
	// The audit line of a limited plugin request names the plugin.
	if !strings.Contains(in.Log.String(), `"plugin":"hello","principal":"anonymous","reason":"rate limit`) {
		t.Errorf("the audit line of a rate-limited plugin request lacks the plugin:\n%s", in.Log.String())
	}
}

// The rate limit's budget is the principal's whole identity, not its
// subject alone: a JWT whose subject is a static token's (anybody the
// identity provider knows can get one, if its subjects are chosen by
// users or the subject_claim is one they set) spends a budget of its
// own, and cannot exhaust the static token's; nor the other way round.
func TestRateLimitJWTCannotSpendAStaticTokensBudget(t *testing.T) {
	idp := authtest.New(t)
	// 3 requests per 3 minutes: nothing refills during the test.
	in := startAuth(t, authConfig(idp, "[server]\nrate_limit = \"1/m\"\nrate_burst = 3\n"))
	// Tokens of other bytes (another algorithm, another expiry) with the
	// same subject are one principal: they share one budget.
	impostor := []string{
		idp.Sign(t, "RS256", authtest.Claims("service:ci")),
		idp.Sign(t, "ES256", authtest.Claims("service:ci")),
		idp.Sign(t, "EdDSA", authtest.Claims("service:ci")),
		idp.Sign(t, "RS256", authtest.Claims("service:ci")),
	}
	for i, tok := range impostor {
		status, h, body := in.DoAnon(t, "GET", "/api/hello/whoami", nil, bearer(tok)...)
		if want := map[bool]int{true: 200, false: 429}[i < 3]; status != want {
			t.Fatalf("JWT of subject service:ci, request %d: %d %s, want %d", i+1, status, body, want)
		}
		if status == 429 && h.Get("Retry-After") == "" {
			t.Errorf("429 without Retry-After")
		}
	}
	// The static token of that subject keeps its own budget whole.
	for i := 1; i <= 4; i++ {
		status, _, body := in.DoAnon(t, "GET", "/api/hello/whoami", nil, bearer(ciToken)...)
		if want := map[bool]int{true: 200, false: 429}[i <= 3]; status != want {
			t.Fatalf("static token ci after the JWT's budget was spent, request %d: %d %s, want %d", i, status, body, want)
		}
	}
	// The other way round: ops, a static token, spends its budget; a JWT
	// of its subject is still served.
	for i := 1; i <= 4; i++ {
		status, _, body := in.DoAnon(t, "GET", "/api/hello/whoami", nil, bearer(opsToken)...)
		if want := map[bool]int{true: 200, false: 429}[i <= 3]; status != want {
			t.Fatalf("static token ops, request %d: %d %s, want %d", i, status, body, want)
		}
	}
	if status, _, body := in.DoAnon(t, "GET", "/api/hello/whoami", nil, bearer(idp.Sign(t, "RS256", authtest.Claims("user:default/ops")))...); status != 200 {
		t.Errorf("JWT of subject user:default/ops after the static token's budget was spent: %d %s, want 200", status, body)
	}
}

// The rate limit is the principal's, however its credential is spelt:
// the scheme's letter case, spaces around the token, or another static
// token of the same subject spend the one budget; and a refused spelling
// spends the client's IP budget, not a fresh one.
func TestRateLimitSpellings(t *testing.T) {
	idp := authtest.New(t)
	const ci2 = "ci2-token-0123456789abcdef0123456789"
	in := startAuth(t, authConfig(idp, fmt.Sprintf("[auth.tokens.ci2]\ntoken = %q\nsubject = \"service:ci\"\n[server]\nrate_limit = \"1/m\"\nrate_burst = 3\n", ci2)))
	for i, h := range []string{"Bearer " + ciToken, "bearer " + ciToken, "BEARER   " + ciToken + "  ", "Bearer " + ci2, "bEaReR " + ci2} {
		status, hd, body := in.DoAnon(t, "GET", "/api/hello/whoami", nil, "Authorization", h)
		if want := map[bool]int{true: 200, false: 429}[i < 3]; status != want {
			t.Errorf("request %d (%.10q...): %d %s, want %d", i+1, h, status, body, want)
		}
		if status == 429 && hd.Get("Retry-After") == "" {
			t.Errorf("request %d: 429 without Retry-After", i+1)
		}
	}
	// Refused spellings (another scheme, a tab, the token cut) count
	// against the IP, as no credential does.
	for i, h := range []string{"Basic " + ciToken, "Bearer\t" + ciToken, "Bearer " + ciToken[1:], ""} {
		header := []string{"Authorization", h}
		if h == "" {
			header = nil
		}
		status, _, body := in.DoAnon(t, "GET", "/api/hello/whoami", nil, header...)
		if want := map[bool]int{true: 401, false: 429}[i < 3]; status != want {
			t.Errorf("refused spelling %d: %d %s, want %d", i+1, status, body, want)
		}
	}
}

// Under the health prefix, other methods and paths get 405 and 404 without
// a credential, as the endpoints themselves: not the admin API's 401.
func TestHealthOtherRequests(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, authConfig(idp, ""))
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"POST", "/.greenroom/health/v1/liveness", 405},
		{"DELETE", "/.greenroom/health/v1/readiness", 405},
		{"GET", "/.greenroom/health/v1/", 404},
		{"GET", "/.greenroom/health/v2/liveness", 404},
		{"HEAD", "/.greenroom/health/v1/liveness", 200},
	} {
		for _, token := range []string{"", opsToken} {
			status, h, body := in.DoAnon(t, tc.method, tc.path, nil, bearer(token)...)
			if status != tc.want {
				t.Errorf("%s %s (token %v): %d %s, want %d", tc.method, tc.path, token != "", status, body, tc.want)
			}
			if tc.want == 405 && h.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: Allow %q", tc.method, tc.path, h.Get("Allow"))
			}
		}
	}
}

// The admin API's routes answer another method with 405 and Allow, after
// the admin check like the routes themselves (401 without a credential).
func TestAdminOtherMethods(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, authConfig(idp, ""))
	for _, tc := range []struct {
		method, path, allow string
	}{
		{"POST", "/.greenroom/plugins/v1/", "GET, HEAD"},
		{"DELETE", "/.greenroom/plugins/v1", "GET, HEAD"},
		{"GET", "/.greenroom/plugins/v1/reload", "POST"},
		{"PUT", "/.greenroom/scheduler/v1/tasks", "GET, HEAD"},
		{"DELETE", "/.greenroom/scheduler/v1/tasks/hello/t", "GET, HEAD"},
		{"GET", "/.greenroom/scheduler/v1/tasks/hello/t/trigger", "POST"},
		{"GET", "/.greenroom/scheduler/v1/tasks/hello/t/cancel", "POST"},
		{"POST", "/metrics", "GET, HEAD"},
	} {
		if status, _, body := in.DoAnon(t, tc.method, tc.path, nil); status != 401 {
			t.Errorf("%s %s without a credential: %d %s, want 401", tc.method, tc.path, status, body)
		}
		status, h, body := in.DoAnon(t, tc.method, tc.path, nil, bearer(opsToken)...)
		if status != 405 || h.Get("Allow") != tc.allow || !strings.Contains(body, `"code":"method_not_allowed"`) {
			t.Errorf("%s %s: %d Allow %q %s, want 405 with Allow %q", tc.method, tc.path, status, h.Get("Allow"), body, tc.allow)
		}
	}
	if status, _, body := in.DoAnon(t, "GET", "/.greenroom/plugins/v1/nope", nil, bearer(opsToken)...); status != 404 {
		t.Errorf("GET an unknown admin path: %d %s, want 404", status, body)
	}
}

// Every origin form the config accepts builds the CORS middleware, which
// panics on one it cannot parse (it did on "https://*.[::1]").
func TestCORSAcceptedOriginsBuild(t *testing.T) {
	origins := []string{"https://app.example", "https://*.example.org", "https://*.example.org:8443", "http://localhost:3000", "http://*.localhost:3000", "https://[::1]:8080", "http://127.0.0.1:9000", "https://xn--bcher-kva.example/"}
	quoted := make([]string, len(origins))
	for i, o := range origins {
		quoted[i] = strconv.Quote(o)
	}
	in := startAuth(t, "[server.cors]\norigins = ["+strings.Join(quoted, ", ")+"]\n"+fmt.Sprintf("[plugins.hello]\npath = %q\n", helloWasm))
	status, h, _ := in.DoAnon(t, "OPTIONS", "/api/hello/whoami", nil, "Origin", "https://a.example.org", "Access-Control-Request-Method", "GET")
	if status != 204 || h.Get("Access-Control-Allow-Origin") != "https://a.example.org" {
		t.Errorf("preflight from a wildcard's subdomain: %d %v", status, h)
	}
}

func TestCORS(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, authConfig(idp, "[server.cors]\norigins = [\"https://app.example\"]\nmax_age = 600\n"))
	preflight := func(origin string) (int, http.Header) {
		status, h, _ := in.DoAnon(t, "OPTIONS", "/api/hello/whoami", nil,
			"Origin", origin, "Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "Authorization")
		return status, h
	}
	status, h := preflight("https://app.example")
	if status != 204 || h.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") || h.Get("Access-Control-Max-Age") != "600" {
		t.Errorf("preflight from a listed origin: %d %v", status, h)
	}
	status, h = preflight("https://evil.example")
	if h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from another origin allowed: %d %v", status, h)
	}
	_, h, _ = in.DoAnon(t, "GET", "/api/hello/whoami", nil, "Origin", "https://app.example", "Authorization", "Bearer "+ciToken)
	if h.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(h.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
		t.Errorf("actual request from a listed origin: %v", h)
	}
	// Off by default.
	def := startAuth(t, authConfig(idp, ""))
	status, h, _ = def.DoAnon(t, "OPTIONS", "/api/hello/whoami", nil, "Origin", "https://app.example", "Access-Control-Request-Method", "GET")
	if h.Get("Access-Control-Allow-Origin") != "" || status != 401 {
		t.Errorf("CORS without [server.cors]: %d %v", status, h)
	}
}

// With no credential configured, nothing but the public routes answers.
func TestNoCredentialsConfigured(t *testing.T) {
	in := startAuth(t, fmt.Sprintf("[plugins.hello]\npath = %q\npublic_routes = [\"/ping\"]\n", helloWasm))
	for path, want := range map[string]int{"/api/hello/whoami": 401, "/api/hello/ping": 200, "/.greenroom/plugins/v1/": 401, "/.greenroom/health/v1/readiness": 200} {
		if status, _, body := in.DoAnon(t, "GET", path, nil, bearer(ciToken)...); status != want {
			t.Errorf("%s: %d %s, want %d", path, status, body, want)
		}
	}
	if !strings.Contains(in.Log.String(), "NO CREDENTIALS ARE CONFIGURED") {
		t.Error("no warning at start")
	}
}

func TestDangerouslyDisable(t *testing.T) {
	in := startAuth(t, fmt.Sprintf("[auth]\ndangerously_disable = true\n[auth.tokens.ci]\ntoken = %q\nsubject = \"service:ci\"\n[auth.tokens.todo]\ntoken = %q\nsubject = \"service:todo-bot\"\nplugins = [\"todo\"]\n[plugins.hello]\npath = %q\n", ciToken, todoToken, helloWasm))
	if w := getWhoami(t, in, "/api/hello/whoami", ""); w.Type != "none" {
		t.Errorf("anonymous: %+v", w)
	}
	if w := getWhoami(t, in, "/api/hello/whoami", ciToken); w.Subject != "service:ci" {
		t.Errorf("a valid credential still names the caller: %+v", w)
	}
	// Let in all the same, but a plugin never sees a principal the
	// operator did not allow it: a token restricted to other plugins, or
	// an invalid one, is no principal.
	for _, token := range []string{todoToken, unknownToken} {
		if w := getWhoami(t, in, "/api/hello/whoami", token); w.Type != "none" || w.Subject != "" {
			t.Errorf("token %.8q: %+v, want no principal", token, w)
		}
	}
	for _, token := range []string{"", ciToken, unknownToken} {
		if status, _, body := in.DoAnon(t, "GET", "/.greenroom/plugins/v1/", nil, bearer(token)...); status != 200 {
			t.Errorf("admin API (token %.8q): %d %s", token, status, body)
		}
	}
	if strings.Contains(in.Log.String(), `"audit":"denied"`) {
		t.Error("a request was refused with authentication off")
	}
	if !strings.Contains(in.Log.String(), "AUTHENTICATION IS OFF") {
		t.Error("no warning at start")
	}
}

// A reload that leaves [auth.jwt] as it is keeps the JWKS keys it has: an
// identity provider that is down at that moment does not log every JWT
// user out until its next refresh (changed static tokens apply at once).
func TestReloadKeepsJWKSWhileIdPIsDown(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, authConfig(idp, ""))
	seen := idp.Sign(t, "RS256", authtest.Claims("user:default/jane"))
	if status, _, body := in.DoAnon(t, "GET", "/api/hello/whoami", nil, bearer(seen)...); status != 200 {
		t.Fatalf("before: %d %s", status, body)
	}
	idp.Status.Store(503)
	fetches := idp.Fetches.Load()
	const newToken = "new-token-0123456789abcdef0123456789"
	in.SetConfig(authConfig(idp, "") + fmt.Sprintf("[auth.tokens.new]\ntoken = %q\nsubject = \"service:new\"\n", newToken))
	in.Reload(t)
	fresh := idp.Sign(t, "ES256", authtest.Claims("user:default/joe"))
	for name, token := range map[string]string{"a JWT seen before": seen, "a JWT never seen": fresh, "the new static token": newToken} {
		if status, _, body := in.DoAnon(t, "GET", "/api/hello/whoami", nil, bearer(token)...); status != 200 {
			t.Errorf("%s after a reload with the IdP down: %d %s", name, status, body)
		}
	}
	if n := idp.Fetches.Load(); n != fetches {
		t.Errorf("the reload fetched the JWKS again (%d fetches)", n-fetches)
	}
}

// Readiness answers a wrong credential (it is unauthenticated), counting
// the plugins, and audits the failed credential as a refusal.
func TestReadinessAuditsAFailedCredential(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, authConfig(idp, ""))
	if status, _, _ := in.DoAnon(t, "GET", "/.greenroom/health/v1/readiness", nil, bearer(opsToken+"x")...); status != 200 {
		t.Fatalf("readiness with a wrong token: %d", status)
	}
	if !strings.Contains(in.Log.String(), `"path":"/.greenroom/health/v1/readiness","principal":"anonymous","reason":"unknown token; the health endpoint answers without a credential"`) {
		t.Errorf("the failed credential is not audited:\n%s", in.Log.String())
	}
}

// A request's own credential is not logged, should the client also put it
// in the path: a JWT is no configured secret, so the log's redaction did
// not know it (the access and audit lines showed it whole).
func TestCredentialInPathNotLogged(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, authConfig(idp, ""))
	tok := idp.Sign(t, "RS256", authtest.Claims("user:default/jane"))
	in.DoAnon(t, "GET", "/api/hello/"+tok, nil, bearer(tok)...)
	in.DoAnon(t, "GET", "/api/hello/x%2F"+tok, nil, bearer(tok)...)
	in.DoAnon(t, "GET", "/.greenroom/plugins/v1/"+tok, nil, bearer(tok)...) // audited: not an admin
	// Refused, and logged (an audit found these in the log): two
	// Authorization headers, a tab after the scheme, no header at all.
	in.DoAnon(t, "GET", "/api/hello/two/"+tok, nil, "Authorization", "Bearer "+tok, "Authorization", "Bearer other-token-0123456789")
	in.DoAnon(t, "GET", "/api/hello/tab/"+tok, nil, "Authorization", "Bearer\t"+tok)
	in.DoAnon(t, "GET", "/api/hello/none/"+tok, nil)
	// Not sent as a credential, and hidden by an encoding (an "e" or the
	// dots encoded): redacted as it is when sent as is. It was logged.
	in.DoAnon(t, "GET", "/api/hello/enc/%65"+tok[1:], nil)
	in.DoAnon(t, "GET", "/api/hello/dots/"+strings.ReplaceAll(tok, ".", "%2E"), nil)
	log := in.Log.String()
	if strings.Contains(log, tok) || strings.Contains(log, tok[:40]) || strings.Contains(log, tok[len(tok)-40:]) {
		t.Errorf("the request's JWT is in the log:\n%s", log)
	}
	for _, p := range []string{"two", "tab", "none", "enc", "dots"} {
		if !strings.Contains(log, `"path":"/api/hello/`+p+`/[REDACTED]"`) {
			t.Errorf("no access line for /%s with the JWT redacted from its path:\n%s", p, log)
		}
	}
	if !strings.Contains(log, `"path":"/api/hello/[REDACTED]"`) {
		t.Errorf("no access line with the credential redacted from its path:\n%s", log)
	}
}

// The first segment after /api/ names a plugin only when the config has
// one by that name: anything else there is the client's text, which the
// audit line's plugin field quoted whole, a JWT included, while the path
// field had it [REDACTED] (an audit). The field names configured plugins
// only, as the access log's does; the answer still echoes what was asked
// (whether a plugin exists is no one's business without a credential).
func TestCredentialInPluginSegmentNotLogged(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, authConfig(idp, ""))
	tok := idp.Sign(t, "RS256", authtest.Claims("user:default/jane"))
	for _, tc := range []struct {
		path   string
		header []string
		status int
	}{
		{"/api/" + tok + "/x", nil, 401},
		{"/api/" + tok, bearer(todoToken), 403},
		{"/api/x%2F" + tok + "/x", nil, 401},
		{"/api/" + tok + "/x", []string{"Authorization", "Bearer " + tok, "Authorization", "Bearer " + tok}, 401},
	} {
		status, _, body := in.DoAnon(t, "GET", tc.path, nil, tc.header...)
		if status != tc.status {
			t.Errorf("%.40s...: %d %s, want %d", tc.path, status, body, tc.status)
		}
	}
	// A known plugin is still named.
	in.DoAnon(t, "GET", "/api/hello/whoami", nil)
	log := in.Log.String()
	if strings.Contains(log, tok[len(tok)-40:]) || strings.Contains(log, tok[:40]) {
		t.Errorf("the JWT is in the log:\n%s", log)
	}
	if !strings.Contains(log, `"path":"/api/hello/whoami","plugin":"hello"`) {
		t.Errorf("no audit line naming plugin hello:\n%s", log)
	}
}

// Each long word of the Authorization headers is looked for in the
// logged path: a head of thousands of them and a long path cost time
// quadratic in its size (an audit: 12 s of CPU for one refused 1 MiB
// request; this one takes milliseconds, the bound is generous). Past a
// few words the path is withheld whole.
func TestCredentialWordsInPathAreBounded(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, authConfig(idp, "[server]\nheader_limit = \"1MiB\"\n"))
	path := "/api/hello/" + strings.Repeat("a", 500<<10)
	words := strings.Repeat(" aaaaaaab", 55<<10)
	conn, err := net.Dial("tcp", strings.TrimPrefix(in.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer"+words+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(conn)
	took := time.Since(start)
	if !strings.HasPrefix(string(raw), "HTTP/1.1 401") {
		t.Errorf("answer: %.300s", raw)
	}
	if took > 3*time.Second {
		t.Errorf("a refused request with a %d KiB path and %d words in Authorization took %v", len(path)>>10, 55<<10, took)
	}
	if log := in.Log.String(); !strings.Contains(log, `"path":"[REDACTED]"`) || strings.Contains(log, "aaaaaaaaaaaaaaaa") {
		t.Errorf("the path is not logged as [REDACTED] (%d bytes of log)", len(log))
	}
	// A few words are each redacted from the path, as before.
	tok := idp.Sign(t, "RS256", authtest.Claims("user:default/jane"))
	in.DoAnon(t, "GET", "/api/hello/few/"+tok, nil, "Authorization", "Bearer one-word-1 two-word-2 three-word-3 "+tok)
	if log := in.Log.String(); !strings.Contains(log, `"path":"/api/hello/few/[REDACTED]"`) {
		t.Errorf("no line with the credential redacted from its path /api/hello/few/...")
	}
}

// A refused anonymous request keeps no connection (a 401, or a 429 of
// the per-IP limit): kept alive, one client parked a connection slot per
// refused request for idle_timeout and took every slot (an audit). A
// body sent with it does not keep the answer from arriving whole.
func TestRefusedKeepsNoConnection(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, authConfig(idp, "[server]\nrate_limit = \"1/m\"\nrate_burst = 3\n"))
	refused := func(req string, want int) {
		t.Helper()
		conn := dial(t, in.URL)
		fmt.Fprint(conn, req)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != want || !resp.Close {
			t.Errorf("%q: %d, Connection: close %v; want %d and the connection closed", req, resp.StatusCode, resp.Close, want)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("%q: the connection stays open after the answer (%v)", req, err)
		}
	}
	refused("GET /api/hello/echo HTTP/1.1\r\nHost: x\r\n\r\n", 401)
	refused("POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 401)
	refused("GET /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+unknownToken+"\r\n\r\n", 401)
	// The anonymous caller's budget of three is spent by now.
	refused("GET /api/hello/ping HTTP/1.1\r\nHost: x\r\n\r\n", 429)
	// An authenticated caller's answers keep the connection.
	conn := dial(t, in.URL)
	br := bufio.NewReader(conn)
	fmt.Fprintf(conn, "GET /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", ciToken)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 || resp.Close {
		t.Errorf("an authenticated request: %v %v", resp, err)
	}
}

// The audit log is written whatever [log] level says: an operator who
// turns the level up to quiet the access log keeps a line for every
// admin request and every refusal (at the level itself when it is above
// the line's own).
func TestAuditWrittenAtAnyLevel(t *testing.T) {
	idp := authtest.New(t)
	for _, level := range []string{"warn", "error"} {
		in := servertest.Start(t, authConfig(idp, ""), servertest.Options{CacheDir: cacheDir, Anonymous: true, LogLevel: level})
		if status, _, body := in.DoAnon(t, "GET", "/.greenroom/plugins/v1/", nil, bearer(opsToken)...); status != 200 {
			t.Fatalf("level %s: admin request: %d %s", level, status, body)
		}
		if status, _, _ := in.DoAnon(t, "GET", "/api/hello/whoami", nil); status != 401 {
			t.Fatalf("level %s: request without a credential: %d, want 401", level, status)
		}
		log := in.Log.String()
		if !strings.Contains(log, `"audit":"admin"`) || !strings.Contains(log, `"msg":"admin action"`) {
			t.Errorf("level %s: no audit line for the admin request:\n%s", level, log)
		}
		if !strings.Contains(log, `"audit":"denied"`) || !strings.Contains(log, `"msg":"access denied"`) {
			t.Errorf("level %s: no audit line for the refused request:\n%s", level, log)
		}
		if strings.Contains(log, `"msg":"request"`) {
			t.Errorf("level %s: an access log line (info) was written:\n%s", level, log)
		}
	}
}

// The access log names the credential a principal came with, as the
// audit log does: a JWT whose subject is a static token's ("service:ci",
// which the rate limit keeps apart: TestRateLimitJWTCannotSpendAStaticTokensBudget)
// read there as that token's request. It names the credential, never
// the token.
func TestAccessLogNamesTheCredential(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, authConfig(idp, ""))
	jwtCI := idp.Sign(t, "RS256", authtest.Claims("service:ci"))
	for id, token := range map[string]string{"by-token": ciToken, "by-jwt": jwtCI, "by-nobody": ""} {
		path := "/api/hello/whoami"
		if token == "" {
			path = "/api/hello/ping"
		}
		if status, _, body := in.DoAnon(t, "GET", path, nil, append(bearer(token), "X-Request-Id", id)...); status != 200 {
			t.Fatalf("%s: %d %s", id, status, body)
		}
	}
	want := map[string][2]any{"by-token": {"service:ci", "token:ci"}, "by-jwt": {"service:ci", "jwt"}, "by-nobody": {nil, nil}}
	seen := 0
	for _, l := range in.LogLines(t) {
		w, ok := want[fmt.Sprint(l["request_id"])]
		if !ok || l["msg"] != "request" {
			continue
		}
		seen++
		if l["principal"] != w[0] || l["credential"] != w[1] {
			t.Errorf("access line of %s: principal %v, credential %v; want %v, %v", l["request_id"], l["principal"], l["credential"], w[0], w[1])
		}
	}
	if seen != len(want) {
		t.Errorf("%d access lines of the %d requests", seen, len(want))
	}
	if log := in.Log.String(); strings.Contains(log, ciToken) || strings.Contains(log, jwtCI) {
		t.Error("a credential in the log")
	}
}

// A reload that changes [auth.jwt] is in force when it answers: a token
// of the old issuer, and one signed with a key only the old jwks_url
// publishes, are refused right after it (neither the verified-token cache
// nor the previous JWKS's keys carry over), and the new issuer's tokens
// with the new URL's keys are accepted; a reload that then changes only
// the issuer back keeps the new URL's keys and applies the issuer at
// once. (An attack pass on the binary changed each [auth.jwt] setting by
// SIGHUP, the endpoint and --watch under load; this pins the two an
// operator rotating identity providers relies on.)
func TestJWTReloadAppliesIssuerAndJWKSURLAtOnce(t *testing.T) {
	t.Parallel()
	oldIdP, newIdP := authtest.New(t), authtest.New(t)
	oldOnly := oldIdP.AddRSAKey(t, "old-only") // newIdP does not publish it
	newOnly := newIdP.AddRSAKey(t, "new-only")
	in := startAuth(t, authConfig(oldIdP, ""))
	const newIssuer = "https://idp.test/next"
	sign := func(key any, kid, iss, sub string) string {
		c := authtest.Claims(sub)
		c["iss"] = iss
		return authtest.SignWith(t, jwt.SigningMethodRS256, key, kid, c)
	}
	status := func(tok string) int {
		s, _, _ := in.DoAnon(t, "GET", "/api/hello/whoami", nil, bearer(tok)...)
		return s
	}
	oldIss := sign(oldOnly, "old-only", authtest.Issuer, "user:default/old")
	oldKeyNewIss := sign(oldOnly, "old-only", newIssuer, "user:default/mallory")
	newTok := sign(newOnly, "new-only", newIssuer, "user:default/new")
	for tok, want := range map[string]int{oldIss: 200, oldKeyNewIss: 401, newTok: 401} {
		if s := status(tok); s != want {
			t.Fatalf("before the reload: %d, want %d", s, want)
		}
	}

	next := strings.Replace(authConfig(newIdP, ""), fmt.Sprintf("issuer = %q", authtest.Issuer), fmt.Sprintf("issuer = %q", newIssuer), 1)
	in.SetConfig(next)
	in.Reload(t)
	for name, c := range map[string]struct {
		tok  string
		want int
	}{
		"the old issuer's token, verified before the reload":         {oldIss, 401},
		"a key only the old jwks_url publishes, with the new issuer": {oldKeyNewIss, 401},
		"the new issuer's token with the new jwks_url's key":         {newTok, 200},
	} {
		if s := status(c.tok); s != c.want {
			t.Errorf("right after the reload, %s: %d, want %d", name, s, c.want)
		}
	}

	// The issuer back, jwks_url kept: no fetch, the issuer at once.
	fetches := newIdP.Fetches.Load()
	in.SetConfig(authConfig(newIdP, ""))
	in.Reload(t)
	back := sign(newOnly, "new-only", authtest.Issuer, "user:default/back")
	if s := status(back); s != 200 {
		t.Errorf("the reverted issuer's token with the kept keys: %d, want 200", s)
	}
	if s := status(newTok); s != 401 {
		t.Errorf("the issuer the second reload removed, verified before it: %d, want 401", s)
	}
	if n := newIdP.Fetches.Load() - fetches; n != 0 {
		t.Errorf("a reload that kept jwks_url fetched the JWKS %d times", n)
	}
}

// A reload to a jwks_url whose JWKS cannot be fetched is applied (its
// other changes do not wait for the identity provider), and its answer
// says that every JWT is refused until a fetch succeeds, where only the
// log said so and the reload answered as if all was well; one whose URL
// answers, or that keeps a URL fetched before while the identity provider
// is down, says nothing of it.
func TestReloadToAnUnfetchableJWKSWarns(t *testing.T) {
	t.Parallel()
	idp, down := authtest.New(t), authtest.New(t)
	down.Status.Store(http.StatusInternalServerError)
	in := startAuth(t, authConfig(idp, ""))
	tok := idp.Sign(t, "RS256", authtest.Claims("user:default/jo"))
	const warning = "auth.jwt.jwks_url: no fetch of the JWKS has succeeded yet"
	warned := func(res *runtime.ReloadResult) bool {
		return slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.HasPrefix(w, warning) })
	}

	in.SetConfig(authConfig(down, ""))
	if res := in.Reload(t); !warned(res) {
		t.Errorf("a reload to a JWKS answering 500: warnings %q, want %q", res.Warnings, warning)
	}
	if s, _, _ := in.DoAnon(t, "GET", "/api/hello/whoami", nil, bearer(tok)...); s != 401 {
		t.Errorf("a JWT after that reload: %d, want 401", s)
	}
	in.SetConfig(authConfig(idp, ""))
	if res := in.Reload(t); warned(res) {
		t.Errorf("a reload to a JWKS that answers: warnings %q", res.Warnings)
	}
	idp.Status.Store(http.StatusInternalServerError)
	in.SetConfig(authConfig(idp, "[plugins.hello.limits]\ninstances = 2\n"))
	if res := in.Reload(t); warned(res) {
		t.Errorf("a reload keeping the fetched JWKS while the identity provider is down: warnings %q", res.Warnings)
	}
	if s, _, body := in.DoAnon(t, "GET", "/api/hello/whoami", nil, bearer(tok)...); s != 200 {
		t.Errorf("a JWT with the kept keys: %d %s, want 200", s, body)
	}
}
