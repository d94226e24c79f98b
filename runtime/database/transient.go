package database

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Transient reports whether err is a database error that may pass by
// itself, so that what failed on it is worth trying again later. Only a
// failure to connect counts (pgx's *pgconn.ConnectError), whoever was
// connecting: the server could not be reached (a dial error, a connection
// refused, reset or closed while connecting, a connect that timed out),
// or it refused the connection for now — SQLSTATE class 08 (connection
// exception), 53300 (too_many_connections), 57P01 (admin_shutdown), 57P02
// (crash_shutdown), 57P03 (cannot_connect_now): a server at its
// connection limit, restarting, or failing over. A refusal that stays
// (bad password, unknown database, a role whose logins a plugin broke)
// is not, nor is anything raised after the connection was made: a
// plugin's migration chooses its own SQLSTATE (RAISE ... USING ERRCODE =
// '08006', or pg_terminate_backend of its own backend), and a plugin that
// could make its load "transient" would keep its replica unready for
// ever. Nor is the caller's context ending.
//
// A plugin's migrations pending under database.skip_migrations count too:
// the operator's `greenroom migrate up` (a deploy job) applies them, and
// the plugin then loads by itself, its replica unready meanwhile, as
// readiness promises until migrations are done. They are the operator's
// to apply, not the plugin's to fake.
//
// So does a load that timed out waiting for the plugin's cross-replica
// lock, which only the runtime takes (a replica or `migrate up` applying
// a long migration): its holder ends, by committing or by its own
// migration_timeout, and the load then goes on or fails on its own error.
// A wait for a lock a plugin's own transaction can hold (its role's) is
// not.
//
// Nor a migration the server's restart or a failover ended
// (serverGoneError): the runtime's own connection finds the server
// started anew (or none), which no plugin can fake by ending its own
// backend.
func Transient(err error) bool {
	var pe *pendingError
	var le *lockWaitError
	var se *serverGoneError
	var he *heldUpError
	if errors.As(err, &pe) || errors.As(err, &le) || errors.As(err, &se) || errors.As(err, &he) {
		return true
	}
	var ce *pgconn.ConnectError
	if err == nil || !errors.As(err, &ce) || errors.Is(err, context.Canceled) {
		return false
	}
	var pg *pgconn.PgError
	if errors.As(ce, &pg) {
		switch pg.Code {
		case "53300", "57P01", "57P02", "57P03":
			return true
		}
		return strings.HasPrefix(pg.Code, "08")
	}
	return true
}

// pendingError is the load error of a plugin whose migrations are pending
// while database.skip_migrations is set.
type pendingError struct{ msg string }

func (e *pendingError) Error() string { return e.msg }

// lockWaitError is the load error of a plugin that waited its whole bound
// for a lock another process holds.
type lockWaitError struct{ err error }

func (e *lockWaitError) Error() string { return e.err.Error() }
func (e *lockWaitError) Unwrap() error { return e.err }

// serverGoneError is the load error of a plugin whose migration ended
// because the database server restarted or failed over.
type serverGoneError struct{ err error }

func (e *serverGoneError) Error() string { return e.err.Error() }
func (e *serverGoneError) Unwrap() error { return e.err }

// RetryWhy says, for an error Transient accepts, why the load is retried,
// in words that follow "plugin X is retrying its load" and name no part of
// the error itself (readiness answers anyone).
func RetryWhy(err error) string {
	var pe *pendingError
	var le *lockWaitError
	var se *serverGoneError
	var he *heldUpError
	switch {
	case errors.As(err, &he):
		return "after this replica was held up while it set up or migrated the plugin's database"
	case errors.As(err, &se):
		return "after the database server restarted during its migration"
	case errors.As(err, &pe):
		return "while its migrations are pending (run `greenroom migrate up`)"
	case errors.As(err, &le):
		return "after waiting for its migration lock (a replica or `greenroom migrate up` is migrating)"
	}
	return "after a database error"
}

// serverWent reports whether err is the server ending a connection of the
// runtime's user: a FATAL error of SQLSTATE 57P01, 57P02, 57P03 (an
// administrator's shutdown, a crash, a restart) or of class 08. Only on a
// connection no plugin can reach is that the server's doing: a plugin can
// end its own backends (pg_terminate_backend(pg_backend_pid())).
func serverWent(err error) bool {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || pg.Severity != "FATAL" {
		return false
	}
	switch pg.Code {
	case "57P01", "57P02", "57P03":
		return true
	}
	return strings.HasPrefix(pg.Code, "08")
}

// heldUpError is the load error of a plugin whose database setup or
// migration this replica could not finish because it was held up (stopped,
// a paused VM, cut off from the server) past the bounds that keep the
// other replicas from waiting for it: its cross-replica lock's session, or
// its migration's transaction, idle too long, ended by the server. The
// load is retried.
type heldUpError struct{ err error }

func (e *heldUpError) Error() string { return e.err.Error() }
func (e *heldUpError) Unwrap() error { return e.err }

// lockLost returns the *errLockLost that cancelled a lock's context, or
// nil.
func lockLost(held context.Context) error {
	var lost *errLockLost
	if errors.As(context.Cause(held), &lost) {
		return lost
	}
	return nil
}

// heldUp reports whether err is the server ending a transaction that was
// idle past its idle_in_transaction_session_timeout (SQLSTATE 25P03).
func heldUp(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "25P03"
}
