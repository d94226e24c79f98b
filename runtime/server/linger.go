package server

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Lingering close: when the server closes a connection, it first closes
// only its side (the client gets the answer and an end of stream), then
// reads and drops what the client still sends for a moment, and only then
// closes. A connection closed with bytes of the request unread is reset at
// once, and a client still sending a body it was refused (401, 413, 503
// server_busy: bodies are read only by the routes that need them, after
// authentication) could lose the answer to the reset: 20 of 30 uploads of
// 2 MB without a credential did. net/http closes the same way.
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 64 << 20
)

// lingerListener hands out connections that close lingering, and keeps
// them in conns until they close.
type lingerListener struct {
	net.Listener
	conns *connSet
	// bufSize is the size of the HTTP library's read buffer
	// (server.header_limit; see lingerConn.heldEmptyLine).
	bufSize int
}

func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok && err == nil {
		lc := &lingerConn{TCPConn: tc, set: l.conns, accepted: time.Now(), bufSize: l.bufSize, lastEmpty: -1}
		l.conns.add(lc)
		return lc, nil
	}
	return c, err
}

type lingerConn struct {
	*net.TCPConn
	once sync.Once
	set  *connSet
	// busy counts the requests of the connection in the server's
	// handler (see connSet.expireReads).
	busy atomic.Int32
	// headDone is set once the head of a request has arrived (an empty
	// line read since the last answer was written), until an answer is
	// written: the request is then the server's to serve, its body still
	// arriving perhaps, even before it reaches the handler. head is
	// Read's state of the search for the empty line; newHead asks Read to
	// start it anew (set when an answer was written).
	headDone atomic.Bool
	newHead  atomic.Bool
	head     atomic.Int32
	// early is set by a shutdown on a connection whose request's head had
	// arrived when it began: that request is served, not refused.
	early atomic.Bool
	// accepted is when the listener accepted the connection, and got is
	// set once a read returned bytes (see connSet.expireReads).
	accepted time.Time
	got      atomic.Bool
	// mute drops what is written from then on (see Server.connErrors).
	mute atomic.Bool
	// heldHeads is what server.response_budget (headBudget) holds for
	// the heads of answers to HEAD being written on the connection, which
	// have no body stream to hold it until they are sent: it is given
	// back when the server reads from the connection again (the server
	// writes an answer before it reads the next request) or closes it.
	heldHeads  atomic.Int64
	headBudget atomic.Pointer[byteBudget]
	// firstDone is set once the watched request's head (the
	// connection's first, or one whose first bytes a read after
	// fasthttp's StateIdle returned: see idle) is known to be framed by
	// a CRLF CRLF, or an answer was written; first and crlf are Read's
	// states of the search for its empty line (headEnd) and for a CRLF
	// CRLF (crlfEnd) until then; unframed is set when the head ended
	// without one (see Read).
	firstDone atomic.Bool
	first     int
	crlf      int
	unframed  atomic.Bool
	// idle is set when fasthttp has finished a request and is about to
	// wait for the next one's first byte (StateIdle, see connState),
	// until its next read: if that read comes before fasthttp takes the
	// connection as active, its buffer was empty, and the bytes the read
	// returns begin the next request's head.
	idle atomic.Bool
	// piped is set when fasthttp takes the connection as active with no
	// read since it went idle (the next request's first bytes were in its
	// buffer: pipelined), until it goes idle again; tail and handled
	// then say whether the head it is reading ends in a bare LF (see
	// Read). tail follows the bytes read since the last CRLF CRLF, and
	// counts the CRLF CRLFs, since the head watched last began (a new
	// connection, or idle); handled counts the requests that reached the
	// handler since then (guard). Both are used by the connection's
	// serving goroutine only, as first and crlf are.
	piped   atomic.Bool
	tail    tailWatch
	handled int
	// reading is set while fasthttp reads a request's head: from
	// StateActive (see connState) until the request reaches the handler
	// (handling). total counts the bytes read, lastEmpty is the offset
	// among them of the LF that begins the last empty line read (LF LF
	// or LF CR LF; -1 before any), lineBefore one more than the offset
	// of the last byte before it that is neither CR nor LF (0: none
	// known), lastLine the same for all the bytes read, and prev holds
	// the last two bytes read, for an empty line split between reads;
	// bufSize is the size of fasthttp's read buffer (see
	// heldEmptyLine). Used by the connection's serving goroutine only,
	// but for reading.
	reading    atomic.Bool
	total      int64
	lastEmpty  int64
	lineBefore int64
	lastLine   int64
	prev       [2]byte
	bufSize    int
}

