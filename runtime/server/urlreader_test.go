package server_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
	"github.com/greenroom-dev/greenroom/runtime/urlreader"
)

// testResolver maps names to addresses, standing in for DNS.
type testResolver map[string]string

func (m testResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	a, ok := m[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []netip.Addr{netip.MustParseAddr(a)}, nil
}

// target is a local test server the URL reader reads from.
type target struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	auth []string
}

func newTarget(t *testing.T, tlsOn bool, h http.HandlerFunc) *target {
	tg := &target{}
	wrapped := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.hits.Add(1)
		if a := r.Header.Get("Authorization"); a != "" {
			tg.mu.Lock()
			tg.auth = append(tg.auth, a)
			tg.mu.Unlock()
		}
		h(w, r)
	})
	if tlsOn {
		tg.Server = httptest.NewTLSServer(wrapped)
	} else {
		tg.Server = httptest.NewServer(wrapped)
	}
	t.Cleanup(tg.Close)
	return tg
}

func (tg *target) seenAuth() []string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]string(nil), tg.auth...)
}

func (tg *target) addr() netip.AddrPort { return netip.MustParseAddrPort(tg.Listener.Addr().String()) }
func (tg *target) port() int            { return int(tg.addr().Port()) }

// readResult is what the logurl guest answers for /read and /client.
type readResult struct {
	Status       int
	Body         string
	ETag         string
	LastModified string `json:"last_modified"`
	URL          string
	ContentType  string `json:"content_type"`
	Error        string
	Kind         string
}

func guestRead(t *testing.T, in *servertest.Instance, plugin, route string, params ...string) readResult {
	t.Helper()
	q := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		q.Set(params[i], params[i+1])
	}
	status, _, body := in.Get(t, "/api/"+plugin+route+"?"+q.Encode())
	if status != 200 {
		t.Fatalf("%s %v: %d %s", route, params, status, body)
	}
	var r readResult
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("%s: %q", route, body)
	}
	return r
}

func wantKind(t *testing.T, r readResult, kind string, contains ...string) {
	t.Helper()
	if r.Kind != kind {
		t.Errorf("got %+v, want kind %s", r, kind)
		return
	}
	for _, c := range contains {
		if !strings.Contains(r.Error, c) {
			t.Errorf("error %q lacks %q", r.Error, c)
		}
	}
}

