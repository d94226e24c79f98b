package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/sirupsen/logrus"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"modernc.org/libc"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/greenroom-dev/greenroom/hostfuncs"
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
	if err := limitSQLiteMemory(cfg.SQLiteMemory); err != nil {
		log.WithError(err).Warn("database.sqlite_memory is not enforced: a plugin's statement can make SQLite allocate memory without bound")
	}
	return &sqliteBackend{dir: dir, log: log}, nil
}

// sqliteMemstatus is SQLite's memory accounting, turned on once.
var sqliteMemstatus struct {
	once sync.Once
	err  error
}

// limitSQLiteMemory bounds what SQLite allocates in this process, every
// connection's together (database.sqlite_memory; 0 is no bound): past it
// an allocation fails, and its statement with SQLITE_NOMEM. SQLite bounds
// one value by SQLITE_LIMIT_LENGTH (db_max_result) only once it is built,
// and some of its functions build theirs without bound first: an
// aggregate json_group_array of 100 000 values of 1 MB grew to 3 GB
// before its statement ended, and json_pretty, json_array, concat and
// others of many large arguments likewise. The limit needs SQLite's
// memory accounting, which modernc.org/sqlite compiles off: it is turned
// on before SQLite starts (the first connection), and cannot be later.
// SQLite counts what it holds, but its allocator grows a block by
// allocating the larger one before it frees the smaller, so that for a
// moment a value growing by doubling holds half as much again: two thirds
// of the limit is SQLite's hard limit, so that the process's peak stays
// near the limit, and a third its soft limit, past which it shrinks its
// page caches before it allocates more.
func limitSQLiteMemory(limit int64) error {
	if err := enableSQLiteMemstatus(); err != nil {
		return err
	}
	tls := libc.NewTLS()
	defer tls.Close()
	sqlite3.Xsqlite3_hard_heap_limit64(tls, limit/3*2)
	sqlite3.Xsqlite3_soft_heap_limit64(tls, limit/3)
	return nil
}

// enableSQLiteMemstatus turns SQLite's memory accounting on, which must
// happen before SQLite starts (the process's first connection): once.
func enableSQLiteMemstatus() error {
	tls := libc.NewTLS()
	defer tls.Close()
	sqliteMemstatus.once.Do(func() {
		va := libc.Xmalloc(tls, 8)
		if va == 0 {
			sqliteMemstatus.err = errors.New("out of memory")
			return
		}
		defer libc.Xfree(tls, va)
		if rc := sqlite3.Xsqlite3_config(tls, sqlite3.SQLITE_CONFIG_MEMSTATUS, libc.VaList(va, int32(1))); rc != sqlite3.SQLITE_OK {
			sqliteMemstatus.err = fmt.Errorf("SQLite was started before its memory accounting could be turned on (sqlite3_config: %d)", rc)
		}
	})
	return sqliteMemstatus.err
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

// runtimeSQLiteConns bounds the pool of greenroom.db. SQLite lets one
// writer in at a time (the scheduler's transactions are all IMMEDIATE),
// so more connections only wait in SQLite's busy handler, which polls and
// serves no one in order, and fail with SQLITE_BUSY past busy_timeout:
// unbounded, a plugin's flood of task runs opened over a thousand
// connections (and files), and lease renewals failed so. Past the bound a
// caller waits in database/sql for a free connection, as long as its
// context allows. Four leave readers (the task listing) room beside the
// writer.
const runtimeSQLiteConns = 4

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
	sdb.SetMaxOpenConns(runtimeSQLiteConns)
	sdb.SetMaxIdleConns(runtimeSQLiteConns)
	if err := pingBusy(ctx, sdb); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return bun.NewDB(sdb, sqlitedialect.New()), nil
}

// pingBusy opens sdb's first connection, trying again for up to the
// DSN's busy timeout while the file is locked. Turning a new file to WAL
// needs an exclusive lock, and SQLite answers SQLITE_BUSY at once, without
// its busy handler, to a connection that would otherwise deadlock with
// another one doing the same: two replicas (or a replica and greenroom
// migrate) opening one new directory together failed (TestRestartAndReplicas).
func pingBusy(ctx context.Context, sdb *sql.DB) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := sdb.PingContext(ctx)
		var se *sqlite.Error
		busy := err != nil && (errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY ||
			strings.Contains(err.Error(), "(SQLITE_BUSY)")) // the driver may wrap it as text
		if !busy || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(10+mathrand.IntN(40)) * time.Millisecond):
		}
	}
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

func (b *sqliteBackend) lock(ctx context.Context, _ *bun.DB, name string) (context.Context, func(), error) {
	path := filepath.Join(b.dir, "greenroom.lock")
	if id, ok := strings.CutPrefix(name, "plugin:"); ok {
		path = filepath.Join(b.dir, "plugins", id+".lock")
	}
	unlock, err := lockFile(ctx, path)
	return ctx, unlock, err
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
	if err := pingBusy(ctx, sdb); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return sdb, nil
}

func (b *sqliteBackend) rewrite(sql string, _ int) string { return sql }

