package server_test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
	"github.com/greenroom-dev/greenroom/runtime/server/testdata/guests/httpclient/scenario"
	"github.com/greenroom-dev/greenroom/runtime/urlreader"
)

// TestHTTPClientAsNetHTTP runs what a plugin builder writes with an
// *http.Client (scenario.Run) with the SDK's HTTPClient in a plugin and
// with net/http's own client natively, against one server, and wants the
// same statuses, bodies, lengths, headers and kinds of error from both,
// but for the differences docs/urlreader.md names.
func TestHTTPClientAsNetHTTP(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	big := strings.Repeat("0123456789abcdef", 32<<10) // 512 KiB
	srv := newTarget(t, false, func(w http.ResponseWriter, r *http.Request) {
		seen := r.Method
		for _, k := range []string{"Connection", "Accept-Encoding", "Cookie", "X-Api-Version", "Te", "Keep-Alive"} {
			if v := r.Header.Get(k); v != "" {
				seen += " " + k + "=" + v
			}
		}
		w.Header().Set("X-Seen", seen)
		switch r.URL.Path {
		case "/plain":
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "hello")
		case "/chunked":
			io.WriteString(w, "part one;")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part two")
		case "/gzip":
			w.Header().Set("Content-Type", "text/plain")
			if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
				io.WriteString(w, "hello identity")
				return
			}
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			io.WriteString(zw, "hello gzip")
			zw.Close()
		case "/big":
			io.WriteString(w, big)
		case "/moved":
			http.Redirect(w, r, "/plain", http.StatusFound)
		case "/chain":
			http.Redirect(w, r, "/moved", http.StatusMovedPermanently)
		case "/see-other":
			http.Redirect(w, r, "/plain", http.StatusSeeOther)
		case "/setcookie":
			http.SetCookie(w, &http.Cookie{Name: "sid", Value: "abc", Path: "/"})
			io.WriteString(w, "set")
		case "/cookie-redirect":
			http.SetCookie(w, &http.Cookie{Name: "sid", Value: "abc", Path: "/"})
			http.Redirect(w, r, "/plain", http.StatusFound)
		case "/slow":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "/status/500":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "/empty":
			w.Header().Set("Content-Length", "0")
		case "/query":
			io.WriteString(w, r.URL.RawQuery)
		case "/temporary":
			http.Redirect(w, r, "/plain?from=307", http.StatusTemporaryRedirect)
		case "/file":
			http.ServeContent(w, r, "file.txt", time.Unix(1e9, 0), strings.NewReader("0123456789"))
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/gzip-nobody":
			// Responses without a body that name gzip all the same:
			// net/http's Transport decodes only a body.
			w.Header().Set("Content-Encoding", "gzip")
			w.WriteHeader(map[bool]int{true: http.StatusNotModified, false: http.StatusNoContent}[r.Header.Get("If-None-Match") != ""])
		default:
			http.NotFound(w, r)
		}
	})
	wasm := guesttest.Build(t, "runtime/server/testdata/guests/httpclient")
	in := servertest.Start(t, fmt.Sprintf(`
[reading]
allow = [{ host = "docs.test", scheme = "http" }]
max_bytes = "4MiB"
timeout = "5s"
[plugins.builder]
path = %q
capabilities = { urlreader = ["docs.test"] }
limits = { memory = "128MiB" }
`, wasm), servertest.Options{
		CacheDir: cacheDir,
		Runtime: runtime.Options{URLReader: urlreader.Options{
			Resolver:          testResolver{"docs.test": "127.0.0.1"},
			TestOnlyReachable: []netip.AddrPort{srv.addr()},
		}},
	})
	guestBase := fmt.Sprintf("http://docs.test:%d", srv.port())
	run := func(s scenario.Scenario) (guest, native []scenario.Result) {
		t.Helper()
		js, _ := json.Marshal(s)
		status, _, body := in.Get(t, "/api/builder/?"+url.Values{"s": {string(js)}, "base": {guestBase}}.Encode())
		if status != 200 {
			t.Fatalf("%+v: %d %s", s, status, body)
		}
		if err := json.Unmarshal([]byte(body), &guest); err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		native = scenario.Run(context.Background(), &http.Client{Transport: &http.Transport{}}, srv.URL, s)
		return guest, native
	}
	// differ turns what net/http's client saw into what HTTPClient is
	// to see where docs/urlreader.md says it differs. An Err set here is
	// part of the guest's error; an error both got is otherwise told by
	// its kind (Timeout, Deadline, Canceled), not its text.
	type differ func(r []scenario.Result)
	lengthKnown := func(i int) differ {
		// The body is read whole: its length is known where net/http's
		// is -1 (chunked).
		return func(r []scenario.Result) { r[i].ContentLength = int64(r[i].BodyLen) }
	}
	connectionNotSent := func(seen string) differ {
		return func(r []scenario.Result) { r[0].Header["X-Seen"] = seen }
	}
	refused := func(i int, err string) differ {
		return func(r []scenario.Result) { r[i] = scenario.Result{Err: err, Cookies: r[i].Cookies} }
	}
	deadline := func(r []scenario.Result) { r[0].Err = "the plugin's deadline for this read passed" }
	for _, c := range []struct {
		s    scenario.Scenario
		diff []differ
	}{
		{scenario.Scenario{Calls: []string{"GET /plain"}}, nil},
		{scenario.Scenario{Calls: []string{"Get /plain", "Head /plain", "GET /chunked", "GET /nocontent", "GET /status/500", "GET /missing"}}, []differ{lengthKnown(2)}},
		// A body the runtime decoded from gzip: Uncompressed,
		// ContentLength -1, no Content-Encoding or Content-Length.
		{scenario.Scenario{Calls: []string{"GET /gzip"}}, nil},
		// The plugin's Accept-Encoding is not sent, and the body comes
		// decoded, where net/http's hands it over encoded.
		{scenario.Scenario{Calls: []string{"GET /gzip"}, Header: map[string]string{"Accept-Encoding": "gzip"}}, []differ{func(r []scenario.Result) {
			r[0] = scenario.Result{Status: 200, Body: "hello gzip", BodyLen: 10, ContentLength: -1, Uncompressed: true, URL: "/gzip",
				Header: map[string]string{"Content-Type": "text/plain", "X-Seen": "GET Accept-Encoding=gzip"}}
		}}},
		// Connection, Keep-Alive and req.Close are not sent (the runtime
		// refused the first two, failing the read).
		{scenario.Scenario{Calls: []string{"GET /plain"}, Header: map[string]string{"Connection": "close", "X-Api-Version": "2"}}, []differ{connectionNotSent("GET Accept-Encoding=gzip X-Api-Version=2")}},
		{scenario.Scenario{Calls: []string{"GET /plain"}, Header: map[string]string{"Connection": "keep-alive", "Keep-Alive": "timeout=5"}}, []differ{connectionNotSent("GET Accept-Encoding=gzip")}},
		{scenario.Scenario{Calls: []string{"GET /plain"}, Close: true}, []differ{connectionNotSent("GET Accept-Encoding=gzip")}},
		{scenario.Scenario{Calls: []string{"GET /chain", "Get /see-other"}}, nil},
		{scenario.Scenario{Calls: []string{"GET /chain"}, NoFollow: true}, nil},
		{scenario.Scenario{Calls: []string{"GET /big"}}, []differ{lengthKnown(0)}},
		// Read after Close: net/http's error; NoBody's io.EOF for a
		// response without a body.
		{scenario.Scenario{Calls: []string{"GET /plain", "GET /nocontent", "GET /empty", "GET /status/500"}, CloseFirst: true}, nil},
		{scenario.Scenario{Calls: []string{"POST /plain body", "Post /plain body"}}, []differ{
			refused(0, "the URL reader reads with GET and HEAD only, without a body"),
			refused(1, "the URL reader reads with GET and HEAD only, without a body"),
		}},
		{scenario.Scenario{Calls: []string{"GET /slow"}, TimeoutMS: 200}, []differ{deadline}},
		{scenario.Scenario{Calls: []string{"GET /slow"}, CtxTimeoutMS: 200}, []differ{deadline}},
		{scenario.Scenario{Calls: []string{"GET /plain"}, Canceled: true}, nil},
		{scenario.Scenario{Calls: []string{"Head /moved", "GET /temporary", "GET /query?a=1&b=%2F&c=%20#frag"}}, nil},
		{scenario.Scenario{Calls: []string{"GET /file"}, Header: map[string]string{"Range": "bytes=2-5"}}, nil},
		// The server's 304, headers included.
		{scenario.Scenario{Calls: []string{"GET /file"}, Header: map[string]string{"If-Modified-Since": time.Unix(2e9, 0).UTC().Format(http.TimeFormat)}}, nil},
		{scenario.Scenario{Calls: []string{"GET /gzip-nobody"}, Header: map[string]string{"If-None-Match": `"v1"`}}, nil},
		{scenario.Scenario{Calls: []string{"GET /gzip-nobody"}}, nil},
		// A cookie the Jar stored is refused as a credential, by the SDK,
		// whose error names the Jar (the plugin set no Cookie).
		{scenario.Scenario{Calls: []string{"GET /setcookie", "GET /plain"}, Jar: true}, []differ{refused(1, "request header Cookie may not be set by a plugin: it carries credentials; the URL reader sends no cookies: set none, and leave the client's Jar unset")}},
		{scenario.Scenario{Calls: []string{"GET /cookie-redirect"}, Jar: true}, []differ{refused(0, "request header Cookie may not be set by a plugin: it carries credentials; the URL reader sends no cookies: set none, and leave the client's Jar unset")}},
		// One the plugin sets itself: refused the same way.
		{scenario.Scenario{Calls: []string{"GET /plain"}, Header: map[string]string{"Cookie": "sid=mine"}, Jar: true}, []differ{refused(0, "request header Cookie may not be set by a plugin: it carries credentials")}},
	} {
		guest, want := run(c.s)
		for _, d := range c.diff {
			d(want)
		}
		for i := range min(len(guest), len(want)) {
			if guest[i].Err != "" && want[i].Err != "" && (len(c.diff) == 0 || strings.Contains(guest[i].Err, want[i].Err)) {
				want[i].Err = guest[i].Err
			}
		}
		if d := resultDiff(guest, want); d != "" {
			t.Errorf("%v %+v: %s", c.s.Calls, c.s, d)
		}
	}
}

// resultDiff names the fields in which guest differs from native.
func resultDiff(guest, native []scenario.Result) string {
	if len(guest) != len(native) {
		return fmt.Sprintf("%d results, natively %d", len(guest), len(native))
	}
	var d []string
	for i := range guest {
		g, n := reflect.ValueOf(guest[i]), reflect.ValueOf(native[i])
		for f := 0; f < g.NumField(); f++ {
			if !reflect.DeepEqual(g.Field(f).Interface(), n.Field(f).Interface()) {
				d = append(d, fmt.Sprintf("[%d].%s %v, natively %v", i, g.Type().Field(f).Name, g.Field(f).Interface(), n.Field(f).Interface()))
			}
		}
	}
	return strings.Join(d, "; ")
}
