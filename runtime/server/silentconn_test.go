package server_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// A connection that sends no byte and then closes, is reset, or stays
// silent past read_timeout made no request: it is closed without an
// answer, an access log line or a count in greenroom_http_requests_total.
// It was answered 408 (timeout) or 502 (reset) and counted as such, which
// a load balancer's TCP health checks turned into a stream of 5xx. A head
// cut off partway by a reset is a malformed request: 400, not 502.
func TestConnectionWithoutARequest(t *testing.T) {
	t.Parallel()
	in := start(t, "[server]\nread_timeout = \"300ms\"\n")
	addr := strings.TrimPrefix(in.URL, "http://")
	for _, tc := range []struct {
		name string
		// send is what the client sends before it ends the connection.
		send string
		// wait is how long the client waits before it ends it.
		wait time.Duration
		// close ends the client's side of the connection (it still
		// reads the answer); reset ends the connection with a reset.
		close, reset bool
		// status is the line counted and logged, 0 for none.
		status int
	}{
		{name: "close", wait: 50 * time.Millisecond, close: true},
		{name: "reset", wait: 50 * time.Millisecond, reset: true},
		{name: "past read_timeout", wait: time.Second},
		{name: "half a head, reset", send: "GET /.greenroom/health/v1/liveness HTTP/1.1\r\nHost: te", wait: 50 * time.Millisecond, reset: true, status: 400},
		{name: "half a head, close", send: "GET /.greenroom/health/v1/liveness HTTP/1.1\r\nHost: te", wait: 50 * time.Millisecond, close: true, status: 400},
		{name: "half a head, past read_timeout", send: "GET /.greenroom/health/v1/liveness HTTP/1.1\r\nHost: te", wait: time.Second, status: 408},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := requestLines(t, in.LogLines(t))
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.send != "" {
				fmt.Fprint(c, tc.send)
			}
			time.Sleep(tc.wait)
			var got []byte
			if tc.reset {
				c.(*net.TCPConn).SetLinger(0)
			} else {
				if tc.close {
					c.(*net.TCPConn).CloseWrite()
				}
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				got, _ = io.ReadAll(c)
			}
			c.Close()
			if tc.status == 0 && len(got) > 0 {
				t.Errorf("the client got %q", got)
			}
			// Give the server the time to log what it would.
			time.Sleep(200 * time.Millisecond)
			lines := requestLines(t, in.LogLines(t))[len(before):]
			switch {
			case tc.status == 0 && len(lines) > 0:
				t.Errorf("access log lines for a connection that sent nothing: %v", lines)
			case tc.status != 0 && (len(lines) != 1 || lines[0]["status"] != float64(tc.status)):
				t.Errorf("access log lines %v, want one of status %d", lines, tc.status)
			}
		})
	}
	// The metrics agree with the log: two 400s, one 408, nothing else.
	fams := scrape(t, func(path string) (int, string) {
		status, _, body := in.Get(t, path)
		return status, body
	})
	for _, status := range []string{"400", "408", "502"} {
		want := map[string]float64{"400": 2, "408": 1, "502": -1 /* no such series */}[status]
		if got := value(fams, "greenroom_http_requests_total", "status", status); got != want {
			t.Errorf("greenroom_http_requests_total{status=%q} = %v, want %v", status, got, want)
		}
	}
}

// requestLines are the access log's lines among lines.
func requestLines(t *testing.T, lines []map[string]any) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] == "request" {
			out = append(out, l)
		}
	}
	return out
}
