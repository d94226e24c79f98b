package server

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// framingEnds feeds s to a framing in reads cut as cuts says, and
// returns where each request ended (after its head when it has no body,
// after its body otherwise) and the offset in s of the bare LF follow
// found in a trailer section, or -1.
func framingEnds(s, cuts []byte) (ends []int, bad int) {
	var f framing
	at := 0
	for _, r := range splitAt(s, cuts) {
		// Byte by byte within each read too, for the ends; the whole
		// read at once, for the bare LF.
		g := f
		bad := g.follow(r)
		for i := range r {
			prev := f.state
			if j := f.follow(r[i : i+1]); j >= 0 {
				if bad != i {
					panic("a bare LF found apart")
				}
				return ends, at + i
			}
			if f.state == framingHead && prev != framingHead && prev != framingHeadCR {
				ends = append(ends, at+i+1)
			}
		}
		if bad >= 0 || g != f {
			panic("a read's framing followed apart")
		}
		at += len(r)
	}
	return ends, -1
}

// fasthttpEnds reads s as greenroom's server does, with fasthttp, and
// returns where each request it serves on the connection ended, and
// whether the last was a chunked one whose trailer section fasthttp read
// (the one framing may have stopped in), until fasthttp refuses a request
// or greenroom closes the connection after one.
func fasthttpEnds(s []byte) (ends []int, lastChunked []bool) {
	r := bytes.NewReader(s)
	br := bufio.NewReaderSize(r, 4096)
	for {
		var req fasthttp.Request
		if err := req.Header.Read(br); err != nil {
			return
		}
		if framingProblem(req.Header.RawHeaders()) != "" || !supportedProtocol(req.Header.Protocol()) ||
			req.Header.ContentLength() > 1<<20 {
			return
		}
		if err := req.ContinueReadBodyStream(br, 1<<20, false); err != nil {
			return
		}
		chunked := req.Header.ContentLength() == -1
		if bs := req.BodyStream(); bs != nil {
			if _, err := io.Copy(io.Discard, bs); err != nil {
				return
			}
		}
		ends = append(ends, len(s)-r.Len()-br.Buffered())
		lastChunked = append(lastChunked, chunked)
		if req.Header.ConnectionClose() {
			return
		}
	}
}

// FuzzFramingAgreesWithFasthttp: whatever reads a connection's bytes
// arrive in, framing ends each request fasthttp reads and greenroom
// serves where fasthttp does, and stops at a bare LF only in a chunked
// body's trailer section (the request fasthttp ended just after it, or,
// when the LF is the last byte, the one it is still reading), with
// nothing after the LF read as a request by fasthttp before it.
func FuzzFramingAgreesWithFasthttp(f *testing.F) {
	get := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	post := "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, s := range []string{
		get + get,
		"\r\n\nGET / HTTP/1.1\nHost: x\r\nContent-Length: 5\r\n\r\nGET /" + get,
		"POST /a HTTP/1.1\r\nHost: x\r\ncontent-length:   007 \r\nCookie: a\r\n\r\n\r\n\n\r\n\nabc" + get,
		post + "3\r\nabc\r\n0\r\n\r\n" + get,
		post + "7\r\nGET \n\n\n\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n" + get,
		"POST /a HTTP/1.1\r\nHost: x\r\ntransfer-encoding:\tCHUNKED\t\r\n\r\n1;a=b\r\nx\r\n0 ;c\r\n\r\n" + get,
		post + "0\r\n\n" + get,
		post + "3\r\nabc\r\n0\r\nX: 1\n\r\n" + get,
		post + "0\r\nX: 1\r\n\n" + get,
		post + "0\r\nX: 1\n\n" + get,
		post + "5\r\nhello\n0\r\n\r\n" + get,
		post + "0\n\r\n" + get,
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nab" + get,
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get,
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + get,
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encodings: chunked\r\nContent-Lengthy: 3\r\n\r\n" + get,
		"BREW /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n\n" + get,
	} {
		f.Add([]byte(s), []byte{})
		f.Add([]byte(s), []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
		f.Add([]byte(s), []byte{60, 7, 3, 30})
	}
	f.Fuzz(func(t *testing.T, s, cuts []byte) {
		got, bad := framingEnds(s, cuts)
		want, chunked := fasthttpEnds(s)
		if bad >= 0 && (s[bad] != '\n' || bad > 0 && s[bad-1] == '\r') {
			t.Fatalf("%q: bare LF at %d, a %q", s, bad, s[max(0, bad-1):bad+1])
		}
		for i, end := range want {
			if bad >= 0 && bad < end {
				// fasthttp ended a request after the bare LF: a
				// chunked one, whose trailer section has it.
				if !chunked[i] || len(got) != i || i > 0 && bad < want[i-1] {
					t.Fatalf("%q: bare LF at %d in request %d (chunked %v) ending at %d (%v, framing %v)", s, bad, i, chunked[i], end, want, got)
				}
				return
			}
			if i >= len(got) || got[i] != end {
				t.Fatalf("%q (reads %v): requests end at %v (bare LF at %d); fasthttp ends them at %v", s, cuts, got, bad, want)
			}
		}
		// After the requests fasthttp served, one it refused (and
		// the connection closed), or one it is still reading: what
		// framing found there is never read.
	})
}

