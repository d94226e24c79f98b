package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/bits"
	"net"
	"slices"
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
	// framing follows the requests' framing in the bytes read, to find
	// a chunked body's trailer section with a line ended by a bare LF.
	// badTrailer is set once one was found: the bytes from that LF on
	// were never handed to fasthttp, and every read fails from then on
	// (see Read).
	framing    framing
	badTrailer atomic.Bool
	// heads are the claims on server.response_budget (each from its
	// caller's share) of the heads of answers to HEAD being written on
	// the connection, which have no body stream to hold them until they
	// are sent: given back when the server reads from the connection
	// again (the server writes an answer before it reads the next
	// request) or closes it. nheads is len(heads), for Read to skip the
	// lock; headsClosed is set once the connection is closed (a head
	// held after that is given back at once).
	headsMu     sync.Mutex
	heads       []budgetClaim
	nheads      atomic.Int32
	headsClosed bool
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

// handling notes a request that reached the handler (guard): its head
// has been read (see reading).
func (c *lingerConn) handling() {
	c.reading.Store(false)
}

// connState follows fasthttp's connection states (Server.ConnState):
// StateActive, for every request of the connection, begins the read of
// its head (reading).
func connState(c net.Conn, state fasthttp.ConnState) {
	if lc, ok := c.(*lingerConn); ok && state == fasthttp.StateActive {
		lc.reading.Store(true)
	}
}

// errUnframedHead ends the read of a request's head that the HTTP
// library would wait on until server.read_timeout (see lingerConn.Read).
// Its text becomes the 400's message: no quote (parseErrorMessage), no
// "timeout" (Fiber would answer 408).
var errUnframedHead = errors.New("the request's head ends with a bare LF (an empty line that is not a CRLF after a CRLF), which servers may read differently; end each line with CRLF")

