package greenroom

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// This file is the plugin's side of the database capability (docs/abi.md,
// "Database"; docs/database.md): a database/sql driver that sends each
// statement to the runtime and decodes the rows it sends back. It is plain
// Go, tested natively; the wasip1 build plugs in the host functions.

// dbTransport carries encoded requests to the runtime and results back.
type dbTransport interface {
	exec(req []byte) (string, error)
	query(req []byte) (string, error)
	begin(flags uint32) (uint32, error)
	commit(tx uint32) error
	rollback(tx uint32) error
	migrations(req []byte) error
}

var (
	dbMu  sync.Mutex
	theDB *sql.DB
	// theConnector is theDB's; closed once a caller closed theDB.
	theConnector *dbConnector
	// registered is the driver DB registered (a *sqlDriver), once it has.
	registered atomic.Value
)

// DriverName is the name under which DB registers the SDK's database/sql
// driver, at its first call: sql.Open(DriverName, "") before that fails
// with "unknown driver". Pass DB() itself to a library that takes a
// *sql.DB.
const DriverName = "greenroom"

// DB returns the plugin's own database as a *sql.DB. The operator must
// grant the capability (database = true under [plugins.<id>.capabilities]);
// otherwise every call fails with an error naming it (ErrDenied).
//
// Statements take arguments as `?` or as `$1, $2, ...` (not both in one
// statement) on SQLite and PostgreSQL alike: the runtime rewrites `?` for
// PostgreSQL. Named arguments are not supported. A statement takes one
// argument per placeholder (a $n used twice is one): more or fewer are
// refused (ErrInvalid). Values cross as NULL, int64, float64, bool,
// string, []byte and time.Time; database/sql converts the other Go types
// as usual, and refuses a uint64 over math.MaxInt64. A time keeps its
// instant, not its zone (it comes back in UTC), to the nanosecond on
// SQLite and to the microsecond on PostgreSQL (the rest cut). PostgreSQL's
// json and jsonb come back as text (docs/database.md lists what else
// differs between the two).
//
// Transactions work as in database/sql; one still open when the request
// ends is rolled back then (the runtime logs a warning), and its later use
// (kept in a variable) fails with sql.ErrTxDone. Prepared statements are emulated:
// each execution sends the statement text again.
//
// The database is usable from handlers, not from init (its migrations are
// applied after init). Outside the runtime (a native build), DB returns the
// database given to SetDB, or one whose every call fails.
//
// Every call returns the same *sql.DB, shared by the instance's handlers
// and tasks: there is nothing to close. One a handler closed anyway (a
// `defer db.Close()` learnt from database/sql's examples) fails its later
// calls with "sql: database is closed", as database/sql's does, and the
// next call of DB returns a new one in its place.
func DB() *sql.DB {
	if db := nativeDB(); db != nil {
		return db
	}
	dbMu.Lock()
	defer dbMu.Unlock()
	if theDB != nil && !theConnector.closed.Load() {
		return theDB
	}
	d, _ := registered.Load().(*sqlDriver)
	if d == nil {
		// Registered here rather than in an init function: a plugin that
		// never calls DB links none of the database host functions, and
		// the runtime then sees that it does not use the capability.
		d = &sqlDriver{t: newDBTransport(), gate: newConnGate(dbMaxConns(), dbStatementTimeout())}
		sql.Register(DriverName, d)
		registered.Store(d)
	}
	theConnector = &dbConnector{d: d}
	db := sql.OpenDB(theConnector)
	// database/sql's own pool is not capped: a connection of it holds
	// nothing on the host between statements (rows come back whole), so a
	// statement run while rows are open, or inside a loop over them, needs
	// no second one. The driver's gate counts what does hold one of the
	// runtime's connections (see connGate); a replacement DB shares it.
	db.SetMaxIdleConns(4)
	theDB = db
	return db
}

// dbConnector is DB's connector. database/sql calls its Close when the
// *sql.DB is closed, which tells DB to make a new one.
type dbConnector struct {
	d      *sqlDriver
	closed atomic.Bool
}

func (c *dbConnector) Connect(context.Context) (driver.Conn, error) { return c.d.Open("") }
func (c *dbConnector) Driver() driver.Driver                        { return c.d }
func (c *dbConnector) Close() error {
	c.closed.Store(true)
	return nil
}

