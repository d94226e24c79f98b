package server_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// An origin written with its scheme's default port (":443" for https,
// ":80" for http) matches the Origin a browser sends, which never has
// one: it never matched, and the page's requests were refused. So do an
// IPv6 address written another way than a browser serializes it and a
// host in capitals.
func TestCORSDefaultPortOrigins(t *testing.T) {
	origins := []string{"https://app.example:443", "http://plain.example:80/", "https://*.sub.example:443", "https://[0:0::1]:443", "HTTPS://Caps.Example", "https://other.example:8443"}
	quoted := make([]string, len(origins))
	for i, o := range origins {
		quoted[i] = strconv.Quote(o)
	}
	in := startAuth(t, "[server.cors]\norigins = ["+strings.Join(quoted, ", ")+"]\n"+fmt.Sprintf("[plugins.hello]\npath = %q\n", helloWasm))
	for origin, allowed := range map[string]bool{
		"https://app.example":        true,
		"http://plain.example":       true,
		"https://a.sub.example":      true,
		"https://[::1]":              true,
		"https://caps.example":       true,
		"https://other.example:8443": true,
		"https://app.example:8443":   false,
		"http://app.example":         false,
		"https://other.example":      false,
	} {
		status, h, _ := in.DoAnon(t, "OPTIONS", "/api/hello/whoami", nil, "Origin", origin, "Access-Control-Request-Method", "GET")
		got := h.Get("Access-Control-Allow-Origin")
		if allowed && (status != 204 || got != origin) || !allowed && got != "" {
			t.Errorf("preflight from %s: %d, Access-Control-Allow-Origin %q, want allowed %v", origin, status, got, allowed)
		}
	}
}

// Browsers send CORS preflights without credentials: many users behind one
// proxy address share its anonymous budget. Their preflights must not
// spend it, nor be refused once it is spent, while each user is within
// their own budget.
func TestCORSPreflightNotRateLimited(t *testing.T) {
	in := startAuth(t, "[server]\nrate_limit = \"1/m\"\nrate_burst = 3\n[server.cors]\norigins = [\"https://app.example\"]\n"+fmt.Sprintf("[auth.tokens.ci]\ntoken = %q\nsubject = \"service:ci\"\n[auth.tokens.ops]\ntoken = %q\nsubject = \"user:default/ops\"\n[plugins.hello]\npath = %q\n", ciToken, opsToken, helloWasm))
	preflight := func(origin string) (int, string) {
		status, h, _ := in.DoAnon(t, "OPTIONS", "/api/hello/whoami", nil, "Origin", origin, "Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "authorization")
		return status, h.Get("Access-Control-Allow-Origin")
	}
	for i := 1; i <= 10; i++ {
		tok := []string{ciToken, opsToken}[i%2]
		if status, acao := preflight("https://app.example"); status != 204 || acao != "https://app.example" {
			t.Fatalf("preflight %d from the allowed origin: %d, Access-Control-Allow-Origin %q; want 204 and the origin", i, status, acao)
		}
		if i <= 6 {
			if status, _, body := in.DoAnon(t, "GET", "/api/hello/whoami", nil, append(bearer(tok), "Origin", "https://app.example")...); status != 200 {
				t.Fatalf("authenticated request %d after its preflight: %d %s", i, status, body)
			}
		}
	}
	// Past a user's own budget, the browser's page can read the 429 and
	// its Retry-After.
	status, h, _ := in.DoAnon(t, "GET", "/api/hello/whoami", nil, append(bearer(ciToken), "Origin", "https://app.example")...)
	if status != 429 || h.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(h.Get("Access-Control-Expose-Headers"), "Retry-After") || h.Get("Retry-After") == "" {
		t.Errorf("a user past their budget: %d %v, want 429 readable by the page", status, h)
	}
	// Anonymous requests from that address still have their own budget.
	for i := 1; i <= 4; i++ {
		status, _, _ := in.DoAnon(t, "GET", "/api/hello/whoami", nil)
		if want := map[bool]int{true: 401, false: 429}[i <= 3]; status != want {
			t.Errorf("anonymous request %d: %d, want %d", i, status, want)
		}
	}
}