// Read notes the end of a request's head (headDone).
//
// It also refuses a request whose head ends in an empty line the HTTP
// library does not take for its end: fasthttp ends a head only where the
// bytes it holds carry a CRLF CRLF (or at a CRLF right after the request
// line), and otherwise waits for more until server.read_timeout (408),
// also for a head ended by "\n\n", which every header line ended by a
// bare LF makes greenroom refuse anyway (framingProblem). When fasthttp,
// reading a head, asks for more bytes while those it holds carry such an
// empty line after a line that is not empty (heldEmptyLine), it is
// waiting for what is not coming, and the read fails at once instead
// (400 bad_request): whatever request of the connection it is (the
// first, one after an answer, one pipelined behind requests with bodies
// or without), as what fasthttp holds is told by the buffer it reads
// into, not by where the requests before it ended.
//
// And it refuses a chunked body whose trailer section has a line ended by
// a bare LF (framing.follow), which fasthttp takes for a line's end, and
// for the section's end when it is empty: it ended "0\r\n\n" there when
// a CRLF CRLF lay further on among the bytes it held (a request sent
// behind it, which it then served, where a proxy in front that ends the
// section only at a CRLF CRLF saw one request), and otherwise waited for
// more until server.read_timeout. The bytes read are handed to fasthttp
// only up to that LF, and every read fails from then on: fasthttp, which
// cannot end the section without more bytes, fails to read the body (400
// bad_request, see readBody) or to drop it after the route's answer, and
// closes the connection; nothing after the LF is ever read as a request.
func (c *lingerConn) Read(p []byte) (int, error) {
	c.releaseHeads(false)
	if c.badTrailer.Load() {
		return 0, errUnframedTrailer
	}
	if c.heldEmptyLine(p) {
		return 0, errUnframedHead
	}
	n, err := c.TCPConn.Read(p)
	if n > 0 {
		if i := c.framing.follow(p[:n]); i >= 0 {
			c.badTrailer.Store(true)
			if n, err = i, nil; n == 0 {
				return 0, errUnframedTrailer
			}
		}
		c.noteEmptyLines(p[:n])
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

// errUnframedTrailer ends the reads of a connection on which a chunked
// body's trailer section has a line ended by a bare LF (see Read). Its
// text becomes the 400's message, as errUnframedHead's does.
var errUnframedTrailer = errors.New("the request's chunked body has a trailer section with a line ended by a bare LF (not CRLF), which servers may read differently; end the last chunk with 0 CRLF CRLF and each trailer line with CRLF")

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
// empty line (LF LF or LF CR LF), or -1. The bytes after a head are those
// of its body too, kilobytes of them, text as often as not: it looks at
// 512 bytes at a time from the end, skips those without an LF with
// bytes.IndexByte (vector instructions), and searches the others from
// their end down to their first LF 8 bytes at a time (emptyLineWords),
// in a time that depends little on how many LFs and CRs they hold.
func lastEmptyLine(b []byte) int {
	// Searched 8 bytes at a time at multiples of 8 from b's start, those
	// after the last multiple first, as 8 bytes ending in zeros (neither
	// LF nor CR: no empty line begins in them).
	p := len(b) &^ 7
	var lfN, xN uint64 // of the 8 bytes after p (none: zeros)
	if p < len(b) {
		var w [8]byte
		copy(w[:], b[p:])
		var i int
		if i, lfN, xN = emptyLineWords(w[:], 0, 0); i >= 0 {
			return p + i
		}
	}
	for p > 0 {
		lo := max(0, p-512)
		f := bytes.IndexByte(b[lo:p], '\n')
		if f < 0 {
			// No LF in b[lo:p], so none in the 8 bytes at lo, and
			// their CRs do not matter (an empty line's CR is before
			// an LF): zeros say as much.
			p, lfN, xN = lo, 0, 0
			continue
		}
		f = (lo + f) &^ 7
		var i int
		if i, lfN, xN = emptyLineWords(b[f:p], lfN, xN); i >= 0 {
			return f + i
		}
		if p = f; lo < f {
			p, lfN, xN = lo, 0, 0 // no LF in b[lo:f]
		}
	}
	return -1
}

// emptyLineWords returns the index in w, whose length is a multiple of 8,
// of the LF that begins its last empty line, or -1, searching it 8 bytes
// at a time from its end; xN is the 8 bytes after w (little-endian), lfN
// their LF mask (LFs of xN, see zeroBytes): an empty line that begins in
// w may end in them. It returns the first 8 bytes of w and their LF mask
// too, to go on before w.
//
// In a word x of 8 bytes, little-endian (byte k in bits 8k to 8k+7), lf
// has the top bit of each LF byte; lf>>8|lfN<<56 that of each byte
// followed by an LF, lf>>16|lfN<<48 of each followed by an LF one byte
// later; cr1 that of each followed by a CR. Only where lf has an LF
// followed by an LF at once or one byte later (rare in text, whose
// lines are longer) is cr1 worked out.
func emptyLineWords(w []byte, lfN, xN uint64) (int, uint64, uint64) {
	const lfs, crs = 0x0a0a0a0a0a0a0a0a, 0x0d0d0d0d0d0d0d0d
	for p := len(w) - 8; p >= 0; p -= 8 {
		x := binary.LittleEndian.Uint64(w[p:])
		lf := zeroBytes(x ^ lfs)
		lf1, lf2 := lf>>8|lfN<<56, lf>>16|lfN<<48
		if lf&(lf1|lf2) != 0 {
			cr1 := zeroBytes((x>>8 | xN<<56) ^ crs)
			if m := lf & (lf1 | cr1&lf2); m != 0 {
				return p + (bits.Len64(m)-1)>>3, 0, 0
			}
		}
		lfN, xN = lf, x
	}
	return -1, lfN, xN
}

// zeroBytes returns y with the top bit of each of its bytes that is 0 set
// and every other bit clear. Exactly: (y&0x7f)+0x7f of a byte has its top
// bit set if y&0x7f is not 0 and never carries into the next byte (unlike
// the (y-0x01..)&^y&0x80.. test, which marks a byte 0x01 after a 0).
func zeroBytes(y uint64) uint64 {
	const low7, top = 0x7f7f7f7f7f7f7f7f, 0x8080808080808080
	return ^((y&low7 + low7) | y) & top
}

// holdHead holds claim for the head of an answer to HEAD until it is
// written (see heads).
func (c *lingerConn) holdHead(claim budgetClaim) {
	c.headsMu.Lock()
	defer c.headsMu.Unlock()
	if c.headsClosed {
		claim.release()
		return
	}
	c.heads = append(c.heads, claim)
	c.nheads.Store(int32(len(c.heads)))
}

// releaseHeads gives back what holdHead holds; closing, for good.
func (c *lingerConn) releaseHeads(closing bool) {
	if !closing && c.nheads.Load() == 0 {
		return
	}
	c.headsMu.Lock()
	defer c.headsMu.Unlock()
	c.headsClosed = c.headsClosed || closing
	for i := range c.heads {
		c.heads[i].release()
	}
	c.heads = c.heads[:0]
	c.nheads.Store(0)
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
	}
	return c.TCPConn.Write(p)
}

// headFound is headEnd's state once a head's empty line was read.
const headFound = 3

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

// endReceiving ends the reads of the connections whose request's head
// arrived but whose request never reached the handler (stillReceiving),
// as a shutdown's deadline cuts them off: fasthttp answers each 408 and
// closes it, and its access log line is written. It waits for them to
// close, wait at most.
func (s *connSet) endReceiving(wait time.Duration) {
	s.mu.Lock()
	var ended []*lingerConn
	for c := range s.m {
		if c.headDone.Load() && c.busy.Load() == 0 {
			c.SetReadDeadline(time.Now())
			ended = append(ended, c)
		}
	}
	s.mu.Unlock()
	for end := time.Now().Add(wait); len(ended) > 0 && time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		ended = slices.DeleteFunc(ended, func(c *lingerConn) bool { _, open := s.m[c]; return !open })
		s.mu.Unlock()
	}
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
	c.releaseHeads(true)
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
