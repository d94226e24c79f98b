package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite: the runtime's tables in <dir>/greenroom.db, each plugin's in
// <dir>/plugins/<id>.db. The driver is modernc.org/sqlite (SQLite compiled
// to Go, no cgo), so `go run ./cmd/greenroom dev` needs nothing but Go, and
// it exposes SQLite's authorizer, which is what confines a plugin to its
// file.

type sqliteBackend struct {
	dir string
	log *logrus.Entry
}

func newSQLite(cfg Config, log *logrus.Entry) (*sqliteBackend, error) {
	dir := SQLiteDir(cfg.Connection)
	if dir == "" {
		return nil, errors.New("database.connection: empty SQLite directory")
	}
	return &sqliteBackend{dir: dir, log: log}, nil
}

// SQLiteDir returns the directory named by a SQLite database.connection
// ("file:DIR" or DIR).
func SQLiteDir(connection string) string {
	return strings.TrimPrefix(connection, "file:")
}

// sqliteDSN is the DSN of a database file: WAL so that readers do not block
// the writer, a busy timeout so that writers queue instead of failing,
// BEGIN IMMEDIATE so that a transaction that reads then writes cannot
// deadlock with another, and times stored in SQLite's own format.
func sqliteDSN(path string, extra ...string) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	params := append([]string{
		"_pragma=busy_timeout(10000)",
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(NORMAL)",
		"_pragma=foreign_keys(1)",
		"_txlock=immediate",
		"_time_format=sqlite",
	}, extra...)
	return "file:" + esc + "?" + strings.Join(params, "&")
}

func (b *sqliteBackend) open(ctx context.Context) (*bun.DB, error) {
	if err := os.MkdirAll(filepath.Join(b.dir, "plugins"), 0o700); err != nil {
		return nil, fmt.Errorf("database.connection: %w", err)
	}
	path := filepath.Join(b.dir, "greenroom.db")
	if err := createPrivate(path); err != nil {
		return nil, err
	}
	sdb, err := sql.Open("sqlite", sqliteDSN(path))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := sdb.PingContext(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return bun.NewDB(sdb, sqlitedialect.New()), nil
}

// createPrivate creates path readable by its owner only, unless it exists.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return f.Close()
}

func (b *sqliteBackend) check(context.Context, *bun.DB) error   { return nil }
func (b *sqliteBackend) prepare(context.Context, *bun.DB) error { return nil }

func (b *sqliteBackend) lock(ctx context.Context, _ *bun.DB, name string) (func(), error) {
	path := filepath.Join(b.dir, "greenroom.lock")
	if id, ok := strings.CutPrefix(name, "plugin:"); ok {
		path = filepath.Join(b.dir, "plugins", id+".lock")
	}
	return lockFile(ctx, path)
}

