package auth

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// TestJWKSRedirectToPlainHTTPRefused: Go's client follows a redirect from
// https:// to plain http://, so the JWKS of an https:// jwks_url (which
// config check takes as safe, and does not warn about) was fetched in
// plain text from wherever the redirect pointed, and whoever sits on that
// path could answer with keys of its own: a token signed with them was
// let in. Such a redirect is refused (the keys held stay), as is one from
// http:// on loopback to plain http:// on another machine; a jwks_url that
// is itself plain http:// to another machine (warned about at every
// start) may still be redirected over http://.
func TestJWKSRedirectToPlainHTTPRefused(t *testing.T) {
	evil := rsaKey(t, 2048)
	keys := newJWKSHost(t)
	keys.serve(t, 0, pubJWK("evil", evil))
	kport := keys.URL[len("http://127.0.0.1:"):]
	kport = kport[:len(kport)-len("/jwks")]
	// keys.test names another machine; the test dials it on loopback.
	target := "http://keys.test:" + kport + "/jwks"

	tlsFront := httptest.NewTLSServer(http.RedirectHandler(target, http.StatusFound))
	defer tlsFront.Close()
	plainFront := httptest.NewServer(http.RedirectHandler(target, http.StatusFound))
	defer plainFront.Close()
	tr := tlsFront.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
	}
	client := &http.Client{Transport: tr}
	u, _ := url.Parse(plainFront.URL)

	for _, tc := range []struct {
		name, url string
		ok        bool
	}{
		{"https to plain http", tlsFront.URL + "/jwks", false},
		{"http on loopback to plain http elsewhere", plainFront.URL + "/jwks", false},
		{"plain http elsewhere to plain http", "http://front.test:" + u.Port() + "/jwks", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := keys.fetches.Load()
			a := newAuth(t, rs256Config(tc.url), Options{HTTPClient: client})
			p, err := authenticate(a, "Bearer "+signRS256(t, evil, "evil", "user:default/admin"))
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok {
				if err == nil {
					t.Fatalf("a token signed with keys fetched over plain http:// was let in: %+v", p)
				}
				if n := keys.fetches.Load() - before; n != 0 {
					t.Errorf("the plain http:// target was fetched %d times", n)
				}
			}
		})
	}
}
