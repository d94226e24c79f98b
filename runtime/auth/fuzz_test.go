package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/authtest"
)

// FuzzJWT: a token whose header and payload the fuzzer writes and the
// issuer's key signs (a hostile or careless issuer), or that the fuzzer
// writes whole (a hostile client), never makes Authenticate fail other
// than by refusing it. One accepted has a subject, claims that are one
// JSON object with unique member names whose "sub" is the subject, and
// is in the one base64url encoding of each of its parts; asked again
// (the cache), it gives the same principal.
func FuzzJWT(f *testing.F) {
	idp := authtest.New(f)
	a, err := New(&config.Auth{JWT: jwtConfig(idp)}, Options{Log: quietLog()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(a.Close)
	claims, _ := json.Marshal(authtest.Claims("user:default/jane"))
	es256 := `{"alg":"ES256","kid":"` + authtest.KidEC + `","typ":"JWT"}`
	f.Add(es256, string(claims), false)
	f.Add(es256, strings.Replace(string(claims), `"sub"`, `"s\u0075b"`, 1)+` `, false)
	f.Add(`{"alg":"ES256","kid":"`+authtest.KidEC+`","crit":["b64"],"b64":false}`, string(claims), false)
	f.Add(`{"alg":"none"}`, string(claims), false)
	// Without a kid, and with one that is not a string: the keys are
	// chosen by the index (findKey), not by keyfunc.
	f.Add(`{"alg":"ES256","typ":"JWT"}`, string(claims), false)
	f.Add(`{"alg":"ES256","kid":null}`, string(claims), false)
	f.Add(authtest.SignWith(f, jwt.SigningMethodES256, idp.EC, authtest.KidEC, authtest.Claims("user:default/jane")), "", true)
	f.Add(authtest.AlgNone(f, authtest.Claims("user:default/admin")), "", true)
	enc := base64.RawURLEncoding.EncodeToString
	f.Fuzz(func(t *testing.T, header, payload string, raw bool) {
		token := header
		if !raw {
			head := enc([]byte(header)) + "." + enc([]byte(payload))
			sig, err := jwt.SigningMethodES256.Sign(head, idp.EC)
			if err != nil {
				t.Fatal(err)
			}
			token = head + "." + enc(sig)
		}
		p, err := authenticate(a, "Bearer "+token)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) && !errors.Is(err, ErrNoCredential) {
				t.Fatalf("%q: %T %v, want *Error", token, err, err)
			}
			return
		}
		token = strings.TrimSpace(token)
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			t.Fatalf("%q accepted: %d parts", token, len(parts))
		}
		for _, s := range parts {
			if b, err := base64.RawURLEncoding.Strict().DecodeString(s); err != nil || enc(b) != s {
				t.Fatalf("%q accepted: part %q is not base64url as written", token, s)
			}
		}
		if p.Subject == "" || !json.Valid(p.Claims) {
			t.Fatalf("%q accepted: subject %q, claims %q", token, p.Subject, p.Claims)
		}
		if name, dup := duplicateName(p.Claims); dup {
			t.Fatalf("%q accepted with %q twice", token, name)
		}
		var c map[string]any
		if err := json.Unmarshal(p.Claims, &c); err != nil || c["sub"] != p.Subject {
			t.Fatalf("%q accepted: subject %q, claims %s (%v)", token, p.Subject, p.Claims, err)
		}
		q, err := authenticate(a, "Bearer "+token)
		if err != nil || q.Subject != p.Subject || !bytes.Equal(q.Claims, p.Claims) || q.Admin != p.Admin {
			t.Fatalf("%q asked again: %+v, %v; was %+v", token, q, err, p)
		}
	})
}

// FuzzReadJWKS: any JWKS body the issuer answers is read without
// failing; the keys kept are keys of the body's (by kid), none with
// private key material nor a key_ops without "verify".
func FuzzReadJWKS(f *testing.F) {
	idp := authtest.New(f)
	resp, err := http.Get(idp.JWKSURL)
	if err != nil {
		f.Fatal(err)
	}
	set, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	f.Add(set)
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQ"},{"kty":"EC","crv":"P-256","x":"AA","y":"AA","key_ops":["encrypt"]}]}`))
	f.Add([]byte(`{"Keys":[{"kty":"OKP","crv":"Ed25519","x":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}],"keys":null}`))
	f.Add([]byte(`{"keys":[1,"x",null,{"kty":7}]} trailing`))
	warn := newWarner(logrus.NewEntry(quietLog()), nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		keys, err := readJWKS(bytes.NewReader(body), warn)
		if err != nil {
			return
		}
		var in struct {
			Keys []json.RawMessage `json:"keys"`
		}
		json.NewDecoder(bytes.NewReader(body)).Decode(&in)
		var kids []string
		for _, k := range in.Keys {
			var m jwkset.JWKMarshal
			json.Unmarshal(k, &m)
			kids = append(kids, m.KID)
		}
		for _, k := range keys {
			m := k.Marshal()
			if !slices.Contains(kids, m.KID) {
				t.Fatalf("%q: kept a key of kid %q, which is none of the body's", body, m.KID)
			}
			if hasPrivateMembers(m) || m.KEYOPS != nil && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
				t.Fatalf("%q: kept key %+v", body, m)
			}
		}
	})
}