// tailWatch follows a connection's bytes after the last CRLF CRLF read,
// where a head pipelined behind a request without a body begins.
type tailWatch struct {
	// heads counts the CRLF CRLFs read; void is set once the bytes read
	// cannot be told apart (a request with a body was handled, or more
	// than maxTail bytes followed the last CRLF CRLF: more than a head
	// fasthttp reads whole) or are no head (they do not begin with a
	// method, methodStart), until the watch begins anew.
	heads int
	void  bool
	// first and crlf are the states of the searches for an empty line
	// (headEnd) and a CRLF CRLF (crlfEnd) in the bytes after the last
	// CRLF CRLF; n is how many there are.
	first, crlf, n int
}

// maxTail is the longest head tailWatch follows: fasthttp's read buffer
// is server.header_limit, at most 1 MiB, and a longer head is refused.
const maxTail = 1 << 20

var crlfcrlf = []byte("\r\n\r\n")

// scan follows b, the next bytes read. It searches with bytes.Index
// (vector instructions) rather than byte by byte, and not at all past a
// head whose next bytes begin no request line (a body): the first read
// of a request with a body carries up to 16 KiB of it, which a byte loop
// took 60 µs to follow (BenchmarkTailScan).
func (t *tailWatch) scan(b []byte) {
	if t.void {
		return
	}
	// A CRLF CRLF begun in the bytes before b.
	if t.crlf > 0 {
		k := min(len(crlfcrlf)-t.crlf, len(b))
		if crlfEnd(t.crlf, b[:k]) == len(crlfcrlf) {
			t.heads++
			t.first, t.crlf, t.n = 0, 0, 0
			b = b[k:]
		}
	}
	for {
		if t.n == 0 && len(b) > 0 && !methodStart(b) {
			// What follows a head is no request line: its body,
			// most likely (a request it is would be refused anyway).
			t.void = true
			return
		}
		i := bytes.Index(b, crlfcrlf)
		if i < 0 {
			break
		}
		t.heads++
		t.first, t.crlf, t.n = 0, 0, 0
		b = b[i+len(crlfcrlf):]
	}
	if t.n += len(b); t.n > maxTail {
		t.void = true
		return
	}
	if len(b) < len(crlfcrlf) {
		// Short: byte by byte, from the states the bytes before left.
		// An empty line found stays found (headEnd would forget it
		// at the next byte) until the next CRLF CRLF, as below.
		if t.first != headFound {
			t.first = headEnd(t.first, b)
		}
		t.crlf = crlfEnd(t.crlf, b)
		return
	}
	// b holds no CRLF CRLF, so its states after it are those of its
	// last bytes alone, but for an empty line begun before it or in it.
	if t.first != headFound && (headEnd(t.first, b[:2]) == headFound ||
		bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\n\r\n"))) {
		t.first = headFound
	}
	if t.first != headFound {
		t.first = headEnd(0, b[len(b)-2:])
	}
	t.crlf = crlfEnd(0, b[len(b)-3:])
}

// methodStart reports whether b, the first bytes after a head, may
// begin a request line: an upper-case method of up to 7 letters (those
// greenroom serves) and a space, or as much of that as b holds.
func methodStart(b []byte) bool {
	for i, ch := range b[:min(len(b), 8)] {
		if ch == ' ' && i > 0 {
			return true
		}
		if ch < 'A' || ch > 'Z' {
			return false
		}
	}
	return len(b) < 8
}

