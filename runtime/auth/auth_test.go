package auth

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/authtest"
	"github.com/greenroom-dev/greenroom/runtime/internal/syncbuf"
)

const (
	ciToken    = "ci-token-0123456789abcdef0123456789"
	opsToken   = "ops-token-0123456789abcdef0123456789"
	otherToken = "xx-token-0123456789abcdef0123456789" // same length as ciToken
)

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func staticConfig() *config.Auth {
	return &config.Auth{Tokens: map[string]*config.Token{
		"ci":  {Token: ciToken, Subject: "service:ci", Type: "service", Plugins: []string{"todo"}},
		"ops": {Token: opsToken, Subject: "user:default/ops", Type: "user", Admin: true},
	}}
}

func jwtConfig(idp *authtest.IdP) *config.JWT {
	return &config.JWT{
		JWKSURL:       idp.JWKSURL,
		Issuer:        authtest.Issuer,
		Audience:      authtest.Audience,
		Algorithms:    []string{"RS256", "ES256", "EdDSA"},
		SubjectClaim:  "sub",
		Leeway:        config.Duration(30 * time.Second),
		AdminClaim:    "groups",
		AdminValue:    "greenroom-admins",
		PrincipalType: "user",
	}
}

func newAuth(t *testing.T, cfg *config.Auth, opts Options) *Authenticator {
	t.Helper()
	if opts.Log == nil {
		opts.Log = quietLog()
	}
	a, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func authenticate(a *Authenticator, header string) (*Principal, error) {
	return a.Authenticate(context.Background(), []byte(header))
}

func TestStaticTokens(t *testing.T) {
	a := newAuth(t, staticConfig(), Options{})
	if !a.Configured() {
		t.Fatal("not configured")
	}
	p, err := authenticate(a, "Bearer "+ciToken)
	if err != nil || p.Subject != "service:ci" || p.Type != TypeService || p.Admin || p.Credential != "token:ci" || p.Claims != nil {
		t.Fatalf("ci: %+v %v", p, err)
	}
	if !p.AllowsPlugin("todo") || p.AllowsPlugin("hello") || strings.Join(p.Plugins(), ",") != "todo" {
		t.Errorf("ci restrictions: todo=%v hello=%v %v", p.AllowsPlugin("todo"), p.AllowsPlugin("hello"), p.Plugins())
	}
	if p, err := authenticate(a, "\t Bearer \t"+ciToken+" \t"); err != nil || p.Subject != "service:ci" {
		t.Fatalf("ci padded with spaces and tabs: %+v %v", p, err)
	}
	p, err = authenticate(a, "bearer   "+opsToken+"  ")
	if err != nil || p.Subject != "user:default/ops" || p.Type != TypeUser || !p.Admin || !p.AllowsPlugin("anything") || p.Plugins() != nil {
		t.Fatalf("ops: %+v %v", p, err)
	}

	if _, err := authenticate(a, ""); !errors.Is(err, ErrNoCredential) {
		t.Errorf("no header: %v", err)
	}
	for _, h := range []string{
		"Bearer " + otherToken,
		"Bearer " + ciToken[:len(ciToken)-1],
		"Bearer " + ciToken[:len(ciToken)-1] + string(ciToken[len(ciToken)-1]^1), // its length, its last byte off
		"Bearer " + ciToken + "x",
		"Bearer " + strings.ToUpper(ciToken),
		"Bearer",
		"Bearer    ",
		"Basic " + ciToken,
		ciToken,
		"Token " + ciToken,
		// White space other than spaces and tabs is part of the token:
		// U+00A0, U+0085, U+2028 and U+3000 around it made it another
		// spelling of the same credential (bytes.TrimSpace took them).
		"Bearer " + ciToken + "\u00a0",
		"Bearer \u00a0" + ciToken,
		"Bearer " + ciToken + "\u0085",
		"Bearer " + ciToken + "\u2028",
		"\u3000Bearer " + ciToken,
		"Bearer " + ciToken + "\u3000",
		"Bearer " + ciToken + "\v",
		"Bearer " + ciToken + "\r\n",
	} {
		p, err := authenticate(a, h)
		var ae *Error
		if p != nil || !errors.As(err, &ae) || ae.Public == "" {
			t.Errorf("%q: got %+v %v, want a refusal", h, p, err)
			continue
		}
		if strings.Contains(ae.Reason, "token-0123456789") || strings.Contains(ae.Public, "token-0123456789") {
			t.Errorf("%q: the refusal repeats the credential: %+v", h, ae)
		}
	}
}

func TestNothingConfigured(t *testing.T) {
	a := newAuth(t, &config.Auth{}, Options{})
	if a.Configured() {
		t.Error("an empty [auth] is configured")
	}
	if _, err := authenticate(a, "Bearer "+ciToken); err == nil {
		t.Error("a token passed with none configured")
	}
}

func TestGenerateToken(t *testing.T) {
	a, _ := GenerateToken()
	b, err := GenerateToken()
	if err != nil || a == b || len(a) < config.MinTokenLength || !strings.HasPrefix(a, "greenroom_") {
		t.Errorf("tokens %q %q %v", a, b, err)
	}
}

func TestJWT(t *testing.T) {
	idp := authtest.New(t)
	cfg := staticConfig()
	cfg.JWT = jwtConfig(idp)
	a := newAuth(t, cfg, Options{})

	now := time.Now()
	with := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := authtest.Claims("user:default/jane")
		edit(c)
		return c
	}
	valid := authtest.Claims("user:default/jane")
	der, _ := x509.MarshalPKIXPublicKey(idp.RSA.Public())
	ecDER, _ := x509.MarshalPKIXPublicKey(idp.EC.Public())

	good := []struct {
		name  string
		token string
		admin bool
	}{
		{"RS256", idp.Sign(t, "RS256", valid), false},
		{"ES256", idp.Sign(t, "ES256", valid), false},
		{"EdDSA", idp.Sign(t, "EdDSA", valid), false},
		{"no kid: every key of the alg is tried", authtest.SignWith(t, jwt.SigningMethodES256, idp.EC, "", valid), false},
		{"audience array", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["aud"] = []string{"other", authtest.Audience} })), false},
		{"expired within the leeway", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() })), false},
		{"nbf within the leeway", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["nbf"] = now.Add(10 * time.Second).Unix() })), false},
		// No lifetime is imposed: the issuer's exp is trusted up to the
		// year 9999 (docs/auth.md), and the token remembered a minute.
		{"expiring in the year 9000", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["exp"] = int64(221845392000) })), false},
		{"iat within the leeway", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["iat"] = now.Add(10 * time.Second).Unix() })), false},
		{"admin by group", idp.Sign(t, "ES256", with(func(c jwt.MapClaims) { c["groups"] = []string{"dev", "greenroom-admins"} })), true},
		{"not admin by other groups", idp.Sign(t, "ES256", with(func(c jwt.MapClaims) { c["groups"] = []string{"dev"} })), false},
		{"admin claim is a string", idp.Sign(t, "ES256", with(func(c jwt.MapClaims) { c["groups"] = "greenroom-admins" })), true},
		{"admin claim true", idp.Sign(t, "ES256", with(func(c jwt.MapClaims) { c["groups"] = true })), true},
		// encoding/json refuses it into a float64; the guest gets it as a
		// json.Number (docs/auth.md).
		{"a claim beyond float64's range", idp.Sign(t, "ES256", with(func(c jwt.MapClaims) { c["huge"] = json.Number("2e308") })), false},
	}
	for _, tc := range good {
		t.Run("valid/"+tc.name, func(t *testing.T) {
			p, err := authenticate(a, "Bearer "+tc.token)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if p.Type != TypeUser || p.Subject != "user:default/jane" || p.Credential != "jwt" || p.Admin != tc.admin || !p.AllowsPlugin("any") {
				t.Errorf("principal = %+v", p)
			}
			var claims map[string]any
			d := json.NewDecoder(bytes.NewReader(p.Claims))
			d.UseNumber()
			if err := d.Decode(&claims); err != nil || claims["sub"] != "user:default/jane" || claims["iss"] != authtest.Issuer {
				t.Errorf("claims = %s (%v)", p.Claims, err)
			}
		})
	}

	bad := []struct {
		name, token, reason, public string
	}{
		{"expired", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), "expired", "token expired"},
		{"not yet valid", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() })), "not valid yet", "token not valid yet"},
		{"issued in the future", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() })), "used before issued", invalidCredential},
		// Past int64 seconds golang-jwt's dates wrap to the distant past.
		{"not valid until after int64 seconds", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["nbf"] = 1e19 })), "nbf claim 10000000000000000000 is out of range", invalidCredential},
		{"issued after int64 seconds", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["iat"] = 1e300 })), "iat claim 1e+300 is out of range", invalidCredential},
		{"expiring after int64 seconds", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["exp"] = 9.3e18 })), "exp claim 9300000000000000000 is out of range", invalidCredential},
		{"expiring beyond float64's range", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["exp"] = json.Number("1e400") })), "exp claim 1e400 is out of range", invalidCredential},
		{"expiring after the year 9999", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["exp"] = maxNumericDate + 1 })), "out of range", invalidCredential},
		{"wrong issuer", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["iss"] = "https://evil.test" })), "issuer", invalidCredential},
		{"no issuer", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { delete(c, "iss") })), "iss claim is required", invalidCredential},
		{"wrong audience", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["aud"] = "other" })), "audience", invalidCredential},
		{"no expiry", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { delete(c, "exp") })), "required claim", invalidCredential},
		{"no subject", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { delete(c, "sub") })), "no sub claim", invalidCredential},
		{"subject not a string", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["sub"] = 42 })), "no sub claim", invalidCredential},
		{"alg none", authtest.AlgNone(t, valid), `algorithm "none" is not allowed`, invalidCredential},
		{"HS256 with the public key (PEM)", idp.HS256WithPublicKey(t, valid), `algorithm "HS256" is not allowed`, invalidCredential},
		{"HS256 with the public key (DER)", authtest.SignWith(t, jwt.SigningMethodHS256, der, authtest.KidRSA, valid), `algorithm "HS256" is not allowed`, invalidCredential},
		{"HS256 with the EC public key (DER)", authtest.SignWith(t, jwt.SigningMethodHS256, ecDER, authtest.KidEC, valid), `algorithm "HS256" is not allowed`, invalidCredential},
		{"RS384 not configured", authtest.SignWith(t, jwt.SigningMethodRS384, idp.RSA, authtest.KidRSA, valid), `algorithm "RS384" is not allowed`, invalidCredential},
		{"unknown kid", authtest.SignWith(t, jwt.SigningMethodRS256, idp.RSA, "nope", valid), `"nope" is not in the issuer's JWKS (fetched again for an unknown key at most every 1s)`, invalidCredential},
		{"kid of another key type", authtest.SignWith(t, jwt.SigningMethodRS256, idp.RSA, authtest.KidEC, valid), "cannot be verified", invalidCredential},
		{"tampered signature", authtest.Tamper(idp.Sign(t, "RS256", valid)), "signature is invalid", invalidCredential},
		{"tampered payload", authtest.TamperPayload(t, idp.Sign(t, "ES256", valid), with(func(c jwt.MapClaims) { c["sub"] = "user:default/admin" })), "signature is invalid", invalidCredential},
		{"signed by another key", authtest.SignWith(t, jwt.SigningMethodRS256, idp.AddRSAKeyUnpublished(t), authtest.KidRSA, valid), "signature is invalid", invalidCredential},
		{"malformed", "aaa.bbb.ccc", "malformed", invalidCredential},
	}
	for _, tc := range bad {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			p, err := authenticate(a, "Bearer "+tc.token)
			var ae *Error
			if p != nil || !errors.As(err, &ae) {
				t.Fatalf("got %+v %v, want a refusal", p, err)
			}
			if !strings.Contains(ae.Reason, tc.reason) || ae.Public != tc.public {
				t.Errorf("refusal %+v, want reason containing %q and public %q", ae, tc.reason, tc.public)
			}
			for _, part := range strings.Split(tc.token, ".") {
				if len(part) > 8 && (strings.Contains(ae.Reason, part) || strings.Contains(ae.Public, part)) {
					t.Errorf("refusal repeats part of the token: %+v", ae)
				}
			}
		})
	}

	// Static tokens still work beside JWTs.
	if p, err := authenticate(a, "Bearer "+ciToken); err != nil || p.Subject != "service:ci" {
		t.Errorf("static token with JWT configured: %+v %v", p, err)
	}
}

