package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/greenroom-dev/greenroom/runtime/internal/syncbuf"
)

// edJWKs returns n Ed25519 JWKs under kid (kid+i when numbered) and their
// private keys.
func edJWKs(t *testing.T, n int, kid string, numbered bool) ([]map[string]string, []ed25519.PrivateKey) {
	t.Helper()
	jwks := make([]map[string]string, n)
	privs := make([]ed25519.PrivateKey, n)
	for i := range jwks {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k := kid
		if numbered {
			k += strconv.Itoa(i)
		}
		jwks[i] = map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": k, "x": base64.RawURLEncoding.EncodeToString(pub)}
		privs[i] = priv
	}
	return jwks, privs
}

// signEd is a token for rs256Config with EdDSA, signed by k under kid
// (no kid when empty).
func signEd(t *testing.T, k ed25519.PrivateKey, kid, sub string) string {
	return signFor(t, jwt.SigningMethodEdDSA, k, kid, sub)
}

// signFor is a token for rs256Config with method, signed by k under kid
// (no kid when empty), for sub.
func signFor(t *testing.T, method jwt.SigningMethod, k any, kid, sub string) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, jwt.MapClaims{"iss": "https://idp/", "aud": "greenroom", "sub": sub, "exp": time.Now().Add(time.Hour).Unix()})
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A token without a kid was tried with every key of the JWKS that did
// not name another alg: with a large set (10 000 Ed25519 keys fit in
// the 1 MiB limit) each forged one, which anyone can send, cost half a
// second of CPU. It is tried with at most maxCandidates keys, those
// whose type (and curve) fit its alg; a token that more keys fit is
// refused before any signature check, with a reason that says so. A
// kid repeated on many keys is bounded the same way. The count is of
// the keys handed to the signature check (each is one verification of a
// token that verifies with none), not of time.
func TestJWTWithoutKidTriesFewKeys(t *testing.T) {
	_, forger, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	many, _ := edJWKs(t, 64, "ed-", true)
	few, fewPriv := edJWKs(t, maxCandidates, "rot-", true)
	same, _ := edJWKs(t, 64, "same", false)
	ec := ecJWKOf("ec", "", p256)
	delete(ec, "alg")

	for _, c := range []struct {
		name     string
		keys     []map[string]string
		algs     []string
		token    string
		ok       bool
		maxTried int64
		reason   string
	}{
		{"forged EdDSA, 64 Ed25519 keys", many, []string{"EdDSA"}, signEd(t, forger, "", "user:x"), false, 0, "no kid"},
		{"ES256 beside 64 Ed25519 keys", append([]map[string]string{ec}, many...), []string{"EdDSA", "ES256"}, authtestES256(t, p256, ""), true, 1, ""},
		{"rotation: the last of a few keys", few, []string{"EdDSA"}, signEd(t, fewPriv[len(fewPriv)-1], "", "user:x"), true, maxCandidates, ""},
		{"forged EdDSA, a few keys", few, []string{"EdDSA"}, signEd(t, forger, "", "user:x"), false, maxCandidates, "signature is invalid"},
		{"a kid on 64 keys", same, []string{"EdDSA"}, signEd(t, forger, "same", "user:x"), false, 0, `64 keys of the JWKS named "same"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newJWKSHost(t)
			h.serve(t, 0, c.keys...)
			cfg := rs256Config(h.URL)
			cfg.JWT.Algorithms = c.algs
			var log syncbuf.Buffer
			a := newAuth(t, cfg, Options{Log: logTo(&log)})
			p, err := authenticate(a, "Bearer "+c.token)
			if c.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !c.ok {
				if err == nil {
					t.Errorf("let in as %s", p.Subject)
				} else if !strings.Contains(err.Error(), c.reason) {
					t.Errorf("refused as %q, want %q in it", err, c.reason)
				}
			}
			// The operator is told why an issuer's kid-less tokens fail.
			if warned := strings.Contains(log.String(), "refused a JWT without a kid: 64 keys of the JWKS fit its algorithm"); warned != (c.reason == "no kid") {
				t.Errorf("warned %v; log:\n%s", warned, log.String())
			}
			if n := a.jwt.tried.Load(); n > c.maxTried {
				t.Errorf("%d keys tried, want at most %d", n, c.maxTried)
			}
		})
	}
}

// authtestES256 is an ES256 token for rs256Config signed by k under kid.
func authtestES256(t *testing.T, k *ecdsa.PrivateKey, kid string) string {
	return signFor(t, jwt.SigningMethodES256, k, kid, "user:ec")
}

// A token naming a kid of a large JWKS is looked up, not searched for:
// each such token, forged or not, copied the whole set (some 6 MB for
// 10 000 keys, 7 ms of CPU). Measured in bytes allocated, not time.
func TestJWTKidLookupDoesNotCopyTheSet(t *testing.T) {
	keys, _ := edJWKs(t, 10000, "", true)
	h := newJWKSHost(t)
	h.serve(t, 0, keys...)
	cfg := rs256Config(h.URL)
	cfg.JWT.Algorithms = []string{"EdDSA"}
	a := newAuth(t, cfg, Options{})
	_, forger, _ := ed25519.GenerateKey(rand.Reader)
	toks := make([]string, 20)
	for i := range toks {
		toks[i] = "Bearer " + signEd(t, forger, "5000", "user:"+strconv.Itoa(i))
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, tok := range toks {
		if _, err := authenticate(a, tok); err == nil {
			t.Fatal("a forged token was let in")
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / uint64(len(toks)); per > 256<<10 {
		t.Errorf("%d bytes allocated per token naming a kid of 10 000 keys, want under 256 KiB", per)
	}
}

// A token without a kid that no key of the set fits (its type or curve
// is another's) is refused saying so.
func TestJWTWithoutKidNoKeyFits(t *testing.T) {
	keys, _ := edJWKs(t, 3, "ed-", true)
	h := newJWKSHost(t)
	h.serve(t, 0, keys...)
	cfg := rs256Config(h.URL)
	cfg.JWT.Algorithms = []string{"EdDSA", "ES256"}
	a := newAuth(t, cfg, Options{})
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, err = authenticate(a, "Bearer "+authtestES256(t, k, ""))
	if err == nil || err.Error() != `JWT has no kid, and none of the 3 keys of the JWKS fits its algorithm "ES256"` {
		t.Errorf("refused as %v", err)
	}
	if n := a.jwt.tried.Load(); n != 0 {
		t.Errorf("%d keys tried", n)
	}
}
