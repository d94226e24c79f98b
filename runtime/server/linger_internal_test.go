package server

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// acceptedPair returns a connection accepted through a lingerListener
// (in set) and the client's end of it.
func acceptedPair(t *testing.T, set *connSet) (*lingerConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := lingerListener{Listener: ln, conns: set}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.(*lingerConn).TCPConn.Close() })
	return c.(*lingerConn), client
}

// waitPending waits until n bytes the client sent are in c's receive
// buffer (not read yet).
func waitPending(t *testing.T, c *lingerConn, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if got, ok := c.pending(make([]byte, n)); ok && got == n {
			return
		}
	}
	t.Fatalf("the client's %d bytes never arrived", n)
}

// A request whose whole head has arrived in the connection's receive
// buffer when the shutdown ends the reads of connections still sending
// one is not cut off: the server reads it (and answers it 503
// shutting_down, as any new request during a shutdown); nor is a
// connection just accepted that has received nothing yet, whose client
// is about to send its request. Their reads were ended like a half-sent
// head's and fasthttp answered 408 Request Timeout: under load, a few of
// the requests sent as the drain ended got 408 instead of 503 (an audit:
// 8 of 11 000). A head still arriving is cut off as before, and so is a
// connection that has sent nothing for newConnGrace, or when the
// shutdown's deadline is near (its grace would make the shutdown report
// work cut off).
func TestExpireReadsSparesAWholeHeadNotReadYet(t *testing.T) {
	const head = "GET /api/hello/ping HTTP/1.1\r\nHost: test\r\n\r\n"
	for _, tc := range []struct {
		name, sent string
		// whole: the read that follows gets the head, or, when nothing
		// was sent, the head sent after it, rather than a timeout.
		whole bool
	}{
		{"whole head", head, true},
		{"whole head in two parts, the first read", head, true},
		{"half a head", head[:20], false},
		{"half a head, the first read", head, false},
		{"nothing yet, just accepted", "", true},
		{"nothing since newConnGrace", "", false},
		{"nothing yet, just accepted, the shutdown's deadline near", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var set connSet
			c, client := acceptedPair(t, &set)
			if strings.Contains(tc.name, "since newConnGrace") {
				c.accepted = time.Now().Add(-newConnGrace)
			}
			var graceEnd time.Time
			if strings.Contains(tc.name, "deadline") {
				graceEnd = time.Now()
			}
			sent := tc.sent
			if strings.Contains(tc.name, "half a head, the first read") {
				client.Write([]byte(sent[:20]))
				if n, err := io.ReadFull(c, make([]byte, 20)); err != nil {
					t.Fatalf("read the first part: %d %v", n, err)
				}
				sent = ""
			}
			if strings.Contains(tc.name, "two parts") {
				// The server has read the head but for its last CR LF,
				// which ends it only after the LF read before it.
				cut := len(sent) - 2
				client.Write([]byte(sent[:cut]))
				buf := make([]byte, cut)
				if n, err := io.ReadFull(c, buf); err != nil {
					t.Fatalf("read the first part: %d %v", n, err)
				}
				sent = sent[cut:]
			}
			if sent != "" {
				client.Write([]byte(sent))
				waitPending(t, c, len(sent))
			}
			stop := make(chan struct{})
			close(stop)
			set.expireReads(stop, graceEnd) // one pass
			if tc.sent == "" && tc.whole {
				sent = head
				client.Write([]byte(sent))
				waitPending(t, c, len(sent))
			}
			// The read that follows: a whole head pending must be read; the
			// read of anything else must fail at once (its deadline passed).
			type result struct {
				n   int
				err error
			}
			done := make(chan result, 1)
			go func() {
				n, err := c.Read(make([]byte, 4096))
				done <- result{n, err}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(2 * time.Second):
				c.TCPConn.Close()
				r = <-done
				t.Fatalf("the read was not ended (%d bytes, %v)", r.n, r.err)
			}
			if tc.whole && (r.err != nil || r.n != len(sent)) {
				t.Errorf("the read of a whole head waiting in the buffer: %d bytes, %v; want the %d bytes", r.n, r.err, len(sent))
			}
			if !tc.whole && r.err == nil {
				t.Errorf("the read of a connection without a whole head got %d bytes; want its read ended", r.n)
			}
		})
	}
}