func (b *sqliteBackend) classify(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_AUTH:
			return &deniedError{err: err, msg: sqliteDenied + err.Error()}
		case sqlite3.SQLITE_ERROR:
			// A function the authorizer denies (load_extension) fails
			// with a plain SQLITE_ERROR, not SQLITE_AUTH.
			if strings.Contains(err.Error(), "not authorized to use function") {
				return &deniedError{err: err, msg: sqliteDenied + err.Error()}
			}
		case sqlite3.SQLITE_BUSY:
			return &busyError{err: err}
		case sqlite3.SQLITE_FULL:
			return &fullError{err: err}
		case sqlite3.SQLITE_NOMEM:
			// database.sqlite_memory (limitSQLiteMemory), or the
			// machine's memory.
			return &memoryError{err: err}
		case sqlite3.SQLITE_TOOBIG:
			// A string or blob longer than SQLITE_LIMIT_LENGTH, which
			// is db_max_result.
			return &tooLargeError{err: err}
		case sqlite3.SQLITE_CONSTRAINT:
			return &sqlStateError{err: err, state: constraintState(se.Code())}
		}
	}
	return err
}

// sqlStateError is a constraint violation on SQLite, with the SQLSTATE
// PostgreSQL gives the same violation, so that a plugin can tell them
// apart the same way on both (greenroom.SQLState).
type sqlStateError struct {
	err   error
	state string
}

func (e *sqlStateError) Error() string { return e.err.Error() + " (SQLSTATE " + e.state + ")" }
func (e *sqlStateError) Unwrap() error { return e.err }

// constraintState maps SQLite's extended constraint codes to SQLSTATE.
func constraintState(code int) string {
	switch code {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return "23505" // unique_violation
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return "23503" // foreign_key_violation
	case sqlite3.SQLITE_CONSTRAINT_NOTNULL:
		return "23502" // not_null_violation
	case sqlite3.SQLITE_CONSTRAINT_CHECK:
		return "23514" // check_violation
	}
	return "23000" // integrity_constraint_violation
}

func (b *sqliteBackend) close() {}

// sqliteTimeColumn reports whether a column declared decl holds times
// that the driver leaves as text. The driver turns text into time.Time
// only in columns declared exactly DATE, DATETIME or TIMESTAMP; a
// migration written for PostgreSQL too declares TIMESTAMPTZ, TIMESTAMP
// WITH TIME ZONE or TIMESTAMP(6), and its times must come back as times
// there as well.
func sqliteTimeColumn(decl string) bool {
	switch decl {
	case "DATE", "DATETIME", "TIMESTAMP", "":
		return false
	}
	d := strings.ToUpper(strings.TrimSpace(decl))
	return d == "DATE" || strings.HasPrefix(d, "TIMESTAMP") || strings.HasPrefix(d, "DATETIME")
}

// sqliteTimeLayouts are the texts the driver writes and reads as times.
var sqliteTimeLayouts = []string{
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02T15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04",
	"2006-01-02T15:04",
	"2006-01-02",
}