func TestJWTSubjectClaimAndServicePrincipals(t *testing.T) {
	idp := authtest.New(t)
	cfg := jwtConfig(idp)
	cfg.SubjectClaim = "email"
	cfg.PrincipalType = "service"
	cfg.AdminClaim, cfg.AdminValue = "realm_access.roles", "admin"
	a := newAuth(t, &config.Auth{JWT: cfg}, Options{})
	c := authtest.Claims("ignored")
	c["email"] = "bot@example.com"
	c["realm_access"] = map[string]any{"roles": []string{"admin"}}
	p, err := authenticate(a, "Bearer "+idp.Sign(t, "EdDSA", c))
	if err != nil || p.Subject != "bot@example.com" || p.Type != TypeService || !p.Admin {
		t.Errorf("principal %+v %v", p, err)
	}
}

// A verified JWT is remembered, but never past its expiry.
func TestJWTCacheHonoursExpiry(t *testing.T) {
	idp := authtest.New(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{Now: clock})
	c := authtest.Claims("user:default/jane")
	c["exp"] = now.Add(2 * time.Second).Unix()
	tok := idp.Sign(t, "RS256", c)
	for i := 0; i < 3; i++ {
		if _, err := authenticate(a, "Bearer "+tok); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n := len(a.jwt.cache); n != 1 {
		t.Errorf("cache holds %d entries, want 1", n)
	}
	mu.Lock()
	now = now.Add(2*time.Second + 31*time.Second) // past exp + leeway
	mu.Unlock()
	if _, err := authenticate(a, "Bearer "+tok); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token accepted from the cache: %v", err)
	}
}

