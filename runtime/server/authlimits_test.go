package server_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// A burst of 1000 tokens, signed with the issuer's own key, whose key ids
// the JWKS lacks (made up, a path, SQL, a URL, a NUL) makes the server
// fetch the JWKS at most once a second (plus the fetch under way), and
// each gets the documented 401: none is served, none a 500, and the log
// holds no part of any token. Through the server as the unit test does it
// with the authenticator alone (TestJWKSUnknownKidFloodIsRateLimited).
func TestUnknownKidBurstThroughTheServer(t *testing.T) {
	t.Parallel()
	idp := authtest.New(t)
	in := startAuth(t, authConfig(idp, ""))
	kids := []string{"../../../../etc/passwd", `..\..\windows\win.ini`, "' OR '1'='1", `"; DROP TABLE keys; --`,
		"https://evil.test/jwks.json", "file:///etc/passwd", "rsa-1\x00", "rsa-1/../rsa-1", "%2e%2e%2f", "*", ""}
	const n = 1000
	tokens := make([]string, n)
	for i := range tokens {
		kid := fmt.Sprintf("made-up-%d", i)
		if k := kids[i%len(kids)]; k != "" {
			kid = k + fmt.Sprint(i/len(kids))
		}
		tokens[i] = authtest.SignWith(t, jwt.SigningMethodES256, idp.EC, kid, authtest.Claims("user:default/mallory"))
	}
	before, start := idp.Fetches.Load(), time.Now()
	var wg sync.WaitGroup
	var bad atomic.Int32
	next := atomic.Int32{}
	// Every such token waits for the next fetch (about a second):
	// enough callers at once that the burst takes a few seconds.
	for range 250 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				status, h, body := in.DoAnon(t, "GET", "/api/hello/whoami", nil, bearer(tokens[i])...)
				if status != 401 || errorBody(t, body)["code"] != "unauthenticated" || !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
					if bad.Add(1) <= 5 {
						t.Errorf("token %d: %d %s, WWW-Authenticate %q; want 401 unauthenticated, invalid_token", i, status, body, h.Get("WWW-Authenticate"))
					}
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	t.Logf("%d fetches in %v", idp.Fetches.Load()-before, took)
	if got, most := idp.Fetches.Load()-before, int64(took/time.Second)+2; got > most {
		t.Errorf("%d JWKS fetches for %d tokens with unknown key ids in %v, want at most %d (one a second, and the one under way)", got, n, took, most)
	}
	log := in.Log.String()
	for _, tok := range tokens[:50] {
		for _, part := range strings.Split(tok, ".") {
			if strings.Contains(log, part) {
				t.Fatalf("the log holds part of a token: %.40s", part)
			}
		}
	}
	if !strings.Contains(log, `is not in the issuer's JWKS`) {
		t.Error("the refusals are not audited with their reason")
	}
}
