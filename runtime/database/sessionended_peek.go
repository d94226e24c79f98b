//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package database

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// peerSpoke reports whether c's socket holds data to read or has been
// closed by its peer, without reading: a recv with MSG_PEEK and
// MSG_DONTWAIT, no round trip. A PostgreSQL session idle in a pool
// receives nothing unless the server ended it (a FATAL error, such as
// 57P01 for a restart, a failover or pg_terminate_backend, then the
// socket's end). It runs under Control, not Read: the driver's
// background reader may be blocked in a read of the socket, which Read
// would wait for. False when it cannot tell (not a socket).
func peerSpoke(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	spoke := false
	rc.Control(func(fd uintptr) {
		var b [1]byte
		for {
			_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			// No error: data waits, or (0 bytes) the peer closed
			// the connection; an error other than EAGAIN: reset.
			spoke = err == nil || !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EWOULDBLOCK)
			return
		}
	})
	return spoke
}
