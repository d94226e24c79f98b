package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// golang-jwt decodes a token's header and claims before it checks the
// signature, so a forged token as large as the request head allows
// (server.header_limit, up to 1 MiB) was decoded whole: 150 000 claims
// took 14 MB and 30 ms of CPU per request, from anyone. A JWT longer
// than maxJWT is refused before anything of it is decoded, saying how
// long it is; one a little shorter, signed, verifies.
func TestJWTSizeBound(t *testing.T) {
	k := rsaKey(t, 2048)
	h := newJWKSHost(t)
	h.serve(t, 0, pubJWK("rs", k))
	a := newAuth(t, rs256Config(h.URL), Options{})
	b64 := base64.RawURLEncoding.EncodeToString

	claims := `{"iss":"https://idp/","aud":"greenroom","sub":"user:x","exp":9999999999,` + strings.Repeat(`"a":0,`, 150000) + `"b":0}`
	huge := b64([]byte(`{"alg":"RS256","kid":"rs"}`)) + "." + b64([]byte(claims)) + "." + b64(make([]byte, 256))
	header := []byte("Bearer " + huge)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := a.Authenticate(context.Background(), header)
	runtime.ReadMemStats(&after)
	var ae *Error
	if !errors.As(err, &ae) || ae.Public != invalidCredential || !strings.Contains(ae.Reason, "JWT of 1200483 bytes is longer than 65536") {
		t.Errorf("a JWT of %d bytes: %v", len(huge), err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("%d bytes allocated to refuse a JWT of %d bytes", n, len(huge))
	}

	// Signed, just under the bound: a claim padded to fit.
	sign := func(pad int) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "https://idp/", "aud": "greenroom", "sub": "user:big", "exp": time.Now().Add(time.Hour).Unix(), "pad": strings.Repeat("p", pad)})
		tok.Header["kid"] = "rs"
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pad := maxJWT * 3 / 4
	for len(sign(pad)) > maxJWT {
		pad--
	}
	fits, over := sign(pad), sign(pad+3)
	if len(fits) < maxJWT-4 || len(over) <= maxJWT {
		t.Fatalf("tokens of %d and %d bytes: the test proves nothing", len(fits), len(over))
	}
	if p, err := authenticate(a, "Bearer "+fits); err != nil || p.Subject != "user:big" {
		t.Errorf("a signed JWT of %d bytes: %+v %v", len(fits), p, err)
	}
	if _, err := authenticate(a, "Bearer "+over); err == nil || !strings.Contains(err.Error(), "is longer than 65536") {
		t.Errorf("a signed JWT of %d bytes: %v", len(over), err)
	}
}