// A token signed with a key published after start is accepted: the
// unknown kid makes the verifier fetch the JWKS again.
func TestJWKSRefreshOnUnknownKid(t *testing.T) {
	idp := authtest.New(t)
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{})
	if n := idp.Fetches.Load(); n != 1 {
		t.Fatalf("%d fetches at start, want 1", n)
	}
	key := idp.AddRSAKey(t, "rsa-2")
	tok := authtest.SignWith(t, jwt.SigningMethodRS256, key, "rsa-2", authtest.Claims("user:default/jane"))
	if p, err := authenticate(a, "Bearer "+tok); err != nil || p.Subject != "user:default/jane" {
		t.Fatalf("rotated key: %+v %v", p, err)
	}
	if n := idp.Fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
}

// A key rotated in right after a token with a made-up key id (which spent
// the unknown-kid fetch) is fetched within the default interval, and a
// burst of tokens signed with it at once shares one fetch: none is
// refused. (With a 30 s interval every one was refused for 20 s; with
// each caller waiting its own turn at the rate limiter, all but the
// first few.)
func TestJWKSRotationRightAfterUnknownKid(t *testing.T) {
	idp := authtest.New(t)
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{})
	made := authtest.SignWith(t, jwt.SigningMethodES256, idp.EC, "made-up", authtest.Claims("x"))
	if _, err := authenticate(a, "Bearer "+made); err == nil {
		t.Fatal("made-up kid accepted")
	}
	fetched := idp.Fetches.Load()
	key := idp.AddRSAKey(t, "rsa-rotated")
	tok := authtest.SignWith(t, jwt.SigningMethodRS256, key, "rsa-rotated", authtest.Claims("user:default/jane"))
	var wg sync.WaitGroup
	var refused atomic.Int32
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p, err := authenticate(a, "Bearer "+tok); err != nil || p.Subject != "user:default/jane" {
				refused.Add(1)
				t.Logf("rotated key: %+v %v", p, err)
			}
		}()
	}
	wg.Wait()
	if n := refused.Load(); n > 0 {
		t.Errorf("%d of 20 tokens signed with the rotated key refused", n)
	}
	if n := idp.Fetches.Load() - fetched; n != 1 {
		t.Errorf("%d JWKS fetches for the burst, want 1", n)
	}
}