// Migrations registers the plugin's database migrations: every file named
// *.up.sql found in fsys, at any depth, ordered by file name (not by
// directory), e.g. an embed.FS of migrations/*.up.sql. Call it from init.
// When the plugin loads, the runtime applies the ones its database has not
// seen yet, each in a transaction, and records them; a failing migration
// keeps the plugin out of service with the error. Name files so that they
// sort in the order they must run (001_create_items.up.sql, ...), and never
// change one that was applied: add a new one.
//
// It may be called more than once (a package per part of the plugin, each
// with its own files): the files of every call are one list, applied in
// name order, and a name may be registered once.
//
// It returns an error when fsys holds no migration, two files share a
// name (in fsys, or with a file an earlier call registered: the call then
// registers none of its files), or the runtime refused them (ErrDenied
// without the capability).
func Migrations(fsys fs.FS) error {
	type file struct{ name, path string }
	var files []file
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".up.sql") {
			files = append(files, file{name: d.Name(), path: p})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("greenroom: migrations: %w", err)
	}
	if len(files) == 0 {
		return errors.New("greenroom: migrations: no *.up.sql file found")
	}
	sort.Slice(files, func(i, j int) bool {
		if files[i].name != files[j].name {
			return files[i].name < files[j].name
		}
		return files[i].path < files[j].path
	})
	req := binary.LittleEndian.AppendUint32(nil, uint32(len(files)))
	var list []Migration
	for i, f := range files {
		if i > 0 && files[i-1].name == f.name {
			return fmt.Errorf("greenroom: migrations: two files named %s (%s and %s)", f.name, files[i-1].path, f.path)
		}
		b, err := fs.ReadFile(fsys, f.path)
		if err != nil {
			return fmt.Errorf("greenroom: migrations: %w", err)
		}
		if at := bytes.IndexByte(b, 0); at >= 0 {
			// The runtime refuses it too; said here, natively as well.
			return &Error{Op: "db_migrations", Code: errInvalid, Message: fmt.Sprintf(
				"migrations: %s has a NUL byte (at byte %d), which no SQL statement may hold", f.path, at)}
		}
		req = appendField(req, f.name)
		req = appendField(req, string(b))
		list = append(list, Migration{Name: f.name, SQL: string(b)})
	}
	return registerMigrations(req, list)
}

// SQLState returns the SQLSTATE of a statement the database refused, ""
// when err carries none. It is the same on both databases for constraint
// violations (SQLite's are mapped to PostgreSQL's): "23505" a unique key,
// "23503" a foreign key, "23502" a NOT NULL column, "23514" a CHECK,
// "23000" another constraint. On PostgreSQL every refusal has one (e.g.
// "42P01": no such table).
//
//	if greenroom.SQLState(err) == "23505" { // already there: 409 }
//
// Natively (plugin unit tests, with the driver given to SetDB) it reads
// the native driver's error the same way: pgx's SQLState, and SQLite's
// extended constraint codes (modernc.org/sqlite's Code) mapped as the
// runtime maps them, so that a handler's 409 is tested as it runs.
func SQLState(err error) string {
	var e *Error
	if !errors.As(err, &e) {
		return nativeSQLState(err)
	}
	// The runtime ends the message with it; one anywhere else is the
	// text of the error (a name or a value SQLite quotes).
	const marker = "(SQLSTATE "
	m := e.Message
	if len(m) < len(marker)+6 || !strings.HasSuffix(m, ")") || m[len(m)-len(marker)-6:len(m)-6] != marker {
		return ""
	}
	return m[len(m)-6 : len(m)-1]
}

// nativeSQLState is SQLState of a native driver's error anywhere in err's
// chain: one with a SQLState method (pgx's *pgconn.PgError), or
// modernc.org/sqlite's *sqlite.Error, whose extended result code is
// mapped for a constraint violation. The SQLite error is known by its
// type's name (the SDK imports no driver): another error with a Code
// method, an application's own, is not taken for it.
func nativeSQLState(err error) string {
	for _, e := range errorChain(err, nil) {
		if pg, ok := e.(interface{ SQLState() string }); ok {
			return pg.SQLState()
		}
		if lite, ok := e.(interface{ Code() int }); ok && fmt.Sprintf("%T", e) == "*sqlite.Error" {
			return sqliteState(lite.Code())
		}
	}
	return ""
}

