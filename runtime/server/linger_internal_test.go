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

// crlfEnd finds a CRLF CRLF however the bytes are split, and nothing
// else.
func TestCRLFEnd(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"a\r\r\n\r\n", true},
		{"a\r\n\r\r\n\r\n", true},
		{"a\n\r\n\r\n", true},
		{"a\r\n\n", false},
		{"a\n\r\n", false},
		{"a\n\n", false},
		{"a\r\n\r\r\n", false},
		{"a\r\n\ra\n", false},
	} {
		for cut := 0; cut <= len(c.in); cut++ {
			for cut2 := cut; cut2 <= len(c.in); cut2++ {
				got := crlfEnd(crlfEnd(crlfEnd(0, []byte(c.in[:cut])), []byte(c.in[cut:cut2])), []byte(c.in[cut2:])) == 4
				if got != c.want {
					t.Errorf("%q cut at %d and %d: %v, want %v", c.in, cut, cut2, got, c.want)
				}
			}
		}
	}
}

// BenchmarkTailScan is what following the bytes after the last CRLF CRLF
// (tailWatch, for heads pipelined behind a request) costs a read that
// holds one request's head, the common case, four pipelined heads, and
// a head with 16 KiB of its body (only the first read of a body is
// followed: a request with a body makes the watch void).
//
//	go test -run '^$' -bench TailScan ./runtime/server/
func BenchmarkTailScan(b *testing.B) {
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
		// A body that begins as a method does, with a line feed
		// every 16 bytes: the most a read costs.
		{"head+text16KiB", append(post, bytes.Repeat([]byte("ABCDEFGHIJKLMNO\n"), 1024)...)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.read)))
			var t tailWatch
			for i := 0; i < b.N; i++ {
				t = tailWatch{}
				t.scan(c.read)
			}
		})
		// The search for the last empty line (heldEmptyLine) follows
		// every read, bodies included, 16 KiB at most.
		b.Run(c.name+"/emptyLines", func(b *testing.B) {
			b.SetBytes(int64(len(c.read)))
			lc := &lingerConn{bufSize: 16 << 10, lastEmpty: -1}
			for i := 0; i < b.N; i++ {
				lc.noteEmptyLines(c.read)
			}
		})
	}
}

// TestTailWatchSplits: tailWatch counts the CRLF CRLFs of a connection's
// bytes and finds the empty line after the last of them whatever reads
// they arrive in, as a byte-by-byte search does; it gives up (void) only
// where the bytes after a head begin no request line.
func TestTailWatchSplits(t *testing.T) {
	ref := func(s string) (heads int, found bool) {
		first, crlf := 0, 0
		for i := 0; i < len(s); i++ {
			if crlf = crlfEnd(crlf, []byte{s[i]}); crlf == 4 {
				heads++
				first, crlf = 0, 0
				continue
			}
			if first != headFound {
				first = headEnd(first, []byte{s[i]})
			}
		}
		return heads, first == headFound
	}
	ok := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, s := range []string{
		ok,
		ok + ok,
		ok + "GET / HTTP/1.1\nHost: x\n\n",
		ok + "GET / HTTP/1.1\r\nHost: x\r\n\n",
		ok + "GET / HTTP/1.1\r\nHost: x\n\r\n",
		ok + "GET / HTTP/1.1\r\nHost: x\r\n",
		ok + "GET / HTTP/1.1\nHost: x\r\n\r\n" + "GET / HT",
		ok + "GET / HTTP/1.1\r\nHost: x\r\n\r\r\n\r\n",
		ok + "GET / HTTP/1.1\r\nX: \r\n\r\r\n\n",
		ok + "GET /\n\r\r\n\r\n" + ok,
		ok + "GET / HTTP/1.1\r\nHost: x\r\nX: a\n\r" + "\n",
		// Bytes after the empty line: it stays found, also when they
		// come in a read of under 4 bytes.
		ok + "GET / HTTP/1.1\nX: a\n\nGE",
		ok + "A \n\n0",
	} {
		wantHeads, wantFound := ref(s)
		for i := 0; i <= len(s); i++ {
			for j := i; j <= len(s); j++ {
				var w tailWatch
				w.scan([]byte(s[:i]))
				w.scan([]byte(s[i:j]))
				w.scan([]byte(s[j:]))
				if w.void {
					t.Errorf("%q read as %d, %d, rest: void", s, i, j-i)
					continue
				}
				if w.heads != wantHeads || (w.first == headFound) != wantFound {
					t.Errorf("%q read as %d, %d, rest: %d heads, empty line found %v; want %d, %v", s, i, j-i, w.heads, w.first == headFound, wantHeads, wantFound)
				}
			}
		}
	}
	// A head followed by what begins no request line: not searched.
	for _, s := range []string{ok + `{"a":1}` + "\n\n", ok + "a=b&c=d", ok + "ABCDEFGHIJ\n\n", ok + "PROPFIND / HTTP/1.1\n\n", ok + "\r\n" + ok} {
		var w tailWatch
		if w.scan([]byte(s)); !w.void {
			t.Errorf("%q: searched (not void)", s)
		}
	}
	// Nor is a tail longer than any head.
	var w tailWatch
	if w.scan([]byte(ok + "GET /" + strings.Repeat("x", maxTail))); !w.void {
		t.Error("a tail over maxTail: searched")
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
