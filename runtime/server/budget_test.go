package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/internal/authtest"
	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// dial opens a connection to the server at url, closed when the test
// ends, whose reads and writes give up after 10 s.
func dial(t *testing.T, url string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// holdingClient asks for path and reads nothing: the server cannot finish
// writing an answer larger than the sockets' buffers (a few MB on
// loopback), and holds it.
func holdingClient(t *testing.T, url, token, path string) *net.TCPConn {
	t.Helper()
	tc := dial(t, url).(*net.TCPConn)
	tc.SetDeadline(time.Time{}) // held as long as the test needs
	fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\n\r\n", path, token)
	return tc
}

// untilStatus repeats GET path until it answers want (or 10 s pass),
// returning the last answer.
func untilStatus(t *testing.T, get func() (int, http.Header, string), want int) (int, http.Header, string) {
	t.Helper()
	var (
		status int
		h      http.Header
		body   string
	)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if status, h, body = get(); status == want {
			break
		}
	}
	return status, h, body
}

// bigAnswersConfig is the hostile plugin's config for answers of up to
// 17 MiB under a response_budget of budget.
func bigAnswersConfig(budget string) string {
	return fmt.Sprintf(`
[server]
response_budget = %q
[plugins.hostile]
path = %q
[plugins.hostile.limits]
memory = "160MiB"
instances = 2
max_response = "17MiB"
`, budget, hostileWasm)
}

func TestResponseBudget(t *testing.T) {
	t.Parallel()
	const big = 16_000_000 // more than loopback sockets buffer
	config := bigAnswersConfig
	in := start(t, config("24MiB"))
	bigPath := fmt.Sprintf("/api/hostile/big?n=%d", big)
	getBig := func() (int, http.Header, string) { return in.Get(t, bigPath) }
	metric := func(name string) float64 {
		return value(scrape(t, func(p string) (int, string) { s, _, b := in.Get(t, p); return s, b }), name)
	}

	// waitHeld waits until an unread answer is held (asking for another
	// before would race with it: the held one could be the one refused).
	waitHeld := func() {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); metric("greenroom_http_response_buffered_bytes") < big; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the unread answer is not held")
			}
		}
	}

	// A client that does not read holds its 16 MB answer; a second one
	// does not fit in 24 MiB and is refused, while small answers fit.
	held := holdingClient(t, in.URL, in.Token, bigPath)
	waitHeld()
	status, h, body := getBig()
	if status != 503 || errorBody(t, body)["code"] != "server_busy" || h.Get("Retry-After") != "1" {
		t.Fatalf("a big answer while another is held: %d %v %.200s", status, h, body)
	}
	if !strings.Contains(body, "server.response_budget") {
		t.Errorf("the refusal does not name server.response_budget: %s", body)
	}
	if status, _, body := in.Get(t, "/api/hostile/big?n=1000"); status != 200 || len(body) != 1000 {
		t.Errorf("a small answer while a big one is held: %d (%d bytes)", status, len(body))
	}
	if got := metric("greenroom_http_response_buffered_bytes"); got < big {
		t.Errorf("greenroom_http_response_buffered_bytes = %v while a %d-byte answer is held", got, big)
	}
	if got := metric("greenroom_http_responses_refused_total"); got < 1 {
		t.Errorf("greenroom_http_responses_refused_total = %v after a refusal", got)
	}
	if got := metric("greenroom_http_response_budget_bytes"); got != 24<<20 {
		t.Errorf("greenroom_http_response_budget_bytes = %v", got)
	}

	// Once the client has read its answer, whole, the budget is free.
	held.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(held), nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 || n != big || err != nil {
		t.Fatalf("the held answer: %d, %d bytes, %v", resp.StatusCode, n, err)
	}
	if status, _, body := untilStatus(t, getBig, 200); status != 200 || len(body) != big {
		t.Fatalf("a big answer after the held one was read: %d (%d bytes)", status, len(body))
	}

	// A client that goes away without reading gives it back too.
	gone := holdingClient(t, in.URL, in.Token, bigPath)
	waitHeld()
	gone.SetLinger(0)
	gone.Close()
	if status, _, _ := untilStatus(t, getBig, 200); status != 200 {
		t.Fatalf("a big answer after the holding client left: %d", status)
	}
	if got := metric("greenroom_http_response_buffered_bytes"); got != 0 {
		t.Errorf("greenroom_http_response_buffered_bytes = %v with nothing held", got)
	}

	// A reload changes the budget, and the caller's share of it (a
	// quarter, but room for one answer of the largest max_response):
	// two unread answers of one caller fit in 128MiB (its share is
	// 32MiB; in 40MiB it was 17MiB, room for one).
	in.SetConfig(config("128MiB"))
	in.Reload(t)
	holdingClient(t, in.URL, in.Token, bigPath)
	waitHeld()
	if status, _, body := getBig(); status != 200 || len(body) != big {
		t.Errorf("a big answer with one held, after a reload to a 128MiB budget: %d (%d bytes)", status, len(body))
	}
	if got := metric("greenroom_http_response_budget_bytes"); got != 128<<20 {
		t.Errorf("greenroom_http_response_budget_bytes = %v after the reload", got)
	}

	// The access log counts the bytes of a streamed answer; the refusal
	// is logged once, with the budget's key.
	var logged, warned bool
	for _, l := range in.LogLines(t) {
		if l["msg"] == "request" && l["path"] == "/api/hostile/big" && l["bytes"] == 1000.0 {
			logged = true
		}
		if l["level"] == "warning" && strings.Contains(fmt.Sprint(l["msg"]), "server.response_budget") {
			warned = true
		}
	}
	if !logged || !warned {
		t.Errorf("access line with bytes 1000: %v; warning naming server.response_budget: %v\n%s", logged, warned, in.Log.String())
	}
}

