//go:build !wasip1

package greenroom

import (
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Natively, ReadURL and HTTPClient read with net/http through the
// transport a test sets; their behaviour matches the runtime's.
func TestNativeReadURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/doc":
			w.Header().Set("ETag", `"v2"`)
			w.Header().Set("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
			if r.Header.Get("If-None-Match") == `"v2"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			io.WriteString(w, "content "+r.Header.Get("Accept"))
		case "/moved":
			http.Redirect(w, r, "/doc", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	SetURLTransport(srv.Client().Transport)
	defer SetURLTransport(nil)
	ctx := context.Background()

	resp, err := ReadURL(ctx, srv.URL+"/moved", WithHeader("Accept", "text/plain"))
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Body) != "content text/plain" || resp.ETag != `"v2"` || resp.URL != srv.URL+"/doc" ||
		!resp.LastModified.Equal(time.Date(2015, 10, 21, 7, 28, 0, 0, time.UTC)) {
		t.Errorf("resp = %+v", resp)
	}
	// The sentinel itself: err == ErrNotModified, as a reader of the
	// issue would write it.
	if _, err := ReadURL(ctx, srv.URL+"/doc", IfNoneMatch(resp.ETag)); err != ErrNotModified {
		t.Errorf("IfNoneMatch: %v", err)
	}
	if _, err := ReadURL(ctx, srv.URL+"/missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("404: %v", err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := ReadURL(done, srv.URL+"/doc"); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: %v", err)
	}
	// A deadline passed before the read is a timeout, as one passing
	// during it: ErrTimeout and context.DeadlineExceeded both match.
	expired, cancelExpired := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancelExpired()
	if _, err := ReadURL(expired, srv.URL+"/doc"); !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired deadline: %v (ErrTimeout %v)", err, errors.Is(err, ErrTimeout))
	}

	c := HTTPClient()
	hr, err := c.Get(srv.URL + "/moved")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	if hr.StatusCode != 200 || string(body) != "content " || hr.Request.URL.Path != "/doc" {
		t.Errorf("client GET: %d %q %v", hr.StatusCode, body, hr.Request.URL)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/doc", nil)
	req.Header.Set("If-None-Match", `"v2"`)
	hr, err = c.Do(req)
	if err != nil || hr.StatusCode != http.StatusNotModified || hr.Header.Get("ETag") != `"v2"` || hr.Header.Get("Last-Modified") == "" || hr.Body != http.NoBody {
		t.Errorf("client conditional GET: %v %v, want the server's 304", hr, err)
	}
	hr, err = c.Head(srv.URL + "/doc")
	if err != nil || hr.StatusCode != 200 {
		t.Errorf("client HEAD: %v %v", hr, err)
	}
	if hr, err := c.Get(srv.URL + "/missing"); err != nil || hr.StatusCode != 404 {
		t.Errorf("client 404 is a response, not an error: %v %v", hr, err)
	}
	_, err = c.Post(srv.URL+"/doc", "text/plain", strings.NewReader("x"))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "GET and HEAD only") {
		t.Errorf("POST: %v", err)
	}
	dreq, _ := http.NewRequest("DELETE", srv.URL+"/doc", nil)
	if _, err := c.Do(dreq); !errors.Is(err, ErrInvalid) {
		t.Errorf("DELETE: %v", err)
	}
	// A GET with a body: refused whether its length is known or not, unless
	// the body of unknown length turns out empty.
	for _, tc := range []struct {
		name string
		body io.Reader
		ok   bool
	}{
		{"known length", strings.NewReader("x"), false},
		{"unknown length", io.MultiReader(strings.NewReader("x")), false},
		{"unknown length, empty", io.MultiReader(), true},
	} {
		greq, _ := http.NewRequest("GET", srv.URL+"/doc", tc.body)
		hr, err := c.Do(greq)
		if tc.ok && (err != nil || hr.StatusCode != 200) || !tc.ok && !errors.Is(err, ErrInvalid) {
			t.Errorf("GET with a body, %s: %v %v", tc.name, hr, err)
		}
	}
}

// Natively too, a deadline that passes while the body arrives is
// ErrTimeout (and context.DeadlineExceeded), as in the runtime and as a
// deadline passing before the headers: it was ErrFailed.
func TestNativeReadURLSlowBody(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "the first part")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	SetURLTransport(srv.Client().Transport)
	defer SetURLTransport(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := ReadURL(ctx, srv.URL+"/slow"); !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow body: %v, want ErrTimeout", err)
	}
}

// The client HTTPClient returns follows redirects as net/http's does, so
// that its CheckRedirect decides (http.ErrUseLastResponse hands it the
// 3xx); in the runtime each hop is a read of its own, checked as the
// first. The transport's requests were followed by the reader itself,
// and CheckRedirect never saw a 3xx.
func TestNativeHTTPClientCheckRedirect(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := len(r.URL.Path); r.URL.Path != "/" {
			http.Redirect(w, r, r.URL.Path[:n-1], http.StatusFound)
			return
		}
		io.WriteString(w, "landed")
	}))
	defer srv.Close()
	SetURLTransport(srv.Client().Transport)
	defer SetURLTransport(nil)

	c := HTTPClient()
	var seen []string
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		seen = append(seen, req.URL.Path)
		return nil
	}
	resp, err := c.Get(srv.URL + "/aa")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "landed" || resp.Request.URL.Path != "/" || strings.Join(seen, ",") != "/a,/" {
		t.Errorf("followed: %q at %s, CheckRedirect saw %q", body, resp.Request.URL, seen)
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err = c.Get(srv.URL + "/aa")
	if err != nil || resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/a" {
		t.Errorf("ErrUseLastResponse: %v %+v", err, resp)
	}
	// At most 5 redirects, as in the runtime, whatever CheckRedirect allows.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return nil }
	if _, err := c.Get(srv.URL + "/aaaaa"); err != nil {
		t.Errorf("5 redirects: %v", err)
	}
	if _, err := c.Get(srv.URL + "/aaaaaa"); !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "stopped after 5 redirects") {
		t.Errorf("6 redirects: %v", err)
	}
}

// Natively, HTTPClient's gzip responses are net/http's own: the same
// Uncompressed, ContentLength, headers and body as a plain client's; and
// the plugin's own Accept-Encoding is not sent, as in the runtime (which
// refuses it), so the body comes decoded there too.
func TestNativeHTTPClientUncompressed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") != "gzip" {
			io.WriteString(w, "asked for "+r.Header.Get("Accept-Encoding"))
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		io.WriteString(zw, "hello, gzip")
		zw.Close()
	}))
	defer srv.Close()
	SetURLTransport(srv.Client().Transport)
	defer SetURLTransport(nil)
	type seen struct {
		Uncompressed bool
		Length       int64
		Coding, Len  string
		Body         string
	}
	get := func(c *http.Client, ae string) seen {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if ae != "" {
			req.Header.Set("Accept-Encoding", ae)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return seen{resp.Uncompressed, resp.ContentLength, resp.Header.Get("Content-Encoding"), resp.Header.Get("Content-Length"), string(b)}
	}
	want := get(srv.Client(), "")
	if got := get(HTTPClient(), ""); got != want || !got.Uncompressed {
		t.Errorf("HTTPClient: %+v, net/http: %+v", got, want)
	}
	if got := get(HTTPClient(), "br"); got != want {
		t.Errorf("HTTPClient with the plugin's Accept-Encoding: %+v, want %+v", got, want)
	}
}
