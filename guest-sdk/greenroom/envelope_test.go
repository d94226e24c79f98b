package greenroom

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
	"weak"
)

type envBuilder struct{ b []byte }

func (e *envBuilder) str(s string) *envBuilder {
	e.b = binary.LittleEndian.AppendUint32(e.b, uint32(len(s)))
	e.b = append(e.b, s...)
	return e
}
func (e *envBuilder) u32(v uint32) *envBuilder {
	e.b = binary.LittleEndian.AppendUint32(e.b, v)
	return e
}
func (e *envBuilder) u64(v uint64) *envBuilder {
	e.b = binary.LittleEndian.AppendUint64(e.b, v)
	return e
}
func (e *envBuilder) u8(v uint8) *envBuilder { e.b = append(e.b, v); return e }

func sampleEnvelope(deadline time.Time) []byte {
	e := &envBuilder{}
	e.str("POST").str("/items/a%2Fb").str("x=1&y=2").str("rid-1").str("10.0.0.1:5555").u64(uint64(deadline.UnixNano()))
	e.u8(principalService).str("service:ci").str(`{"sub":"ci"}`)
	e.u32(3).str("Content-Type").str("text/plain").str("X-Multi").str("1").str("Host").str("example.org")
	e.str("hello body")
	return e.b
}

func TestDecodeRequest(t *testing.T) {
	deadline := time.Now().Add(time.Hour).Truncate(time.Nanosecond)
	req, _, err := decodeRequest(string(sampleEnvelope(deadline)))
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != "POST" || req.URL.Path != "/items/a/b" || req.URL.RawPath != "/items/a%2Fb" || req.URL.RawQuery != "x=1&y=2" {
		t.Errorf("url = %+v", req.URL)
	}
	if req.Header.Get("Content-Type") != "text/plain" || req.Header.Get("X-Multi") != "1" || req.Host != "example.org" || req.RemoteAddr != "10.0.0.1:5555" {
		t.Errorf("headers = %v host %q", req.Header, req.Host)
	}
	body, _ := io.ReadAll(req.Body)
	if string(body) != "hello body" || req.ContentLength != 10 {
		t.Errorf("body = %q (%d)", body, req.ContentLength)
	}
	if got := RequestID(req.Context()); got != "rid-1" {
		t.Errorf("request id = %q", got)
	}
	if d, ok := req.Context().Deadline(); !ok || !d.Equal(deadline) {
		t.Errorf("deadline = %v %v, want %v", d, ok, deadline)
	}
	// A derived context is cancelled when the request finishes.
	child, cancel := context.WithCancel(req.Context())
	defer cancel()
	requestContextFrom(req.Context()).finish()
	select {
	case <-child.Done():
	case <-time.After(time.Second):
		t.Error("child context not cancelled when the request finished")
	}
	// A context kept past the handler, never asked for Done while it
	// ran, is canceled too, as net/http's is.
	req, _, _ = decodeRequest(string(sampleEnvelope(deadline)))
	kept := req.Context()
	requestContextFrom(kept).finish()
	if !errors.Is(kept.Err(), context.Canceled) {
		t.Errorf("Err after the handler returned = %v", kept.Err())
	}
	select {
	case <-kept.Done():
	default:
		t.Error("Done not closed after the handler returned")
	}
}

// With a large body, nothing of the request but its body is a view of
// the envelope: a handler that keeps a header, the path or the subject
// does not keep the body alive (with a small one, views save copies).
func TestLargeBodyKeptApart(t *testing.T) {
	for _, size := range []int{bodyApart - 1, bodyApart, 1 << 20} {
		e := &envBuilder{}
		e.str("POST").str("/items/a%2Fb").str("x=1").str("rid-1").str("10.0.0.1:5555").u64(0)
		e.u8(principalUser).str("user:jane").str(`{"sub":"jane"}`)
		e.u32(4).str("Content-Type").str("text/plain").str("X-Multi").str("1").str("X-Multi").str("2").str("Host").str("example.org")
		body := strings.Repeat("b", size)
		e.str(body)
		env := string(e.b)
		req, _, err := decodeRequest(env)
		if err != nil {
			t.Fatal(err)
		}
		p := PrincipalFrom(req)
		fields := map[string]string{"method": req.Method, "path": req.URL.Path, "raw path": req.URL.RawPath, "query": req.URL.RawQuery,
			"request uri": req.RequestURI, "remote": req.RemoteAddr, "host": req.Host, "request id": RequestID(req.Context()), "subject": p.Subject}
		for k, vs := range req.Header {
			fields["header name "+k] = k
			for i, v := range vs {
				fields[fmt.Sprintf("header %s[%d]", k, i)] = v
			}
		}
		for name, v := range fields {
			if _, in := offsetIn(v, env); in && size >= bodyApart {
				t.Errorf("body of %d bytes: %s %q is a view of the envelope", size, name, v)
			}
		}
		if _, in := offsetIn(req.Method, env); size < bodyApart && !in {
			t.Errorf("body of %d bytes: the method was copied", size)
		}
		if req.Method != "POST" || req.URL.Path != "/items/a/b" || req.Host != "example.org" || p.Subject != "user:jane" ||
			strings.Join(req.Header["X-Multi"], ",") != "1,2" || req.Header.Get("Content-Type") != "text/plain" || RequestID(req.Context()) != "rid-1" {
			t.Errorf("body of %d bytes: decoded %s %s %s %v", size, req.Method, req.URL, req.Host, req.Header)
		}
		if got, _ := io.ReadAll(req.Body); string(got) != body {
			t.Errorf("body of %d bytes: read %d", size, len(got))
		}
	}
}

