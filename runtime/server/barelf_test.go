package server_test

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const liveness = "/.greenroom/health/v1/liveness"

// ask writes each piece of a request on a new connection (a pause between
// them) and returns the answer's status and how long it took to come.
func ask(t *testing.T, url string, pieces ...string) (int, string, time.Duration) {
	t.Helper()
	conn := dial(t, url)
	began := time.Now()
	for i, p := range pieces {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := io.WriteString(conn, p); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: %v after %v", strings.Join(pieces, ""), err, time.Since(began))
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), time.Since(began)
}

// TestBareLFHeadRefusedAtOnce: a request whose head ends in an empty line
// that is not a CRLF after a CRLF ("\n\n") is never read by the HTTP
// library, which waits for a CRLF CRLF that does not come: it was answered
// 408 at server.read_timeout, 30 s later by default. greenroom refuses a
// head with a bare LF anyway (TestAmbiguousFramingRefused): on a new
// connection it is now answered 400 at once. What the library does take
// is still served.
func TestBareLFHeadRefusedAtOnce(t *testing.T) {
	in := start(t, "[server]\nread_timeout = \"20s\"\n")
	for _, pieces := range [][]string{
		{"GET " + liveness + " HTTP/1.1\nHost: x\n\n"},
		{"GET " + liveness + " HTTP/1.1\r\nHost: x\r\n\n"},
		{"GET " + liveness + " HTTP/1.1\r\nHost: x\n\r\n"},
		{"GET " + liveness + " HTTP/1.0\n\n"},
		{"POST " + liveness + " HTTP/1.1\nHost: x\nContent-Length: 5\n\n", "hello"},
		{"GET " + liveness + " HTTP/1.1\nHost: x\n", "\n"},
		{"GET " + liveness + " HTTP/1.1\nHost: x\n\n", "GET " + liveness + " HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		status, body, took := ask(t, in.URL, pieces...)
		if status != 400 || took > 5*time.Second || !strings.Contains(body, "bare LF") || !strings.Contains(body, `"code":"bad_request"`) {
			t.Errorf("%q: %d after %v (%s), want 400 at once", strings.Join(pieces, ""), status, took.Round(time.Millisecond), body)
		}
	}
	for _, pieces := range [][]string{
		{"GET " + liveness + " HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"GET " + liveness + " HTTP/1.1\r\nHost: x\r\n", "\r\n"},
		// The library takes a request line ended by a bare LF, and a
		// request line alone followed by CRLF.
		{"GET " + liveness + " HTTP/1.1\nHost: x\r\n\r\n"},
		{"GET " + liveness + " HTTP/1.0\n\r\n"},
	} {
		if status, body, took := ask(t, in.URL, pieces...); status != 200 {
			t.Errorf("%q: %d after %v (%s), want 200", strings.Join(pieces, ""), status, took.Round(time.Millisecond), body)
		}
	}
}

// TestBareLFHeadOnKeptAliveConnection: a later request's head on a
// kept-alive connection is not watched (where it begins in what a read
// returns is not known: after a body, or pipelined): one ended by "\n\n"
// is still answered 408 at server.read_timeout, as docs/sandbox.md says.
func TestBareLFHeadOnKeptAliveConnection(t *testing.T) {
	in := start(t, "[server]\nread_timeout = \"1s\"\n")
	conn := dial(t, in.URL)
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET "+liveness+" HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	began := time.Now()
	io.WriteString(conn, "GET "+liveness+" HTTP/1.1\nHost: x\n\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 408 || time.Since(began) < 500*time.Millisecond {
		t.Fatalf("second request: %v %v after %v, want 408 at read_timeout", resp, err, time.Since(began))
	}
}
