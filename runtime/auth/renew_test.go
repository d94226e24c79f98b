package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/authtest"
)

// A reload that changes [auth.jwt] but not its JWKS URL keeps the keys
// already fetched and applies the new settings at once: no fetch (the
// reload used to wait for one, up to 10 s, and the old settings held
// meanwhile), and no token verified under the old settings is taken from
// their cache.
func TestRenewWithNewClaimsKeepsKeys(t *testing.T) {
	idp := authtest.New(t)
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{})
	oldAud := idp.Sign(t, "RS256", authtest.Claims("user:default/jane"))
	if _, err := authenticate(a, "Bearer "+oldAud); err != nil {
		t.Fatalf("before the reload: %v", err)
	}
	fetches := idp.Fetches.Load()

	next := jwtConfig(idp)
	next.Audience = "greenroom-next"
	cfg := &config.Auth{JWT: next}
	if in := a.Interim(cfg, Options{Log: quietLog()}); in != nil {
		t.Error("Interim for the same JWKS URL: want nil (Renew fetches nothing)")
	}
	n, err := a.Renew(cfg, Options{Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	a.Close() // leaves the keys to n

	if got := idp.Fetches.Load(); got != fetches {
		t.Errorf("the renewal fetched the JWKS %d times; the URL did not change", got-fetches)
	}
	if _, err := authenticate(n, "Bearer "+oldAud); err == nil {
		t.Error("a token for the old audience, verified before the reload, was accepted after it")
	}
	c := authtest.Claims("user:default/jane")
	c["aud"] = "greenroom-next"
	if p, err := authenticate(n, "Bearer "+idp.Sign(t, "ES256", c)); err != nil || p.Subject != "user:default/jane" {
		t.Errorf("a token for the new audience: %+v %v", p, err)
	}
	if got := idp.Fetches.Load(); got != fetches {
		t.Errorf("verifying fetched the JWKS %d times: its keys were not kept", got-fetches)
	}
}

// A reload that points [auth.jwt] at another JWKS URL fetches it before
// the new settings are complete; meanwhile JWTs are checked with the
// previous keys but the new settings: a token the new issuer, audience or
// algorithms refuse is refused from the reload's start.
func TestInterimAppliesNewClaims(t *testing.T) {
	idp := authtest.New(t)
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{})
	old := authtest.Claims("user:default/jane")
	oldTok := idp.Sign(t, "ES256", old)
	if _, err := authenticate(a, "Bearer "+oldTok); err != nil {
		t.Fatalf("before the reload: %v", err)
	}
	fetches := idp.Fetches.Load()

	next := jwtConfig(idp)
	next.JWKSURL += "?moved"
	next.Issuer = "https://idp.example/next"
	next.Algorithms = []string{"RS256"}
	in := a.Interim(&config.Auth{JWT: next}, Options{Log: quietLog()})
	if in == nil {
		t.Fatal("Interim for a new JWKS URL: nil")
	}
	defer in.Close()
	if _, err := authenticate(in, "Bearer "+oldTok); err == nil {
		t.Error("a token of the old issuer was accepted while the new JWKS URL was fetched")
	}
	c := authtest.Claims("user:default/jane")
	c["iss"] = next.Issuer
	if _, err := authenticate(in, "Bearer "+idp.Sign(t, "ES256", c)); err == nil {
		t.Error("an ES256 token was accepted after the reload left only RS256")
	}
	if p, err := authenticate(in, "Bearer "+idp.Sign(t, "RS256", c)); err != nil || p.Subject != "user:default/jane" {
		t.Errorf("a token the new settings accept, signed with a key already held: %+v %v", p, err)
	}
	if got := idp.Fetches.Load(); got != fetches {
		t.Errorf("the interim fetched the JWKS %d times", got-fetches)
	}
	in.Close() // borrowed: the keys stay a's
	if _, err := authenticate(a, "Bearer "+idp.Sign(t, "RS256", authtest.Claims("user:default/ann"))); err != nil {
		t.Errorf("the previous authenticator after the interim closed: %v", err)
	}
}

