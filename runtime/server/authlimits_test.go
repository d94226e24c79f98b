package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/greenroom-dev/greenroom/runtime/internal/authtest"
)

// Hostile JWTs end in 401, and their audit lines stay short and on one
// line: a token signed with a 1024-bit RSA key the JWKS publishes (such a
// key verifies nothing), a kid of 4 KB with a newline that would start a
// forged log line, an alg with newlines, a DPoP proof the issuer signed
// (typ dpop+jwt: not a bearer token, RFC 8725 3.11).
func TestAuthRefusesHostileJWTs(t *testing.T) {
	idp := authtest.New(t)
	weak := idp.AddRSAKeyBits(t, "weak", 1024)
	in := startAuth(t, authConfig(idp, ""))
	claims := authtest.Claims("user:default/mallory")
	long := "\n{\"level\":\"error\",\"msg\":\"forged\"}\n" + strings.Repeat("k", 4<<10)
	dpop := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	dpop.Header["kid"], dpop.Header["typ"] = authtest.KidEC, "dpop+jwt"
	proof, err := dpop.SignedString(idp.EC)
	if err != nil {
		t.Fatal(err)
	}
	for name, token := range map[string]string{
		"signed by a 1024-bit key": authtest.SignWith(t, jwt.SigningMethodRS256, weak, "weak", claims),
		"a 4 KB kid with newlines": authtest.SignWith(t, jwt.SigningMethodRS256, idp.RSA, long, claims),
		"newlines in alg":          authtest.SignWith(t, &namedMethod{jwt.SigningMethodRS256, "RS256\n{\"msg\":\"forged\"}"}, idp.RSA, authtest.KidRSA, claims),
		"a DPoP proof (typ)":       proof,
	} {
		if status, _, body := in.DoAnon(t, "GET", "/api/hello/whoami", nil, bearer(token)...); status != 401 {
			t.Errorf("%s: %d %s, want 401", name, status, body)
		}
	}
	for _, line := range strings.Split(in.Log.String(), "\n") {
		if strings.HasPrefix(line, `{"level":"error","msg":"forged"`) || strings.HasPrefix(line, `{"msg":"forged"`) {
			t.Errorf("a token wrote a log line of its own: %s", line)
		}
		if strings.Contains(line, `"audit":"denied"`) && len(line) > 1500 {
			t.Errorf("an audit line of %d bytes: %.300s...", len(line), line)
		}
	}
	if !strings.Contains(in.Log.String(), `"reason":"JWT type (typ) \"dpop+jwt\" is not an access or ID token's`) {
		t.Errorf("the DPoP proof's refusal is not audited with its reason:\n%.3000s", in.Log.String())
	}
	if !strings.Contains(in.Log.String(), fmt.Sprintf(`... (%d bytes, cut) is not in the issuer's JWKS`, len(long))) {
		t.Errorf("the long kid's refusal is not audited, cut:\n%.3000s", in.Log.String())
	}
}

// namedMethod signs as its SigningMethod does under another alg name.
type namedMethod struct {
	jwt.SigningMethod
	alg string
}

func (m *namedMethod) Alg() string { return m.alg }
