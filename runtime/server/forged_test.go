package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/internal/authtest"
)

// helloBotToken may call only plugin hello; plugin other is the hello
// module under another id, public route /ping not listed for it.
const helloBotToken = "hello-bot-token-0123456789abcdef0123"

func forgedConfig(idp *authtest.IdP) string {
	return authConfig(idp, fmt.Sprintf(`
[plugins.other]
path = %q
[auth.tokens.hellobot]
token = %q
subject = "service:hello-bot"
plugins = ["hello"]
`, helloWasm, helloBotToken))
}

// rawStatus sends target as the request line's target, byte for byte
// (neither Go's client nor its URL parser touches it), with header lines
// extra, and returns the answer's status and body.
func rawStatus(t *testing.T, base, target string, extra ...string) (int, string) {
	t.Helper()
	status, _, body := rawDo(t, base, target, extra...)
	return status, body
}

// rawDo is rawStatus with the answer's headers.
func rawDo(t *testing.T, base, target string, extra ...string) (int, http.Header, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	head := "GET " + target + " HTTP/1.1\r\nHost: greenroom.test\r\nConnection: close\r\n"
	for _, h := range extra {
		head += h + "\r\n"
	}
	if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// A credential is read from the Authorization header only: a valid static
// token or JWT in the query string (?access_token=, RFC 6750 2.3, which
// greenroom does not support), in a cookie, in Proxy-Authorization or in
// an API-key header lets nobody in.
func TestCredentialOnlyFromAuthorizationHeader(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, forgedConfig(idp))
	jwtTok := idp.Sign(t, "RS256", authtest.Claims("user:default/jane"))
	for _, tok := range []string{ciToken, opsToken, jwtTok} {
		for _, tc := range []struct {
			target string
			header []string
		}{
			{"/api/hello/whoami?access_token=" + tok, nil},
			{"/api/hello/whoami?token=" + tok, nil},
			{"/api/hello/whoami?authorization=Bearer%20" + tok, nil},
			{"/api/hello/whoami", []string{"Cookie: access_token=" + tok}},
			{"/api/hello/whoami", []string{"Cookie: token=" + tok}},
			{"/api/hello/whoami", []string{"Proxy-Authorization: Bearer " + tok}},
			{"/api/hello/whoami", []string{"X-Api-Key: " + tok}},
			{"/api/hello/whoami", []string{"X-Auth-Token: " + tok}},
			{"/api/hello/whoami", []string{"X-Forwarded-Authorization: Bearer " + tok}},
			{"/.greenroom/plugins/v1/?access_token=" + tok, nil},
		} {
			if status, body := rawStatus(t, in.URL, tc.target, tc.header...); status != 401 {
				t.Errorf("%s %v: %d %s, want 401", tc.target[:min(len(tc.target), 40)], tc.header, status, body)
			}
		}
	}
	// The same credential in the header works (the test proves something).
	if status, body := rawStatus(t, in.URL, "/api/hello/whoami", "Authorization: Bearer "+jwtTok); status != 200 {
		t.Fatalf("the JWT in the header: %d %s", status, body)
	}
}

// The Authorization header's scheme is matched in any letter case; the
// token itself exactly.
func TestBearerSchemeAnyCase(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, forgedConfig(idp))
	for _, tc := range []struct {
		header string
		want   int
	}{
		{"bearer " + ciToken, 200},
		{"BEARER " + ciToken, 200},
		{"BeArEr " + ciToken, 200},
		{"Bearer " + strings.ToUpper(ciToken), 401},
		{"Bearer\t" + ciToken, 401},
		{"Bearer: " + ciToken, 401},
		{"Bearer " + ciToken[:10] + " " + ciToken[10:], 401},
		{"Bearer \"" + ciToken + "\"", 401},
		{"Bearer " + ciToken + ",Bearer " + opsToken, 401},
		// Spaces and tabs around the token are the header's padding;
		// Unicode's other white space, which a header carries as its
		// bytes, is not: the token followed by U+00A0 was accepted.
		{"Bearer  \t" + ciToken + " \t", 200},
		{"Bearer " + ciToken + "\u00a0", 401},
		{"Bearer \u00a0" + ciToken, 401},
		{"Bearer " + ciToken + "\u3000", 401},
	} {
		if status, body := rawStatus(t, in.URL, "/api/hello/whoami", "Authorization: "+tc.header); status != tc.want {
			t.Errorf("Authorization %q: %d %s, want %d", tc.header[:min(len(tc.header), 24)], status, body, tc.want)
		}
	}
}

