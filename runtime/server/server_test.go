package server_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
	"github.com/greenroom-dev/greenroom/runtime/internal/testflags"
)

var (
	helloWasm   string
	hostileWasm string
	abiv2Wasm   string
	noabiWasm   string
	badsigWasm  string
	logurlWasm  string
	docsWasm    string
	todoWasm    string
	cacheDir    string
)

// Parallel tests: the tests that spend seconds waiting (timeouts,
// queues, reloads, pieces of a request written 100 ms apart) call
// t.Parallel, so that go test runs them after the serial ones, -parallel
// of them at a time (4 unless given: testflags.Parallel). A
// test may do so only when it changes no process-wide state the others
// read (t.Setenv, a package variable) and measures nothing the process
// shares (runtime.MemStats, testing.AllocsPerRun), and when its timings
// keep their margin beside other tests: tests whose guest computes or
// loops for seconds (TestOutputWriteInterrupted, TestRandomGetInterrupted)
// stay serial.
func TestMain(m *testing.M) {
	var err error
	for dst, dir := range map[*string]string{
		&helloWasm:   "plugins/hello",
		&hostileWasm: "runtime/plugin/testdata/guests/hostile",
		&abiv2Wasm:   "runtime/plugin/testdata/guests/abiv2",
		&noabiWasm:   "runtime/plugin/testdata/guests/noabi",
		&badsigWasm:  "runtime/plugin/testdata/guests/badsig",
		&logurlWasm:  "runtime/plugin/testdata/guests/logurl",
		&docsWasm:    "plugins/docs",
		&todoWasm:    "plugins/todo",
	} {
		if *dst, err = guesttest.BuildErr(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	// One compilation cache for the whole test binary keeps it fast.
	cacheDir = filepath.Join(guesttest.CacheDir(), "server-test-cache")
	testflags.Parallel(4)
	os.Exit(m.Run())
}

func start(t *testing.T, cfg string) *servertest.Instance {
	t.Helper()
	return servertest.Start(t, cfg, servertest.Options{CacheDir: cacheDir})
}

func errorBody(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("error body is not JSON: %q", body)
	}
	return m
}

func hostileConfig(timeout string, instances int) string {
	return fmt.Sprintf(`
[plugins.hostile]
path = %q
[plugins.hostile.limits]
memory = "32MiB"
timeout = %q
instances = %d
queue_timeout = "200ms"
max_response = "1MiB"
[plugins.hello]
path = %q
`, hostileWasm, timeout, instances, helloWasm)
}

func TestHello(t *testing.T) {
	in := start(t, fmt.Sprintf("[plugins.hello]\npath = %q\n[plugins.hello.config]\ngreeting = \"hi there\"\n", helloWasm))
	status, h, body := in.Get(t, "/api/hello/ping")
	if status != 200 || body != `{"ok":true}` || h.Get("Content-Type") != "application/json" {
		t.Fatalf("ping: %d %q %v", status, body, h)
	}
	if h.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id")
	}

	status, _, body = in.Get(t, "/api/hello/echo?a=1&b=x%20y&a=2", "X-Custom", "v1", "Authorization", "Bearer "+in.Token, "Cookie", "session=abc")
	if status != 200 {
		t.Fatalf("echo: %d %s", status, body)
	}
	var echo struct {
		Method   string
		Path     string
		Query    map[string][]string
		Headers  map[string][]string
		Greeting string
	}
	if err := json.Unmarshal([]byte(body), &echo); err != nil {
		t.Fatal(err)
	}
	if echo.Path != "/echo" || echo.Method != "GET" || echo.Greeting != "hi there" {
		t.Errorf("echo = %+v", echo)
	}
	if got := echo.Query["a"]; len(got) != 2 || got[0] != "1" || got[1] != "2" || echo.Query["b"][0] != "x y" {
		t.Errorf("query = %v", echo.Query)
	}
	if echo.Headers["X-Custom"][0] != "v1" {
		t.Errorf("headers = %v", echo.Headers)
	}
	for _, h := range []string{"Authorization", "Cookie"} {
		if _, ok := echo.Headers[h]; ok {
			t.Errorf("guest received %s", h)
		}
	}

	payload := strings.Repeat("0123456789abcdef", 1024)
	status, h, body = in.Do(t, "POST", "/api/hello/echo", strings.NewReader(payload), "Content-Type", "text/plain")
	if status != 200 || body != payload || h.Get("Content-Type") != "text/plain" {
		t.Errorf("post echo: %d, %d bytes, %v", status, len(body), h.Get("Content-Type"))
	}

	// A multipart form reaches the plugin byte for byte, as net/http
	// passes it: fasthttp's default parsed it and sent the plugin its own
	// re-encoding (parts reordered).
	form := "--XYZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\nContent-Type: text/weird\r\nX-Extra: 1\r\n\r\nhello world\r\n" +
		"--XYZ\r\nContent-Disposition: form-data; name=\"v\"\r\n\r\nvalue\r\n--XYZ--\r\n"
	status, _, body = in.Do(t, "POST", "/api/hello/echo", strings.NewReader(form), "Content-Type", "multipart/form-data; boundary=XYZ")
	if status != 200 || body != form {
		t.Errorf("post echo of a multipart form: %d %q", status, body)
	}

	// X-Request-Id is honoured when valid and replaced when not.
	_, h, _ = in.Get(t, "/api/hello/ping", "X-Request-Id", "abc-123")
	if h.Get("X-Request-Id") != "abc-123" {
		t.Errorf("valid request id not honoured: %q", h.Get("X-Request-Id"))
	}
	// Underscore included (the docs left it out), 128 characters at most.
	for id, honoured := range map[string]bool{"req_1.a:b-2": true, strings.Repeat("r", 128): true, strings.Repeat("r", 129): false, "caf\u00e9": false} {
		_, h, _ = in.Get(t, "/api/hello/ping", "X-Request-Id", id)
		if got := h.Get("X-Request-Id"); (got == id) != honoured || got == "" {
			t.Errorf("request id %q answered with %q, honoured: %v", id, got, honoured)
		}
	}
	_, h, _ = in.Get(t, "/api/hello/ping", "X-Request-Id", "bad id\twith spaces")
	if got := h.Get("X-Request-Id"); got == "" || strings.Contains(got, " ") {
		t.Errorf("invalid request id echoed: %q", got)
	}
	// The plugin sees the request's id in X-Request-Id, one header, the
	// one the response carries: never the client's when invalid (an
	// audit: it passed through unchanged while the response and the log
	// had another), and also when the client sent none.
	for _, sent := range [][]string{{"X-Request-Id", "abc-123"}, {"X-Request-Id", "bad id with spaces", "X-Request-Id", "abc-124"}, {"X_Request_Id", "x"}, nil} {
		_, h, body := in.Get(t, "/api/hello/echo", sent...)
		var echo struct{ Headers map[string][]string }
		if err := json.Unmarshal([]byte(body), &echo); err != nil {
			t.Fatal(err)
		}
		if got := echo.Headers["X-Request-Id"]; len(got) != 1 || got[0] != h.Get("X-Request-Id") || (len(sent) == 2 && sent[0] == "X-Request-Id" && got[0] != sent[1]) {
			t.Errorf("sent %q: the plugin saw X-Request-Id %q, the response has %q", sent, got, h.Get("X-Request-Id"))
		}
	}
}

// Requests whose framing two servers could read differently are refused
// (the shape of request smuggling), and the answer names the problem
// without repeating the request's bytes, its credential among them.
func TestAmbiguousFramingRefused(t *testing.T) {
	in := start(t, fmt.Sprintf("[plugins.hello]\npath = %q\n", helloWasm))
	for _, raw := range []string{
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nhello",
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: -5\r\n\r\nhello",
		// Request-line errors quote the whole head in fasthttp's message.
		"GET /api/hello/p\x00ing HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n",
		"GARBAGE\r\nAuthorization: Bearer %s\r\n\r\n",
		// Both framings: a proxy in front may have read the other one;
		// also with an empty chunked body and with another coding.
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 5\r\nTransfer-Encoding: identity\r\n\r\nhello",
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\ncontent-length : 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET /a b c HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n",
		// Malformed chunked trailers: the message fasthttp gives quotes them.
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nAuthorization Bearer x\r\n\r\n",
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nHost: Authorization-Bearer\r\n\r\n",
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: Authorization\x01Bearer\r\n\r\n",
		"GET \"/x\\\" HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n",
		// A header line ended by a bare LF: fasthttp takes it for a line
		// end, a proxy in front that does not sees one header (here X,
		// and no body) where greenroom sees a chunked body.
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nX: a\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET /api/hello/echo HTTP/1.1\r\nHost: x\nAuthorization: Bearer %s\r\n\r\n",
		// A folded header line (obs-fold): fasthttp joins it to the
		// line before, a proxy in front that does not may read it as a
		// header of its own (here a chunked body greenroom never sees).
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nX: a\r\n\tb\r\n\r\n",
		// A header name that is not a token (a space in it): net/http
		// refuses it; fasthttp passed "X A" on to the plugin.
		"GET /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nX A: b\r\n\r\n",
		"GET /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nX\"A: b\r\n\r\n",
		// Also with a method greenroom does not implement: its 501 kept
		// the connection open, whose next request began where the HTTP
		// library's framing (chunked) said, not the proxy's.
		"BREW /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
		"BREW /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nX: a\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		// A path net/http would not decode either: its handler never runs.
		"GET /api/hello/ping%%zz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n",
		"GET /api/hello/a%%20b/%% HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n",
		// A Transfer-Encoding other than chunked, without a
		// Content-Length: fasthttp read identity as no body (the plugin
		// got none) and the body as the connection's next request,
		// where a proxy in front may have passed it on as a body.
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: identity\r\n\r\nhello",
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: Identity\r\n\r\nGET /api/hello/ping HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		conn := dial(t, in.URL)
		fmt.Fprintf(conn, raw, in.Token)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%q: %v", raw[:40], err)
		}
		b, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != 400 || errorBody(t, string(b))["code"] != "bad_request" || strings.Contains(string(b), in.Token) || strings.Contains(string(b), "Authorization") {
			t.Errorf("%q: %d %s, want 400 bad_request without the request's bytes", raw[:min(len(raw), 60)], resp.StatusCode, b)
		}
	}
}

