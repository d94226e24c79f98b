package urlreader

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// recorder is host B of a redirect attack: it records every request it
// gets, its URL and all its headers, and answers 200.
type recorder struct {
	*server
	mu   sync.Mutex
	seen []string
}

func newRecorder(t *testing.T) *recorder {
	rec := &recorder{}
	rec.server = newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		b.WriteString(r.URL.String())
		for k, vs := range r.Header {
			for _, v := range vs {
				fmt.Fprintf(&b, "\n%s: %s", k, v)
			}
		}
		rec.mu.Lock()
		rec.seen = append(rec.seen, b.String())
		rec.mu.Unlock()
		fmt.Fprint(w, "b")
	})
	return rec
}

func (rec *recorder) take() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := rec.seen
	rec.seen = nil
	return out
}

// A token host A redirects to host B with the integration token in the
// URL, in spellings the scrub alone does not find: escaped twice (a URL
// nested in another's return_to), thrice, base64 of the escaped token,
// base64 of its base64, and as the URL's userinfo. Neither the runtime
// (ReadURL) nor the plugin's client (Hop reads) may take it to B.
func TestRedirectLeakAttacksToken(t *testing.T) {
	// '+', '/' and '=' change when escaped, so each escaping is seen.
	const tok = "tok_Ab+cd/ef=0123456789ABCDEFxyz"
	b := newRecorder(t)
	bURL := "http://b.test:" + b.port()
	q := url.QueryEscape
	b64 := base64.StdEncoding.EncodeToString
	a := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if got != tok {
			fmt.Fprint(w, "no token")
			return
		}
		own := "http://" + r.Host + "/x?t=" + q(tok)
		loc := map[string]string{
			"/twice":    bURL + "/login?return_to=" + q(own),
			"/thrice":   bURL + "/login?r=" + q(bURL+"/next?return_to="+q(own)),
			"/b64esc":   bURL + "/login?state=" + b64([]byte(own)),
			"/b64b64":   bURL + "/login?state=" + b64([]byte(b64([]byte("Bearer "+tok)))),
			"/b64path":  bURL + "/s/" + base64.RawURLEncoding.EncodeToString([]byte(`{"u":"`+own+`"}`)),
			"/hexupper": bURL + "/login?h=" + strings.ToUpper(hex.EncodeToString([]byte(tok))),
			"/userinfo": "http://user:" + q(tok) + "@b.test:" + b.port() + "/",
			"/username": "http://" + q(tok) + "@b.test:" + b.port() + "/",
		}[r.URL.Path]
		if loc == "" {
			fmt.Fprint(w, "a")
			return
		}
		http.Redirect(w, r, loc, http.StatusFound)
	})
	cfg := `
[reading]
allow = [{ host = "a.test", scheme = "http" }, { host = "b.test", scheme = "http" }]
[[integrations.github]]
host = "a.test"
token = "` + tok + `"
`
	res := mapResolver{"a.test": {"127.0.0.1"}, "b.test": {"127.0.0.1"}}
	p := reader(t, cfg, res, a, b.server).For("p", []string{"a.test", "b.test"})
	aURL := "http://a.test:" + a.port()
	for _, hop := range []bool{false, true} {
		for _, path := range []string{"/twice", "/thrice", "/b64esc", "/b64b64", "/b64path", "/hexupper", "/userinfo", "/username"} {
			var err error
			if hop {
				_, _, err = get(&http.Client{Transport: hopTransport{p}}, aURL+path)
			} else {
				_, err = read(p, aURL+path)
			}
			if err == nil || KindOf(err) != Denied {
				t.Errorf("hop %v %s: err %v (%v), want Denied", hop, path, err, KindOf(err))
			}
			if err != nil && strings.Contains(err.Error(), tok) {
				t.Errorf("hop %v %s: the refusal quotes the token: %v", hop, path, err)
			}
			if seen := b.take(); len(seen) != 0 {
				t.Errorf("hop %v %s: host B got %q", hop, path, seen)
			}
		}
	}
	// A plain redirect to B is still followed, without the token.
	if resp, err := read(p, aURL+"/elsewhere"); err != nil || string(resp.Body) != "a" {
		t.Fatalf("read: %v", err)
	}
}