// bareLFPiped reports whether fasthttp, reading the head of a request
// pipelined behind the one before it, holds that head whole and ended by
// an empty line that is not a CRLF after a CRLF, and waits for a CRLF
// CRLF that is not coming. Every CRLF CRLF read ended the head of a
// request handled since (none is left for the head being read), the last
// of them had no body, so the bytes after it begin the head being read,
// and those hold its empty line.
func (c *lingerConn) bareLFPiped() bool {
	return c.piped.Load() && c.busy.Load() == 0 && !c.tail.void &&
		c.tail.heads == c.handled && c.tail.first == headFound
}

// handling notes a request that reached the handler (guard), whose head
// has been read: when it has a body (a Content-Length above 0, or
// chunked), the bytes after its head cannot be told apart from the next
// head's any more (tailWatch.void).
func (c *lingerConn) handling(contentLength int) {
	c.reading.Store(false)
	c.handled++
	if contentLength > 0 || contentLength == -1 {
		c.tail.void = true
	}
}

// connState follows fasthttp's connection states (Server.ConnState) for
// the heads of a kept-alive connection's later requests (see Read).
func connState(c net.Conn, state fasthttp.ConnState) {
	lc, ok := c.(*lingerConn)
	if !ok {
		return
	}
	switch state {
	case fasthttp.StateIdle:
		lc.piped.Store(false)
		lc.idle.Store(true)
	case fasthttp.StateActive:
		lc.reading.Store(true)
		// No read since idle: its first byte was in fasthttp's buffer
		// already (pipelined, or read with the request before), and
		// its head is watched from the last CRLF CRLF (see Read).
		if lc.idle.Swap(false) {
			lc.piped.Store(true)
		}
	}
}

// errUnframedHead ends the read of a request's head that the HTTP
// library would wait on until server.read_timeout (see lingerConn.Read).
// Its text becomes the 400's message: no quote (parseErrorMessage), no
// "timeout" (Fiber would answer 408).
var errUnframedHead = errors.New("the request's head ends with a bare LF (an empty line that is not a CRLF after a CRLF), which servers may read differently; end each line with CRLF")

// Read notes the end of a request's head (headDone).
//
// It also refuses the connection's first request when its head ends in
// an empty line the HTTP library does not take for its end: fasthttp
// ends a head only where the bytes it holds carry a CRLF CRLF (or at a
// CRLF right after the request line), and otherwise waits for more
// until server.read_timeout (408), also for a head ended by "\n\n",
// which every header line ended by a bare LF makes greenroom refuse
// anyway (framingProblem). The first request's head begins at the
// connection's first byte, so every byte Read returns before its end is
// the head's: once its empty line came (headEnd) with no CRLF CRLF
// among those bytes (crlfEnd), fasthttp cannot have parsed it unless it
// is a request line alone, which has no body to read; so when it reads
// again before any answer, outside the handler, it is waiting for what
// is not coming, and the read fails at once instead (400 bad_request).
//
// A later request of a kept-alive connection is watched the same way
// when its head begins a read: fasthttp, done with a request (its body
// read or dropped, its answer written), sets the connection idle and
// reads what it holds of the next one, and reads from the connection
// only when it holds nothing (idle).
//
// A head whose first bytes fasthttp read with the request before
// (pipelined behind it: active with no read since idle, piped) begins
// among bytes read already, after the last CRLF CRLF when every CRLF
// CRLF read ended a head fasthttp has handed on, and the last of those
// requests had no body (tailWatch, bareLFPiped): a read fasthttp asks
// for while it holds that head whole, ended by a bare LF, fails at once
// too, and so does one after a read that completed it. Behind a request
// with a body, where among the bytes after it the body ends is not
// known to the tail watch, what fasthttp holds of the head is told by
// the buffer it reads into (heldEmptyLine), and such a head is refused
// too; heldEmptyLine covers the watch's case as well.
func (c *lingerConn) Read(p []byte) (int, error) {
	c.releaseHeads()
	if c.unframed.Load() && c.busy.Load() == 0 && !c.firstDone.Load() || c.bareLFPiped() || c.heldEmptyLine(p) {
		return 0, errUnframedHead
	}
	n, err := c.TCPConn.Read(p)
	if n > 0 {
		c.noteEmptyLines(p[:n])
	}
	if n > 0 && c.idle.Swap(false) {
		c.first, c.crlf = 0, 0
		c.unframed.Store(false)
		c.firstDone.Store(false)
		c.tail, c.handled = tailWatch{}, 0
	}
	if n > 0 {
		c.tail.scan(p[:n])
	}
	if n > 0 && !c.firstDone.Load() {
		c.watchFirst(p[:n])
	}
	if n > 0 && !c.got.Load() {
		c.got.Store(true)
	}
	if n > 0 && !c.headDone.Load() {
		if c.newHead.Swap(false) {
			c.head.Store(0)
		}
		h := headEnd(int(c.head.Load()), p[:n])
		c.head.Store(int32(h))
		if h == headFound {
			c.headDone.Store(true)
		}
	}
	return n, err
}