// parseSQLiteTime reads s as the driver reads a DATETIME column's text
// (a trailing Z is UTC); ok is false when s is no time.
func parseSQLiteTime(s string) (time.Time, bool) {
	if len(s) < len("2006-01-02") || len(s) > 64 {
		return time.Time{}, false
	}
	// Go's time.String form ("2024-01-01 10:00:00.5 +0000 UTC", with
	// "m=+..." when the time had a monotonic reading), as a plugin that
	// stored fmt.Sprint(t) as text has it: the driver reads it as a time
	// in the columns it parses itself, and so it is read here.
	goForm := s
	if i := strings.Index(goForm, "m="); i > 0 {
		goForm = goForm[:i]
	}
	if t, err := time.Parse("2006-01-02 15:04:05.999999999 -0700 MST", strings.TrimSpace(goForm)); err == nil {
		return t, true
	}
	ts, _ := strings.CutSuffix(s, "Z")
	for _, layout := range sqliteTimeLayouts {
		if t, err := time.Parse(layout, ts); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

const sqliteDenied = "statement refused by the sandbox (a plugin's SQLite database cannot ATTACH, VACUUM, load extensions, run most PRAGMAs or reach any other file): "

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
	inner, ok := dc.(sqliteDriverConn)
	if !ok {
		dc.Close()
		return nil, fmt.Errorf("sqlite driver connection %T lacks a database/sql interface", dc)
	}
	if err := registerSQLFuncs(dc); err != nil {
		dc.Close()
		return nil, fmt.Errorf("register SQL functions: %w", err)
	}
	sc := &sqliteConn{sqliteDriverConn: inner}
	if sc.db, sc.tls, err = sqliteHandle(dc); err != nil {
		dc.Close()
		return nil, err
	}
	// The authorizer is installed here rather than with the driver's
	// RegisterAuthorizer, whose callback gets "" for a NULL argument as
	// for an empty one: PRAGMA foreign_keys = '' (which turns them off)
	// looked like a read, PRAGMA foreign_keys.
	sqliteAuthorizers.Store(sc.db, sc)
	if rc := sqlite3.Xsqlite3_set_authorizer(sc.tls, sc.db, cFuncPointer(sqliteAuthTrampoline), sc.db); rc != sqlite3.SQLITE_OK {
		sqliteAuthorizers.Delete(sc.db)
		dc.Close()
		return nil, fmt.Errorf("install authorizer: SQLite error %d", rc)
	}
	return sc, nil
}

// sqliteAuthorizers maps the sqlite3* handle of each open plugin
// connection to the connection, whose authorizer sqliteAuthTrampoline
// calls.
var sqliteAuthorizers sync.Map // uintptr -> *sqliteConn

// sqliteAuthTrampoline is the SQLite authorizer callback of plugin
// connections (xAuth, with the handle as its argument). It tells a NULL
// argument from an empty string: a PRAGMA given an empty value (PRAGMA
// foreign_keys = "", or the empty literal) sets it, and reaches
// sqliteConn.authorize with a value (two quotes) rather than none, as a
// read would. A handle it does not know, or a panic, denies.
func sqliteAuthTrampoline(_ *libc.TLS, db uintptr, action int32, z1, z2, zDB, zTrigger uintptr) (rc int32) {
	v, ok := sqliteAuthorizers.Load(db)
	if !ok {
		return sqlite3.SQLITE_DENY
	}
	defer func() {
		if recover() != nil {
			rc = sqlite3.SQLITE_DENY
		}
	}()
	arg2 := cString(z2)
	if action == sqlite3.SQLITE_PRAGMA && z2 != 0 && arg2 == "" {
		arg2 = "''"
	}
	return int32(v.(*sqliteConn).authorize(sqlite.AuthorizerActionCode(action), cString(z1), arg2, cString(zDB), cString(zTrigger)))
}

// cString returns the C string at p, "" for NULL.
func cString(p uintptr) string {
	if p == 0 {
		return ""
	}
	return libc.GoString(p)
}

// Close forgets the connection's authorizer, then closes it.
func (c *sqliteConn) Close() error {
	sqliteAuthorizers.Delete(c.db)
	return c.sqliteDriverConn.Close()
}

func (c *sqliteConnector) Driver() driver.Driver { return sqliteDriver }

// sqliteDriverConn is what database/sql uses of the driver's connection.
type sqliteDriverConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// sqliteConn is a plugin's connection: the driver's, with the state its
// authorizer keeps. database/sql uses a connection from one goroutine at a
// time, and the authorizer runs while that goroutine compiles a statement,
// so the fields need no lock.
//
// SQLite keeps a transaction open on the connection until it ends, whoever
// began it, and the driver returns a connection to the pool without
// checking; so the connection notes when a plugin's statement begins or ends
// a transaction or savepoint itself (BEGIN, SAVEPOINT sent as SQL), and
// rollbackStray ends what such a statement left open. Read-only
// transactions run with PRAGMA query_only, which the driver does not set.
type sqliteConn struct {
	sqliteDriverConn
	// db and tls are the driver's sqlite3* and the libc state it calls
	// SQLite with (sqliteHandle): db for sqlite3_interrupt (watch), both
	// for checkArgs.
	db  uintptr
	tls *libc.TLS
	// counts is checkArgs's memory of placeholder counts by statement
	// text (maxCounts).
	counts map[string]int
	// expired is set while the context of the plugin's statement being
	// compiled and run has ended (watch): the authorizer then denies
	// what SQLite asks it about, so that a compile SQLite does not
	// interrupt ends at its next question.
	expired atomic.Bool
	// trusted lets the runtime's own statements (BEGIN, COMMIT, ROLLBACK,
	// PRAGMA query_only) past the authorizer.
	trusted bool
	// txControl is set when a plugin's statement that begins or ends a
	// transaction or a savepoint has been compiled since the connection
	// was last known to be out of any transaction.
	txControl bool
	// queryOnly is set while PRAGMA query_only is on.
	queryOnly bool
	// busy is the busy timeout limitConn last set (0: the DSN's).
	busy time.Duration
	// maxSize is the db_max_size limitConn last set (0: none set).
	maxSize int64
	// migrating is set while a migration runs in the runtime's
	// transaction: BEGIN, COMMIT and ROLLBACK are denied then.
	migrating bool
	// inTx is set while a transaction the plugin began (db_begin) is
	// open: BEGIN, COMMIT and ROLLBACK sent as SQL are denied then, as a
	// COMMIT would leave the plugin's later statements committing alone
	// and its Rollback undoing nothing. Savepoints are the plugin's.
	inTx bool
	// discard is set once a plugin's statement that leaves something in
	// the connection beyond its use has been compiled on it: one that
	// creates a temporary table, index, trigger or view, or sets a pragma
	// (PRAGMA foreign_keys = OFF, recursive_triggers: settings of the
	// connection, which the plugin's next calls would find).
	// PluginDB.release then closes it rather than pool it, and the next
	// call gets a new connection with the runtime's settings.
	discard bool
	// refusedTx is the transaction statement denied while migrating,
	// as SQLite names it (BEGIN, COMMIT, ROLLBACK; END is a COMMIT), so
	// that the migration's error can say what was refused rather than
	// the authorizer's generic "not authorized".
	refusedTx string
	// refused is what the authorizer last denied (refusedWhat), until
	// takeRefused reads it for the statement's error.
	refused string
	// inserted is set when an INSERT outside a trigger has been compiled
	// since ExecContext began: only then is last_insert_rowid() the
	// call's.
	inserted bool
}

// checkArgs refuses a plugin's statement given more or fewer arguments
// than it has parameters (sqlite3_bind_parameter_count: a ?NNN or a
// $name used twice is one). The driver binds each parameter and ignores
// the arguments left over, silently: `INSERT INTO t (a, b) VALUES (?, ?)`
// with three arguments ran, the third dropped, where PostgreSQL refuses
// it (pgx: "expected 2 arguments, got 3"). The statement is compiled
// for its count, not run; one that does not compile is left for its run
// to report. A statement with no argument is not compiled twice (the
// driver fails one with parameters: "missing argument with index 1"),
// nor is one with several statements, which checkSeveral has refused
// already.
func (c *sqliteConn) checkArgs(q string, args int) error {
	if args == 0 || c.trusted || c.db == 0 {
		return nil
	}
	n, ok := c.counts[q]
	if !ok {
		if n, ok = c.paramCount(q); ok && len(q) <= maxCountedSQL {
			if len(c.counts) >= maxCounts {
				clear(c.counts)
			}
			if c.counts == nil {
				c.counts = make(map[string]int, maxCounts)
			}
			c.counts[q] = n
		}
	}
	switch {
	case !ok || args == n:
		return nil
	case args > n:
		return hostfuncs.Failf(hostfuncs.ErrInvalid, "statement refused: %d arguments for its %d placeholders (a $n or ?NNN used twice is one placeholder); SQLite would ignore the %d left over, PostgreSQL refuses them: pass one argument per placeholder", args, n, args-n)
	}
	return hostfuncs.Failf(hostfuncs.ErrInvalid, "statement refused: %d arguments for its %d placeholders (a $n or ?NNN used twice is one placeholder): pass one argument per placeholder", args, n)
}

// A connection remembers the placeholder count of up to maxCounts
// statements of at most maxCountedSQL bytes (checkArgs), so that a
// statement a plugin runs again (most are) is compiled once per call, not
// twice: the count depends on the text alone. At most 32 KiB a
// connection; when full, it starts over.
const (
	maxCounts     = 32
	maxCountedSQL = 1024
)

// paramCount compiles the first statement of q on the connection,
// without running it, and returns its number of parameters; ok is false
// when it does not compile.
func (c *sqliteConn) paramCount(q string) (n int, ok bool) {
	tls := c.tls
	z := sqlite3.Xsqlite3_malloc64(tls, uint64(len(q))+1)
	if z == 0 {
		return 0, false
	}
	defer sqlite3.Xsqlite3_free(tls, z)
	copy(unsafe.Slice((*byte)(ptr(z)), len(q)+1), q)
	pp := sqlite3.Xsqlite3_malloc64(tls, uint64(unsafe.Sizeof(uintptr(0))))
	if pp == 0 {
		return 0, false
	}
	defer sqlite3.Xsqlite3_free(tls, pp)
	*(*uintptr)(ptr(pp)) = 0
	// q has no NUL (check refuses one), and nByte bounds what is read.
	if sqlite3.Xsqlite3_prepare_v2(tls, c.db, z, int32(len(q)), pp, 0) != sqlite3.SQLITE_OK {
		return 0, false
	}
	stmt := *(*uintptr)(ptr(pp))
	if stmt == 0 {
		return 0, true // only spaces and comments
	}
	n = int(sqlite3.Xsqlite3_bind_parameter_count(tls, stmt))
	sqlite3.Xsqlite3_finalize(tls, stmt)
	return n, true
}

// refusedWhat names what the authorizer denies, for the error.
func refusedWhat(action sqlite.AuthorizerActionCode, arg1, arg2, dbName string) string {
	switch {
	case action == sqlite.AuthAttach:
		return "ATTACH (and VACUUM, which attaches its target)"
	case action == sqlite.AuthDetach:
		return "DETACH"
	case action == sqlite.AuthPragma && arg2 != "":
		return "PRAGMA " + arg1 + " = " + arg2
	case action == sqlite.AuthPragma:
		return "PRAGMA " + arg1
	case action == sqlite.AuthFunction:
		return "function " + arg2 + "()"
	case action == sqlite.AuthCreateVTable || action == sqlite.AuthDropVTable:
		return "virtual table module " + arg2
	case markTableTouched(action, arg1, arg2):
		return "changing the runtime's table " + markTable
	case action == sqlite.AuthAlterTable:
		return "ALTER TABLE in database " + arg1
	}
	return "database " + dbName
}

// nameRefusal puts what the authorizer denied on conn into err, when err
// is the SQLite sandbox's refusal (a *hostfuncs.Failure or a *deniedError
// whose message starts with sqliteDenied; any other error, PostgreSQL's
// included, is returned as it is): "statement refused by the sandbox:
// PRAGMA journal_mode = wal is not allowed (...)" rather than the same
// words for every refusal.
func nameRefusal(conn *sql.Conn, err error) error {
	var f *hostfuncs.Failure
	var d *deniedError
	msg := ""
	switch {
	case errors.As(err, &f) && f.Code == hostfuncs.ErrDenied:
		msg = f.Msg
	case errors.As(err, &d):
		msg = d.msg
	default:
		return err
	}
	rest, ok := strings.CutPrefix(msg, sqliteDenied)
	if !ok {
		return err
	}
	what := takeRefused(conn)
	if what == "" {
		return err
	}
	named := "statement refused by the sandbox: " + what + " is not allowed " + strings.TrimPrefix(sqliteDenied, "statement refused by the sandbox ") + rest
	if f != nil {
		return hostfuncs.Failf(hostfuncs.ErrDenied, "%s", named)
	}
	return &deniedError{err: d.err, msg: named}
}

// takeRefused returns what the authorizer last denied on conn, "" if
// nothing, and forgets it.
func takeRefused(conn *sql.Conn) string {
	var what string
	conn.Raw(func(dc any) error {
		if c, ok := dc.(*sqliteConn); ok {
			what, c.refused = c.refused, ""
		}
		return nil
	})
	return what
}

// setMigrating sets conn's migrating flag.
func setMigrating(conn *sql.Conn, on bool) {
	conn.Raw(func(dc any) error {
		if c, ok := dc.(*sqliteConn); ok {
			c.migrating, c.refusedTx = on, ""
		}
		return nil
	})
}

// refusedTx returns the transaction statement the authorizer denied on
// conn while its migration ran, "" if none.
func refusedTx(conn *sql.Conn) string {
	var cmd string
	conn.Raw(func(dc any) error {
		if c, ok := dc.(*sqliteConn); ok {
			cmd = c.refusedTx
		}
		return nil
	})
	return cmd
}

// ExecContext runs a statement. A statement that is not an INSERT, UPDATE
// or DELETE (CREATE TABLE, a SELECT sent through Exec) leaves
// sqlite3_changes() as the connection's last such statement set it,
// possibly another call's, and the driver reports that as its rows
// affected (a CREATE TABLE after a one-row INSERT affected 1). When the
// connection's total_changes() did not move, the statement changed no
// row: its result says 0. (Two of the runtime's own queries, about 13 µs
// on each Exec; the second only when the driver reports rows or the
// call holds an INSERT.) Likewise sqlite3_last_insert_rowid() is the
// connection's last INSERT's, whatever ran since: a call that holds no
// INSERT of its own (the authorizer saw none outside a trigger), or
// changed no row (INSERT OR IGNORE that ignored), gives 0, SQLite's
// "no row inserted", not another call's row id.
func (c *sqliteConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	if c.trusted {
		return c.sqliteDriverConn.ExecContext(ctx, q, args)
	}
	stop := c.watch(ctx)
	if err := c.checkArgs(q, len(args)); err != nil { // its compile under watch too
		stop()
		return nil, err
	}
	stop()
	c.inserted = false
	before, berr := c.trustedInt(ctx, "SELECT total_changes()")
	stop = c.watch(ctx)
	res, err := c.sqliteDriverConn.ExecContext(ctx, q, args)
	stop()
	if err != nil || berr != nil || res == nil {
		return res, err
	}
	unchanged := false
	if n, nerr := res.RowsAffected(); nerr == nil && (n != 0 || c.inserted) {
		after, aerr := c.trustedInt(ctx, "SELECT total_changes()")
		unchanged = aerr == nil && after == before
	}
	switch {
	case unchanged:
		return unchangedResult{res}, nil
	case !c.inserted:
		return notInsertedResult{res}, nil
	}
	return res, nil
}

// QueryContext runs a plugin's query, its arguments checked (checkArgs),
// compiled under watch (both compiles).
func (c *sqliteConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	if c.trusted {
		return c.sqliteDriverConn.QueryContext(ctx, q, args)
	}
	defer c.watch(ctx)()
	if err := c.checkArgs(q, len(args)); err != nil {
		return nil, err
	}
	return c.sqliteDriverConn.QueryContext(ctx, q, args)
}

// PrepareContext compiles a plugin's statement under watch.
func (c *sqliteConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	if c.trusted {
		return c.sqliteDriverConn.PrepareContext(ctx, q)
	}
	defer c.watch(ctx)()
	return c.sqliteDriverConn.PrepareContext(ctx, q)
}

// watch makes the end of ctx, the context of a plugin's statement, end the
// statement while SQLite compiles it too, until the returned stop is
// called. The driver interrupts a statement (sqlite3_interrupt) only
// once it runs: it compiles the statement (the first, of several) before
// it watches the context, and a statement SQLite takes seconds to compile
// (a view that refers twice to one that refers twice to another, ...)
// ran on past db_statement_timeout, and past the call's timeout, for as
// long as it took. Once ctx ends, watch interrupts the connection, and
// again every 10 ms (SQLite clears the flag when it begins to parse a
// statement with none running), which its parser checks at each token,
// and has the authorizer deny what it asks from then on (expired): SQLite
// asks it about each column a statement reads while it resolves names,
// so a compile that copies views ends at its next question, which
// SQLite's interrupt does not reach. The driver then reports the
// context's error.
func (c *sqliteConn) watch(ctx context.Context) (stop func()) {
	if ctx.Done() == nil {
		return func() {}
	}
	var mu sync.Mutex
	finished := false
	stopAfter := context.AfterFunc(ctx, func() {
		for {
			mu.Lock()
			if finished {
				mu.Unlock()
				return
			}
			c.expired.Store(true)
			tls := libc.NewTLS()
			sqlite3.Xsqlite3_interrupt(tls, c.db)
			tls.Close()
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	})
	return func() {
		stopAfter()
		mu.Lock()
		finished = true
		c.expired.Store(false)
		mu.Unlock()
	}
}

// unchangedResult is the result of a statement that changed no row, and
// so inserted none.
type unchangedResult struct{ driver.Result }

func (unchangedResult) RowsAffected() (int64, error) { return 0, nil }
func (unchangedResult) LastInsertId() (int64, error) { return 0, nil }

// notInsertedResult is the result of a call that held no INSERT.
type notInsertedResult struct{ driver.Result }

func (notInsertedResult) LastInsertId() (int64, error) { return 0, nil }

// Unwrap lets the driver's functions (sqlite.Limit) reach its connection.
func (c *sqliteConn) Unwrap() driver.Conn { return c.sqliteDriverConn }

func (c *sqliteConn) authorize(action sqlite.AuthorizerActionCode, arg1, arg2, dbName, trigger string) sqlite.AuthorizerReturnCode {
	if c.trusted {
		return sqlite.AuthorizerOK
	}
	if c.expired.Load() {
		return sqlite.AuthorizerDeny // the driver reports the context's error
	}
	if action == sqlite.AuthTransaction && c.migrating {
		c.refusedTx = arg1
		return sqlite.AuthorizerDeny
	}
	if action == sqlite.AuthTransaction && c.inTx {
		c.refused = arg1 + " inside a transaction begun with db.Begin (end it with tx.Commit or tx.Rollback; savepoints are fine)"
		return sqlite.AuthorizerDeny
	}
	if action == sqlite.AuthTransaction || action == sqlite.AuthSavepoint {
		c.txControl = true
	}
	if action == sqlite.AuthInsert && trigger == "" {
		c.inserted = true
	}
	switch action {
	case sqlite.AuthCreateTempTable, sqlite.AuthCreateTempIndex, sqlite.AuthCreateTempTrigger, sqlite.AuthCreateTempView:
		c.discard = true
	case sqlite.AuthCreateTable, sqlite.AuthCreateIndex, sqlite.AuthCreateTrigger, sqlite.AuthCreateView, sqlite.AuthCreateVTable:
		if strings.EqualFold(dbName, "temp") {
			c.discard = true
		}
	case sqlite.AuthPragma:
		// A pragma given a value sets it, unless the value names what
		// to read (table_info('t'), also what pragma_table_info('t')
		// compiles to). A pragma the plugin may not set is denied
		// below.
		if arg2 != "" && !argumentPragmas[strings.ToLower(arg1)] {
			c.discard = true
		}
	}
	rc := authorize(action, arg1, arg2, dbName, trigger)
	if rc == sqlite.AuthorizerDeny {
		c.refused = refusedWhat(action, arg1, arg2, dbName)
	}
	return rc
}

// sqliteDiscard reports whether a plugin's statement that leaves something
// in the SQLite connection conn beyond its use (sqliteConn.discard) was
// compiled on it.
func sqliteDiscard(conn *sql.Conn) bool {
	discard := false
	conn.Raw(func(dc any) error {
		if c, ok := dc.(*sqliteConn); ok {
			discard = c.discard
		}
		return nil
	})
	return discard
}

// trustedExec runs one of the runtime's own statements.
func (c *sqliteConn) trustedExec(ctx context.Context, q string) error {
	c.trusted = true
	defer func() { c.trusted = false }()
	_, err := c.sqliteDriverConn.ExecContext(ctx, q, nil)
	return err
}

// trustedInt runs the runtime's own query q, which returns one integer.
func (c *sqliteConn) trustedInt(ctx context.Context, q string) (int64, error) {
	c.trusted = true
	defer func() { c.trusted = false }()
	rows, err := c.sqliteDriverConn.QueryContext(ctx, q, nil)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	v := make([]driver.Value, len(rows.Columns()))
	if len(v) != 1 {
		return 0, fmt.Errorf("%s: %d columns, want 1", q, len(v))
	}
	if err := rows.Next(v); err != nil {
		return 0, fmt.Errorf("%s: %w", q, err)
	}
	n, ok := v[0].(int64)
	if !ok {
		return 0, fmt.Errorf("%s: got %T, want an integer", q, v[0])
	}
	return n, nil
}

// BeginTx begins a transaction; a read-only one refuses every write
// (SQLITE_READONLY) until it ends.
func (c *sqliteConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.trusted = true
	tx, err := c.sqliteDriverConn.BeginTx(ctx, opts)
	c.trusted = false
	if err != nil {
		return nil, err
	}
	if opts.ReadOnly {
		c.queryOnly = true
		if err := c.trustedExec(ctx, "PRAGMA query_only = 1"); err != nil {
			tx.Rollback()
			c.resetQueryOnly()
			return nil, err
		}
	}
	c.inTx = true
	return &sqliteTx{tx: tx, c: c}, nil
}

// resetQueryOnly turns query_only off after a read-only transaction. If
// that fails, the connection stays marked and IsValid discards it.
func (c *sqliteConn) resetQueryOnly() {
	if c.queryOnly && c.trustedExec(context.Background(), "PRAGMA query_only = 0") == nil {
		c.queryOnly = false
	}
}

// inTransaction reports whether a transaction is open on the connection:
// BEGIN fails within one; outside, it begins one, rolled back at once.
func (c *sqliteConn) inTransaction(ctx context.Context) (bool, error) {
	err := c.trustedExec(ctx, "BEGIN")
	if err == nil {
		return false, c.trustedExec(ctx, "ROLLBACK")
	}
	if strings.Contains(err.Error(), "within a transaction") {
		return true, nil
	}
	return false, err
}

// sqliteTxEnded reports whether the transaction begun on conn has ended
// without the runtime: SQLite rolls back the whole transaction when a
// statement in it is interrupted (db_statement_timeout, a deadline), runs
// out of memory or disk, or fails an ON CONFLICT ROLLBACK constraint, and
// goes on in autocommit mode. Not knowing (the probe failed) counts as
// ended, so that the runtime ends it. PostgreSQL never needs this: a
// failed statement leaves its transaction open and refusing everything
// but ROLLBACK.
func sqliteTxEnded(ctx context.Context, conn *sql.Conn, timeout time.Duration) bool {
	ended := false
	conn.Raw(func(dc any) error {
		if c, ok := dc.(*sqliteConn); ok {
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
			defer cancel()
			in, err := c.inTransaction(pctx)
			ended = err != nil || !in
		}
		return nil
	})
	return ended
}

// rollbackStray rolls back the transaction a plugin's own statement left
// open on the connection, and reports whether there was one. It runs
// ROLLBACK only after such a statement; ROLLBACK outside a transaction
// fails with "no transaction is active", which means there was none.
func (c *sqliteConn) rollbackStray(ctx context.Context) (bool, error) {
	if !c.txControl {
		return false, nil
	}
	err := c.trustedExec(ctx, "ROLLBACK")
	if err != nil && !strings.Contains(err.Error(), "no transaction is active") {
		return false, err
	}
	c.txControl = false
	return err == nil, nil
}

// IsValid is called before database/sql puts the connection back in the
// pool: a transaction a plugin's statement left open is rolled back there
// (PluginDB also does it, to tell the plugin), and a connection that could
// not be cleaned up is discarded, which rolls back whatever it had open.
// The connection's last_insert_rowid() goes back to 0, as on a new
// connection: the next use, another call's, read the row id this one had
// inserted (SELECT last_insert_rowid(), and the LastInsertId of an upsert
// that updated), as PostgreSQL's lastval() did before DISCARD SEQUENCES
// (TestSQLiteLastInsertIDEndsWithTheCall).
func (c *sqliteConn) IsValid() bool {
	if c.queryOnly {
		return false
	}
	if _, err := c.rollbackStray(context.Background()); err != nil {
		return false
	}
	if c.db != 0 && c.tls != nil {
		sqlite3.Xsqlite3_set_last_insert_rowid(c.tls, c.db, 0)
	}
	return c.sqliteDriverConn.IsValid()
}

// sqliteTx is a transaction the runtime began (db_begin).
type sqliteTx struct {
	tx driver.Tx
	c  *sqliteConn
}

func (t *sqliteTx) Commit() error {
	t.c.trusted = true
	err := t.tx.Commit()
	t.c.trusted = false
	t.end(err)
	return err
}

func (t *sqliteTx) Rollback() error {
	t.c.trusted = true
	err := t.tx.Rollback()
	t.c.trusted = false
	t.end(err)
	return err
}

// end resets the connection once the transaction is over: after a COMMIT
// or ROLLBACK that succeeded (or a failed COMMIT, which the driver rolls
// back) it is out of any transaction, whatever the plugin's statements did
// inside it.
func (t *sqliteTx) end(err error) {
	t.c.inTx = false
	t.c.resetQueryOnly()
	if err == nil {
		t.c.txControl = false
	}
}

// limitConn applies per-connection limits SQLite only sets through
// sqlite3_limit: no attached database at all (defence in depth behind the
// authorizer); no string or blob longer than the plugin's db_max_result, so
// that a single value cannot take the host's memory; and at most
// maxColumns columns in a table or a result row. The driver reads a row
// whole before the runtime can count its size, so a row can take up to
// maxColumns values of that length, not the 2000 SQLite allows by default.
//
// It also sets how long a statement (BEGIN IMMEDIATE included) waits for
// the write lock another of the plugin's transactions holds: busy (the
// caller passes a little less than db_statement_timeout), after which it
// fails with SQLITE_BUSY, reported as a timeout. The driver's BEGIN does
// not follow the context.
//
// And it bounds the database's size (maxSize, db_max_size; 0 is none).
func limitConn(ctx context.Context, conn *sql.Conn, maxLength int, maxSize int64, busy time.Duration) error {
	if err := setBusyTimeout(ctx, conn, busy); err != nil {
		return err
	}
	if err := setMaxSize(ctx, conn, maxSize); err != nil {
		return err
	}
	if _, err := sqlite.Limit(conn, sqlite3.SQLITE_LIMIT_ATTACHED, 0); err != nil {
		return err
	}
	if _, err := sqlite.Limit(conn, sqlite3.SQLITE_LIMIT_COLUMN, maxColumns); err != nil {
		return err
	}
	if maxLength > 0 {
		if _, err := sqlite.Limit(conn, sqlite3.SQLITE_LIMIT_LENGTH, max(maxLength, 1<<16)); err != nil {
			return err
		}
	}
	return nil
}

// setBusyTimeout sets how long a statement on a plugin's connection waits
// for a lock another connection holds (at least a millisecond), unless it
// is set so already.
func setBusyTimeout(ctx context.Context, conn *sql.Conn, busy time.Duration) error {
	busy = max(busy, time.Millisecond)
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*sqliteConn)
		if !ok || c.busy == busy {
			return nil
		}
		if err := c.trustedExec(ctx, "PRAGMA busy_timeout = "+strconv.FormatInt(busy.Milliseconds(), 10)); err != nil {
			return fmt.Errorf("set busy_timeout: %w", err)
		}
		c.busy = busy
		return nil
	})
}

