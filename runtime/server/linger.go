package server

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
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
}

func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok && err == nil {
		lc := &lingerConn{TCPConn: tc, set: l.conns}
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

func (s *connSet) remove(c *lingerConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, c)
}

// expireReads ends, until stop is closed, every read of a connection
// that is not in the server's handler: a shutdown calls it once no
// request it admitted is left. Such a connection is idle or sending the
// head of a request the server will not serve; fasthttp's shutdown closes
// idle ones itself but waits for one whose head is half sent, and a client
// that sent half a head and stopped held every shutdown for its whole
// timeout, then reported as work cut off. A read ended fails, and fasthttp
// closes the connection.
func (s *connSet) expireReads(stop <-chan struct{}) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		for c := range s.m {
			if c.busy.Load() == 0 {
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
