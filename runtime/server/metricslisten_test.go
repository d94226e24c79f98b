package server_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// The metrics_listen server has the main listener's bounds: a kept-alive
// connection closes after idle_timeout, and a connection past
// max_connections is closed at once. It had none: an idle connection
// stayed open for ever, so anyone reaching the address could hold
// connections until the process ran out of file descriptors.
func TestMetricsListenBounded(t *testing.T) {
	in := start(t, `
[server]
idle_timeout = "300ms"
read_timeout = "1s"
max_connections = 2
`)
	addr := serveMetrics(t, in)

	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// closed reports whether the server closes c within d, reading (and
	// dropping) whatever it answered first.
	closed := func(c net.Conn, d time.Duration) bool {
		c.SetReadDeadline(time.Now().Add(d))
		_, err := io.Copy(io.Discard, c)
		return !isTimeout(err) // EOF or reset: closed by the server; a timeout: still open
	}

	// A kept-alive connection after its answer: closed at idle_timeout.
	c := dial()
	io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape: %v %v", resp, err)
	}
	if !closed(c, 3*time.Second) {
		t.Error("an idle kept-alive connection was still open 3s after its answer (idle_timeout 300ms)")
	}

	// Two connections sending a head slowly hold max_connections: a
	// third is closed at once, unanswered.
	dial().Write([]byte("GET /metrics HTTP/1.1\r\n"))
	dial().Write([]byte("GET /metrics HTTP/1.1\r\n"))
	time.Sleep(100 * time.Millisecond) // accepted
	third := dial()
	io.WriteString(third, "GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
	third.SetReadDeadline(time.Now().Add(2 * time.Second))
	if b, err := io.ReadAll(third); len(b) != 0 || isTimeout(err) {
		t.Errorf("a connection past max_connections: %.100q %v, want it closed unanswered", b, err)
	}
	// Once they are gone, scrapes are served again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scrape served once the slow connections ended: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// serveMetrics serves in's metrics_listen server on a free port until
// the test ends, and returns its address.
func serveMetrics(t *testing.T, in *servertest.Instance) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, capped := in.Server.MetricsServer(ln)
	go srv.Serve(capped)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// The metrics_listen access line shows a request's path as the main
// listener's does: a config secret the client percent-encoded where no
// encoding is needed (%59 for Y, lower-case hex), which the log's
// redaction does not find as sent, is shown decoded and [REDACTED], and
// what is shaped like a JWT is [REDACTED] too. It logged the path as
// sent, the secret and the JWT readable in it.
func TestMetricsListenPathRedacted(t *testing.T) {
	const secret = "YmetricsSecret+42"
	const jwtShaped = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
	in := servertest.Start(t, "[plugins.hello]\npath = \""+helloWasm+"\"\n[plugins.hello.config]\ngreeting = \"${MS}\"\n",
		servertest.Options{CacheDir: cacheDir, Env: map[string]string{"MS": secret}})
	addr := serveMetrics(t, in)
	for _, path := range []string{"/%59metricsSecret%2b42", "/metrics/%59metrics%53ecret+42", "/x/" + jwtShaped} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", path, resp.StatusCode)
		}
	}
	lines := 0
	for _, l := range in.LogLines(t) {
		if l["listener"] == "metrics_listen" {
			lines++
			if l["ip"] != "127.0.0.1" {
				t.Errorf("metrics_listen access line with ip %v, want the peer's, 127.0.0.1", l["ip"])
			}
			if p, _ := l["path"].(string); !strings.Contains(p, "[REDACTED]") {
				t.Errorf("metrics_listen access line with path %q, want the secret or the JWT [REDACTED]", p)
			}
		}
	}
	if lines != 3 {
		t.Errorf("%d metrics_listen access lines, want 3:\n%s", lines, in.Log.String())
	}
	for _, leak := range []string{"metricsSecret", "metrics%53ecret", jwtShaped[:20]} {
		if strings.Contains(in.Log.String(), leak) {
			t.Errorf("the log holds %q:\n%s", leak, in.Log.String())
		}
	}
}

// "OPTIONS *" on metrics_listen is answered as the main listener answers
// it, 404 not_found in JSON with a request id, and logged: net/http
// answered it itself, a bare 200 with no id and no access log line.
func TestMetricsListenOptionsStar(t *testing.T) {
	in := start(t, "")
	metricsAnswers(t, in, serveMetrics(t, in), "OPTIONS *", 404, "not_found")
}

// A method greenroom does not implement gets 501 not_implemented on
// metrics_listen as on the main listener, whatever the path: it got 405
// on /metrics and 404 elsewhere.
func TestMetricsListenUnknownMethod(t *testing.T) {
	in := start(t, "")
	addr := serveMetrics(t, in)
	for _, target := range []string{"/metrics", "/other"} {
		metricsAnswers(t, in, addr, "BREW "+target, 501, "not_implemented")
	}
}

// metrics_listen routes the path as sent, as the main listener does:
// /%6detrics (a letter percent-encoded) was served the metrics (net/http's
// decoded path is /metrics), where the main listener answers 404;
// another letter case, // and an encoded slash were 404 already.
func TestMetricsListenPathAsSent(t *testing.T) {
	in := start(t, "[log]\naccess_log = true\n")
	addr := serveMetrics(t, in)
	for _, target := range []string{"/%6detrics", "/%6Detrics", "/metric%73", "/%2Fmetrics", "/METRICS", "/Metrics", "//metrics", "/metrics/"} {
		metricsAnswers(t, in, addr, "GET "+target, 404, "not_found")
	}
	resp, err := http.Get("http://" + addr + "/metrics?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /metrics?x=1: %d, want 200", resp.StatusCode)
	}
}

// metricsAnswers sends metrics_listen at addr a request with the request
// line line (and an X-Request-Id), and checks that it is answered status
// with code in JSON, the request id returned and the request logged.
func metricsAnswers(t *testing.T, in *servertest.Instance, addr, line string, status int, code string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	id := "req-" + strconv.Itoa(len(in.LogLines(t)))
	io.WriteString(c, line+" HTTP/1.1\r\nHost: m\r\nX-Request-Id: "+id+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status || !strings.Contains(string(body), `"code":"`+code+`"`) || resp.Header.Get("X-Request-Id") != id {
		t.Errorf("%s: %d %v %s, want %d %s with the request id", line, resp.StatusCode, resp.Header, body, status, code)
	}
	logged := false
	for _, l := range in.LogLines(t) {
		logged = logged || l["listener"] == "metrics_listen" && l["request_id"] == id && l["status"] == float64(status)
	}
	if !logged {
		t.Errorf("no access log line for %s:\n%s", line, in.Log.String())
	}
}