func TestURLReaderThroughGuest(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	internal := newTarget(t, false, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "internal") })
	docs := newTarget(t, false, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/doc.md":
			w.Header().Set("ETag", `"rev-7"`)
			w.Header().Set("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
			w.Header().Set("Content-Type", "text/markdown")
			if r.Header.Get("If-None-Match") == `"rev-7"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			fmt.Fprint(w, "# Docs")
		case "/big":
			w.Write(make([]byte, 4096))
		case "/slow":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "/to-metadata":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		case "/moved":
			http.Redirect(w, r, "/doc.md", http.StatusMovedPermanently)
		case "/api/v4/projects/group/project/repository/files/docs/index.md/raw", "/doc.md/a/b":
			fmt.Fprint(w, "uri="+r.RequestURI) // as it came: %2F kept
		case "/to-gitlab":
			http.Redirect(w, r, "/api/v4/projects/group%2Fproject/repository/files/docs%2Findex.md/raw?ref=main", http.StatusFound)
		case "/to-loopback":
			http.Redirect(w, r, fmt.Sprintf("http://127.0.0.1:%d/", internal.port()), http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	})
	t.Cleanup(func() { close(release) })
	cfg := fmt.Sprintf(`
[reading]
allow = [
  { host = "docs.test", scheme = "http" },
  { host = "127.0.0.1", scheme = "http" },
  { host = "169.254.169.254", scheme = "http" },
  { host = "https-only.test" },
]
max_bytes = "1KiB"
timeout = "3s"
[plugins.logurl]
path = %[1]q
capabilities = { urlreader = ["docs.test", "127.0.0.1", "169.254.169.254", "https-only.test"] }
[plugins.nogrant]
path = %[1]q
[plugins.narrow]
path = %[1]q
capabilities = { urlreader = ["docs.test/doc.md"] }
[plugins.short]
path = %[1]q
capabilities = { urlreader = ["docs.test"] }
limits = { timeout = "300ms" }
`, logurlWasm)
	in := servertest.Start(t, cfg, servertest.Options{
		CacheDir: cacheDir,
		Runtime: runtime.Options{URLReader: urlreader.Options{
			Resolver:          testResolver{"docs.test": "127.0.0.1", "https-only.test": "127.0.0.1"},
			TestOnlyReachable: []netip.AddrPort{docs.addr()},
		}},
	})
	base := fmt.Sprintf("http://docs.test:%d", docs.port())

	r := guestRead(t, in, "logurl", "/read", "url", base+"/doc.md")
	if r.Status != 200 || r.Body != "# Docs" || r.ETag != `"rev-7"` || r.LastModified != "2015-10-21T07:28:00Z" || r.ContentType != "text/markdown" || r.URL != base+"/doc.md" {
		t.Errorf("read: %+v", r)
	}
	wantKind(t, guestRead(t, in, "logurl", "/read", "url", base+"/doc.md", "etag", r.ETag), "not_modified", "greenroom: not modified") // ErrNotModified itself
	wantKind(t, guestRead(t, in, "logurl", "/read", "url", base+"/nope"), "not_found")
	wantKind(t, guestRead(t, in, "nogrant", "/read", "url", base+"/doc.md"), "denied",
		"capability urlreader is not granted to plugin nogrant", "[plugins.nogrant.capabilities] urlreader")
	if w := linesWith(t, in, "plugin imports the URL reader but is not granted it"); len(w) != 1 || w[0]["plugin"] != "nogrant" {
		t.Errorf("load-time warning for the ungranted import: %v", w)
	}
	wantKind(t, guestRead(t, in, "narrow", "/read", "url", base+"/big"), "denied", "not granted to plugin narrow by plugins.narrow.capabilities.urlreader")
	wantKind(t, guestRead(t, in, "logurl", "/read", "url", "http://evil.test/"), "denied", "refused: not granted to plugin logurl by plugins.logurl.capabilities.urlreader")
	wantKind(t, guestRead(t, in, "logurl", "/read", "url", fmt.Sprintf("http://https-only.test:%d/", docs.port())), "denied", `scheme http is not allowed by reading.allow[3]`)

	// SSRF: redirects and spellings that lead to internal addresses.
	wantKind(t, guestRead(t, in, "logurl", "/read", "url", base+"/to-metadata"), "denied", "169.254.169.254 is link-local")
	wantKind(t, guestRead(t, in, "logurl", "/read", "url", base+"/to-loopback"), "denied", "redirect from "+base+"/to-loopback", "127.0.0.1 is loopback")
	for _, spelling := range []string{"2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]"} {
		wantKind(t, guestRead(t, in, "logurl", "/read", "url", fmt.Sprintf("http://%s:%d/", spelling, internal.port())), "denied", "127.0.0.1")
	}
	wantKind(t, guestRead(t, in, "logurl", "/read", "url", fmt.Sprintf("http://127.0.0.1:%d/", internal.port())), "denied", "address 127.0.0.1 is loopback")
	if internal.hits.Load() != 0 {
		t.Errorf("the internal server was reached %d times", internal.hits.Load())
	}

	// Limits.
	wantKind(t, guestRead(t, in, "logurl", "/read", "url", base+"/big"), "too_large", "over reading.max_bytes (1024)")
	wantKind(t, guestRead(t, in, "logurl", "/read", "url", base+"/slow"), "timeout", "reading.timeout (3s)")
	wantKind(t, guestRead(t, in, "logurl", "/read", "url", base+"/slow", "timeout", "50ms"), "timeout", "the plugin's deadline for this read passed")
	// The call's deadline (limits.timeout 300ms) ends a read long before
	// reading.timeout (3s) would. The guest gets ErrTimeout as its
	// deadline passes and is interrupted: the client gets 504, or, when
	// the guest answered in the instant between, its answer.
	start := time.Now()
	status, _, body := in.Get(t, "/api/short/read?url="+url.QueryEscape(base+"/slow"))
	took := time.Since(start)
	switch {
	case status == 504 && errorBody(t, body)["code"] == "plugin_timeout":
	case status == 200 && strings.Contains(body, `"kind":"timeout"`) && strings.Contains(body, "the call's deadline passed"):
	default:
		t.Errorf("call deadline: %d %s", status, body)
	}
	if took > 2500*time.Millisecond {
		t.Errorf("the read outlived the call's 300ms deadline: %v", took)
	}
	wantKind(t, guestRead(t, in, "logurl", "/read", "url", base+"/doc.md", "header", "Authorization", "value", "Bearer mine"), "denied", "Authorization may not be set by a plugin")

	// An encoded slash (GitLab's API) is read for a whole host and
	// reaches the server as the plugin wrote it, through ReadURL and
	// HTTPClient, redirects included; under a path grant it is refused.
	const gitlab = "/api/v4/projects/group%2Fproject/repository/files/docs%2Findex.md/raw?ref=main"
	for _, route := range []string{"/read", "/client"} {
		for _, path := range []string{gitlab, "/to-gitlab"} {
			if r := guestRead(t, in, "logurl", route, "url", base+path); r.Status != 200 || r.Body != "uri="+gitlab || r.URL != base+gitlab {
				t.Errorf("%s %s: %+v", route, path, r)
			}
		}
	}
	wantKind(t, guestRead(t, in, "narrow", "/read", "url", base+"/doc.md/a%2Fb"), "denied", "refused: the path holds an encoded slash", `the grant "docs.test/doc.md" in plugins.narrow.capabilities.urlreader covers a path prefix`)

	// HTTPClient: GET/HEAD, a 304 as a response, other methods refused.
	c := guestRead(t, in, "logurl", "/client", "url", base+"/doc.md")
	if c.Status != 200 || c.Body != "# Docs" {
		t.Errorf("client GET: %+v", c)
	}
	if c := guestRead(t, in, "logurl", "/client", "url", base+"/doc.md", "etag", `"rev-7"`); c.Status != 304 || c.ETag != `"rev-7"` {
		t.Errorf("client conditional GET: %+v", c)
	}
	if c := guestRead(t, in, "logurl", "/client", "url", base+"/doc.md", "method", "HEAD"); c.Status != 200 || c.Body != "" {
		t.Errorf("client HEAD: %+v", c)
	}
	if c := guestRead(t, in, "logurl", "/client", "url", base+"/nope"); c.Status != 404 {
		t.Errorf("client 404: %+v", c)
	}
	wantKind(t, guestRead(t, in, "logurl", "/client", "url", base+"/doc.md", "method", "POST"), "invalid", "GET and HEAD only")
	wantKind(t, guestRead(t, in, "logurl", "/client", "url", base+"/doc.md", "method", "DELETE"), "invalid", "GET and HEAD only")
	wantKind(t, guestRead(t, in, "logurl", "/client", "url", base+"/to-metadata"), "denied", "link-local")
	// The client follows redirects itself, each hop checked by the
	// runtime, and its CheckRedirect decides.
	if c := guestRead(t, in, "logurl", "/client", "url", base+"/moved"); c.Status != 200 || c.Body != "# Docs" || c.URL != base+"/doc.md" {
		t.Errorf("client redirect: %+v", c)
	}
	if c := guestRead(t, in, "logurl", "/client", "url", base+"/moved", "follow", "no"); c.Status != 301 || c.URL != base+"/moved" {
		t.Errorf("client redirect with ErrUseLastResponse: %+v", c)
	}
	wantKind(t, guestRead(t, in, "logurl", "/client", "url", base+"/to-loopback"), "denied", "redirect from "+base+"/to-loopback", "127.0.0.1 is loopback")
	// net/http's default client has no network in a plugin, and says what
	// to use instead (through net's resolver, whose errors keep only the
	// text of the SDK's).
	if c := guestRead(t, in, "logurl", "/client", "url", "http://docs.example.com/doc.md", "client", "default"); !strings.Contains(c.Error, "a plugin has no network") || !strings.Contains(c.Error, "greenroom.HTTPClient()") {
		t.Errorf("net/http's default client: %+v, want an error that says a plugin has no network and names greenroom.HTTPClient()", c)
	}
	if c := guestRead(t, in, "logurl", "/client", "url", base+"/doc.md", "client", "default"); c.Error == "" {
		t.Errorf("net/http's default client reached %s from a plugin: %+v", base, c)
	}
}

// An integration token reaches its host and no other, is never visible to
// the plugin, and never appears in the log (the runtime logs reads at
// debug, which the test log records).
func TestURLReaderIntegrationToken(t *testing.T) {
	const token = "ghp_TESTTOKEN0123456789abcdefghij"
	var other *target
	other = newTarget(t, true, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "other") })
	gh := newTarget(t, true, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			fmt.Fprintf(w, "you sent %s", r.Header.Get("Authorization"))
		case "/away":
			http.Redirect(w, r, fmt.Sprintf("https://127.0.0.1:%d/x", other.port()), http.StatusFound)
		}
	})
	cfg := fmt.Sprintf(`
[reading]
allow = [{ host = "example.com" }, { host = "127.0.0.1" }]
[[integrations.github]]
host = "example.com"
token = "${GH_TOKEN}"
[plugins.logurl]
path = %q
capabilities = { urlreader = ["example.com", "127.0.0.1"] }
`, logurlWasm)
	in := servertest.Start(t, cfg, servertest.Options{
		CacheDir: cacheDir,
		Env:      map[string]string{"GH_TOKEN": token},
		Runtime: runtime.Options{URLReader: urlreader.Options{
			Resolver:          testResolver{"example.com": "127.0.0.1"},
			TestOnlyReachable: []netip.AddrPort{gh.addr(), other.addr()},
			TLSConfig:         &tls.Config{RootCAs: gh.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs},
		}},
	})
	r := guestRead(t, in, "logurl", "/read", "url", fmt.Sprintf("https://example.com:%d/echo", gh.port()))
	if r.Status != 200 || r.Body != "you sent Bearer [REDACTED]" {
		t.Errorf("echo: %+v", r)
	}
	if r := guestRead(t, in, "logurl", "/read", "url", fmt.Sprintf("https://example.com:%d/away", gh.port())); r.Body != "other" {
		t.Errorf("away: %+v", r)
	}
	if r := guestRead(t, in, "logurl", "/read", "url", fmt.Sprintf("https://127.0.0.1:%d/direct", other.port())); r.Body != "other" {
		t.Errorf("direct: %+v", r)
	}
	if got := gh.seenAuth(); len(got) != 2 || got[0] != "Bearer "+token {
		t.Errorf("integration host saw %q", got)
	}
	if got := other.seenAuth(); len(got) != 0 {
		t.Errorf("another host got the token: %q", got)
	}
	if strings.Contains(in.Log.String(), token) {
		t.Errorf("token in the log:\n%s", in.Log)
	}
	if len(linesWith(t, in, "url read")) != 3 {
		t.Errorf("debug lines for reads missing:\n%s", in.Log)
	}
}

// An error message too long for the guest (a denial quoting the URL the
// plugin asked for) has the plugin's own secrets redacted before it is
// cut: a plugin that logs the error it got would otherwise log the first
// part of its secret, which the log's redactor no longer recognises.
func TestURLReaderMessageRedactedBeforeItIsCut(t *testing.T) {
	const secret = "PluginApiKeyEnv_9q8w7e"
	in := start(t, logurlConfig("secrets = [\"apikey\"]\n[plugins.logurl.config]\napikey = \""+secret+"\"\n"+
		"[plugins.logurl.capabilities]\nurlreader = [\"example.com/\"]\n"))
	// The denial starts with the URL; the secret starts 10 bytes before
	// the message's bound.
	prefix := "https://other.example/"
	u := prefix + strings.Repeat("a", hostfuncs.MaxMessage-10-len(prefix)-len("?key=")) + "?key=" + secret
	r := guestRead(t, in, "logurl", "/read", "url", u)
	if r.Kind != "denied" || strings.Contains(r.Error, secret[:6]) || !strings.Contains(r.Error, "?key=[REDACTED]") {
		t.Errorf("the guest got %s: ...%q", r.Kind, r.Error[max(0, len(r.Error)-60):])
	}
}

// plugins/docs through greenroom: fetch on demand, ETag revalidation,
// history, all kept in its database (so its two instances share them).
func TestDocsPlugin(t *testing.T) {
	var notModified atomic.Int64
	src := newTarget(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"readme-1"`)
		if r.Header.Get("If-None-Match") == `"readme-1"` {
			notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "text/markdown")
		fmt.Fprint(w, "# Backstage README")
	})
	in := startDocs(t, src, ", database = true", "/backstage/backstage/master/README.md")
	status, h, body := in.Get(t, "/api/docs/latest")
	if status != 200 || body != "# Backstage README" || h.Get("ETag") != `"readme-1"` || h.Get("Content-Type") != "text/markdown" {
		t.Fatalf("latest: %d %q %v", status, body, h)
	}
	// Concurrent requests land on both instances; neither fetches again.
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if status, _, body := in.Get(t, "/api/docs/latest"); status != 200 || body != "# Backstage README" {
				t.Errorf("latest: %d %q", status, body)
			}
		}()
	}
	wg.Wait()
	if status, _, body := in.Get(t, "/api/docs/latest?refresh=1"); status != 200 || body != "# Backstage README" {
		t.Errorf("refresh: %d %q", status, body)
	}
	if src.hits.Load() != 2 || notModified.Load() != 1 {
		t.Errorf("source saw %d requests (%d not modified), want 2 (1)", src.hits.Load(), notModified.Load())
	}
	status, _, body = in.Get(t, "/api/docs/history")
	var hist struct{ Fetches []struct{ Outcome string } }
	json.Unmarshal([]byte(body), &hist)
	if status != 200 || len(hist.Fetches) != 2 || hist.Fetches[0].Outcome != "not_modified" || hist.Fetches[1].Outcome != "fetched" {
		t.Errorf("history: %d %s", status, body)
	}
	if len(linesWith(t, in, "fetch")) < 2 {
		t.Errorf("the plugin's fetch log lines are missing:\n%s", in.Log)
	}
}