// The head of an answer to HEAD is held until the client has read it, as
// a body is: a plugin's 16 MB of headers for a client that did not read
// them were given back to server.response_budget as soon as the plugin
// answered, and so did not count while held (clients enough made the
// process grow past the budget, as before it existed).
func TestResponseBudgetHoldsHeads(t *testing.T) {
	t.Parallel()
	const big = 16_000_000 // more than loopback sockets buffer
	in := start(t, bigAnswersConfig("24MiB"))
	bigPath := fmt.Sprintf("/api/hostile/big?n=%d", big)
	getBig := func() (int, http.Header, string) { return in.Get(t, bigPath) }
	buffered := func() float64 {
		return value(scrape(t, func(p string) (int, string) { s, _, b := in.Get(t, p); return s, b }), "greenroom_http_response_buffered_bytes")
	}
	head := func() *net.TCPConn {
		tc := dial(t, in.URL).(*net.TCPConn)
		tc.SetDeadline(time.Time{})
		fmt.Fprintf(tc, "HEAD /api/hostile/bighead?n=%d HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\n\r\n", big, in.Token)
		for deadline := time.Now().Add(10 * time.Second); buffered() < big; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the unread head is not held")
			}
		}
		return tc
	}

	held := head()
	if status, _, body := getBig(); status != 503 || errorBody(t, body)["code"] != "server_busy" {
		t.Fatalf("a big answer while a big head is held: %d %.200s", status, body)
	}
	held.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(held), &http.Request{Method: "HEAD"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || len(resp.Header.Get("X-Big")) != big {
		t.Fatalf("the held head: %d, X-Big of %d bytes", resp.StatusCode, len(resp.Header.Get("X-Big")))
	}
	if status, _, body := untilStatus(t, getBig, 200); status != 200 || len(body) != big {
		t.Fatalf("a big answer after the held head was read: %d (%d bytes)", status, len(body))
	}

	// A client that goes away without reading gives it back too.
	gone := head()
	gone.SetLinger(0)
	gone.Close()
	if status, _, _ := untilStatus(t, getBig, 200); status != 200 {
		t.Fatalf("a big answer after the holding client left: %d", status)
	}
	for deadline := time.Now().Add(10 * time.Second); buffered() != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("greenroom_http_response_buffered_bytes = %v with nothing held", buffered())
		}
	}
}

func TestMaxConnections(t *testing.T) {
	in := start(t, "[server]\nmax_connections = 2\n")
	in.Client.CloseIdleConnections()
	in.Anon.CloseIdleConnections()
	live := func() (net.Conn, string) {
		c := dial(t, in.URL)
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /.greenroom/health/v1/liveness HTTP/1.1\r\nHost: test\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return c, err.Error()
		}
		io.Copy(io.Discard, resp.Body)
		return c, resp.Status
	}
	// The harness's own connections take a moment to close on the
	// server's side: two open connections, kept alive, fill the limit.
	open := func() net.Conn {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			c, status := live()
			if status == "200 OK" {
				return c
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Fatalf("a connection with max_connections = 2: %s", status)
			}
		}
	}
	first := open()
	open()
	if _, status := live(); !strings.HasPrefix(status, "503") {
		t.Fatalf("a third connection with max_connections = 2: %s", status)
	}
	first.Close()
	var status string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, status = live(); status == "200 OK" {
			break
		}
	}
	if status != "200 OK" {
		t.Fatalf("a connection after one of two closed: %s", status)
	}
	if !strings.Contains(in.Log.String(), "server.max_connections") {
		t.Errorf("no log line names server.max_connections:\n%s", in.Log.String())
	}
}

