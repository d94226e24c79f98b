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
	sign := func(payload string) string {
		enc := base64.RawURLEncoding.EncodeToString
		head := enc([]byte(`{"alg":"RS256","kid":"`+authtest.KidRSA+`","typ":"JWT"}`)) + "." + enc([]byte(payload))
		sig, err := jwt.SigningMethodRS256.Sign(head, idp.RSA)
		if err != nil {
			t.Fatal(err)
		}
		return head + "." + enc(sig)
	}
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