// A flood of tokens with unknown key ids fetches the JWKS at most once per
// UnknownKIDInterval, and the refused requests do not wait for it.
func TestJWKSUnknownKidFloodIsRateLimited(t *testing.T) {
	idp := authtest.New(t)
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{UnknownKIDInterval: time.Hour})
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			kid := "unknown-" + string(rune('a'+i%26))
			tok := authtest.SignWith(t, jwt.SigningMethodES256, idp.EC, kid, authtest.Claims("x"))
			_, err := authenticate(a, "Bearer "+tok)
			if err == nil {
				t.Error("unknown kid accepted")
			} else if want := fmt.Sprintf("JWT signing key %q is not in the issuer's JWKS", kid); !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				// Also while the JWKS is not fetched again: not the
				// library's "failed to wait for JWK Set refresh rate
				// limiter ..." over two lines.
				t.Errorf("refusal %q, want %q", err, want)
			}
		}(i)
	}
	wg.Wait()
	if n := idp.Fetches.Load(); n > 2 {
		t.Errorf("%d JWKS fetches for a flood of unknown kids, want at most 2 (start + one refresh)", n)
	}
	if took := time.Since(start); took > jwksTimeout {
		t.Errorf("refusals took %v", took)
	}
}

// Made-up key ids, which anyone can send, cannot keep out a key just
// rotated in: every unknown key id waits for the same fetch, at most one
// per UnknownKIDInterval, and each fetch has its own time limit. (Each
// caller used to reserve a turn of its own at the rate limiter and fetch
// on what was left of its 10 s: a flood kept the queue 10 s deep, and the
// rotated key's token was refused at once, or got a fetch with no time.)
func TestJWKSUnknownKidFloodDoesNotHoldOffRotation(t *testing.T) {
	idp := authtest.New(t)
	const interval = 100 * time.Millisecond
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{UnknownKIDInterval: interval})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 150 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				tok := authtest.SignWith(t, jwt.SigningMethodES256, idp.EC, fmt.Sprintf("made-up-%d-%d", i, n), authtest.Claims("x"))
				if _, err := authenticate(a, "Bearer "+tok); err == nil {
					t.Error("made-up kid accepted")
				}
			}
		}()
	}
	// Long enough for the flood to fill the rate limiter's queue as it
	// used to (10 s of turns at 100 ms).
	time.Sleep(20 * interval)
	start, fetched := time.Now(), idp.Fetches.Load()
	key := idp.AddRSAKey(t, "rsa-rotated")
	tok := authtest.SignWith(t, jwt.SigningMethodRS256, key, "rsa-rotated", authtest.Claims("user:default/jane"))
	p, err := authenticate(a, "Bearer "+tok)
	took := time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil || p.Subject != "user:default/jane" {
		t.Errorf("token signed with the rotated key during a flood of made-up key ids: %+v %v (after %v)", p, err, took)
	}
	// At most one fetch per interval, plus the one under way.
	if n, most := idp.Fetches.Load()-fetched, int64(time.Since(start)/interval)+2; n > most {
		t.Errorf("%d JWKS fetches in %v, want at most %d", n, time.Since(start), most)
	}
}