// setMaxSize bounds the pages of the connection's main and temp databases
// (PRAGMA max_page_count, a per-connection setting) to maxSize bytes,
// unless it is bounded so already. A statement that needs a page past it
// fails with SQLITE_FULL. A database already larger keeps its size: it
// cannot grow, and deleting rows makes room again. The write-ahead log is
// checkpointed once it holds maxSize bytes of pages and truncated to
// maxSize after a checkpoint (it is outside max_page_count). 0 lifts the
// bounds.
func setMaxSize(ctx context.Context, conn *sql.Conn, maxSize int64) error {
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*sqliteConn)
		if !ok || c.maxSize == maxSize {
			return nil
		}
		for _, schema := range []string{"main", "temp"} {
			pages := int64(maxSQLitePages)
			if maxSize > 0 {
				size, err := c.trustedInt(ctx, "PRAGMA "+schema+".page_size")
				if err != nil || size <= 0 {
					return fmt.Errorf("read %s.page_size: %v", schema, err)
				}
				pages = max(maxSize/size, 1)
			}
			if err := c.trustedExec(ctx, "PRAGMA "+schema+".max_page_count = "+strconv.FormatInt(pages, 10)); err != nil {
				return fmt.Errorf("set %s.max_page_count: %w", schema, err)
			}
			if schema == "main" {
				walPages, limit := int64(defaultWALPages), int64(-1)
				if maxSize > 0 {
					walPages, limit = min(pages, defaultWALPages), maxSize
				}
				if err := c.trustedExec(ctx, "PRAGMA main.journal_size_limit = "+strconv.FormatInt(limit, 10)); err != nil {
					return fmt.Errorf("set journal_size_limit: %w", err)
				}
				if err := c.trustedExec(ctx, "PRAGMA wal_autocheckpoint = "+strconv.FormatInt(walPages, 10)); err != nil {
					return fmt.Errorf("set wal_autocheckpoint: %w", err)
				}
			}
		}
		c.maxSize = maxSize
		return nil
	})
}