func (b *sqliteBackend) plugin(ctx context.Context, _ *bun.DB, id string, lim Limits) (*sql.DB, error) {
	path := filepath.Join(b.dir, "plugins", id+".db")
	if err := createPrivate(path); err != nil {
		return nil, err
	}
	c := &sqliteConnector{dsn: sqliteDSN(path, "_defensive=1", "_pragma=trusted_schema(0)"), maxLength: lim.MaxResult}
	sdb := sql.OpenDB(c)
	sdb.SetMaxOpenConns(lim.MaxConns)
	sdb.SetMaxIdleConns(lim.MaxConns)
	if err := sdb.PingContext(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return sdb, nil
}

func (b *sqliteBackend) rewrite(sql string, _ int) string { return sql }

func (b *sqliteBackend) classify(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_AUTH {
		return &deniedError{err: err, msg: "statement refused by the sandbox (a plugin's SQLite database cannot ATTACH, VACUUM, load extensions, run most PRAGMAs or reach any other file): " + err.Error()}
	}
	return err
}

func (b *sqliteBackend) close() {}

// sqliteDriver opens the plugins' connections. It is a Driver of its own,
// so that nothing registered on the package's default driver reaches them.
var sqliteDriver = &sqlite.Driver{}

// sqliteConnector opens a plugin's connections, each with the authorizer
// that confines it to its own file and a bound on the size of one value.
type sqliteConnector struct {
	dsn       string
	maxLength int
}

func (c *sqliteConnector) Connect(ctx context.Context) (driver.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dc, err := sqliteDriver.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	ar, ok := dc.(sqlite.AuthorizerRegisterer)
	if !ok {
		dc.Close()
		return nil, fmt.Errorf("sqlite driver connection %T has no authorizer", dc)
	}
	if err := ar.RegisterAuthorizer(authorize); err != nil {
		dc.Close()
		return nil, fmt.Errorf("install authorizer: %w", err)
	}
	return dc, nil
}

func (c *sqliteConnector) Driver() driver.Driver { return sqliteDriver }

// limitConn applies per-connection limits SQLite only sets through
// sqlite3_limit: no attached database at all (defence in depth behind the
// authorizer), and no string or blob longer than the plugin's
// db_max_result, so that a single value cannot take the host's memory.
func limitConn(ctx context.Context, conn *sql.Conn, maxLength int) error {
	if _, err := sqlite.Limit(conn, sqlite3.SQLITE_LIMIT_ATTACHED, 0); err != nil {
		return err
	}
	if maxLength > 0 {
		if _, err := sqlite.Limit(conn, sqlite3.SQLITE_LIMIT_LENGTH, max(maxLength, 1<<16)); err != nil {
			return err
		}
	}
	return nil
}

// Pragmas a plugin may run. Reading the schema of its own database,
// foreign-key and integrity checks, and settings that only change how its
// own statements behave. Everything else is denied: journal and locking
// modes, memory and cache sizes (host memory), mmap, temp_store_directory
// (another directory), writable_schema, database_list (host paths).
var allowedPragmas = map[string]bool{
	"table_info": true, "table_xinfo": true, "table_list": true,
	"index_list": true, "index_info": true, "index_xinfo": true,
	"foreign_key_list": true, "foreign_key_check": true, "foreign_keys": true,
	"defer_foreign_keys": true, "integrity_check": true, "quick_check": true,
	"user_version": true, "application_id": true, "recursive_triggers": true,
	"data_version": true, "page_count": true, "page_size": true,
	"freelist_count": true, "schema_version": true, "encoding": true,
	"collation_list": true, "function_list": true, "module_list": true,
	"pragma_list": true, "optimize": true, "case_sensitive_like": true,
}

// Virtual table modules a plugin may use: they keep their data in tables
// of the same database.
var allowedModules = map[string]bool{
	"fts3": true, "fts4": true, "fts5": true, "rtree": true, "rtree_i32": true, "geopoly": true,
}

// Functions denied even though a statement could name them.
var deniedFunctions = map[string]bool{
	"load_extension": true, "fts3_tokenizer": true,
}

// authorize is the SQLite authorizer of plugin connections. It runs while a
// statement is compiled; a denied action fails the statement with
// SQLITE_AUTH before it runs.
func authorize(action sqlite.AuthorizerActionCode, arg1, arg2, dbName, _ string) sqlite.AuthorizerReturnCode {
	if dbName != "" && dbName != "main" && dbName != "temp" {
		return sqlite.AuthorizerDeny
	}
	switch action {
	case sqlite.AuthAttach, sqlite.AuthDetach:
		// ATTACH, and VACUUM (which attaches its target, VACUUM INTO a
		// file included).
		return sqlite.AuthorizerDeny
	case sqlite.AuthPragma:
		if allowedPragmas[strings.ToLower(arg1)] {
			return sqlite.AuthorizerOK
		}
		return sqlite.AuthorizerDeny
	case sqlite.AuthFunction:
		if deniedFunctions[strings.ToLower(arg2)] {
			return sqlite.AuthorizerDeny
		}
	case sqlite.AuthCreateVTable, sqlite.AuthDropVTable:
		if !allowedModules[strings.ToLower(arg2)] {
			return sqlite.AuthorizerDeny
		}
	}
	return sqlite.AuthorizerOK
}