// What a handler keeps of a request with a large body does not keep the
// envelope (the body's bytes) once the handler returned: not the header
// map or a header's values, the URL, the context, nor an empty field (a
// view of length 0 still points into the envelope). The envelope is read
// into a []byte viewed as a string, as greenroomHandle does.
func TestKeptRequestLetsTheBodyGo(t *testing.T) {
	e := &envBuilder{}
	e.str("POST").str("/items/7").str("").str("rid-1").str("10.0.0.1:5555").u64(0)
	e.u8(principalNone).str("").str("")
	e.u32(2).str("Content-Type").str("text/plain").str("X-Empty").str("")
	e.str(strings.Repeat("b", 1<<20))
	buf := append([]byte(nil), e.b...)
	gone := weak.Make(&buf[0])
	req, _, err := decodeRequest(unsafe.String(&buf[0], len(buf)))
	if err != nil {
		t.Fatal(err)
	}
	buf = nil
	kept := []any{req.Header, req.Header.Values("Content-Type"), req.Header["X-Empty"], req.URL, req.URL.RawQuery, req.Context(), req.Method}
	requestContextFrom(req.Context()).finish() // the handler returned
	if n, err := req.Body.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("a read of the body after the handler returned: %d %v", n, err)
	}
	req = nil
	for range 3 {
		runtime.GC()
	}
	if gone.Value() != nil {
		t.Error("the envelope (the body's 1 MiB) is still alive while the handler keeps parts of its request")
	}
	runtime.KeepAlive(kept)
}

// As with net/http's server, a body read after Close fails, unread bytes
// or not.
func TestRequestBodyReadAfterClose(t *testing.T) {
	req, _, err := decodeRequest(string(sampleEnvelope(time.Now().Add(time.Hour))))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if n, err := req.Body.Read(buf); n != 5 || err != nil || string(buf) != "hello" {
		t.Fatalf("first read: %d %v %q", n, err, buf)
	}
	if err := req.Body.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := req.Body.Read(buf); n != 0 || err != http.ErrBodyReadAfterClose {
		t.Errorf("read after close: %d %v, want 0 %v", n, err, http.ErrBodyReadAfterClose)
	}
}

// io.Copy from a request's body goes through its WriteTo: the rest of the
// body in one write, no 32 KiB buffer (in wasm its allocation cost more
// than the copy: BenchmarkHandleEcho 34.8 against 21.2 µs); after Close it
// fails as Read does.
func TestRequestBodyWriteTo(t *testing.T) {
	req, rw, err := decodeRequest(string(sampleEnvelope(time.Now().Add(time.Hour))))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := req.Body.(io.WriterTo); !ok {
		t.Fatalf("%T is not an io.WriterTo", req.Body)
	}
	if n, err := req.Body.Read(make([]byte, 6)); n != 6 || err != nil {
		t.Fatalf("first read: %d %v", n, err)
	}
	var writes []string
	if n, err := io.Copy(writerFunc(func(p []byte) (int, error) {
		writes = append(writes, string(p))
		return len(p), nil
	}), req.Body); n != 4 || err != nil || len(writes) != 1 || writes[0] != "body" {
		t.Errorf("io.Copy of the rest: %d %v, writes %q; want 4 bytes, \"body\", in one write", n, err, writes)
	}
	if n, err := io.Copy(io.Discard, req.Body); n != 0 || err != nil {
		t.Errorf("io.Copy at the end: %d %v", n, err)
	}

	// Into the response, allocating no copy buffer (the body's own
	// buffer is the one allocation).
	req, rw, _ = decodeRequest(string(sampleEnvelope(time.Now().Add(time.Hour))))
	if allocs := testing.AllocsPerRun(1, func() { io.Copy(rw, req.Body) }); allocs > 2 {
		t.Errorf("io.Copy(w, r.Body) made %v allocations, want at most 2 (no 32 KiB buffer)", allocs)
	}
	if string(rw.body) != "hello body" {
		t.Errorf("response body %q", rw.body)
	}

	req.Body.Close()
	if n, err := io.Copy(io.Discard, req.Body); n != 0 || err != http.ErrBodyReadAfterClose {
		t.Errorf("io.Copy after Close: %d %v, want 0 %v", n, err, http.ErrBodyReadAfterClose)
	}
}

