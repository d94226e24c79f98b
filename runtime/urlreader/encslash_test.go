package urlreader

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// GitLab's API names a project and a file path with encoded slashes
// (group%2Fproject, docs%2Findex.md): such a path is read where both the
// allow rule and the grant cover the whole host, and reaches the server
// as written, %2F intact, also through a redirect. Under a rule with
// paths, a path grant, or after a redirect to such a rule, it is refused
// naming why and what allows it; dot segments stay refused everywhere.
func TestEncodedSlashReadOnlyForWholeHosts(t *testing.T) {
	const api = "/api/v4/projects/group%2Fproject/repository/files/docs%2Findex.md/raw"
	var mu sync.Mutex
	var seen []string // request URIs as they arrived
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Host+" "+r.RequestURI)
		mu.Unlock()
		switch {
		case r.URL.Path == "/to-restricted":
			http.Redirect(w, r, "http://docs.test:"+r.URL.Query().Get("port")+"/api/v4/projects/group%2Fproject", http.StatusFound)
		case r.URL.Path == "/to-self":
			http.Redirect(w, r, api+"?ref=main", http.StatusFound)
		default:
			fmt.Fprint(w, "# docs")
		}
	})
	seenSince := func(n int) []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen[n:]...)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
	cfg := `
[reading]
allow = [
  { host = "gitlab.test", scheme = "http" },
  { host = "docs.test", scheme = "http", paths = ["/api/"] },
  { host = "slash.test", scheme = "http", paths = ["/"] },
  { host = "wiki.test", scheme = "http", internal = true, paths = ["/api/"] },
  { host = "*.test", scheme = "http", paths = ["/other/"] },
  { host = "both.test", scheme = "http", paths = ["/api/"] },
  { host = "both.test", scheme = "http" },
]
`
	res := mapResolver{}
	for _, h := range []string{"gitlab.test", "docs.test", "slash.test", "wiki.test", "both.test"} {
		res[h] = []string{"127.0.0.1"}
	}
	r := reader(t, cfg, res, srv)
	port := srv.port()
	at := func(host string) string { return "http://" + host + ":" + port }
	whole := r.For("p", []string{"gitlab.test", "docs.test/", "slash.test", "wiki.test", "both.test"})

	// Read, and sent as written: %2F and %2f, and %252F, stay encoded.
	for _, tc := range []struct{ host, path string }{
		{"gitlab.test", api + "?ref=main"},
		{"gitlab.test", "/api/v4/projects/group%2fproject/repository/files/a%2Fb%2Fc.md/raw?ref=main"},
		{"gitlab.test", "/api/v4/projects/42/repository/files/docs%252Findex.md/raw"},
		{"slash.test", api}, // paths = ["/"] is the whole host
		{"both.test", api},  // a rule for the whole host lets it through
	} {
		n := count()
		resp, err := read(whole, at(tc.host)+tc.path)
		if err != nil || string(resp.Body) != "# docs" || resp.URL != at(tc.host)+tc.path {
			t.Errorf("%s%s: %+v, %v", tc.host, tc.path, resp, err)
			continue
		}
		if got := seenSince(n); len(got) != 1 || got[0] != tc.host+":"+port+" "+tc.path {
			t.Errorf("%s%s: server saw %q", tc.host, tc.path, got)
		}
	}
	// The plugin's client reads hop by hop: the same.
	n := count()
	if resp, err := whole.Read(t.Context(), Request{URL: at("gitlab.test") + api, Hop: true}); err != nil || resp.Status != 200 {
		t.Errorf("hop read: %+v, %v", resp, err)
	} else if got := seenSince(n); len(got) != 1 || got[0] != "gitlab.test:"+port+" "+api {
		t.Errorf("hop read: server saw %q", got)
	}
	// A redirect to an encoded slash on a whole host: followed, intact.
	n = count()
	if resp, err := read(whole, at("gitlab.test")+"/to-self"); err != nil || resp.URL != at("gitlab.test")+api+"?ref=main" {
		t.Errorf("redirect to itself: %+v, %v", resp, err)
	} else if got := seenSince(n); len(got) != 2 || got[1] != "gitlab.test:"+port+" "+api+"?ref=main" {
		t.Errorf("redirect to itself: server saw %q", got)
	}

	// Refused under a path prefix, naming what restricts it and what
	// allows it; nothing is sent.
	pathGrant := r.For("q", []string{"gitlab.test/api/", "docs.test/api/"})
	const why = "refused: the path holds an encoded slash (%2F, or %252F encoded twice or more), read only where both the allow rule and the plugin's grant cover the whole host"
	n = count()
	for _, tc := range []struct {
		p    *PluginReader
		url  string
		want []string
	}{
		{whole, at("docs.test") + api, []string{why, "; reading.allow[1] allows it only under its paths. To read it, the operator gives host docs.test an allow rule without paths and grants it whole (plugins.p.capabilities.urlreader = [\"docs.test\"])"}},
		{whole, at("docs.test") + "/api/v4/projects/42/repository/files/docs%252Findex.md/raw", []string{why, "reading.allow[1] allows it only under its paths"}},
		{pathGrant, at("gitlab.test") + api + "?ref=main", []string{why, `; the grant "gitlab.test/api/" in plugins.q.capabilities.urlreader covers a path prefix. To read it`}},
		{pathGrant, at("docs.test") + api, []string{why, `; reading.allow[1] allows it only under its paths and the grant "docs.test/api/" in plugins.q.capabilities.urlreader covers a path prefix.`}},
		// An internal = true rule keeps its paths: the wildcard rule lends
		// it nothing.
		{whole, at("wiki.test") + api, []string{why, "reading.allow[3] allows it only under its paths"}},
		// A redirect to a host whose rule has paths is checked again.
		{whole, at("gitlab.test") + "/to-restricted?port=" + port, []string{"redirect from " + at("gitlab.test") + "/to-restricted?port=" + port + ": " + at("docs.test") + "/api/v4/projects/group%2Fproject: " + why, "reading.allow[1] allows it only under its paths"}},
	} {
		_, err := read(tc.p, tc.url)
		wantErr(t, err, Denied, tc.want...)
	}
	if got := seenSince(n); len(got) != 1 || !strings.HasSuffix(got[0], "/to-restricted?port="+port) {
		t.Errorf("refused paths reached the server: %q", got)
	}

	// A whole-host rule that also matches a host an internal = true rule
	// names lends it nothing.
	wiki := reader(t, "[reading]\nallow = [{ host = \"wiki.test\", scheme = \"http\", internal = true, paths = [\"/api/\"] }, { host = \"*.test\", scheme = \"http\" }]\n", res, srv).For("p", []string{"*.test"})
	_, err := read(wiki, at("wiki.test")+api)
	wantErr(t, err, Denied, why, "reading.allow[0] allows it only under its paths")
	if got := seenSince(n); len(got) != 1 {
		t.Errorf("refused paths reached the server: %q", got)
	}

	// Dot segments, however spelled, stay refused on a whole host too.
	n = count()
	for _, path := range []string{
		"/a%2F..%2Fsecret", "/a%2f%2e%2e%2fsecret", "/a/..%2Fsecret", "/a%2F%2E%2E/secret", "/a/%2e%2e/secret",
		"/a%252F..%252Fsecret", "/a%252F%252e%252e%252Fsecret", "/a/..%252Fsecret", "/a%2F..;%2Fsecret", "/a%2F%c0%ae%c0%ae%2Fsecret",
	} {
		_, err := read(whole, at("gitlab.test")+path)
		wantErr(t, err, Invalid, "dot segment")
	}
	for _, path := range []string{"/a%5C..%5Csecret", "/a%255Csecret", "/a%2F%5Cb"} {
		_, err := read(whole, at("gitlab.test")+path)
		wantErr(t, err, Invalid, "backslashes in the path")
	}
	if got := seenSince(n); len(got) != 0 {
		t.Errorf("refused paths reached the server: %q", got)
	}
}