// A method Fiber does not route gets greenroom's JSON error (501) with a
// request id, and is counted; it used to be Fiber's plain-text 400.
func TestUnknownMethod(t *testing.T) {
	in := start(t, fmt.Sprintf("[log]\naccess_log = true\n[plugins.hello]\npath = %q\n", helloWasm))
	for _, path := range []string{"/api/hello/ping", "/.greenroom/plugins/v1/", "/"} {
		conn := dial(t, in.URL)
		fmt.Fprintf(conn, "BREW %s HTTP/1.1\r\nHost: x\r\nX-Request-Id: brew-1\r\n\r\n", path)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("BREW %s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		conn.Close()
		e := errorBody(t, string(b))
		if resp.StatusCode != 501 || e["code"] != "not_implemented" || e["request_id"] != "brew-1" ||
			resp.Header.Get("X-Request-Id") != "brew-1" || !strings.Contains(fmt.Sprint(e["error"]), `"BREW"`) {
			t.Errorf("BREW %s: %d %v %s, want 501 not_implemented naming the method", path, resp.StatusCode, resp.Header, b)
		}
	}
	logged := 0
	for _, l := range in.LogLines(t) {
		if l["msg"] == "request" && l["method"] == "BREW" && l["request_id"] == "brew-1" && l["status"] == float64(501) {
			logged++
		}
	}
	if logged != 3 {
		t.Errorf("%d access log lines for the three BREW requests:\n%s", logged, in.Log.String())
	}
}

// An HTTP version greenroom does not speak gets 505 (HTTP/9.9 was served
// as 1.1); 1.0 and 1.1 are served.
func TestHTTPVersion(t *testing.T) {
	in := start(t, fmt.Sprintf("[plugins.hello]\npath = %q\n", helloWasm))
	for proto, want := range map[string]int{"HTTP/9.9": 505, "HTTP/2.0": 505, "HTTP/1.1": 200, "HTTP/1.0": 200} {
		conn := dial(t, in.URL)
		fmt.Fprintf(conn, "GET /api/hello/ping %s\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", proto, in.Token)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		b, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != want || want == 505 && errorBody(t, string(b))["code"] != "http_version_not_supported" {
			t.Errorf("%s: %d %s, want %d", proto, resp.StatusCode, b, want)
		}
	}
}

func TestNotFoundAndBodyLimit(t *testing.T) {
	in := start(t, fmt.Sprintf("[server]\nbody_limit = \"64KiB\"\n[log]\naccess_log = true\n[plugins.hello]\npath = %q\n", helloWasm))
	for _, path := range []string{"/api/nope/ping", "/api/", "/api/Hello/ping", "/nothing"} {
		status, h, body := in.Get(t, path)
		if status != 404 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %q", path, status, body)
		}
		errorBody(t, body)
	}
	// Over the limit: the server answers from the head alone and closes.
	// Only the head is sent: a client still writing the body could find
	// the connection reset before it reads the answer (a broken pipe).
	conn := dial(t, in.URL)
	fmt.Fprintf(conn, "POST /api/hello/echo HTTP/1.1\r\nHost: greenroom\r\nAuthorization: Bearer %s\r\nX-Request-Id: big-1\r\nContent-Length: %d\r\n\r\n", in.Token, 65*1024)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("over body_limit: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	// fasthttp refuses it before greenroom's handlers; it still gets its
	// request id and its access log line.
	if e := errorBody(t, string(b)); resp.StatusCode != 413 || e["code"] != "body_too_large" || e["request_id"] != "big-1" || resp.Header.Get("X-Request-Id") != "big-1" {
		t.Errorf("over body_limit: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	logged := false
	for _, l := range in.LogLines(t) {
		// Its duration is the connection's few milliseconds (it once
		// came out as 292 years, from an unset start).
		d, _ := l["duration_ms"].(float64)
		// Logged (and counted) under its plugin, as a request refused
		// after its head is; the answer itself names none.
		logged = logged || l["msg"] == "request" && l["request_id"] == "big-1" && l["status"] == float64(413) && l["path"] == "/api/hello/echo" && l["plugin"] == "hello" && d < 10000
	}
	if e := errorBody(t, string(b)); e["plugin"] != nil {
		t.Errorf("the 413 answered before authentication names its plugin: %s", b)
	}
	if !logged {
		t.Errorf("no access log line for the 413:\n%s", in.Log.String())
	}
	status, _, _ := in.Do(t, "POST", "/api/hello/echo", strings.NewReader(strings.Repeat("x", 63*1024)))
	if status != 200 {
		t.Errorf("under body_limit: %d", status)
	}
	// A client that asks first (Expect: 100-continue) is not invited to
	// send a body over the limit: its first answer is the 413.
	conn2 := dial(t, in.URL)
	fmt.Fprintf(conn2, "POST /api/hello/echo HTTP/1.1\r\nHost: greenroom\r\nAuthorization: Bearer %s\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", in.Token, 65*1024)
	if line, err := bufio.NewReader(conn2).ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 413") {
		t.Errorf("over body_limit with Expect: 100-continue: first line %q, %v", line, err)
	}
	// A chunked body declares no length: it is refused once it passes
	// the limit, and one under it is served whole.
	chunked := func(n int) (int, string) {
		r, w := io.Pipe()
		go func() {
			for sent := 0; sent < n; sent += 1000 {
				w.Write([]byte(strings.Repeat("y", min(1000, n-sent))))
			}
			w.Close()
		}()
		status, _, body := in.Do(t, "POST", "/api/hello/echo", r) // no length: chunked
		return status, body
	}
	if status, body := chunked(100 * 1024); status != 413 || errorBody(t, body)["code"] != "body_too_large" {
		t.Errorf("chunked body over body_limit: %d %.200s", status, body)
	}
	if status, body := chunked(60 * 1024); status != 200 || len(body) != 60*1024 {
		t.Errorf("chunked body under body_limit: %d, %d bytes", status, len(body))
	}
	// Exactly the limit, chunked: it fits (the buffer never passes it).
	if status, body := chunked(64 * 1024); status != 200 || len(body) != 64*1024 {
		t.Errorf("chunked body of exactly body_limit: %d, %d bytes", status, len(body))
	}

	// A body cut short (the client stops after 20000 of 30000 declared
	// bytes) is a bad request: the plugin never sees it as whole.
	cut := dial(t, in.URL)
	fmt.Fprintf(cut, "POST /api/hello/echo HTTP/1.1\r\nHost: greenroom\r\nAuthorization: Bearer %s\r\nX-Request-Id: cut-1\r\nContent-Length: 30000\r\n\r\n%s", in.Token, strings.Repeat("c", 20000))
	cut.(*net.TCPConn).CloseWrite()
	resp, err = http.ReadResponse(bufio.NewReader(cut), nil)
	if err != nil {
		t.Fatalf("a body cut short: %v", err)
	}
	b, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || errorBody(t, string(b))["code"] != "bad_request" || !strings.Contains(string(b), "ended after 20000 of the 30000 bytes") {
		t.Errorf("a body cut short: %d %s", resp.StatusCode, b)
	}
}

// A request body is read by the route that needs it, after the caller is
// authenticated: a client without a credential gets its 401 as soon as
// its head arrives, and the server holds none of its body. fasthttp read
// whole bodies before any handler: 300 such connections each sending
// most of a 4 MiB body held 1.3 GB.
func TestBodyNotReadBeforeAuthentication(t *testing.T) {
	in := start(t, fmt.Sprintf("[plugins.hello]\npath = %q\n", helloWasm))
	conn := dial(t, in.URL)
	// 1 MiB declared (under the 4MiB limit), 16 KiB sent.
	fmt.Fprintf(conn, "POST /api/hello/echo HTTP/1.1\r\nHost: greenroom\r\nContent-Length: %d\r\n\r\n%s", 1<<20, strings.Repeat("z", 16<<10))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to an unauthenticated request whose body is still coming: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("unauthenticated request with a body still coming: %d", resp.StatusCode)
	}

	// A client still uploading the body it was refused gets the answer,
	// not a reset: the server closes lingering (20 of 30 uploads of 2 MB
	// without a credential were reset before).
	up := dial(t, in.URL)
	fmt.Fprintf(up, "POST /api/hello/echo HTTP/1.1\r\nHost: greenroom\r\nContent-Length: %d\r\n\r\n%s", 2<<20, strings.Repeat("u", 1<<20))
	time.Sleep(200 * time.Millisecond) // answered, 256 KiB dropped, and closed by now
	_, werr := up.Write([]byte(strings.Repeat("v", 1<<20)))
	up.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(up), nil)
	if werr != nil || err != nil || resp.StatusCode != 401 {
		t.Errorf("a client still uploading a refused body: write %v, read %v %v", werr, err, resp)
	}

	// Nor does /metrics read one (an adaptor to net/http would read it
	// whole, unbounded): its answer comes with the body still coming.
	m := dial(t, in.URL)
	fmt.Fprintf(m, "GET /metrics HTTP/1.1\r\nHost: greenroom\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n4000\r\n%s\r\n", in.Token, strings.Repeat("m", 0x4000))
	resp, err = http.ReadResponse(bufio.NewReader(m), nil)
	if err != nil {
		t.Fatalf("no answer from /metrics with a body still coming: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/metrics with a body still coming: %d", resp.StatusCode)
	}
}

// server.header_limit bounds a request's line and headers: a JWT with a
// few kilobytes of group claims fits the 16 KiB default; past the limit
// the answer is 431, and the server goes on serving.
func TestHeaderLimit(t *testing.T) {
	for _, tc := range []struct {
		limit      string // "" is the default
		size, want int
	}{
		{"", 12 << 10, 200},
		{"", 17 << 10, 431},
		{"4KiB", 5 << 10, 431},
		{"64KiB", 60 << 10, 200},
	} {
		cfg := fmt.Sprintf("[plugins.hello]\npath = %q\n", helloWasm)
		if tc.limit != "" {
			cfg = fmt.Sprintf("[server]\nheader_limit = %q\n", tc.limit) + cfg
		}
		in := start(t, cfg)
		status, _, body := in.Get(t, "/api/hello/ping", "X-Big", strings.Repeat("g", tc.size))
		if status != tc.want {
			t.Errorf("limit %q, %d-byte header: %d %s, want %d", tc.limit, tc.size, status, body, tc.want)
		}
		if tc.want == 431 {
			if e := errorBody(t, body); e["code"] != "headers_too_large" || e["request_id"] == nil {
				t.Errorf("limit %q: %s, want headers_too_large with a request id", tc.limit, body)
			}
		}
		if status, _, _ := in.Get(t, "/api/hello/ping"); status != 200 {
			t.Errorf("limit %q: a normal request afterwards: %d", tc.limit, status)
		}
	}
}