// errorChain appends err and every error it wraps, depth first, as
// errors.As visits them.
func errorChain(err error, out []error) []error {
	for err != nil && len(out) < 100 {
		out = append(out, err)
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				out = errorChain(e, out)
			}
			return out
		default:
			return out
		}
	}
	return out
}

// sqliteState maps SQLite's extended result code of a constraint
// violation to its SQLSTATE, as the runtime does.
func sqliteState(code int) string {
	const constraint = 19 // SQLITE_CONSTRAINT, the primary code
	switch {
	case code == 19|8<<8, code == 19|6<<8: // _UNIQUE, _PRIMARYKEY
		return "23505"
	case code == 19|3<<8: // _FOREIGNKEY
		return "23503"
	case code == 19|5<<8: // _NOTNULL
		return "23502"
	case code == 19|1<<8: // _CHECK
		return "23514"
	case code&0xff == constraint:
		return "23000"
	}
	return ""
}

// Migration is one registered migration file.
type Migration struct {
	Name string // the file's name, e.g. 001_items.up.sql
	SQL  string
}

func appendField(dst []byte, s string) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// Value tags of the wire encoding (docs/abi.md, "Values").
const (
	tagNull   = 0
	tagInt64  = 1
	tagDouble = 2
	tagFalse  = 3
	tagTrue   = 4
	tagString = 5
	tagBytes  = 6
	tagTime   = 7
)

// appendValue encodes one argument, already converted by database/sql to a
// driver.Value.
func appendValue(dst []byte, v driver.Value) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, tagNull), nil
	case int64:
		return binary.LittleEndian.AppendUint64(append(dst, tagInt64), uint64(x)), nil
	case float64:
		return binary.LittleEndian.AppendUint64(append(dst, tagDouble), math.Float64bits(x)), nil
	case bool:
		if x {
			return append(dst, tagTrue), nil
		}
		return append(dst, tagFalse), nil
	case string:
		return appendField(append(dst, tagString), x), nil
	case []byte:
		if x == nil {
			// As database/sql's drivers read it: a nil []byte is NULL.
			return append(dst, tagNull), nil
		}
		dst = binary.LittleEndian.AppendUint32(append(dst, tagBytes), uint32(len(x)))
		return append(dst, x...), nil
	case time.Time:
		dst = binary.LittleEndian.AppendUint64(append(dst, tagTime), uint64(x.Unix()))
		return binary.LittleEndian.AppendUint32(dst, uint32(x.Nanosecond())), nil
	}
	return dst, fmt.Errorf("greenroom: unsupported argument type %T", v)
}

// appendStatement encodes a statement request: u32 tx, bytes sql, u32 argc,
// value × argc, and the statement's deadline (i64 Unix nanoseconds) when
// deadline is not zero.
func appendStatement(dst []byte, tx uint32, query string, args []driver.NamedValue, deadline int64) ([]byte, error) {
	dst = binary.LittleEndian.AppendUint32(dst, tx)
	dst = appendField(dst, query)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(args)))
	for _, a := range args {
		if a.Name != "" {
			return nil, fmt.Errorf("greenroom: named argument %q: use ? or $n placeholders", a.Name)
		}
		var err error
		if dst, err = appendValue(dst, a.Value); err != nil {
			return nil, err
		}
	}
	if deadline != 0 {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(deadline))
	}
	return dst, nil
}

// statementDeadline is ctx's deadline in Unix nanoseconds, 0 for none: the
// host stops the statement there (the guest cannot: it waits in the host
// call).
func statementDeadline(ctx context.Context) int64 {
	d, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	return max(d.UnixNano(), 1)
}

// ctxError is a statement that failed because its context ended: it is
// the context's error (errors.Is(err, context.DeadlineExceeded), as
// database/sql drivers report it) and the host's (*Error, ErrTimeout).
type ctxError struct{ ctx, host error }

func (e *ctxError) Error() string   { return e.host.Error() }
func (e *ctxError) Unwrap() []error { return []error{e.ctx, e.host} }

// statementError returns err, marked as the context's when ctx ended.
func statementError(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return &ctxError{ctx: cerr, host: err}
	}
	return err
}

var errBadResult = errors.New("greenroom: malformed database result")

