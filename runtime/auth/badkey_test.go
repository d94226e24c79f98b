package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/greenroom-dev/greenroom/runtime/config"
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
	cfg := &config.Auth{JWT: &config.JWT{JWKSURL: srv.URL, Issuer: "https://idp/", Audience: "greenroom",
		Algorithms: []string{"RS256"}, SubjectClaim: "sub", Leeway: config.Duration(30 * time.Second), PrincipalType: "user"}}
	a := newAuth(t, cfg, Options{})
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "https://idp/", "aud": "greenroom", "sub": "user:x", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = "new"
	s, _ := tok.SignedString(k)
	if _, err := a.Authenticate(context.Background(), []byte("Bearer "+s)); err != nil {
		t.Errorf("token signed with a valid key of a JWKS that also holds one malformed key: %v", err)
	}
}