// heldEmptyLine reports whether fasthttp, asking to read into p while it
// reads a request's head (reading, outside the handler), holds an empty
// line among the bytes of that head it has read already, after a line
// that is not empty, which it then does not take for the head's end (see
// Read): whatever the requests before it were on the connection, with
// bodies or not. Empty lines before a request line are not its head's
// end: fasthttp skips them, and waits for the rest of the head
// ("\r\n\r\nGET / HT" is read on).
//
// fasthttp reads a head through a bufio.Reader of bufSize bytes, which
// reads from the connection only to fill its buffer: into what follows
// the bytes it holds, moved to the buffer's start first, so p is the
// buffer less those bytes, the last bufSize-len(p) read. (It reads a
// body before the handler, up to 8 KiB of it, only when it holds none:
// into the whole buffer, or straight into a larger p; then it holds
// nothing, and this is false.)
func (c *lingerConn) heldEmptyLine(p []byte) bool {
	if c.bufSize == 0 || c.lastEmpty < 0 || !c.reading.Load() || c.busy.Load() != 0 {
		return false
	}
	held := int64(c.bufSize - len(p))
	return held > 0 && c.lastEmpty >= c.total-held && c.lineBefore > c.total-held
}

// noteEmptyLines follows b, the next bytes read, for lastEmpty (see
// heldEmptyLine): only its last bufSize bytes, as fasthttp holds no more.
func (c *lingerConn) noteEmptyLines(b []byte) {
	from := c.total
	c.total += int64(len(b))
	cut := c.bufSize > 0 && len(b) > c.bufSize
	if cut {
		from += int64(len(b) - c.bufSize)
		b = b[len(b)-c.bufSize:]
	}
	// Before b, or before its last bufSize bytes (none known there, so
	// as to refuse no less surely than the bytes say).
	lineBefore := c.lastLine
	if i := lastEmptyLine(b); i >= 0 {
		c.lastEmpty = from + int64(i)
		if j := lastLine(b[:i]); j >= 0 {
			lineBefore = from + int64(j) + 1
		}
		c.lineBefore = lineBefore
	} else if from > 0 && !cut {
		// One begun in the two bytes before b.
		var j [4]byte
		k := copy(j[:], c.prev[:])
		k += copy(j[k:], b)
		if i := lastEmptyLine(j[:k]); i >= 0 && i < 2 {
			c.lastEmpty = from - 2 + int64(i)
			c.lineBefore = lineBefore
		}
	}
	if j := lastLine(b); j >= 0 {
		c.lastLine = from + int64(j) + 1
	}
	if len(b) >= 2 {
		c.prev = [2]byte{b[len(b)-2], b[len(b)-1]}
	} else if len(b) == 1 {
		c.prev = [2]byte{c.prev[1], b[0]}
	}
}

// lastLine returns the index in b of its last byte that is neither CR
// nor LF, or -1.
func lastLine(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != '\r' && b[i] != '\n' {
			return i
		}
	}
	return -1
}