// decodeValue decodes one value at r's position; strings are substrings of
// r's buffer, bytes are copies.
func (r *envReader) value() driver.Value {
	switch r.u8() {
	case tagNull:
		return nil
	case tagInt64:
		return int64(r.u64())
	case tagDouble:
		return math.Float64frombits(r.u64())
	case tagFalse:
		return false
	case tagTrue:
		return true
	case tagString:
		// A copy: database/sql hands a string to Scan as it is, and a
		// substring would keep the whole result alive in the plugin's
		// memory for as long as the plugin keeps any one value of it
		// (a cache of one short column of each query held megabytes).
		return strings.Clone(r.str())
	case tagBytes:
		return []byte(r.str())
	case tagTime:
		sec := int64(r.u64())
		nsec := int64(r.u32())
		return time.Unix(sec, nsec).UTC()
	}
	if r.err == nil {
		r.err = errBadResult
	}
	return nil
}

// decodeRows parses a query result: u32 ncols, (bytes name, bytes type) ×
// ncols, u32 nrows, value × ncols × nrows.
func decodeRows(res string) (*rows, error) {
	r := envReader{s: res}
	n := int(r.u32())
	if r.err != nil || n < 0 || n > len(res)/8 {
		return nil, errBadResult
	}
	rs := &rows{cols: make([]string, n), types: make([]string, n)}
	for i := 0; i < n; i++ {
		rs.cols[i] = strings.Clone(r.str()) // copies, as the values (rows.Columns may be kept)
		rs.types[i] = strings.Clone(r.str())
	}
	nrows := int(r.u32())
	if r.err != nil || nrows < 0 || (n > 0 && nrows > (len(res)-r.off)/n) {
		return nil, errBadResult
	}
	// A row of no columns (SELECT FROM t) has no values, only its count.
	rs.nrows = nrows
	rs.vals = make([]driver.Value, 0, n*nrows)
	for i := 0; i < n*nrows; i++ {
		rs.vals = append(rs.vals, r.value())
	}
	if r.err != nil || r.off != len(res) {
		return nil, errBadResult
	}
	return rs, nil
}

type execResult struct {
	affected, lastID int64
	hasLastID        bool
}

func (r execResult) LastInsertId() (int64, error) {
	if !r.hasLastID {
		return 0, errors.New("greenroom: LastInsertId is not supported by this database; use RETURNING")
	}
	return r.lastID, nil
}

func (r execResult) RowsAffected() (int64, error) { return r.affected, nil }

func decodeExecResult(res string) (execResult, error) {
	r := envReader{s: res}
	out := execResult{affected: int64(r.u64()), lastID: int64(r.u64()), hasLastID: r.u8() == 1}
	if r.err != nil || r.off != len(res) {
		return out, errBadResult
	}
	return out, nil
}

// sqlDriver is the database/sql driver DB registers.
type sqlDriver struct {
	t    dbTransport
	gate *connGate
}

func (d *sqlDriver) Open(string) (driver.Conn, error) { return &conn{t: d.t, gate: d.gate}, nil }

// connGate counts the runtime's connections (limits.db_max_conns) that
// this instance's goroutines use: one per open transaction, and one for
// the length of each statement outside a transaction. A goroutine that
// finds them all taken waits here, in the guest, where the goroutines
// holding them can run and give them back; a host call waiting for a
// connection would hold the guest's only thread, so that the holders never
// ran. The wait ends with ErrTimeout after limits.db_statement_timeout, as
// the runtime's own does, so that a goroutine whose own transactions hold
// every connection fails cleanly instead of waiting for ever (which Go's
// runtime ends as a deadlock, killing the instance). A nil gate (the
// limits unknown) lets every call through to the runtime.
type connGate struct {
	slots chan struct{}
	wait  time.Duration

	mu   sync.Mutex
	open map[*conn]uint32 // connections in a transaction, each holding a slot, and the transaction's handle
}

func newConnGate(n int, wait time.Duration) *connGate {
	if n <= 0 || wait <= 0 {
		return nil
	}
	return &connGate{slots: make(chan struct{}, n), wait: wait}
}

