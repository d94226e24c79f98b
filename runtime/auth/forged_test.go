package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/authtest"
)

// TestJWTHeaderKeysIgnored: a token may name its verification key in its
// header (RFC 7515: jwk embeds it, jku and x5u point to where it is
// published, x5c carries its certificate chain). A verifier that honours
// them verifies the attacker's token with the attacker's key. greenroom
// verifies with the keys of the configured JWKS only, and fetches nothing
// a token names.
func TestJWTHeaderKeysIgnored(t *testing.T) {
	idp := authtest.New(t)
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{})

	evil, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pt, _ := evil.PublicKey.Bytes()
	evilJWK := map[string]any{"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "evil",
		"x": base64.RawURLEncoding.EncodeToString(pt[1:33]), "y": base64.RawURLEncoding.EncodeToString(pt[33:])}
	var fetched atomic.Int64
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{evilJWK}})
	}))
	defer attacker.Close()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: authtest.Issuer},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &evil.PublicKey, evil)
	if err != nil {
		t.Fatal(err)
	}

	admin := authtest.Claims("user:default/admin")
	admin["groups"] = []string{"greenroom-admins"}
	sign := func(header map[string]any) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, admin)
		for k, v := range header {
			tok.Header[k] = v
		}
		s, err := tok.SignedString(evil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for name, header := range map[string]map[string]any{
		"jwk, kid of the issuer's key":  {"kid": authtest.KidEC, "jwk": evilJWK},
		"jwk, no kid":                   {"jwk": evilJWK},
		"jwk, its own kid":              {"kid": "evil", "jwk": evilJWK},
		"jku to the attacker's JWKS":    {"kid": "evil", "jku": attacker.URL + "/jwks.json"},
		"jku, kid of the issuer's key":  {"kid": authtest.KidEC, "jku": attacker.URL + "/jwks.json"},
		"x5u to the attacker's cert":    {"kid": "evil", "x5u": attacker.URL + "/cert.pem"},
		"x5c with the attacker's cert":  {"x5c": []string{base64.StdEncoding.EncodeToString(cert)}},
		"x5c, kid of the issuer's key":  {"kid": authtest.KidEC, "x5c": []string{base64.StdEncoding.EncodeToString(cert)}},
		"jwk, jku, x5u and x5c at once": {"kid": authtest.KidEC, "jwk": evilJWK, "jku": attacker.URL, "x5u": attacker.URL, "x5c": []string{base64.StdEncoding.EncodeToString(cert)}},
	} {
		if p, err := authenticate(a, "Bearer "+sign(header)); err == nil {
			t.Errorf("%s: accepted as %+v", name, p)
		}
	}
	if n := fetched.Load(); n != 0 {
		t.Errorf("the URL a token named was fetched %d times", n)
	}
}