// lastEmptyLine returns the index in b of the LF that begins its last
// empty line (LF LF or LF CR LF), or -1. It looks at 512 bytes at a time
// from the end, with bytes.Contains (vector instructions), and byte by
// byte only in the last 512 bytes holding one: the bytes after a head are
// those of its body too, kilobytes of them.
func lastEmptyLine(b []byte) int {
	for end := len(b); end > 0; end -= 512 {
		start := max(0, end-512)
		s := b[start:min(len(b), end+2)]
		if !bytes.Contains(s, []byte("\n\n")) && !bytes.Contains(s, []byte("\n\r\n")) {
			continue
		}
		for i := len(s) - 2; i >= 0; i-- {
			if s[i] == '\n' && (s[i+1] == '\n' || s[i+1] == '\r' && i+2 < len(s) && s[i+2] == '\n') {
				return start + i
			}
		}
	}
	return -1
}

// holdHead holds n bytes of b for the head of an answer to HEAD until it
// is written (see heldHeads).
func (c *lingerConn) holdHead(b *byteBudget, n int64) {
	c.headBudget.Store(b)
	c.heldHeads.Add(n)
}

// releaseHeads gives back what holdHead holds.
func (c *lingerConn) releaseHeads() {
	if n := c.heldHeads.Swap(0); n != 0 {
		c.headBudget.Load().give(n)
	}
}

// Write ends the request whose answer it writes: the next bytes read are
// a new request's head. "100 Continue" is not an answer. A muted
// connection's bytes are dropped.
func (c *lingerConn) Write(p []byte) (int, error) {
	if c.mute.Load() {
		return len(p), nil
	}
	if !bytes.HasPrefix(p, []byte("HTTP/1.1 100 ")) {
		c.headDone.Store(false)
		c.newHead.Store(true)
		c.firstDone.Store(true)
	}
	return c.TCPConn.Write(p)
}

// headFound is headEnd's state once a head's empty line was read.
const headFound = 3

// watchFirst follows b, the next bytes of the connection's first
// request's head (see Read).
func (c *lingerConn) watchFirst(b []byte) {
	c.crlf = crlfEnd(c.crlf, b)
	if c.crlf == len("\r\n\r\n") {
		c.firstDone.Store(true) // framed: fasthttp reads it
		return
	}
	if c.first = headEnd(c.first, b); c.first == headFound {
		c.unframed.Store(true)
	}
}

// crlfEnd goes on searching b for a CRLF CRLF, from state (how many of
// its bytes the bytes before b ended with), and returns the state after
// b: 4 once found.
func crlfEnd(state int, b []byte) int {
	for _, ch := range b {
		switch {
		case state == 4:
			return state
		case ch == '\r' && state == 2:
			state = 3
		case ch == '\r':
			state = 1
		case ch == '\n' && (state == 1 || state == 3):
			state++
		default:
			state = 0
		}
	}
	return state
}

// headEnd goes on searching b for the empty line that ends a request's
// head (LF CR LF or LF LF), from state (0: in a line, 1: after its LF, 2:
// after LF CR), and returns the state after b.
func headEnd(state int, b []byte) int {
	for _, ch := range b {
		switch {
		case ch == '\n' && state >= 1:
			return headFound
		case ch == '\n':
			state = 1
		case ch == '\r' && state == 1:
			state = 2
		default:
			state = 0
		}
	}
	return state
}

// newConnGrace is how long after its accept a connection that has sent
// nothing is left to send its request when a shutdown ends the reads.
const newConnGrace = time.Second

// peekBytes is how much of a connection's receive buffer headPending
// looks at: a request's head longer than that, arriving whole but not
// read yet when a shutdown ends the reads, is cut off as one half sent.
const peekBytes = 16 << 10

// headPending looks at the bytes waiting in the connection's receive
// buffer, not read yet (len(buf) of them at most, without reading them):
// some reports whether there are any, whole whether the end of a
// request's head is among them.
func (c *lingerConn) headPending(buf []byte) (whole, some bool) {
	n, ok := c.pending(buf)
	if !ok || n == 0 {
		return false, false
	}
	state := int(c.head.Load())
	if c.newHead.Load() {
		state = 0
	}
	return headEnd(state, buf[:n]) == headFound, true
}