// acquire takes a connection for op, waiting at most the statement
// timeout, or until ctx ends.
func (g *connGate) acquire(ctx context.Context, op string) error {
	if g == nil {
		return nil
	}
	select {
	case g.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err() // as database/sql's own wait for a connection
	case <-t.C:
		return &Error{Op: op, Code: errTimeout, Message: fmt.Sprintf(
			"database connection pool exhausted: all %d connections (limits.db_max_conns) stayed busy for %s (limits.db_statement_timeout), held by this instance's own open transactions",
			cap(g.slots), g.wait)}
	}
}

func (g *connGate) release() {
	if g != nil {
		<-g.slots
	}
}

// began records that c holds a slot for its transaction tx.
func (g *connGate) began(c *conn, tx uint32) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open == nil {
		g.open = map[*conn]uint32{}
	}
	g.open[c] = tx
}

// endTx forgets c's transaction and gives back its slot, unless the end
// of the call gave it back already (callEnded); it reports whether c was
// in a transaction (one ends once: commit, rollback or the connection's
// close).
func (c *conn) endTx() (uint32, bool) {
	id := c.tx
	if id == 0 {
		return 0, false
	}
	c.tx = 0
	if g := c.gate; g != nil {
		g.mu.Lock()
		_, held := g.open[c] // not when the call's end gave its slot back
		delete(g.open, c)
		g.mu.Unlock()
		if held {
			g.release()
		}
	}
	return id, true
}

// callEnded is called when a request or a task run ends, and again when
// the next begins: every transaction the call left open is rolled back as
// it ends (by sqlDriver.callEnded, else by the runtime), so their
// connections' slots are given back here, for the instance's next call.
// (A transaction begun with the request's context is also rolled back by
// database/sql when that context ends; one begun with db.Begin() is
// not, and would hold its slot for the instance's life.) It returns the
// handles of those transactions.
func (g *connGate) callEnded() []uint32 {
	if g == nil {
		return nil
	}
	// Only the slots: each conn keeps its (now rolled back) transaction,
	// so that the transaction's later statements, Commit and Rollback
	// fail with sql.ErrTxDone (txEnded, by the call count) instead of
	// running outside any transaction, autocommitted.
	g.mu.Lock()
	var ids []uint32
	for _, id := range g.open {
		ids = append(ids, id)
	}
	clear(g.open)
	g.mu.Unlock()
	for range ids {
		g.release()
	}
	return ids
}

// dbCalls counts the ends and the beginnings of calls (requests, task
// runs): a transaction begun before the count last moved on was rolled
// back by the runtime when its call ended (see txEnded). Counting the end
// alone missed a transaction a goroutine began after it, while the call
// was ending (in dbCallEnded's yield): it was counted with the next call,
// and its use there failed with the runtime's "transaction N is not open".
var dbCalls atomic.Uint64

// dbCallEnding is true from the end of a call (dbCallEnded) to the
// beginning of the next (dbCallBegins): the goroutines that run then, in
// dbCallEnded's yield, run as the call is ending, and a transaction they
// begin would be rolled back by the runtime once the call has returned.
// BeginTx refuses to begin one then, sending nothing (see
// txCallEndingError).
var dbCallEnding atomic.Bool

// dbCallBegins is called as a call (request, task run) begins, before any
// of the guest's goroutines runs in it: a transaction begun since the last
// call ended, as it was ending, was rolled back by the runtime with the
// call's others, and its connection's slot is given back.
func dbCallBegins() {
	dbCallEnding.Store(false)
	dbCalls.Add(1)
	if d, ok := registered.Load().(*sqlDriver); ok {
		d.gate.callEnded()
	}
}

// dbCallEnded ends the call's transactions still open, and releases what
// they held in the SDK's database (see sqlDriver.callEnded).
func dbCallEnded() {
	d, _ := registered.Load().(*sqlDriver)
	d.callEnded()
}

// txCallEnded is bit 31 of db_rollback's handle: the transaction is
// rolled back because the call that began it ended with it still open,
// and the runtime logs its warning for it, as for one it rolls back
// itself (docs/abi.md). No handle has it: they are at most 2^31-1.
const txCallEnded = 1 << 31

