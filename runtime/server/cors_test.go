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