// An attacker rewrites the request target to reach, without a
// credential, a route that is not public through one that is, or, with
// a token restricted to hello, plugin other. Matching is on the target as
// sent, so every trick either stays with the plugin the first segment
// names (and reaches no other route than the one it names as sent) or
// makes the request less public.
func TestPathTricksReachNothing(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, forgedConfig(idp))

	// Baseline: the public route is public, other is not hellobot's.
	if status, body := rawStatus(t, in.URL, "/api/hello/ping"); status != 200 {
		t.Fatalf("/api/hello/ping: %d %s", status, body)
	}
	if status, body := rawStatus(t, in.URL, "/api/hello/whoami", "Authorization: Bearer "+helloBotToken); status != 200 || !strings.Contains(body, `"Subject":"service:hello-bot"`) {
		t.Fatalf("hellobot to hello: %d %s, want whoami's answer", status, body)
	}
	if status, body := rawStatus(t, in.URL, "/api/other/whoami", "Authorization: Bearer "+helloBotToken); status != 403 {
		t.Fatalf("hellobot to other: %d %s, want 403", status, body)
	}

	// Without a credential, nothing but /ping itself is public.
	for _, target := range []string{
		"/api/hello/ping/",
		"/api/hello/ping/.",
		"/api/hello/./ping",
		"/api/hello/ping/../whoami",
		"/api/hello/ping/..%2fwhoami",
		"/api/hello/ping%2f..%2fwhoami",
		"/api/hello/ping%2F%2E%2E%2Fwhoami",
		"/api/hello/%2e%2e/hello/whoami",
		"/api/hello/x/%2e%2e/whoami",
		"/api/hello/ping/%2e%2e/whoami",
		"/api/hello/ping%00",
		"/api/hello/ping%0a",
		"/api/hello/ping;/whoami",
		"/api/hello/ping%3f/../whoami",
		"/api/hello/ping%23/../whoami",
		"/api/hello/ping\\..\\whoami",
		"/api/hello/%70ing",
		"/api/hello/Ping",
		"/api/Hello/ping",
		"/api/HELLO/ping",
		"/api/hello%2fping",
		"/api//hello/ping",
		"/api/./hello/ping",
		"/api/other/ping",
		"/api/other/../hello/whoami",
		"/api/hello/whoami",
		"/api/hello/healthz",
		"http://greenroom.test/api/hello/whoami",
		"http://greenroom.test/api/hello/ping/../whoami",
	} {
		status, body := rawStatus(t, in.URL, target)
		// 400 (a malformed target) and 404 (not under /api/) reach no
		// plugin either.
		if status != 401 && status != 400 && status != 404 {
			t.Errorf("anonymous %s: %d %s, want 401", target, status, body)
		}
		if strings.Contains(body, "Subject") {
			t.Errorf("anonymous %s reached whoami: %s", target, body)
		}
	}
	// A fragment is no part of the target: the request is /ping's.
	if status, body := rawStatus(t, in.URL, "/api/hello/ping#/../whoami"); status != 200 || body != `{"ok":true}` {
		t.Errorf("anonymous /api/hello/ping#/../whoami: %d %s, want /ping's answer", status, body)
	}

	// With hellobot's token, other stays out of reach.
	for _, target := range []string{
		"/api/other/whoami",
		"/api/Other/whoami",
		"/api/OTHER/whoami",
		"/api/%6fther/whoami",
		"/api//other/whoami",
		"/api/./other/whoami",
		"/api/hello/../other/whoami",
		"/api/hello/%2e%2e/other/whoami",
		"/api/hello%2f..%2fother/whoami",
		"/api/hello%2F%2E%2E%2Fother/whoami",
		"/api/hello/..%2f..%2fapi%2fother%2fwhoami",
		"/api/hello/..%5cother/whoami",
		"/api/other%2fwhoami",
		"/API/other/whoami",
		"/api/other/ping",
		"http://greenroom.test/api/other/whoami",
		"http://greenroom.test/api/hello/../other/whoami",
	} {
		status, h, body := rawDo(t, in.URL, target, "Authorization: Bearer "+helloBotToken)
		// hello's ServeMux redirects a path with dot segments to the
		// cleaned one, which the server keeps inside hello's mount.
		if status == 200 || status/100 == 3 && !strings.HasPrefix(h.Get("Location"), "/api/hello/") {
			t.Errorf("hellobot %s: %d %s (Location %q), want a refusal", target, status, body, h.Get("Location"))
		}
		if strings.Contains(body, "Subject") {
			t.Errorf("hellobot %s reached a whoami: %s", target, body)
		}
	}
	// Whatever hello itself answers to a target that climbs out of its
	// mount, it is hello that answers: the request never goes to other.
	for _, line := range in.LogLines(t) {
		if line["plugin"] == "other" && line["principal"] == "service:hello-bot" && line["status"] != float64(403) {
			t.Errorf("hellobot reached other: %v", line)
		}
	}
}

// An oversized credential is refused whole (431 past header_limit, 401
// below it), and none of it reaches the log.
func TestOversizedCredential(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, forgedConfig(idp))
	huge := "Qk" + strings.Repeat("x7Zq", 5<<10) // 20 KiB, past the default 16 KiB
	if status, body := rawStatus(t, in.URL, "/api/hello/whoami", "Authorization: Bearer "+huge); status != 431 {
		t.Errorf("20 KiB credential: %d %s, want 431", status, body)
	}
	big := "eyJ" + strings.Repeat("a", 4<<10) + ".eyJ" + strings.Repeat("b", 4<<10) + "." + strings.Repeat("c", 4<<10)
	if status, body := rawStatus(t, in.URL, "/api/hello/whoami", "Authorization: Bearer "+big); status != 401 {
		t.Errorf("12 KiB JWT-shaped credential: %d %s, want 401", status, body)
	}
	log := in.Log.String()
	for _, part := range []string{"x7Zqx7Zqx7Zq", "aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"} {
		if strings.Contains(log, part) {
			t.Errorf("the log holds part of an oversized credential (%s)", part)
		}
	}
}
