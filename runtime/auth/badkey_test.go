package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/sirupsen/logrus"
)

// RFC 7517 section 5: "Implementations SHOULD ignore JWKs within a
// JWK Set that use "kty" values that are not understood by them, that are
// missing required members, or for which values are out of the supported
// ranges." One such key in the issuer's JWKS made greenroom discard the
// whole fetch (an audit): a key rotated in was never accepted, and a key
// withdrawn in that fetch kept verifying.
func TestOneBadKeyDoesNotSpoilTheJWKS(t *testing.T) {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	var bad atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys := []map[string]string{{"kty": "RSA", "kid": "new", "use": "sig", "alg": "RS256",
			"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}}
		if bad.Load() {
			keys = append(keys, map[string]string{"kty": "RSA", "kid": "broken", "use": "sig"}) // no n, e
		}
		json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	defer srv.Close()
	bad.Store(true)
	cfg := rs256Config(srv.URL)
	a := newAuth(t, cfg, Options{})
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "https://idp/", "aud": "greenroom", "sub": "user:x", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = "new"
	s, _ := tok.SignedString(k)
	if _, err := a.Authenticate(context.Background(), []byte("Bearer "+s)); err != nil {
		t.Errorf("token signed with a valid key of a JWKS that also holds one malformed key: %v", err)
	}
}

// A JWKS that publishes a key's private members makes that key public:
// anyone who fetches the set could sign tokens with it. Such a key is
// refused with a warning (an audit: greenroom verified with its public
// half, silently), and the set's other keys still apply.
func TestJWKSPrivateKeysRefused(t *testing.T) {
	leaked, _ := rsa.GenerateKey(rand.Reader, 2048)
	good, _ := rsa.GenerateKey(rand.Reader, 2048)
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	pub := func(kid string, k *rsa.PrivateKey) map[string]string {
		return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
			"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	}
	priv := pub("leaked", leaked)
	priv["d"], priv["p"], priv["q"] = b64(leaked.D.Bytes()), b64(leaked.Primes[0].Bytes()), b64(leaked.Primes[1].Bytes())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{priv, pub("good", good),
			{"kty": "oct", "kid": "shared", "k": b64([]byte("a shared secret of 32 bytes....."))}}})
	}))
	defer srv.Close()
	var logged bytes.Buffer
	log := logrus.New()
	log.SetOutput(&logged)
	cfg := rs256Config(srv.URL)
	a := newAuth(t, cfg, Options{Log: log})
	sign := func(kid string, k *rsa.PrivateKey) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "https://idp/", "aud": "greenroom", "sub": "user:x", "exp": time.Now().Add(time.Hour).Unix()})
		tok.Header["kid"] = kid
		s, _ := tok.SignedString(k)
		return s
	}
	if _, err := a.Authenticate(context.Background(), []byte("Bearer "+sign("good", good))); err != nil {
		t.Errorf("token signed with the public-only key: %v", err)
	}
	if _, err := a.Authenticate(context.Background(), []byte("Bearer "+sign("leaked", leaked))); err == nil {
		t.Error("token signed with a key whose private members the JWKS publishes was accepted")
	}
	for _, kid := range []string{"leaked", "shared"} {
		if !strings.Contains(logged.String(), "carries private key material") || !strings.Contains(logged.String(), "kid="+kid) {
			t.Errorf("no warning naming kid %s in the log:\n%s", kid, logged.String())
		}
	}
}

// A key whose key_ops (RFC 7517 4.3) does not list "verify" (an
// encryption key published as ["encrypt", "wrapKey"], or an empty list)
// never verifies a token, as a key published with "use": "enc" does not,
// with its kid or without one; jose, Backstage's verifier, refuses it too.
// greenroom used it (an audit): only "use" was looked at.
func TestJWKSKeyOpsWithoutVerify(t *testing.T) {
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	keys := map[string]*rsa.PrivateKey{}
	for _, kid := range []string{"verify", "encrypt", "empty", "unsaid"} {
		keys[kid], _ = rsa.GenerateKey(rand.Reader, 2048)
	}
	ops := map[string][]string{"verify": {"verify"}, "encrypt": {"encrypt", "wrapKey"}, "empty": {}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var set []map[string]any
		for kid, k := range keys {
			jwk := map[string]any{"kty": "RSA", "kid": kid, "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
			if o, ok := ops[kid]; ok {
				jwk["key_ops"] = o
			}
			set = append(set, jwk)
		}
		json.NewEncoder(w).Encode(map[string]any{"keys": set})
	}))
	defer srv.Close()
	cfg := rs256Config(srv.URL)
	// A kid of a removed key is unknown: fetched again, at once.
	a := newAuth(t, cfg, Options{UnknownKIDInterval: time.Millisecond})
	for kid, k := range keys {
		for _, withKid := range []bool{true, false} {
			tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "https://idp/", "aud": "greenroom", "sub": "user:" + kid, "exp": time.Now().Add(time.Hour).Unix()})
			if withKid {
				tok.Header["kid"] = kid
			}
			s, _ := tok.SignedString(k)
			_, err := a.Authenticate(context.Background(), []byte("Bearer "+s))
			if accept := kid == "verify" || kid == "unsaid"; accept != (err == nil) {
				t.Errorf("key %s (key_ops %q), kid in the token %v: accepted %v, want %v (%v)", kid, ops[kid], withKid, err == nil, accept, err)
			}
		}
	}
}

