package urlreader

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
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
	p := tokenHostReader(t, tok, a, b.server)
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

// Encoders of a secret that a redirect's URL may carry it in, alone or
// composed (fixpointSpellings).
var (
	qEsc   = url.QueryEscape
	b64Std = func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	b64URL = func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	hexLow = func(s string) string { return hex.EncodeToString([]byte(s)) }
	hexUp  = func(s string) string { return strings.ToUpper(hex.EncodeToString([]byte(s))) }
	// escAll percent-escapes every byte, its hex digits in lower case
	// (url.QueryEscape writes upper case and leaves letters alone).
	escAll = func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			fmt.Fprintf(&b, "%%%02x", s[i])
		}
		return b.String()
	}
	escX = func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			fmt.Fprintf(&b, `\x%02X`, s[i])
		}
		return b.String()
	}
)

// fixpointSpellings are the spellings of tok that an audit took to
// another host past the check that decoded at most twice: escaped four
// and five times, base64 four deep, hex of an escaped or a base64 token,
// hex of its hex, base64 of it escaped thrice, every byte escaped and
// then hex or base64, \x escapes, and nested URLs. Each is found now.
func fixpointSpellings(tok string) map[string]string {
	nest := func(s string, n int) string {
		for range n {
			s = "https://n.test/next?return_to=" + qEsc(s)
		}
		return s
	}
	own := "https://a.test/x?t=" + qEsc(tok)
	return map[string]string{
		"q4":         qEsc(qEsc(qEsc(qEsc(tok)))),
		"q5":         qEsc(qEsc(qEsc(qEsc(qEsc(tok))))),
		"nested5":    nest(own, 5),
		"b64x4":      b64Std(b64Std(b64Std(b64Std("x=" + tok)))),
		"b64urlx4":   b64URL(b64URL(b64URL(b64URL(tok)))),
		"hexq":       hexLow(qEsc(tok)),
		"hexb64":     hexUp(b64Std(tok)),
		"hexb64q":    hexLow(b64Std(qEsc(tok))),
		"hexhex":     hexLow(hexLow(tok)),
		"b64hex":     b64URL(hexUp(tok)),
		"b64q3":      b64Std(qEsc(qEsc(qEsc(tok)))),
		"hexescall":  hexLow(escAll(tok)),
		"b64escall":  b64URL(escAll(escAll(tok))),
		"escall3":    escAll(escAll(escAll(tok))),
		"xesc":       escX(tok),
		"b64nested":  b64Std(nest(own, 3)),
		"qb64hexb64": qEsc(b64Std(hexLow(b64URL("Bearer " + tok)))),
	}
}

