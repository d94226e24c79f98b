//go:build !wasip1

package greenroom

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Natively, a request header the runtime refuses is refused too, sending
// nothing, with the error a deployed plugin gets: a unit test passed with
// a header its deployed read was refused for (or, Host, one net/http
// dropped without a word).
func TestNativeRefusesTheRuntimesHeaders(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, r.Header.Get("Accept"))
	}))
	defer srv.Close()
	SetURLTransport(srv.Client().Transport)
	defer SetURLTransport(nil)
	ctx := context.Background()

	if resp, err := ReadURL(ctx, srv.URL+"/", WithHeader("Accept", "text/plain")); err != nil || string(resp.Body) != "text/plain" {
		t.Fatalf("Accept: %v", err)
	}
	for _, tc := range []struct {
		k, v string
		kind *Error
		want string
	}{
		{"Authorization", "Bearer mine", ErrDenied, "greenroom: request header Authorization may not be set by a plugin: it carries credentials, which the host adds from [[integrations]]"},
		{"Cookie", "a=b", ErrDenied, "greenroom: request header Cookie may not be set by a plugin: it carries credentials"},
		{"Host", "billing.internal", ErrDenied, "greenroom: request header Host may not be set by a plugin: the host is the URL's"},
		{"X_Forwarded_For", "10.0.0.1", ErrDenied, "greenroom: request header X_forwarded_for may not be set by a plugin: it would speak for the runtime's network"},
		{"X-Forwarded-Prefix", "/", ErrDenied, "greenroom: request header X-Forwarded-Prefix may not be set by a plugin: it would speak for the runtime's network"},
		{"Accept-Encoding", "br", ErrDenied, "greenroom: request header Accept-Encoding may not be set by a plugin: the host negotiates compression and hands bodies over decoded"},
		{"X-HTTP-Method-Override", "DELETE", ErrDenied, "greenroom: request header X-Http-Method-Override may not be set by a plugin: reads are GET or HEAD"},
		{"X-Ok", "a\r\nInjected: 1", ErrInvalid, "greenroom: request header X-Ok has a control character in its value"},
	} {
		_, err := ReadURL(ctx, srv.URL+"/", WithHeader(tc.k, tc.v))
		if !errors.Is(err, tc.kind) || err == nil || err.Error() != tc.want {
			t.Errorf("ReadURL with %s: got %v, want %v %q", tc.k, err, tc.kind, tc.want)
		}
	}
	// Through HTTPClient: what its transport sends on (it drops Host,
	// Accept-Encoding and the connection headers, as documented) is
	// checked as the runtime checks it.
	for _, tc := range []struct{ k, v, want string }{
		{"Authorization", "Bearer mine", "request header Authorization may not be set by a plugin: it carries credentials, which the host adds from [[integrations]]"},
		{"X-Forwarded-For", "10.0.0.1", "request header X-Forwarded-For may not be set by a plugin: it would speak for the runtime's network"},
		{"Upgrade", "websocket", "request header Upgrade may not be set by a plugin: it is hop-by-hop"},
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/", nil)
		req.Header.Set(tc.k, tc.v)
		resp, err := HTTPClient().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		if !errors.Is(err, ErrDenied) || !strings.HasSuffix(err.Error(), ": greenroom: "+tc.want) {
			t.Errorf("HTTPClient with %s: got %v, want ErrDenied %q", tc.k, err, tc.want)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("refused requests reached the server: %d requests", n)
	}
}

