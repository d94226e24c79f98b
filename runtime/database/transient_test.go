package database_test

import (
	"context"
	"encoding/binary"
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
// database could not be connected to for now, by pgx's own errors; not
// what stays wrong until someone changes something, and not an error a
// plugin's SQL can raise with any SQLSTATE it likes (which kept its
// replica unready for ever).
func TestTransient(t *testing.T) {
	// A server that refuses the connection at start-up with code.
	refusedWith := func(code string) error {
		return fmt.Errorf("lock plugin:todo: connect to PostgreSQL: %w", connectError(t, fakeServer(t, code), time.Minute))
	}
	// The same error raised by a statement (a migration's RAISE).
	raised := func(code string) error {
		return fmt.Errorf("migration 002.up.sql failed: %w", &pgconn.PgError{Severity: "ERROR", Code: code})
	}
	refused, closing := connectErrors(t)
	canceledCtx, cancel := context.WithCancel(context.Background())
	cancel()
	_, canceled := pgconn.Connect(canceledCtx, "postgres://u@"+fakeServer(t, "")+"/db?sslmode=disable")
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"too many connections", refusedWith("53300"), true},
		{"connection failure", refusedWith("08006"), true},
		{"connection exception", refusedWith("08000"), true},
		{"admin shutdown", refusedWith("57P01"), true},
		{"crash shutdown", refusedWith("57P02"), true},
		{"cannot connect now", refusedWith("57P03"), true},
		{"bad password", refusedWith("28P01"), false},
		{"unknown database", refusedWith("3D000"), false},
		{"a role's logins broken (undefined file)", refusedWith("58P01"), false},
		{"a migration raising 08006", raised("08006"), false},
		{"a migration raising 53300", raised("53300"), false},
		{"a migration's backend terminated (57P01)", raised("57P01"), false},
		{"syntax error in a migration", raised("42601"), false},
		{"connect refused", refused, true},
		{"connection closed while connecting", closing, true},
		{"a server that never answers", connectError(t, fakeServer(t, "never"), time.Second), true},
		{"connect canceled", canceled, false},
		{"deadline", fmt.Errorf("migration timed out: %w", context.DeadlineExceeded), false},
		{"canceled", context.Canceled, false},
		{"EOF outside a connection", fmt.Errorf("read module: %w", io.ErrUnexpectedEOF), false},
		{"dial error outside a connect", fmt.Errorf("database: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), false},
		{"other", errors.New("wasm: invalid magic number"), false},
		{"missing file", fmt.Errorf("path: %w", &fs.PathError{Op: "stat", Path: "x.wasm", Err: syscall.ENOENT}), false},
	} {
		if got := database.Transient(c.err); got != c.want {
			t.Errorf("%s: Transient(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// connectError is the error of connecting to addr within timeout.
func connectError(t *testing.T, addr string, timeout time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := pgconn.Connect(ctx, "postgres://u@"+addr+"/db?sslmode=disable")
	if err == nil {
		conn.Close(ctx)
		t.Fatalf("connected to %s", addr)
	}
	return err
}

// fakeServer listens on a free port and answers each connection's
// start-up message with a FATAL error of SQLSTATE code ("" closes the
// connection, "never" answers nothing), as PostgreSQL refuses one.
func fakeServer(t *testing.T, code string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var n [4]byte
				if _, err := io.ReadFull(c, n[:]); err != nil {
					return
				}
				io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(n[:]))-4)
				switch code {
				case "":
					return
				case "never":
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					io.Copy(io.Discard, c)
					return
				}
				var body []byte
				for _, f := range [][2]string{{"S", "FATAL"}, {"V", "FATAL"}, {"C", code}, {"M", "refused by a test server"}} {
					body = append(append(append(body, f[0]...), f[1]...), 0)
				}
				body = append(body, 0)
				msg := append([]byte{'E'}, binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))...)
				c.Write(append(msg, body...))
			}()
		}
	}()
	return ln.Addr().String()
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
