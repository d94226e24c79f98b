//go:build !wasip1

package greenroom

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestPrincipalNative(t *testing.T) {
	r := httptest.NewRequest("GET", "/whoami", nil)
	if p := PrincipalFrom(r); p.Type != PrincipalNone || p.Subject != "" {
		t.Errorf("plain test request: %+v", p)
	}
	if p := PrincipalFrom(nil); p.Type != PrincipalNone {
		t.Errorf("nil request: %+v", p)
	}
	r = WithPrincipal(r, Principal{Type: PrincipalUser, Subject: "user:default/jane", Claims: map[string]any{"email": "jane@example.com"}})
	if p := PrincipalFrom(r); p.Type != PrincipalUser || p.Subject != "user:default/jane" || p.Claims["email"] != "jane@example.com" {
		t.Errorf("WithPrincipal: %+v", p)
	}
	if p := PrincipalFrom(WithPrincipal(r, Principal{})); p.Type != PrincipalNone {
		t.Errorf("zero principal: %+v", p)
	}
	// Each call returns fresh claims, nested values included, as in the
	// runtime: a handler changing them changes no later call's.
	r = WithPrincipal(r, Principal{Type: PrincipalUser, Subject: "user:default/jane", Claims: map[string]any{"role": "reader", "groups": []any{"a"}}})
	p1 := PrincipalFrom(r)
	p1.Claims["role"] = "admin"
	p1.Claims["groups"].([]any)[0] = "root"
	if p := PrincipalFrom(r); p.Claims["role"] != "reader" || p.Claims["groups"].([]any)[0] != "a" {
		t.Errorf("claims changed through an earlier call: %v", p.Claims)
	}
}

func TestPublic(t *testing.T) {
	Public("/ping", "/healthz")
	if got := PublicRoutes(); !slices.Contains(got, "/ping") || !slices.Contains(got, "/healthz") {
		t.Errorf("PublicRoutes = %q", got)
	}
	for _, bad := range []string{"ping", "/x?y", "/static/*", "/files/{path...}", "/a b", "/tab\t", "/" + strings.Repeat("x", 1024)} {
		func() {
			defer func() {
				if v := recover(); v == nil || !strings.Contains(v.(string), "greenroom.Public") {
					t.Errorf("Public(%q) recovered %v, want a panic naming greenroom.Public", bad, v)
				}
			}()
			Public(bad)
		}()
	}
}