// Natively, the runtime's rules that do not depend on the operator's
// config hold as in the runtime, with its errors: a URL's form (checked
// on each redirect too), no Referer on a redirect, no hop-by-hop response
// headers. Natively a URL with credentials was read with them sent as
// Basic authorization, another scheme failed with ErrFailed, Go's client
// named the previous URL in a redirect's Referer, and Keep-Alive and the
// headers a Connection header names reached the plugin.
func TestNativeReadsAsTheRuntime(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, "/referer", http.StatusFound)
		case "/referer":
			io.WriteString(w, "referer="+r.Header.Get("Referer")+" auth="+r.Header.Get("Authorization"))
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/claims":
			w.Header().Set("Content-Length", strconv.Itoa(nativeMaxBytes+1))
		case "/big":
			w.Write(make([]byte, nativeMaxBytes+1)) // chunked: no Content-Length
		case "/tocreds":
			http.Redirect(w, r, "http://user:pw@"+r.Host+"/referer", http.StatusFound)
		case "/api/v4/projects/group/project/repository/files/docs/index.md/raw":
			io.WriteString(w, "uri="+r.RequestURI) // as sent: %2F kept
		case "/hop":
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			buf.WriteString("HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nX-Secret: s1\r\nKeep-Alive: timeout=5\r\n" +
				"Proxy-Authenticate: Basic realm=\"inner\"\r\nUpgrade: h2c\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok")
			buf.Flush()
		}
	}))
	defer srv.Close()
	SetURLTransport(srv.Client().Transport)
	defer SetURLTransport(nil)
	ctx := context.Background()
	hostPort := strings.TrimPrefix(srv.URL, "http://")

	// No Referer on a redirect, followed by ReadURL or by HTTPClient's
	// client.
	if resp, err := ReadURL(ctx, srv.URL+"/moved"); err != nil || string(resp.Body) != "referer= auth=" {
		t.Errorf("ReadURL's redirect: %v %v", resp, err)
	}
	if resp, err := HTTPClient().Get(srv.URL + "/moved"); err != nil {
		t.Errorf("HTTPClient's redirect: %v", err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "referer= auth=" {
			t.Errorf("HTTPClient's redirect: %q", b)
		}
	}
	// An encoded slash (GitLab's API) is read and sent as written, as the
	// runtime reads it for a whole host.
	const gitlab = "/api/v4/projects/group%2Fproject/repository/files/docs%2Findex.md/raw?ref=main"
	if resp, err := ReadURL(ctx, srv.URL+gitlab); err != nil || string(resp.Body) != "uri="+gitlab || resp.URL != srv.URL+gitlab {
		t.Errorf("ReadURL %s: %v %v", gitlab, resp, err)
	}
	// The hop-by-hop response headers and those Connection names are
	// dropped.
	check := func(name string, h http.Header) {
		for _, k := range []string{"Connection", "X-Secret", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
			if v, ok := h[k]; ok {
				t.Errorf("%s: hop-by-hop header %s: %q reached the plugin", name, k, v)
			}
		}
		if h.Get("X-Kept") != "yes" {
			t.Errorf("%s: X-Kept: %q", name, h.Get("X-Kept"))
		}
	}
	if resp, err := ReadURL(ctx, srv.URL+"/hop"); err != nil {
		t.Errorf("ReadURL /hop: %v", err)
	} else {
		check("ReadURL", resp.Header)
	}
	if resp, err := HTTPClient().Get(srv.URL + "/hop"); err != nil {
		t.Errorf("HTTPClient /hop: %v", err)
	} else {
		resp.Body.Close()
		check("HTTPClient", resp.Header)
	}
	// The limits, in the runtime's words (those of its defaults).
	for _, tc := range []struct{ path, want string }{
		{"/loop", "greenroom: " + srv.URL + "/loop: stopped after 5 redirects"},
		{"/claims", "greenroom: " + srv.URL + "/claims: body of 16777217 bytes is over reading.max_bytes (16777216)"},
		{"/big", "greenroom: " + srv.URL + "/big: body is over reading.max_bytes (16777216); stopped reading"},
	} {
		if _, err := ReadURL(ctx, srv.URL+tc.path); err == nil || err.Error() != tc.want {
			t.Errorf("ReadURL %s: got %v, want %q", tc.path, err, tc.want)
		}
	}
	before := hits.Load()

	creds := "greenroom: http://" + hostPort + ": credentials in the URL are refused; the host adds credentials from [[integrations]]"
	for _, tc := range []struct {
		url  string
		kind *Error
		want string
	}{
		{"http://user:pw@" + hostPort + "/referer", ErrDenied, creds},
		{srv.URL + "/tocreds", ErrDenied, "greenroom: redirect from " + srv.URL + "/tocreds: " + strings.TrimPrefix(creds, "greenroom: ")},
		{"ftp://" + hostPort + "/x", ErrInvalid, "greenroom: ftp://" + hostPort + "/x: scheme \"ftp\" is not supported (https, or http where an allow rule says so)"},
		{"/referer", ErrInvalid, "greenroom: \"/referer\" is not an absolute URL (want https://host/path)"},
		{"http:///referer", ErrInvalid, "greenroom: http:///referer: URL has no host"},
		// GitLab's API names a project group%2Fproject, read (below), as
		// the runtime reads it for a whole host; a backslash is not.
		{srv.URL + "/api/v4/projects/group%5Cproject", ErrInvalid, "greenroom: " + srv.URL + "/api/v4/projects/group%5Cproject: backslashes in the path, encoded or not (\\, %5C, or %255C encoded twice), are refused"},
		{srv.URL + "/api/v4/projects/group%2F..%2Fadmin", ErrInvalid, "greenroom: " + srv.URL + "/api/v4/projects/group%2F..%2Fadmin: dot segments (. and .., also with ;parameters as in ..;, or encoded twice as in %252e%252e) in the path are refused"},
		{srv.URL + "/docs/..;/admin", ErrInvalid, "greenroom: " + srv.URL + "/docs/..;/admin: dot segments (. and .., also with ;parameters as in ..;, or encoded twice as in %252e%252e) in the path are refused"},
	} {
		_, err := ReadURL(ctx, tc.url)
		if !errors.Is(err, tc.kind) || err == nil || err.Error() != tc.want {
			t.Errorf("ReadURL %s: got %v, want %v %q", tc.url, err, tc.kind, tc.want)
		}
		resp, err := HTTPClient().Get(tc.url)
		if err == nil {
			resp.Body.Close()
		}
		if !errors.Is(err, tc.kind) || !strings.HasSuffix(fmt.Sprint(err), ": "+tc.want) {
			t.Errorf("HTTPClient %s: got %v, want %v %q", tc.url, err, tc.kind, tc.want)
		}
	}
	// The redirect to a URL with credentials was asked for twice, and
	// followed neither time.
	if n := hits.Load() - before; n != 2 {
		t.Errorf("refused URLs reached the server: %d requests, want the 2 redirects", n)
	}
}