// BenchmarkEmptyLines is what the search for the last empty line
// (noteEmptyLines, for heldEmptyLine) costs a read that holds one
// request's head, the common case, four pipelined heads, and a head with
// 16 KiB of its body (JSON without line feeds, text with one every 16
// bytes, or every 2): every read is searched, bodies included, its last
// server.header_limit bytes (16 KiB by default) at most.
//
//	go test -run '^$' -bench EmptyLines ./runtime/server/
func BenchmarkEmptyLines(b *testing.B) {
	head := []byte("GET /api/hello/ping HTTP/1.1\r\nHost: 127.0.0.1:7007\r\nUser-Agent: bench\r\nAuthorization: Bearer servertest-admin-token-0123456789abcdef\r\nAccept: */*\r\n\r\n")
	post := []byte("POST /api/hello/echo HTTP/1.1\r\nHost: 127.0.0.1:7007\r\nContent-Length: 16384\r\n\r\n")
	pipelined := bytes.Repeat(head, 4)
	for _, c := range []struct {
		name string
		read []byte
	}{
		{"head", head},
		{"pipelined4", pipelined},
		{"head+json16KiB", append(post, bytes.Repeat([]byte(`{"k":"0123456789"},`), 16384/19)...)},
		// A body with a line feed every 16 bytes.
		{"head+text16KiB", append(post, bytes.Repeat([]byte("ABCDEFGHIJKLMNO\n"), 1024)...)},
		// A body with a line feed every 2 bytes: every 8 bytes hold two
		// LFs with a byte between, to be told from LF CR LF.
		{"head+lines16KiB", append(post, bytes.Repeat([]byte("a\n"), 8192)...)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.read)))
			lc := &lingerConn{bufSize: 16 << 10, lastEmpty: -1}
			for i := 0; i < b.N; i++ {
				lc.noteEmptyLines(c.read)
			}
		})
	}
}

// TestNoteEmptyLinesSplits: noteEmptyLines finds where the last empty
// line (LF LF or LF CR LF) of a connection's bytes begins whatever reads
// they arrive in, as a byte-by-byte search does, and lastEmptyLine finds
// it in long runs too, where it searches 512 bytes at a time.
func TestNoteEmptyLinesSplits(t *testing.T) {
	ref := func(s string) int64 {
		for i := len(s) - 2; i >= 0; i-- {
			if s[i] == '\n' && (s[i+1] == '\n' || s[i+1] == '\r' && i+2 < len(s) && s[i+2] == '\n') {
				return int64(i)
			}
		}
		return -1
	}
	ok := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, s := range []string{
		"",
		"GET / HT",
		ok,
		ok + "GET / HTTP/1.1\nHost: x\n\n",
		ok + "GET / HTTP/1.1\r\nHost: x\r\n\n",
		ok + "GET / HTTP/1.1\r\nHost: x\n\r\nGET",
		ok + "GET / HTTP/1.1\r\nHost: x\r\n\r\r\n",
		"\n\n\n\r\n\r\r\n",
		"a\nb\rc\r\nd",
		// Empty lines before a request line.
		ok + "\r\n\r\nGET / HT",
		"abc\r\n\r\n\r\nGET / HTTP/1.1\nHost: x\n\n",
		"a\n\r\n\n",
	} {
		want := ref(s)
		wantLine := int64(0) // one more than the last byte before it that is neither CR nor LF
		for k := want - 1; k >= 0; k-- {
			if s[k] != '\r' && s[k] != '\n' {
				wantLine = k + 1
				break
			}
		}
		for i := 0; i <= len(s); i++ {
			for j := i; j <= len(s); j++ {
				c := &lingerConn{bufSize: 1 << 10, lastEmpty: -1}
				for _, r := range []string{s[:i], s[i:j], s[j:]} {
					if r != "" {
						c.noteEmptyLines([]byte(r))
					}
				}
				if c.lastEmpty != want || c.total != int64(len(s)) || want >= 0 && c.lineBefore != wantLine {
					t.Errorf("%q read as %d, %d, rest: last empty line at %d of %d after a line ending at %d; want %d after %d", s, i, j-i, c.lastEmpty, c.total, c.lineBefore, want, wantLine)
				}
			}
		}
	}
	for _, n := range []int{0, 1, 510, 511, 512, 513, 1023, 1024, 1025, 5000} {
		for _, tail := range []string{"", "\n", "\r\n", "x", "\r\n\r"} {
			for _, line := range []string{"\n\n", "\n\r\n"} {
				s := strings.Repeat("a\r\n", n/3) + line + strings.Repeat("b\n", n/2) + tail
				if got, want := int64(lastEmptyLine([]byte(s))), ref(s); got != want {
					t.Errorf("%d bytes, then %q: %d, want %d", len(s), line, got, want)
				}
			}
		}
	}
	// Of a read longer than the buffer, only its last bufSize bytes.
	c := &lingerConn{bufSize: 4 << 10, lastEmpty: -1}
	c.noteEmptyLines([]byte("\n\n" + strings.Repeat("x", 4<<10)))
	if c.lastEmpty != -1 || c.total != 2+4<<10 {
		t.Errorf("an empty line before a read's last bufSize bytes: at %d of %d", c.lastEmpty, c.total)
	}
}
