package database

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sirupsen/logrus"
	"modernc.org/sqlite"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

// PluginDB is one plugin's database. It implements hostfuncs.Database.
type PluginDB struct {
	svc *Service
	id  string
	db  *sql.DB
	log *logrus.Entry

	mu         sync.Mutex
	lim        Limits
	migrations []hostfuncs.MigrationFile
	// fixed: the version's first instance has initialized, and its
	// migrations are the version's (FixMigrations).
	fixed    bool
	released sync.Once
}

var _ hostfuncs.Database = (*PluginDB)(nil)

func newPluginDB(s *Service, id string, db *sql.DB, lim Limits) *PluginDB {
	return &PluginDB{svc: s, id: id, db: db, lim: lim, log: s.log.WithField("plugin", id)}
}

// Activate makes p's limits those of the plugin's connection pool: how
// many connections it keeps and the limits each new connection gets. The
// runtime calls it when p's plugin version starts serving. A version's
// statements always run under its own limits.
func (p *PluginDB) Activate() {
	lim := p.limits()
	p.db.SetMaxOpenConns(lim.MaxConns)
	p.db.SetMaxIdleConns(lim.MaxConns)
	if ls, ok := p.svc.backend.(limitsSetter); ok {
		ls.setLimits(p.id, lim)
	}
}

func (p *PluginDB) limits() Limits {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lim
}

// SQL returns the plugin's connection pool, for the runtime's own use
// (benchmarks, tests). It connects as the plugin does, with its isolation.
func (p *PluginDB) SQL() *sql.DB { return p.db }

// MaxConns is the most connections the plugin's pool holds
// (limits.db_max_conns of this version), for db_max_conns.
func (p *PluginDB) MaxConns() int { return p.limits().MaxConns }

// StatementTimeout is how long a statement, or a wait for a connection,
// may take (limits.db_statement_timeout of this version), for
// db_statement_timeout.
func (p *PluginDB) StatementTimeout() time.Duration { return p.limits().StatementTimeout }

// MaxResult is the most bytes a query result may take encoded
// (limits.db_max_result of this version); the host functions bound a
// statement's arguments by it too.
func (p *PluginDB) MaxResult() int { return p.limits().MaxResult }

// MaxResultSecret reports whether limits.db_max_result came from the
// environment: the host functions' refusal of arguments over it does not
// quote it then.
func (p *PluginDB) MaxResultSecret() bool { return p.limits().MaxResultSecret }

// Release ends this PluginDB's use of the plugin's pool, once its version
// of the plugin is closed for good; the pool closes with the last one.
// Calls after the first do nothing.
func (p *PluginDB) Release() {
	p.released.Do(func() { p.svc.release(p.id) })
}

// Stats returns the plugin's pool figures.
func (p *PluginDB) Stats() sql.DBStats { return p.db.Stats() }

// deniedError is a statement the sandbox or the database's privileges
// refused; the guest gets ErrDenied.
type deniedError struct {
	err error
	msg string
}

func (e *deniedError) Error() string { return e.msg }
func (e *deniedError) Unwrap() error { return e.err }

// timeoutError is a statement the database cancelled at its statement
// timeout.
type timeoutError struct{ err error }

func (e *timeoutError) Error() string { return e.err.Error() }
func (e *timeoutError) Unwrap() error { return e.err }

// tooLargeError is a value or row the database or its driver refused for
// passing db_max_result (SQLite's length limit, pgx's message limit).
type tooLargeError struct{ err error }

// memoryError is a statement SQLite could not allocate memory for: it
// reached database.sqlite_memory, which every plugin's statements share.
type memoryError struct{ err error }

func (e *memoryError) Error() string { return e.err.Error() }
func (e *memoryError) Unwrap() error { return e.err }

// busyError is a statement that waited for SQLite's write lock, held by
// another transaction, as long as the plugin's statement timeout.
type busyError struct{ err error }

func (e *busyError) Error() string { return e.err.Error() }
func (e *busyError) Unwrap() error { return e.err }

// fullError is a statement SQLite refused for want of pages: the
// database reached its max_page_count (limits.db_max_size), or the disk
// is full.
type fullError struct{ err error }

func (e *fullError) Error() string { return e.err.Error() }
func (e *fullError) Unwrap() error { return e.err }

func (e *tooLargeError) Error() string { return e.err.Error() }
func (e *tooLargeError) Unwrap() error { return e.err }

// txState is one instance's open transactions.
type txState struct {
	next uint32
	open map[uint32]*openTx
}

type openTx struct {
	conn *sql.Conn
	tx   *sql.Tx
	// aborted says why the transaction ended before its Commit or
	// Rollback (see dbFull); its statements and Commit then fail.
	aborted string
	// readOnly: begun read-only (BeginTx's TxOptions.ReadOnly).
	readOnly bool
	// fence is the call's fence when the transaction's idle bound was
	// last set (PostgreSQL; see idleBound).
	fence int64
}

// idleBound is how long a transaction of the call may sit idle on
// PostgreSQL before the server ends it (idle_in_transaction_session_timeout),
// and the call's fence it was computed with: until a second past the
// call's deadline, when the runtime rolls it back itself, and in a global
// task's run no later than the run's fence (its lease deadline). Only a
// replica held up with the transaction open (stopped, a paused VM, cut off
// from the server) leaves it idle that long, and the locks it holds would
// hold up every other replica — the one that took the task over among
// them — for as long as that lasted (an audit). ok is false when the call
// has neither deadline nor fence.
func idleBound(ctx context.Context, in *hostfuncs.Instance) (bound time.Duration, fence int64, ok bool) {
	if d, has := ctx.Deadline(); has {
		bound, ok = time.Until(d)+time.Second, true
	}
	if f, left, has := in.Cancel.FenceLeft(); has {
		fence = f
		if !ok || left < bound {
			bound, ok = left, true
		}
	}
	return max(bound, time.Millisecond), fence, ok
}

// setIdleBound sets the idle bound of t's transaction (see idleBound).
func setIdleBound(ctx context.Context, t *openTx, bound time.Duration, fence int64) error {
	// PostgreSQL takes at most 2^31-1 ms (about 24.8 days).
	ms := min(bound.Milliseconds()+1, math.MaxInt32)
	_, err := t.tx.ExecContext(ctx, "SET LOCAL idle_in_transaction_session_timeout = "+strconv.FormatInt(ms, 10))
	if err == nil {
		t.fence = fence
	}
	return err
}

// dbFull marks a statement's error as a database that reached
// limits.db_max_size (or a full disk). SQLite may have rolled back the
// transaction the statement ran in (it does when the statement had no
// journal of its own), so the runtime ends the transaction either way.
type dbFull struct{ error }

func (e dbFull) Unwrap() error { return e.error }

// dbMemory is the error fail returns for a SQLite statement that reached
// database.sqlite_memory, which, like dbFull, ends its transaction.
type dbMemory struct{ error }

func (e dbMemory) Unwrap() error { return e.error }

type txKey struct{}

func (p *PluginDB) txs(in *hostfuncs.Instance) *txState {
	st, _ := in.Value(txKey{}).(*txState)
	if st == nil {
		st = &txState{open: map[uint32]*openTx{}}
		in.SetValue(txKey{}, st)
	}
	return st
}

// acquire takes a connection from the plugin's pool, waiting at most the
// statement timeout when all db_max_conns are busy.
func (p *PluginDB) acquire(ctx context.Context, lim Limits) (*sql.Conn, error) {
	wctx, cancel := context.WithTimeout(ctx, lim.StatementTimeout)
	defer cancel()
	conn, err := p.db.Conn(wctx)
	if err == nil {
		if p.svc.cfg.Client == ClientSQLite {
			// The lock wait ends a little before the statement's own
			// timeout, so that it is what the plugin is told of.
			busy := lim.StatementTimeout - min(lim.StatementTimeout/10, 100*time.Millisecond)
			if err := limitConn(ctx, conn, lim.MaxResult, lim.MaxSize, busy); err != nil {
				conn.Close()
				return nil, err
			}
		}
		return conn, nil
	}
	if ctx.Err() != nil {
		return nil, hostfuncs.Failf(hostfuncs.ErrTimeout, "the call's deadline passed while waiting for a database connection")
	}
	if wctx.Err() != nil {
		if n := p.survivors(); n > 0 {
			return nil, hostfuncs.Failf(hostfuncs.ErrTimeout, "no database connection within limits.db_statement_timeout of %s: %d of the plugin's limits.db_max_conns of %s are taken by the backends of connections given up after their statement's timeout, which still run on the server (PostgreSQL does not interrupt some operations, such as array containment over large arrays, on a timeout or pg_terminate_backend)", lim.toldStatementTimeout(), n, lim.toldMaxConns())
		}
		if inUse := p.db.Stats().InUse; inUse < lim.MaxConns {
			// Not all busy (now): opening one (connect, authentication,
			// the session's setup) may take longer than the wait.
			return nil, hostfuncs.Failf(hostfuncs.ErrTimeout, "no database connection within limits.db_statement_timeout of %s: %d of %s (limits.db_max_conns) are in use now, and opening a new one takes longer than that", lim.toldStatementTimeout(), inUse, lim.toldMaxConns())
		}
		return nil, hostfuncs.Failf(hostfuncs.ErrTimeout, "database connection pool exhausted: all %s connections (limits.db_max_conns) stayed busy for %s (limits.db_statement_timeout)", lim.toldMaxConns(), lim.toldStatementTimeout())
	}
	return nil, p.connectFailed(err)
}