// A plugin's secret reaches only the site it addressed: in a header of its
// own however encoded (X-Auth: Basic <base64 of user:secret>, hex, the
// secret escaped), and in the URL of a redirect (its key, given in the
// query, sent on in a return_to): the header is left out of the request
// to B and the redirect refused, both as the runtime follows it and as the
// plugin's client does. A redirect within the site keeps both.
func TestRedirectLeakAttacksPluginSecret(t *testing.T) {
	const key = "k3y/with+chars=0123456789"
	b := newRecorder(t)
	bURL := "http://b.test:" + b.port()
	q := url.QueryEscape
	a := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, bURL+"/landing", http.StatusFound)
		case "/sso":
			// Sends the URL the plugin asked for, its key in the query,
			// on to a login page.
			http.Redirect(w, r, bURL+"/login?return_to="+q("http://"+r.Host+r.URL.RequestURI()), http.StatusFound)
		case "/sso64":
			http.Redirect(w, r, bURL+"/login?state="+base64.URLEncoding.EncodeToString([]byte(r.URL.RequestURI())), http.StatusFound)
		case "/within":
			http.Redirect(w, r, "/landing?"+r.URL.RawQuery, http.StatusFound)
		default:
			fmt.Fprint(w, "a")
		}
	})
	cfg := `
[reading]
allow = [{ host = "a.test", scheme = "http" }, { host = "b.test", scheme = "http" }]
`
	res := mapResolver{"a.test": {"127.0.0.1"}, "b.test": {"127.0.0.1"}}
	p := reader(t, cfg, res, a, b.server).For("p", []string{"a.test", "b.test"})
	p.SetSecrets([]string{key})
	aURL := "http://a.test:" + a.port()
	headers := []string{
		"X-Auth", "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+key)),
		"X-Sig", base64.URLEncoding.EncodeToString([]byte(key)),
		"X-Hex", hex.EncodeToString([]byte(key)),
		"X-Esc", q(key),
		"X-Esc2", q(q(key)),
		"X-Trace", "abc-1",
	}
	readBoth := func(hop bool, u string) error {
		if hop {
			_, _, err := get(&http.Client{Transport: hopTransport{p}}, u, headers...)
			return err
		}
		_, err := read(p, u, headers...)
		return err
	}
	for _, hop := range []bool{false, true} {
		if err := readBoth(hop, aURL+"/away"); err != nil {
			t.Fatalf("hop %v: %v", hop, err)
		}
		seen := b.take()
		if len(seen) != 1 || !strings.Contains(seen[0], "X-Trace: abc-1") {
			t.Fatalf("hop %v: host B got %q, want one request with X-Trace", hop, seen)
		}
		for _, h := range []string{"X-Auth", "X-Sig", "X-Hex", "X-Esc", "X-Esc2"} {
			if strings.Contains(seen[0], "\n"+h+":") {
				t.Errorf("hop %v: host B got the plugin's %s, which encodes its secret: %q", hop, h, seen[0])
			}
		}
		for _, path := range []string{"/sso", "/sso64"} {
			err := readBoth(hop, aURL+path+"?key="+q(key))
			wantErr(t, err, Denied, "refused: the redirect's URL quotes one of plugin p's secrets", "which would reach b.test:"+b.port())
			if seen := b.take(); len(seen) != 0 {
				t.Errorf("hop %v %s: host B got %q", hop, path, seen)
			}
		}
		if err := readBoth(hop, aURL+"/within?key="+q(key)); err != nil {
			t.Errorf("hop %v: a redirect within the site, the key in its URL: %v", hop, err)
		}
	}
}

// quotes finds a secret as far as docs/urlreader.md says ("What still
// leaks to another host"), and no further.
func TestQuotesDepth(t *testing.T) {
	const tok = "tok_Ab+cd/ef=0123456789ABCDEFxyz"
	q := url.QueryEscape
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct {
		text string
		want bool
	}{
		{tok, true},
		{q(q(q(tok))), true},
		{q(q(q(q(tok)))), false},
		{b64(b64(b64("x=" + tok))), true},
		{b64(b64(b64(b64("x=" + tok)))), false},
		{q(b64(q(q(tok)))), true},
		{"https://b.test/login?state=" + hex.EncodeToString([]byte(tok[:len(tok)/2])), false},
		{"https://b.test/" + strings.Repeat("A", maxQuoted), true},
	} {
		if got := quotes([]byte(c.text), tok); got != c.want {
			t.Errorf("quotes(%.60q) = %v, want %v", c.text, got, c.want)
		}
	}
}