// TestFramingTrailers: framing finds the bare LF that ends a chunked
// body's trailer line, or is its section's empty line, whatever reads
// the bytes arrive in, and nothing in well-framed bodies.
func TestFramingTrailers(t *testing.T) {
	post := "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	get := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, c := range []struct {
		s   string
		bad int // the bare LF's offset after post, or -1
	}{
		{"0\r\n\n" + get, 3},
		{"3\r\nabc\r\n0\r\n\n" + get, 11},
		{"0\r\nX: 1\n\r\n" + get, 7},
		{"0\r\nX: 1\r\n\n" + get, 9},
		{"0\r\nX: 1\r\nY: 2\n\r\n" + get, 13},
		{"0;a=b\r\nX: 1\n" + get, 11},
		{"4\r\n\n\n\n\n\r\n0\r\n\n", 12},
		{"0\r\n\r\n" + get + post + "0\r\n\n", 5 + len(get) + len(post) + 3},
		{"0\r\n\r\n" + get, -1},
		{"0\r\nX: 1\r\nY: 2\r\n\r\n" + get, -1},
		{"7\r\nGET \n\n\n\r\n0\r\n\r\n" + get + post + "2\r\n\n\n\r\n0\r\nX: a\r\n\r\n" + get, -1},
		{"5\r\nhello\n0\r\n\n" + get, -1},  // fasthttp refuses the chunk's end
		{"0\n\n" + get, -1},                // and a size line's bare LF
		{"0\r\nX: a\rb\r\n\r\n" + get, -1}, // and a lone CR in a field
	} {
		s := []byte(post + c.s)
		want := c.bad
		if want >= 0 {
			want += len(post)
		}
		for k := 0; k <= len(s); k++ {
			for _, cuts := range [][]byte{{byte(min(k, 255))}, bytes.Repeat([]byte{1}, k)} {
				if _, bad := framingEnds(s, cuts); bad != want {
					t.Fatalf("%q read as %v: bare LF at %d, want %d", s, cuts, bad, want)
				}
			}
		}
	}
	// A body of known length holding what would be a chunked body's.
	s := "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: " + "40" + "\r\n\r\n" + strings.Repeat("0\r\n\n", 10) + post + "0\r\n\n"
	if ends, bad := framingEnds([]byte(s), nil); len(ends) != 1 || bad != len(s)-1 {
		t.Fatalf("%q: ends %v, bare LF at %d; want 1 end, at %d", s, ends, bad, len(s)-1)
	}
}
