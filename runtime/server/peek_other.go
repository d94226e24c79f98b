//go:build !unix

package server

// pending cannot look into the receive buffer here: a request's head
// waiting in it when a shutdown ends the reads is cut off (408).
func (c *lingerConn) pending(buf []byte) (n int, ok bool) { return 0, false }