// io.Copy to the response from a reader that is not an io.WriterTo goes
// through the writer's ReadFrom: each piece through Write (its checks
// hold), with a kept buffer instead of a new 32 KiB one, zeroed between
// copies.
func TestResponseWriterReadFrom(t *testing.T) {
	newWriter := func() *responseWriter {
		_, rw, err := decodeRequest(string(sampleEnvelope(time.Now().Add(time.Hour))))
		if err != nil {
			t.Fatal(err)
		}
		return rw
	}
	rw := newWriter()
	if _, ok := any(rw).(io.ReaderFrom); !ok {
		t.Fatalf("%T is not an io.ReaderFrom", rw)
	}
	body := strings.Repeat("0123456789abcdef", 5000) // 80 000 bytes: three pieces
	if n, err := io.Copy(rw, io.LimitReader(strings.NewReader(body), 1<<20)); n != int64(len(body)) || err != nil {
		t.Fatalf("io.Copy: %d %v", n, err)
	}
	if got := string(rw.body) + string(bytes.Join(rw.more, nil)); got != body {
		t.Errorf("body: %d bytes, want the %d copied", len(got), len(body))
	}
	w := &responseWriter{status: http.StatusOK, declared: -1, wroteHeader: true, body: make([]byte, 0, 20000)}
	copies := func(n int) {
		for range n {
			w.body, w.size, w.written = w.body[:0], 0, 0
			io.Copy(w, io.LimitReader(strings.NewReader(body[:16384]), 1<<20))
		}
	}
	copies(1)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	copies(20)
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / 20; per > 4096 {
		t.Errorf("io.Copy of 16 KiB from a LimitReader allocated %d bytes, want under 4 KiB (no 32 KiB buffer each time)", per)
	}

	// As Write: past a declared Content-Length, and after the handler.
	rw = newWriter()
	rw.Header().Set("Content-Length", "5")
	if _, err := io.Copy(rw, io.LimitReader(strings.NewReader("0123456789"), 100)); err != http.ErrContentLength {
		t.Errorf("past the declared length: %v, want %v", err, http.ErrContentLength)
	}
	rw = newWriter()
	rw.done = true
	if _, err := io.Copy(rw, io.LimitReader(strings.NewReader("x"), 100)); err != errWriteAfterReturn {
		t.Errorf("after the handler returned: %v, want %v", err, errWriteAfterReturn)
	}

	// A reader that reports bytes it did not write hands on zeros, as
	// with a new buffer, not the last copy's bytes.
	rw = newWriter()
	io.Copy(rw, io.LimitReader(strings.NewReader(strings.Repeat("S", 32<<10)), 1<<20))
	rw = newWriter()
	lying := readerFunc(func(p []byte) (int, error) { return 16, io.EOF })
	if n, err := io.Copy(rw, lying); n != 16 || err != nil || string(rw.body) != strings.Repeat("\x00", 16) {
		t.Errorf("a lying reader: %d %v %q, want 16 zero bytes", n, err, rw.body)
	}
}

type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestDecodeRequestPastDeadline(t *testing.T) {
	req, _, err := decodeRequest(string(sampleEnvelope(time.Now().Add(-time.Second))))
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(req.Context().Err(), context.DeadlineExceeded) {
		t.Errorf("Err = %v", req.Context().Err())
	}
	select {
	case <-req.Context().Done():
	case <-time.After(time.Second):
		t.Error("Done not closed past the deadline")
	}
}

func TestDecodeRequestTruncated(t *testing.T) {
	full := sampleEnvelope(time.Now())
	for n := 0; n < len(full); n++ {
		if _, _, err := decodeRequest(string(full[:n])); err == nil {
			t.Fatalf("truncated envelope of %d/%d bytes decoded", n, len(full))
		}
	}
	// A header count the envelope cannot hold is refused before allocating.
	e := &envBuilder{}
	e.str("GET").str("/").str("").str("").str("").u64(0).u8(0).str("").str("").u32(0xffffffff)
	if _, _, err := decodeRequest(string(e.b)); err == nil {
		t.Fatal("absurd header count accepted")
	}
}

// decodeResponse reads a response envelope: status, headers, body.
func decodeResponse(t *testing.T, env []byte) (int, map[string][]string, string) {
	t.Helper()
	r := envReader{s: string(env)}
	st := r.u32()
	n := r.u32()
	got := map[string][]string{}
	for i := uint32(0); i < n; i++ {
		k := r.str()
		got[k] = append(got[k], r.str())
	}
	body := r.str()
	if r.err != nil || r.off != len(env) {
		t.Fatalf("response envelope: %v, %d of %d bytes read", r.err, r.off, len(env))
	}
	return int(st), got, body
}

func TestResponseHead(t *testing.T) {
	w := &responseWriter{}
	w.Header().Add("X-A", "1")
	w.Header().Add("X-A", "2")
	w.WriteHeader(201)
	io.WriteString(w, "<html><body>hi</body></html>")
	// After the status, the header is not sent any more (net/http's rule).
	w.Header().Set("X-Late", "1")
	w.finish("")
	st, got, body := decodeResponse(t, w.envelope())
	if st != 201 || body != "<html><body>hi</body></html>" {
		t.Fatalf("status %d body %q", st, body)
	}
	if strings.Join(got["X-A"], ",") != "1,2" || !strings.HasPrefix(got["Content-Type"][0], "text/html") || got["X-Late"] != nil {
		t.Errorf("headers = %v", got)
	}
	// A handler that writes nothing: 200, the header as it is at the end.
	w = &responseWriter{}
	w.Header().Set("X-End", "1")
	w.finish("")
	if st, got, body := decodeResponse(t, w.envelope()); st != 200 || got["X-End"] == nil || got["Content-Type"] != nil || body != "" {
		t.Errorf("empty response: %d %v %q", st, got, body)
	}
}

