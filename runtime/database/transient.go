package database

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Transient reports whether err is a database error that may pass by
// itself, so that what failed on it is worth trying again later: the
// server could not be reached (a dial error, a connection refused or
// reset, the connection closed while connecting), or it refused the
// connection for now — SQLSTATE class 08 (connection exception), 53300
// (too_many_connections), 57P01 (admin_shutdown), 57P02 (crash_shutdown),
// 57P03 (cannot_connect_now): a server at its connection limit, or
// restarting, or failing over. Everything else is not: a failing migration
// or refused SQL, authentication and privileges, a bad configuration, a
// timeout or cancellation of the caller's context.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	// The server's own answer decides: a connection it refused for a
	// reason that stays (bad password, unknown database) is not retried.
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "53300", "57P01", "57P02", "57P03":
			return true
		}
		return strings.HasPrefix(pg.Code, "08")
	}
	// A dial, read or write on the socket that failed, or the server's
	// name that did not resolve. Not any net.Error: every syscall.Errno
	// (a missing file's ENOENT) and context.DeadlineExceeded (a load that
	// ran past its bound) are ones.
	var op *net.OpError
	var dns *net.DNSError
	if errors.As(err, &op) || errors.As(err, &dns) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	// The server closed the connection while it was being set up; an EOF
	// elsewhere (a truncated file) says nothing about the database.
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF))
}