// defaultWALPages is SQLite's own wal_autocheckpoint.
const defaultWALPages = 1000

// maxSQLitePages is SQLite's own largest max_page_count.
const maxSQLitePages = 4294967294

// maxColumns is SQLITE_LIMIT_COLUMN on plugin connections.
const maxColumns = 100

// Pragmas a plugin may run. Reading the schema of its own database,
// foreign-key and integrity checks, and settings that only change how its
// own statements behave. Everything else is denied: journal and locking
// modes, memory and cache sizes (host memory), mmap, temp_store_directory
// (another directory), writable_schema, database_list (host paths), and
// case_sensitive_like, which would register SQLite's own like() over the
// bounded one of sqlfuncs.go.
var allowedPragmas = map[string]bool{
	"table_info": true, "table_xinfo": true, "table_list": true,
	"index_list": true, "index_info": true, "index_xinfo": true,
	"foreign_key_list": true, "foreign_key_check": true, "foreign_keys": true,
	"defer_foreign_keys": true, "integrity_check": true, "quick_check": true,
	"user_version": true, "application_id": true, "recursive_triggers": true,
	"data_version": true, "page_count": true, "page_size": true,
	"freelist_count": true, "schema_version": true, "encoding": true,
	"collation_list": true, "function_list": true, "module_list": true,
	"pragma_list": true, "optimize": true,
}