// quotes finds a secret as far as docs/urlreader.md says ("What still
// leaks to another host"), and no further: decoded to a fixpoint, but not
// split, reversed or a part of it; a text that nests deeper than the
// search goes (maxDecodeRounds) counts as quoting it, one of ordinary
// encoded URLs does not.
func TestQuotesDepth(t *testing.T) {
	for _, tok := range []string{"tok_Ab+cd/ef=0123456789ABCDEFxyz", "ghp_0123456789abcdefABCDEF0123456789abcd", "a+b", "abc"} {
		for name, text := range fixpointSpellings(tok) {
			if !quotes([]byte("https://b.test/login?s="+text), tok) {
				t.Errorf("%q: %s not found: %.80q", tok, name, text)
			}
		}
	}
	const tok = "tok_Ab+cd/ef=0123456789ABCDEFxyz"
	reversed := []byte(tok)
	slices.Reverse(reversed)
	deep := tok
	for range maxDecodeRounds + 4 {
		deep = qEsc(deep)
	}
	nested := "https://n.test/"
	for range maxDecodeRounds + 4 {
		nested = "https://n.test/next?r=" + qEsc(nested)
	}
	for _, c := range []struct {
		text string
		want bool
	}{
		{tok, true},
		{qEsc(qEsc(qEsc(tok))), true},
		{b64Std(b64Std(b64Std("x=" + tok))), true},
		{qEsc(b64Std(qEsc(qEsc(tok)))), true},
		{deep, true},   // past maxDecodeRounds: taken to quote it
		{nested, true}, // the same without the token: a false alarm, on purpose
		{"https://b.test/login?state=" + hexLow(tok[:len(tok)/2]), false},
		{"https://b.test/login?a=" + qEsc(tok[:16]) + "&b=" + qEsc(tok[16:]), false},
		{"https://b.test/login?r=" + string(reversed), false},
		{"https://b.test/" + strings.Repeat("A", maxQuoted), true},
		// What servers put in redirects: a presigned URL with a session
		// token, a JWT, a return_to nested twice, a hex digest.
		{"https://bucket.s3.amazonaws.com/o/a.tar.gz?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAEXAMPLE%2F20261207%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261207T010203Z&X-Amz-Expires=300&X-Amz-Security-Token=" + qEsc(b64Std(strings.Repeat("session-token-bytes/", 40))) + "&X-Amz-SignedHeaders=host&X-Amz-Signature=" + hexLow(strings.Repeat("s", 32)), false},
		{"https://objects.example/x?jwt=" + b64URL(`{"alg":"RS256"}`) + "." + b64URL(`{"sub":"repo:1","exp":1765000000,"path":"/a/b?c=d"}`) + "." + b64URL(strings.Repeat("\xff\x01", 128)), false},
		{"https://sso.test/login?return_to=" + qEsc("https://a.test/cb?next="+qEsc("https://a.test/x?y=1")), false},
	} {
		if got := quotes([]byte(c.text), tok); got != c.want {
			t.Errorf("quotes(%.60q) = %v, want %v", c.text, got, c.want)
		}
	}
	// A short token is found as often as ordinary text holds it, in
	// any case (docs/urlreader.md: a false alarm the start-up warns of).
	if !quotes([]byte("https://b.test/TEST/x"), "test") || !quotes([]byte("https://b.test/?q="+b64URL("a test")), "test") {
		t.Error("the token test is not found in a URL that holds it")
	}
}

// A token host's redirect to another host with the token in one of the
// spellings the check that decoded at most twice missed
// (fixpointSpellings) is refused, as the runtime follows it and as the
// plugin's client does, for a token of 32 bytes and for one of 3 (shorter
// than the log's redaction and the plugin secrets' 4 bytes, which the
// runtime warns about but loads).
func TestRedirectLeakAttacksTokenFixpoint(t *testing.T) {
	for _, tok := range []string{"tok_Ab+cd/ef=0123456789ABCDEFxyz", "a+b"} {
		b := newRecorder(t)
		bURL := "http://b.test:" + b.port()
		a := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
			got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			text, ok := fixpointSpellings(got)[strings.TrimPrefix(r.URL.Path, "/")]
			if got != tok || !ok {
				fmt.Fprint(w, "a")
				return
			}
			w.Header().Set("Location", bURL+"/login?s="+text)
			w.WriteHeader(http.StatusFound)
		})
		p := tokenHostReader(t, tok, a, b.server)
		aURL := "http://a.test:" + a.port()
		for _, hop := range []bool{false, true} {
			for name := range fixpointSpellings(tok) {
				var err error
				if hop {
					_, _, err = get(&http.Client{Transport: hopTransport{p}}, aURL+"/"+name)
				} else {
					_, err = read(p, aURL+"/"+name)
				}
				if err == nil || KindOf(err) != Denied {
					t.Errorf("%q hop %v %s: err %v (%v), want Denied", tok, hop, name, err, KindOf(err))
				}
				if seen := b.take(); len(seen) != 0 {
					t.Errorf("%q hop %v %s: host B got %.120q", tok, hop, name, seen)
				}
			}
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

// tokenHostReader returns plugin p's reader allowed a.test and b.test
// (both served by the test servers a and b, over http), with an
// integration's token tok for a.test.
func tokenHostReader(t *testing.T, tok string, a, b *server) *PluginReader {
	t.Helper()
	cfg := `
[reading]
allow = [{ host = "a.test", scheme = "http" }, { host = "b.test", scheme = "http" }]
[[integrations.github]]
host = "a.test"
token = "` + tok + `"
`
	res := mapResolver{"a.test": {"127.0.0.1"}, "b.test": {"127.0.0.1"}}
	return reader(t, cfg, res, a, b).For("p", []string{"a.test", "b.test"})
}