// TestJWTForgedShapesRefused: HMAC with the JWKS document itself as the
// secret, audiences and issuers of other shapes, an empty subject, and
// tokens that are not three canonical base64url segments (padding, the
// standard alphabet, extra dots, a JWE's five parts) are all refused;
// each is a well-signed token the test changes as an attacker would.
func TestJWTForgedShapesRefused(t *testing.T) {
	idp := authtest.New(t)
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{})
	resp, err := http.Get(idp.JWKSURL)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	with := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := authtest.Claims("user:default/jane")
		edit(c)
		return c
	}
	valid := idp.Sign(t, "RS256", authtest.Claims("user:default/jane"))
	if _, err := authenticate(a, "Bearer "+valid); err != nil {
		t.Fatalf("the valid token is refused: %v", err)
	}
	segs := strings.Split(valid, ".")
	// std re-encodes a segment with the standard alphabet; it changes one
	// that has a - or _ (an RS256 signature of 342 characters all but
	// surely has).
	std := func(s string) string { return strings.NewReplacer("-", "+", "_", "/").Replace(s) }
	if std(segs[2]) == segs[2] {
		t.Fatal("the signature has neither - nor _: the standard-alphabet case proves nothing")
	}
	pad := func(s string) string { return s + strings.Repeat("=", (4-len(s)%4)%4) }
	if pad(segs[2]) == segs[2] {
		t.Fatal("the signature needs no padding: the padding case proves nothing")
	}
	jweHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RSA-OAEP","enc":"A256GCM","kid":"rsa-1"}`))

	for _, tc := range []struct{ name, token string }{
		{"HS256 with the JWKS document as the secret", authtest.SignWith(t, jwt.SigningMethodHS256, jwks, authtest.KidRSA, authtest.Claims("user:default/jane"))},
		{"HS256 with the JWKS document as the secret, no kid", authtest.SignWith(t, jwt.SigningMethodHS256, jwks, "", authtest.Claims("user:default/jane"))},
		{"HS512 with the RSA modulus as the secret", authtest.SignWith(t, jwt.SigningMethodHS512, idp.RSA.N.Bytes(), authtest.KidRSA, authtest.Claims("user:default/jane"))},
		{"empty audience", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["aud"] = "" }))},
		{"empty audience array", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["aud"] = []string{} }))},
		{"audience array without ours", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["aud"] = []string{"other", ""} }))},
		{"no audience", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { delete(c, "aud") }))},
		{"audience not a string", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["aud"] = map[string]any{authtest.Audience: true} }))},
		{"audience differing in case", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["aud"] = strings.ToUpper(authtest.Audience) }))},
		{"issuer as an array", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["iss"] = []string{authtest.Issuer} }))},
		{"issuer with a trailing slash", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["iss"] = authtest.Issuer + "/" }))},
		{"empty subject", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["sub"] = "" }))},
		{"subject as an array", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["sub"] = []string{"user:default/jane"} }))},
		{"exp as a string", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["exp"] = "9999999999" }))},
		{"exp just past the leeway", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-35 * time.Second).Unix() }))},
		{"nbf just past the leeway", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(35 * time.Second).Unix() }))},
		{"iat just past the leeway", idp.Sign(t, "RS256", with(func(c jwt.MapClaims) { c["iat"] = time.Now().Add(35 * time.Second).Unix() }))},
		{"trailing dot", valid + "."},
		{"two trailing dots", valid + ".."},
		{"leading dot", "." + valid},
		{"empty signature", segs[0] + "." + segs[1] + "."},
		{"JWE-shaped, five parts", jweHeader + ".." + segs[1] + "." + segs[2] + "." + segs[0]},
		{"JWS with two more parts", valid + "." + segs[1] + "." + segs[2]},
		{"padded signature", segs[0] + "." + segs[1] + "." + pad(segs[2])},
		{"padded header", pad(segs[0]) + "=" + "." + segs[1] + "." + segs[2]},
		{"standard alphabet signature", segs[0] + "." + segs[1] + "." + std(segs[2])},
		{"signature with white space", segs[0] + "." + segs[1] + "." + segs[2][:100] + " " + segs[2][100:]},
		// Go's base64 decoder skips \r and \n: a signature so spelt
		// decoded to the token's own and verified. (The header and
		// payload are signed as sent, so theirs never verified.)
		{"signature with a line break", segs[0] + "." + segs[1] + "." + segs[2][:100] + "\n" + segs[2][100:]},
		{"payload with CRLF", segs[0] + "." + segs[1][:8] + "\r\n" + segs[1][8:] + "." + segs[2]},
		{"header with a carriage return", segs[0][:4] + "\r" + segs[0][4:] + "." + segs[1] + "." + segs[2]},
		{"payload with percent-encoding", segs[0] + "." + segs[1][:4] + "%41" + segs[1][4:] + "." + segs[2]},
	} {
		if p, err := authenticate(a, "Bearer "+tc.token); err == nil {
			t.Errorf("%s: accepted as %+v", tc.name, p)
		}
	}
}

// TestJWTForgedHeadersRefused: a header written by hand over an RS256
// signature that verifies with the issuer's key: an alg spelt in another
// case or with white space, none in any case, crit in any form (empty,
// null, naming a registered parameter, b64 of RFC 7797), and a header
// that is not an object are refused.
func TestJWTForgedHeadersRefused(t *testing.T) {
	idp := authtest.New(t)
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{})
	payload, err := json.Marshal(authtest.Claims("user:default/jane"))
	if err != nil {
		t.Fatal(err)
	}
	craft := func(header string) string {
		input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString(payload)
		sig, err := jwt.SigningMethodRS256.Sign(input, idp.RSA)
		if err != nil {
			t.Fatal(err)
		}
		return input + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	if p, err := authenticate(a, "Bearer "+craft(`{"alg":"RS256","kid":"rsa-1","typ":"JWT"}`)); err != nil {
		t.Fatalf("the crafted token itself is refused: %+v %v", p, err)
	}
	for _, header := range []string{
		`{"alg":"rs256","kid":"rsa-1"}`,
		`{"alg":"RS256 ","kid":"rsa-1"}`,
		`{"alg":" RS256","kid":"rsa-1"}`,
		`{"alg":"RS256\u0000","kid":"rsa-1"}`,
		`{"alg":["RS256"],"kid":"rsa-1"}`,
		`{"kid":"rsa-1"}`,
		`{"alg":"","kid":"rsa-1"}`,
		`{"alg":"none","kid":"rsa-1"}`,
		`{"alg":"None","kid":"rsa-1"}`,
		`{"alg":"NONE","kid":"rsa-1"}`,
		`{"alg":"RS256","kid":"rsa-1","crit":[]}`,
		`{"alg":"RS256","kid":"rsa-1","crit":null}`,
		`{"alg":"RS256","kid":"rsa-1","crit":["alg"]}`,
		`{"alg":"RS256","kid":"rsa-1","crit":["b64"],"b64":false}`,
		`{"alg":"RS256","kid":"rsa-1","crit":"exp"}`,
		`{"alg":"RS256","kid":"rsa-1","alg":"RS256"}`,
		`{"alg":"RS256","kid":["rsa-1"]}`,
		`["RS256"]`,
		`"RS256"`,
		`{"alg":"RS256","kid":"rsa-1"}{}`,
	} {
		if p, err := authenticate(a, "Bearer "+craft(header)); err == nil {
			t.Errorf("header %s: accepted as %+v", header, p)
		}
	}
}
