package auth

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/authtest"
)

const rs256Header = `{"alg":"RS256","kid":"` + authtest.KidRSA + `","typ":"JWT"}`

// signRaw signs header and payload, as written, with the issuer's RSA key.
func signRaw(t *testing.T, idp *authtest.IdP, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	head := enc([]byte(header)) + "." + enc([]byte(payload))
	sig, err := jwt.SigningMethodRS256.Sign(head, idp.RSA)
	if err != nil {
		t.Fatal(err)
	}
	return head + "." + enc(sig)
}

// A JWT's payload is one JSON object (RFC 7519 7.2). golang-jwt decodes
// only its first value, so a signed payload that goes on after it
// verified, and the guest, whose SDK reads the claims as one object, got
// none (an audit).
func TestJWTPayloadIsOneObject(t *testing.T) {
	idp := authtest.New(t)
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{})
	claims, err := json.Marshal(authtest.Claims("user:default/jane"))
	if err != nil {
		t.Fatal(err)
	}
	sign := func(payload string) string { return signRaw(t, idp, rs256Header, payload) }
	if _, err := authenticate(a, "Bearer "+sign(string(claims))); err != nil {
		t.Fatalf("the payload alone: %v", err)
	}
	if _, err := authenticate(a, "Bearer "+sign(" "+string(claims)+"\n")); err != nil {
		t.Errorf("the payload with white space around it: %v", err)
	}
	for name, payload := range map[string]string{
		"trailing text":     string(claims) + " x",
		"a second object":   string(claims) + `{"sub":"user:default/admin"}`,
		"a trailing number": string(claims) + "1",
	} {
		if p, err := authenticate(a, "Bearer "+sign(payload)); err == nil {
			t.Errorf("%s: accepted as %q", name, p.Subject)
		} else if !strings.Contains(err.Error(), "not one JSON object") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Claim names are unique (RFC 7519 4): golang-jwt and the guest SDK take
// the last of two, other JSON readers the first, so a signed token with a
// name twice reads as two tokens. It is refused, in the payload at any
// depth and in the header, however the name is spelled.
func TestJWTDuplicateNamesRefused(t *testing.T) {
	idp := authtest.New(t)
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{})
	claims, err := json.Marshal(authtest.Claims("user:default/jane"))
	if err != nil {
		t.Fatal(err)
	}
	const header = rs256Header
	sign := func(header, payload string) string { return signRaw(t, idp, header, payload) }
	body := strings.TrimSuffix(string(claims), "}")
	if _, err := authenticate(a, "Bearer "+sign(header, body+`,"groups":[{"a":1},{"a":2}],"x":{"a":{"b":1},"b":{"a":1}}}`)); err != nil {
		t.Fatalf("names repeated in different objects: %v", err)
	}
	for name, c := range map[string]struct{ header, payload, want string }{
		"sub twice":            {header, `{"sub":"user:default/admin",` + body[1:] + `}`, `payload has the member "sub" twice`},
		"sub escaped":          {header, body + `,"\u0073ub":"user:default/admin"}`, `payload has the member "sub" twice`},
		"nested":               {header, body + `,"realm_access":{"roles":["a"],"roles":["admin"]}}`, `payload has the member "roles" twice`},
		"in an array's object": {header, body + `,"x":[{"a":1,"a":2}]}`, `payload has the member "a" twice`},
		"alg twice":            {`{"alg":"none","alg":"RS256","kid":"` + authtest.KidRSA + `"}`, string(claims), `header has the member "alg" twice`},
		"kid twice":            {`{"alg":"RS256","kid":"other","kid":"` + authtest.KidRSA + `"}`, string(claims), `header has the member "kid" twice`},
	} {
		if p, err := authenticate(a, "Bearer "+sign(c.header, c.payload)); err == nil {
			t.Errorf("%s: accepted as %q", name, p.Subject)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

func TestDuplicateName(t *testing.T) {
	for js, want := range map[string]string{
		`{}`:                                 "",
		`{"a":1,"b":{"a":1}}`:                "",
		`[{"a":1},{"a":1}]`:                  "",
		`{"a":[1,{"b":2}],"b":[]}`:           "",
		`{"a":"a","b":"a"}`:                  "",
		`{"a":{},"a":1}`:                     "a",
		`{"a":[],"b":{"c":[{"d":1,"d":2}]}}`: "d",
		`{"a":1,"\u0061":2}`:                 "a",
		`not json`:                           "",
	} {
		got, ok := duplicateName([]byte(js))
		if got != want || ok != (want != "") {
			t.Errorf("%s: %q %v, want %q", js, got, ok, want)
		}
	}
}