// plugins/docs granted only the read, as issue 5's config snippet grants
// it, serves all the same: it warns and keeps its copy and history in each
// instance's memory. It used to panic in its initializer for want of the
// database, and every route answered 503.
func TestDocsPluginWithoutDatabase(t *testing.T) {
	src := newTarget(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		fmt.Fprint(w, "# from memory")
	})
	in := startDocs(t, src, "", "/backstage/README.md")
	if status, _, body := in.Get(t, "/api/docs/latest"); status != 200 || body != "# from memory" {
		t.Fatalf("latest: %d %q", status, body)
	}
	status, _, body := in.Get(t, "/api/docs/history")
	var hist struct{ Fetches []struct{ Outcome string } }
	json.Unmarshal([]byte(body), &hist)
	if status != 200 || len(hist.Fetches) == 0 || hist.Fetches[0].Outcome != "fetched" {
		t.Errorf("history: %d %s", status, body)
	}
	if len(linesWith(t, in, "no database granted")) == 0 {
		t.Errorf("no warning that the copy is kept in memory:\n%s", in.Log)
	}
}

// With the scheduler granted, plugins/docs refreshes its copy from a global
// task: the URL reader works inside a task as in a request, and what the
// task fetched is what /latest then serves without fetching.
func TestDocsRefreshTaskReadsURL(t *testing.T) {
	src := newTarget(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/markdown")
		fmt.Fprint(w, "# fetched by the task")
	})
	in := startDocs(t, src, ", database = true, scheduler = true", "/backstage/README.md")
	status, _, body := in.Do(t, "POST", "/.greenroom/scheduler/v1/tasks/docs/refresh/trigger", nil)
	if status != 200 {
		t.Fatalf("trigger: %d %s", status, body)
	}
	var run struct {
		RunID string `json:"run_id"`
	}
	json.Unmarshal([]byte(body), &run)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, body = in.Get(t, "/.greenroom/scheduler/v1/tasks/docs/refresh?runs=5")
		if strings.Contains(body, `"outcome":"succeeded"`) {
			break
		}
		if strings.Contains(body, `"outcome":"failed"`) || time.Now().After(deadline) {
			t.Fatalf("refresh run %s: %s", run.RunID, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if src.hits.Load() != 1 {
		t.Fatalf("source saw %d requests, want 1 (from the task)", src.hits.Load())
	}
	if status, _, body := in.Get(t, "/api/docs/latest"); status != 200 || body != "# fetched by the task" {
		t.Errorf("latest: %d %q", status, body)
	}
	if src.hits.Load() != 1 {
		t.Errorf("/latest fetched again (source saw %d requests) instead of serving the task's copy", src.hits.Load())
	}
}

// A max_age the scheduler takes no period of (under 1s: "0s" means
// fetch at every request; over 366 days) does not fail plugins/docs's
// load when the scheduler is granted: under 1s it schedules no refresh
// and fetches on demand, saying so; over 366 days it refreshes every 366
// days. Until 2026-12-07 the load failed, naming only the task ("set
// Cron or Every", "Every is 500ms").
func TestDocsMaxAgeOutsideTheSchedulersPeriods(t *testing.T) {
	src := newTarget(t, false, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# doc")
	})
	for _, tc := range []struct{ maxAge, every string }{{"0s", ""}, {"500ms", ""}, {"-1h", ""}, {"9000h", "8784h0m0s"}} {
		in := startDocsMaxAge(t, src, ", database = true, scheduler = true", "/backstage/README.md", tc.maxAge)
		if state, reason := in.RT.Slot("docs").Status(); state != "ready" {
			t.Errorf("max_age %s: %s %s", tc.maxAge, state, reason)
			continue
		}
		if status, _, body := in.Get(t, "/api/docs/latest"); status != 200 || body != "# doc" {
			t.Errorf("max_age %s: latest: %d %q", tc.maxAge, status, body)
		}
		_, _, body := in.Get(t, "/.greenroom/scheduler/v1/tasks")
		switch {
		case tc.every == "" && (strings.Contains(body, `"refresh"`) || len(linesWith(t, in, "no scheduled refresh")) == 0):
			t.Errorf("max_age %s: a refresh task, or no line saying there is none: %s\n%s", tc.maxAge, body, in.Log)
		case tc.every != "" && !strings.Contains(body, `"every":"`+tc.every+`"`):
			t.Errorf("max_age %s: tasks %s, want refresh every %s", tc.maxAge, body, tc.every)
		}
	}
}

