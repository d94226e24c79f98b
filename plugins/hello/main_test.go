//go:build !wasip1

// These tests run the handlers natively (greenroom.SetDB, SetConfig, ...:
// the SDK's native-only helpers), not in the wasm build.

package main

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

// Plugin handlers are ordinary net/http code: they test natively.
func TestRoutes(t *testing.T) {
	greenroom.SetConfig(map[string]string{"greeting": "hi"})
	h := greenroom.Handler()
	cases := []struct {
		method, path, body, want string
	}{
		{"GET", "/ping", "", `{"ok":true}`},
		{"GET", "/healthz", "", `{"status":"ok"}`},
		{"GET", "/echo?x=1", "", `"greeting":"hi"`},
		{"POST", "/echo", "payload", "payload"},
		{"GET", "/whoami", "", `{"Type":"none","Subject":"","Claims":null}`},
	}
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%s %s = %d %q, want %q", tc.method, tc.path, rec.Code, rec.Body, tc.want)
		}
	}
	if got := greenroom.PublicRoutes(); !slices.Equal(got, []string{"/ping", "/healthz", "/whoami"}) {
		t.Errorf("public routes asked = %q", got)
	}
}

func TestWhoami(t *testing.T) {
	r := greenroom.WithPrincipal(httptest.NewRequest("GET", "/whoami", nil),
		greenroom.Principal{Type: greenroom.PrincipalUser, Subject: "user:default/jane", Claims: map[string]any{"name": "Jane"}})
	rec := httptest.NewRecorder()
	greenroom.Handler().ServeHTTP(rec, r)
	if want := `{"Type":"user","Subject":"user:default/jane","Claims":{"name":"Jane"}}`; strings.TrimSpace(rec.Body.String()) != want {
		t.Errorf("whoami = %s, want %s", rec.Body, want)
	}
}
