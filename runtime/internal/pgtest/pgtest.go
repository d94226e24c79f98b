// Package pgtest gives tests a real PostgreSQL database of their own.
//
// The server is the one DATABASE_URL names (any database on it; the user
// must be able to create databases and roles), or else a throwaway cluster
// started with initdb and pg_ctl found on PATH or under
// /usr/lib/postgresql/*/bin, on a free port in a temporary directory, and
// stopped by Main. When neither exists the tests skip with the reason; when
// the environment variable CI is set they fail instead.
//
// Every call of URL creates a uniquely named database and drops it (and the
// plugin roles greenroom created for it) when the test ends, so tests of
// several packages, or several people, can share one server.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"

	"github.com/greenroom-dev/greenroom/runtime/database"
)

var (
	once     sync.Once
	adminURL string
	setupErr error
	cluster  *throwaway

	// made are the databases URL created (and for which test), for
	// Main's sweep of the roles left behind.
	madeMu sync.Mutex
	made   []madeDB
)

// Main runs the package's tests, drops the plugin roles of their
// databases that are still there, and then stops the throwaway cluster,
// if one was started. Use it from TestMain: os.Exit(pgtest.Main(m)).
//
// A role is left when something creates it after its test's cleanup
// dropped the roles (a load going on in the background as the test
// ends), and the shared server would keep it for good: Main names each
// one it drops, with its test, on standard error (shown by go test -v,
// or when the package fails).
func Main(m *testing.M) int {
	code := m.Run()
	sweepRoles()
	if cluster != nil {
		cluster.stop()
	}
	return code
}

type madeDB struct{ name, test string }

// sweepRoles drops the roles of the databases URL created that are still
// on the server.
func sweepRoles() {
	madeMu.Lock()
	names := made
	madeMu.Unlock()
	if len(names) == 0 || setupErr != nil {
		return
	}
	db, err := sql.Open("pgx", adminURL)
	if err != nil {
		return
	}
	defer db.Close()
	for _, d := range names {
		dropRoles(db, database.RolePrefix(d.name), func(r string, err error) {
			if err != nil {
				fmt.Fprintf(os.Stderr, "pgtest: drop the roles %s left after its cleanup: %s: %v\n", d.test, r, err)
				return
			}
			fmt.Fprintf(os.Stderr, "pgtest: dropped role %s, made after %s had dropped its roles\n", r, d.test)
		})
	}
}

// Available reports whether a server can be had, and why not.
func Available() (string, error) {
	once.Do(setup)
	return adminURL, setupErr
}

func setup() {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		adminURL = u
		setupErr = ping(u)
		return
	}
	c, err := startThrowaway()
	if err != nil {
		setupErr = err
		return
	}
	cluster = c
	adminURL = c.url
}

func ping(u string) error {
	db, err := sql.Open("pgx", u)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("DATABASE_URL server does not answer: %w", err)
	}
	return nil
}

// URL returns the connection URL of a new, empty database, dropped with
// the roles greenroom made for it when tb ends. It skips tb (fails it when
// CI is set) when no PostgreSQL server can be had.
func URL(tb testing.TB) string {
	tb.Helper()
	admin, err := Available()
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("PostgreSQL needed (CI is set, so not skipping): %v", err)
		}
		tb.Skipf("skipping: no PostgreSQL: %v (set DATABASE_URL, or install initdb/pg_ctl)", err)
	}
	var b [6]byte
	rand.Read(b[:])
	name := "gr_test_" + hex.EncodeToString(b[:])
	db, err := sql.Open("pgx", admin)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		db.Close()
		tb.Fatalf("create test database: %v", err)
	}
	madeMu.Lock()
	made = append(made, madeDB{name, tb.Name()})
	madeMu.Unlock()
	tb.Cleanup(func() {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Logf("drop test database %s: %v", name, err)
			return
		}
		DropRoles(tb, db, database.RolePrefix(name))
	})
	u, err := url.Parse(admin)
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// DropRoles drops every role whose name starts with prefix.
func DropRoles(tb testing.TB, db *sql.DB, prefix string) {
	dropRoles(db, prefix, func(r string, err error) {
		if err != nil {
			tb.Logf("drop role %s: %v", r, err)
		}
	})
}

// dropRoles drops every role whose name starts with prefix, telling done
// of each, with the error that kept it if one did (r is "" when the roles
// could not be listed).
func dropRoles(db *sql.DB, prefix string, done func(r string, err error)) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)", prefix)
	if err != nil {
		done("", err)
		return
	}
	var roles []string
	for rows.Next() {
		var r string
		rows.Scan(&r)
		roles = append(roles, r)
	}
	rows.Close()
	for _, r := range roles {
		_, err := db.ExecContext(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize())
		done(r, err)
	}
}

