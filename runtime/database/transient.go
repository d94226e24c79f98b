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
func Transient(err error) bool {
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