// server.request_budget bounds the request bodies held at once: a client
// sending its body slowly holds what it sent (the buffer grows as the body
// arrives), a body that does not fit beside it gets 503 server_busy, and
// the bytes come back when the call ends or the client leaves.
func TestRequestBudget(t *testing.T) {
	in := start(t, fmt.Sprintf(`
[server]
body_limit = "48KiB"
request_budget = "64KiB"
[plugins.hello]
path = %q
`, helloWasm))
	metric := func(name string) float64 {
		return value(scrape(t, func(p string) (int, string) { s, _, b := in.Get(t, p); return s, b }), name)
	}
	post := func(n int) (int, string) {
		status, _, body := in.Do(t, "POST", "/api/hello/echo", strings.NewReader(strings.Repeat("p", n)))
		return status, body
	}
	// 40 KiB declared, 36 KiB sent: the buffer has grown to hold them.
	slow := dial(t, in.URL)
	fmt.Fprintf(slow, "POST /api/hello/echo HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", in.Token, 40<<10, strings.Repeat("s", 36<<10))
	for deadline := time.Now().Add(10 * time.Second); metric("greenroom_http_request_buffered_bytes") < 36<<10; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the slow body is not held: %v bytes", metric("greenroom_http_request_buffered_bytes"))
		}
	}
	if got := metric("greenroom_http_request_buffered_bytes"); got > 40<<10 {
		t.Errorf("36 KiB of a 40 KiB body hold %v bytes", got)
	}
	if status, body := post(30 << 10); status != 503 || errorBody(t, body)["code"] != "server_busy" || !strings.Contains(body, "server.request_budget") {
		t.Errorf("a 30 KiB body beside the held one: %d %.300s", status, body)
	}
	if status, body := post(1000); status != 200 || len(body) != 1000 {
		t.Errorf("a small body beside the held one: %d (%d bytes)", status, len(body))
	}
	if got := metric("greenroom_http_request_bodies_refused_total"); got < 1 {
		t.Errorf("greenroom_http_request_bodies_refused_total = %v after a refusal", got)
	}
	// The slow client finishes: its answer comes, the bytes come back.
	fmt.Fprint(slow, strings.Repeat("s", 4<<10))
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || len(b) != 40<<10 {
		t.Errorf("the slow body's answer: %d, %d bytes", resp.StatusCode, len(b))
	}
	if status, body := post(30 << 10); status != 200 || len(body) != 30<<10 {
		t.Errorf("a 30 KiB body once the slow one is done: %d (%d bytes)", status, len(body))
	}
	if got := metric("greenroom_http_request_buffered_bytes"); got != 0 {
		t.Errorf("greenroom_http_request_buffered_bytes = %v with no body held", got)
	}
	// A client that leaves mid-body gives its bytes back too.
	gone := dial(t, in.URL)
	fmt.Fprintf(gone, "POST /api/hello/echo HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", in.Token, 40<<10, strings.Repeat("g", 20<<10))
	for deadline := time.Now().Add(10 * time.Second); metric("greenroom_http_request_buffered_bytes") < 20<<10; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the leaving client's body is not held")
		}
	}
	gone.Close()
	for deadline := time.Now().Add(10 * time.Second); metric("greenroom_http_request_buffered_bytes") != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%v bytes still held after the client left", metric("greenroom_http_request_buffered_bytes"))
		}
	}
}

// Bodies of callers let in without a credential (a public route) hold a
// quarter of server.request_budget at most, so that anonymous clients
// cannot starve the authenticated ones; a reload's budget below the
// running body_limit (which needs a restart) is raised to it.
func TestRequestBudgetShares(t *testing.T) {
	config := func(limit, budget string) string {
		return fmt.Sprintf("[server]\nbody_limit = %q\nrequest_budget = %q\n[plugins.hello]\npath = %q\npublic_routes = [\"/ping\"]\n", limit, budget, helloWasm)
	}
	in := start(t, config("48KiB", "64KiB"))
	metric := func(name string) float64 {
		return value(scrape(t, func(p string) (int, string) { s, _, b := in.Get(t, p); return s, b }), name)
	}
	// An anonymous slow body of 12 KiB declared, 10 KiB sent, held.
	slow := dial(t, in.URL)
	fmt.Fprintf(slow, "POST /api/hello/ping HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n%s", 12<<10, strings.Repeat("a", 10<<10))
	for deadline := time.Now().Add(10 * time.Second); metric("greenroom_http_request_buffered_bytes") < 10<<10; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the anonymous slow body is not held")
		}
	}
	// The anonymous share: a quarter of 64KiB, raised to the 48KiB
	// body_limit; 12 KiB held, 40 KiB more do not fit.
	status, _, body := in.DoAnon(t, "POST", "/api/hello/ping", strings.NewReader(strings.Repeat("b", 40<<10)))
	if status != 503 || errorBody(t, body)["code"] != "server_busy" {
		t.Errorf("a second anonymous body past the anonymous quarter: %d %.300s", status, body)
	}
	if status, _, body := in.Do(t, "POST", "/api/hello/echo", strings.NewReader(strings.Repeat("c", 40<<10))); status != 200 || len(body) != 40<<10 {
		t.Errorf("an authenticated 40 KiB body beside the anonymous one: %d (%d bytes)", status, len(body))
	}

	in.SetConfig(config("16KiB", "16KiB"))
	in.Reload(t) // body_limit stays 48KiB until a restart
	if status, _, body := in.Do(t, "POST", "/api/hello/echo", strings.NewReader(strings.Repeat("d", 30000))); status != 200 || len(body) != 30000 {
		t.Errorf("a 30000-byte body after a reload to a 16KiB budget under the running 48KiB body_limit: %d (%.200s)", status, body)
	}
	if !strings.Contains(in.Log.String(), "server.request_budget is below the running server.body_limit") {
		t.Errorf("no warning about the budget under the running body_limit:\n%s", in.Log.String())
	}
}