// spared reports whether connSet.expireReads leaves the connection's reads
// alone for now, though it has no request's head read: the head is whole
// in its receive buffer, or it was accepted less than newConnGrace ago and
// has received nothing yet, and the time is before graceEnd (when not
// zero).
func (c *lingerConn) spared(buf []byte, graceEnd time.Time) bool {
	whole, some := c.headPending(buf)
	if whole {
		return true
	}
	now := time.Now()
	return !some && !c.got.Load() && now.Sub(c.accepted) < newConnGrace &&
		(graceEnd.IsZero() || now.Before(graceEnd))
}

// connSet is the open connections of a listener.
type connSet struct {
	mu sync.Mutex
	m  map[*lingerConn]struct{}
}

func (s *connSet) add(c *lingerConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[*lingerConn]struct{}{}
	}
	s.m[c] = struct{}{}
}

// receiving marks the connections whose request's head has arrived but
// which are not in the handler yet (a body still arriving) as early: a
// shutdown beginning serves their requests.
func (s *connSet) receiving() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.m {
		if c.headDone.Load() && c.busy.Load() == 0 {
			c.early.Store(true)
		}
	}
}

// early reports whether a connection marked early (receiving) has its
// request still to reach the handler.
func (s *connSet) early() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.m {
		if c.early.Load() && c.headDone.Load() {
			return true
		}
	}
	return false
}

// stillReceiving names the connections whose request's head arrived but
// whose request never reached the handler: cut off by a shutdown.
func (s *connSet) stillReceiving() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for c := range s.m {
		if c.headDone.Load() && c.busy.Load() == 0 {
			out = append(out, "a request from "+c.RemoteAddr().String()+" (its body still arriving)")
		}
	}
	return out
}

func (s *connSet) remove(c *lingerConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, c)
}

// expireReads ends, until stop is closed, every read of a connection
// that is not in the server's handler and has no request's head read: a
// shutdown calls it once no request it admitted is left. Such a
// connection is idle or sending the head of a request the server will not
// serve (one whose head has arrived, its body still arriving, is served:
// see early); fasthttp's shutdown closes
// idle ones itself but waits for one whose head is half sent, and a client
// that sent half a head and stopped held every shutdown for its whole
// timeout, then reported as work cut off. A read ended fails, and fasthttp
// closes the connection (one with half a head after a 408 Request
// Timeout, one that sent nothing silently: see Server.connErrors).
//
// A connection whose request's head has arrived whole but is still in
// its receive buffer, not read yet (a connection accepted just before
// the listener closed, under load), is left to be read: its request is
// answered as any during a shutdown, 503 shutting_down, rather than 408
// as if its client had been too slow (spared). So is a connection
// accepted less than newConnGrace ago that has received nothing yet: its
// client connected and is about to send its request (net/http's shutdown
// likewise waits for a new connection's first bytes, 5 s). Under load, 1
// in 1000 of the requests sent as the drain ended got 408 for want of
// both. graceEnd, when not zero, ends that grace early: the shutdown's
// deadline less the time the server takes to see the connection closed,
// so that a client that connected and sent nothing does not make the
// shutdown report work cut off.
func (s *connSet) expireReads(stop <-chan struct{}, graceEnd time.Time) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	buf := make([]byte, peekBytes)
	for {
		s.mu.Lock()
		for c := range s.m {
			if c.busy.Load() == 0 && !c.headDone.Load() && !c.spared(buf, graceEnd) {
				c.SetReadDeadline(time.Now())
			}
		}
		s.mu.Unlock()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// Close shuts the connection's sending side and returns; the rest of the
// close (dropping what the client still sends, then closing) goes on in
// the background, so that the server's loops that close connections one
// after another (idle ones at shutdown) do not wait for it.
func (c *lingerConn) Close() error {
	c.releaseHeads()
	c.once.Do(func() {
		if c.set != nil {
			c.set.remove(c)
		}
		if c.CloseWrite() != nil {
			c.TCPConn.Close()
			return
		}
		go func() {
			c.SetReadDeadline(time.Now().Add(lingerTime))
			io.CopyN(io.Discard, c.TCPConn, lingerBytes)
			c.TCPConn.Close()
		}()
	})
	return nil
}
