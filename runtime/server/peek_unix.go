//go:build unix

package server

import "syscall"

// pending copies into buf the bytes waiting in the connection's receive
// buffer, without reading them (recv with MSG_PEEK; the net package's
// sockets are non-blocking, so it does not wait), and returns how many;
// ok is false when it cannot tell (nothing is waiting: EAGAIN).
func (c *lingerConn) pending(buf []byte) (n int, ok bool) {
	rc, err := c.TCPConn.SyscallConn()
	if err != nil {
		return 0, false
	}
	var rerr error
	if err := rc.Control(func(fd uintptr) {
		n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK)
	}); err != nil || rerr != nil || n < 0 {
		return 0, false
	}
	return n, true
}
