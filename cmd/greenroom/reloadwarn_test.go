package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A reload's warnings reach the log as `reload: ...` lines, whichever way
// the reload was asked for: by SIGHUP and by the file watcher (the admin
// endpoint answers them instead; runtime/server's
// TestReloadToAnUnfetchableJWKSWarns checks that answer).
func TestReloadWarningsAreLogged(t *testing.T) {
	const warning = "reload: auth.jwt.jwks_url: no fetch of the JWKS has succeeded yet"
	down := func() string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "down", http.StatusInternalServerError)
		}))
		t.Cleanup(s.Close)
		return s.URL
	}
	jwt := func(url string) string {
		return "[auth.jwt]\njwks_url = \"" + url + "/jwks\"\nissuer = \"https://idp.example\"\naudience = \"greenroom\"\n"
	}
	for _, tc := range []struct {
		name  string
		flags []string
		ask   func(*process, *testing.T, string)
	}{
		{"SIGHUP", nil, func(p *process, t *testing.T, cfg string) {
			p.replaceConfig(t, cfg)
			p.cmd.Process.Signal(syscall.SIGHUP)
		}},
		{"watcher", []string{"--watch"}, func(p *process, t *testing.T, cfg string) {
			p.replaceConfig(t, cfg)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startProcess(t, "", jwt(down()), tc.flags...)
			waitUntil(t, 60*time.Second, "readiness", func() bool {
				s, _, err := p.get("/.greenroom/health/v1/readiness")
				return err == nil && s == 200
			})
			if strings.Contains(p.log(), warning) {
				t.Fatalf("%q before any reload:\n%s", warning, p.log())
			}
			// The reload points jwks_url at another server that answers 500.
			tc.ask(p, t, p.cfg[:strings.Index(p.cfg, "[auth.jwt]")]+jwt(down()))
			p.waitLog(t, warning)
		})
	}
}