// An identity provider that is down at start does not stop the server;
// JWTs are refused until a fetch succeeds.
func TestJWKSUnavailableAtStart(t *testing.T) {
	idp := authtest.New(t)
	idp.Status.Store(503)
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{UnknownKIDInterval: time.Millisecond})
	tok := idp.Sign(t, "RS256", authtest.Claims("user:default/jane"))
	if _, err := authenticate(a, "Bearer "+tok); err == nil {
		t.Fatal("token accepted without keys")
	}
	// A token without a kid asks for a fetch as an unknown kid does (it
	// waited for the periodic refresh, 15 minutes).
	noKid := authtest.SignWith(t, jwt.SigningMethodRS256, idp.RSA, "", authtest.Claims("user:default/nokid"))
	if _, err := authenticate(a, "Bearer "+noKid); err == nil {
		t.Fatal("token without kid accepted without keys")
	}
	idp.Status.Store(0)
	time.Sleep(5 * time.Millisecond)
	if p, err := authenticate(a, "Bearer "+noKid); err != nil || p.Subject != "user:default/nokid" {
		t.Errorf("token without kid after the IdP came back: %+v %v", p, err)
	}
	if p, err := authenticate(a, "Bearer "+tok); err != nil || p.Subject != "user:default/jane" {
		t.Errorf("after the IdP came back: %+v %v", p, err)
	}
}