// Natively a read has the runtime's defaults: its User-Agent when the
// plugin sets none (it was Go's), and reading.timeout, 30s, with the
// runtime's errors (a read ran as long as its server took, and a deadline
// said only "deadline passed"). The runtime's defaults are those
// runtime/urlreader's TestRuntimeAnswersForTheNativeBuild wrote to
// testdata/runtime_url_answers.json.
func TestNativeReadsWithTheRuntimesDefaults(t *testing.T) {
	if d := loadRuntimeAnswers(t).Defaults; nativeMaxBytes != d.MaxBytes || nativeTimeout.String() != d.Timeout || nativeUserAgent != d.UserAgent {
		t.Errorf("native defaults %d %s %q, the runtime's %d %s %q (%s)", nativeMaxBytes, nativeTimeout, nativeUserAgent, d.MaxBytes, d.Timeout, d.UserAgent, runtimeAnswersFile)
	}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ua":
			io.WriteString(w, r.UserAgent())
		case "/slowbody":
			io.WriteString(w, "the first part")
			w.(http.Flusher).Flush()
			fallthrough
		case "/slow":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()
	defer close(release)
	SetURLTransport(srv.Client().Transport)
	defer SetURLTransport(nil)
	ctx := context.Background()

	if resp, err := ReadURL(ctx, srv.URL+"/ua"); err != nil || string(resp.Body) != "greenroom-urlreader" {
		t.Errorf("ReadURL's User-Agent: %v %v", resp, err)
	}
	if resp, err := ReadURL(ctx, srv.URL+"/ua", WithHeader("User-Agent", "docs-plugin/1")); err != nil || string(resp.Body) != "docs-plugin/1" {
		t.Errorf("the plugin's User-Agent: %v %v", resp, err)
	}
	if resp, err := HTTPClient().Get(srv.URL + "/ua"); err != nil {
		t.Error(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "greenroom-urlreader" {
			t.Errorf("HTTPClient's User-Agent: %q", b)
		}
	}

	defer func(d time.Duration) { nativeTimeout = d }(nativeTimeout)
	nativeTimeout = 100 * time.Millisecond
	// A later deadline of the plugin's own, so that the test ends
	// without reading.timeout too.
	later, cancelLater := context.WithTimeout(ctx, 5*time.Second)
	defer cancelLater()
	for _, path := range []string{"/slow", "/slowbody"} {
		want := "greenroom: " + srv.URL + path + ": read took longer than reading.timeout (100ms)"
		if _, err := ReadURL(later, srv.URL+path); !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || err.Error() != want {
			t.Errorf("ReadURL %s: %v, want ErrTimeout %q", path, err, want)
		}
		req, _ := http.NewRequestWithContext(later, http.MethodGet, srv.URL+path, nil)
		resp, err := HTTPClient().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		if !errors.Is(err, ErrTimeout) || !strings.HasSuffix(fmt.Sprint(err), ": "+want) {
			t.Errorf("HTTPClient %s: %v, want ErrTimeout %q", path, err, want)
		}
	}
	nativeTimeout = 10 * time.Second
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	want := "greenroom: " + srv.URL + "/slowbody: the plugin's deadline for this read passed"
	if _, err := ReadURL(short, srv.URL+"/slowbody"); !errors.Is(err, ErrTimeout) || err.Error() != want {
		t.Errorf("the plugin's deadline: %v, want %q", err, want)
	}
}

// roundTripFunc is a transport that answers from a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Natively a body comes decoded as in the runtime: one gzip layer is
// decoded, whether the transport decoded it or not (a transport set with
// SetURLTransport that does not decode, as a test's fake), and a body
// still encoded otherwise fails the read with the runtime's error (it
// was handed over encoded, with its Content-Encoding).
func TestNativeContentCodingsAsTheRuntime(t *testing.T) {
	gz := func(s string) []byte {
		var b strings.Builder
		zw := gzip.NewWriter(&b)
		io.WriteString(zw, s)
		zw.Close()
		return []byte(b.String())
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/br", "/deflate":
			w.Header().Set("Content-Encoding", strings.TrimPrefix(r.URL.Path, "/"))
			io.WriteString(w, "\x8b\x01\x80encoded")
		case "/identity":
			w.Header().Set("Content-Encoding", "identity")
			io.WriteString(w, "plain")
		case "/empty":
			w.Header().Set("Content-Encoding", "br")
			w.WriteHeader(http.StatusNoContent)
		case "/gzip":
			// gzip whether asked or not, Range or not.
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(gz("unzipped"))
		}
	}))
	defer srv.Close()
	SetURLTransport(srv.Client().Transport)
	defer SetURLTransport(nil)
	ctx := context.Background()
	for _, tc := range []struct {
		path  string
		opts  []ReadOption
		want  string // the body, or the error
		isErr bool
	}{
		{"/br", nil, "greenroom: " + srv.URL + "/br: refused: the response is encoded (Content-Encoding: br), which the runtime does not decode; a plugin gets bodies decoded (the runtime asks for gzip itself)", true},
		{"/deflate", nil, "greenroom: " + srv.URL + "/deflate: refused: the response is encoded (Content-Encoding: deflate), which the runtime does not decode; a plugin gets bodies decoded (the runtime asks for gzip itself)", true},
		{"/gzip", []ReadOption{WithHeader("Range", "bytes=0-")}, "greenroom: " + srv.URL + "/gzip: refused: the response is encoded (Content-Encoding: gzip), which the runtime does not decode; a plugin gets bodies decoded (the runtime asks for gzip itself)", true},
		{"/identity", nil, "plain", false},
		{"/gzip", nil, "unzipped", false},
	} {
		resp, err := ReadURL(ctx, srv.URL+tc.path, tc.opts...)
		switch {
		case tc.isErr && (!errors.Is(err, ErrFailed) || err.Error() != tc.want):
			t.Errorf("%s: %v, want ErrFailed %q", tc.path, err, tc.want)
		case !tc.isErr && (err != nil || string(resp.Body) != tc.want):
			t.Errorf("%s: %v %v, want %q", tc.path, resp, err, tc.want)
		}
	}
	if resp, err := HTTPClient().Get(srv.URL + "/empty"); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Errorf("an empty body is not encoded: %v %v", resp, err)
	}
	if resp, err := HTTPClient().Get(srv.URL + "/br"); err == nil || !errors.Is(err, ErrFailed) {
		t.Errorf("HTTPClient /br: %v %v, want ErrFailed", resp, err)
	}

	// A transport that does not decode: the runtime would have.
	SetURLTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		body := gz("from a fake")
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Encoding": {"gzip"}, "Content-Length": {strconv.Itoa(len(body))}},
			Body: io.NopCloser(strings.NewReader(string(body))), ContentLength: int64(len(body)), Request: r}, nil
	}))
	if resp, err := ReadURL(ctx, "https://docs.example/a"); err != nil || string(resp.Body) != "from a fake" || resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("ReadURL through a fake: %v %v", resp, err)
	}
	resp, err := HTTPClient().Get("https://docs.example/a")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "from a fake" || !resp.Uncompressed || resp.ContentLength != -1 || resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Content-Length") != "" {
		t.Errorf("HTTPClient through a fake: %q Uncompressed %v ContentLength %d %v", b, resp.Uncompressed, resp.ContentLength, resp.Header)
	}
}