func TestHostileGuests(t *testing.T) {
	const timeout = time.Second
	in := start(t, hostileConfig("1s", 2))
	cases := []struct {
		path   string
		status int
		code   string
	}{
		{"/loop", 504, "plugin_timeout"},
		{"/sleep", 504, "plugin_timeout"},
		{"/recurse", 504, "plugin_timeout"},
		{"/alloc", 500, "plugin_memory_limit"},
		{"/panic", 500, "plugin_panic"},
		{"/exit", 500, "plugin_exit"},
		{"/exit?code=-1", 500, "plugin_exit"},         // wazero's code for a cancelled context
		{"/exit?code=4026531839", 500, "plugin_exit"}, // and for a deadline
		{"/badptr", 500, "plugin_trap"},
		{"/badkey", 500, "plugin_trap"},
		{"/big?n=2000000", 502, "plugin_bad_response"},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			start := time.Now()
			status, _, body := in.Get(t, "/api/hostile"+tc.path)
			took := time.Since(start)
			if status != tc.status || errorBody(t, body)["code"] != tc.code {
				t.Fatalf("got %d %s, want %d %s", status, body, tc.status, tc.code)
			}
			// The message names the limit that applied.
			if key := map[string]string{"plugin_timeout": "plugins.hostile.limits.timeout", "plugin_memory_limit": "plugins.hostile.limits.memory"}[tc.code]; key != "" && !strings.Contains(body, key) {
				t.Errorf("%s does not name %s", body, key)
			}
			if tc.status == 504 && took > 2*timeout {
				t.Errorf("answered after %v, want within 2x the %v timeout", took, timeout)
			}
			// The server, the plugin and its other routes keep working.
			if status, _, body := in.Get(t, "/api/hostile/ok"); status != 200 {
				t.Fatalf("next request: %d %s", status, body)
			}
			if status, _, _ := in.Get(t, "/api/hello/ping"); status != 200 {
				t.Fatalf("other plugin: %d", status)
			}
		})
	}
	st := in.RT.Slot("hostile").Plugin().Stats()
	if st.Discarded < int64(len(cases))-1 {
		t.Errorf("discarded %d instances, want at least %d", st.Discarded, len(cases)-1)
	}
}

// limits.gc_percent and the memory limit derived from limits.retire_memory
// reach the guest's collector: 24 MiB less the module's static data and
// 2 MiB of headroom.
func TestGCSettingsFromConfig(t *testing.T) {
	cfg := strings.Replace(hostileConfig("2s", 1), `memory = "32MiB"`, `memory = "32MiB"
retire_memory = "24MiB"
gc_percent = 300`, 1)
	in := start(t, cfg)
	status, _, body := in.Get(t, "/api/hostile/gc")
	var got struct {
		MemoryLimit int64 `json:"memory_limit"`
		GCPercent   int   `json:"gc_percent"`
	}
	if status != 200 || json.Unmarshal([]byte(body), &got) != nil {
		t.Fatalf("/gc: %d %s", status, body)
	}
	if got.GCPercent != 300 || got.MemoryLimit < 12<<20 || got.MemoryLimit > 22<<20 {
		t.Errorf("guest collector: %s; want gc_percent 300 and a memory limit between 12 and 22 MiB", body)
	}
}

func TestSandbox(t *testing.T) {
	in := start(t, hostileConfig("2s", 1))
	status, _, body := in.Get(t, "/api/hostile/env")
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	var got struct {
		Env     []string `json:"env"`
		FSError string   `json:"fs_error"`
	}
	json.Unmarshal([]byte(body), &got)
	// The host gives no environment; the Go SDK sets TMPDIR itself, to
	// the reason there are no temporary files (docs/sandbox.md).
	var fromHost []string
	for _, kv := range got.Env {
		if !strings.HasPrefix(kv, "TMPDIR=/(greenroom: a plugin has no filesystem") {
			fromHost = append(fromHost, kv)
		}
	}
	if len(fromHost) != 0 || len(got.Env) > 1 || got.FSError == "<nil>" || got.FSError == "" {
		t.Errorf("guest sees env=%q fs=%q; want no environment (but the SDK's TMPDIR) and no filesystem", got.Env, got.FSError)
	}
	in.Get(t, "/api/hostile/stdout", "X-Request-Id", "req-stdout-1")
	log := in.Log.String()
	for _, want := range []string{`"msg":"hello from stdout"`, `"msg":"hello from stderr"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "hello from stdout") && !(strings.Contains(line, `"plugin":"hostile"`) && strings.Contains(line, `"request_id":"req-stdout-1"`) && strings.Contains(line, `"stream":"stdout"`)) {
			t.Errorf("guest output not tagged: %s", line)
		}
	}
}

func TestConcurrentRequests(t *testing.T) {
	in := start(t, fmt.Sprintf("[plugins.hello]\npath = %q\nlimits = { instances = 8, queue_timeout = \"5s\" }\n", helloWasm))
	var wg sync.WaitGroup
	var mu sync.Mutex
	fails := map[string]int{}
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := fmt.Sprintf("request-%d", i)
			resp, err := in.Client.Post(in.URL+"/api/hello/echo", "text/plain", strings.NewReader(body))
			if err != nil {
				mu.Lock()
				fails[err.Error()]++
				mu.Unlock()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != body {
				mu.Lock()
				fails[fmt.Sprintf("%d %s", resp.StatusCode, b)]++
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	if len(fails) > 0 {
		t.Errorf("failed requests: %v", fails)
	}
	if st := in.RT.Slot("hello").Plugin().Stats(); st.Created > 8 || st.Live > 8 {
		t.Errorf("pool exceeded its bound: %+v", st)
	}
}

func TestBusyGets503(t *testing.T) {
	t.Parallel()
	in := start(t, hostileConfig("3s", 1))
	done := make(chan struct{})
	go func() {
		defer close(done)
		in.Client.Get(in.URL + "/api/hostile/sleep")
	}()
	time.Sleep(300 * time.Millisecond)
	status, h, body := in.Get(t, "/api/hostile/ok")
	if status != 503 || h.Get("Retry-After") == "" || errorBody(t, body)["code"] != "plugin_busy" {
		t.Errorf("got %d %q Retry-After=%q", status, body, h.Get("Retry-After"))
	}
	<-done
}

// A goroutine a handler left behind writes nowhere: not into the next
// request on the same instance (the SDK reused one writer for all).
func TestLateWriteReachesNoOtherRequest(t *testing.T) {
	in := start(t, hostileConfig("3s", 1))
	if status, _, body := in.Get(t, "/api/hostile/latewrite"); status != 200 || string(body) != "first" {
		t.Fatalf("first: %d %q", status, body)
	}
	status, h, body := in.Get(t, "/api/hostile/nap")
	if status != 200 || string(body) != "second" || h.Get("X-Leaked") != "" || h.Get("X-Leaked-Too") != "" {
		t.Errorf("second request: %d %q, headers %v", status, body, h)
	}
}

// A request that has to wait for a new instance to start waits no longer
// than limits.timeout: 504 then, and the instance, once started, serves
// the next request.
func TestSlowInstanceStartBoundedByTimeout(t *testing.T) {
	t.Parallel()
	in := start(t, hostileConfig("1s", 1)+"[plugins.hostile.config]\ninit_sleep_ms = \"2500\"\n")
	if status, _, _ := in.Get(t, "/api/hostile/exit"); status != 500 {
		t.Fatalf("exit: %d", status) // the only instance is gone
	}
	begin := time.Now()
	status, _, body := in.Get(t, "/api/hostile/ok")
	if took := time.Since(begin); status != 504 || took > 2*time.Second || !strings.Contains(body, "had no instance ready within its timeout") {
		t.Errorf("waiting for a slow instance: %d %s after %v, want 504 within 2x the 1s timeout", status, body, took)
	}
	// The instance finishes starting and waits idle; the next request
	// gets it (it could not start one of its own within its timeout).
	deadline := time.Now().Add(20 * time.Second)
	for in.RT.Slot("hostile").Plugin().Stats().Idle < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the abandoned instance never became idle: %+v", in.RT.Slot("hostile").Plugin().Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status, _, body := in.Get(t, "/api/hostile/ok"); status != 200 {
		t.Errorf("next request: %d %s, want the instance started meanwhile", status, body)
	}
}

// A reload that swaps in a new version while a request waits for an
// instance of the old one to start sends that request to the new version
// (closing the old one interrupts the start; it answered 500).
func TestReloadDuringInstanceStart(t *testing.T) {
	t.Parallel()
	cfg := func(v string) string {
		return fmt.Sprintf(`
[plugins.hostile]
path = %q
limits = { instances = 2, timeout = "10s", queue_timeout = "10s" }
[plugins.hostile.config]
init_sleep_ms = "1500"
version = %q
`, hostileWasm, v)
	}
	in := start(t, cfg("1"))
	busy := make(chan int)
	go func() { // holds the one started instance of version 1
		status, _, _ := in.Get(t, "/api/hostile/nap?ms=3000")
		busy <- status
	}()
	time.Sleep(300 * time.Millisecond)
	in.SetConfig(cfg("2"))
	reloaded := make(chan struct{})
	go func() { in.Reload(t); close(reloaded) }() // version 2 starts: 1.5 s
	time.Sleep(300 * time.Millisecond)
	// No idle instance of version 1: this one starts one, which the swap
	// to version 2 interrupts.
	if status, _, body := in.Get(t, "/api/hostile/nap?ms=10"); status != 200 {
		t.Errorf("request waiting for a start during the reload: %d %s, want 200 from the new version", status, body)
	}
	<-reloaded
	if status := <-busy; status != 200 {
		t.Errorf("request in flight during the reload: %d", status)
	}
}

// A call that waited for an instance to start still has its whole timeout
// to run: a start of 0.5 s and a handler of 1.6 s, each within the 2 s
// timeout, answer 200 (sharing the timeout, every such call timed out and
// discarded the instance it had waited for).
func TestStartAndCallEachHaveTheTimeout(t *testing.T) {
	t.Parallel()
	in := start(t, hostileConfig("2s", 1)+"[plugins.hostile.config]\ninit_sleep_ms = \"500\"\n")
	for i := 0; i < 2; i++ {
		if status, _, _ := in.Get(t, "/api/hostile/exit"); status != 500 {
			t.Fatalf("exit: %d", status)
		}
		if status, _, body := in.Get(t, "/api/hostile/nap?ms=1600"); status != 200 {
			t.Errorf("call after a new instance started: %d %s", status, body)
		}
	}
	// Closing the plugin interrupts an instance still starting: it
	// could never serve, and close does not wait for its initializer.
	slow := start(t, hostileConfig("1s", 1)+"[plugins.hostile.config]\ninit_sleep_ms = \"4000\"\n")
	slow.Get(t, "/api/hostile/exit")
	if status, _, _ := slow.Get(t, "/api/hostile/ok"); status != 504 {
		t.Fatalf("ok while the instance starts: %d, want 504", status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	begin := time.Now()
	slow.RT.Slot("hostile").Plugin().Close(ctx)
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("closing the plugin took %v while an instance started; want it interrupted", took)
	}
}

// A HEAD answer carries the Content-Length the GET would have, as
// net/http's server sends it (http.ServeContent sets it, writes no body).
func TestHeadKeepsContentLength(t *testing.T) {
	in := start(t, hostileConfig("2s", 1))
	if status, _, body := in.Get(t, "/api/hostile/content"); status != 200 || body != "hello, content" {
		t.Fatalf("GET: %d %q", status, body)
	}
	status, h, body := in.DoWith(t, in.Client, "HEAD", "/api/hostile/content", nil)
	if status != 200 || h.Get("Content-Length") != "14" || body != "" {
		t.Errorf("HEAD: %d Content-Length %q body %q, want 200 with 14 and no body", status, h.Get("Content-Length"), body)
	}
	// A handler that writes a body for the GET only (http.Redirect) and
	// sets no length: the HEAD answer announces none, as net/http's.
	client := *in.Client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if status, h, body := in.DoWith(t, &client, "GET", "/api/hostile/moved", nil); status != 302 || body == "" || h.Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Fatalf("GET moved: %d Content-Length %q body %q, want 302 with a body and its length", status, h.Get("Content-Length"), body)
	}
	status, h, body = in.DoWith(t, &client, "HEAD", "/api/hostile/moved", nil)
	if status != 302 || h["Content-Length"] != nil || h.Get("Location") != "/api/hostile/items" || body != "" {
		t.Errorf("HEAD moved: %d headers %v body %q, want 302 with the mounted Location and no Content-Length", status, h, body)
	}
}

// A response the plugin sends without a Content-Type (it set the header
// to nil, which suppresses it in net/http) gets none from the server
// either; one with a body and no header set gets the sniffed type.
func TestNoContentTypeAdded(t *testing.T) {
	in := start(t, hostileConfig("2s", 1))
	status, h, body := in.Get(t, "/api/hostile/notype")
	if status != 200 || body != "<html>no type</html>" || h["Content-Type"] != nil {
		t.Errorf("notype: %d %v %q, want no Content-Type", status, h, body)
	}
	if _, h, _ := in.Get(t, "/api/hostile/ok"); h.Get("Content-Type") == "" {
		t.Errorf("ok: no Content-Type")
	}
}

func TestRetirement(t *testing.T) {
	in := start(t, fmt.Sprintf(`
[plugins.hostile]
path = %q
limits = { instances = 1, max_requests = 3, memory = "64MiB", retire_memory = "24MiB" }
`, hostileWasm))
	// Each instance serves exactly max_requests requests (its start-up
	// call is not one of them): its own count goes 1, 2, 3, then a new one.
	for i := 0; i < 7; i++ {
		status, _, body := in.Get(t, "/api/hostile/ok")
		if want := fmt.Sprintf(`{"ok":true,"calls":%d}`, i%3+1); status != 200 || body != want {
			t.Fatalf("request %d: %d %s, want %s", i+1, status, body, want)
		}
	}
	st := in.RT.Slot("hostile").Plugin().Stats()
	if st.Retired != 2 {
		t.Errorf("after 7 calls with max_requests=3: retired %d, want 2 (%+v)", st.Retired, st)
	}
	// Growing past retire_memory retires the instance after the call.
	before := st.Retired
	if status, _, body := in.Get(t, "/api/hostile/grow?mb=30"); status != 200 {
		t.Fatalf("grow: %d %s", status, body)
	}
	if st := in.RT.Slot("hostile").Plugin().Stats(); st.Retired != before+1 {
		t.Errorf("instance over retire_memory not retired: %+v", st)
	}
}

func TestLoadFailuresAreIsolated(t *testing.T) {
	dir := t.TempDir()
	notWasm := filepath.Join(dir, "not.wasm")
	os.WriteFile(notWasm, []byte("#!/bin/sh\necho definitely not wasm\n"), 0o644)
	// 16 bytes declaring 4 294 967 295 imports: wazero would ask for
	// hundreds of GiB before reading the first, and the out-of-memory
	// error would end the server (instrument.CheckSizes).
	bomb := filepath.Join(dir, "bomb.wasm")
	os.WriteFile(bomb, []byte{0, 'a', 's', 'm', 1, 0, 0, 0, 2, 6, 0xff, 0xff, 0xff, 0xff, 0x0f, 0}, 0o644)
	// One function declaring 4 294 967 295 locals (wazero would fill a
	// slice that long), loaded without the interruption rewrite.
	locals := filepath.Join(dir, "locals.wasm")
	os.WriteFile(locals, []byte{0, 'a', 's', 'm', 1, 0, 0, 0,
		1, 4, 1, 0x60, 0, 0, // type: func() ()
		3, 2, 1, 0, // function 0 of type 0
		10, 10, 1, 8, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x7f, 0x0b}, 0o644)
	in := start(t, fmt.Sprintf(`
[plugins.hello]
path = %q
[plugins.notwasm]
path = %q
[plugins.pinned]
path = %q
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[plugins.abiv2]
path = %q
[plugins.noabi]
path = %q
[plugins.badsig]
path = %q
[plugins.missing]
path = %q
[plugins.source]
path = %q
[plugins.bomb]
path = %q
[plugins.locals]
path = %q
limits = { interruptible = false }
`, helloWasm, notWasm, helloWasm, abiv2Wasm, noabiWasm, badsigWasm, filepath.Join(dir, "missing.wasm"), filepath.Join(guesttest.Root(), "plugins/hello"), bomb, locals))

	if status, _, _ := in.Get(t, "/api/hello/ping"); status != 200 {
		t.Fatalf("hello does not serve beside failed plugins: %d", status)
	}
	for _, tc := range []struct{ id, want string }{
		{"notwasm", "not a WebAssembly module"},
		{"pinned", "sha256 pin mismatch"},
		{"abiv2", "unknown ABI version 2; this runtime supports version 1"},
		{"noabi", "declares no greenroom ABI version"},
		{"badsig", "module exports greenroom_handle with signature [i32 i32] -> [i32]; want [i32] -> [i32]"},
		{"badsig", "module exports greenroom_task_run with signature [i64] -> [i64]; want [i32] -> [i32]"},
		{"badsig", `export "greenroom_abi_v01" does not name an ABI version`},
		{"missing", "no such file"},
		{"source", "is a source directory; greenroom serve runs built modules: build it with `greenroom plugin build "},
		{"bomb", "malformed module: import section at byte 8: 4294967295 imports declared in 1 bytes"},
		{"locals", "malformed module: code section at byte 18: function body 0: 4294967295 locals, more than 50000"},
	} {
		id, want := tc.id, tc.want
		status, h, body := in.Get(t, "/api/"+id+"/ping")
		e := errorBody(t, body)
		msg := fmt.Sprint(e["error"])
		if status != 503 || e["code"] != "plugin_unavailable" || !strings.Contains(msg, want) || h.Get("Retry-After") != "5" {
			t.Errorf("%s: got %d %s, want 503 mentioning %q", id, status, body, want)
		}
		// A path by its base name only: its directory is the
		// operator's infrastructure, not the callers' business.
		if strings.Contains(msg, dir) || strings.Contains(msg, guesttest.Root()) {
			t.Errorf("%s: %q names a directory", id, msg)
		}
		// Named once, saying what happened.
		if prefix := "plugin " + id + " failed to load: "; !strings.HasPrefix(msg, prefix) || strings.Count(msg, "plugin "+id+":") > 0 {
			t.Errorf("%s: %q, want it to begin %q and name the plugin once", id, msg, prefix)
		}
	}
	// The operator's last_error keeps the whole path.
	if _, reason := in.RT.Slot("missing").Status(); !strings.Contains(reason, filepath.Join(dir, "missing.wasm")) {
		t.Errorf("missing: last_error %q does not name the path", reason)
	}
	// The log tells the operator how to build a source directory, with
	// its whole path (serve refuses it; issue 2).
	src := filepath.Join(guesttest.Root(), "plugins/hello")
	if want := "build it with `greenroom plugin build " + src + " -o " + filepath.Join(src, "source.wasm") + "`"; !strings.Contains(in.Log.String(), want) {
		t.Errorf("the log does not say %s:\n%s", want, in.Log)
	}
	status, _, body := in.Get(t, "/.greenroom/health/v1/readiness")
	if status != 200 {
		t.Errorf("readiness with failed plugins (failed for good) = %d %s", status, body)
	}
}

