package main

import (
	"net/http"
	"net/http/httptest"
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
		{"GET", "/echo?x=1", "", `"greeting":"hi"`},
		{"POST", "/echo", "payload", "payload"},
	}
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%s %s = %d %q, want %q", tc.method, tc.path, rec.Code, rec.Body, tc.want)
		}
	}
}