// A handler may set 1000 response headers (docs/abi.md); the envelope,
// which the runtime takes with up to 1024 entries, holds them and those
// the SDK adds: a sniffed Content-Type and :route. With them, a
// handler's 999th header made the runtime refuse the response.
func TestThousandHeadersFitTheEnvelope(t *testing.T) {
	w := &responseWriter{}
	for i := range 1000 {
		w.Header().Set(fmt.Sprintf("X-H%d", i), "v")
	}
	io.WriteString(w, "<html>")
	w.finish("GET /many")
	r := envReader{s: string(w.envelope())}
	r.u32()
	if n := r.u32(); n != 1002 || n > 1024 {
		t.Errorf("the envelope holds %d headers, want the handler's 1000, Content-Type and :route, at most 1024", n)
	}
}

// The route a request matched goes to the runtime as the :route
// pseudo-header: the pattern http.ServeMux sets on the very request the
// SDK handed it, and nothing when no pattern matched; never a :route the
// handler set in its header, which the runtime took as the route.
func TestResponseNamesRoute(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.PathValue("id")) })
	for _, tc := range []struct{ path, route, body string }{
		{"/items/7", "GET /items/{id}", "7"},
		{"/nothing", "", "404 page not found\n"},
	} {
		w := &responseWriter{}
		// A handler's own :route is no header (not an HTTP token) and
		// does not name the route: r.Pattern does.
		w.Header().Set(routeHeader, "/forged")
		req := httptest.NewRequest("GET", tc.path, nil)
		mux.ServeHTTP(w, req)
		w.finish(req.Pattern)
		_, got, body := decodeResponse(t, w.envelope())
		if body != tc.body || strings.Join(got[routeHeader], ",") != tc.route || tc.route == "" && got[routeHeader] != nil {
			t.Errorf("%s: body %q, %s %q, want %q", tc.path, body, routeHeader, got[routeHeader], tc.route)
		}
	}
}

// The SDK sniffs a Content-Type exactly when net/http's server does: not
// for a body the handler encoded itself, nor for one it framed.
func TestContentTypeSniffedAsNetHTTP(t *testing.T) {
	gzipped := []byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xffhello")
	for _, tc := range []struct {
		name   string
		header map[string][]string
	}{
		{"none", nil},
		{"type set", map[string][]string{"Content-Type": {"application/x-thing"}}},
		{"type suppressed", map[string][]string{"Content-Type": nil}},
		{"gzip", map[string][]string{"Content-Encoding": {"gzip"}}},
		{"empty encoding", map[string][]string{"Content-Encoding": {""}}},
		{"transfer-encoding", map[string][]string{"Transfer-Encoding": {"chunked"}}},
	} {
		handler := func(w http.ResponseWriter) {
			for k, v := range tc.header {
				w.Header()[k] = v
			}
			w.Write(gzipped)
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { handler(w) }))
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv.Close()
		w := &responseWriter{}
		handler(w)
		w.finish("")
		_, got, _ := decodeResponse(t, w.envelope())
		if want := resp.Header.Get("Content-Type"); strings.Join(got["Content-Type"], ",") != want {
			t.Errorf("%s: Content-Type %q, net/http sends %q", tc.name, got["Content-Type"], want)
		}
	}
}

// A writer kept past its handler (a goroutine the handler started) writes
// nowhere: the next request on the instance, which reuses the buffers,
// gets none of it.
func TestResponseWriterRetired(t *testing.T) {
	env := string(sampleEnvelope(time.Now().Add(time.Minute)))
	_, first, _ := decodeRequest(env)
	first.Header().Set("X-First", "1")
	first.Write([]byte("first"))
	first.finish("")
	head, body := first.head, first.body
	hdr := first.Header()
	first.retire()

	_, second, _ := decodeRequest(env)
	second.head, second.body = head[:0], body[:0]
	// The late writes, by the first request's handler's goroutine.
	if n, err := first.Write([]byte("LEAK")); n != 0 || err != errWriteAfterReturn {
		t.Errorf("late Write = %d, %v", n, err)
	}
	if _, err := io.WriteString(first, "LEAK"); err != errWriteAfterReturn {
		t.Errorf("late WriteString: %v", err)
	}
	first.Header().Set("X-Leak", "1")
	hdr.Set("X-Leak-Kept", "1") // the map it took while it ran
	first.WriteHeader(500)
	second.Write([]byte("second"))
	second.finish("")
	st, got, b := decodeResponse(t, append(second.head, second.body...))
	if st != 200 || b != "second" || got["X-Leak"] != nil || got["X-Leak-Kept"] != nil || got["X-First"] != nil {
		t.Errorf("second response: %d %v %q", st, got, b)
	}
}

