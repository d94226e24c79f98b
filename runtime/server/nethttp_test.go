package server_test

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/server/testdata/guests/nethttp/handlers"
)

// TestGuestAsNetHTTP serves one handler written as for net/http (a
// ServeMux with methods, wildcards and {$}, http.Error, http.Redirect,
// ServeContent with ranges and validators, FileServer over an embed.FS
// behind StripPrefix, MaxBytesReader, forms and a multipart upload,
// ResponseController, a gin-style stream, gzip it compresses itself,
// TimeoutHandler) natively with httptest and as a guest, and wants the
// same status, headers and body from both, but for the differences
// docs/sandbox.md names: a redirect's Location gets the plugin's mount,
// the buffered answer has a Content-Length, and the server's Date and
// X-Request-Id are its own, and so is X-Content-Type-Options: nosniff on
// an answer that has none. The ResponseController's deadlines and the
// stream's CloseNotify failed in the guest (500, and a panic: 500
// plugin_panic, the instance discarded).
func TestGuestAsNetHTTP(t *testing.T) {
	wasm := guesttest.Build(t, "runtime/server/testdata/guests/nethttp")
	in := start(t, fmt.Sprintf("[plugins.nethttp]\npath = %q\n", wasm))
	native := httptest.NewServer(handlers.New())
	defer native.Close()

	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	mw.WriteField("field", "fv")
	fw, _ := mw.CreateFormFile("file", "x.txt")
	fw.Write([]byte("file content"))
	mw.Close()
	const urlencoded = "application/x-www-form-urlencoded"
	for _, r := range []struct {
		method, path, body string
		header             []string
	}{
		{"GET", "/items/42", "", nil},
		{"GET", "/items/a%2Fb", "", nil},
		{"GET", "/items/a%20b", "", nil},
		{"GET", "/items/caf\u00e9", "", nil},
		{"DELETE", "/items/42", "", nil}, // 405 with Allow
		{"OPTIONS", "/items/42", "", nil},
		{"HEAD", "/items/42", "", nil},
		{"POST", "/items/7", "", nil},
		{"GET", "/items/42/", "", nil},
		{"GET", "/files/a/b/c", "", nil},
		{"GET", "/files/a%2Fb/c", "", nil},
		{"GET", "/dir", "", nil}, // the trailing-slash redirect
		{"GET", "/dir?x=1", "", nil},
		{"GET", "/a/../dir/x", "", nil},
		{"GET", "/items//1", "", nil},
		{"GET", "/exact/", "", nil},
		{"GET", "/exact/x", "", nil},
		{"GET", "/nowhere", "", nil},
		{"GET", "/error", "", nil},
		{"GET", "/redirect", "", nil},
		{"HEAD", "/redirect", "", nil},
		{"GET", "/content", "", nil},
		{"HEAD", "/content", "", nil},
		{"GET", "/content", "", []string{"Range", "bytes=2-5"}},
		{"GET", "/content", "", []string{"Range", "bytes=50-60"}},
		{"GET", "/content", "", []string{"If-None-Match", `"v1"`}},
		{"GET", "/content", "", []string{"If-Modified-Since", "Fri, 02 Jan 2026 03:04:05 GMT"}},
		{"GET", "/content", "", []string{"If-Range", `"v0"`, "Range", "bytes=0-1"}},
		{"GET", "/static/a.txt", "", nil},
		{"GET", "/static/a.txt", "", []string{"Range", "bytes=0-4"}},
		{"GET", "/static/", "", nil},
		{"GET", "/static/nope", "", nil},
		{"POST", "/limited", "0123456789ABC", nil},
		{"POST", "/limited", "0123", nil},
		{"POST", "/form?a=q1&b=%20x", "a=p1&c=%2F", []string{"Content-Type", urlencoded}},
		{"GET", "/form?a=q1&a=q2&b=%26", "", nil},
		{"POST", "/upload", form.String(), []string{"Content-Type", mw.FormDataContentType()}},
		{"GET", "/query?a=%2F&b=1+2&c=%zz&d", "", nil},
		{"GET", "/query?a=1;b=2", "", nil},
		{"GET", "/req", "", []string{"X-Multi", "a", "X-Multi", "b, c", "Accept", "text/html"}},
		{"POST", "/req", "abc", nil},
		{"GET", "/multiheader", "", nil},
		{"GET", "/nocontent", "", nil},
		{"GET", "/notmodified", "", nil},
		{"GET", "/controller", "", nil},
		{"POST", "/json", `{"Name":"x"}`, nil},
		{"POST", "/json", `{"Name":"x","Other":1}`, nil},
		{"GET", "/gzip", "", nil},
		{"GET", "/timeout", "", nil},
		{"POST", "/maxbytes", "0123456789", nil},
		{"GET", "/sniff", "", nil},
		{"GET", "/nilcontenttype", "", nil},
		{"GET", "/contentlength", "", nil},
		{"GET", "/early", "", nil},
		{"GET", "/stream", "", nil},
	} {
		nativeSniff := "" // the native answer's X-Content-Type-Options
		answer := func(base string, client *http.Client, mount string) string {
			req, err := http.NewRequest(r.method, base+r.path, strings.NewReader(r.body))
			if err != nil {
				t.Fatal(err)
			}
			if r.body == "" {
				req.Body, req.ContentLength = nil, 0
			}
			for i := 0; i+1 < len(r.header); i += 2 {
				req.Header.Add(r.header[i], r.header[i+1])
			}
			req.Header.Set("Accept-Encoding", "identity")
			c := *client
			c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, err := c.Do(req)
			if err != nil {
				return "error: " + err.Error()
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			h := resp.Header.Clone()
			h.Del("Date")
			h.Del("X-Request-Id")
			if mount == "" {
				nativeSniff = h.Get("X-Content-Type-Options")
			} else if v := h.Values("X-Content-Type-Options"); nativeSniff == "" && len(v) == 1 && v[0] == "nosniff" {
				h.Del("X-Content-Type-Options") // greenroom's, on an answer without one
			}
			if loc := h.Get("Location"); loc != "" {
				h.Set("Location", strings.TrimPrefix(loc, mount))
			}
			if h.Get("Content-Length") == "" && mount == "" && r.method != "HEAD" && resp.StatusCode != 204 && resp.StatusCode != 304 {
				// Streamed natively (a flush, chunked); buffered by the guest.
				h.Set("Content-Length", fmt.Sprint(len(body)))
			}
			var b strings.Builder
			fmt.Fprintf(&b, "%d\n", resp.StatusCode)
			keys := make([]string, 0, len(h))
			for k := range h {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				fmt.Fprintf(&b, "%s: %q\n", k, h[k])
			}
			fmt.Fprintf(&b, "%q\n", body)
			return b.String()
		}
		want := answer(native.URL, http.DefaultClient, "")
		got := answer(in.URL+"/api/nethttp", in.Client, "/api/nethttp")
		if got != want {
			t.Errorf("%s %s %q:\nguest:\n%snet/http:\n%s", r.method, r.path, r.header, got, want)
		}
	}
}

// A handler whose form is larger than the maxMemory it gives
// r.ParseMultipartForm, which spills the rest to temporary files, and
// any other code that makes one, fails with an error that says a plugin
// has no filesystem and what to do, as net/http's default client says it
// has no network: it failed with wasip1's "open
// /tmp/multipart-3877424964: Bad file number", which names neither.
func TestGuestTempFilesSayWhy(t *testing.T) {
	wasm := guesttest.Build(t, "runtime/server/testdata/guests/nethttp")
	in := start(t, fmt.Sprintf("[plugins.nethttp]\npath = %q\n", wasm))
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("file", "x.txt")
	fw.Write(bytes.Repeat([]byte("x"), 4096))
	mw.Close()
	req, _ := http.NewRequest("POST", in.URL+"/api/nethttp/upload-small", &form)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := in.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "a plugin has no filesystem, so no temporary files; give r.ParseMultipartForm a maxMemory as large as server.body_limit") {
		t.Errorf("a form that spills to temporary files: %d %q, want 400 with an error that says a plugin has no filesystem", resp.StatusCode, body)
	}
}