// connectFailed is what the plugin is told when its connection could not
// be opened: that, and the SQLSTATE when the server gave one. pgx's text
// names the database's host and port, the plugin's role and its database
// (the server's message names the role too), which the plugin has no use
// for: the operator's log has it (its secrets redacted, as every line's).
func (p *PluginDB) connectFailed(err error) error {
	if p.svc.allowLine(p.id) {
		p.log.WithError(err).Warn("the plugin's database connection could not be opened")
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && ValidSQLState(pe.Code) {
		return hostfuncs.Failf(hostfuncs.ErrFailed, "could not open a database connection (the runtime's log says why) (SQLSTATE %s)", pe.Code)
	}
	return hostfuncs.Failf(hostfuncs.ErrFailed, "could not open a database connection (the runtime's log says why)")
}

// ValidSQLState reports whether code is five of [0-9A-Z], as a SQLSTATE
// is: only such a code is quoted from a server's error to a plugin or a
// caller.
func ValidSQLState(code string) bool {
	if len(code) != 5 {
		return false
	}
	for _, c := range []byte(code) {
		if (c < '0' || c > '9') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

// check refuses statements before they reach the database: during init,
// and (PostgreSQL) the commands deniedCommand names. checkSession reads
// them again once their connection is known.
func (p *PluginDB) check(in *hostfuncs.Instance, st *hostfuncs.Statement) error {
	if in.Initializing {
		return hostfuncs.Failf(hostfuncs.ErrInvalid, "the database cannot be used while the plugin initializes: its migrations are applied after init; query from handlers")
	}
	// SQLite ends a statement at a NUL, running less than the plugin
	// sent (and less than the filters read); PostgreSQL's protocol ends
	// the text at one and fails the message (08P01).
	if i := strings.IndexByte(st.SQL, 0); i >= 0 {
		return hostfuncs.Failf(hostfuncs.ErrInvalid, "statement refused: its text has a NUL byte (at byte %d), which no SQL statement may hold: pass binary data as a []byte argument", i)
	}
	if p.svc.cfg.Client == ClientPG {
		// PostgreSQL's text cannot hold a NUL (the server fails the
		// statement with 22021, "invalid byte sequence"): said here,
		// naming the argument.
		for i, a := range st.Args {
			if s, ok := a.(string); ok {
				if j := strings.IndexByte(s, 0); j >= 0 {
					return hostfuncs.Failf(hostfuncs.ErrInvalid, "argument %d: a string with a NUL byte (at byte %d), which PostgreSQL text cannot hold: pass binary data as []byte (bytea)", i+1, j)
				}
			}
		}
		if cmd := deniedCommand(st.SQL, false); cmd != "" {
			return hostfuncs.Failf(hostfuncs.ErrDenied, "statement refused: %s", refusal(cmd, ""))
		}
	}
	if p.svc.cfg.Client == ClientSQLite {
		// SQLite keeps a time as text with a four-digit year, which the
		// driver writes in UTC: one outside those years would be stored
		// and never read back as a time.
		// Nor does it keep a NaN: bound as a double it is stored as NULL,
		// silently.
		for i, a := range st.Args {
			if t, ok := a.(time.Time); ok && (t.Year() < 0 || t.Year() > 9999 || t.UTC().Year() < 0 || t.UTC().Year() > 9999) {
				return hostfuncs.Failf(hostfuncs.ErrInvalid, "argument %d: time %s is outside the years 0000 to 9999 (in UTC), which SQLite cannot store as a time", i+1, t.Format(time.RFC3339Nano))
			}
			if f, ok := a.(float64); ok && math.IsNaN(f) {
				return hostfuncs.Failf(hostfuncs.ErrInvalid, "argument %d: NaN, which SQLite would store as NULL", i+1)
			}
		}
	}
	return nil
}

// checkSession returns the command deniedCommand names in q when q is to
// run on conn, a PostgreSQL connection whose session reads a backslash in
// every literal as an escape: standard_conforming_strings off, as the
// server last reported it (it reports every change, whatever made it: a
// SET, a DO block, a function), or not reported. Otherwise check has read
// q as the server will.
//
// It refuses every statement once the session's client_encoding is not
// UTF8 (SET client_encoding, SET NAMES, set_config): the filter reads q as
// UTF-8, and in an encoding such as SJIS or BIG5 a byte the filter reads
// as a backslash or a quote belongs to a character, so that a literal the
// filter sees open is closed for the server, which would then run what
// the filter took for its text (PREPARE TRANSACTION, LISTEN, COPY). Such
// a connection is not put back in the pool (release).
func (p *PluginDB) checkSession(conn *sql.Conn, q string) string {
	if p.svc.cfg.Client != ClientPG {
		return ""
	}
	conforming, encoding := false, "UTF8"
	conn.Raw(func(dc any) error {
		if c, ok := dc.(interface{ Conn() *pgx.Conn }); ok {
			conforming = c.Conn().PgConn().ParameterStatus("standard_conforming_strings") == "on"
			encoding = c.Conn().PgConn().ParameterStatus("client_encoding")
		}
		return nil
	})
	if encoding != "UTF8" {
		return "statements in client_encoding " + strconv.Quote(encoding) + " (the runtime reads statements as UTF8, and the session was set to another encoding; do not change client_encoding)"
	}
	if conforming {
		return ""
	}
	return deniedCommand(q, true)
}

// sessionUTF8 reports whether c's session reads statements as UTF-8, as
// the server last reported its client_encoding.
func sessionUTF8(c *pgx.Conn) bool {
	return c.PgConn().ParameterStatus("client_encoding") == "UTF8"
}

// refusal says why the command cmd that deniedCommand named is refused;
// where is said after its name.
func refusal(cmd, where string) string {
	if strings.HasPrefix(cmd, "COPY") {
		return "plugins cannot run " + cmd + where + ": the runtime does not carry COPY's data to or from a plugin (use INSERT and SELECT)"
	}
	if strings.HasSuffix(cmd, ")") {
		return "plugins cannot run " + cmd + where // it says why itself
	}
	return "plugins cannot run " + cmd + where + " (a plugin's session stays its own: its role, its schema, no temporary objects, no notifications)"
}

// runner is what runs a statement: a connection or a transaction.
type runner interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// runner returns the connection or transaction st runs on, and done,
// which releases it and returns the statement's error err. Outside a
// transaction, a statement that left one open on its connection (BEGIN or
// SAVEPOINT sent as SQL) has it rolled back there, before the connection
// goes back to the pool, and done returns an error that says so.
func (p *PluginDB) runner(ctx context.Context, in *hostfuncs.Instance, st *hostfuncs.Statement, lim Limits) (runner, func(err error) error, error) {
	if st.Tx != 0 {
		t := p.txs(in).open[st.Tx]
		if t == nil {
			return nil, nil, hostfuncs.Failf(hostfuncs.ErrInvalid, "transaction %d is not open", st.Tx)
		}
		if t.aborted != "" {
			return nil, nil, hostfuncs.Failf(hostfuncs.ErrFailed, "%s", t.aborted)
		}
		// A COMMIT or ROLLBACK sent as SQL would end the transaction
		// under the plugin: its later statements would commit alone and
		// its Rollback undo nothing. (SQLite's authorizer refuses them;
		// on PostgreSQL the status after the statement is checked too.)
		if p.svc.cfg.Client == ClientPG {
			if cmd := transactionControl(st.SQL); cmd != "" {
				return nil, nil, hostfuncs.Failf(hostfuncs.ErrDenied, "statement refused: %s", inTxRefusal(cmd))
			}
		}
		if cmd := p.checkSession(t.conn, st.SQL); cmd != "" {
			return nil, nil, hostfuncs.Failf(hostfuncs.ErrDenied, "statement refused: %s", refusal(cmd, ""))
		}
		if t.readOnly && p.svc.cfg.Client == ClientPG && setsVariable(st.SQL) && statements(st.SQL) > 1 {
			// Checked after the call (below): the statements after a
			// SET in the same call would run before the check.
			return nil, nil, hostfuncs.Failf(hostfuncs.ErrDenied, "statement refused: in a read-only transaction, a SET or RESET is sent alone, not with other statements")
		}
		return t.tx, func(err error) error {
			if err != nil {
				err = nameRefusal(t.conn, err)
			}
			// A transaction SQLite ended is ended for the plugin too,
			// consistently: a plugin that went on would otherwise
			// commit its later statements alone, each in its own
			// transaction, and its Rollback would undo nothing.
			if err != nil {
				p.reapLost(t.conn)
			}
			switch {
			case err == nil && t.readOnly && p.svc.cfg.Client == ClientPG && setsVariable(st.SQL) && !pgTxReadOnly(ctx, t.tx, lim.StatementTimeout):
				// PostgreSQL lets SET TRANSACTION READ WRITE or SET
				// transaction_read_only make a read-only transaction
				// read-write before its first query; SET TRANSACTION
				// ISOLATION LEVEL, DEFERRABLE and SNAPSHOT are the
				// plugin's to use there.
				t.tx.Rollback()
				t.aborted = "the transaction was rolled back when a statement made it read-write; roll it back and start again"
				err = hostfuncs.Failf(hostfuncs.ErrDenied, "statement refused: a transaction begun read-only stays read-only (it was rolled back)")
			case err == nil && pgTxEnded(t.conn):
				// Only a statement the check above misread gets here.
				t.tx.Rollback()
				t.aborted = "the transaction was ended by the plugin's own SQL, and what ran after that ran outside it; roll it back and start again"
				err = hostfuncs.Failf(hostfuncs.ErrDenied, "statement refused: %s; it ran and ended the transaction", inTxRefusal("a statement that ends a transaction"))
			case err == nil && p.svc.cfg.Client == ClientPG:
				// The run's lease was renewed since the bound was set:
				// the transaction may now be idle until the new fence.
				if bound, fence, ok := idleBound(ctx, in); ok && fence != t.fence {
					setIdleBound(ctx, t, bound, fence)
				}
			case err == nil:
			case pgConnLost(t.conn):
				// Its statement cost the connection (given up at its
				// timeout or deadline, or stopped over db_max_result):
				// the server rolled the transaction back, and the
				// driver's words for what follows ("bad connection")
				// would not say so.
				t.tx.Rollback()
				t.aborted = "the transaction was rolled back when its statement failed and the database connection was closed with it (see that statement's error); roll it back and start again"
			case errors.As(err, new(dbFull)):
				t.tx.Rollback()
				t.aborted = "the transaction was rolled back when the plugin's database reached limits.db_max_size (or the disk filled); roll it back and start again"
			case errors.As(err, new(dbMemory)):
				// SQLite rolls back some transactions when it runs
				// out of memory and not others: the same every time.
				t.tx.Rollback()
				t.aborted = "the transaction was rolled back when its statement ran out of SQLite's memory (database.sqlite_memory); roll it back and start again"
			case sqliteTxEnded(ctx, t.conn, lim.StatementTimeout):
				t.tx.Rollback()
				t.aborted = "the transaction was rolled back when its statement failed (SQLite ends a transaction whose statement is interrupted at its timeout or deadline, or fails an ON CONFLICT ROLLBACK); roll it back and start again"
			case p.svc.cfg.Client == ClientSQLite && failedWith(err, hostfuncs.ErrTimeout):
				// SQLite rolls a transaction back itself only when an
				// interrupted statement was writing; a read cut off at
				// its timeout or deadline ends it too, as on
				// PostgreSQL, whose statement_timeout aborts the
				// transaction.
				t.tx.Rollback()
				t.aborted = "the transaction was rolled back when its statement ran out of time (limits.db_statement_timeout, or the call's or plugin's deadline); roll it back and start again"
			}
			return err
		}, nil
	}
	conn, err := p.acquire(ctx, lim)
	if err != nil {
		return nil, nil, err
	}
	if cmd := p.checkSession(conn, st.SQL); cmd != "" {
		p.release(conn, lim.StatementTimeout)
		return nil, nil, hostfuncs.Failf(hostfuncs.ErrDenied, "statement refused: %s", refusal(cmd, ""))
	}
	return conn, func(err error) error {
		defer p.release(conn, lim.StatementTimeout)
		if err != nil {
			p.reapLost(conn)
			err = nameRefusal(conn, err)
		}
		if rollbackStray(ctx, conn, lim.StatementTimeout) && err == nil {
			return hostfuncs.Failf(hostfuncs.ErrInvalid, "the statement left a transaction open (BEGIN or SAVEPOINT without COMMIT or RELEASE); it was rolled back with its changes: use db.Begin/BeginTx for a transaction across statements")
		}
		return err
	}, nil
}

// inTxRefusal says why cmd, transaction control sent as SQL, is refused
// inside a transaction the plugin began.
func inTxRefusal(cmd string) string {
	return "plugins cannot run " + cmd + " inside a transaction begun with db.Begin: end it with tx.Commit or tx.Rollback (SAVEPOINT, RELEASE and ROLLBACK TO are fine)"
}

// setsVariable reports whether a statement of q begins with SET or RESET
// (read both as with standard_conforming_strings on and off, as
// transactionControl reads q).
func setsVariable(q string) bool {
	for _, backslashes := range []bool{false, true} {
		for _, stmt := range strings.Split(codeOnly(q, backslashes), ";") {
			for _, tok := range tokens(lowerASCII(stmt)) {
				if isWord(tok) {
					if tok == "set" || tok == "reset" {
						return true
					}
					break
				}
			}
		}
	}
	return false
}

// statements counts the statements of q that hold a word, the most of its
// two readings (as setsVariable reads q).
func statements(q string) int {
	most := 0
	for _, backslashes := range []bool{false, true} {
		n := 0
		for _, stmt := range strings.Split(codeOnly(q, backslashes), ";") {
			if slices.ContainsFunc(tokens(stmt), isWord) {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}

// pgTxReadOnly reports whether the PostgreSQL transaction tx is still
// read-only; false when that cannot be read.
func pgTxReadOnly(ctx context.Context, tx *sql.Tx, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	var v string
	return tx.QueryRowContext(ctx, "SHOW transaction_read_only").Scan(&v) == nil && v == "on"
}

// pgTxEnded reports whether conn is a PostgreSQL connection that is out
// of any transaction (a transaction the runtime began on it was ended by
// a statement).
func pgTxEnded(conn *sql.Conn) bool {
	ended := false
	conn.Raw(func(dc any) error {
		if c, ok := dc.(interface{ Conn() *pgx.Conn }); ok && !c.Conn().IsClosed() {
			ended = c.Conn().PgConn().TxStatus() == 'I'
		}
		return nil
	})
	return ended
}

// pgConnLost reports whether conn is a PostgreSQL connection the driver
// has closed.
func pgConnLost(conn *sql.Conn) bool {
	lost := false
	conn.Raw(func(dc any) error {
		if c, ok := dc.(interface{ Conn() *pgx.Conn }); ok {
			lost = c.Conn().PgConn().IsClosed()
		}
		return nil
	})
	return lost
}

// release puts conn back in the plugin's pool. On PostgreSQL it first
// resets what the call left in the session, in one round trip (the
// simple protocol's several statements, run by the server as one implicit
// transaction): what it listens to (UNLISTEN *): a plugin can LISTEN from
// code the statement filter does not read (a DO block), and a pooled
// connection does not read the notifications its backend sends while it
// is idle, which then hold PostgreSQL's notification queue, one for the
// whole cluster (at most 8 GB), until NOTIFY fails for every session of
// every database; its cursors (CLOSE ALL: one DECLAREd WITH HOLD keeps
// its result, in the backend's memory or a temporary file, as long as
// the session lives); its prepared statements (DEALLOCATE ALL: one
// PREPAREd keeps its parse tree and plans in the backend's memory; the
// driver names none on plugin connections, pgBackend.plugin); its
// temporary tables (DISCARD TEMP: a DO block can create them); what
// nextval left (DISCARD SEQUENCES: lastval() and currval() would give the
// next calls the id an earlier call inserted); its settings (RESET ALL: SET work_mem and the like
// would reach the plugin's next calls, unbounded by anything of theirs);
// its session-level advisory locks (pg_advisory_unlock_all: the lock
// functions are revoked from plugins only where the runtime's user is a
// superuser); and the seed it gave random() (reseed).
// RESET ALL goes back to the connection's startup parameters
// (search_path, statement_timeout, application_name); what the connector
// SET after connecting is set again (sessionReset). A connection that
// cannot be reset is discarded.
//
// A connection the driver closed (a statement, Commit, Rollback or this
// reset cut by its timeout or the call's deadline) may have left its
// backend running: release reaps it (reapLost).
func (p *PluginDB) release(conn *sql.Conn, timeout time.Duration) {
	if p.svc.cfg.Client == ClientPG {
		conn.Raw(func(dc any) error {
			c, ok := dc.(interface{ Conn() *pgx.Conn })
			if !ok {
				return nil
			}
			if c.Conn().PgConn().IsClosed() {
				p.reapClosed(c.Conn().PgConn())
				return nil
			}
			if c.Conn().PgConn().TxStatus() != 'I' || !sessionUTF8(c.Conn()) {
				return driver.ErrBadConn
			}
			ctx, cancel := context.WithTimeout(context.Background(), min(timeout, 5*time.Second))
			defer cancel()
			reset, _ := c.Conn().PgConn().CustomData()[sessionResetKey].(string)
			if reset == "" {
				reset = sessionReset
			}
			if err := c.Conn().PgConn().Exec(ctx, reset+reseed()).Close(); err != nil {
				p.reapClosed(c.Conn().PgConn())
				return driver.ErrBadConn
			}
			return nil
		})
	}
	if p.svc.cfg.Client == ClientSQLite && sqliteDiscard(conn) {
		// Temporary tables live in the connection's own temporary
		// database (a deleted file in the system's temporary
		// directory, outside the data directory), as long as the
		// connection: the next calls would find them, and each of
		// the pool's connections could grow one without bound (or to
		// db_max_size each). A pragma's setting (foreign_keys = OFF)
		// lasts as long too, and the next calls would run under it.
		// The connection is closed with them.
		conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	conn.Close()
}

// reapLost ends, on the server, the backend of conn when the client has
// given conn up (PostgreSQL only): pgx closes a connection whose statement
// ran past its context, and the backend of a closed connection runs on
// until the server notices the client is gone, which a plugin can keep it
// from doing (client_connection_check_interval = 0, set from a DO block
// whose loop catches the cancel of statement_timeout): it would run
// forever, outside db_max_conns (the pool opens another connection), past
// the runtime's own shutdown. The runtime ends it with
// pg_terminate_backend on a connection of its own, as the runtime's user
// or else the plugin's role (terminateBackend; not from the plugin's
// pool, which the plugin can keep busy), retrying until the backend is
// gone; a pid is
// ended only with the start time its connection recorded, never a later
// backend given the same pid. Service.Close waits for these, at most
// reapGrace, then stops them. Call it before conn.Close. A connection's
// backend is reaped once: release calls it for every connection that
// comes back closed (a Commit or Rollback cut by the call's deadline, a
// ROLLBACK or the session reset that timed out), whatever path gave it up, and
// the statement paths call it as soon as their statement fails.
func (p *PluginDB) reapLost(conn *sql.Conn) {
	if p.svc.cfg.Client != ClientPG {
		return
	}
	conn.Raw(func(dc any) error {
		if c, ok := dc.(interface{ Conn() *pgx.Conn }); ok {
			p.reapClosed(c.Conn().PgConn())
		}
		return nil
	})
}

// reapedKey marks, in a plugin connection's pgconn.PgConn.CustomData, a
// connection whose backend reapClosed has started to reap.
const reapedKey = "greenroom.reaped"

// reapClosed is reapLost on the driver's connection: it starts the reap
// of pc's backend if pc is closed and its reap has not started.
func (p *PluginDB) reapClosed(c *pgconn.PgConn) {
	if !c.IsClosed() || c.CustomData()[reapedKey] != nil {
		return
	}
	c.CustomData()[reapedKey] = true
	pid := c.PID()
	started, _ := c.CustomData()[backendStartKey].(time.Time)
	if pid == 0 || started.IsZero() {
		p.log.WithField("pid", pid).Debug("the backend of a connection given up is not looked for: its start time is unknown (pg_stat_activity not readable when it connected)")
		return
	}
	pc := p.svc.pluginConnector(p.id)
	if pc == nil {
		p.log.WithField("pid", pid).Debug("the backend of a connection given up is not looked for: the plugin's database is closed")
		return
	}
	if !p.svc.startReap() {
		return
	}
	// Until the reap sees it gone, the backend counts against the
	// plugin's db_max_conns (pgConnector.room), except while the reap
	// cannot check it (the server down or restarting, when the backend
	// is most likely gone with it): a restart would otherwise keep the
	// plugin from connecting again until each reap gave up.
	pc.survivors.Add(1)
	counted := true
	count := func(on bool) {
		if on != counted {
			counted = on
			pc.survivors.Add(map[bool]int64{true: 1, false: -1}[on])
		}
	}
	go func() {
		defer p.svc.reaping.Done()
		defer count(false)
		log := p.log.WithField("pid", pid)
		var endedAt time.Time // when pg_terminate_backend first took it
		warned := false
		// A terminated backend is usually gone within milliseconds: it
		// is looked for again soon, then less often, up to each second.
		wait := 20 * time.Millisecond
		for failures := 0; ; {
			k := p.svc.knobs()
			var gone, ended bool
			var err error
			if k.failReapChecks != nil && k.failReapChecks() {
				err = errors.New("connection refused (a test's)")
			} else {
				gone, ended, err = terminateBackend(p.svc.reapCtx, pc, pid, started)
			}
			switch {
			case gone && warned:
				log.Warn("the database backend that outlived pg_terminate_backend has ended; it no longer takes one of the plugin's limits.db_max_conns")
				return
			case gone:
				if endedAt.IsZero() {
					log.Debug("the backend of a connection given up had already ended")
				}
				return
			case ended && endedAt.IsZero():
				endedAt, failures = time.Now(), 0
				count(true)
				log.Info("ended the database backend of a connection given up after its statement's timeout")
			case ended:
				failures = 0
				count(true)
				// Terminated and still there: PostgreSQL does not act on
				// a termination inside some operations (array
				// containment over large arrays, for one). Watch it
				// until it ends.
				if !warned && time.Since(endedAt) >= reapSurvival {
					warned = true
					log.Error("a database backend of a connection given up after its statement's timeout still runs " +
						time.Since(endedAt).Round(time.Second).String() + " after pg_terminate_backend (PostgreSQL does not interrupt some operations, e.g. array containment over large arrays): until it ends it takes one of the plugin's limits.db_max_conns")
				}
			case p.svc.reapCtx.Err() != nil:
				// The runtime stops: said below.
			case failures >= k.reapAttempts-1 && endedAt.IsZero():
				log.WithError(err).Warn("cannot end the database backend of a connection given up after its statement's timeout; it runs on until the server notices the client is gone")
				return
			default:
				// Not counted while it cannot be checked (the server
				// restarting, when it is most likely gone with it). One
				// seen outliving its termination is watched on, however
				// long the checks fail: given up, it would run on
				// uncounted, and the plugin could open connections past
				// its limit (an audit's, with new connections refused
				// for 14 s).
				failures++
				count(false)
				if failures == k.reapAttempts && !endedAt.IsZero() {
					log.WithError(err).Warn("cannot check the database backend that outlived pg_terminate_backend; it is not counted against the plugin's limits.db_max_conns until a check succeeds, tried again each second")
				}
			}
			if p.svc.reapCtx.Err() != nil {
				if !endedAt.IsZero() {
					log.Warn("the runtime stops with a database backend still running that did not act on pg_terminate_backend; it runs on until its operation ends")
				}
				return
			}
			next := time.Second
			if !endedAt.IsZero() {
				next, wait = wait, min(2*wait, time.Second)
			}
			select {
			case <-time.After(next):
			case <-p.svc.reapCtx.Done():
			}
		}
	}()
}

// reapSurvival is how long a backend may outlive pg_terminate_backend
// before reapClosed says so loudly.
const reapSurvival = 5 * time.Second

// survivors is how many backends of the plugin's given-up connections
// still run (PostgreSQL; pgConnector.room).
func (p *PluginDB) survivors() int64 {
	if pc := p.svc.pluginConnector(p.id); pc != nil && pc.survivors != nil {
		return pc.survivors.Load()
	}
	return 0
}

// terminateBackend ends backend pid, started at started, on a connection
// of its own. It connects as the runtime's user first, which a plugin
// cannot keep from logging in; that user may end the backend (a
// superuser, a member of the plugin's role, as a CREATEROLE runtime user
// is made, or of pg_signal_backend), and sees its start time (the same,
// or pg_read_all_stats), unless the operator's setup says otherwise, in
// which case it connects as the plugin's role, which may end its own
// backends, opened by pc as the plugin's connections are (so that a
// password the plugin changed is set back, as for them). That login a
// plugin can break for good: ALTER ROLE CURRENT_USER SET
// local_preload_libraries = 'x', from a DO block, fails every later one
// (FATAL, could not access file); the runtime clears its role's settings
// when it provisions the role (provisionRole), at the next start. gone
// reports that no such backend exists (any more).
func terminateBackend(ctx context.Context, pc *pgConnector, pid uint32, started time.Time) (gone, ended bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	gone, ended, err = terminateAsRuntime(ctx, pc, pid, started)
	if err == nil {
		return gone, ended, nil
	}
	gone, ended, perr := terminateAsPlugin(ctx, pc, pid, started)
	if perr != nil {
		return false, false, fmt.Errorf("as the runtime's user: %w; as the plugin's role: %w", err, perr)
	}
	return gone, ended, nil
}

// terminateAsRuntime is terminateBackend on a connection of the runtime's
// user. It fails, rather than report the backend gone, when that user may
// not see the backend's start time or end it.
func terminateAsRuntime(ctx context.Context, pc *pgConnector, pid uint32, started time.Time) (gone, ended bool, err error) {
	if pc.runtime == nil {
		return false, false, errors.New("no connection of the runtime's")
	}
	conf := pc.runtime.Copy()
	conf.RuntimeParams["application_name"] = "greenroom reap"
	conn, err := pgx.ConnectConfig(ctx, conf)
	if err != nil {
		return false, false, err
	}
	defer conn.Close(context.Background())
	// One statement: the start time is checked where the backend is
	// ended, so that a pid given to a later backend meanwhile is not.
	var hidden bool
	var result *bool
	err = conn.QueryRow(ctx, `SELECT backend_start IS NULL, CASE WHEN backend_start = $2 THEN pg_terminate_backend(pid) END
		FROM pg_stat_activity WHERE pid = $1`, int64(pid), started).Scan(&hidden, &result)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return true, false, nil
	case err != nil:
		return false, false, err
	case hidden:
		return false, false, errors.New("the runtime's user may not see the backend's start time (neither a superuser nor a member of the plugin's role or of pg_read_all_stats)")
	case result == nil:
		return true, false, nil // a later backend with the same pid
	}
	return false, *result, nil
}

// terminateAsPlugin is terminateBackend on a connection of the plugin's
// role.
func terminateAsPlugin(ctx context.Context, pc *pgConnector, pid uint32, started time.Time) (gone, ended bool, err error) {
	// Not through the pool's room for a connection: the backends being
	// reaped may be what takes it.
	dc, err := pc.connect(ctx)
	if err != nil {
		return false, false, err
	}
	defer dc.Close()
	c, ok := dc.(interface{ Conn() *pgx.Conn })
	if !ok {
		return false, false, fmt.Errorf("unexpected driver connection %T", dc)
	}
	err = c.Conn().QueryRow(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2", int64(pid), started).Scan(&ended)
	if errors.Is(err, pgx.ErrNoRows) {
		return true, false, nil
	}
	return false, ended, err
}

// rollbackStray rolls back a transaction left open on conn, and reports
// whether there was one. The ROLLBACK runs even if the call's deadline has
// passed, for at most timeout. A connection that cannot be rolled back is
// discarded, which ends its transaction too.
func rollbackStray(ctx context.Context, conn *sql.Conn, timeout time.Duration) bool {
	open := false
	conn.Raw(func(dc any) error {
		var err error
		switch c := dc.(type) {
		case *sqliteConn:
			if c.txControl {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
				defer cancel()
				open, err = c.rollbackStray(rctx)
			}
		case interface{ Conn() *pgx.Conn }:
			if pc := c.Conn().PgConn(); pc.TxStatus() != 'I' {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
				defer cancel()
				open = true
				err = pc.Exec(rctx, "ROLLBACK").Close()
			}
		}
		if err != nil {
			open = true
			return driver.ErrBadConn
		}
		return nil
	})
	return open
}

// failedWith says whether err is a *hostfuncs.Failure of code.
func failedWith(err error, code int32) bool {
	var f *hostfuncs.Failure
	return errors.As(err, &f) && f.Code == code
}

// fail turns a statement error into what the guest sees.
func (p *PluginDB) fail(ctx, sctx context.Context, lim Limits, st *hostfuncs.Statement, err error) error {
	var f *hostfuncs.Failure
	if errors.As(err, &f) {
		return err
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		// Not a deadline: a task run asked to stop (the replica shuts
		// down) while the statement ran (hostfuncs' stoppable calls).
		return hostfuncs.Failf(hostfuncs.ErrFailed, "the statement was cancelled: the task run was asked to stop (the replica is shutting down)")
	}
	if ctx.Err() != nil {
		return hostfuncs.Failf(hostfuncs.ErrTimeout, "the call's deadline passed during the statement; it was cancelled")
	}
	if d, ok := pluginDeadline(ctx, st); ok && sctx.Err() != nil && !time.Now().Before(d) {
		return hostfuncs.Failf(hostfuncs.ErrTimeout, "the plugin's deadline for this statement passed; it was cancelled")
	}
	err = p.svc.backend.classify(err)
	var busy *busyError
	if errors.As(err, &busy) {
		// Before the statement timeout's own message: waiting for the
		// lock is what took the time (the two end together). Unless
		// SQLite refused the lock without waiting, well before the
		// statement's time was up: a transaction begun deferred in SQL
		// that has read cannot wait for the write lock (the two
		// transactions could wait for each other). (db.Begin's BEGIN
		// IMMEDIATE, failed with the call's context, always waits.)
		if d, ok := sctx.Deadline(); ok && sctx != ctx && time.Until(d) > lim.StatementTimeout/2 {
			return hostfuncs.Failf(hostfuncs.ErrTimeout, "the database is locked: another transaction holds its write lock, and this statement's transaction, begun deferred in SQL (BEGIN) and having read, cannot wait for it (SQLite refuses at once rather than deadlock); begin a transaction that writes with db.Begin or BEGIN IMMEDIATE, which waits for the lock (%v)", busy.err)
		}
		return hostfuncs.Failf(hostfuncs.ErrTimeout, "the database stayed locked for limits.db_statement_timeout of %s: another transaction holds its write lock (SQLite lets one transaction write at a time: keep transactions short, and do not open a second one while the first is open) (%v)", lim.toldStatementTimeout(), busy.err)
	}
	if errors.Is(sctx.Err(), context.DeadlineExceeded) {
		return hostfuncs.Failf(hostfuncs.ErrTimeout, "statement cancelled: it ran past limits.db_statement_timeout of %s", lim.toldStatementTimeout())
	}
	var d *deniedError
	if errors.As(err, &d) {
		return hostfuncs.Failf(hostfuncs.ErrDenied, "%s", d.msg)
	}
	var t *timeoutError
	if errors.As(err, &t) {
		return hostfuncs.Failf(hostfuncs.ErrTimeout, "%s", serverTimeoutMessage(lim.toldStatementTimeout(), t.err))
	}
	var full *fullError
	if errors.As(err, &full) {
		in := ""
		if st.Tx != 0 {
			in = "; the transaction it ran in was rolled back"
		}
		if lim.MaxSize > 0 {
			return dbFull{hostfuncs.Failf(hostfuncs.ErrTooLarge, "the plugin's database is full: it reached limits.db_max_size of %s, or the disk is full (%v); delete data to make room%s", told(lim.MaxSizeSecret, fmt.Sprintf("%d bytes", lim.MaxSize)), full.err, in)}
		}
		return dbFull{hostfuncs.Failf(hostfuncs.ErrFailed, "the disk holding the plugin's database is full (%v)%s", full.err, in)}
	}
	var mem *memoryError
	if errors.As(err, &mem) {
		in := ""
		if st.Tx != 0 {
			in = "; the transaction it ran in was rolled back"
		}
		return dbMemory{hostfuncs.Failf(hostfuncs.ErrTooLarge, "%s (%v); work on smaller values or fewer rows at a time%s", p.memoryBound(), mem.err, in)}
	}
	var big *tooLargeError
	if errors.As(err, &big) {
		return hostfuncs.Failf(hostfuncs.ErrTooLarge, "a value or row exceeds limits.db_max_result of %s (%v); store a value that large in parts no larger than that, and select less at a time (LIMIT, pagination, substr)", lim.toldMaxResult(), big.err)
	}
	if p.svc.cfg.Client == ClientPG && errors.Is(err, driver.ErrBadConn) {
		// pgx's Exec of a statement without arguments (the simple
		// protocol) reports the connection it closed on a notice or an
		// error over the message limit as a bad connection, and no more;
		// a server that ended the session looks the same.
		return hostfuncs.Failf(hostfuncs.ErrFailed, "the database connection was closed while the statement ran, and the driver does not say why: a message from the server (a notice or an error the statement raised, or a row) longer than limits.db_max_result of %d bytes ends the connection, and so does a server that ended the session (restarted, or pg_terminate_backend); the statement may have run", lim.MaxResult)
	}
	if p.svc.cfg.Client == ClientPG && st.Tx != 0 && sessionEndedBy(err) {
		// The driver's text alone (FATAL: terminating connection due to
		// administrator command) does not say that the transaction is
		// gone. The SQLSTATE stays last, where SQLState reads it.
		return hostfuncs.Failf(hostfuncs.ErrFailed, "the database server ended the session (a restart, a failover or pg_terminate_backend), and the transaction with it: it was rolled back, and its later statements and Commit fail; roll it back and start it again: %v", err)
	}
	if p.svc.cfg.Client == ClientSQLite && sqliteMissingArgError(err) {
		return hostfuncs.Failf(hostfuncs.ErrInvalid, "statement refused: %d arguments, not one per placeholder (%v): pass one argument per placeholder", len(st.Args), err)
	}
	if p.svc.cfg.Client == ClientPG && pgArgCountError(err) {
		// As SQLite's checkArgs: the plugin's call, not the database,
		// is wrong.
		return hostfuncs.Failf(hostfuncs.ErrInvalid, "statement refused: %d arguments, not one per placeholder (%v; a $n used twice is one placeholder): pass one argument per placeholder", len(st.Args), err)
	}
	return hostfuncs.Failf(hostfuncs.ErrFailed, "%v", err)
}

// sessionEndedBy reports whether err is the FATAL error of a server
// that ended the session: SQLSTATE 57P01 (admin_shutdown: a shutdown, a
// failover, pg_terminate_backend), 57P02 (crash_shutdown), 57P03
// (cannot_connect_now).
func sessionEndedBy(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Severity == "FATAL" && (pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03")
}

// pgArgCountError reports whether err is pgx's refusal of a statement
// given more or fewer arguments than its placeholders, which it makes
// before sending the statement to run: "expected 1 arguments, got 2"
// (a query), "mismatched param and argument count" (an exec).
func pgArgCountError(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return false
	}
	m := err.Error()
	return m == "mismatched param and argument count" ||
		strings.HasPrefix(m, "expected ") && strings.Contains(m, " arguments, got ")
}

// sqliteMissingArgError reports whether err is the SQLite driver's
// refusal of a statement with a placeholder no argument was given for
// ("missing argument with index 1", "missing named argument \"3\"":
// $1 and $3 without a $2), which it makes before running it.
func sqliteMissingArgError(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return false
	}
	m := err.Error()
	return strings.HasPrefix(m, "missing argument with index ") || strings.HasPrefix(m, "missing named argument ")
}

// memoryBound says what a SQLite statement that ran out of memory ran
// into.
func (p *PluginDB) memoryBound() string {
	if p.svc.cfg.SQLiteMemory == 0 {
		return "SQLite could not allocate the memory the statement needed (database.sqlite_memory is 0, no bound: the machine's memory, or SQLite's largest single allocation of about 2 GiB)"
	}
	return fmt.Sprintf("the statement needed more memory than SQLite may take in this process (database.sqlite_memory of %s, shared by every plugin)", told(p.svc.cfg.SQLiteMemorySecret, strconv.FormatInt(p.svc.cfg.SQLiteMemory, 10)+" bytes"))
}

// statementContext bounds a statement by db_statement_timeout, and by the
// plugin's own deadline for it when that is earlier (a Go plugin's
// QueryContext with a context that has a deadline).
func statementContext(ctx context.Context, lim Limits, st *hostfuncs.Statement) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(lim.StatementTimeout)
	if d, ok := pluginDeadline(ctx, st); ok && d.Before(deadline) {
		deadline = d
	}
	return context.WithDeadline(ctx, deadline)
}

// pluginDeadline returns the plugin's own deadline for st when it is
// earlier than the call's (ctx's). A handler passing its request's context
// passes the call's deadline: a timer of the statement's own for it could
// fire before the call's interrupts the instance, and the guest, told of a
// timeout in time, would answer (200) and its instance be kept. At the
// call's deadline the call's interruption is what happens (504, instance
// discarded), as when the statement ignores it.
func pluginDeadline(ctx context.Context, st *hostfuncs.Statement) (time.Time, bool) {
	if st.Deadline <= 0 {
		return time.Time{}, false
	}
	d := time.Unix(0, st.Deadline)
	if cd, ok := ctx.Deadline(); ok && !d.Before(cd) {
		return time.Time{}, false
	}
	return d, true
}

// Exec implements hostfuncs.Database.
func (p *PluginDB) Exec(ctx context.Context, in *hostfuncs.Instance, st *hostfuncs.Statement) (res hostfuncs.ExecResult, err error) {
	if err := p.check(in, st); err != nil {
		return res, err
	}
	lim := p.limits()
	r, done, err := p.runner(ctx, in, st, lim)
	if err != nil {
		return res, err
	}
	defer func() { err = done(err) }()
	sctx, cancel := statementContext(ctx, lim, st)
	defer cancel()
	if err := p.checkSeveral(ctx, sctx, lim, r, st, false); err != nil {
		return res, err
	}
	sr, err := r.ExecContext(sctx, p.svc.backend.rewrite(st.SQL, len(st.Args)), p.args(st)...)
	if err != nil && staleDescription(err) {
		p.forgetDescriptions()
		if st.Tx == 0 {
			sr, err = r.ExecContext(sctx, p.svc.backend.rewrite(st.SQL, len(st.Args)), p.describedArgs(st)...)
		}
	}
	if err != nil {
		return res, p.fail(ctx, sctx, lim, st, err)
	}
	res.RowsAffected, res.LastInsertID, res.HasLastInsertID = execResult(sr, p.svc.cfg.Client == ClientSQLite)
	return res, nil
}

// maxDescribed is the longest statement whose description the driver
// keeps (PostgreSQL). pgx caches up to 512 descriptions per connection,
// keyed by the statement's whole text: statements of up to 1 MiB each
// held 512 MiB per connection, gigabytes per plugin, for as long as the
// connection lived (an audit's). A longer statement is described each
// time it runs, one round trip more.
const maxDescribed = 4 << 10

// staleDescription tells the error of a statement run with a description
// the connection kept from before its result's columns changed (another
// replica's migration added a column to a table its SELECT * or RETURNING
// * reads): the driver binds one result format for each column it
// described, and the server takes one for all columns or exactly as many
// as the result has, refusing the Bind before the statement runs
// (TestPGStatementAfterItsTableGainedAColumn). The driver has dropped that
// description by then; outside a transaction the statement is run again,
// described anew. In a transaction the failed Bind has aborted it. Either
// way the plugin's other connections forget their descriptions before
// their next use (forgetDescriptions), and every replica's do as soon as
// a replica has applied a migration (pgdescribe.go).
func staleDescription(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "08P01" &&
		strings.HasPrefix(pe.Message, "bind message has ") && strings.Contains(pe.Message, " result formats but query has ")
}

// forgetDescriptions makes all of the plugin's connections forget the
// statement descriptions they cached, after one statement met a stale one:
// the change (another replica's migration whose notification has not come,
// or never will: pgdescribe.go) made the others' as stale, and a
// transaction would fail on each of them in turn.
func (p *PluginDB) forgetDescriptions() {
	if d, ok := p.svc.backend.(describer); ok {
		d.forgetDescriptions(p.id)
	}
}

// describedArgs is what a statement is run with again after
// staleDescription: its arguments, in pgx's mode that describes it first.
func (p *PluginDB) describedArgs(st *hostfuncs.Statement) []any {
	return append([]any{pgx.QueryExecModeDescribeExec}, st.Args...)
}

// args is what a statement is run with: its arguments, preceded on
// PostgreSQL, for a statement longer than maxDescribed, by pgx's mode
// that describes it without caching the description.
func (p *PluginDB) args(st *hostfuncs.Statement) []any {
	if p.svc.cfg.Client != ClientPG || len(st.SQL) <= maxDescribed {
		return st.Args
	}
	return append([]any{pgx.QueryExecModeDescribeExec}, st.Args...)
}

// execResult reads an Exec's rows affected and, when withID, its last
// insert id. A statement that is empty or only a comment has no result
// on SQLite: the driver returns none, and database/sql's Result then
// panics on every method (a nil pointer); it affected no rows.
func execResult(sr sql.Result, withID bool) (affected, id int64, hasID bool) {
	defer func() {
		if recover() != nil {
			affected, id, hasID = 0, 0, false
		}
	}()
	affected, _ = sr.RowsAffected()
	if n, err := sr.LastInsertId(); err == nil && withID {
		id, hasID = n, true
	}
	return affected, id, hasID
}

// Query implements hostfuncs.Database.
func (p *PluginDB) Query(ctx context.Context, in *hostfuncs.Instance, st *hostfuncs.Statement, w *hostfuncs.RowWriter) (err error) {
	if err := p.check(in, st); err != nil {
		return err
	}
	lim := p.limits()
	r, done, err := p.runner(ctx, in, st, lim)
	if err != nil {
		return err
	}
	defer func() { err = done(err) }()
	sctx, cancel := statementContext(ctx, lim, st)
	defer cancel()
	if err := p.checkSeveral(ctx, sctx, lim, r, st, true); err != nil {
		return err
	}
	rows, err := r.QueryContext(sctx, p.svc.backend.rewrite(st.SQL, len(st.Args)), p.args(st)...)
	if err != nil && staleDescription(err) {
		p.forgetDescriptions()
		if st.Tx == 0 {
			rows, err = r.QueryContext(sctx, p.svc.backend.rewrite(st.SQL, len(st.Args)), p.describedArgs(st)...)
		}
	}
	if err != nil {
		return p.fail(ctx, sctx, lim, st, err)
	}
	defer rows.Close()
	cols, err := rows.ColumnTypes()
	if err != nil {
		return p.fail(ctx, sctx, lim, st, err)
	}
	names := make([]string, len(cols))
	types := make([]string, len(cols))
	for i, c := range cols {
		names[i], types[i] = c.Name(), c.DatabaseTypeName()
	}
	w.Reset(lim.MaxResult)
	if err := w.Columns(names, types); err != nil {
		// The names alone (SQLite names a column by its alias or its
		// expression, as long as a statement) pass the limit.
		cancel()
		return hostfuncs.Failf(hostfuncs.ErrTooLarge, "query result exceeds limits.db_max_result of %s with its %d column names and types alone; select fewer columns or give them shorter names (AS)", lim.toldMaxResult(), len(names))
	}
	// Each value goes from the driver straight into the result as it is
	// scanned, its size checked first: a row past the limit stops at the
	// first value that does not fit, and no other copy of it is made.
	dest := make([]any, len(cols))
	for i := range dest {
		dest[i] = valueScanner{w: w,
			times: p.svc.cfg.Client == ClientSQLite && sqliteTimeColumn(types[i]),
			text:  p.svc.cfg.Client == ClientPG && (types[i] == "JSON" || types[i] == "JSONB")}
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			w.DropRow()
			if errors.Is(err, hostfuncs.ErrResultTooLarge) {
				// Stop the statement rather than read the rest of its rows.
				cancel()
				return hostfuncs.Failf(hostfuncs.ErrTooLarge, "query result exceeds limits.db_max_result of %s after %d rows; select fewer rows or columns (LIMIT, pagination)", lim.toldMaxResult(), w.Rows())
			}
			return p.fail(ctx, sctx, lim, st, err)
		}
		w.EndRow()
	}
	if err := rows.Err(); err != nil {
		return p.fail(ctx, sctx, lim, st, err)
	}
	return nil
}

// valueScanner is the scan destination of every column of a query: it
// appends the value to the result. With times, a text value that reads as
// a time is sent as one (see sqliteTimeColumn); with text, bytes are sent
// as text (PostgreSQL's json and jsonb, which pgx gives as bytes, come back
// as their text, as the other types with no Go type here do).
type valueScanner struct {
	w     *hostfuncs.RowWriter
	times bool
	text  bool
}

func (s valueScanner) Scan(src any) error {
	if str, ok := src.(string); ok && s.times {
		if t, ok := parseSQLiteTime(str); ok {
			return s.w.Value(t)
		}
	}
	if b, ok := src.([]byte); ok && s.text {
		return s.w.Value(string(b))
	}
	return s.w.Value(src)
}

// Begin implements hostfuncs.Database. The transaction holds one of the
// plugin's connections until it ends; when the call ends with it still
// open, it is rolled back.
func (p *PluginDB) Begin(ctx context.Context, in *hostfuncs.Instance, opts hostfuncs.TxOptions) (uint32, error) {
	if in.Initializing {
		return 0, hostfuncs.Failf(hostfuncs.ErrInvalid, "the database cannot be used while the plugin initializes")
	}
	switch level := sql.IsolationLevel(opts.Isolation); level {
	case sql.LevelDefault, sql.LevelReadUncommitted, sql.LevelReadCommitted,
		sql.LevelRepeatableRead, sql.LevelSnapshot, sql.LevelSerializable:
	default:
		// Neither database gives the others: pgx refuses them, and
		// SQLite's driver would ignore them (and every other level: each
		// of its transactions is serializable). Refused the same on both.
		return 0, hostfuncs.Failf(hostfuncs.ErrInvalid, "isolation level %s is not supported: a transaction takes Default, Read Uncommitted, Read Committed, Repeatable Read, Snapshot or Serializable", level)
	}
	lim := p.limits()
	conn, err := p.acquire(ctx, lim)
	if err != nil {
		return 0, err
	}
	// The transaction lives in the call's context: database/sql rolls it
	// back by itself if the call is interrupted.
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.IsolationLevel(opts.Isolation), ReadOnly: opts.ReadOnly})
	if err != nil {
		p.reapLost(conn)
		conn.Close()
		return 0, p.fail(ctx, ctx, lim, &hostfuncs.Statement{}, err)
	}
	t := &openTx{conn: conn, tx: tx, readOnly: opts.ReadOnly}
	if p.svc.cfg.Client == ClientPG {
		if bound, fence, ok := idleBound(ctx, in); ok {
			if err := setIdleBound(ctx, t, bound, fence); err != nil {
				tx.Rollback()
				p.reapLost(conn)
				conn.Close()
				return 0, p.fail(ctx, ctx, lim, &hostfuncs.Statement{}, err)
			}
		}
	}
	st := p.txs(in)
	if len(st.open) == 0 {
		in.OnCallEnd(func() { p.endCall(in) })
	}
	return st.add(t), nil
}

// add records t as open and returns its handle: positive (an i32 for the
// guest), and never one still open, past 2^31-1 handles too (handles
// start again at 1 then: one given twice replaced the transaction still
// open under it, whose connection was never given back).
func (st *txState) add(t *openTx) uint32 {
	for {
		st.next++
		if st.next == 0 || st.next > 1<<31-1 {
			st.next = 1
		}
		if st.open[st.next] == nil {
			st.open[st.next] = t
			return st.next
		}
	}
}

// endCall rolls back what the call left open.
func (p *PluginDB) endCall(in *hostfuncs.Instance) {
	st := p.txs(in)
	for id, t := range st.open {
		t.tx.Rollback()
		p.release(t.conn, p.limits().StatementTimeout)
		delete(st.open, id)
		p.warnLeftOpen(in)
	}
}

// warnLeftOpen tells the operator that the call in left a transaction
// open, rolled back as the call ended: by endCall, or by the SDK before
// its goroutines run at the call's end (db_rollback with TxCallEnded).
func (p *PluginDB) warnLeftOpen(in *hostfuncs.Instance) {
	fields := logrus.Fields{}
	if in.RequestID != "" {
		fields["request_id"] = in.RequestID
	}
	if in.Task != "" {
		fields["task"] = in.Task
	}
	if p.log.Logger.IsLevelEnabled(logrus.WarnLevel) && p.svc.allowLine(p.id) {
		p.log.WithFields(fields).Warn("a database transaction was still open when the call ended; rolled back")
	}
}

// end commits or rolls back transaction id; callEnded (a rollback only):
// the guest rolls it back because its call is ending with it open.
func (p *PluginDB) end(ctx context.Context, in *hostfuncs.Instance, id uint32, commit, callEnded bool) error {
	st := p.txs(in)
	t := st.open[id]
	if t == nil {
		if callEnded {
			return hostfuncs.Failf(hostfuncs.ErrNotFound, "transaction %d is not open (db_rollback of handle %#x: bit 31 says the call that began it is ending)", id, id|hostfuncs.TxCallEnded)
		}
		return hostfuncs.Failf(hostfuncs.ErrNotFound, "transaction %d is not open", id)
	}
	delete(st.open, id)
	if callEnded {
		p.warnLeftOpen(in)
	}
	defer p.release(t.conn, p.limits().StatementTimeout)
	if t.aborted != "" {
		if commit {
			return hostfuncs.Failf(hostfuncs.ErrFailed, "commit refused: %s", t.aborted)
		}
		return nil // rolled back already
	}
	var err error
	if commit {
		err = t.tx.Commit()
	} else {
		err = t.tx.Rollback()
	}
	if err != nil {
		lim := p.limits()
		return p.fail(ctx, ctx, lim, &hostfuncs.Statement{}, err)
	}
	return nil
}

// Commit implements hostfuncs.Database.
func (p *PluginDB) Commit(ctx context.Context, in *hostfuncs.Instance, tx uint32) error {
	return p.end(ctx, in, tx, true, false)
}

// Rollback implements hostfuncs.Database.
func (p *PluginDB) Rollback(ctx context.Context, in *hostfuncs.Instance, tx uint32, callEnded bool) error {
	return p.end(ctx, in, tx, false, callEnded)
}

type migrationsKey struct{}

// registered is what one instance's initialization (its start function and
// its initializer) registered so far.
type registered struct {
	files []hostfuncs.MigrationFile
	names map[string]bool
	sql   int // bytes of SQL in files
}

// FixMigrations makes the migrations registered so far, by the version's
// first instance, the ones ApplyMigrations applies: the instances a load
// starts after the first (Limits.Warm, a reload's as many as the old
// version had) register theirs too, and a plugin whose instances differ
// would otherwise have had the last one's applied, as its tasks and
// public routes are the first's.
func (p *PluginDB) FixMigrations() {
	p.mu.Lock()
	p.fixed = true
	p.mu.Unlock()
}

// RegisterMigrations implements hostfuncs.Database. Each instance registers
// the same files in its init; the list of the first instance's init (see
// FixMigrations), or until then of the most recent init to finish, is
// what ApplyMigrations applies. A call registers all its files or, when
// one is refused (a duplicate name, past the limits of hostfuncs: count and
// bytes over all the init's calls), none.
func (p *PluginDB) RegisterMigrations(in *hostfuncs.Instance, files []hostfuncs.MigrationFile) error {
	reg, _ := in.Value(migrationsKey{}).(*registered)
	if reg == nil {
		reg = &registered{names: map[string]bool{}}
		in.SetValue(migrationsKey{}, reg)
		// Over the whole initialization, not one call: a module's start
		// section and its _initialize are calls of their own, and both
		// may register (the start section's files were replaced by
		// _initialize's, and a name in both was not found twice).
		in.OnInitEnd(func() {
			p.mu.Lock()
			if !p.fixed {
				p.migrations = slices.Clone(reg.files)
			}
			p.mu.Unlock()
			in.SetValue(migrationsKey{}, nil)
		})
	}
	if n := len(reg.files) + len(files); n > hostfuncs.MaxMigrations {
		return hostfuncs.Failf(hostfuncs.ErrInvalid, "%d migrations, more than the %d a plugin may register", n, hostfuncs.MaxMigrations)
	}
	total := reg.sql
	names := make(map[string]bool, len(files))
	for _, f := range files {
		if f.Name == "" {
			return hostfuncs.Failf(hostfuncs.ErrInvalid, "a migration has no name")
		}
		if !utf8.ValidString(f.Name) {
			return hostfuncs.Failf(hostfuncs.ErrInvalid, "migration %q: its name is not valid UTF-8", f.Name)
		}
		if r, ok := unprintable(f.Name); ok {
			return hostfuncs.Failf(hostfuncs.ErrInvalid, "migration %q: its name has %U, a control or format character, which could forge lines of greenroom migrate status or reach a terminal as an escape", f.Name, r)
		}
		if reg.names[f.Name] || names[f.Name] {
			return hostfuncs.Failf(hostfuncs.ErrInvalid, "migration %q registered twice", f.Name)
		}
		if i := strings.IndexByte(f.SQL, 0); i >= 0 {
			// As a statement's (check): SQLite would end the file's SQL
			// there, recording as applied a migration it ran only part
			// of; PostgreSQL would fail it.
			return hostfuncs.Failf(hostfuncs.ErrInvalid, "migration %q: its SQL has a NUL byte (at byte %d), which no SQL statement may hold", f.Name, i)
		}
		names[f.Name] = true
		switch total += len(f.SQL); {
		case len(f.SQL) > hostfuncs.MaxMigrationSQL:
			return hostfuncs.Failf(hostfuncs.ErrInvalid, "migration %q: %d bytes of SQL, more than the %d (4 MiB) a migration may have", f.Name, len(f.SQL), hostfuncs.MaxMigrationSQL)
		case total > hostfuncs.MaxMigrationsSQL:
			return hostfuncs.Failf(hostfuncs.ErrInvalid, "migration %q: more than %d bytes of SQL in the plugin's migrations, the most they may total (64 MiB)", f.Name, hostfuncs.MaxMigrationsSQL)
		}
	}
	for name := range names {
		reg.names[name] = true
	}
	reg.files = append(reg.files, files...)
	reg.sql = total
	return nil
}

// unprintable returns the first control (newline, ESC) or format (U+202E,
// which turns the rest of a line around) character of a migration's name.
// A name is shown to operators (greenroom migrate status, logs), so it must
// read as what it is.
func unprintable(name string) (rune, bool) {
	for _, r := range name {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return r, true
		}
	}
	return 0, false
}

// ApplyMigrations applies, in name order, the registered migrations not yet
// recorded for this plugin, each in a transaction on the plugin's own
// connection (so with its privileges only), and records them in the
// runtime's plugin_migrations table. Replicas starting together wait for
// each other on the plugin's lock, so each migration is applied once.
// Limits.MigrationTimeout bounds it all, the wait for the lock included: a
// migration that runs past it is cancelled (on PostgreSQL by the server's
// statement_timeout too) and fails, rather than hold the plugin's load,
// and the runtime's readiness, forever.
func (p *PluginDB) ApplyMigrations(ctx context.Context) error {
	p.mu.Lock()
	files := slices.Clone(p.migrations)
	timeout, timeoutSecret := p.lim.MigrationTimeout, p.lim.MigrationTimeoutSecret
	p.mu.Unlock()
	// On SQLite the plugin's file is reconciled with its records (and
	// gets its markTable) even without migrations to apply.
	if len(files) == 0 && p.svc.cfg.Client != ClientSQLite {
		return nil
	}
	slices.SortStableFunc(files, func(a, b hostfuncs.MigrationFile) int { return strings.Compare(a.Name, b.Name) })
	parent := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	// timedOut turns an error that the timeout caused into one naming it.
	timedOut := func(err error) error {
		var t *timeoutError
		if timeout > 0 && parent.Err() == nil && (ctx.Err() != nil || errors.As(err, &t)) {
			return fmt.Errorf("the plugin's pending migrations ran past limits.migration_timeout of %s and were cancelled (raise it for long migrations): %w", told(timeoutSecret, timeout.String()), err)
		}
		return err
	}
	db := p.svc.DB()
	held, unlock, err := p.svc.backend.lock(ctx, db, "plugin:"+p.id)
	if err != nil {
		err = fmt.Errorf("waiting for the plugin's migration lock (another replica applying them?): %w", timedOut(err))
		if ctx.Err() != nil && parent.Err() == nil || serverWent(err) {
			// Its holder ends, one way or another; or the server ended
			// the runtime's own lock connection (a restart, a failover),
			// which no plugin can do.
			err = &lockWaitError{err}
		}
		return err
	}
	defer unlock()
	if err := p.migrateLocked(held, parent, files, timedOut); err != nil {
		if lost := lockLost(held); lost != nil || heldUp(err) {
			if lost == nil {
				lost = errors.New("this replica was held up: the database server ended the migration's transaction, idle past its bound")
			}
			return &heldUpError{fmt.Errorf("%w: %w", lost, err)}
		}
		return err
	}
	return nil
}

// logUnregistered says, at info level, which applied migrations (applied)
// this version of the plugin does not register (files): during a rolling
// upgrade, or after a rollback, a replica on the version before loads
// against migrations a newer version applied, which are left alone. It
// did so without a word, and an operator rolling back saw nothing say
// that the database was ahead of the version it ran
// (TestOlderVersionNamesMigrationsItDoesNotKnow).
func (p *PluginDB) logUnregistered(applied map[string]string, files []hostfuncs.MigrationFile) {
	known := make(map[string]bool, len(files))
	for _, f := range files {
		known[f.Name] = true
	}
	var names []string
	for name := range applied {
		if !known[name] {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return
	}
	slices.Sort(names)
	n := len(names)
	if n > 5 {
		names = append(names[:5:5], fmt.Sprintf("... (%d more)", n-5))
	}
	p.log.WithFields(logrus.Fields{"count": n, "migrations": strings.Join(names, ", ")}).Info(
		"the plugin's database has applied migrations this version of the plugin does not register (a newer version applied them, or their files were removed): they are left alone; a version that must undo one does it in a new migration")
}

// migrateLocked applies plugin p's pending migrations under its
// cross-replica lock: ApplyMigrations's critical section.
func (p *PluginDB) migrateLocked(ctx, parent context.Context, files []hostfuncs.MigrationFile, timedOut func(error) error) (err error) {
	db := p.svc.DB()
	var recs []pluginMigration
	if err := db.NewSelect().Model(&recs).Where("plugin = ?", p.id).Scan(ctx); err != nil {
		return fmt.Errorf("read applied migrations: %w", err)
	}
	if p.svc.cfg.Client == ClientSQLite {
		if recs, err = p.reconcileSQLite(ctx, recs); err != nil {
			return timedOut(fmt.Errorf("compare the plugin's migration records with its database file: %w", err))
		}
	}
	applied := map[string]string{}
	for _, r := range recs {
		if r.Xact != "" {
			// Recorded, its COMMIT never confirmed: a replica stopped,
			// or lost its connection, while committing it.
			log := p.log.WithFields(logrus.Fields{"migration": r.Name, "transaction": r.Xact})
			if err := p.settleMigration(ctx, &r); err != nil {
				return timedOut(err)
			}
			if r.Xact == "" {
				log.Warn("a migration was recorded but its transaction did not commit (a replica stopped or lost its connection while committing it): applying it again")
				continue
			}
			log.Info("confirmed that a migration whose commit was not confirmed did commit")
		}
		applied[r.Name] = r.SHA256
	}
	var pending []hostfuncs.MigrationFile
	for _, f := range files {
		sum := sha256.Sum256([]byte(f.SQL))
		if old, ok := applied[f.Name]; ok {
			if old != hex.EncodeToString(sum[:]) {
				p.log.WithField("migration", f.Name).Warn("an applied migration has changed since; changes are not applied again (add a new migration instead)")
			}
			continue
		}
		pending = append(pending, f)
	}
	p.logUnregistered(applied, files)
	if len(pending) == 0 {
		return nil
	}
	if p.svc.cfg.SkipMigrations {
		return &pendingError{fmt.Sprintf("%d migrations pending (first: %s) and database.skip_migrations is set: run `greenroom migrate up`", len(pending), pending[0].Name)}
	}
	// The server's start, to tell a migration the server's restart (or a
	// failover) ended from one the plugin's own SQL failed: the first is
	// worth loading again, the second is not.
	var serverStart time.Time
	if p.svc.cfg.Client == ClientPG {
		if err := db.QueryRowContext(ctx, "SELECT pg_catalog.pg_postmaster_start_time()").Scan(&serverStart); err != nil {
			serverStart = time.Time{}
		}
	}
	committed := 0
	defer func() {
		// What committed changed the tables under the descriptions the
		// plugin's connections cached, here and on the other replicas.
		if d, ok := p.svc.backend.(describer); ok && committed > 0 {
			d.migrated(parent, db, p.id)
		}
	}()
	for _, f := range pending {
		start := time.Now()
		if err := p.applyOne(ctx, f); err != nil {
			if !serverStart.IsZero() && parent.Err() == nil && p.serverRestarted(parent, serverStart) {
				return &serverGoneError{fmt.Errorf("migration %s failed: the database server restarted or failed over while it ran (it is applied again when the plugin's load is retried): %w", f.Name, err)}
			}
			// The line comes first, whatever the error says after it.
			at := ""
			if le, ok := err.(*lineError); ok {
				at, err = fmt.Sprintf("line %d: ", le.line), le.err
			}
			var full *fullError
			var mem *memoryError
			if lim := p.limits(); lim.MaxSize > 0 && errors.As(p.svc.backend.classify(err), &full) {
				err = fmt.Errorf("the plugin's database reached limits.db_max_size of %s, or the disk is full: %w", told(lim.MaxSizeSecret, fmt.Sprintf("%d bytes", lim.MaxSize)), err)
			} else if errors.As(p.svc.backend.classify(err), &mem) {
				err = fmt.Errorf("%s: %w", p.memoryBound(), err)
			}
			return fmt.Errorf("migration %s failed: %s%w", f.Name, at, timedOut(err))
		}
		committed++
		p.svc.countApplied(p.id, 1)
		p.log.WithFields(logrus.Fields{"migration": f.Name, "took": time.Since(start).Round(time.Millisecond).String()}).Info("applied plugin migration")
	}
	return nil
}

// serverRestarted reports whether the database server is not the one that
// was running at since (pg_postmaster_start_time): it restarted, another
// took over, or none answers now. It asks on a connection of its own: a
// pooled one may be a session of the old server that its shutdown has
// not ended yet (the server ends its sessions one after another, and
// the migration's may be the first), which answered with the old start,
// and the migration a restart ended failed for good (a flaky
// TestPGRestartDuringMigrationRetries on a busy host); a server shutting
// down refuses every new connection from the start.
func (p *PluginDB) serverRestarted(ctx context.Context, since time.Time) bool {
	b, ok := p.svc.backend.(*pgBackend)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	now, err := b.startTime(ctx)
	switch {
	case err == nil:
		return !now.Equal(since)
	case Transient(err) || ctx.Err() != nil:
		return true // no server answers
	}
	return false
}

// txControlRefused is the error of a migration that would end or begin a
// transaction with cmd: the rest of it would run outside the migration's
// transaction, and a failure after would leave it half applied.
func txControlRefused(cmd string) error {
	return fmt.Errorf("statement refused: %s in a migration: each migration runs in a transaction of its own, which it may not end or begin (savepoints are fine)", cmd)
}

// errorLine is the line of sql at which PostgreSQL's error err points
// (its position, in characters from 1, into the statement as sent: the
// whole migration file), or 0 when it points nowhere. A migration of many
// statements otherwise said only what failed, not where.
func errorLine(sql string, err error) int {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Position <= 0 {
		return 0
	}
	line, n := 1, int(pe.Position)-1
	for _, r := range sql {
		if n == 0 {
			break
		}
		n--
		if r == '\n' {
			line++
		}
	}
	return line
}

// lineError is a migration's error on a line of its file.
type lineError struct {
	line int
	err  error
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }
func (e *lineError) Unwrap() error { return e.err }

// execMigration runs the SQL q of a migration file in tx, begun on conn,
// and returns the line of q its error is on, 0 when that is not known.
// PostgreSQL is sent the file whole (pgExecCounting), and says where an
// error is when it points into the file (errorLine: a syntax error, a bad
// literal); one that points nowhere (a constraint violated, an error
// raised in a DO block or a function, a division by zero, a statement
// timeout) is on the line the failing statement begins: the statement
// after those the server completed, as pgStatementStarts reads the file
// (not known when the client gave up before the server's error came).
// SQLite says only what failed, not in which of the file's statements:
// there the file is run one statement at a time, split where SQLite's own
// reading ends each (secondStatement, which follows sqlite3_complete: a
// statement ends at a semicolon outside strings, identifiers and
// comments, a CREATE TRIGGER at its body's "; END;"), as the driver
// itself runs a file of several statements, one after the other, and a
// failure is on the line its statement begins.
func (p *PluginDB) execMigration(ctx context.Context, conn *sql.Conn, tx *sql.Tx, q string) (line int, err error) {
	if p.svc.cfg.Client != ClientSQLite {
		done, backslashes, err := pgExecCounting(ctx, conn, tx, q)
		if err == nil {
			return 0, nil
		}
		if line := errorLine(q, err); line > 0 {
			return line, err
		}
		// Only the server's own error comes after every result of the
		// statements before it: an error of the client's (it gave up at
		// the deadline, the connection was lost) may come before the
		// server's last results were read.
		var pe *pgconn.PgError
		if starts := pgStatementStarts(q, backslashes); errors.As(err, &pe) && done >= 0 && done < len(starts) {
			return 1 + strings.Count(q[:starts[done]], "\n"), err
		}
		return 0, err
	}
	for at := 0; at < len(q); {
		n := secondStatement(q[at:])
		if n < 0 {
			n = len(q) - at
		}
		stmt := q[at : at+n]
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return 1 + strings.Count(q[:at+skipBlank(stmt, 0)], "\n"), err
		}
		at += n
	}
	return 0, nil
}

// errMigrationLeftTx is a PostgreSQL migration's error when the server's
// transaction was no longer open after the file ran: a statement ended
// it, and what ran after that may have been committed on its own.
var errMigrationLeftTx = errors.New("the migration ended the transaction it runs in (what ran after that may have been committed on its own): it is not recorded as applied; a migration may not commit or roll back")

// pgExecCounting runs q, several statements, in tx on conn, a PostgreSQL
// connection, as tx.ExecContext does (the simple protocol: the server
// parses q whole, then runs its statements one after the other, all in
// tx), and returns how many of them the server completed before an error,
// and whether the session reads a backslash in a literal as an escape
// (standard_conforming_strings off), as q was read. done is -1 when q
// could not be run that way; it then ran through tx. A file after which
// the server's transaction is no longer open fails (errMigrationLeftTx).
func pgExecCounting(ctx context.Context, conn *sql.Conn, tx *sql.Tx, q string) (done int, backslashes bool, err error) {
	done = -1
	ran := false
	conn.Raw(func(dc any) error {
		c, ok := dc.(interface{ Conn() *pgx.Conn })
		if !ok {
			return nil
		}
		ran = true
		pc := c.Conn().PgConn()
		if pc.IsClosed() {
			err = driver.ErrBadConn
			return nil
		}
		backslashes = pc.ParameterStatus("standard_conforming_strings") != "on"
		done = 0
		mrr := pc.Exec(ctx, q)
		for mrr.NextResult() {
			if _, rerr := mrr.ResultReader().Close(); rerr == nil {
				done++
			}
		}
		// As pgx's stdlib driver: an error before q was sent is a bad
		// connection.
		if err = mrr.Close(); err != nil && pgconn.SafeToRetry(err) {
			err = driver.ErrBadConn
		}
		// The filter refuses what would end the migration's transaction
		// (transactionControl); should anything get past it, the file
		// must not be recorded as applied in a transaction it left.
		if err == nil && pc.TxStatus() != 'T' {
			err = errMigrationLeftTx
		}
		return nil
	})
	if !ran {
		_, err = tx.ExecContext(ctx, q)
	}
	return done, backslashes, err
}

// migrationConn is a connection of the plugin's pool for a migration,
// checked first on PostgreSQL: pgx checks a pooled connection it hands
// out again only when it was idle for over a second, and the server's
// restart or a failover ends the others too. A migration on one the
// server had ended failed (57P01) for good, as a migration's own error:
// it ran on the server that was up by the time the runtime noted its
// start, not across a restart (TestPGReloadRightAfterTheServerEndedTheSessions).
// Each connection found ended is discarded; the pool then opens a new one.
func (p *PluginDB) migrationConn(ctx context.Context) (*sql.Conn, error) {
	for tries := 0; ; tries++ {
		conn, err := p.db.Conn(ctx)
		if err != nil || p.svc.cfg.Client != ClientPG {
			return conn, err
		}
		err = conn.PingContext(ctx)
		if err == nil {
			return conn, nil
		}
		conn.Close() // a failed ping has closed it: the pool drops it
		if ctx.Err() != nil || tries >= p.limits().MaxConns {
			return nil, err
		}
	}
}

func (p *PluginDB) applyOne(ctx context.Context, f hostfuncs.MigrationFile) error {
	// The same filter as the plugin's statements.
	const where = ", in migrations either"
	if p.svc.cfg.Client == ClientPG {
		if cmd := deniedCommand(f.SQL, false); cmd != "" {
			return fmt.Errorf("statement refused: %s", refusal(cmd, where))
		}
		if cmd := transactionControl(f.SQL); cmd != "" {
			return txControlRefused(cmd)
		}
	}
	conn, err := p.migrationConn(ctx)
	if err != nil {
		return err
	}
	// The connection is discarded rather than put back in the pool: what
	// the migration set for its session (SET, PRAGMA) outlives its
	// transaction. One the driver gave up at migration_timeout (a
	// statement, or the Commit running deferred triggers, that caught the
	// server's cancel) may have left its backend running: it is reaped,
	// as a plugin statement's is, or each load would leave one more.
	defer func() {
		p.reapLost(conn)
		conn.Raw(func(any) error { return driver.ErrBadConn })
		conn.Close()
	}()
	if cmd := p.checkSession(conn, f.SQL); cmd != "" {
		return fmt.Errorf("statement refused: %s", refusal(cmd, where))
	}
	if p.svc.cfg.Client == ClientSQLite {
		// A pooled connection waits for the write lock (held by the
		// plugin's running version during a reload) only its
		// db_statement_timeout; a migration waits as long as ctx allows.
		// Its values and columns are bounded as the plugin's statements
		// are (db_max_result, 100 columns, no attached database).
		busy := 10 * time.Second
		if deadline, ok := ctx.Deadline(); ok {
			busy = time.Until(deadline)
		}
		if err := limitConn(ctx, conn, p.limits().MaxResult, p.limits().MaxSize, busy); err != nil {
			return err
		}
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if p.svc.cfg.Client == ClientSQLite {
		// The migration may not end the transaction it runs in (a COMMIT
		// would keep half of it, unrecorded) nor begin another.
		setMigrating(conn, true)
		defer setMigrating(conn, false)
	}
	if p.svc.cfg.Client == ClientPG {
		// Migrations may take longer than a request's statement, as long
		// as ctx allows (limits.migration_timeout): the server stops the
		// migration then too, whatever became of the client.
		ms := int64(0)
		if deadline, ok := ctx.Deadline(); ok {
			ms = max(time.Until(deadline).Milliseconds()+1, 1)
		}
		if _, err := tx.ExecContext(ctx, "SET LOCAL statement_timeout = "+strconv.FormatInt(ms, 10)); err != nil {
			return err
		}
		// The runtime leaves the transaction idle only for a moment
		// (while it records the migration): idle for longer, this
		// replica is held up (stopped, a paused VM, cut off), and the
		// locks the migration took would hold up every other replica's
		// use of those tables for as long as that lasts.
		if _, err := tx.ExecContext(ctx, "SET LOCAL idle_in_transaction_session_timeout = "+strconv.FormatInt(p.svc.knobs().migrationIdleTimeout.Milliseconds(), 10)); err != nil {
			return err
		}
	}
	// A file with no SQL (an empty placeholder) is recorded, nothing run.
	if strings.TrimSpace(f.SQL) != "" {
		if line, err := p.execMigration(ctx, conn, tx, f.SQL); err != nil {
			if hook := p.svc.knobs().migrationFailed; hook != nil {
				hook()
			}
			// SQLite's authorizer refused a BEGIN, COMMIT or ROLLBACK
			// as it was compiled (PostgreSQL's are refused above,
			// before the file runs): say so rather than "not authorized".
			if cmd := refusedTx(conn); cmd != "" {
				return txControlRefused(cmd)
			}
			if line > 0 {
				return &lineError{line, nameRefusal(conn, p.svc.backend.classify(err))}
			}
			return nameRefusal(conn, p.svc.backend.classify(err))
		}
	}
	sum := sha256.Sum256([]byte(f.SQL))
	rec := &pluginMigration{Plugin: p.id, Name: f.Name, SHA256: hex.EncodeToString(sum[:]), AppliedAt: time.Now().UTC()}
	if p.svc.cfg.Client == ClientPG {
		// The transaction's id, to ask the server later whether it
		// committed (qualified: the migration may have made functions
		// and types of these names in the plugin's schema).
		if err := tx.QueryRowContext(ctx, "SELECT pg_catalog.pg_current_xact_id()::pg_catalog.text").Scan(&rec.Xact); err != nil {
			return fmt.Errorf("read the migration's transaction id: %w", p.svc.backend.classify(err))
		}
	}
	// Recorded (on the runtime's connection: the plugin's role cannot
	// write there) before the plugin's transaction commits, with that
	// transaction's id until its COMMIT is confirmed. A replica that stops
	// in between, or a COMMIT whose outcome is lost with its connection,
	// leaves the row for the next load to settle (settleMigration): on
	// PostgreSQL neither a migration lost nor one applied twice. On SQLite
	// the row is in another file: the migration's transaction marks it in
	// the plugin's own file too (markApplied), which the next load
	// compares the rows with (reconcileSQLite).
	if p.svc.cfg.Client == ClientSQLite {
		if err := markApplied(ctx, conn, rec); err != nil {
			return nameRefusal(conn, p.svc.backend.classify(err))
		}
	}
	if _, err := p.svc.DB().NewInsert().Model(rec).Exec(ctx); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	if hook := p.svc.knobs().migrationCommit; hook != nil {
		if err := hook("before"); err != nil {
			return err // as if the process stopped: the row stays
		}
	}
	if err := tx.Commit(); err != nil {
		if rec.Xact == "" {
			p.svc.DB().NewDelete().Model(rec).WherePK().Exec(context.Background())
			return err
		}
		// The connection may have been lost after the server committed:
		// the server says which it was.
		// (A COMMIT given up at migration_timeout leaves ctx done: the
		// question gets a few seconds of its own.)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if serr := p.settleMigration(sctx, rec); serr != nil {
			return fmt.Errorf("%w; and its outcome: %w", err, serr)
		}
		if rec.Xact != "" {
			return nil // it did commit
		}
		return err
	}
	if hook := p.svc.knobs().migrationCommit; hook != nil {
		if err := hook("after"); err != nil {
			return err
		}
	}
	if rec.Xact != "" {
		// Should this fail, the row keeps the id, and the next load
		// finds the transaction committed.
		if _, err := p.svc.DB().NewUpdate().Model(rec).Set("xact = NULL").WherePK().Where("xact = ?", rec.Xact).Exec(ctx); err != nil {
			p.log.WithField("migration", rec.Name).WithError(err).Warn("could not confirm an applied migration's commit; the plugin's next load will")
		}
	}
	return nil
}

// settleMigration decides a recorded migration whose transaction's COMMIT
// was not confirmed (rec.Xact), asking the server for that transaction's
// status, waiting while it is still in progress (a stopped replica's
// backend may still run its deferred triggers) as long as ctx allows.
// Committed: the row is confirmed and rec.Xact kept. Aborted: the row is
// deleted and rec.Xact cleared (the migration is to be applied again).
func (p *PluginDB) settleMigration(ctx context.Context, rec *pluginMigration) error {
	db := p.svc.DB()
	for {
		var status sql.NullString
		err := db.QueryRowContext(ctx, "SELECT pg_catalog.pg_xact_status(?::pg_catalog.xid8)", rec.Xact).Scan(&status)
		switch {
		case err != nil:
			return fmt.Errorf("ask the server whether migration %s's transaction %s committed: %w", rec.Name, rec.Xact, err)
		case !status.Valid:
			return fmt.Errorf("cannot tell whether migration %s committed: the server no longer remembers its transaction %s; check the plugin's schema, then delete the migration's row from greenroom.plugin_migrations to apply it again, or set its xact to NULL if it is applied", rec.Name, rec.Xact)
		case status.String == "committed":
			if _, err := db.NewUpdate().Model(rec).Set("xact = NULL").WherePK().Where("xact = ?", rec.Xact).Exec(ctx); err != nil {
				return fmt.Errorf("confirm migration %s: %w", rec.Name, err)
			}
			return nil
		case status.String == "aborted":
			// Only the row this transaction wrote: a replica held up
			// between recording the migration and committing it finds,
			// when it goes on, that its transaction was aborted, and
			// meanwhile another replica may have deleted its row and
			// applied and recorded the migration again. Deleted by name,
			// that record went: the migration stayed applied,
			// unrecorded, and every later load applied it again
			// (TestPGHeldUpMigrationLeavesTheTakeoversRecord).
			if _, err := db.NewDelete().Model(rec).WherePK().Where("xact = ?", rec.Xact).Exec(ctx); err != nil {
				return fmt.Errorf("forget migration %s, whose transaction did not commit: %w", rec.Name, err)
			}
			rec.Xact = ""
			return nil
		}
		select { // in progress
		case <-ctx.Done():
			return fmt.Errorf("migration %s's transaction %s is still committing: %w", rec.Name, rec.Xact, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// serverTimeoutMessage is the message of a statement the server cancelled
// at its statement_timeout: the server's SQLSTATE (57014) stays at the
// end, where greenroom.SQLState reads it.
func serverTimeoutMessage(timeout string, err error) string {
	msg, state := err.Error(), ""
	if i := strings.LastIndex(msg, " (SQLSTATE "); i >= 0 && strings.HasSuffix(msg, ")") {
		msg, state = msg[:i], msg[i:]
	}
	return fmt.Sprintf("statement cancelled: it ran past limits.db_statement_timeout of %s (%s)%s", timeout, msg, state)
}