// A principal's Key is its whole identity: the kind of credential, and a
// JWT's issuer with its subject. A JWT whose subject is a static token's,
// or another issuer's (after a reload), is another principal; every
// spelling of one credential, every static token of one subject and
// every JWT of one issuer and subject is one.
func TestPrincipalKey(t *testing.T) {
	idp := authtest.New(t)
	cfg := staticConfig()
	cfg.Tokens["ci2"] = &config.Token{Token: otherToken, Subject: "service:ci", Type: "service"}
	cfg.JWT = jwtConfig(idp)
	a := newAuth(t, cfg, Options{})
	key := func(a *Authenticator, header string) string {
		t.Helper()
		p, err := authenticate(a, header)
		if err != nil {
			t.Fatalf("%.20q: %v", header, err)
		}
		return p.Key()
	}
	static := key(a, "Bearer "+ciToken)
	for _, h := range []string{"bearer  " + ciToken + " ", "Bearer " + otherToken} {
		if k := key(a, h); k != static {
			t.Errorf("%.20q: key %q, want the static token's %q", h, k, static)
		}
	}
	jwtCI := key(a, "Bearer "+idp.Sign(t, "RS256", authtest.Claims("service:ci")))
	if jwtCI == static {
		t.Errorf("a JWT of subject service:ci has the static token's key %q", static)
	}
	for _, alg := range []string{"ES256", "EdDSA"} {
		if k := key(a, "Bearer "+idp.Sign(t, alg, authtest.Claims("service:ci"))); k != jwtCI {
			t.Errorf("%s JWT of the same issuer and subject: key %q, want %q", alg, k, jwtCI)
		}
	}
	if k := key(a, "Bearer "+idp.Sign(t, "RS256", authtest.Claims("service:other"))); k == jwtCI {
		t.Errorf("JWTs of two subjects share the key %q", k)
	}

	// Another issuer, after a reload: its subjects are not the first's.
	next := jwtConfig(idp)
	next.Issuer = "https://idp2.test"
	n, err := a.Renew(&config.Auth{Tokens: cfg.Tokens, JWT: next}, Options{Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	c := authtest.Claims("service:ci")
	c["iss"] = next.Issuer
	if k := key(n, "Bearer "+idp.Sign(t, "RS256", c)); k == jwtCI || k == static {
		t.Errorf("a JWT of another issuer: key %q, the first issuer's %q, the static token's %q", k, jwtCI, static)
	}
	if k := key(n, "Bearer "+ciToken); k != static {
		t.Errorf("the static token after the reload: key %q, want %q", k, static)
	}

	// The issuer is counted: its end is not a guess at the subject's start.
	if jwtKey("https://a:b", "c") == jwtKey("https://a", "b:c") {
		t.Error("jwtKey is ambiguous")
	}
}

// A renewal that fetches a new JWKS URL stops waiting for it when
// Options.Wait ends (a newer reload superseded the one waiting): it
// returns ErrAbandoned at once, having built nothing, and the previous
// authenticator keeps its keys. It waited the whole fetch (up to 10 s)
// for an identity provider that did not answer.
func TestRenewAbandonedWhenItsWaitEnds(t *testing.T) {
	idp := authtest.New(t)
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(hang.Close)
	next := jwtConfig(idp)
	next.JWKSURL = hang.URL + "/jwks"
	wait, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(200*time.Millisecond, func() { cancel(errors.New("superseded")) })
	start := time.Now()
	n, err := a.Renew(&config.Auth{JWT: next}, Options{Log: quietLog(), Wait: wait})
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the renewal waited %v after its wait ended", took)
	}
	if !errors.Is(err, ErrAbandoned) || n != nil {
		t.Fatalf("Renew after its wait ended: %v %v, want ErrAbandoned and nothing", n, err)
	}
	if _, err := authenticate(a, "Bearer "+idp.Sign(t, "RS256", authtest.Claims("user:default/jane"))); err != nil {
		t.Errorf("the previous authenticator after the abandoned renewal: %v", err)
	}
}
