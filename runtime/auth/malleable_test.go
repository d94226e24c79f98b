package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ecJWKOf is the public JWK of k under kid for alg.
func ecJWKOf(kid, alg string, k *ecdsa.PrivateKey) map[string]string {
	size := (k.Curve.Params().BitSize + 7) / 8
	return map[string]string{"kty": "EC", "crv": k.Curve.Params().Name, "kid": kid, "use": "sig", "alg": alg,
		"x": base64.RawURLEncoding.EncodeToString(k.X.FillBytes(make([]byte, size))),
		"y": base64.RawURLEncoding.EncodeToString(k.Y.FillBytes(make([]byte, size)))}
}

// ecdsaTwin returns tok with its ECDSA signature (r, s) replaced by
// (r, n-s), which verifies as well (ECDSA signatures are malleable), and
// whether s was the higher of the two.
func ecdsaTwin(t *testing.T, tok string, curve elliptic.Curve) (string, bool) {
	t.Helper()
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	size := len(sig) / 2
	n := curve.Params().N
	s := new(big.Int).SetBytes(sig[size:])
	high := s.Cmp(new(big.Int).Rsh(n, 1)) > 0
	new(big.Int).Sub(n, s).FillBytes(sig[size:])
	return tok[:i+1] + base64.RawURLEncoding.EncodeToString(sig), high
}