// A token host's redirect that quotes the token in a spelling the scrub
// cannot cut out (escaped twice, base64 of its base64) reaches the plugin
// neither in a refusal's message (a redirect refused for its host, path or
// scheme quoted its URL; a malformed Location header quoted its line) nor
// in a URL: one to the token's own host is not followed (the plugin would
// read it in the final URL, or in the Location its client follows), as
// one to another host is not. A redirect that quotes it in a spelling the
// scrub cuts out is still followed within its host, the plugin getting
// [REDACTED].
func TestRedirectQuotingTokenDeeplyReachesNoPlugin(t *testing.T) {
	const tok = "tok_Ab+cd/ef=0123456789ABCDEFxyz"
	q := url.QueryEscape
	b64 := base64.StdEncoding.EncodeToString
	a := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		self := "http://" + r.Host
		own := self + "/x?t=" + q(got)
		deep := b64([]byte(b64([]byte("Bearer " + got))))
		loc := map[string]string{
			"/t/ungranted":    "https://sso.example/login?return_to=" + q(own),
			"/t/ungranted64":  "https://sso.example/login?state=" + deep,
			"/t/ownpath":      self + "/notallowed/?state=" + deep,
			"/t/ownscheme":    "ftp://a.test/?return_to=" + q(own),
			"/t/ownhost":      self + "/x?return_to=" + q(own),
			"/t/ownhost64":    self + "/x?state=" + deep,
			"/t/ownhostonce":  self + "/x?t=" + q(got),
			"/t/ownlong":      self + "/x?pad=" + strings.Repeat("p", maxURL) + "&state=" + deep,
			"/t/malformed":    "https://sso.example/\x01?state=" + deep,
			"/t/malformedesc": "https://sso.example/\x01?return_to=" + q(own),
		}[r.URL.Path]
		if loc == "" {
			fmt.Fprint(w, "a")
			return
		}
		w.Header().Set("Location", loc)
		w.WriteHeader(http.StatusFound)
	})
	cfg := `
[reading]
allow = [{ host = "a.test", scheme = "http", paths = ["/t/", "/x"] }]
[[integrations.github]]
host = "a.test"
token = "` + tok + `"
`
	p := reader(t, cfg, mapResolver{"a.test": {"127.0.0.1"}}, a).For("p", []string{"a.test"})
	aURL := "http://a.test:" + a.port()
	for _, hop := range []bool{false, true} {
		for path, kind := range map[string]Kind{
			"/t/ungranted": Denied, "/t/ungranted64": Denied, "/t/ownpath": Denied, "/t/ownscheme": Invalid,
			"/t/ownhost": Denied, "/t/ownhost64": Denied, "/t/malformed": Failed, "/t/malformedesc": Failed,
			"/t/ownlong": Invalid,
		} {
			var err error
			if hop {
				_, _, err = get(&http.Client{Transport: hopTransport{p}}, aURL+path)
			} else {
				_, err = read(p, aURL+path)
			}
			if err == nil || quotes([]byte(err.Error()), tok) {
				t.Errorf("hop %v %s: err %v, want one that does not quote the token", hop, path, err)
				continue
			}
			if hop && (path == "/t/ownpath" || path == "/t/ownscheme" || path == "/t/ownlong") {
				kind = Denied // refused at the Location, before the client follows it
			}
			if KindOf(err) != kind {
				t.Errorf("hop %v %s: err %v (%v), want %v", hop, path, err, KindOf(err), kind)
			}
			// Nor in the Location of a 3xx the plugin's client keeps.
			if hop {
				c := &http.Client{Transport: hopTransport{p}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
				if resp, _, err := get(c, aURL+path); err == nil && quotes([]byte(resp.Header.Get("Location")), tok) {
					t.Errorf("hop %v %s: the plugin got Location %.80q", hop, path, resp.Header.Get("Location"))
				}
			}
		}
		var final string
		if hop {
			resp, _, err := get(&http.Client{Transport: hopTransport{p}}, aURL+"/t/ownhostonce")
			if err != nil {
				t.Fatalf("hop %v: a redirect within the host, the token escaped once: %v", hop, err)
			}
			final = resp.Request.URL.String()
		} else {
			resp, err := read(p, aURL+"/t/ownhostonce")
			if err != nil {
				t.Fatalf("hop %v: a redirect within the host, the token escaped once: %v", hop, err)
			}
			final = resp.URL
		}
		if quotes([]byte(final), tok) || !strings.Contains(final, "[REDACTED]") {
			t.Errorf("hop %v: final URL %q", hop, final)
		}
	}
}