// Tokens without a kid that arrive while the fetch after an outage is
// under way take the keys it brings: a kid-less token needs some key,
// not the key id "", so none of them waits for a second fetch (they
// did: a second, rate-limited, and one more fetch).
func TestJWKSNoKidBurstAfterOutage(t *testing.T) {
	idp := authtest.New(t)
	idp.Status.Store(503)
	slow := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		time.Sleep(300 * time.Millisecond)
		return http.DefaultTransport.RoundTrip(r)
	})}
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{HTTPClient: slow})
	idp.Status.Store(0)
	fetched := idp.Fetches.Load()
	tok := authtest.SignWith(t, jwt.SigningMethodRS256, idp.RSA, "", authtest.Claims("user:default/nokid"))
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p, err := authenticate(a, "Bearer "+tok); err != nil || p.Subject != "user:default/nokid" {
				t.Errorf("token without a kid after the outage: %+v %v", p, err)
			}
		}()
		time.Sleep(40 * time.Millisecond) // all within the first fetch
	}
	wg.Wait()
	if n := idp.Fetches.Load() - fetched; n != 1 {
		t.Errorf("%d JWKS fetches for the burst, want 1", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The JWKS URL is logged without the password in its userinfo: the
// warning about a failed fetch names the URL as url.Redacted gives it.
func TestJWKSURLPasswordNotLogged(t *testing.T) {
	// A port with nothing listening on it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var buf syncbuf.Buffer
	log := logrus.New()
	log.SetOutput(&buf)
	cfg := jwtConfig(authtest.New(t))
	cfg.JWKSURL = "http://svc:hunter2password@" + addr + "/jwks"
	newAuth(t, &config.Auth{JWT: cfg}, Options{Log: log})
	out := buf.String()
	if !strings.Contains(out, "could not fetch the JWKS") {
		t.Fatalf("no warning logged:\n%s", out)
	}
	if strings.Contains(out, "hunter2password") || !strings.Contains(out, "jwks_url=\"http://svc:xxxxx@"+addr+"/jwks\"") {
		t.Errorf("log shows the jwks_url password, or not the redacted URL:\n%s", out)
	}
}

// A JWKS URL that does not parse fails New with an error that does not
// quote its password either.
func TestJWKSURLPasswordNotInError(t *testing.T) {
	cfg := jwtConfig(authtest.New(t))
	cfg.JWKSURL = "http://svc:hunter2password@idp.example/jwks%zz"
	a, err := New(&config.Auth{JWT: cfg}, Options{Log: quietLog()})
	if err == nil {
		a.Close()
		t.Fatal("New accepted a JWKS URL that does not parse")
	}
	if strings.Contains(err.Error(), "hunter2password") || !strings.Contains(err.Error(), "auth.jwt.jwks_url: does not parse as a URL") {
		t.Errorf("err = %v", err)
	}
	// With a '/' in the password, the parser quoted the password's start
	// as a port ("invalid port \":Secr3tPrefix\""), which no redaction of
	// the whole password hid.
	cfg.JWKSURL = "https://svc:Secr3tPrefix/Rest0fPassword@127.0.0.1:1/jwks"
	a, err = New(&config.Auth{JWT: cfg}, Options{Log: quietLog()})
	if err == nil {
		a.Close()
		t.Fatal("New accepted a JWKS URL that does not parse")
	}
	if strings.Contains(err.Error(), "Secr3tPrefix") || strings.Contains(err.Error(), "Rest0fPassword") || !strings.Contains(err.Error(), "auth.jwt.jwks_url: has an '@' after its host") {
		t.Errorf("err = %v", err)
	}
}

func TestRedactedURL(t *testing.T) {
	for raw, want := range map[string]string{
		"https://idp.example/jwks":                    "https://idp.example/jwks",
		"https://svc:pw-1234@idp.example/jwks":        "https://svc:xxxxx@idp.example/jwks",
		"https://svc@idp.example/jwks":                "https://svc@idp.example/jwks",
		"http://svc:pw-1234@idp.example:8080/a?b=c":   "http://svc:xxxxx@idp.example:8080/a?b=c",
		"http://svc:pw%zz1234@idp.example/bad-escape": "http://xxxxx@idp.example/bad-escape",
	} {
		if got := redactedURL(raw); got != want {
			t.Errorf("redactedURL(%q) = %q, want %q", raw, got, want)
		}
	}
}

// Keys published for encryption never verify a signature, with a kid or
// without; keys that say nothing of their use do.
func TestJWKSKeyUse(t *testing.T) {
	idp := authtest.New(t)
	enc := idp.AddRSAKeyFor(t, "enc-1", "enc")
	plain := idp.AddRSAKeyFor(t, "plain-1", "")
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{})
	for _, kid := range []string{"enc-1", ""} {
		tok := authtest.SignWith(t, jwt.SigningMethodRS256, enc, kid, authtest.Claims("user:default/enc"))
		if p, err := authenticate(a, "Bearer "+tok); err == nil {
			t.Errorf("token signed with an encryption key (kid %q) accepted: %+v", kid, p)
		}
	}
	tok := authtest.SignWith(t, jwt.SigningMethodRS256, plain, "plain-1", authtest.Claims("user:default/plain"))
	if p, err := authenticate(a, "Bearer "+tok); err != nil || p.Subject != "user:default/plain" {
		t.Errorf("key without use: %+v %v", p, err)
	}
}

// A JWKS may hold several keys under one kid (RFC 7517 4.5: keys of
// different types; or a careless rotation): a token signed with any of
// them that fits its alg verifies, not only with the first listed.
func TestJWKSKeysSharingAKid(t *testing.T) {
	idp := authtest.New(t)
	rsaAsEC := idp.AddRSAKey(t, authtest.KidEC)  // listed after the EC key of the kid
	rotated := idp.AddRSAKey(t, authtest.KidRSA) // listed after the first RSA key of the kid
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{})
	for _, tc := range []struct {
		name   string
		token  string
		accept bool
	}{
		{"RS256, the second key of the EC key's kid", authtest.SignWith(t, jwt.SigningMethodRS256, rsaAsEC, authtest.KidEC, authtest.Claims("user:default/a")), true},
		{"ES256, the first key of that kid", authtest.SignWith(t, jwt.SigningMethodES256, idp.EC, authtest.KidEC, authtest.Claims("user:default/b")), true},
		{"RS256, the second RSA key of a kid", authtest.SignWith(t, jwt.SigningMethodRS256, rotated, authtest.KidRSA, authtest.Claims("user:default/c")), true},
		{"RS256, the first RSA key of that kid", authtest.SignWith(t, jwt.SigningMethodRS256, idp.RSA, authtest.KidRSA, authtest.Claims("user:default/d")), true},
		{"RS256, a key no kid holds", authtest.SignWith(t, jwt.SigningMethodRS256, idp.AddRSAKeyUnpublished(t), authtest.KidRSA, authtest.Claims("user:default/e")), false},
		{"RS256 with the RSA key, under the kid of the EC key and another RSA key", authtest.SignWith(t, jwt.SigningMethodRS256, idp.RSA, authtest.KidEC, authtest.Claims("user:default/f")), false},
	} {
		p, err := authenticate(a, "Bearer "+tc.token)
		if tc.accept && err != nil {
			t.Errorf("%s: refused: %v", tc.name, err)
		}
		if !tc.accept && err == nil {
			t.Errorf("%s: accepted: %+v", tc.name, p)
		}
	}
}