// Informational statuses cannot go ahead of the answer: they are ignored
// and the final status is what the handler writes next (200 if none).
func TestResponseInformationalStatus(t *testing.T) {
	for _, tc := range []struct {
		codes []int
		want  int
	}{
		{[]int{103, 201}, 201},
		{[]int{100}, 200},
		{[]int{101, 204}, 204},
		{[]int{404, 200}, 404},
	} {
		w := &responseWriter{}
		for _, c := range tc.codes {
			w.WriteHeader(c)
		}
		w.Write([]byte("x"))
		if w.status != tc.want {
			t.Errorf("WriteHeader%v: status %d, want %d", tc.codes, w.status, tc.want)
		}
	}
	// A code HTTP cannot carry panics, as with net/http, also after a
	// status was written.
	for _, tc := range []struct{ before, code int }{{0, 0}, {0, 99}, {0, 1000}, {200, -1}} {
		w := &responseWriter{}
		if tc.before != 0 {
			w.WriteHeader(tc.before)
		}
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "invalid WriteHeader code") {
					t.Errorf("WriteHeader(%d): recovered %v, want net/http's panic", tc.code, r)
				}
			}()
			w.WriteHeader(tc.code)
		}()
	}
}

// A 204 or 304 has no body: Write fails with http.ErrBodyNotAllowed, as
// with net/http, and nothing is sent.
func TestNoBodyStatuses(t *testing.T) {
	for _, status := range []int{http.StatusNoContent, http.StatusNotModified} {
		w := &responseWriter{}
		w.WriteHeader(status)
		if n, err := w.Write([]byte("x")); n != 0 || err != http.ErrBodyNotAllowed {
			t.Errorf("%d: Write = %d, %v; want 0, ErrBodyNotAllowed", status, n, err)
		}
		if n, err := io.WriteString(w, "x"); n != 0 || err != http.ErrBodyNotAllowed {
			t.Errorf("%d: WriteString = %d, %v", status, n, err)
		}
		w.finish("")
		if st, h, b := decodeResponse(t, w.envelope()); st != status || b != "" || h["Content-Type"] != nil {
			t.Errorf("%d: response %d %v %q", status, st, h, b)
		}
	}
}

// A handler's own 304 loses the headers that describe a body, as
// net/http's server drops them; its other headers stay.
func TestNotModifiedDropsBodyHeaders(t *testing.T) {
	w := &responseWriter{}
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", "12")
	h.Set("ETag", `"v1"`)
	w.WriteHeader(http.StatusNotModified)
	w.finish("")
	st, got, _ := decodeResponse(t, w.envelope())
	if st != http.StatusNotModified || got["Content-Type"] != nil || got["Content-Length"] != nil || got["Etag"] == nil && got["ETag"] == nil {
		t.Errorf("304 answered %d %v", st, got)
	}
}

func TestServeRecoversPanic(t *testing.T) {
	defer Handle(nil)
	Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") }))
	req, w, _ := decodeRequest(string(sampleEnvelope(time.Now().Add(time.Minute))))
	if code := serve(w, req); code != handlePanicked {
		t.Errorf("code = %d, want handlePanicked", code)
	}
	Handle(nil)
	req, w, _ = decodeRequest(string(sampleEnvelope(time.Now().Add(time.Minute))))
	if code := serve(w, req); code != handleOK || w.status != http.StatusNotImplemented {
		t.Errorf("no handler: code %d status %d", code, w.status)
	}
	// In the runtime's error shape, with what to do.
	var body map[string]string
	if err := json.Unmarshal(w.body, &body); err != nil || body["code"] != "plugin_no_handler" || body["request_id"] != "rid-1" ||
		!strings.Contains(body["error"], "greenroom.Handle from an init function") {
		t.Errorf("no handler: body %s (%v)", w.body, err)
	}
}

// A handler's panic is logged with its stack, except http.ErrAbortHandler
// (net/http logs none for it); both fail the call.
func TestServeAbortHandlerLogsNoStack(t *testing.T) {
	defer Handle(nil)
	for _, tc := range []struct {
		v         any
		wantStack bool
	}{{"boom", true}, {http.ErrAbortHandler, false}} {
		Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic(tc.v) }))
		req, w, _ := decodeRequest(string(sampleEnvelope(time.Now().Add(time.Minute))))
		var code uint32
		out := stderrOf(t, func() { code = serve(w, req) })
		if code != handlePanicked {
			t.Errorf("%v: code = %d, want handlePanicked", tc.v, code)
		}
		if hasStack := strings.Contains(string(out), "goroutine "); hasStack != tc.wantStack || !strings.Contains(string(out), fmt.Sprint(tc.v)) {
			t.Errorf("%v: logged %q, want a stack: %v", tc.v, out, tc.wantStack)
		}
	}
}

// stderrOf returns what f wrote to os.Stderr.
func stderrOf(t *testing.T, f func()) string {
	t.Helper()
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = pw
	f()
	os.Stderr = stderr
	pw.Close()
	out, _ := io.ReadAll(r)
	r.Close()
	return string(out)
}