// callEnded marks the call ended (dbCallEnding, dbCalls), rolls back the
// transactions it left open (db_rollback with txCallEnded, one each) and
// releases what they held in the SDK's database (see connGate.callEnded);
// d may be nil (no database used).
//
// The rollbacks come before the yield below, where the call's goroutines
// may run: the runtime rolls back what the call left open only once the
// call has returned, and a goroutine's statement outside a transaction
// there waited, in a host call that holds the guest, for what such a
// transaction held (on SQLite its write lock, on PostgreSQL the rows it
// wrote) until db_statement_timeout failed it (ErrTimeout), holding the
// call's answer that long. A rollback that fails (a runtime that does not
// know bit 31 answers ErrNotFound) leaves the transaction to the runtime,
// as before. The transactions' later use fails with sql.ErrTxDone, by the
// call count, sending nothing (txEnded).
//
// When the call left transactions open, it yields once, so that
// database/sql's goroutines that end those begun with the call's context
// (now ended) run before the call returns: in a guest a goroutine runs
// only when the running one blocks or yields, and a plugin whose handlers
// never block kept each such transaction, its connection counted in use
// by db.Stats() and its goroutine, for the instance's life.
func (d *sqlDriver) callEnded() {
	dbCallEnding.Store(true)
	dbCalls.Add(1)
	if d == nil {
		return
	}
	ids := d.gate.callEnded()
	for _, id := range ids {
		d.t.rollback(id | txCallEnded)
	}
	if len(ids) > 0 {
		runtime.Gosched()
	}
}

// conn is a database/sql connection. It holds nothing on the host but the
// transaction it is in, if any: the host picks a pooled connection for each
// statement outside a transaction.
type conn struct {
	t    dbTransport
	gate *connGate
	tx   uint32
	buf  []byte
	// txCtx is the context given to BeginTx for the transaction the
	// connection is in; txErr, once the driver rolled that transaction
	// back because txCtx ended, what its later statements and its Commit
	// return (see txEnded).
	txCtx context.Context
	txErr error
	// txCall is dbCalls when the transaction began: once the count moves
	// on, the call that began it has ended, and the runtime rolled it
	// back.
	txCall uint64
}

// txCtxError is a transaction's statement or Commit refused because the
// context given to BeginTx ended: the driver rolled the transaction back.
// It is that context's error and sql.ErrTxDone, as database/sql reports
// such a transaction natively.
type txCtxError struct{ cause error }

func (e *txCtxError) Error() string {
	return "greenroom: the transaction's context ended (" + e.cause.Error() + ") and the transaction was rolled back"
}
func (e *txCtxError) Unwrap() []error { return []error{e.cause, sql.ErrTxDone} }

// txCallError is a transaction's statement, Commit or Rollback refused
// because the call (request or task run) that began it has ended: the
// runtime rolled it back then. It is sql.ErrTxDone, as database/sql
// reports a transaction already ended.
type txCallError struct{}

func (e *txCallError) Error() string {
	return "greenroom: the transaction was rolled back when the call that began it ended (a transaction lasts at most the request or task run that begins it): " + sql.ErrTxDone.Error()
}
func (e *txCallError) Unwrap() error { return sql.ErrTxDone }

// txCallEndingError is a BeginTx refused because the call (request or
// task run) has ended: the goroutine began it in the SDK's yield at the
// call's end (dbCallEnded), and the runtime rolls back what the call
// leaves open once it has returned. Such a transaction would be rolled
// back then, and its use would fail with txCallError; on SQLite, before
// the SDK rolled back the call's own transactions ahead of the yield
// (sqlDriver.callEnded), its Begin waited, in a host call that holds the
// guest, for the write lock of one the call left open: the call ended
// only when the busy timeout failed the Begin (db_statement_timeout), or
// at its own deadline. It is sql.ErrTxDone, as that transaction's use
// was.
type txCallEndingError struct{}

func (e *txCallEndingError) Error() string {
	return "greenroom: no transaction was begun: it was begun as the call that would hold it was ending, and the runtime rolls back what a call leaves open as it ends (a transaction lasts at most the request or task run that begins it): " + sql.ErrTxDone.Error()
}
func (e *txCallEndingError) Unwrap() error { return sql.ErrTxDone }