// TestJWTECDSATwinSharesTheEntry: an ECDSA signature (r, s) has a twin,
// (r, n-s), that verifies the same token, and few issuers sign with the
// lower s only, so refusing the higher would refuse valid tokens. The
// twin is a second byte string for one token: greenroom gives it exactly
// what the token gets, the same remembered verification (the same
// principal, not a second check and a second entry: verified tokens were
// remembered by the SHA-256 of their bytes) and so the same subject, rate
// limit budget and audit name. Nothing else near it gets in: a signature
// that is neither, the twin spelt in a non-canonical base64, a "twin" of
// an EdDSA signature.
func TestJWTECDSATwinSharesTheEntry(t *testing.T) {
	h := newJWKSHost(t)
	curves := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}
	methods := map[string]jwt.SigningMethod{"ES256": jwt.SigningMethodES256, "ES384": jwt.SigningMethodES384, "ES512": jwt.SigningMethodES512}
	keys := map[string]*ecdsa.PrivateKey{}
	var jwks []map[string]string
	for alg, c := range curves {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[alg] = k
		jwks = append(jwks, ecJWKOf("k-"+alg, alg, k))
	}
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks = append(jwks, map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": "k-ed", "use": "sig", "alg": "EdDSA", "x": base64.RawURLEncoding.EncodeToString(edPub)})
	h.serve(t, 0, jwks...)
	cfg := rs256Config(h.URL)
	cfg.JWT.Algorithms = []string{"ES256", "ES384", "ES512", "EdDSA"}
	a := newAuth(t, cfg, Options{})
	entries := func() int {
		a.jwt.mu.RLock()
		defer a.jwt.mu.RUnlock()
		seen := map[*Principal]bool{}
		for _, e := range a.jwt.cache {
			seen[e.p] = true
		}
		return len(seen)
	}
	for alg, c := range curves {
		// Tokens until one whose s is the higher and one whose s is the
		// lower have been tried (one in two is either).
		tried := map[bool]bool{}
		for i := 0; len(tried) < 2 && i < 64; i++ {
			tok := jwt.NewWithClaims(methods[alg], jwt.MapClaims{"iss": "https://idp/", "aud": "greenroom", "sub": "user:default/jane", "exp": time.Now().Add(time.Hour).Unix(), "n": i})
			tok.Header["kid"] = "k-" + alg
			s, err := tok.SignedString(keys[alg])
			if err != nil {
				t.Fatal(err)
			}
			twin, high := ecdsaTwin(t, s, c)
			if tried[high] {
				continue
			}
			tried[high] = true
			before := entries()
			p, err := authenticate(a, "Bearer "+s)
			if err != nil {
				t.Fatalf("%s (high s %v): the token is refused: %v", alg, high, err)
			}
			p2, err := authenticate(a, "Bearer "+twin)
			if err != nil {
				t.Fatalf("%s (high s %v): its twin is refused: %v", alg, high, err)
			}
			if p2 != p {
				t.Errorf("%s (high s %v): the twin got a principal of its own (%s), not the token's remembered one: it was verified and remembered apart", alg, high, p2.Subject)
			}
			if got := entries(); got != before+1 {
				t.Errorf("%s (high s %v): the token and its twin take %d entries of the cache, want 1", alg, high, got-before)
			}
			if p3, err := authenticate(a, "Bearer "+s); err != nil || p3 != p {
				t.Errorf("%s (high s %v): the token again: %v, a principal of its own %v", alg, high, err, p3 != p)
			}

			// Neither the token nor its twin: the twin's s plus one.
			i := strings.LastIndexByte(twin, '.')
			sig, _ := base64.RawURLEncoding.DecodeString(twin[i+1:])
			size := len(sig) / 2
			off := new(big.Int).Add(new(big.Int).SetBytes(sig[size:]), big.NewInt(1))
			off.FillBytes(sig[size:])
			if p, err := authenticate(a, "Bearer "+twin[:i+1]+base64.RawURLEncoding.EncodeToString(sig)); err == nil {
				t.Errorf("%s: a signature (r, n-s+1) was let in as %s", alg, p.Subject)
			}
			// The twin in a base64 spelling with its unused low bits
			// set decodes to the twin's bytes: it is refused whatever
			// the cache holds.
			seg := twin[i+1:]
			if len(seg)%4 >= 2 {
				const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
				v := strings.IndexByte(alphabet, seg[len(seg)-1])
				if p, err := authenticate(a, "Bearer "+twin[:i+1]+seg[:len(seg)-1]+string(alphabet[v^1])); err == nil {
					t.Errorf("%s: the twin spelt non-canonically was let in as %s", alg, p.Subject)
				}
			}
		}
		if len(tried) < 2 {
			t.Fatalf("%s: 64 tokens without both a high and a low s", alg)
		}
	}

	// An Ed25519 signature is 64 bytes, as an ES256 one: its "twin" as
	// if it were one verifies nothing, whatever the cache holds.
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": "https://idp/", "aud": "greenroom", "sub": "user:default/jane", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = "k-ed"
	s, err := tok.SignedString(edKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := authenticate(a, "Bearer "+s); err != nil {
		t.Fatalf("EdDSA: the token is refused: %v", err)
	}
	if twin, _ := ecdsaTwin(t, s, elliptic.P256()); twin != s {
		if p, err := authenticate(a, "Bearer "+twin); err == nil {
			t.Errorf("EdDSA: a signature changed as an ES256 twin would be was let in as %s", p.Subject)
		}
	}
}

// TestJWTECDSAKeyOnAnotherCurveRefused: ES256, ES384 and ES512 sign on
// P-256, P-384 and P-521 (RFC 7518 3.4), but golang-jwt verifies an
// ECDSA signature with whatever ECDSA key it is given: a JWKS key on
// P-256 that names no alg verified an "ES512" token, its r and s padded
// to 66 bytes. Such a token is refused (jose, Backstage's verifier,
// refuses it too), and so the twin of a token remembered as verified is
// always a signature that verifies (canonicalSum).
func TestJWTECDSAKeyOnAnotherCurveRefused(t *testing.T) {
	h := newJWKSHost(t)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk := ecJWKOf("p256", "", k)
	delete(jwk, "alg")
	h.serve(t, 0, jwk)
	cfg := rs256Config(h.URL)
	cfg.JWT.Algorithms = []string{"ES256", "ES384", "ES512"}
	a := newAuth(t, cfg, Options{})
	enc := base64.RawURLEncoding.EncodeToString
	claims := `{"iss":"https://idp/","aud":"greenroom","sub":"user:default/jane","exp":` + strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `}`
	for _, c := range []struct {
		alg  string
		size int
		hash crypto.Hash
	}{{"ES256", 32, crypto.SHA256}, {"ES384", 48, crypto.SHA384}, {"ES512", 66, crypto.SHA512}} {
		head := enc([]byte(`{"alg":"`+c.alg+`","kid":"p256","typ":"JWT"}`)) + "." + enc([]byte(claims))
		hh := c.hash.New()
		hh.Write([]byte(head))
		r, s, err := ecdsa.Sign(rand.Reader, k, hh.Sum(nil))
		if err != nil {
			t.Fatal(err)
		}
		sig := append(r.FillBytes(make([]byte, c.size)), s.FillBytes(make([]byte, c.size))...)
		p, err := authenticate(a, "Bearer "+head+"."+enc(sig))
		if c.alg == "ES256" {
			if err != nil {
				t.Errorf("ES256 with the P-256 key: %v", err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s signed with a P-256 key was let in as %s", c.alg, p.Subject)
		} else if !strings.Contains(err.Error(), c.alg+" signs on P-") {
			t.Errorf("%s signed with a P-256 key: refused as %q, want the curve named", c.alg, err)
		}
	}
}

// An EC key of the JWKS on a curve no ES algorithm signs on (P-224) or
// one Go does not know (secp256k1, ES256K's) verifies nothing: a token
// signed with it, its r and s padded to ES256's 32 bytes, is refused,
// and the set's other keys still verify.
func TestJWKSKeyOnAnUnexpectedCurveRefused(t *testing.T) {
	h := newJWKSHost(t)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k1 := ecJWKOf("k1", "", p256)
	k1["crv"] = "secp256k1"
	h.serve(t, 0, ecJWKOf("p224", "", p224), ecJWKOf("p224-es256", "ES256", p224), k1, ecJWKOf("good", "ES256", p256))
	cfg := rs256Config(h.URL)
	cfg.JWT.Algorithms = []string{"ES256"}
	// A key the set's client cannot use is an unknown kid: fetched again.
	a := newAuth(t, cfg, Options{UnknownKIDInterval: time.Millisecond})
	enc := base64.RawURLEncoding.EncodeToString
	claims := `{"iss":"https://idp/","aud":"greenroom","sub":"user:default/jane","exp":` + strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `}`
	sign := func(kid string, k *ecdsa.PrivateKey) string {
		head := enc([]byte(`{"alg":"ES256","kid":"`+kid+`","typ":"JWT"}`)) + "." + enc([]byte(claims))
		sum := crypto.SHA256.New()
		sum.Write([]byte(head))
		r, s, err := ecdsa.Sign(rand.Reader, k, sum.Sum(nil))
		if err != nil {
			t.Fatal(err)
		}
		return head + "." + enc(append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...))
	}
	for _, kid := range []string{"p224", "p224-es256", "k1", ""} {
		if p, err := authenticate(a, "Bearer "+sign(kid, p224)); err == nil {
			t.Errorf("kid %q: ES256 signed with a P-224 key let in as %s", kid, p.Subject)
		}
	}
	if _, err := authenticate(a, "Bearer "+sign("good", p256)); err != nil {
		t.Errorf("the P-256 key of the same set: %v", err)
	}
}