// A chunked body of exactly server.body_limit fits a request_budget of
// the same size (the check that the body ends there takes no room): its
// buffer once doubled past the limit, and such a body got 503.
func TestChunkedBodyAtTheBudget(t *testing.T) {
	in := start(t, fmt.Sprintf("[server]\nbody_limit = \"64KiB\"\nrequest_budget = \"64KiB\"\n[plugins.hello]\npath = %q\n", helloWasm))
	for _, n := range []int{40000, 64 << 10} {
		r, w := io.Pipe()
		go func() {
			w.Write([]byte(strings.Repeat("k", n)))
			w.Close()
		}()
		if status, _, body := in.Do(t, "POST", "/api/hello/echo", r); status != 200 || len(body) != n {
			t.Errorf("a chunked body of %d bytes under a 64KiB limit and budget: %d (%.200s)", n, status, body)
		}
	}
}

// fasthttp's messages about malformed requests quoted the request's bytes,
// credentials included, as warnings any client could cause one per
// connection: they go to debug, without the bytes. The public share of
// the request budget has room for one body of body_limit.
func TestMalformedRequestsAndPublicBodies(t *testing.T) {
	in := start(t, fmt.Sprintf("[server]\nbody_limit = \"64KiB\"\nrequest_budget = \"64KiB\"\n[plugins.hello]\npath = %q\npublic_routes = [\"/ping\"]\n", helloWasm))
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not-configured-secret-0123456789\r\nContent-Length: abc\r\n\r\n",
		"garbage not-configured-secret-0123456789\r\n\r\n",
	} {
		c := dial(t, in.URL)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(c, raw)
		io.Copy(io.Discard, c)
		c.Close()
	}
	// The 400s' access lines are written as their answers go out.
	time.Sleep(100 * time.Millisecond)
	for _, l := range in.LogLines(t) {
		if strings.Contains(fmt.Sprint(l), "not-configured-secret") {
			t.Errorf("a malformed request's bytes were logged: %v", l)
		}
		if l["level"] == "warning" && l["component"] == "http" {
			t.Errorf("a malformed request logged a warning: %v", l)
		}
	}
	// 60 KiB from an anonymous caller on the public route: over a quarter
	// of the 64KiB budget, within body_limit: read (then 405 from the
	// plugin, which has only GET /ping), not refused for the budget.
	status, _, body := in.DoAnon(t, "POST", "/api/hello/ping", strings.NewReader(strings.Repeat("q", 60<<10)))
	if status == 503 {
		t.Errorf("an anonymous body of 60 KiB under a 64KiB body_limit and budget: %d %.200s", status, body)
	}
}

// A plugin's answer is written after its handler returns: the request
// stays in flight until it is sent, so a shutdown waits for it and, cut
// short, names it. It was logged as no request at all.
func TestShutdownNamesAnAnswerBeingSent(t *testing.T) {
	const big = 16_000_000
	in := start(t, fmt.Sprintf("[plugins.hostile]\npath = %q\n[plugins.hostile.limits]\nmemory = \"160MiB\"\nmax_response = \"17MiB\"\n", hostileWasm))
	holdingClient(t, in.URL, in.Token, fmt.Sprintf("/api/hostile/big?n=%d", big))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if v := value(scrape(t, func(p string) (int, string) { s, _, b := in.Get(t, p); return s, b }), "greenroom_http_response_buffered_bytes"); v >= big {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the unread answer is not held")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := in.Server.Shutdown(ctx)
	if err == nil || !strings.Contains(err.Error(), "cut off: GET /api/hostile/big") || !strings.Contains(err.Error(), "sending its answer") {
		t.Errorf("shutdown with an answer still being sent: %v", err)
	}
}

// During a shutdown's drain a request gets 503 shutting_down; its body is
// read and dropped first, so that the connection closes cleanly and the
// client reads the 503 (closed with the body unread, the connection was
// reset and the answer lost).
func TestShutdownAnswersBodiesCleanly(t *testing.T) {
	t.Parallel()
	in := start(t, fmt.Sprintf("[plugins.ver]\npath = %q\n", guesttest.Build(t, "runtime/server/testdata/guests/ver1")))
	// A slow call keeps the drain going (and the listener open).
	go in.Get(t, "/api/ver/slow?ms=3000")
	in.WaitBusy(t, "ver")
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- in.Server.Shutdown(ctx)
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if status, _, _ := in.DoAnon(t, "GET", "/api/ver/v", nil); status == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not start refusing")
		}
	}
	for i := range 3 {
		// A client still writing its body when the answer comes: with
		// the body left unread, the connection was reset under it.
		c := dial(t, in.URL)
		fmt.Fprintf(c, "POST /api/ver/v HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", in.Token, 64<<10, strings.Repeat("x", 32<<10))
		time.Sleep(200 * time.Millisecond) // a server not reading the body has answered and closed by now
		_, werr := c.Write([]byte(strings.Repeat("y", 32<<10)))
		time.Sleep(200 * time.Millisecond)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		switch {
		case err != nil || werr != nil:
			t.Errorf("request %d during the drain: write %v, read %v", i, werr, err)
		case resp.StatusCode != 503:
			t.Errorf("request %d during the drain: %d", i, resp.StatusCode)
		}
		c.Close()
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// Connections close lingering in the background: a shutdown closing idle
// connections one after another does not wait half a second for each
// client that keeps its end open (20 of them would take 10 s).
func TestShutdownDoesNotWaitForLingeringCloses(t *testing.T) {
	in := start(t, "")
	for range 20 {
		c := dial(t, in.URL)
		fmt.Fprint(c, "GET /.greenroom/health/v1/liveness HTTP/1.1\r\nHost: test\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// Kept open and idle, never read again.
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	begin := time.Now()
	if err := in.Server.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("shutdown with 20 idle connections took %s", took)
	}
}

// A client that sent half a request's head and stopped held every
// shutdown until its deadline, which then reported work cut off (an
// audit: exit status 1 after the whole shutdown_timeout, naming nothing).
// No request of it was admitted: once nothing admitted is left the
// connection is closed and the shutdown ends, clean. A request in its
// handler is still waited for (TestShutdownNamesAnAnswerBeingSent,
// TestShutdownAnswersBodiesCleanly).
func TestShutdownClosesAHalfSentHead(t *testing.T) {
	in := start(t, "")
	c := dial(t, in.URL)
	fmt.Fprint(c, "GET /.greenroom/health/v1/liveness HTTP/1.1\r\nHost: test\r\n")
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	begin := time.Now()
	if err := in.Server.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if took := time.Since(begin); took > 3*time.Second {
		t.Errorf("shutdown with a half-sent head took %s", took)
	}
	// fasthttp answers a head cut off by its read deadline with 408, then
	// closes.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Errorf("the connection is still open: %v", err)
	}
	if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 408") {
		t.Errorf("the client got %q", b)
	}
}