// The keys greenroom refuses (private, unusable, not for verifying) are
// refused however the JWKS is written: jwkset reads the set as
// encoding/json reads a struct, so "Keys" is "keys" and a second JSON
// value after the set is never read. The filter read the set as a map, and
// refused a body with anything after it (an audit): {"Keys": [...]} and
// {"keys": [...]} followed by {} passed unfiltered, a key with private
// members and all.
func TestJWKSFilteredWhateverItsSpelling(t *testing.T) {
	leaked, _ := rsa.GenerateKey(rand.Reader, 2048)
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	priv, _ := json.Marshal(map[string]string{"kty": "RSA", "kid": "leaked", "use": "sig", "alg": "RS256",
		"n": b64(leaked.N.Bytes()), "e": b64(big.NewInt(int64(leaked.E)).Bytes()),
		"d": b64(leaked.D.Bytes()), "p": b64(leaked.Primes[0].Bytes()), "q": b64(leaked.Primes[1].Bytes())})
	for _, body := range []string{
		`{"Keys": [` + string(priv) + `]}`,
		`{"KEYS": [` + string(priv) + `]}`,
		`{"keys": [` + string(priv) + `]} {}`,
		`{"keys": [` + string(priv) + `]}x`,
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) }))
		cfg := rs256Config(srv.URL)
		a := newAuth(t, cfg, Options{UnknownKIDInterval: time.Millisecond})
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "https://idp/", "aud": "greenroom", "sub": "user:x", "exp": time.Now().Add(time.Hour).Unix()})
		tok.Header["kid"] = "leaked"
		s, _ := tok.SignedString(leaked)
		if _, err := a.Authenticate(context.Background(), []byte("Bearer "+s)); err == nil {
			t.Errorf("JWKS %.12s...%s: a token signed with a key published with its private members was accepted", body, body[len(body)-6:])
		}
		srv.Close()
	}
}

// An Ed25519 key of the JWKS that is a point of small order (the identity,
// say) lets anyone sign: crypto/ed25519 accepts R = the identity and S = 0
// for every message under it. Such a key is refused with a warning, as a
// short RSA key is, and the set's other keys still apply.
func TestJWKSSmallOrderEd25519KeyRefused(t *testing.T) {
	good, priv, _ := ed25519.GenerateKey(rand.Reader)
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	identity := make([]byte, 32)
	identity[0] = 1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{
			{"kty": "OKP", "crv": "Ed25519", "kid": "weak", "use": "sig", "alg": "EdDSA", "x": b64(identity)},
			{"kty": "OKP", "crv": "Ed25519", "kid": "good", "use": "sig", "alg": "EdDSA", "x": b64(good)},
		}})
	}))
	defer srv.Close()
	var logged bytes.Buffer
	log := logrus.New()
	log.SetOutput(&logged)
	cfg := rs256Config(srv.URL)
	cfg.JWT.Algorithms = []string{"EdDSA"}
	a := newAuth(t, cfg, Options{Log: log})
	claims := jwt.MapClaims{"iss": "https://idp/", "aud": "greenroom", "sub": "user:x", "exp": time.Now().Add(time.Hour).Unix()}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = "good"
	s, _ := tok.SignedString(priv)
	if _, err := a.Authenticate(context.Background(), []byte("Bearer "+s)); err != nil {
		t.Errorf("token signed with the good key: %v", err)
	}
	forged := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": "https://idp/", "aud": "greenroom", "sub": "user:default/admin", "exp": time.Now().Add(time.Hour).Unix()})
	forged.Header["kid"] = "weak"
	head, _ := forged.SigningString()
	if p, err := a.Authenticate(context.Background(), []byte("Bearer "+head+"."+b64(append(identity, make([]byte, 32)...)))); err == nil {
		t.Errorf("a token with the signature (identity, 0) under the identity key was accepted as %q", p.Subject)
	}
	if !strings.Contains(logged.String(), "point of small order") || !strings.Contains(logged.String(), "kid=weak") {
		t.Errorf("no warning naming kid weak in the log:\n%s", logged.String())
	}
}

func TestSmallOrder(t *testing.T) {
	le := func(hex string) []byte { // a 32-byte little-endian encoding of hex
		n, _ := new(big.Int).SetString(hex, 16)
		b := n.FillBytes(make([]byte, 32))
		slices.Reverse(b)
		return b
	}
	good, _, _ := ed25519.GenerateKey(rand.Reader)
	signed := le("5fc536d880238b13933c6d305acdfd5f098eff289f4c345b027b2c28f95e826")
	signed[31] |= 0x80
	for name, c := range map[string]struct {
		key  []byte
		want bool
	}{
		"identity":             {le("1"), true},
		"identity, x negative": {append(le("1")[:31], 0x80), true},
		"identity as p+1":      {le("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffee"), true},
		"order 2 (p-1)":        {le("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffec"), true},
		"order 4 (0)":          {le("0"), true},
		"order 4 as p":         {le("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffed"), true},
		"order 8":              {le("7a03ac9277fdc74ec6cc392cfa53202a0f67100d760b3cba4fd84d3d706a17c7"), true},
		"order 8, x negative":  {signed, true},
		"a real key":           {good, false},
		"the base point":       {le("6666666666666666666666666666666666666666666666666666666666666658"), false},
		"too short":            {le("1")[:31], false},
	} {
		if got := smallOrder(c.key); got != c.want {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
}