// Admin opens the server as the administrative user, closed when tb ends.
func Admin(tb testing.TB) *sql.DB {
	admin, err := Available()
	if err != nil {
		tb.Fatal(err)
	}
	db, err := sql.Open("pgx", admin)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// throwaway is a cluster started for the tests of one binary.
type throwaway struct {
	dir, bin, url string
	opts          string // the server's options (pg_ctl -o)
	cred          *credential
}

func findBin() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1]), nil
	}
	return "", errors.New("DATABASE_URL is not set and neither initdb/pg_ctl on PATH nor /usr/lib/postgresql/*/bin exists")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// PasswordURL starts a throwaway cluster of its own whose TCP connections
// authenticate with passwords (scram-sha-256, where the shared test server
// trusts every connection), for tests of what happens when a password is
// wrong, and returns the URL of its postgres superuser (with the
// password). It is stopped when tb ends; without initdb and pg_ctl the
// test is skipped, or fails under CI.
func PasswordURL(tb testing.TB) string {
	tb.Helper()
	c, err := startCluster("scram-sha-256")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("a throwaway PostgreSQL with password authentication: %v", err)
		}
		tb.Skipf("no throwaway PostgreSQL with password authentication: %v", err)
	}
	tb.Cleanup(c.stop)
	return c.url
}

// Restartable starts a throwaway cluster of its own (trust
// authentication), for tests that take the server away under the
// runtime, and returns the URL of its postgres superuser and functions
// that stop it (pg_ctl stop -m fast: sessions end with 57P01, as in a
// failover) and start it again. It is stopped when tb ends; without
// initdb and pg_ctl the test is skipped, or fails under CI.
func Restartable(tb testing.TB) (url string, down, up func()) {
	tb.Helper()
	_, url, down, up = restartable(tb)
	return url, down, up
}

// Draining is Restartable with drain, which begins the server's smart
// shutdown and returns: from then on the server refuses new connections
// (57P03, as when a fast shutdown begins) while the sessions it has run
// on until they end (down, a fast shutdown, then ends them), as a server
// whose fast shutdown has not reached every session yet.
func Draining(tb testing.TB) (url string, drain, down, up func()) {
	tb.Helper()
	c, url, down, up := restartable(tb)
	drain = func() {
		if out, err := c.run("pg_ctl", "-D", filepath.Join(c.dir, "data"), "-m", "smart", "-W", "stop"); err != nil {
			tb.Fatalf("pg_ctl stop -m smart: %v\n%s", err, out)
		}
	}
	return url, drain, down, up
}

func restartable(tb testing.TB) (c *throwaway, url string, down, up func()) {
	tb.Helper()
	c, err := startCluster("trust")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("a throwaway PostgreSQL: %v", err)
		}
		tb.Skipf("no throwaway PostgreSQL: %v", err)
	}
	tb.Cleanup(c.stop)
	data := filepath.Join(c.dir, "data")
	down = func() {
		if out, err := c.run("pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "60", "stop"); err != nil {
			tb.Fatalf("pg_ctl stop: %v\n%s", err, out)
		}
	}
	up = func() {
		// Its log to a file: pg_ctl hands the server its output
		// otherwise, which keeps ours open for the server's life.
		if out, err := c.run("pg_ctl", "-D", data, "-o", c.opts, "-w", "-t", "60", "-l", filepath.Join(c.dir, "log"), "start"); err != nil {
			tb.Fatalf("pg_ctl start: %v\n%s", err, out)
		}
	}
	return c, c.url, down, up
}

func startThrowaway() (*throwaway, error) { return startCluster("trust") }

// startCluster starts a cluster whose TCP connections authenticate with
// auth ("trust", or "scram-sha-256" with the postgres user's password
// throwawayPassword).
func startCluster(auth string) (*throwaway, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "greenroom-pgtest-")
	if err != nil {
		return nil, err
	}
	c := &throwaway{dir: dir, bin: bin}
	// PostgreSQL refuses to run as root: run it as the postgres user then.
	if c.cred, err = unprivileged(dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte(throwawayPassword+"\n"), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if out, err := c.run("initdb", "-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host="+auth, "--pwfile="+pwfile, "--no-sync", "-E", "UTF8"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	opts := "-p " + strconv.Itoa(port) + " -k " + dir + " -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
	c.opts = opts
	if out, err := c.run("pg_ctl", "-D", data, "-o", opts, "-w", "-t", "60", "-l", filepath.Join(dir, "log"), "start"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg_ctl start: %v\n%s", err, out)
	}
	c.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	if auth != "trust" {
		c.url = fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable", throwawayPassword, port)
	}
	return c, nil
}

// throwawayPassword is the postgres user's password in a throwaway
// cluster.
const throwawayPassword = "greenroom-test"

func (c *throwaway) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	c.cred.apply(cmd)
	return cmd.CombinedOutput()
}

func (c *throwaway) stop() {
	c.run("pg_ctl", "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "-w", "stop")
	os.RemoveAll(c.dir)
}