// A request whose head arrived before the shutdown began is in flight
// while its body is still arriving: it is served, and the shutdown waits
// for it. Its read was ended at once (408) and the shutdown reported
// nothing cut off; a body that never ends is named as cut off.
func TestShutdownServesABodyStillArriving(t *testing.T) {
	const body = `{"part":1,"part":2}`
	send := func(t *testing.T, in *servertest.Instance) net.Conn {
		c := dial(t, in.URL)
		fmt.Fprintf(c, "POST /api/hello/echo HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", in.Token, len(body), body[:10])
		time.Sleep(200 * time.Millisecond)
		return c
	}
	shutdown := func(in *servertest.Instance, d time.Duration) <-chan error {
		shut := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			shut <- in.Server.Shutdown(ctx)
		}()
		return shut
	}
	t.Run("served", func(t *testing.T) {
		in := start(t, fmt.Sprintf("[plugins.hello]\npath = %q\n", helloWasm))
		c := send(t, in)
		shut := shutdown(in, 10*time.Second)
		time.Sleep(300 * time.Millisecond)
		fmt.Fprint(c, body[10:])
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(got) != body {
			t.Errorf("the request whose body arrived during the shutdown: %d %q", resp.StatusCode, got)
		}
		if err := <-shut; err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	// Cut off, its read is ended when the shutdown returns: it is
	// answered 408 and logged (the process exited with its read pending,
	// and it had no access log line).
	t.Run("cut off", func(t *testing.T) {
		in := start(t, fmt.Sprintf("[plugins.hello]\npath = %q\n", helloWasm))
		c := send(t, in) // the rest never comes
		if err := <-shutdown(in, 500*time.Millisecond); err == nil || !strings.Contains(err.Error(), "its body still arriving") {
			t.Errorf("shutdown with a body that never ends: %v, want it named as cut off", err)
		}
		returned := time.Now()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 408 || time.Since(returned) > time.Second {
			t.Fatalf("the request cut off: %v %v after %v, want 408 as the shutdown returns", resp, err, time.Since(returned))
		}
		if n := strings.Count(in.Log.String(), `"status":408`); n != 1 {
			t.Errorf("%d access log lines with status 408, want 1:\n%s", n, in.Log)
		}
	})
}

// Each authenticated principal's bodies hold a quarter of
// server.request_budget at most too (but room for one body of
// body_limit), so that one principal cannot refuse every other caller's
// bodies by holding the whole budget with slow uploads (an audit).
func TestRequestBudgetPerPrincipal(t *testing.T) {
	first, other := strings.Repeat("f", 40), strings.Repeat("o", 40)
	in := start(t, fmt.Sprintf("[server]\nbody_limit = \"16KiB\"\nrequest_budget = \"64KiB\"\n[auth.tokens.first]\ntoken = %q\nsubject = \"service:first\"\nadmin = true\n[auth.tokens.other]\ntoken = %q\nsubject = \"service:other\"\n[plugins.hello]\npath = %q\n", first, other, helloWasm))
	metric := func(name string) float64 {
		return value(scrape(t, func(p string) (int, string) { s, _, b := in.Get(t, p, "Authorization", "Bearer "+first); return s, b }), name)
	}
	// The test's principal holds its quarter (16 KiB) with a slow body.
	slow := dial(t, in.URL)
	fmt.Fprintf(slow, "POST /api/hello/echo HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", first, 16<<10, strings.Repeat("s", 12<<10))
	for deadline := time.Now().Add(10 * time.Second); metric("greenroom_http_request_buffered_bytes") < 12<<10; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow body is not held")
		}
	}
	if status, _, body := in.Do(t, "POST", "/api/hello/echo", strings.NewReader(strings.Repeat("a", 8<<10)), "Authorization", "Bearer "+first); status != 503 || errorBody(t, body)["code"] != "server_busy" {
		t.Errorf("a second body of the principal past its quarter: %d %.300s", status, body)
	}
	status, _, body := in.Do(t, "POST", "/api/hello/echo", strings.NewReader(strings.Repeat("b", 8<<10)), "Authorization", "Bearer "+other)
	if status != 200 || len(body) != 8<<10 {
		t.Errorf("another principal's body beside the first one's quarter: %d (%.200s)", status, body)
	}
	// The slow body ends: its principal's share comes back.
	fmt.Fprint(slow, strings.Repeat("s", 4<<10))
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(slow), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the slow body's answer: %v %v", resp, err)
	}
	if status, _, body := in.Do(t, "POST", "/api/hello/echo", strings.NewReader(strings.Repeat("c", 16<<10)), "Authorization", "Bearer "+first); status != 200 || len(body) != 16<<10 {
		t.Errorf("the principal's body once its slow one is done: %d (%.200s)", status, body)
	}
}