// The in-place context must be the one Request.Context returns, with the
// same behaviour as WithContext's.
func TestRequestContextInPlace(t *testing.T) {
	if !ctxField.ok {
		t.Fatal("http.Request has no ctx field of type context.Context any more: the SDK falls back to WithContext; update requestHold.request")
	}
	deadline := time.Now().Add(time.Hour)
	req, _, err := decodeRequest(string(sampleEnvelope(deadline)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := req.Context().(*requestContext); !ok {
		t.Fatalf("Context() = %T", req.Context())
	}
	if d, ok := req.Context().Deadline(); !ok || !d.Equal(deadline) {
		t.Errorf("deadline %v %v", d, ok)
	}
	// WithContext on it still works as usual.
	type k struct{}
	r2 := req.WithContext(context.WithValue(req.Context(), k{}, 1))
	if r2.Context().Value(k{}) != 1 || RequestID(r2.Context()) != "rid-1" {
		t.Error("derived request lost its context")
	}
}

// A large body grows by parts that are never copied again (appendBody):
// whatever the pieces it is written in, the envelope holds it whole and
// in order, and the writer holds at most a part more than the body.
func TestLargeBodyInParts(t *testing.T) {
	want := make([]byte, 3*bodyPart+12345)
	for i := range want {
		want[i] = byte(i*7 + i/251)
	}
	copy(want, "<html><body>")
	for _, tc := range []struct {
		name   string
		first  int // capacity of the reused first buffer
		pieces []int
	}{
		{"one write", 0, []int{len(want)}},
		{"io.Copy-sized pieces", 0, []int{32 << 10}},
		{"a small first buffer, then one large write", 16, []int{5, len(want)}},
		{"a large reused first buffer", 2 * bodyPart, []int{1000, bodyPart, 7}},
		{"pieces straddling parts", 100, []int{bodyPart - 1, 2, bodyPart + 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &responseWriter{body: make([]byte, 0, tc.first)}
			var pieces []any // []byte and string, made before counting
			for off, i := 0, 0; off < len(want); i++ {
				n := min(tc.pieces[min(i, len(tc.pieces)-1)], len(want)-off)
				if i%2 == 0 {
					pieces = append(pieces, want[off:off+n])
				} else {
					pieces = append(pieces, string(want[off:off+n]))
				}
				off += n
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for _, p := range pieces {
				switch p := p.(type) {
				case []byte:
					w.Write(p)
				case string:
					w.WriteString(p)
				}
			}
			runtime.ReadMemStats(&after)
			// Doubling (or Go's 1.25x growth) allocated several times the
			// body in all, each growth copying what was there.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(len(want)+2*bodyPart) {
				t.Errorf("writing a body of %d bytes allocated %d", len(want), alloc)
			}
			held := cap(w.body)
			for _, m := range w.more {
				held += cap(m)
			}
			if held > len(want)+bodyPart+tc.first {
				t.Errorf("the writer holds %d bytes for a body of %d", held, len(want))
			}
			w.finish("")
			st, h, body := decodeResponse(t, w.envelope())
			if st != 200 || body != string(want) {
				t.Fatalf("status %d, body of %d bytes, equal %t", st, len(body), body == string(want))
			}
			// The type is sniffed from the body's start, across parts.
			if got := h["Content-Type"]; len(got) != 1 || got[0] != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", got)
			}
		})
	}
}

// envelope is w's response envelope (finish first) in one piece.
func (w *responseWriter) envelope() []byte {
	b := append(append([]byte(nil), w.head...), w.body...)
	for _, m := range w.more {
		b = append(b, m...)
	}
	return b
}

// A header value with a CR or LF in it (a Content-Security-Policy written
// over several lines) is sent as net/http's server sends it: each becomes
// a space, and the value is trimmed. The runtime drops a value with a
// control character whole, so that the handler's policy was lost.
func TestHeaderValueNewlinesAsNetHTTP(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", `
			default-src 'self';
			script-src 'self' https://cdn.example
		`)
		w.Header().Add("X-Error", "line one\r\nline two")
		w.Header().Add("X-Error", "\tplain\t")
		w.Header().Set("X-Plain", "as it is")
		w.WriteHeader(http.StatusTeapot)
	}
	srv := httptest.NewServer(http.HandlerFunc(h))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	w := &responseWriter{}
	h(w, httptest.NewRequest("GET", "/", nil))
	w.finish("")
	_, got, _ := decodeResponse(t, w.envelope())
	for _, k := range []string{"Content-Security-Policy", "X-Error", "X-Plain"} {
		if g, want := strings.Join(got[k], "|"), strings.Join(resp.Header[k], "|"); g != want {
			t.Errorf("%s: %q, net/http sends %q", k, g, want)
		}
		for _, v := range got[k] {
			if strings.ContainsAny(v, "\r\n") {
				t.Errorf("%s: %q holds a line break, which the runtime drops", k, v)
			}
		}
	}
}

// r.URL's Path and RawPath are net/http's: RawPath is set only when the
// path's escaping is not Path's own (an escaped slash, lower-case hex), as
// url.URL.setPath does. It was set for any escape, and routers that match
// on a RawPath when there is one (chi, echo) then saw /items/a%20b and
// gave a handler the parameter "a%20b" where natively it gets "a b".
func TestRawPathAsNetHTTP(t *testing.T) {
	for _, target := range []string{
		"/items/a%20b", "/caf%C3%A9", "/caf%c3%a9", "/a%2Fb", "/a%2fb", "/x%3Fy", "/%7e", "/%7E", "/a%25b",
		"/plain", "/a%20b/c%2Fd", "/%2e%2e/x", "/a+b%2B",
		// Sent unescaped (curl sends them so, and the runtime passes
		// them on): net/http keeps them as RawPath too.
		"/caf\xc3\xa9", "/items/{id}", "/a|b", "/a^b", "/a\"b", "/a!b", "/a'b(c)*", "/a[b]",
	} {
		e := &envBuilder{}
		e.str("GET").str(target).str("").str("rid").str("10.0.0.1:1").u64(0)
		e.u8(principalNone).str("").str("")
		e.u32(0).str("")
		req, _, err := decodeRequest(string(e.b))
		if err != nil {
			t.Fatal(err)
		}
		want, err := url.ParseRequestURI(target)
		if err != nil {
			t.Fatal(err)
		}
		if req.URL.Path != want.Path || req.URL.RawPath != want.RawPath || req.URL.EscapedPath() != want.EscapedPath() || req.URL.String() != want.String() {
			t.Errorf("%s: Path %q RawPath %q, net/http's %q %q", target, req.URL.Path, req.URL.RawPath, want.Path, want.RawPath)
		}
	}
}

// unwrapper is a middleware's writer that hides the SDK's from a type
// assertion, as many do: http.ResponseController finds Flush through its
// Unwrap.
type unwrapper struct{ http.ResponseWriter }

func (u unwrapper) Unwrap() http.ResponseWriter { return u.ResponseWriter }

// A handler may flush (http.Flusher, http.ResponseController, gin's and
// echo's Flush): as with httptest.ResponseRecorder, a flush writes the
// status and takes the header if not yet done and sends nothing early;
// the whole response still goes when the handler returns. w.(http.Flusher)
// panicked, failing the request.
func TestFlushAsResponseRecorder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flush func(w http.ResponseWriter) error
	}{
		{"http.Flusher", func(w http.ResponseWriter) error { w.(http.Flusher).Flush(); return nil }},
		{"ResponseController", func(w http.ResponseWriter) error { return http.NewResponseController(w).Flush() }},
		{"ResponseController through Unwrap", func(w http.ResponseWriter) error {
			return http.NewResponseController(unwrapper{w}).Flush()
		}},
	} {
		env := string(sampleEnvelope(time.Now().Add(time.Minute)))
		req, w, _ := decodeRequest(env)
		h := func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			if err := tc.flush(w); err != nil {
				t.Errorf("%s: first Flush: %v", tc.name, err)
			}
			// The flush wrote the status: a later one is superfluous,
			// and a later header is not sent, as with net/http.
			w.Header().Set("X-Late", "1")
			io.WriteString(w, "data: 1\n\n")
			if err := tc.flush(w); err != nil {
				t.Errorf("%s: second Flush: %v", tc.name, err)
			}
			io.WriteString(w, "data: 2\n\n")
		}
		Handle(http.HandlerFunc(h))
		var code uint32
		if out := stderrOf(t, func() { code = serve(w, req) }); code != handleOK {
			t.Fatalf("%s: serve = %d: %s", tc.name, code, out)
		}
		w.finish("")
		st, got, body := decodeResponse(t, w.envelope())
		if st != 200 || body != "data: 1\n\ndata: 2\n\n" || got["X-Late"] != nil || strings.Join(got["Content-Type"], ",") != "text/event-stream" {
			t.Errorf("%s: %d %v %q", tc.name, st, got, body)
		}
		// A flush after the handler returned reaches nobody, as a write.
		w.retire()
		if err := tc.flush(w); tc.name != "http.Flusher" && err != errWriteAfterReturn {
			t.Errorf("%s: Flush after return: %v", tc.name, err)
		}
	}
	Handle(nil)
}

// What http.ResponseController offers besides Flush, a handler gets as
// from net/http's server: a long download or a server-sent-events loop
// lifts its write deadline (SetWriteDeadline(time.Time{})), sets a read
// deadline, or reads its body while writing (EnableFullDuplex), and
// stops with a 500 when one fails. They answered http.ErrNotSupported.
// Here the body is in memory before the handler runs and the response
// is buffered, so no read or write waits on the client: each is accepted,
// and the body stays readable after a write. After the handler returned
// they fail as a late Flush does.
func TestResponseControllerAsNetHTTP(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(unwrapper{w})
		for _, err := range []error{
			rc.SetWriteDeadline(time.Time{}),
			rc.SetReadDeadline(time.Now().Add(time.Minute)),
			rc.SetWriteDeadline(time.Now().Add(time.Minute)),
			rc.EnableFullDuplex(),
		} {
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		io.WriteString(w, "got: ")
		io.Copy(w, r.Body)
	}
	native := httptest.NewServer(http.HandlerFunc(h))
	defer native.Close()
	resp, err := http.Post(native.URL, "text/plain", strings.NewReader("hello body"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(want) != "got: hello body" {
		t.Fatalf("natively: %d %q", resp.StatusCode, want)
	}

	req, w, _ := decodeRequest(string(sampleEnvelope(time.Now().Add(time.Minute))))
	Handle(http.HandlerFunc(h))
	defer Handle(nil)
	if code := serve(w, req); code != handleOK {
		t.Fatalf("serve = %d", code)
	}
	w.finish("")
	if st, _, body := decodeResponse(t, w.envelope()); st != resp.StatusCode || body != string(want) {
		t.Errorf("guest: %d %q, natively %d %q", st, body, resp.StatusCode, want)
	}
	w.retire()
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Time{}); err != errWriteAfterReturn {
		t.Errorf("SetWriteDeadline after return: %v", err)
	}
	if err := rc.SetReadDeadline(time.Time{}); err != errWriteAfterReturn {
		t.Errorf("SetReadDeadline after return: %v", err)
	}
	if err := rc.EnableFullDuplex(); err != errWriteAfterReturn {
		t.Errorf("EnableFullDuplex after return: %v", err)
	}
}

// A streaming loop written for net/http's server asks the writer for
// CloseNotify (http.CloseNotifier, deprecated but implemented by
// net/http's response): gin's Context.Stream does, through a writer whose
// CloseNotify asserts the interface on the one it wraps, and so do
// server-sent-events handlers. The SDK's writer had none, and the
// assertion panicked: 500 plugin_panic, the instance discarded. Its
// channel tells what r.Context() tells, Request.Context being what
// replaces it: a value when the request's context ends (the handler
// returned, or the deadline), not when the client goes away, which a
// guest does not see.
func TestCloseNotifyAsNetHTTP(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) {
		gone := w.(http.CloseNotifier).CloseNotify()
		for i := 0; i < 3; i++ {
			select {
			case <-gone:
				return
			default:
				fmt.Fprintf(w, "data: %d\n\n", i)
				w.(http.Flusher).Flush()
			}
		}
	}
	native := httptest.NewServer(http.HandlerFunc(h))
	defer native.Close()
	resp, err := http.Get(native.URL)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	req, w, _ := decodeRequest(string(sampleEnvelope(time.Now().Add(time.Minute))))
	defer Handle(nil)
	var gone <-chan bool
	Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gone = w.(http.CloseNotifier).CloseNotify()
		if again := w.(http.CloseNotifier).CloseNotify(); again != gone {
			t.Error("a second CloseNotify gave another channel")
		}
		h(w, r)
	}))
	if code := serve(w, req); code != handleOK {
		t.Fatalf("serve = %d", code)
	}
	w.finish("")
	if st, _, body := decodeResponse(t, w.envelope()); st != resp.StatusCode || body != string(want) {
		t.Errorf("guest: %d %q, natively %d %q", st, body, resp.StatusCode, want)
	}
	select {
	case <-gone:
		t.Fatal("CloseNotify's channel received before the request ended")
	default:
	}
	requestContextFrom(req.Context()).finish()
	select {
	case v := <-gone:
		if !v {
			t.Error("CloseNotify's channel received false")
		}
	case <-time.After(5 * time.Second):
		t.Error("CloseNotify's channel received nothing when the request ended")
	}

	// At the deadline, as r.Context().
	req, w, _ = decodeRequest(string(sampleEnvelope(time.Now().Add(50 * time.Millisecond))))
	Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-w.(http.CloseNotifier).CloseNotify():
			io.WriteString(w, "gone")
		case <-time.After(5 * time.Second):
			io.WriteString(w, "still here")
		}
	}))
	serve(w, req)
	w.finish("")
	if _, _, body := decodeResponse(t, w.envelope()); body != "gone" {
		t.Errorf("at the deadline: %q", body)
	}
}

// net/http's server decides a response's sniffed Content-Type when its
// head goes out: a flush before anything was written sends it with none
// (and nothing later is sniffed), and a flush after a first write sniffs
// that write only. The SDK sniffed the whole body when the handler
// returned, so a handler that flushed first (an event stream that sets
// no type, a ResponseController.Flush to send the status early) got a
// Content-Type net/http never sends.
func TestFlushFixesTheSniffedType(t *testing.T) {
	for _, h := range []http.HandlerFunc{
		func(w http.ResponseWriter, r *http.Request) {
			w.(http.Flusher).Flush()
			io.WriteString(w, "<html><body>late</body></html>")
		},
		func(w http.ResponseWriter, r *http.Request) {
			http.NewResponseController(w).Flush()
			io.WriteString(w, "ok")
		},
		func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "plain ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "<html><body>late</body></html>")
		},
		func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "text ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "\x00\x01\x02binary")
		},
		func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, "<html>not flushed</html>")
		},
	} {
		native := httptest.NewServer(h)
		resp, err := http.Get(native.URL)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		native.Close()

		req, w, _ := decodeRequest(string(sampleEnvelope(time.Now().Add(time.Minute))))
		Handle(h)
		if code := serve(w, req); code != handleOK {
			t.Fatalf("serve = %d", code)
		}
		w.finish("")
		st, got, body := decodeResponse(t, w.envelope())
		if st != resp.StatusCode || body != string(want) || strings.Join(got["Content-Type"], ",") != strings.Join(resp.Header["Content-Type"], ",") {
			t.Errorf("%q: guest %d %q %q, natively %d %q %q", want, st, got["Content-Type"], body, resp.StatusCode, resp.Header["Content-Type"], want)
		}
	}
	Handle(nil)
}
