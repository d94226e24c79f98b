// Package authtest is a fake identity provider for tests: RSA, ECDSA and
// Ed25519 signing keys, their JWKS served over HTTP on loopback, and
// helpers to sign every kind of good and bad JWT.
package authtest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer and Audience are what an IdP's tokens carry by default.
const (
	Issuer   = "https://idp.test"
	Audience = "greenroom-test"
)

// Key ids of the IdP's keys.
const (
	KidRSA = "rsa-1"
	KidEC  = "ec-1"
	KidEd  = "ed-1"
)

var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	edKey    ed25519.PrivateKey
)

// An RSA key takes a while to generate on a loaded machine: one set per
// test binary.
func keys() {
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if _, edKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
}

// IdP serves a JWKS and signs tokens.
type IdP struct {
	// JWKSURL is where the key set is served.
	JWKSURL string
	RSA     *rsa.PrivateKey
	EC      *ecdsa.PrivateKey
	Ed      ed25519.PrivateKey

	// Fetches counts JWKS requests.
	Fetches atomic.Int64
	// Status, when set, is answered instead of the key set.
	Status atomic.Int64

	mu    sync.Mutex
	extra []map[string]string
}

// New starts an IdP on loopback until the test ends.
func New(t testing.TB) *IdP {
	t.Helper()
	keys()
	idp := &IdP{RSA: rsaKey, EC: ecKey, Ed: edKey}
	srv := httptest.NewServer(http.HandlerFunc(idp.serve))
	t.Cleanup(srv.Close)
	idp.JWKSURL = srv.URL + "/.well-known/jwks.json"
	return idp
}

func (idp *IdP) serve(w http.ResponseWriter, r *http.Request) {
	idp.Fetches.Add(1)
	if st := idp.Status.Load(); st != 0 {
		w.WriteHeader(int(st))
		return
	}
	set := []map[string]string{
		rsaJWK(KidRSA, &idp.RSA.PublicKey),
		ecJWK(KidEC, &idp.EC.PublicKey),
		{"kty": "OKP", "crv": "Ed25519", "kid": KidEd, "use": "sig", "alg": "EdDSA", "x": b64(idp.Ed.Public().(ed25519.PublicKey))},
	}
	idp.mu.Lock()
	set = append(set, idp.extra...)
	idp.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"keys": set})
}

// AddRSAKey publishes another RSA public key under kid (key rotation) and
// returns its private key.
func (idp *IdP) AddRSAKey(t testing.TB, kid string) *rsa.PrivateKey {
	t.Helper()
	return idp.AddRSAKeyBits(t, kid, 2048)
}

// AddRSAKeyBits publishes another RSA public key of bits bits under kid
// and returns its private key.
func (idp *IdP) AddRSAKeyBits(t testing.TB, kid string, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	idp.mu.Lock()
	idp.extra = append(idp.extra, rsaJWK(kid, &k.PublicKey))
	idp.mu.Unlock()
	return k
}

// AddRSAKeyFor publishes another RSA public key under kid with the given
// "use" ("enc", or "" for none) and returns its private key.
func (idp *IdP) AddRSAKeyFor(t testing.TB, kid, use string) *rsa.PrivateKey {
	t.Helper()
	k := idp.AddRSAKeyUnpublished(t)
	jwk := rsaJWK(kid, &k.PublicKey)
	if jwk["use"] = use; use == "" {
		delete(jwk, "use")
	}
	idp.mu.Lock()
	idp.extra = append(idp.extra, jwk)
	idp.mu.Unlock()
	return k
}

// AddRSAKeyUnpublished returns a new RSA key the IdP does not publish.
func (idp *IdP) AddRSAKeyUnpublished(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaJWK(kid string, k *rsa.PublicKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(kid string, k *ecdsa.PublicKey) map[string]string {
	b, err := k.Bytes() // uncompressed point: 0x04 || X || Y
	if err != nil {
		panic(err)
	}
	n := (len(b) - 1) / 2
	return map[string]string{"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256", "x": b64(b[1 : 1+n]), "y": b64(b[1+n:])}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Claims returns valid claims for subject: this IdP's issuer, the test
// audience, issued a minute ago, expiring in an hour.
func Claims(subject string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": Issuer,
		"aud": Audience,
		"sub": subject,
		"iat": now.Add(-time.Minute).Unix(),
		"nbf": now.Add(-time.Minute).Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
}

// Sign signs claims with the IdP's key for alg ("RS256", "ES256" or
// "EdDSA"), with that key's kid.
func (idp *IdP) Sign(t testing.TB, alg string, claims jwt.MapClaims) string {
	t.Helper()
	switch alg {
	case "RS256":
		return SignWith(t, jwt.SigningMethodRS256, idp.RSA, KidRSA, claims)
	case "ES256":
		return SignWith(t, jwt.SigningMethodES256, idp.EC, KidEC, claims)
	case "EdDSA":
		return SignWith(t, jwt.SigningMethodEdDSA, idp.Ed, KidEd, claims)
	}
	t.Fatalf("authtest: no key for %s", alg)
	return ""
}

// SignWith signs claims with any method and key, setting kid unless empty.
func SignWith(t testing.TB, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

// AlgNone returns an unsigned token (alg "none") for claims.
func AlgNone(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	return SignWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, KidRSA, claims)
}

// HS256WithPublicKey is the key-confusion attack: a token "signed" with
// HMAC-SHA256 using the issuer's RSA public key (PEM, as a verifier that
// trusts the header's alg would load it) as the secret.
func (idp *IdP) HS256WithPublicKey(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(idp.RSA.Public())
	if err != nil {
		t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return SignWith(t, jwt.SigningMethodHS256, secret, KidRSA, claims)
}

// Tamper changes one character of the signature's middle.
func Tamper(token string) string {
	i := strings.LastIndexByte(token, '.') + 10
	b := []byte(token)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// TamperPayload swaps the payload for other claims, keeping the header and
// signature.
func TamperPayload(t testing.TB, token string, claims jwt.MapClaims) string {
	t.Helper()
	js, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(token, ".")
	parts[1] = b64(js)
	return strings.Join(parts, ".")
}