// A shutdown cut short names the requests it cut off, with their paths as
// the log shows them: a JWT in the path is [REDACTED] there too (it was
// named as sent, and logged so).
func TestShutdownNamesPathsRedacted(t *testing.T) {
	t.Parallel()
	in := start(t, fmt.Sprintf("[plugins.hostile]\npath = %q\n[plugins.hostile.limits]\ninstances = 1\ntimeout = \"5s\"\nqueue_timeout = \"5s\"\n", hostileWasm))
	const jwtShaped = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
	go in.Get(t, "/api/hostile/nap?ms=3000")
	in.WaitBusy(t, "hostile")
	go in.Get(t, "/api/hostile/x/"+jwtShaped) // waits for the busy instance
	for deadline := time.Now().Add(10 * time.Second); in.RT.Slot("hostile").Plugin().Stats().QueueWaits < 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second call does not wait")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := in.Server.Shutdown(ctx)
	if err == nil || !strings.Contains(err.Error(), "GET /api/hostile/x/[REDACTED]") || strings.Contains(err.Error(), jwtShaped[:20]) {
		t.Errorf("shutdown cut short: %v, want the JWT in the path [REDACTED]", err)
	}
}

// A principal's share of server.request_budget is kept by its whole
// identity, as its rate limit is: a JWT whose subject is a static
// token's holds a share of its own, and cannot refuse the static token's
// bodies by filling its share with slow uploads. Another JWT of the same
// issuer and subject (other bytes) is the same principal and shares it.
func TestRequestBudgetJWTCannotHoldAStaticTokensShare(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, authConfig(idp, "[server]\nbody_limit = \"16KiB\"\nrequest_budget = \"64KiB\"\n"))
	metric := func(name string) float64 {
		return value(scrape(t, func(p string) (int, string) {
			s, _, b := in.Get(t, p, "Authorization", "Bearer "+opsToken)
			return s, b
		}), name)
	}
	impostor := idp.Sign(t, "RS256", authtest.Claims("service:ci"))
	slow := dial(t, in.URL)
	fmt.Fprintf(slow, "POST /api/hello/echo HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", impostor, 16<<10, strings.Repeat("s", 12<<10))
	for deadline := time.Now().Add(10 * time.Second); metric("greenroom_http_request_buffered_bytes") < 12<<10; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow body is not held")
		}
	}
	same := idp.Sign(t, "ES256", authtest.Claims("service:ci"))
	if status, _, body := in.Do(t, "POST", "/api/hello/echo", strings.NewReader(strings.Repeat("a", 8<<10)), "Authorization", "Bearer "+same); status != 503 || errorBody(t, body)["code"] != "server_busy" {
		t.Errorf("another JWT of the same subject past the share: %d %.300s, want 503", status, body)
	}
	status, _, body := in.Do(t, "POST", "/api/hello/echo", strings.NewReader(strings.Repeat("b", 8<<10)), "Authorization", "Bearer "+ciToken)
	if status != 200 || len(body) != 8<<10 {
		t.Errorf("the static token of the JWT's subject beside the JWT's full share: %d (%.200s), want 200", status, body)
	}
	fmt.Fprint(slow, strings.Repeat("s", 4<<10))
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(slow), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the slow body's answer: %v %v", resp, err)
	}
}