// ctxEnded is ctx's error, or context.DeadlineExceeded once its deadline
// has passed. In a guest a context's deadline timer fires only when the
// goroutine blocks, and one waiting in a host call (a statement) does
// not: a handler whose transaction's deadline passed during a statement
// saw its context live, and database/sql did not roll the transaction
// back.
func ctxEnded(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// txEnded reports the error of c's transaction when the context given to
// BeginTx has ended: it rolls the transaction back first (once), as
// database/sql does natively when that context ends, so that its later
// statements fail and its Commit commits nothing.
func (c *conn) txEnded() error {
	if c.txErr != nil {
		return c.txErr
	}
	if c.tx != 0 && c.txCall != dbCalls.Load() {
		// Rolled back by the runtime when its call ended; nothing to
		// send.
		c.txErr = &txCallError{}
		c.endTx()
		return c.txErr
	}
	if c.tx == 0 || c.txCtx == nil {
		return nil
	}
	cerr := ctxEnded(c.txCtx)
	if cerr == nil {
		return nil
	}
	c.txErr = &txCtxError{cause: cerr}
	if id, ok := c.endTx(); ok {
		c.t.rollback(id)
	}
	return c.txErr
}

var (
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.QueryerContext     = (*conn)(nil)
	_ driver.ConnPrepareContext = (*conn)(nil)
	_ driver.Pinger             = (*conn)(nil)
)

func (c *conn) Prepare(query string) (driver.Stmt, error) { return &stmt{c: c, query: query}, nil }

func (c *conn) PrepareContext(_ context.Context, query string) (driver.Stmt, error) {
	return &stmt{c: c, query: query}, nil
}

func (c *conn) Close() error {
	if id, ok := c.endTx(); ok {
		c.t.rollback(id)
	}
	return nil
}

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if err := ctxEnded(ctx); err != nil {
		return nil, err
	}
	if c.tx != 0 {
		return nil, errors.New("greenroom: transaction already open on this connection")
	}
	flags, err := txFlags(opts)
	if err != nil {
		return nil, err
	}
	if dbCallEnding.Load() {
		return nil, &txCallEndingError{}
	}
	if err := c.gate.acquire(ctx, "db_begin"); err != nil {
		return nil, err
	}
	tx, err := c.t.begin(flags)
	if err != nil {
		c.gate.release()
		return nil, err
	}
	c.tx, c.txCtx, c.txErr, c.txCall = tx, ctx, nil, dbCalls.Load()
	c.gate.began(c, tx)
	return &txn{c: c}, nil
}

// txFlags encodes opts as db_begin's flags (docs/abi.md): bit 0 read-only,
// bits 8-15 the isolation level. A level neither database gives (Write
// Committed, Linearizable, one database/sql does not define) is refused
// with ErrInvalid naming it, rather than sent and ignored: SQLite's driver
// ignores every level (each of its transactions is serializable), and a
// plugin asking for a guarantee must not be given less without a word.
// Read-only is honoured on both databases.
func txFlags(opts driver.TxOptions) (uint32, error) {
	level := sql.IsolationLevel(opts.Isolation)
	switch level {
	case sql.LevelDefault, sql.LevelReadUncommitted, sql.LevelReadCommitted,
		sql.LevelRepeatableRead, sql.LevelSnapshot, sql.LevelSerializable:
	default:
		return 0, &Error{Op: "db_begin", Code: errInvalid, Message: fmt.Sprintf(
			"isolation level %s is not supported: a transaction takes Default, Read Uncommitted, Read Committed, Repeatable Read, Snapshot or Serializable", level)}
	}
	flags := uint32(level) << 8
	if opts.ReadOnly {
		flags |= 1
	}
	return flags, nil
}

func (c *conn) Ping(ctx context.Context) error {
	_, err := c.QueryContext(ctx, "SELECT 1", nil)
	return err
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req, err := appendStatement(c.buf[:0], c.tx, query, args, statementDeadline(ctx))
	if err != nil {
		return nil, err
	}
	c.buf = keptStatementBuf(req)
	if err := c.txEnded(); err != nil {
		return nil, err
	}
	outside := c.tx == 0 // once: a parked goroutine must release only what it took
	if outside {
		if err := c.gate.acquire(ctx, "db_exec"); err != nil {
			return nil, err
		}
	}
	res, err := c.t.exec(req)
	if outside {
		c.gate.release()
	}
	if err != nil {
		return nil, statementError(ctx, err)
	}
	return decodeExecResult(res)
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req, err := appendStatement(c.buf[:0], c.tx, query, args, statementDeadline(ctx))
	if err != nil {
		return nil, err
	}
	c.buf = keptStatementBuf(req)
	if err := c.txEnded(); err != nil {
		return nil, err
	}
	outside := c.tx == 0 // once: a parked goroutine must release only what it took
	if outside {
		if err := c.gate.acquire(ctx, "db_query"); err != nil {
			return nil, err
		}
	}
	res, err := c.t.query(req)
	if outside {
		c.gate.release()
	}
	if err != nil {
		return nil, statementError(ctx, err)
	}
	rs, err := decodeRows(res)
	if rs != nil && ctx.Done() != nil {
		rs.ctx = ctx
	}
	return rs, err
}