// Pragmas of allowedPragmas whose argument, if given, names what to read
// (a table, an index, a schema, at most how many errors, which
// optimizations) rather than a value to set.
var argumentPragmas = map[string]bool{
	"table_info": true, "table_xinfo": true, "table_list": true,
	"index_list": true, "index_info": true, "index_xinfo": true,
	"foreign_key_list": true, "foreign_key_check": true,
	"integrity_check": true, "quick_check": true, "optimize": true,
}

// Pragmas of allowedPragmas a plugin may read but not set: page_size
// (a temp database without tables yet takes a new one, which would
// multiply the bytes its max_page_count allows), schema_version, and
// encoding (a new database set to UTF-16 reads a BLOB as UTF-16 where
// SQLite's instr takes it as text, which sqlfuncs.go's, reading UTF-8,
// would not).
var readOnlyPragmas = map[string]bool{
	"page_size": true, "schema_version": true, "data_version": true,
	"page_count": true, "freelist_count": true, "encoding": true,
}

// Virtual table modules a plugin may use: they keep their data in tables
// of the same database. modernc.org/sqlite is built with FTS5, R*Tree and
// Geopoly, not FTS3/FTS4.
var allowedModules = map[string]bool{
	"fts5": true, "rtree": true, "rtree_i32": true, "geopoly": true,
}