// Each authenticated principal's unsent answers hold a quarter of
// server.response_budget at most (but room for one answer of the largest
// limits.max_response), and those of the callers let in without a
// credential (public routes) a quarter together, as with request bodies:
// one principal asking for large answers and never reading them, or
// anonymous clients doing so, used up the whole budget, and every other
// caller's answers got 503 server_busy. An answer to HEAD holds its
// caller's share too, and gives it back once written.
func TestResponseBudgetPerPrincipal(t *testing.T) {
	t.Parallel()
	const big = 16_000_000 // more than loopback sockets buffer
	first, other := strings.Repeat("f", 40), strings.Repeat("o", 40)
	in := start(t, fmt.Sprintf(`
[server]
response_budget = "64MiB"
[auth.tokens.first]
token = %q
subject = "service:first"
admin = true
[auth.tokens.other]
token = %q
subject = "service:other"
[plugins.hostile]
path = %q
public_routes = ["/big"]
[plugins.hostile.limits]
memory = "160MiB"
instances = 2
max_response = "17MiB"
[plugins.hostile.config]
public = "/big"
`, first, other, hostileWasm))
	bigPath := fmt.Sprintf("/api/hostile/big?n=%d", big)
	buffered := func() float64 {
		return value(scrape(t, func(p string) (int, string) {
			s, _, b := in.Get(t, p, "Authorization", "Bearer "+first)
			return s, b
		}), "greenroom_http_response_buffered_bytes")
	}
	// ask asks for a big answer with token ("" for none) and reads its
	// head only: a 200's body is left unread, and held; a refusal's body
	// is returned.
	ask := func(token string) (net.Conn, int, string) {
		t.Helper()
		c := dial(t, in.URL)
		authz := ""
		if token != "" {
			authz = "Authorization: Bearer " + token + "\r\n"
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\n%s\r\n", bigPath, authz)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 200 {
			return c, 200, ""
		}
		b, _ := io.ReadAll(resp.Body)
		return c, resp.StatusCode, string(b)
	}
	// holdAll asks for big answers with token, reading none, until one
	// is refused (5 at most): the number held, and their connections.
	holdAll := func(token string) (int, []net.Conn) {
		t.Helper()
		var held []net.Conn
		for range 5 {
			c, status, body := ask(token)
			if status != 200 {
				if status != 503 || errorBody(t, body)["code"] != "server_busy" || !strings.Contains(body, "server.response_budget") {
					t.Fatalf("a big unread answer refused with %d %.300s, want 503 server_busy naming server.response_budget", status, body)
				}
				break
			}
			held = append(held, c)
		}
		return len(held), held
	}
	getBig := func(token string) func() (int, http.Header, string) {
		return func() (int, http.Header, string) {
			return in.Get(t, bigPath, "Authorization", "Bearer "+token)
		}
	}

	// A principal holds its quarter (16MiB: room for one answer of
	// 17MiB), and no more; another principal's answer is served beside.
	n, held := holdAll(first)
	if n != 1 {
		t.Errorf("one principal held %d unread answers of %d bytes under a 64MiB budget, want 1 (its share)", n, big)
	}
	if status, _, body := getBig(other)(); status != 200 || len(body) != big {
		t.Errorf("another principal's big answer beside the first one's unread ones: %d (%.200s)", status, body)
	}
	// Anonymous clients hold their quarter together, and no more: not
	// the principals' shares.
	if n, _ := holdAll(""); n != 1 {
		t.Errorf("anonymous clients held %d unread answers of %d bytes beside the principal's, want 1 (their share)", n, big)
	}
	if status, _, body := getBig(other)(); status != 200 || len(body) != big {
		t.Errorf("another principal's big answer beside the first one's and the anonymous unread ones: %d (%.200s)", status, body)
	}
	if status, _, body := in.Get(t, "/api/hostile/big?n=1000", "Authorization", "Bearer "+first); status != 200 || len(body) != 1000 {
		t.Errorf("a small answer to the principal holding its share: %d (%.200s)", status, body)
	}

	// The principal's unread answers give its share back; an unread
	// head to HEAD holds it as a body does, and gives it back too.
	for _, c := range held {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	if status, _, _ := untilStatus(t, getBig(first), 200); status != 200 {
		t.Fatalf("the principal's big answer once its unread ones were closed: %d", status)
	}
	before := buffered()
	head := dial(t, in.URL).(*net.TCPConn)
	fmt.Fprintf(head, "HEAD /api/hostile/bighead?n=%d HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\n\r\n", big, first)
	for deadline := time.Now().Add(10 * time.Second); buffered() < before+big; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the unread head is not held")
		}
	}
	if status, _, body := getBig(first)(); status != 503 || errorBody(t, body)["code"] != "server_busy" {
		t.Errorf("the principal's big answer while its big head is unread: %d %.200s, want 503", status, body)
	}
	if status, _, body := getBig(other)(); status != 200 || len(body) != big {
		t.Errorf("another principal's big answer beside the first one's unread head: %d (%.200s)", status, body)
	}
	head.SetLinger(0)
	head.Close()
	if status, _, _ := untilStatus(t, getBig(first), 200); status != 200 {
		t.Fatalf("the principal's big answer once its unread head was closed: %d", status)
	}
}