// A token naming critical header parameters is refused: greenroom
// understands none (RFC 7515, 4.1.11).
func TestJWTCriticalHeader(t *testing.T) {
	idp := authtest.New(t)
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{})
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, authtest.Claims("user:default/crit"))
	tok.Header["kid"] = authtest.KidRSA
	tok.Header["crit"] = []string{"exp-ext"}
	tok.Header["exp-ext"] = true
	s, err := tok.SignedString(idp.RSA)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := authenticate(a, "Bearer "+s); err == nil || !strings.Contains(err.Error(), "critical header parameters") {
		t.Errorf("token with crit: %+v %v, want refused", p, err)
	}
}

// BenchmarkAuthenticate measures what a credential costs a request: a
// static token, a JWT whose verification is remembered, and a JWT
// verified from scratch (what the first request with it pays).
//
//	go test -run '^$' -bench Authenticate ./runtime/auth/
func BenchmarkAuthenticate(b *testing.B) {
	idp := authtest.New(b)
	cfg := staticConfig()
	cfg.JWT = jwtConfig(idp)
	a, err := New(cfg, Options{Log: quietLog()})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	run := func(name, header string, fresh bool) {
		h := []byte(header)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if fresh {
					a.jwt.mu.Lock()
					clear(a.jwt.cache)
					a.jwt.mu.Unlock()
				}
				if _, err := a.Authenticate(ctx, h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	run("static", "Bearer "+ciToken, false)
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		tok := idp.Sign(b, alg, authtest.Claims("user:default/jane"))
		run("jwt-cached-"+alg, "Bearer "+tok, false)
		run("jwt-verify-"+alg, "Bearer "+tok, true)
	}
}

// A JWKS URL that redirects is followed, but the redirect's request
// carries no Referer: it would hand the URL's query credential
// (?api_key=...) to wherever the redirect points (an audit's).
func TestJWKSRedirectSendsNoReferer(t *testing.T) {
	idp := authtest.New(t)
	var referers sync.Map
	var fetched atomic.Int64
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		referers.Store(r.Header.Get("Referer"), true)
		resp, err := http.Get(idp.JWKSURL)
		if err != nil {
			w.WriteHeader(502)
			return
		}
		defer resp.Body.Close()
		io.Copy(w, resp.Body)
	}))
	defer keys.Close()
	front := httptest.NewServer(http.RedirectHandler(keys.URL+"/keys", http.StatusFound))
	defer front.Close()
	cfg := jwtConfig(idp)
	cfg.JWKSURL = front.URL + "/jwks?api_key=jwks-key-s3cr3t"
	a := newAuth(t, &config.Auth{JWT: cfg}, Options{})
	if p, err := authenticate(a, "Bearer "+idp.Sign(t, "RS256", authtest.Claims("user:default/r"))); err != nil {
		t.Fatalf("token through a redirected JWKS: %+v %v", p, err)
	}
	if fetched.Load() == 0 {
		t.Fatal("the redirect's target was never fetched")
	}
	referers.Range(func(k, _ any) bool {
		if k.(string) != "" {
			t.Errorf("the redirect's request carried Referer %q", k)
		}
		return true
	})
}

