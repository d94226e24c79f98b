package greenroom

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestURLRequestEncoding(t *testing.T) {
	deadline := time.Unix(0, 1234567890)
	b := appendURLRequest(nil, &urlRequest{method: "HEAD", url: "https://x/y", deadline: deadline, header: http.Header{"If-None-Match": {`"e"`}}})
	r := byteReader{b: b[1:]}
	if b[0] != opReadURL || string(r.bytes()) != "https://x/y" || string(r.bytes()) != "HEAD" {
		t.Fatalf("head of %q", b)
	}
	lo, hi := r.u32(), r.u32()
	if int64(lo)|int64(hi)<<32 != 1234567890 || r.u32() != 1 || string(r.bytes()) != "If-None-Match" || string(r.bytes()) != `"e"` || r.off != len(b)-1 {
		t.Errorf("request = %q", b)
	}
}

func encodeResponse(status uint32, url, etag, lm string, headers [][2]string, body string) []byte {
	b := appendU32(nil, status)
	b = appendStr(b, url)
	b = appendStr(b, etag)
	b = appendStr(b, lm)
	b = appendU32(b, uint32(len(headers)))
	for _, h := range headers {
		b = appendStr(appendStr(b, h[0]), h[1])
	}
	return appendStr(b, body)
}

func TestURLResponseDecoding(t *testing.T) {
	b := encodeResponse(200, "https://x/final", `"v1"`, "Wed, 21 Oct 2015 07:28:00 GMT", [][2]string{{"content-type", "text/plain"}, {"X-A", "1"}, {"X-A", "2"}}, "body!")
	resp, err := decodeURLResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	if resp.status != 200 || resp.url != "https://x/final" || resp.etag != `"v1"` || string(resp.body) != "body!" ||
		resp.header.Get("Content-Type") != "text/plain" || strings.Join(resp.header["X-A"], ",") != "1,2" {
		t.Errorf("resp = %+v", resp)
	}
	for n := 0; n < len(b); n++ {
		if _, err := decodeURLResponse(b[:n]); err == nil {
			t.Fatalf("truncated response of %d/%d bytes decoded", n, len(b))
		}
	}
	if _, err := decodeURLResponse(append(b, 0)); err == nil {
		t.Error("trailing byte accepted")
	}
	huge := appendU32(encodeResponse(200, "", "", "", nil, "")[:16], 0x7fffffff)
	if _, err := decodeURLResponse(huge); err == nil {
		t.Error("absurd header count accepted")
	}
}

func TestErrorsMatch(t *testing.T) {
	e := &Error{Op: "urlreader_call", Code: errDenied, Message: "refused: no rule"}
	if !errors.Is(e, ErrDenied) || errors.Is(e, ErrFailed) || e.Timeout() {
		t.Error("denied error matches wrongly")
	}
	to := &Error{Code: errTimeout}
	if !errors.Is(to, ErrTimeout) || !errors.Is(to, context.DeadlineExceeded) || !to.Timeout() {
		t.Error("timeout error matches wrongly")
	}
	if e.Error() != "greenroom: refused: no rule" {
		t.Errorf("Error() = %q", e)
	}
	nf := &StatusError{Response: &ReadResponse{Status: 404, URL: "https://x"}}
	if !errors.Is(nf, ErrNotFound) || errors.Is(&StatusError{Response: &ReadResponse{Status: 500}}, ErrNotFound) {
		t.Error("StatusError matches wrongly")
	}
}

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
	if err != nil || hr.StatusCode != http.StatusNotModified || hr.Header.Get("ETag") != `"v2"` {
		t.Errorf("client conditional GET: %v %v", hr, err)
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