// A module that needs more memory at start than limits.memory is refused
// saying so; when the cap came from the environment, the refusal (the
// plugin's 503s, which every caller reads, last_error and the log) does
// not tell it decoded, as pages and bytes: the log's redaction matches
// the secret as written ("1MiB"), and a caller read "over its limit
// (limits.memory) of 16 pages (1048576 bytes)".
func TestMemoryCapFromTheEnvironmentNotQuoted(t *testing.T) {
	cfg := fmt.Sprintf("[plugins.secret]\npath = %q\nlimits = { memory = \"${GR_TEST_MEMORY}\" }\n[plugins.plain]\npath = %q\nlimits = { memory = \"2MiB\" }\n", helloWasm, helloWasm)
	in := servertest.Start(t, cfg, servertest.Options{CacheDir: cacheDir, Env: map[string]string{"GR_TEST_MEMORY": "1MiB"}})
	status, _, body := in.Get(t, "/api/secret/ping")
	msg := fmt.Sprint(errorBody(t, body)["error"])
	if status != 503 || !strings.Contains(msg, "pages of memory at start") || !strings.Contains(msg, "limits.memory, [REDACTED]") {
		t.Errorf("secret: %d %s, want 503 saying the module needs more memory than a [REDACTED] limits.memory", status, body)
	}
	_, reason := in.RT.Slot("secret").Status()
	_, _, admin := in.Get(t, "/.greenroom/plugins/v1/")
	for where, text := range map[string]string{"503": msg, "last_error": reason, "admin API": admin, "log": in.Log.String()} {
		if strings.Contains(text, "16 pages") || strings.Contains(text, "1048576") {
			t.Errorf("the %s quotes the cap from the environment: %s", where, text)
		}
	}
	// A cap written in the file is quoted as before.
	if _, _, body := in.Get(t, "/api/plain/ping"); !strings.Contains(body, "over its limit (limits.memory) of 32 pages (2097152 bytes)") {
		t.Errorf("plain: %s, want the cap quoted", body)
	}
}

// A response over limits.max_response is refused (502
// plugin_bad_response) naming the limit; one from the environment is not
// told decoded to the caller nor in the log ("of 65536 bytes" for
// "${R}" with R=64KiB, which the redaction of "64KiB" does not match).
func TestMaxResponseFromTheEnvironmentNotQuoted(t *testing.T) {
	cfg := fmt.Sprintf("[plugins.secret]\npath = %q\nlimits = { max_response = \"${GR_TEST_MAX_RESPONSE}\" }\n[plugins.plain]\npath = %q\nlimits = { max_response = \"96KiB\" }\n", helloWasm, helloWasm)
	in := servertest.Start(t, cfg, servertest.Options{CacheDir: cacheDir, Env: map[string]string{"GR_TEST_MAX_RESPONSE": "64KiB"}})
	big := strings.Repeat("a", 128<<10)
	status, _, body := in.Do(t, "POST", "/api/secret/echo", strings.NewReader(big))
	msg := fmt.Sprint(errorBody(t, body)["error"])
	if status != 502 || !strings.Contains(msg, "over limits.max_response of [REDACTED]") {
		t.Errorf("secret: %d %s, want 502 naming a [REDACTED] limits.max_response", status, body)
	}
	for where, text := range map[string]string{"502": msg, "log": in.Log.String()} {
		if strings.Contains(text, "65536") {
			t.Errorf("the %s quotes the limit from the environment: %s", where, text)
		}
	}
	// A limit written in the file is quoted as before.
	if _, _, body := in.Do(t, "POST", "/api/plain/echo", strings.NewReader(big)); !strings.Contains(body, "over limits.max_response of 98304 bytes") {
		t.Errorf("plain: %s, want the limit quoted", body)
	}
}