// An attack pass on the rule above, as a hostile plugin and a hostile
// server: each URL read directly, as the Location of a redirect from a
// whole host that carried its own token, and by the plugin's client hop
// by hop. A whole-host rule that does not let the read through (https
// only) lends nothing to a rule with paths; a wildcard whole rule or
// grant beside a path one for the same host reads it whole (as without
// %2F); %25%32%46 (each character encoded), %2F in a ;parameter or
// under a host spelled otherwise counts; %2F in the query does not.
// What is read reaches the server as written, with its own host's
// token only; what is refused reaches nothing. A Location that Go's
// client escapes anew (%2F beside a space) is checked as it is sent,
// with "/".
func TestEncodedSlashRuleMixesAndRedirects(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/r" {
			w.Header().Set("Location", r.URL.Query().Get("to"))
			w.WriteHeader(http.StatusFound)
			return
		}
		mu.Lock()
		seen = append(seen, r.Host+" "+r.RequestURI+" gl="+r.Header.Get("Private-Token")+" gh="+r.Header.Get("Authorization"))
		mu.Unlock()
		fmt.Fprint(w, "# docs")
	})
	take := func() []string { mu.Lock(); defer mu.Unlock(); s := seen; seen = nil; return s }
	cfg := `
[reading]
allow = [
  { host = "api.ex.test", scheme = "http", paths = ["/api/"] },
  { host = "*.ex.test", scheme = "http" },
  { host = "gl.test", scheme = "http" },
  { host = "mix.test", scheme = "https" },
  { host = "mix.test", scheme = "http", paths = ["/pub/"] },
]
[[integrations.gitlab]]
host = "gl.test"
token = "gl-0123456789abcdef"
[[integrations.github]]
host = "api.ex.test"
token = "gh-0123456789abcdef"
`
	res := mapResolver{}
	for _, h := range []string{"gl.test", "api.ex.test", "mix.test"} {
		res[h] = []string{"127.0.0.1"}
	}
	r := reader(t, cfg, res, srv)
	port := srv.port()
	plugins := map[string]*PluginReader{
		"whole": r.For("whole", []string{"*.ex.test", "gl.test", "mix.test/"}),
		"mixed": r.For("mixed", []string{"*.ex.test", "api.ex.test/api/", "gl.test/api/"}),
	}
	tokens := map[string]string{"gl.test": " gl=gl-0123456789abcdef gh=", "api.ex.test": " gl= gh=Bearer gh-0123456789abcdef", "mix.test": " gl= gh="}
	for _, tc := range []struct {
		plugin, host, path string
		sent               string // the host the server sees it on, or "" when refused
		kind               Kind
		want               string
		redirected         string // the path sent when it is a redirect's, if not path
	}{
		{"whole", "api.ex.test", "/api/g%2Fp/raw", "api.ex.test", 0, "", ""},
		{"mixed", "api.ex.test", "/api/g%2Fp/raw", "api.ex.test", 0, "", ""},
		{"whole", "GL.TEST.", "/api/g%25%32%46p/raw", "gl.test", 0, "", ""},
		{"mixed", "gl.test", "/api/a?path=g%2Fp%2F..%2Fx", "gl.test", 0, "", ""},
		{"whole", "mix.test", "/pub/a%2Fb", "", Denied, "reading.allow[4] allows it only under its paths", ""},
		{"mixed", "GL.test", "/api/g%25%32%46p/raw", "", Denied, `the grant "gl.test/api/" in plugins.mixed.capabilities.urlreader covers a path prefix`, ""},
		{"mixed", "gl.test.", "/api/g;x=%2F/raw", "", Denied, "covers a path prefix", ""},
		{"mixed", "gl.test", "/api/g%2Fp/a b", "", Invalid, "beside characters left unescaped", "/api/g/p/a%20b"},
		{"whole", "gl.test", "/api/a%2F%2e%2E%2Fb", "", Invalid, "dot segments", ""},
	} {
		target := "http://" + tc.host + ":" + port + tc.path
		p := plugins[tc.plugin]
		for _, how := range []string{"read", "redirect", "client"} {
			var err error
			switch via := "http://gl.test:" + port + "/api/r?to=" + url.QueryEscape(target); how {
			case "read":
				_, err = read(p, target)
			case "redirect":
				_, err = read(p, via)
			case "client":
				_, _, err = get(&http.Client{Transport: hopTransport{p}}, via)
			}
			got := take()
			if how != "read" && tc.redirected != "" {
				if want := "gl.test:" + port + " " + tc.redirected + tokens["gl.test"]; err != nil || len(got) != 1 || got[0] != want {
					t.Errorf("%s %s %s: err %v, server saw %q, want %q", tc.plugin, how, target, err, got, want)
				}
				continue
			}
			if tc.sent == "" {
				if err == nil || KindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.want) || len(got) != 0 {
					t.Errorf("%s %s %s: err %v, server saw %q; want %v error with %q, nothing sent", tc.plugin, how, target, err, got, tc.kind, tc.want)
				}
				continue
			}
			if want := tc.sent + ":" + port + " " + tc.path + tokens[tc.sent]; err != nil || len(got) != 1 || got[0] != want {
				t.Errorf("%s %s %s: err %v, server saw %q, want %q", tc.plugin, how, target, err, got, want)
			}
		}
	}
}