// startDocs serves plugins/docs (two instances, its own SQLite file) with
// its document at path on src, reachable as raw.test; caps extends its
// capabilities table, which grants the read.
func startDocs(t *testing.T, src *target, caps, path string) *servertest.Instance {
	t.Helper()
	return startDocsMaxAge(t, src, caps, path, "1h")
}

// startDocsMaxAge is startDocs with config max_age = maxAge.
func startDocsMaxAge(t *testing.T, src *target, caps, path, maxAge string) *servertest.Instance {
	t.Helper()
	cfg := fmt.Sprintf(`
[database]
connection = "file:%s"
[reading]
allow = [{ host = "raw.test", paths = ["/backstage/"], scheme = "http" }]
[plugins.docs]
path = %q
limits = { instances = 2 }
capabilities = { urlreader = ["raw.test/backstage/"]%s }
config = { url = "http://raw.test:%d%s", max_age = %q }
`, t.TempDir(), docsWasm, caps, src.port(), path, maxAge)
	return servertest.Start(t, cfg, servertest.Options{
		CacheDir: cacheDir,
		Runtime: runtime.Options{URLReader: urlreader.Options{
			Resolver:          testResolver{"raw.test": "127.0.0.1"},
			TestOnlyReachable: []netip.AddrPort{src.addr()},
		}},
	})
}