func TestResponseHeaderInjectionRefused(t *testing.T) {
	in := start(t, hostileConfig("2s", 1))
	status, h, body := in.Get(t, "/api/hostile/badheader")
	if status != 200 || body != "ok" {
		t.Fatalf("%d %q", status, body)
	}
	if h.Get("Injected") != "" || h.Get("X-Escape") != "" || h.Get("Bad Name") != "" {
		t.Errorf("unsafe header reached the client: %v", h)
	}
	// A value with a line break arrives as net/http sends it, on one line
	// (TestHeaderValueNewlinesAsNetHTTP).
	if v := h.Values("X-Evil"); len(v) != 1 || v[0] != "a  Injected: 1" {
		t.Errorf("X-Evil: %q, want the line break as spaces", v)
	}
	if h.Get("X-Fine") != "yes" {
		t.Errorf("safe header dropped: %v", h)
	}
	if v := h.Values("Content-Length"); len(v) != 1 || v[0] != "2" {
		t.Errorf("Content-Length %q, want the body's 2 (the guest's 1 dropped)", v)
	}
	if ids := h.Values("X-Request-Id"); len(ids) != 1 || ids[0] == "forged" || h.Get("Proxy-Authenticate") != "" || h.Get("Access-Control-Allow-Origin") != "" || h.Get("Access-Control-Allow-Private-Network") != "" {
		t.Errorf("guest set greenroom's or a hop-by-hop header: %v", h)
	}
	for _, name := range []string{"Set-Cookie", "Clear-Site-Data", "Service-Worker-Allowed", "Strict-Transport-Security", "Alt-Svc", "NEL", "Report-To", "Accept-CH", "Critical-CH", "WWW-Authenticate"} {
		if h.Get(name) != "" {
			t.Errorf("guest set %s, which holds for the whole origin: %v", name, h)
		}
	}
}

// Every plugin answers from greenroom's one origin: a plugin's answer
// gets X-Content-Type-Options: nosniff unless it set the header itself
// (its value, whatever it is, is kept, once), so that a browser takes no
// plugin's JSON or text (an echo of a query) for a script or stylesheet
// of another plugin's page. HEAD answers too.
func TestPluginAnswerNoSniff(t *testing.T) {
	in := start(t, hostileConfig("2s", 1))
	for path, want := range map[string]string{
		"/api/hostile/badheader":                    "nosniff",
		"/api/hostile/framing?case=sniff&v=nosniff": "nosniff",
		"/api/hostile/framing?case=sniff&v=custom":  "custom",
	} {
		status, h, _ := in.Get(t, path)
		if v := h.Values("X-Content-Type-Options"); status != 200 || len(v) != 1 || v[0] != want {
			t.Errorf("%s: %d, X-Content-Type-Options %q, want %q", path, status, v, want)
		}
	}
	status, h, _ := in.Do(t, "HEAD", "/api/hostile/content", nil)
	if v := h.Values("X-Content-Type-Options"); status != 200 || len(v) != 1 || v[0] != "nosniff" {
		t.Errorf("HEAD: %d, X-Content-Type-Options %q", status, v)
	}
}

// A Go guest's ResponseWriter frames as net/http's, in wasm: a flush
// (http.ResponseController) works and streams nothing; a body short of
// its Content-Length, and more header lines than the envelope holds, are
// answered 502 plugin_bad_response by the SDK, saying why
// (TestFlushAsResponseRecorder, TestContentLengthAsNetHTTP,
// TestTooManyHeadersSaid), and the instance serves on.
func TestGuestFramingAsNetHTTP(t *testing.T) {
	in := start(t, hostileConfig("2s", 1))
	if status, _, body := in.Get(t, "/api/hostile/framing?case=flush"); status != 200 || body != "before after" {
		t.Errorf("flush: %d %q", status, body)
	}
	if status, h, body := in.Get(t, "/api/hostile/framing?case=headers&n=1022"); status != 200 || len(h.Values("X-H")) != 1022 || body != "many" {
		t.Errorf("1022 header lines: %d, %d X-H, %q", status, len(h.Values("X-H")), body)
	}
	for q, want := range map[string]string{
		"case=short":          "handler wrote 3 bytes of the 10 its Content-Length declared",
		"case=headers&n=1023": "the handler set 1023 response header lines, more than the 1022",
	} {
		status, _, body := in.Get(t, "/api/hostile/framing?"+q)
		if e := errorBody(t, body); status != 502 || e["code"] != "plugin_bad_response" || !strings.Contains(fmt.Sprint(e["error"]), want) {
			t.Errorf("%s: %d %s, want 502 plugin_bad_response saying %q", q, status, body, want)
		}
	}
	if status, _, body := in.Get(t, "/api/hostile/framing?case=flush"); status != 200 || body != "before after" {
		t.Errorf("after the bad responses: %d %q", status, body)
	}
}

// A status HTTP does not define (RFC 9110, 15: only 100-599 are valid)
// never reaches the client: 600-999, which net/http's WriteHeader lets a
// handler write, is refused as a bad response (502), and a code outside
// 100-999 panics in the SDK as in net/http (500). 599 passes.
func TestInvalidStatusRefused(t *testing.T) {
	in := start(t, hostileConfig("2s", 1))
	for _, tc := range []struct {
		code   int
		status int
		want   string
	}{
		{599, 599, ""},
		{600, 502, "plugin_bad_response"},
		{999, 502, "plugin_bad_response"},
		{1000, 500, "plugin_panic"},
		{99, 500, "plugin_panic"},
		{0, 500, "plugin_panic"},
	} {
		status, _, body := in.Get(t, fmt.Sprintf("/api/hostile/status?code=%d", tc.code))
		if status != tc.status || tc.want != "" && errorBody(t, body)["code"] != tc.want {
			t.Errorf("WriteHeader(%d): %d %s, want %d %s", tc.code, status, body, tc.status, tc.want)
		}
		if tc.want == "plugin_bad_response" && !strings.Contains(body, fmt.Sprintf("status %d out of range 200-599", tc.code)) {
			t.Errorf("WriteHeader(%d): %s does not say why", tc.code, body)
		}
		if status, _, _ := in.Get(t, "/api/hostile/ok"); status != 200 {
			t.Fatalf("after WriteHeader(%d): next request %d", tc.code, status)
		}
	}
}

