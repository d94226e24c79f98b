package server

import (
	"io"
	"net"
	"sync"
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

// lingerListener hands out connections that close lingering.
type lingerListener struct{ net.Listener }

func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok && err == nil {
		return &lingerConn{TCPConn: tc}, nil
	}
	return c, err
}

type lingerConn struct {
	*net.TCPConn
	once sync.Once
}

// Close shuts the connection's sending side and returns; the rest of the
// close (dropping what the client still sends, then closing) goes on in
// the background, so that the server's loops that close connections one
// after another (idle ones at shutdown) do not wait for it.
func (c *lingerConn) Close() error {
	c.once.Do(func() {
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
