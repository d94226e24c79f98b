package auth

import (
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/authtest"
)

// signTyped signs claims with the issuer's key for alg, its header's typ
// set to typ (removed when typ is nil).
func signTyped(t *testing.T, idp *authtest.IdP, alg string, typ any, claims jwt.MapClaims) string {
	t.Helper()
	var m jwt.SigningMethod
	var key any
	var kid string
	switch alg {
	case "RS256":
		m, key, kid = jwt.SigningMethodRS256, idp.RSA, authtest.KidRSA
	case "ES256":
		m, key, kid = jwt.SigningMethodES256, idp.EC, authtest.KidEC
	case "EdDSA":
		m, key, kid = jwt.SigningMethodEdDSA, idp.Ed, authtest.KidEd
	}
	tok := jwt.NewWithClaims(m, claims)
	tok.Header["kid"] = kid
	if typ == nil {
		delete(tok.Header, "typ")
	} else {
		tok.Header["typ"] = typ
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestJWTTypeChecked: a token the issuer signed for another purpose (a
// DPoP proof, a logout token, a security event token), explicitly typed
// as such (RFC 8725 3.11), is not a bearer credential, however valid its
// signature and claims: it was let in. A token without typ, or typed as
// a JWT or an access token (RFC 9068), in any letter case and with or
// without "application/", is.
func TestJWTTypeChecked(t *testing.T) {
	idp := authtest.New(t)
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{})
	for _, typ := range []any{nil, "JWT", "jwt", "Jwt", "application/jwt", "APPLICATION/JWT", "at+jwt", "AT+JWT", "application/at+jwt", "Application/At+JWT"} {
		for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
			tok := signTyped(t, idp, alg, typ, authtest.Claims("user:default/jane"))
			if p, err := authenticate(a, "Bearer "+tok); err != nil || p.Subject != "user:default/jane" {
				t.Errorf("%s typ %v: %+v %v, want accepted", alg, typ, p, err)
			}
		}
	}
	for _, c := range []struct {
		typ    any
		reason string
	}{
		{"dpop+jwt", `JWT type (typ) "dpop+jwt" is not`},
		{"application/dpop+jwt", `JWT type (typ) "application/dpop+jwt" is not`},
		{"logout+jwt", `JWT type (typ) "logout+jwt" is not`},
		{"secevent+jwt", `JWT type (typ) "secevent+jwt" is not`},
		{"JOSE", `JWT type (typ) "JOSE" is not`},
		{"JWS", `JWT type (typ) "JWS" is not`},
		{"token-introspection+jwt", `JWT type (typ) "token-introspection+jwt" is not`},
		{"application/jwt; charset=utf-8", `is not`},
		{"", `JWT type (typ) "" is not`},
		{"JWT\n", `JWT type (typ) "JWT\n" is not`},
		{"application/application/jwt", `is not`},
		{42, `JWT type (typ) is not a string`},
		{[]string{"JWT"}, `JWT type (typ) is not a string`},
	} {
		for _, alg := range []string{"RS256", "ES256"} {
			tok := signTyped(t, idp, alg, c.typ, authtest.Claims("user:default/mallory"))
			p, err := authenticate(a, "Bearer "+tok)
			ae, _ := err.(*Error)
			if p != nil || ae == nil {
				t.Errorf("%s typ %q: %v %v, want refused", alg, c.typ, p != nil, err)
				continue
			}
			if !strings.Contains(ae.Reason, c.reason) || strings.Contains(ae.Reason, "\n") || ae.Public != invalidCredential {
				t.Errorf("%s typ %q: refused as %q (%q), want a reason with %q", alg, c.typ, ae.Reason, ae.Public, c.reason)
			}
		}
	}
}