// A 2xx answer to CONNECT switches the connection to a tunnel (RFC 9110,
// 9.3.6: its client ignores a Content-Length and takes every byte after
// the head as the tunnel's), which greenroom never opens: it went on
// reading the connection as HTTP, the client and any intermediary taking
// the answer's body and every later answer for the tunnel's bytes (an
// audit: a plugin's ServeMux route without a method answered CONNECT 200
// with a Content-Length). It is refused, as a 1xx is; a CONNECT answered
// otherwise (ServeMux's 405) passes, and the connection serves on.
func TestConnectSuccessRefused(t *testing.T) {
	in := start(t, hostileConfig("2s", 1))
	conn, err := net.Dial("tcp", strings.TrimPrefix(in.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(conn)
	do := func(method, target string) (int, string) {
		t.Helper()
		fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: greenroom.test\r\nAuthorization: Bearer %s\r\n\r\n", method, target, in.Token)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s %s: %v", method, target, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// /headers answers any method 200.
	if status, body := do("CONNECT", "/api/hostile/headers"); status != 502 || errorBody(t, body)["code"] != "plugin_bad_response" || !strings.Contains(body, "CONNECT") {
		t.Errorf("CONNECT answered 200 by the plugin: %d %s, want 502 plugin_bad_response naming CONNECT", status, body)
	}
	if status, body := do("CONNECT", "/api/hostile/ok"); status != 405 {
		t.Errorf("CONNECT to a GET route: %d %s, want the plugin's 405", status, body)
	}
	if status, body := do("GET", "/api/hostile/ok"); status != 200 || !strings.Contains(body, `"ok":true`) {
		t.Errorf("GET on the same connection after the CONNECTs: %d %s", status, body)
	}
}

// A write to stdout is a host call, where the interrupt flag is not seen:
// one write of 48 MiB of empty lines (seconds of work for the host) still
// ends at the call's timeout.
func TestOutputWriteInterrupted(t *testing.T) {
	in := start(t, strings.Replace(hostileConfig("1s", 1), `memory = "32MiB"`, `memory = "128MiB"`, 1))
	start := time.Now()
	status, _, body := in.Get(t, "/api/hostile/flood?mb=48")
	if took := time.Since(start); status != 504 || took > 2*time.Second {
		t.Errorf("48 MiB write: %d %s after %v, want 504 within 2x the 1s timeout", status, body, took)
	}
	if status, _, _ := in.Get(t, "/api/hostile/ok"); status != 200 {
		t.Errorf("next request: %d", status)
	}
}

// A plugin whose init panics fails to load with the panic's message in
// the reason (not only "unreachable"), redacted like any log line.
func TestInitPanicReason(t *testing.T) {
	const secret = "init-secret-0123456789"
	cfg := hostileConfig("2s", 1) + "[plugins.hostile.config]\ninit_panic = \"cannot start: token ${INIT_SECRET} refused\\u001b[31m\"\n"
	in := servertest.Start(t, cfg, servertest.Options{CacheDir: cacheDir, Env: map[string]string{"INIT_SECRET": secret}})
	status, _, body := in.Get(t, "/api/hostile/ok")
	e := errorBody(t, body)
	reason := fmt.Sprint(e["error"])
	if status != 503 || !strings.Contains(reason, "panic: cannot start: token [REDACTED] refused") || strings.Contains(body, secret) {
		t.Errorf("got %d %s, want 503 with the redacted panic message", status, body)
	}
	// One line: not wazero's wasm stack trace, which the log line has.
	if strings.ContainsAny(reason, "\n\x1b") || strings.Contains(reason, "wasm stack trace") {
		t.Errorf("the reason holds more than the error's first line: %q", reason)
	}
	if !strings.Contains(in.Log.String(), `"detail":"wasm stack trace:`) {
		t.Errorf("the load failure's log line lacks the wasm stack trace:\n%s", in.Log.String())
	}
}

// A plugin whose init exits after printing why (log.Fatal) fails to load:
// the 503 says it exited, and only the log quotes what it printed (the
// plugin's output is not for its callers).
func TestInitExitReason(t *testing.T) {
	cfg := hostileConfig("2s", 1) + "[plugins.hostile.config]\ninit_exit = \"cannot reach upstream billing.internal:9443\"\n"
	in := servertest.Start(t, cfg, servertest.Options{CacheDir: cacheDir})
	status, _, body := in.Get(t, "/api/hostile/ok")
	if status != 503 || !strings.Contains(body, "module closed with exit_code(1)") || strings.Contains(body, "billing.internal") {
		t.Errorf("got %d %s, want 503 saying the plugin exited, without what it printed", status, body)
	}
	if !strings.Contains(in.Log.String(), "the plugin printed: cannot reach upstream billing.internal:9443") {
		t.Errorf("the load failure's log line does not quote what the plugin printed:\n%s", in.Log.String())
	}
}

// random_get is a host call too: one for 900 MiB (seconds of work) ends at
// the call's timeout, and a small one works.
func TestRandomGetInterrupted(t *testing.T) {
	in := start(t, strings.Replace(hostileConfig("300ms", 1), `memory = "32MiB"`, `memory = "1GiB"`, 1))
	if status, _, body := in.Get(t, "/api/hostile/random?mb=1"); status != 200 || body != `{"errno":0}` {
		t.Fatalf("1 MiB: %d %s", status, body)
	}
	start := time.Now()
	status, _, body := in.Get(t, "/api/hostile/random?mb=900")
	if took := time.Since(start); status != 504 || took > 900*time.Millisecond {
		t.Errorf("900 MiB: %d %s after %v, want 504 within 3x the 300ms timeout", status, body, took)
	}
}

// A config_get key is bounded before the host copies or quotes it: a
// 16 MiB key of zero bytes once made the host allocate ~30 times that
// (the copy, then %q of it for the error message).
func TestConfigGetHugeKey(t *testing.T) {
	in := start(t, strings.Replace(hostileConfig("5s", 1), `memory = "32MiB"`, `memory = "64MiB"`, 1))
	if status, _, body := in.Get(t, "/api/hostile/bigkey?n=8"); status != 200 || body != `{"code":-1}` {
		t.Fatalf("short key: %d %s", status, body)
	}
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	status, _, body := in.Get(t, "/api/hostile/bigkey?n="+strconv.Itoa(16<<20))
	goruntime.ReadMemStats(&after)
	if status != 200 || body != `{"code":-1}` {
		t.Fatalf("16 MiB key: %d %s, want ERR_NOT_FOUND", status, body)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Errorf("a 16 MiB key made the host allocate %d MiB", grew>>20)
	}
}

// A plugin sees paths relative to its mount, so a Location that is a path
// from the root gets the mount in front: its own redirects and ServeMux's
// (to a cleaned path) stay inside /api/<id>. Others pass as they are.
// A guest sees the request headers the client sent: fasthttp gives a
// body-less POST a "Content-Length: 0" of its own, which net/http's
// handlers never see.
func TestNoContentLengthInvented(t *testing.T) {
	in := start(t, hostileConfig("2s", 1))
	for _, tc := range []struct {
		method, body, header, want string
	}{
		{"POST", "", "", ""},
		{"DELETE", "", "", ""},
		{"POST", "", "Content-Length", "Content-Length: 0"},
		{"POST", "abc", "", "Content-Length: 3"},
	} {
		raw := tc.method + " /api/hostile/headers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + in.Token + "\r\nConnection: close\r\n"
		if tc.header != "" || tc.body != "" {
			raw += fmt.Sprintf("Content-Length: %d\r\n", len(tc.body))
		}
		conn := dial(t, in.URL)
		fmt.Fprint(conn, raw+"\r\n"+tc.body)
		answer, _ := io.ReadAll(conn)
		conn.Close()
		_, body, _ := strings.Cut(string(answer), "\r\n\r\n")
		got := ""
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "Content-Length:") {
				got = line
			}
		}
		if !strings.HasPrefix(string(answer), "HTTP/1.1 200") || got != tc.want {
			t.Errorf("%s with %q: the guest saw %q, want %q:\n%s", tc.method, tc.body, got, tc.want, answer)
		}
	}
}

func TestRedirectsStayInTheMount(t *testing.T) {
	in := start(t, hostileConfig("2s", 1))
	client := *in.Client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, tc := range []struct{ path, want string }{
		{"/api/hostile/redirect?to=/items", "/api/hostile/items"},
		{"/api/hostile/redirect?to=/", "/api/hostile/"},
		{"/api/hostile/redirect?to=//elsewhere.test/x", "//elsewhere.test/x"},
		{"/api/hostile/redirect?to=/%5Celsewhere.test", "/\\elsewhere.test"},
		{"/api/hostile/redirect?to=https://elsewhere.test/x", "https://elsewhere.test/x"},
		// A relative reference is resolved against the request's path in
		// the mount, as a browser would against the public URL, where
		// enough ".." climbed out of /api/<id>.
		{"/api/hostile/redirect?to=next", "/api/hostile/next"},
		{"/api/hostile/redirect?to=..%2F..%2F.greenroom%2Fplugins%2Fv1%2F", "/api/hostile/.greenroom/plugins/v1/"},
		{"/api/hostile/redirect?to=..%2F..%2Fapi%2Fhello%2Fecho", "/api/hostile/api/hello/echo"},
		{"/api/hostile/redirect?to=http:..%2F..%2F.greenroom%2Fx", "/api/hostile/.greenroom/x"}, // relative to a browser
		{"/api/hostile/redirect?to=HTTPS:%2F..%2Fx", "/api/hostile/x"},
		{"/api/hostile/redirect?to=%5C..%5C..%5C.greenroom", "/api/hostile/.greenroom"},
		{"/api/hostile/redirect?to=a%2Fb%3Fq=..%2F..", "/api/hostile/a/b?q=../.."},
		{"/api/hostile/redirect?to=%3Fpage=2", "?page=2"},
		{"/api/hostile/redirect?to=%23top", "#top"},
		{"/api/hostile/redirect?to=http:%5C%5Celsewhere.test%2Fx", "http:\\\\elsewhere.test/x"},
		{"/api/hostile/redirect?to=mailto:ops@example.test", "mailto:ops@example.test"},
		{"/api/hostile/redirect?to=/api/hostile/items", "/api/hostile/items"}, // already under the mount
		{"/api/hostile/redirect?to=/api/hostile", "/api/hostile"},
		{"/api/hostile/redirect?to=/api/hostile?x=1", "/api/hostile?x=1"},
		{"/api/hostile/redirect?to=/api/hostilex/y", "/api/hostile/api/hostilex/y"},
		{"/api/hostile/redirect?to=/api/other/y", "/api/hostile/api/other/y"},
		// Dot segments cannot climb out of the mount, however spelled.
		{"/api/hostile/redirect?to=/api/hostile/../other/x", "/api/hostile/api/other/x"},
		{"/api/hostile/redirect?to=/../../other", "/api/hostile/other"},
		{"/api/hostile/redirect?to=/%252e%252E/other?q=/../x", "/api/hostile/other?q=/../x"},
		{"/api/hostile/redirect?to=/a%5C..%5C..%5Cother", "/api/hostile/other"},
		{"/api/hostile/redirect?to=/api/hostile/a/./../b/", "/api/hostile/b/"},
		{"/api/hostile/redirect?to=/items/a.txt", "/api/hostile/items/a.txt"},
		{"/api/hostile/redirect?to=/..", "/api/hostile/"},
		{"/api/hostile/redirect?to=/.%09./.%09./admin", "/api/hostile/admin"}, // a browser drops tabs
		{"/api/hostile/redirect?to=/api/hostile/.%09./.%09./admin", "/api/hostile/admin"},
		// ... and strips leading and trailing spaces and control characters.
		{"/api/hostile/redirect?to=%20/.greenroom/health", "/api/hostile/.greenroom/health"},
		{"/api/hostile/redirect?to=%20%20/x%09", "/api/hostile/x"},
		{"/api/hostile/redirect?to=%20https://elsewhere.test/x", "https://elsewhere.test/x"},
		{"/api/hello//ping", "/api/hello/ping"}, // ServeMux's redirect to the clean path
		{"/api/hello/./ping", "/api/hello/ping"},
	} {
		status, h, body := in.DoWith(t, &client, "GET", tc.path, nil)
		if status/100 != 3 || h.Get("Location") != tc.want {
			t.Errorf("%s: %d Location %q (%s), want %q", tc.path, status, h.Get("Location"), body, tc.want)
		}
	}
}

// A Location into the mount longer than server.header_limit could never
// be requested: the answer is refused (502) before the host works on it,
// and the plugin goes on serving; one just under the limit is mounted.
func TestLongRedirectRefused(t *testing.T) {
	in := start(t, "[server]\nheader_limit = \"4KiB\"\n"+strings.Replace(hostileConfig("2s", 1), "instances = 1\n", "instances = 1\nlog_rate = 0.001\nlog_burst = 3\n", 1))
	client := *in.Client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	status, h, body := in.DoWith(t, &client, "GET", "/api/hostile/redirect?to=/.&then=/&repeat=500000", nil)
	if status != 502 || !strings.Contains(body, `"plugin_bad_response"`) || !strings.Contains(body, "server.header_limit") || h.Get("Location") != "" {
		t.Errorf("a 500 KB Location: %d %v %.300s", status, h, body)
	}
	status, h, body = in.DoWith(t, &client, "GET", "/api/hostile/redirect?to=/a&then=/.&repeat=2000", nil)
	if status != 302 || h.Get("Location") != "/api/hostile/a/" {
		t.Errorf("a 4 KB Location: %d %q %.300s", status, h.Get("Location"), body)
	}
	// The line about it comes as often as the plugin likes: from its log
	// rate limit (log_burst 3).
	for range 40 {
		in.DoWith(t, &client, "GET", "/api/hostile/redirect?to=/.&then=/&repeat=5000", nil)
	}
	if n := len(linesWith(t, in, "plugin wrote a bad response")); n > 3 {
		t.Errorf("%d lines for 41 bad responses: not rate limited", n)
	}
	if in.RT.DroppedLogLines("hostile") == 0 {
		t.Error("no dropped line counted")
	}
	status, h, _ = in.DoWith(t, &client, "GET", "/api/hostile/redirect?to=https://elsewhere.test/&then=a&repeat=100000", nil)
	if status != 302 || len(h.Get("Location")) != len("https://elsewhere.test/")+100000 {
		t.Errorf("a 100 KB absolute Location: %d, %d bytes", status, len(h.Get("Location")))
	}
}

// The admin view shows each plugin's state, module, grants (and what its
// module imports without a grant), limits, pool and last load error.
func TestAdminPluginView(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.wasm")
	in := start(t, fmt.Sprintf(`
[plugins.hello]
path = %q
limits = { instances = 3 }
[plugins.logurl]
path = %q
[plugins.gone]
path = %q
[plugins.todo]
path = %q
`, helloWasm, logurlWasm, missing, todoWasm))
	if status, _, _ := in.Get(t, "/api/hello/ping"); status != 200 {
		t.Fatal("ping failed")
	}
	status, _, body := in.Get(t, "/.greenroom/plugins/v1/")
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	// Every plugin has every field, last_error too ("" when none).
	var raw struct {
		Plugins []map[string]json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	for _, p := range raw.Plugins {
		if _, ok := p["last_error"]; !ok {
			t.Errorf("plugin %s has no last_error field", p["id"])
		}
	}
	var view struct {
		Plugins []struct {
			ID         string   `json:"id"`
			State      string   `json:"state"`
			LastError  string   `json:"last_error"`
			SHA256     string   `json:"sha256"`
			ABIVersion int      `json:"abi_version"`
			Granted    []string `json:"granted"`
			Ungranted  []string `json:"imported_not_granted"`
			GCLimit    uint64   `json:"gc_memory_limit"`
			Module     *struct {
				SHA256       string   `json:"sha256"`
				Capabilities []string `json:"capabilities"`
			} `json:"module"`
			Limits *struct {
				Instances int `json:"instances"`
			} `json:"limits"`
			Pool *struct {
				Max     int   `json:"max"`
				Created int64 `json:"created"`
			} `json:"pool"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(body), &view); err != nil {
		t.Fatal(err)
	}
	byID := map[string]int{}
	for i, p := range view.Plugins {
		byID[p.ID] = i
	}
	hello := view.Plugins[byID["hello"]]
	sum := sha256File(t, helloWasm)
	if hello.State != "ready" || hello.SHA256 != sum || hello.Module == nil || hello.Module.SHA256 != sum || hello.ABIVersion != 1 ||
		hello.Limits == nil || hello.Limits.Instances != 3 || hello.Pool == nil || hello.Pool.Max != 3 || hello.Pool.Created < 1 || len(hello.Ungranted) != 0 ||
		hello.GCLimit < 32<<20 || hello.GCLimit >= 48<<20 {
		t.Errorf("hello: %+v", hello)
	}
	logurl := view.Plugins[byID["logurl"]]
	if len(logurl.Granted) != 0 || !slices.Contains(logurl.Ungranted, "urlreader") || logurl.Module == nil || !slices.Contains(logurl.Module.Capabilities, "urlreader") {
		t.Errorf("logurl: granted %v, imported but not granted %v", logurl.Granted, logurl.Ungranted)
	}
	gone := view.Plugins[byID["gone"]]
	if gone.State != "failed" || !strings.Contains(gone.LastError, "missing.wasm") || gone.Module != nil || gone.SHA256 != "" ||
		gone.Pool == nil || gone.Pool.Created != 0 || gone.Ungranted != nil {
		t.Errorf("gone: %+v", gone)
	}
	// todo is granted nothing: its initializer fails (greenroom.Migrations
	// without the database), and the module it tried still says what it
	// imports, as greenroom plugin inspect FILE --config would.
	todo := view.Plugins[byID["todo"]]
	if todo.State != "failed" || !strings.Contains(todo.LastError, `capability "database" not granted`) || todo.SHA256 != sha256File(t, todoWasm) ||
		todo.ABIVersion != 1 || todo.Module == nil || !slices.Equal(todo.Ungranted, []string{"database", "scheduler"}) {
		t.Errorf("todo, whose initializer failed: %+v", todo)
	}
	// Without a module, what it imports is unknown: no list, rather than
	// an empty one that says nothing is missing.
	if n := strings.Count(body, `"imported_not_granted"`); n != len(view.Plugins)-1 {
		t.Errorf("imported_not_granted in %d of %d plugins (all but the failed one):\n%s", n, len(view.Plugins), body)
	}
	if !strings.Contains(body, `"imported_not_granted":[]`) {
		t.Errorf("a loaded module granted all it imports has no empty list:\n%s", body)
	}
	// hello imports no capability: an empty list, not null.
	if !strings.Contains(body, `"capabilities":[]`) {
		t.Errorf("a module without capabilities lists them as null:\n%s", body)
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// One access-log line per request, with the fields operators filter on;
// access_log = false turns it off.
func TestAccessLog(t *testing.T) {
	in := start(t, fmt.Sprintf("[server]\nheader_limit = \"4KiB\"\n[plugins.hello]\npath = %q\n", helloWasm))
	if _, h, _ := in.Get(t, "/api/hello/ping", "X-Request-Id", "access-1"); len(h.Values(":route")) != 0 {
		t.Errorf("the route pseudo-header reached the client: %v", h)
	}
	in.Get(t, "/nothing", "X-Request-Id", "access-2")
	in.Do(t, "HEAD", "/api/hello/ping", nil, "X-Request-Id", "access-head")
	// Headers over the limit: fasthttp never reads the request's head.
	_, h, _ := in.Do(t, "PUT", "/api/hello/echo", nil, "X-Request-Id", "access-big", "X-Big", strings.Repeat("b", 6000))
	bigID := h.Get("X-Request-Id")
	lines := map[string]map[string]any{}
	for _, l := range strings.Split(in.Log.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" {
			id, _ := m["request_id"].(string)
			lines[id] = m
		}
	}
	ping := lines["access-1"]
	if ping == nil {
		t.Fatalf("no access-log line for the ping; log:\n%s", in.Log.String())
	}
	for k, want := range map[string]any{"method": "GET", "path": "/api/hello/ping", "plugin": "hello", "route": "/ping", "status": 200.0,
		"bytes": float64(len(`{"ok":true}`)), "principal": "service:servertest"} {
		if ping[k] != want {
			t.Errorf("access log %s = %v, want %v (line %v)", k, ping[k], want, ping)
		}
	}
	if d, ok := ping["duration_ms"].(float64); !ok || d < 0 {
		t.Errorf("duration_ms = %v", ping["duration_ms"])
	}
	if d, _ := ping["duration"].(string); d == "" {
		t.Errorf("duration = %v", ping["duration"])
	} else if _, err := time.ParseDuration(d); err != nil {
		t.Errorf("duration %q: %v", d, err)
	}
	if nf := lines["access-2"]; nf == nil || nf["status"] != 404.0 || nf["plugin"] != nil || nf["route"] != nil {
		t.Errorf("404 line: %v", nf)
	}
	// A HEAD response's body is never sent.
	if head := lines["access-head"]; head == nil || head["status"] != 200.0 || head["bytes"] != 0.0 {
		t.Errorf("HEAD line: %v, want 200 with 0 bytes", head)
	}
	// A request whose head was not read is not logged as GET / (what
	// fasthttp leaves in its place): no method or path.
	if big := lines[bigID]; big == nil || big["status"] != 431.0 || big["method"] != nil || big["path"] != nil {
		t.Errorf("431 line (request id %q): %v, want no method or path", bigID, big)
	}

	quiet := start(t, fmt.Sprintf("[log]\naccess_log = false\n[plugins.hello]\npath = %q\n", helloWasm))
	quiet.Get(t, "/api/hello/ping")
	if strings.Contains(quiet.Log.String(), `"msg":"request"`) {
		t.Error("access_log = false still logs requests")
	}
}

// A reload turns the access log on and off (docs/config.md lists
// log.access_log among what a reload applies).
func TestAccessLogReloads(t *testing.T) {
	conf := func(on bool) string {
		return fmt.Sprintf("[log]\naccess_log = %v\n[plugins.hello]\npath = %q\n", on, helloWasm)
	}
	in := start(t, conf(false))
	logged := func(id string) bool {
		in.Get(t, "/api/hello/ping", "X-Request-Id", id)
		for l := range strings.Lines(in.Log.String()) {
			if strings.Contains(l, `"msg":"request"`) && strings.Contains(l, `"request_id":"`+id+`"`) {
				return true
			}
		}
		return false
	}
	if logged("off-1") {
		t.Error("access_log = false logs requests")
	}
	in.SetConfig(conf(true))
	if res := in.Reload(t); len(res.RestartNeeded) != 0 {
		t.Errorf("reload: restart needed for %v", res.RestartNeeded)
	}
	if !logged("on-1") {
		t.Error("access_log = true by a reload: the request is not logged")
	}
	in.SetConfig(conf(false))
	in.Reload(t)
	if logged("off-2") {
		t.Error("access_log = false by a reload: the request is logged")
	}
}

// A plugin reads its own [plugins.<id>.config] table and nothing else: not
// another plugin's, not the runtime's settings.
func TestPluginConfigIsolation(t *testing.T) {
	in := start(t, fmt.Sprintf(`
[server]
body_limit = "1MiB"
[plugins.hostile]
path = %q
[plugins.hostile.config]
mine = "a"
nested = { deep = "x" }
[plugins.hello]
path = %q
[plugins.hello.config]
theirs = "b"
`, hostileWasm, helloWasm))
	for key, want := range map[string]string{
		"mine":                         `{"found":true,"value":"a"}`,
		"nested.deep":                  `{"found":true,"value":"x"}`,
		"theirs":                       `{"found":false,"value":""}`,
		"plugins.hello.config.theirs":  `{"found":false,"value":""}`,
		"hello.theirs":                 `{"found":false,"value":""}`,
		"server.body_limit":            `{"found":false,"value":""}`,
		"body_limit":                   `{"found":false,"value":""}`,
		"auth.tokens.servertest.token": `{"found":false,"value":""}`,
	} {
		if status, _, body := in.Get(t, "/api/hostile/config?key="+key); status != 200 || body != want {
			t.Errorf("config %q: %d %s, want %s", key, status, body, want)
		}
	}
}

// A plugin path that names something other than a module file (a device,
// a FIFO) fails that plugin with the reason, at once: it neither eats the
// host's memory (/dev/zero) nor blocks loading for good (a FIFO), and the
// other plugins serve.
func TestPluginPathNotARegularFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo.wasm")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	in := start(t, fmt.Sprintf("[plugins.hello]\npath = %q\n[plugins.zero]\npath = \"/dev/zero\"\n[plugins.fifo]\npath = %q\n", helloWasm, fifo))
	if status, _, _ := in.Get(t, "/.greenroom/health/v1/readiness"); status != 200 {
		t.Errorf("readiness %d", status)
	}
	if status, _, _ := in.Get(t, "/api/hello/ping"); status != 200 {
		t.Errorf("hello: %d", status)
	}
	for id, want := range map[string]string{"zero": "a character device", "fifo": "a named pipe"} {
		status, _, body := in.Get(t, "/api/"+id+"/x")
		if status != 503 || !strings.Contains(body, "not a regular file ("+want+")") {
			t.Errorf("%s: %d %s", id, status, body)
		}
	}
}

// A handler that answers when r.Context() ends answers at the call's
// deadline, as the runtime interrupts it: the client gets 504 every time,
// not the late answer at random (an audit: 1 in 8 got 200).
func TestAnswerAtTheDeadlineIsATimeout(t *testing.T) {
	t.Parallel()
	in := start(t, hostileConfig("300ms", 2))
	for i := range 8 {
		status, _, body := in.Get(t, "/api/hostile/ctxwait")
		if status != 504 || !strings.Contains(body, "plugin_timeout") {
			t.Errorf("request %d: %d %s, want 504 plugin_timeout", i, status, body)
		}
	}
	if status, _, _ := in.Get(t, "/api/hostile/ok"); status != 200 {
		t.Errorf("after the timeouts: %d", status)
	}
}

// The admin API shows a plugin's limits from the environment as
// [REDACTED], and whatever it computes from them not at all or
// [REDACTED]: it showed them decoded ("32MiB" for "${M}" with
// M=33554432, which the redaction of the secret as written does not
// match), retire_memory left to its default as 3/4 of such a memory,
// gc_memory_limit computed from it, the pool's max (limits.instances) and
// the interruption of limits.interruptible. The warning about instances
// that start over retire_memory names neither limit when secret. Limits
// written in the file are shown as before.
func TestPluginViewHidesLimitsFromTheEnvironment(t *testing.T) {
	cfg := fmt.Sprintf(`[plugins.secret]
path = %[1]q
limits = { memory = "${GR_M}", instances = "${GR_I}", timeout = "${GR_T}", interruptible = "${GR_IN}" }
[plugins.warn]
path = %[1]q
limits = { memory = "${GR_M}", retire_memory = "${GR_R}" }
[plugins.plain]
path = %[1]q
limits = { memory = "32MiB", instances = 13, timeout = "7300ms" }
`, helloWasm)
	in := servertest.Start(t, cfg, servertest.Options{CacheDir: cacheDir, Env: map[string]string{
		"GR_M": "33554432", "GR_I": "13", "GR_T": "7300ms", "GR_IN": "false", "GR_R": "1048576"}})
	_, _, body := in.Get(t, "/.greenroom/plugins/v1/")
	var view struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(body), &view); err != nil {
		t.Fatal(err)
	}
	byID := map[string]map[string]any{}
	for _, p := range view.Plugins {
		byID[p["id"].(string)] = p
	}
	limits := func(id, key string) any { return byID[id]["limits"].(map[string]any)[key] }
	poolMax := func(id string) any { return byID[id]["pool"].(map[string]any)["max"] }
	for _, key := range []string{"memory", "retire_memory", "instances", "timeout", "interruptible"} {
		if v := limits("secret", key); v != config.Redacted {
			t.Errorf("secret: limits.%s = %v, want %s", key, v, config.Redacted)
		}
	}
	if v := limits("secret", "max_requests"); v != float64(10000) {
		t.Errorf("secret: limits.max_requests (not from the environment) = %v, want 10000", v)
	}
	if _, ok := byID["secret"]["gc_memory_limit"]; ok || poolMax("secret") != config.Redacted || byID["secret"]["interruption"] != config.Redacted {
		t.Errorf("secret: gc_memory_limit %v (want none), pool max %v, interruption %v (want %s)", byID["secret"]["gc_memory_limit"], poolMax("secret"), byID["secret"]["interruption"], config.Redacted)
	}
	if _, ok := byID["warn"]["gc_memory_limit"]; ok || limits("warn", "retire_memory") != config.Redacted || poolMax("warn") != float64(4) {
		t.Errorf("warn: gc_memory_limit %v (want none), retire_memory %v, pool max %v", byID["warn"]["gc_memory_limit"], limits("warn", "retire_memory"), poolMax("warn"))
	}
	if limits("plain", "memory") != "32MiB" || limits("plain", "retire_memory") != "24MiB" || limits("plain", "timeout") != "7.3s" || poolMax("plain") != float64(13) ||
		byID["plain"]["interruption"] != "flag" || byID["plain"]["gc_memory_limit"] == nil {
		t.Errorf("plain: %v", byID["plain"])
	}
	// Only plain's limits tell them (secret's and warn's retire_memory is
	// 24MiB too).
	for _, shown := range []string{`"7.3s"`, `"24MiB"`, `"32MiB"`} {
		if n := strings.Count(body, shown); n != 1 {
			t.Errorf("the admin API shows %s %d times, want once (plain's):\n%s", shown, n, body)
		}
	}
	// Once, naming the instance's size but no limit of warn's.
	var warning string
	for _, line := range strings.Split(in.Log.String(), "\n") {
		if strings.Contains(line, "once initialized") {
			warning = line
		}
	}
	if !strings.Contains(warning, "over limits.retire_memory ([REDACTED])") || !strings.Contains(warning, "at most limits.memory, [REDACTED]") || strings.Contains(warning, "1MiB") || strings.Contains(warning, "32MiB") {
		t.Errorf("the warning about warn's instances: %s", warning)
	}
	if log := in.Log.String(); strings.Contains(log, `"interruption":"off"`) {
		t.Errorf("the log tells secret's limits.interruptible:\n%s", log)
	}
}

// A limits.interruptible from the environment is a secret, and the log
// does not tell it: the loud warning that it is off said so ("=
// false: this plugin's loops are NOT interrupted", whatever the
// redaction of "false" hid), and its absence, or the debug line about
// the module's instrumentation, said it is on. Now the lines of a load
// are the same for either value: a warning that says neither, logged at
// every load.
func TestSecretInterruptibleNotToldByTheLog(t *testing.T) {
	cfg := fmt.Sprintf(`[plugins.off]
path = %[1]q
limits = { interruptible = "${GR_OFF}" }
[plugins.on]
path = %[1]q
limits = { interruptible = "${GR_ON}" }
`, helloWasm)
	in := servertest.Start(t, cfg, servertest.Options{CacheDir: cacheDir, Env: map[string]string{"GR_OFF": "false", "GR_ON": "true"}})
	msgs := map[string][]string{}
	for _, l := range in.LogLines(t) {
		if id, _ := l["plugin"].(string); id == "off" || id == "on" {
			msg := strings.ReplaceAll(fmt.Sprint(l["msg"]), "plugins."+id+".", "plugins.ID.")
			msgs[id] = append(msgs[id], fmt.Sprint(l["level"], ": ", msg))
		}
	}
	slices.Sort(msgs["off"])
	slices.Sort(msgs["on"])
	if !slices.Equal(msgs["off"], msgs["on"]) {
		t.Errorf("the loads log other lines:\noff: %q\non:  %q", msgs["off"], msgs["on"])
	}
	if !slices.ContainsFunc(msgs["off"], func(m string) bool {
		return strings.HasPrefix(m, "warning: limits.interruptible comes from the environment, a secret, so the log does not say whether")
	}) {
		t.Errorf("no warning about the secret limits.interruptible: %q", msgs["off"])
	}
	if log := in.Log.String(); strings.Contains(log, "NOT interrupted") || strings.Contains(log, "instrumented for interruption") {
		t.Errorf("the log tells limits.interruptible:\n%s", log)
	}
}

// server.body_limit, header_limit, rate_limit and rate_burst from the
// environment are secrets, and callers were told them decoded: a 413
// said "exceeds server.body_limit of 65536 bytes" for "${B}" with
// B=64KiB, a too long Location "server.header_limit (4096 bytes)", and
// every answer under the rate limit carried X-RateLimit-Limit (the burst),
// X-RateLimit-Remaining and X-RateLimit-Reset, with the audit line of a
// 429 quoting the burst and window. None of these is matched by the
// redaction of the secret as written. Retry-After, which a 429 needs,
// stays.
func TestServerLimitsFromTheEnvironmentNotTold(t *testing.T) {
	in := servertest.Start(t, "[server]\nbody_limit = \"${GR_BL}\"\nheader_limit = \"${GR_HL}\"\n"+hostileConfig("2s", 1),
		servertest.Options{CacheDir: cacheDir, Env: map[string]string{"GR_BL": "64KiB", "GR_HL": "4KiB"}})
	status, _, body := in.Do(t, "POST", "/api/hello/echo", strings.NewReader(strings.Repeat("a", 100<<10)))
	if status != 413 || !strings.Contains(body, "exceeds server.body_limit of [REDACTED]") || strings.Contains(body, "65536") {
		t.Errorf("a body over a body_limit from the environment: %d %s", status, body)
	}
	client := *in.Client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	status, _, body = in.DoWith(t, &client, "GET", "/api/hostile/redirect?to=/.&then=/&repeat=5000", nil)
	if status != 502 || !strings.Contains(body, "longer than server.header_limit ([REDACTED])") || strings.Contains(body, "4096") {
		t.Errorf("a Location over a header_limit from the environment: %d %.300s", status, body)
	}
	if log := in.Log.String(); strings.Contains(log, "65536") || strings.Contains(log, "(4096 bytes)") {
		t.Errorf("the log tells a limit from the environment:\n%s", log)
	}

	rl := servertest.Start(t, fmt.Sprintf("[server]\nrate_limit = \"${GR_RL}\"\n[plugins.hello]\npath = %q\n", helloWasm),
		servertest.Options{CacheDir: cacheDir, Env: map[string]string{"GR_RL": "2/h"}})
	for i := 1; i <= 3; i++ {
		status, h, body := rl.Get(t, "/api/hello/ping")
		for k := range h {
			if strings.HasPrefix(strings.ToLower(k), "x-ratelimit") {
				t.Errorf("request %d: %s: %s tells the rate limit from the environment", i, k, h.Get(k))
			}
		}
		if i == 3 && (status != 429 || h.Get("Retry-After") == "") {
			t.Errorf("past the burst: %d %s, Retry-After %q", status, body, h.Get("Retry-After"))
		}
	}
	if log := rl.Log.String(); !strings.Contains(log, "rate limit of [REDACTED] exceeded") || strings.Contains(log, "requests per 1h") {
		t.Errorf("the audit line of the 429:\n%s", log)
	}
	// Written in the file, the rate limit is told as before.
	plain := start(t, fmt.Sprintf("[server]\nrate_limit = \"2/h\"\n[plugins.hello]\npath = %q\n", helloWasm))
	for range 3 {
		plain.Get(t, "/api/hello/ping")
	}
	if _, h, _ := plain.Get(t, "/api/hello/ping"); h.Get("Retry-After") == "" || !strings.Contains(plain.Log.String(), "rate limit of 2 requests per 1h0m0s exceeded") {
		t.Errorf("a rate limit in the file: Retry-After %q, log:\n%s", h.Get("Retry-After"), plain.Log.String())
	}
	if _, h, _ := start(t, fmt.Sprintf("[server]\nrate_limit = \"2/h\"\n[plugins.hello]\npath = %q\n", helloWasm)).Get(t, "/api/hello/ping"); h.Get("X-RateLimit-Limit") != "2" {
		t.Errorf("a rate limit in the file: X-RateLimit-Limit %q, want 2", h.Get("X-RateLimit-Limit"))
	}
}