// LogCutOff writes the access log line of a request still in flight,
// whose handler has not returned (at shutdown: a call left running, which
// never returns), and only its: the handler, returning after, writes no
// second one, and a request answered before is not logged again.
func TestLogCutOffWritesOneLine(t *testing.T) {
	t.Parallel()
	in := start(t, fmt.Sprintf("[plugins.hostile]\npath = %q\n[plugins.hostile.limits]\ntimeout = \"30s\"\n", hostileWasm))
	if status, _, _ := in.Get(t, "/api/hostile/ok"); status != 200 {
		t.Fatalf("GET /ok: %d", status)
	}
	answered := make(chan int, 1)
	go func() {
		status, _, _ := in.Get(t, "/api/hostile/ctxwait") // until its ctx ends
		answered <- status
	}()
	in.WaitBusy(t, "hostile")
	lines := func(path string) []map[string]any {
		var out []map[string]any
		for _, l := range strings.Split(in.Log.String(), "\n") {
			var v map[string]any
			if json.Unmarshal([]byte(l), &v) == nil && v["msg"] == "request" && v["path"] == path {
				out = append(out, v)
			}
		}
		return out
	}
	in.Server.LogCutOff()
	got := lines("/api/hostile/ctxwait")
	if len(got) != 1 || got[0]["status"] != 503.0 || got[0]["plugin"] != "hostile" || got[0]["principal"] != "service:servertest" || got[0]["credential"] != "token:servertest" || got[0]["method"] != "GET" {
		t.Fatalf("access log lines of the request in flight: %v, want one, 503, plugin hostile, its principal and credential", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	in.Server.Shutdown(ctx) // interrupts the call: its handler returns
	select {
	case <-answered:
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not end")
	}
	time.Sleep(100 * time.Millisecond)
	if got := lines("/api/hostile/ctxwait"); len(got) != 1 {
		t.Errorf("access log lines once its handler returned: %v, want the one", got)
	}
	if got := lines("/api/hostile/ok"); len(got) != 1 {
		t.Errorf("access log lines of the request answered before: %v, want one", got)
	}
}

// A caller's share of server.response_budget has room for one answer of
// the largest limits.max_response, whatever the answer holds past its
// envelope: a Location into greenroom is held rewritten into the mount,
// beside the plugin's own. A 17MiB answer with a 1.5 KB Location, under
// a 64MiB budget (shares of 17MiB), was refused 503 server_busy by its
// caller's share, which held nothing, on every try: the budget was
// empty, and the answer within max_response.
func TestResponseBudgetShareFitsOneAnswer(t *testing.T) {
	t.Parallel()
	in := start(t, bigAnswersConfig("64MiB"))
	n := 17<<20 - 2000
	path := fmt.Sprintf("/api/hostile/big?n=%d&location=/%s", n, strings.Repeat("x", 1500))
	status, h, body := in.Get(t, path)
	if status != 200 || len(body) != n {
		t.Fatalf("an answer within max_response with a Location, nothing else held: %d (%d bytes) %.300s", status, len(body), body)
	}
	if loc := h.Get("Location"); !strings.HasPrefix(loc, "/api/hostile/xxx") {
		t.Errorf("Location %.40q, want it mounted", loc)
	}
}

// The warning about a body refused for a budget, or a caller's share of
// it, from the environment (or a share computed from a body_limit from
// there) does not tell it: its "budget" field said 49152 for a share of
// "${B}" with B=48KiB, which the log's redaction of "48KiB" misses.
func TestBudgetWarningHidesBudgetsFromTheEnvironment(t *testing.T) {
	in := servertest.Start(t, fmt.Sprintf("[server]\nbody_limit = \"${GR_BL}\"\nrequest_budget = \"${GR_RB}\"\n[plugins.hello]\npath = %q\n", helloWasm),
		servertest.Options{CacheDir: cacheDir, Env: map[string]string{"GR_BL": "48KiB", "GR_RB": "64KiB"}})
	metric := func(name string) float64 {
		return value(scrape(t, func(p string) (int, string) { s, _, b := in.Get(t, p); return s, b }), name)
	}
	slow := dial(t, in.URL)
	fmt.Fprintf(slow, "POST /api/hello/echo HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", in.Token, 40<<10, strings.Repeat("s", 36<<10))
	for deadline := time.Now().Add(10 * time.Second); metric("greenroom_http_request_buffered_bytes") < 36<<10; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the slow body is not held: %v bytes", metric("greenroom_http_request_buffered_bytes"))
		}
	}
	if status, _, body := in.Do(t, "POST", "/api/hello/echo", strings.NewReader(strings.Repeat("p", 30<<10))); status != 503 || errorBody(t, body)["code"] != "server_busy" {
		t.Fatalf("a 30 KiB body beside the held one: %d %.300s", status, body)
	}
	warnings := linesWith(t, in, "request refused")
	if len(warnings) == 0 {
		t.Fatal("no warning about the refusal")
	}
	for _, w := range warnings {
		if w["budget"] != "[REDACTED]" {
			t.Errorf("the warning tells the budget: %v", w)
		}
	}
	slow.Close()
}