// Functions denied even though a statement could name them. Geopoly's
// overlap and within sweep every edge of one polygon at each vertex of
// the other: their time is quadratic in the polygons' size, and
// SQLite's interrupt is not checked inside one call (an audit: one call
// on a 64 000-vertex polygon of 1.3 MB ran 29 s past a 5 s timeout,
// holding a core).
var deniedFunctions = map[string]bool{
	"load_extension": true, "fts3_tokenizer": true,
	"geopoly_overlap": true, "geopoly_within": true,
}

// markTableTouched reports whether action changes, removes or shadows the
// runtime's markTable, which plugins may only read: writing it (also from
// a trigger, whose statements are authorized as they compile), dropping
// or altering it, an index or trigger on it, or a table, view or virtual
// table of its name (in temp too, where it would shadow the runtime's).
func markTableTouched(action sqlite.AuthorizerActionCode, arg1, arg2 string) bool {
	switch action {
	case sqlite.AuthInsert, sqlite.AuthUpdate, sqlite.AuthDelete,
		sqlite.AuthCreateTable, sqlite.AuthCreateTempTable, sqlite.AuthDropTable, sqlite.AuthDropTempTable,
		sqlite.AuthCreateView, sqlite.AuthCreateTempView, sqlite.AuthCreateVTable:
		return isMarkTable(arg1)
	case sqlite.AuthAlterTable,
		sqlite.AuthCreateIndex, sqlite.AuthCreateTempIndex, sqlite.AuthDropIndex, sqlite.AuthDropTempIndex,
		sqlite.AuthCreateTrigger, sqlite.AuthCreateTempTrigger, sqlite.AuthDropTrigger, sqlite.AuthDropTempTrigger:
		return isMarkTable(arg2)
	}
	return false
}

// authorize is the SQLite authorizer of plugin connections. It runs while a
// statement is compiled; a denied action fails the statement with
// SQLITE_AUTH before it runs.
func authorize(action sqlite.AuthorizerActionCode, arg1, arg2, dbName, _ string) sqlite.AuthorizerReturnCode {
	if action == sqlite.AuthAlterTable {
		// ALTER TABLE names its database in arg1 and, for DROP COLUMN,
		// passes the column's name where the others pass the database's.
		dbName = arg1
	}
	if dbName != "" && dbName != "main" && dbName != "temp" {
		return sqlite.AuthorizerDeny
	}
	if markTableTouched(action, arg1, arg2) {
		return sqlite.AuthorizerDeny
	}
	switch action {
	case sqlite.AuthAttach, sqlite.AuthDetach:
		// ATTACH, and VACUUM (which attaches its target, VACUUM INTO a
		// file included).
		return sqlite.AuthorizerDeny
	case sqlite.AuthPragma:
		name := strings.ToLower(arg1)
		if arg2 != "" && readOnlyPragmas[name] {
			return sqlite.AuthorizerDeny
		}
		if allowedPragmas[name] {
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