// maxKeptStatementBuf is the largest request buffer a connection keeps for
// its next statement. One that held a large argument (an uploaded file
// into a BLOB) is let go: kept, it held the plugin's memory for as long
// as database/sql kept the connection idle, up to one such buffer for
// each idle connection, which the collector could never free.
const maxKeptStatementBuf = 64 << 10

// keptStatementBuf is what a connection keeps of req's buffer for its
// next statement.
func keptStatementBuf(req []byte) []byte {
	if cap(req) > maxKeptStatementBuf {
		return nil
	}
	return req
}

type txn struct{ c *conn }

// Commit commits, unless the context given to BeginTx has ended: then it
// rolls back and fails with that context's error, as database/sql's Commit
// does natively (see txEnded).
func (t *txn) Commit() error {
	err := t.c.txEnded()
	t.c.txCtx, t.c.txErr = nil, nil
	if err != nil {
		return err
	}
	id, _ := t.c.endTx()
	return t.c.t.commit(id)
}

// Rollback rolls back. After the context given to BeginTx ended, the
// driver rolled back already (see txEnded) and it succeeds; after the
// call that began the transaction ended, the runtime did, and it fails
// with sql.ErrTxDone, as a second Rollback does in database/sql.
func (t *txn) Rollback() error {
	err := t.c.txEnded()
	t.c.txCtx, t.c.txErr = nil, nil
	if _, ok := err.(*txCallError); ok {
		return err
	}
	if err != nil {
		return nil // rolled back by txEnded
	}
	id, _ := t.c.endTx()
	return t.c.t.rollback(id)
}

// stmt is an emulated prepared statement: it keeps the text and sends it
// with each execution.
type stmt struct {
	c     *conn
	query string
}

func (s *stmt) Close() error  { return nil }
func (s *stmt) NumInput() int { return -1 }

func (s *stmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.c.ExecContext(context.Background(), s.query, named(args))
}

func (s *stmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.c.QueryContext(context.Background(), s.query, named(args))
}

func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.c.ExecContext(ctx, s.query, args)
}

func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.c.QueryContext(ctx, s.query, args)
}

func named(args []driver.Value) []driver.NamedValue {
	out := make([]driver.NamedValue, len(args))
	for i, v := range args {
		out[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return out
}

// rows is a whole query result, decoded: nrows rows of len(cols) values
// each, row by row in vals. A result may have rows of no columns (SELECT
// FROM t): then vals is empty and nrows alone counts them.
type rows struct {
	cols, types []string
	vals        []driver.Value
	nrows       int
	next        int // the row Next returns next
	// ctx is the query's context: once it ends, Next gives its error
	// instead of a row, as database/sql's Rows do natively once they
	// see it. (database/sql closes them from a goroutine of its own,
	// which in a guest runs only when the plugin's goroutine blocks: a
	// loop over rows already here read them all, and rows.Err was nil.)
	ctx context.Context
}

func (r *rows) Columns() []string { return r.cols }
func (r *rows) Close() error      { r.vals, r.nrows = nil, 0; return nil }

// ColumnTypeDatabaseTypeName returns the column's type as the database
// names it (e.g. "INT8", "TEXT"), or "".
func (r *rows) ColumnTypeDatabaseTypeName(i int) string { return r.types[i] }

func (r *rows) Next(dest []driver.Value) error {
	if r.next >= r.nrows {
		return io.EOF
	}
	if r.ctx != nil {
		if err := r.ctx.Err(); err != nil {
			return err
		}
	}
	n := len(r.cols)
	copy(dest, r.vals[r.next*n:(r.next+1)*n])
	r.next++
	return nil
}
