package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
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

// writePieces writes each piece on conn, with a pause between them (so
// that each is read apart), ignoring errors: the server may have answered
// and closed.
func writePieces(conn net.Conn, pieces ...string) {
	for i, p := range pieces {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		io.WriteString(conn, p)
	}
}

// readOKs reads n answers from br, each a 200 (the requests written
// before the one a test is about), failing the test with what otherwise.
func readOKs(t *testing.T, br *bufio.Reader, n int, what string) {
	t.Helper()
	for i := 0; i < n; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: answer %d: %v %v", what, i, resp, err)
		}
		io.Copy(io.Discard, resp.Body)
	}
}

// TestBareLFHeadRefusedAtOnce: a request whose head ends in an empty line
// that is not a CRLF after a CRLF ("\n\n") is never read by the HTTP
// library, which waits for a CRLF CRLF that does not come: it was answered
// 408 at server.read_timeout, 30 s later by default. greenroom refuses a
// head with a bare LF anyway (TestAmbiguousFramingRefused): on a new
// connection it is now answered 400 at once. What the library does take
// is still served, also after empty lines before the request line, which
// it skips, whatever reads they arrive in: a bare LF among them is no
// head's end (taken for one, it got such a request refused 400 bare LF,
// or its connection closed with no answer).
func TestBareLFHeadRefusedAtOnce(t *testing.T) {
	t.Parallel()
	in := start(t, "[server]\nread_timeout = \"20s\"\n")
	for _, pieces := range [][]string{
		{"GET " + liveness + " HTTP/1.1\nHost: x\n\n"},
		{"GET " + liveness + " HTTP/1.1\r\nHost: x\r\n\n"},
		{"GET " + liveness + " HTTP/1.1\r\nHost: x\n\r\n"},
		{"GET " + liveness + " HTTP/1.0\n\n"},
		{"POST " + liveness + " HTTP/1.1\nHost: x\nContent-Length: 5\n\n", "hello"},
		{"GET " + liveness + " HTTP/1.1\nHost: x\n", "\n"},
		{"GET " + liveness + " HTTP/1.1\nHost: x\n\n", "GET " + liveness + " HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"\n\r\n", "GET " + liveness + " HTTP/1.0\n\n"},
		{"\n\n", "GET " + liveness + " HTTP/1.1\nHost: x\n", "\n"},
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
		// Empty lines before the request line, ended by a bare LF.
		{"\n\nGET " + liveness + " HT", "TP/1.1\r\nHost: x\r\n\r\n"},
		{"\n\r\n", "GET " + liveness + " HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"\r\n\n", "GET " + liveness + " HTTP/1.1\r\nHost: x\r\n", "\r\n"},
		{"\n", "\n", "GET " + liveness + " HTTP/1.0\n\r\n"},
	} {
		if status, body, took := ask(t, in.URL, pieces...); status != 200 {
			t.Errorf("%q: %d after %v (%s), want 200", strings.Join(pieces, ""), status, took.Round(time.Millisecond), body)
		}
	}
}

// TestBareLFHeadOnKeptAliveConnection: a later request of a kept-alive
// connection whose head ends in an empty line that is not a CRLF after a
// CRLF is refused 400 at once, as the connection's first request is: it
// was answered 408 at server.read_timeout. Whatever the request before it
// was (a body read by its route, one not read, none), and on a third
// request as on a second; well-framed requests between them are served,
// also after empty lines ended by a bare LF before their request line.
func TestBareLFHeadOnKeptAliveConnection(t *testing.T) {
	in := start(t, "[server]\nread_timeout = \"20s\"\n")
	ok := "GET " + liveness + " HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, c := range []struct {
		before []string // the requests answered first, the connection kept
		pieces []string // the bare-LF request, written piece by piece
	}{
		{[]string{ok}, []string{"GET " + liveness + " HTTP/1.1\nHost: x\n\n"}},
		{[]string{ok, ok}, []string{"GET " + liveness + " HTTP/1.1\nHost: x\n\n"}},
		{[]string{ok}, []string{"GET " + liveness + " HTTP/1.1\r\nHost: x\r\n\n"}},
		{[]string{ok}, []string{"GET " + liveness + " HTTP/1.1\r\nHost: x\n\r\n"}},
		{[]string{ok}, []string{"GET " + liveness + " HTTP/1.1\nHost: x\n", "\n"}},
		{[]string{ok}, []string{"POST " + liveness + " HTTP/1.1\nHost: x\nContent-Length: 5\n\n", "hello"}},
		// The body of the request before is not read by its route
		// (the server drops it), and carries what would end a head.
		{[]string{"POST " + liveness + " HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\na\n\nb\n\n"},
			[]string{"GET " + liveness + " HTTP/1.1\nHost: x\n\n"}},
		{[]string{"POST " + liveness + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n\n\n\n\n\r\n0\r\n\r\n"},
			[]string{"GET " + liveness + " HTTP/1.1\nHost: x\n\n"}},
	} {
		conn := dial(t, in.URL)
		br := bufio.NewReader(conn)
		for _, req := range c.before {
			io.WriteString(conn, req)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.Close || resp.StatusCode >= 500 || resp.StatusCode == 400 {
				t.Fatalf("%q: %v %v", req, resp, err)
			}
			io.Copy(io.Discard, resp.Body)
		}
		began := time.Now()
		writePieces(conn, c.pieces...)
		what := strings.Join(c.pieces, "")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q after %q: %v after %v", what, c.before, err, time.Since(began))
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !strings.Contains(string(b), "bare LF") || !strings.Contains(string(b), `"code":"bad_request"`) {
			t.Errorf("%q after %q: %d after %v (%s), want 400 at once", what, c.before, resp.StatusCode, time.Since(began).Round(time.Millisecond), b)
		}
		conn.Close()
	}
	// What the library takes is still served on a kept-alive connection.
	conn := dial(t, in.URL)
	br := bufio.NewReader(conn)
	for _, req := range []string{
		ok,
		"GET " + liveness + " HTTP/1.1\nHost: x\r\n\r\n",
		ok,
		"POST " + liveness + " HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n\n\n\n\n",
		"GET " + liveness + " HTTP/1.1\r\nHost: x\r\n",
		"\r\n",
		// Empty lines before a request line, which the library
		// skips: a bare LF among them is no head's end.
		"\n\n",
		ok,
		"GET " + liveness + " HTTP/1.0\n\r\n",
	} {
		io.WriteString(conn, req)
		if strings.HasSuffix(req, "x\r\n") || req == "\n\n" {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode >= 500 || resp.StatusCode == 400 || resp.StatusCode == 408 {
			t.Fatalf("%q: %v %v", req, resp, err)
		}
		io.Copy(io.Discard, resp.Body)
	}
}

// TestBareLFHeadPipelined: a request whose head ends in an empty line
// that is not a CRLF after a CRLF, pipelined behind a request without a
// body (in the same write, so that the HTTP library holds its first bytes
// already when it finishes the request before), is refused 400 at once,
// as one that begins a read is: it was answered 408 at
// server.read_timeout. Its head may also be completed by a later write.
// The requests before it are answered first, each as usual.
func TestBareLFHeadPipelined(t *testing.T) {
	t.Parallel()
	in := start(t, "[server]\nread_timeout = \"20s\"\n")
	ok := "GET " + liveness + " HTTP/1.1\r\nHost: x\r\n\r\n"
	head := "GET " + liveness + " HTTP/1.1\r\nHost: x\r\n"
	for _, c := range []struct {
		before int      // well-framed requests written first, in the same write
		pieces []string // the bare-LF request, its first piece in that write
	}{
		{1, []string{"GET " + liveness + " HTTP/1.1\nHost: x\n\n"}},
		{1, []string{head + "\n"}},
		{1, []string{"GET " + liveness + " HTTP/1.1\r\nHost: x\n\r\n"}},
		{2, []string{"GET " + liveness + " HTTP/1.1\nHost: x\n\n"}},
		{1, []string{head, "\n"}},
		{1, []string{"GET " + liveness + " HT", "TP/1.1\nHost: x\n", "\n"}},
		{1, []string{"POST " + liveness + " HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello"}},
		{1, []string{"GET " + liveness + " HTTP/1.1\nHost: x\n\nGET " + liveness + " HT"}},
	} {
		conn := dial(t, in.URL)
		br := bufio.NewReader(conn)
		began := time.Now()
		for i, p := range c.pieces {
			if i == 0 {
				p = strings.Repeat(ok, c.before) + p
			} else {
				time.Sleep(100 * time.Millisecond)
			}
			io.WriteString(conn, p)
		}
		what := fmt.Sprintf("%d, then %q", c.before, strings.Join(c.pieces, ""))
		readOKs(t, br, c.before, what)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v after %v", what, err, time.Since(began))
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !strings.Contains(string(b), "bare LF") || !strings.Contains(string(b), `"code":"bad_request"`) {
			t.Errorf("%s: %d after %v (%s), want 400 at once", what, resp.StatusCode, time.Since(began).Round(time.Millisecond), b)
		}
		conn.Close()
	}
	// Pipelined requests the library takes are still served, whole or
	// completed by a later write, also behind a request with a body
	// holding what would end a head, and with a body of their own that
	// does.
	for _, pieces := range [][]string{
		{ok + head, "\r\n", ok},
		{ok + "GET " + liveness + " HT", "TP/1.1\r\nHost: x\r\n\r\n"},
		{ok + head + "\r", "\n"},
		{"POST " + liveness + " HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n\n\n\n\n" + head, "\r\n"},
		{"POST " + liveness + " HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\na\n\nb\n\n" + ok + head, "\r\n"},
		{ok + "POST " + liveness + " HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\na\n", "\nb\n\n", head + "\r\n"},
		{ok + "POST " + liveness + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n\n\n", "\n\n\r\n0\r\n\r\n" + ok},
	} {
		conn := dial(t, in.URL)
		br := bufio.NewReader(conn)
		writePieces(conn, pieces...)
		want := strings.Count(strings.Join(pieces, ""), "HTTP/1.1")
		for i := 0; i < want; i++ {
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode == 400 || resp.StatusCode == 408 || resp.StatusCode >= 500 { // POST gets 405
				t.Fatalf("%q: answer %d: %v %v", strings.Join(pieces, ""), i, resp, err)
			}
			io.Copy(io.Discard, resp.Body)
		}
		conn.Close()
	}
}

// TestBareLFHeadPipelinedBehindBody: a request whose head ends in an empty
// line that is not a CRLF after a CRLF, pipelined behind a request with a
// body (Content-Length or chunked, read by its route or dropped by the
// server, the body holding what would end a head or not), is refused 400
// at once, as one behind a request without a body is: it was answered 408
// at server.read_timeout, where that body ended among the bytes read not
// being known. The requests before it are answered first.
//
// greenroom tells what the HTTP library holds from the size of its read
// buffer, server.header_limit: the default and the smallest.
func TestBareLFHeadPipelinedBehindBody(t *testing.T) {
	t.Parallel()
	for _, limit := range []string{"16KiB", "4KiB"} {
		t.Run(limit, func(t *testing.T) { bareLFBehindBody(t, limit) })
	}
}

func bareLFBehindBody(t *testing.T, headerLimit string) {
	in := start(t, fmt.Sprintf("[server]\nread_timeout = \"20s\"\nheader_limit = %q\n[plugins.hello]\npath = %q\npublic_routes = [\"/echo\"]\n", headerLimit, helloWasm))
	bare := "GET " + liveness + " HTTP/1.1\nHost: x\n\n"
	authz := "Authorization: Bearer " + servertest.Token + "\r\n"
	post := func(path, body string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: x\r\n" + authz + "Content-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body
	}
	chunked := "POST " + liveness + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n\n\n\n\n\r\n0\r\n\r\n"
	big := strings.Repeat("a\n\nb\r\n\r\n", 3000) // 24 KiB: past what the server reads ahead
	for _, c := range []struct {
		before int      // requests answered first, written with the first piece
		pieces []string // those and the bare-LF request, written piece by piece
	}{
		{1, []string{post(liveness, "hello") + bare}},
		{1, []string{post(liveness, "a\n\nb\r\n\r\n") + bare}},
		{1, []string{post("/api/hello/echo", "hello") + bare}},
		{1, []string{post("/api/hello/echo", "GET a\r\n\r\nb\n\n") + bare}},
		{1, []string{chunked + bare}},
		{1, []string{post(liveness, big) + bare}},
		{1, []string{post("/api/hello/echo", big) + bare}},
		{1, []string{post(liveness, "hello") + "GET " + liveness + " HTTP/1.1\r\nHost: x\r\n", "\n"}},
		{1, []string{post(liveness, "hello") + "GET " + liveness + " HT", "TP/1.1\nHost: x\n", "\n"}},
		{1, []string{post(liveness, "hello"), bare}},
		{1, []string{"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\n" + authz + "Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello" + bare}},
		{3, []string{post(liveness, "hello") + "GET " + liveness + " HTTP/1.1\r\nHost: x\r\n\r\n" + post(liveness, "x") + bare}},
		// After bytes that begin no request line with an upper-case
		// method of up to 7 letters: refused as well.
		{1, []string{"GET " + liveness + " HTTP/1.1\r\nHost: x\r\n\r\n" + "PROPFIND " + liveness + " HTTP/1.1\nHost: x\n\n"}},
		{1, []string{"GET " + liveness + " HTTP/1.1\r\nHost: x\r\n\r\n" + "\r\n" + bare}},
	} {
		pieces := c.pieces
		what := strings.Join(pieces, "")
		if len(what) > 200 {
			what = what[:100] + "..." + what[len(what)-100:]
		}
		conn := dial(t, in.URL)
		br := bufio.NewReader(conn)
		began := time.Now()
		writePieces(conn, pieces...)
		want := c.before
		failed := false
		for i := 0; i < want; i++ {
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode == 400 || resp.StatusCode == 408 || resp.StatusCode >= 500 { // POST gets 405
				t.Errorf("%q: answer %d: %v %v", what, i, resp, err)
				failed = true
				break
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode == 100 {
				i--
			}
		}
		if failed {
			conn.Close()
			continue
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Errorf("%q: %v after %v", what, err, time.Since(began))
			conn.Close()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !strings.Contains(string(b), "bare LF") || !strings.Contains(string(b), `"code":"bad_request"`) {
			t.Errorf("%q: %d after %v (%s), want 400 at once", what, resp.StatusCode, time.Since(began).Round(time.Millisecond), b)
		}
		conn.Close()
	}
	// Empty lines before a request line are skipped by the HTTP
	// library, which then waits for the rest of the head: a head after
	// them completed by a later write is served, behind a request with
	// a body or without.
	ok := "GET " + liveness + " HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, pieces := range [][]string{
		{ok + "\r\n\r\nGET " + liveness + " HT", "TP/1.1\r\nHost: x\r\n\r\n"},
		{post(liveness, "abc") + "\r\n\r\nGET " + liveness + " HT", "TP/1.1\r\nHost: x\r\n\r\n"},
		{post(liveness, "a\n\n") + "\r\n\r\n\r\nGET " + liveness + " HTTP/1.1\r\nHost: x\r\n", "\r\n"},
		{post(liveness, "abc") + "\r\n\r\n", "GET " + liveness + " HTTP/1.1\r\nHost: x\r\n", "\r\n"},
	} {
		conn := dial(t, in.URL)
		br := bufio.NewReader(conn)
		writePieces(conn, pieces...)
		for i := 0; i < 2; i++ {
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode == 400 || resp.StatusCode == 408 || resp.StatusCode >= 500 { // POST gets 405
				t.Errorf("%q: answer %d: %v %v", strings.Join(pieces, ""), i, resp, err)
				break
			}
			io.Copy(io.Discard, resp.Body)
		}
		conn.Close()
	}
}

// TestChunkedBodyCutShortTimesOut: a chunked body whose last chunk came
// but whose trailer section (its empty line) does not come by
// server.read_timeout is answered 408 request_timeout, as a body cut
// short anywhere else is: the HTTP library reports that timeout with an
// error of its own (fasthttp.ErrTimeout, which has Timeout but is no
// net.Error), and it was answered 400 "reading the request body:
// fasthttp: timeout". The same with a trailer field that came.
func TestChunkedBodyCutShortTimesOut(t *testing.T) {
	t.Parallel()
	in := start(t, fmt.Sprintf("[server]\nread_timeout = \"1s\"\n[plugins.hello]\npath = %q\n", helloWasm))
	for _, tail := range []string{"0\r\n", "0\r\nX-T: 1\r\n", "3\r\nab"} {
		conn := dial(t, in.URL)
		fmt.Fprintf(conn, "POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n%s", in.Token, tail)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%q: %v", tail, err)
		}
		b, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != 408 || !strings.Contains(string(b), `"code":"request_timeout"`) {
			t.Errorf("chunked body ending %q, then nothing: %d %s, want 408 request_timeout", tail, resp.StatusCode, b)
		}
	}
}

// TestBareLFTrailerRefusedAtOnce: a chunked body whose trailer section
// holds an empty line that is not a CRLF after a CRLF ("0\r\n\n",
// "0\r\nX-T: 1\n\r\n") is never ended by the HTTP library, which waits
// for a CRLF CRLF that does not come: it was answered at
// server.read_timeout (400 "unexpected EOF", or 408). It is now answered
// 400 at once and its connection closed, whatever pieces it arrives in,
// behind other requests or not; a route that does not read the body has
// answered already, and its connection is closed at once instead of at
// server.read_timeout. A chunk-size line or a chunk's data ended by a
// bare LF is refused 400 at once by the library itself, and closes the
// connection: nothing after it is read as a request. Well-framed chunked
// bodies are still read, in whatever pieces, with trailer fields or
// not, and the requests behind them served.
func TestBareLFTrailerRefusedAtOnce(t *testing.T) {
	t.Parallel()
	in := start(t, fmt.Sprintf("[server]\nread_timeout = \"20s\"\n[plugins.hello]\npath = %q\n", helloWasm))
	head := "POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + servertest.Token + "\r\nTransfer-Encoding: chunked\r\n\r\n"
	ok := "GET " + liveness + " HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, c := range []struct {
		before int      // requests written first, answered as usual
		pieces []string // the chunked request, written piece by piece
		want   string   // in the 400's message
	}{
		{0, []string{head + "3\r\nabc\r\n0\r\n\n"}, "trailer section"},
		{0, []string{head + "3\r\nabc\r\n0\r\n", "\n"}, "trailer section"},
		{0, []string{head, "3\r\nabc\r\n", "0\r\n", "\n"}, "trailer section"},
		{0, []string{head + "3\r\nabc\r\n0\r\nX-T: 1\n\r\n"}, "trailer section"},
		{0, []string{head + "3\r\nabc\r\n0\r\nX-T: 1\r\n\n"}, "trailer section"},
		{0, []string{head + "3\r\nabc\r\n0\r\nX-T: 1\n\n"}, "trailer section"},
		{0, []string{head + "3\r\nabc\r\n0\r\nX-T: 1\n", "\r\n"}, "trailer section"},
		{0, []string{head + "3\r\nabc\r\n0\r\nX-T: 1\r\n", "\n"}, "trailer section"},
		{0, []string{head + "4\r\n\n\n\n\n\r\n0\r\n\n"}, "trailer section"},
		{0, []string{head + "3\r\nabc\r\n0\r\n\nGET " + liveness + " HTTP/1.1\r\nHost: x\r\n", "\r\n"}, "trailer section"},
		{1, []string{ok + head + "3\r\nabc\r\n0\r\n\n"}, "trailer section"},
		{1, []string{ok + head + "3\r\nabc\r\n0\r\n", "X-T: 1\n", "\r\n"}, "trailer section"},
		// A chunk-size line, or a chunk's data, ended by a bare LF.
		{0, []string{head + "0\n\n"}, "after chunk size"},
		{0, []string{head + "5\nhello\n0\r\n\r\n"}, "after chunk size"},
		{0, []string{head + "5\r\nhello\n0\r\n\r\n"}, "end of chunk"},
		{0, []string{head + "5\r\nhello\n", "0\r\n\r\n"}, "end of chunk"},
		{0, []string{head + "5\r\nhello\r\n0\n\r\n" + ok}, "after chunk size"},
	} {
		what := strings.Join(c.pieces, "|")
		conn := dial(t, in.URL)
		br := bufio.NewReader(conn)
		began := time.Now()
		writePieces(conn, c.pieces...)
		readOKs(t, br, c.before, fmt.Sprintf("%q", what))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: %v after %v", what, err, time.Since(began))
		}
		b, _ := io.ReadAll(resp.Body)
		took := time.Since(began)
		if resp.StatusCode != 400 || took > 5*time.Second || !strings.Contains(string(b), c.want) || !strings.Contains(string(b), `"code":"bad_request"`) || !resp.Close {
			t.Errorf("%q: %d after %v (close %v, %s), want 400 at once, closed", what, resp.StatusCode, took.Round(time.Millisecond), resp.Close, b)
		}
		// Nothing else is answered: the connection is closed.
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("%q: after the 400, read %d, %v, want EOF", what, n, err)
		}
		conn.Close()
	}
	// A route that does not read the body (405) has answered before the
	// library reads it: the connection is closed at once.
	for _, tail := range []string{"3\r\nabc\r\n0\r\n\n", "0\r\nX-T: 1\n\r\n"} {
		conn := dial(t, in.URL)
		br := bufio.NewReader(conn)
		began := time.Now()
		io.WriteString(conn, "POST "+liveness+" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+tail)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 405 {
			t.Fatalf("%q: %v %v", tail, resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF || time.Since(began) > 5*time.Second {
			t.Errorf("%q to a route that does not read it: after the 405, read %d, %v after %v, want EOF at once", tail, n, err, time.Since(began).Round(time.Millisecond))
		}
		conn.Close()
	}
	// Well-framed chunked bodies, in pieces, then a request behind them.
	for _, pieces := range [][]string{
		{head + "3\r\nabc\r\n0\r\n\r\n" + ok},
		{head + "3\r\nabc\r\n0\r\n", "\r\n", ok},
		{head + "3\r\nabc\r\n0\r\n\r", "\n" + ok},
		{head + "3\r\nabc\r\n0\r\nX-T: 1\r\n", "\r\n" + ok},
		{head + "3\r\nabc\r\n0\r\nX-T: 1\r", "\n\r", "\n", ok},
		{head + "3\r\nabc\r\n0\r\nX-T", ": 1\r\nY: 2\r\n\r\n" + ok},
		{head + "4\r\n\n\n\n\n\r\n", "0\r\n", "X-T: 1\r\n", "\r\n", ok},
		{head + "4\r\n\n\n\r\n\r\n0\r\nX-T: 1\r\n", "\r\n" + ok},
	} {
		what := strings.Join(pieces, "|")
		conn := dial(t, in.URL)
		br := bufio.NewReader(conn)
		writePieces(conn, pieces...)
		for i, want := range []int{200, 200} {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%q: answer %d: %v", what, i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != want {
				t.Errorf("%q: answer %d: %d %s, want %d", what, i, resp.StatusCode, b, want)
				break
			}
		}
		conn.Close()
	}
}

// TestBareLFTrailerSmugglingRefused: a chunked body whose trailer section
// ends, or has a line ended, by a bare LF, with a whole request behind it
// in the same write ("0\r\n\nGET ... \r\n\r\n"), was ended by the HTTP
// library at the bare LF, since a CRLF CRLF lay further on among the
// bytes it held, and the request behind it served: a proxy in front that
// ends a trailer section only at a CRLF CRLF sees one request where
// greenroom saw two (request smuggling). The request with that body is
// now answered 400 and its connection closed, the request behind it never
// answered, whatever pieces the bytes arrive in and whatever requests
// come before it (answered as usual); a route that does not read the body
// has answered first, and its connection is closed then, the request
// behind it never answered either.
func TestBareLFTrailerSmugglingRefused(t *testing.T) {
	t.Parallel()
	in := start(t, fmt.Sprintf("[server]\nread_timeout = \"20s\"\n[plugins.hello]\npath = %q\n", helloWasm))
	head := "POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + servertest.Token + "\r\nTransfer-Encoding: chunked\r\n\r\n"
	ok := "GET " + liveness + " HTTP/1.1\r\nHost: x\r\n\r\n"
	smuggled := "GET /api/hello/ping HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, c := range []struct {
		before int      // requests answered first, as usual
		want   int      // the answer to the request with the bad trailer
		pieces []string // written piece by piece
	}{
		{0, 400, []string{head + "0\r\n\n" + smuggled}},
		{0, 400, []string{head + "3\r\nabc\r\n0\r\n\n" + smuggled}},
		{0, 400, []string{head + "0\r\nX: 1\n\r\n" + smuggled}},
		{0, 400, []string{head + "0\r\nX: 1\n\n" + smuggled}},
		{0, 400, []string{head + "0\r\nX: 1\r\n\n" + smuggled}},
		{0, 400, []string{head + "0\r\nX: 1\r\nY: 2\n\r\n" + smuggled}},
		{0, 400, []string{head + "0;a=b\r\nX: 1\n\r\n" + smuggled}},
		{0, 400, []string{head + "4\r\n\r\n\r\n\r\n0\r\n\n" + smuggled}},
		{0, 400, []string{head, "0\r\n\n" + smuggled}},
		{0, 400, []string{head + "0\r\n", "\n" + smuggled}},
		{0, 400, []string{head + "0\r\nX: 1", "\n\r\n" + smuggled}},
		{0, 400, []string{head + "0\r\nX: 1\r", "\n\n" + smuggled}},
		{0, 400, []string{head + "3\r\nab", "c\r\n0\r", "\n\n" + smuggled}},
		{1, 400, []string{ok + head + "0\r\n\n" + smuggled}},
		{2, 400, []string{ok + head + "0\r\nX: 1\r\n\r\n" + head + "0\r\nX: 1\n\r\n" + smuggled}},
		{1, 400, []string{"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + servertest.Token + "\r\nContent-Length: 12\r\n\r\n0\r\n\n" + smuggled[:8] + head + "0\r\n\n" + smuggled}},
		// A route that does not read the body answers first.
		{0, 405, []string{"POST " + liveness + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n" + smuggled}},
		{0, 405, []string{"POST " + liveness + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX: 1\n\r\n" + smuggled}},
	} {
		what := strings.Join(c.pieces, "|")
		conn := dial(t, in.URL)
		br := bufio.NewReader(conn)
		writePieces(conn, c.pieces...)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		readOKs(t, br, c.before, fmt.Sprintf("%q", what))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: %v", what, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != c.want || c.want == 400 && (!strings.Contains(string(b), "trailer section") || !resp.Close) {
			t.Errorf("%q: %d (close %v) %s, want %d", what, resp.StatusCode, resp.Close, b, c.want)
		}
		// The request behind it is never answered: the connection is
		// closed.
		if resp, err := http.ReadResponse(br, nil); err == nil {
			b, _ := io.ReadAll(resp.Body)
			t.Errorf("%q: the request behind the bad trailer was answered: %d %s", what, resp.StatusCode, b)
		} else if err != io.EOF && err != io.ErrUnexpectedEOF {
			t.Errorf("%q: after the answer, %v, want EOF", what, err)
		}
		conn.Close()
	}
}
