package server_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, capped := in.Server.MetricsServer(ln)
	go srv.Serve(capped)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

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

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
