package database_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/greenroom-dev/greenroom/runtime/database"
)

// What a plugin's load is retried on (docs/operations.md, Health): the
// database could not be reached or refused connections for now; not what
// stays wrong until someone changes something.
func TestTransient(t *testing.T) {
	pg := func(code string) error {
		return fmt.Errorf("lock plugin:todo: connect to PostgreSQL: %w", &pgconn.PgError{Severity: "FATAL", Code: code})
	}
	refused, closing := connectErrors(t)
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"too many connections", pg("53300"), true},
		{"connection failure", pg("08006"), true},
		{"connection exception", pg("08000"), true},
		{"admin shutdown", pg("57P01"), true},
		{"crash shutdown", pg("57P02"), true},
		{"cannot connect now", pg("57P03"), true},
		{"bad password", pg("28P01"), false},
		{"unknown database", pg("3D000"), false},
		{"permission denied", pg("42501"), false},
		{"syntax error in a migration", pg("42601"), false},
		{"unique violation", pg("23505"), false},
		{"query canceled", pg("57014"), false},
		{"dial refused", fmt.Errorf("database: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), true},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"dns", &net.DNSError{Err: "no such host", Name: "db", IsTemporary: true}, true},
		{"connect refused (real)", refused, true},
		{"connection closed while connecting (real)", closing, true},
		{"deadline", fmt.Errorf("migration timed out: %w", context.DeadlineExceeded), false},
		{"canceled", context.Canceled, false},
		{"EOF outside a connection", fmt.Errorf("read module: %w", io.ErrUnexpectedEOF), false},
		{"other", errors.New("wasm: invalid magic number"), false},
		{"missing file", fmt.Errorf("path: %w", &fs.PathError{Op: "stat", Path: "x.wasm", Err: syscall.ENOENT}), false},
		{"timeout errno", syscall.ETIMEDOUT, false},
	} {
		if got := database.Transient(c.err); got != c.want {
			t.Errorf("%s: Transient(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// connectErrors returns what connecting to PostgreSQL returns when nothing
// listens on the port, and when the server closes the connection at once.
func connectErrors(t *testing.T) (refused, closing error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, refused = pgconn.Connect(ctx, "postgres://u@"+addr+"/db?sslmode=disable")
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, closing = pgconn.Connect(ctx, "postgres://u@"+ln.Addr().String()+"/db?sslmode=disable")
	if refused == nil || closing == nil {
		t.Fatalf("connections succeeded: %v, %v", refused, closing)
	}
	return refused, closing
}
