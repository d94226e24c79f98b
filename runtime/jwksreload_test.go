package runtime_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// "The new credentials are in force from the start of the reload,
// before any plugin is swapped" (docs/operations.md, auth.md). A reload that
// revokes a static token and also points [auth.jwt] at an identity
// provider that is slow to answer kept the revoked token working for as
// long as the first JWKS fetch took (up to 10 s), while the reload waited
// (an audit). Static tokens now apply at once; JWTs are decided by the
// previous verifier until the new one has fetched its keys.
func TestRevocationDoesNotWaitForJWKSFetch(t *testing.T) {
	wasm := guesttest.Build(t, "plugins/hello")
	hang := make(chan struct{})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		w.Write([]byte(`{"keys":[]}`))
	}))
	defer idp.Close()
	const admin = "jwksreload-admin-token-0123456789abcdef0123456789"
	const victim = "jwksreload-victim-tokn-0123456789abcdef012345678"
	cfg := func(jwks string, withVictim bool) string {
		s := fmt.Sprintf(`[auth.tokens.admin]
token = %q
subject = "service:admin"
admin = true
[auth.jwt]
jwks_url = %q
issuer = "https://idp/"
audience = "greenroom"
[plugins.hello]
path = %q
`, admin, idp.URL+jwks, wasm)
		if withVictim {
			s += fmt.Sprintf("[auth.tokens.victim]\ntoken = %q\nsubject = \"service:victim\"\n", victim)
		}
		return s
	}
	in := servertest.Start(t, cfg("/fast", true), testOptions())
	if s, _, b := in.DoAnon(t, "GET", "/api/hello/whoami", nil, "Authorization", "Bearer "+victim); s != 200 {
		t.Fatalf("before: %d %s", s, b)
	}
	in.SetConfig(cfg("/slow", false))
	start := time.Now()
	done := make(chan struct{})
	go func() { defer close(done); in.Reload(t) }()
	time.Sleep(1500 * time.Millisecond)
	s, _, _ := in.DoAnon(t, "GET", "/api/hello/whoami", nil, "Authorization", "Bearer "+victim)
	close(hang) // the identity provider answers: the reload ends
	<-done
	t.Logf("reload took %v", time.Since(start))
	if s != 401 {
		t.Errorf("revoked token 1.5 s into the reload that revoked it: %d, want 401", s)
	}
}
