package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// The JWKS response is read once per fetch, and the keys checked are the
// keys used. It was read twice: the runtime decoded it to check its keys,
// then jwkset decoded it again to take them. The two readings differed
// on a body with two "keys" members: the check read the last one, as
// docs/auth.md says, but jwkset's decoder merged the last one's keys into
// the first one's (encoding/json decodes into the slice it already
// holds), members the last one lacks and all. Here the first "keys"
// holds a member that is not what it says (an "x5c" that is no
// certificate) of a key the last one publishes whole, without one: jwkset
// could not build the merged key and discarded the whole fetch, so every
// token was refused, with "could not fetch the JWKS".
func TestJWKSReadOnce(t *testing.T) {
	good, _ := rsa.GenerateKey(rand.Reader, 2048)
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	pub, _ := json.Marshal(map[string]string{"kty": "RSA", "kid": "good", "use": "sig", "alg": "RS256",
		"n": b64(good.N.Bytes()), "e": b64(big.NewInt(int64(good.E)).Bytes())})
	body := `{"keys": [{"x5c": ["not a certificate"]}], "keys": [` + string(pub) + `]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) }))
	defer srv.Close()
	var logged bytes.Buffer
	log := logrus.New()
	log.SetOutput(&logged)
	a := newAuth(t, rs256Config(srv.URL), Options{Log: log, UnknownKIDInterval: time.Millisecond})
	if p, err := a.Authenticate(context.Background(), []byte("Bearer "+signRS256(t, good, "good", "user:x"))); err != nil || p.Subject != "user:x" {
		t.Errorf("a token signed with the key the last \"keys\" publishes: %+v %v", p, err)
	}
	if strings.Contains(logged.String(), "could not fetch the JWKS") {
		t.Errorf("the fetch failed:\n%s", logged.String())
	}
}

// BenchmarkJWKSFetch is one fetch of a JWKS of 10 000 Ed25519 keys (about
// 900 KB, under maxJWKS), as a token naming an unknown kid may cause once
// a second: read, checked, held and indexed.
func BenchmarkJWKSFetch(b *testing.B) {
	b64 := base64.RawURLEncoding.EncodeToString
	keys := make([]map[string]string, 10000)
	for i := range keys {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		keys[i] = map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": strconv.Itoa(i), "x": b64(pub)}
	}
	body, _ := json.Marshal(map[string]any{"keys": keys})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	cfg := rs256Config(srv.URL)
	cfg.JWT.Algorithms = []string{"EdDSA"}
	a, err := New(cfg, Options{Log: quietLog()})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		a.jwt.store.fetchNow()
	}
	b.StopTimer()
	if n := a.jwt.store.index().n; n != len(keys) {
		b.Fatalf("%d keys held, want %d", n, len(keys))
	}
}