// TestJWTNonCanonicalEncodingRefused: a token whose signature (or header,
// or payload) is re-encoded with the unused low bits of its last base64
// character set decodes to the same bytes, so it verified (an audit): a
// token changed in its last character was still let in. Each segment must
// be in the one encoding its bytes have.
func TestJWTNonCanonicalEncodingRefused(t *testing.T) {
	idp := authtest.New(t)
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{})
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	// flip sets the lowest bit of seg's last character, unused when the
	// segment's length leaves bits over (ok false when it does not).
	flip := func(seg string) (string, bool) {
		if len(seg)%4 < 2 {
			return seg, false
		}
		v := strings.IndexByte(alphabet, seg[len(seg)-1])
		return seg[:len(seg)-1] + string(alphabet[v^1]), true
	}
	tried := 0
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		tok := idp.Sign(t, alg, authtest.Claims("user:default/jane"))
		if _, err := authenticate(a, "Bearer "+tok); err != nil {
			t.Fatalf("%s: the token itself is refused: %v", alg, err)
		}
		segs := strings.Split(tok, ".")
		for i := range segs {
			changed, ok := flip(segs[i])
			if !ok {
				continue
			}
			orig, _ := base64.RawURLEncoding.DecodeString(segs[i])
			same, err := base64.RawURLEncoding.DecodeString(changed)
			if err != nil || !bytes.Equal(orig, same) {
				t.Fatalf("%s segment %d: the changed segment decodes differently (%v): the test proves nothing", alg, i, err)
			}
			tried++
			forged := append(append(append([]string{}, segs[:i]...), changed), segs[i+1:]...)
			if p, err := authenticate(a, "Bearer "+strings.Join(forged, ".")); err == nil {
				t.Errorf("%s: segment %d with its last character changed was let in as %s", alg, i, p.Subject)
			}
		}
	}
	if tried < 3 {
		t.Fatalf("only %d segments had bits to spare", tried)
	}
}
