package hostfuncs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// The database capability (docs/abi.md, "Database"; docs/database.md). The
// functions here decode the guest's request, call the plugin's Database
// provider and encode its answer. They never see which database is behind
// it.

// CapabilityDatabase is the grant the database functions belong to.
const CapabilityDatabase = "database"

// Database is one plugin's database as the database host functions use it.
// The runtime implements it per plugin. Methods take the calling instance so
// that the provider can keep per-instance state there (open transactions)
// and clean it up when the call ends (Instance.OnCallEnd).
//
// Errors may be *Failure values to choose the ABI error code; any other
// error is reported as ErrFailed.
type Database interface {
	// Exec runs a statement that returns no rows.
	Exec(ctx context.Context, in *Instance, st *Statement) (ExecResult, error)
	// Query runs a statement and writes its rows to w.
	Query(ctx context.Context, in *Instance, st *Statement, w *RowWriter) error
	// Begin starts a transaction and returns its handle, never 0.
	Begin(ctx context.Context, in *Instance, opts TxOptions) (uint32, error)
	// Commit and Rollback end the transaction tx. callEnded: the guest
	// rolls tx back because the call that began it ended with it still
	// open (db_rollback's TxCallEnded), as the runtime rolls back itself
	// what a call leaves open; the provider says so as it does then.
	Commit(ctx context.Context, in *Instance, tx uint32) error
	Rollback(ctx context.Context, in *Instance, tx uint32, callEnded bool) error
	// RegisterMigrations records the migrations the guest registers while
	// it initializes (Instance.Initializing is true).
	RegisterMigrations(in *Instance, files []MigrationFile) error
}

// TxOptions are the options of db_begin.
type TxOptions struct {
	// Isolation is a database/sql IsolationLevel (0: the default).
	Isolation int
	ReadOnly  bool
}

// Failure is an error with the ABI error code a host function returns for
// it. Providers return one to choose the code; its message goes to the
// guest.
type Failure struct {
	Code int32
	Msg  string
}

func (f *Failure) Error() string { return f.Msg }

// Failf returns a *Failure with code and a formatted message.
func Failf(code int32, format string, args ...any) error {
	return &Failure{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// failWith leaves err's message in the result slot and returns its code.
func (in *Instance) failWith(err error) int32 {
	var f *Failure
	if errors.As(err, &f) {
		return in.Fail(f.Code, "%s", f.Msg)
	}
	return in.Fail(ErrFailed, "%s", err.Error())
}

// database returns the plugin's database, or fails the call with ErrDenied
// naming the capability.
func database(in *Instance) (Database, int32) {
	db, err := in.Host.Database()
	if err != nil {
		return nil, in.Fail(ErrDenied, "%s", err.Error())
	}
	return db, 0
}

// db_exec(req_ptr, req_len i32) -> i32
//
// Runs a statement that returns no rows. The request is a statement
// (u32 tx, bytes sql, u32 argc, value × argc). Returns the length of the
// exec result in the result slot (i64 rows affected, i64 last insert id,
// u8 has last insert id), or ErrDenied, ErrInvalid (malformed request,
// unknown transaction), ErrFailed (the database refused the statement),
// ErrTimeout (db_statement_timeout or the call's deadline) or ErrTooLarge
// (the arguments, encoded, pass db_max_result: refused before they are
// copied; or, on SQLite, a value written does). Traps if the request is
// outside guest memory.
func dbExec(ctx context.Context, mod api.Module, stack []uint64) {
	const fn = "db_exec"
	in := instanceFrom(ctx, fn)
	req := guestBytes(mod, fn, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	db, code := database(in)
	if db == nil {
		stack[0] = api.EncodeI32(code)
		return
	}
	st, err := decodeStatementOf(db, req)
	if err != nil {
		stack[0] = api.EncodeI32(statementFailure(in, fn, err))
		return
	}
	sctx, release := in.Cancel.stoppable(ctx)
	res, err := db.Exec(sctx, in, &st)
	release()
	if err != nil {
		stack[0] = api.EncodeI32(in.failWith(err))
		return
	}
	in.result = AppendExecResult(in.result[:0], res)
	stack[0] = api.EncodeI32(int32(len(in.result)))
}

// redacted is config.Redacted (which this package does not import): a
// limit from the environment, a secret, as a message names it.
const redacted = "[REDACTED]"

// decodeStatementOf decodes req, read in guest memory, with the arguments
// bounded by db's db_max_result (MaxResult), so that a statement whose
// arguments pass it is refused before they are copied onto the host's
// heap: otherwise only the guest's limits.memory bounded that copy, at
// each call of each instance.
func decodeStatementOf(db Database, req []byte) (Statement, error) {
	maxArgs := 0
	if m, ok := db.(interface{ MaxResult() int }); ok {
		maxArgs = m.MaxResult()
	}
	// From the environment, the limit is not told decoded.
	m, ok := db.(interface{ MaxResultSecret() bool })
	return decodeStatement(req, maxArgs, ok && m.MaxResultSecret())
}

// statementFailure fails the call for DecodeStatement's err: ErrTooLarge
// for arguments past their bound, ErrInvalid for anything else.
func statementFailure(in *Instance, fn string, err error) int32 {
	if errors.Is(err, ErrArgsTooLarge) {
		return in.Fail(ErrTooLarge, "%s: %s", fn, strings.TrimPrefix(err.Error(), ErrArgsTooLarge.Error()+": "))
	}
	return in.Fail(ErrInvalid, "%s: %v", fn, err)
}

type rowWriterKey struct{}

// migrationsUse is what db_migrations registered so far in the init in
// progress, so that a call past the bounds over the init's calls is
// refused before its files are copied (the runtime checks them again).
type migrationsUse struct{ files, sql int }

type migrationsUseKey struct{}

// db_query(req_ptr, req_len i32) -> i32
//
// Runs a statement and returns its rows: the request is encoded as for
// db_exec; the result slot gets the columns and every row (u32 ncols,
// (bytes name, bytes type) × ncols, u32 nrows, value × ncols × nrows) and
// the function returns its length. Errors as db_exec; ErrTooLarge when the
// result passes the plugin's db_max_result. Traps if the request is outside
// guest memory.
func dbQuery(ctx context.Context, mod api.Module, stack []uint64) {
	const fn = "db_query"
	in := instanceFrom(ctx, fn)
	req := guestBytes(mod, fn, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	db, code := database(in)
	if db == nil {
		stack[0] = api.EncodeI32(code)
		return
	}
	st, err := decodeStatementOf(db, req)
	if err != nil {
		stack[0] = api.EncodeI32(statementFailure(in, fn, err))
		return
	}
	w, _ := in.Value(rowWriterKey{}).(*RowWriter)
	if w == nil {
		w = &RowWriter{}
		in.SetValue(rowWriterKey{}, w)
	}
	w.Reset(0)
	sctx, release := in.Cancel.stoppable(ctx)
	err = db.Query(sctx, in, &st, w)
	release()
	if err != nil {
		stack[0] = api.EncodeI32(in.failWith(err))
		return
	}
	// The writer's buffer becomes the result slot; the slot's old buffer
	// becomes the writer's, so neither is copied nor reallocated.
	b := w.Bytes()
	if len(b) > math.MaxInt32 {
		// The length is returned as an i32 (config caps db_max_result
		// below this).
		stack[0] = api.EncodeI32(in.Fail(ErrTooLarge, "%s: a result of %d bytes cannot be returned", fn, len(b)))
		return
	}
	w.buf, in.result = in.result[:0], b
	stack[0] = api.EncodeI32(int32(len(b)))
}

// db_begin(flags i32) -> i32
//
// Starts a transaction. flags: bit 0 read-only; bits 8-15 the isolation
// level (database/sql's IsolationLevel numbering, 0 for the database's
// default). Returns a positive transaction handle for db_exec, db_query,
// db_commit and db_rollback, or ErrDenied, ErrInvalid, ErrFailed or
// ErrTimeout. A transaction still open when the call (request or task) ends
// is rolled back by the host.
func dbBegin(ctx context.Context, mod api.Module, stack []uint64) {
	in := instanceFrom(ctx, "db_begin")
	db, code := database(in)
	if db == nil {
		stack[0] = api.EncodeI32(code)
		return
	}
	flags := api.DecodeU32(stack[0])
	if flags&^0xff01 != 0 {
		stack[0] = api.EncodeI32(in.Fail(ErrInvalid, "db_begin: unknown flags %#x", flags))
		return
	}
	tx, err := db.Begin(ctx, in, TxOptions{ReadOnly: flags&1 != 0, Isolation: int(flags >> 8 & 0xff)})
	if err != nil {
		stack[0] = api.EncodeI32(in.failWith(err))
		return
	}
	stack[0] = api.EncodeI32(int32(tx))
}

// db_max_conns() -> i32
//
// Returns how many connections the plugin's pool holds at most
// (limits.db_max_conns), or a negative error code: ErrDenied without the
// database capability. The SDK counts the connections its goroutines hold
// against it, so that goroutines wanting a connection wait in the guest,
// where the ones holding connections can run, instead of in a host call,
// which holds the guest's only thread (docs/abi.md).
func dbMaxConns(ctx context.Context, mod api.Module, stack []uint64) {
	in := instanceFrom(ctx, "db_max_conns")
	db, code := database(in)
	if db == nil {
		stack[0] = api.EncodeI32(code)
		return
	}
	n := int32(0)
	if m, ok := db.(interface{ MaxConns() int }); ok {
		n = int32(min(m.MaxConns(), 1<<31-1))
	}
	stack[0] = api.EncodeI32(n)
}

// db_statement_timeout() -> i32
//
// Returns the plugin's limits.db_statement_timeout in milliseconds (at
// most 2^31-1), or a negative error code: ErrDenied without the database
// capability. The SDK bounds its own wait for one of the db_max_conns
// connections by it, as the runtime bounds a host call's wait: a
// goroutine whose own instance holds every connection in transactions
// gets ErrTimeout instead of waiting for ever.
func dbStatementTimeout(ctx context.Context, mod api.Module, stack []uint64) {
	in := instanceFrom(ctx, "db_statement_timeout")
	db, code := database(in)
	if db == nil {
		stack[0] = api.EncodeI32(code)
		return
	}
	ms := int64(0)
	if m, ok := db.(interface{ StatementTimeout() time.Duration }); ok {
		if d := m.StatementTimeout(); d > 0 {
			ms = min(max(d.Milliseconds(), 1), 1<<31-1) // under 1 ms is 1, not "unknown"
		}
	}
	stack[0] = api.EncodeI32(int32(ms))
}

// db_commit(tx i32) -> i32
//
// Commits transaction tx. Returns 0, or ErrDenied, ErrNotFound (no such open
// transaction), ErrFailed (the commit failed; the transaction is gone) or
// ErrTimeout.
func dbCommit(ctx context.Context, mod api.Module, stack []uint64) {
	in := instanceFrom(ctx, "db_commit")
	db, code := database(in)
	if db == nil {
		stack[0] = api.EncodeI32(code)
		return
	}
	if err := db.Commit(ctx, in, api.DecodeU32(stack[0])); err != nil {
		stack[0] = api.EncodeI32(in.failWith(err))
		return
	}
	stack[0] = 0
}

// TxCallEnded is bit 31 of db_rollback's handle: the guest rolls the
// transaction back because the call that began it is ending with it still
// open (the SDK does, before the goroutines the call leaves run), and the
// host logs the warning it logs for one it rolls back itself at the
// call's end. No handle has it (they are at most 2^31-1): a guest that
// never sets it is served as before.
const TxCallEnded = 1 << 31

// db_rollback(tx i32) -> i32
//
// Rolls transaction tx back; tx with bit 31 set (TxCallEnded) is the
// transaction tx&^TxCallEnded, left open by the call that is ending.
// Returns 0, or ErrDenied, ErrNotFound or ErrFailed.
func dbRollback(ctx context.Context, mod api.Module, stack []uint64) {
	in := instanceFrom(ctx, "db_rollback")
	db, code := database(in)
	if db == nil {
		stack[0] = api.EncodeI32(code)
		return
	}
	tx := api.DecodeU32(stack[0])
	if err := db.Rollback(ctx, in, tx&^TxCallEnded, tx&TxCallEnded != 0); err != nil {
		stack[0] = api.EncodeI32(in.failWith(err))
		return
	}
	stack[0] = 0
}

// db_migrations(buf_ptr, buf_len i32) -> i32
//
// Registers the guest's migrations (u32 count, (bytes name, bytes sql) ×
// count). Accepted only while the guest initializes; the runtime applies
// the new ones in the plugin's database before the plugin serves. Returns
// 0, or ErrDenied, ErrInvalid (malformed, a duplicate name, called after
// init, past MaxMigrations, MaxMigrationSQL or MaxMigrationsSQL over the
// init's calls, checked before any file is copied; a refused call
// registers none of its files). Traps if the buffer is outside guest
// memory.
func dbMigrations(ctx context.Context, mod api.Module, stack []uint64) {
	const fn = "db_migrations"
	in := instanceFrom(ctx, fn)
	buf := guestBytes(mod, fn, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	db, code := database(in)
	if db == nil {
		stack[0] = api.EncodeI32(code)
		return
	}
	if !in.Initializing {
		stack[0] = api.EncodeI32(in.Fail(ErrInvalid, "%s: migrations can only be registered while the plugin initializes (call greenroom.Migrations from init)", fn))
		return
	}
	reg, _ := in.Value(migrationsUseKey{}).(*migrationsUse)
	if reg == nil {
		reg = &migrationsUse{}
		in.SetValue(migrationsUseKey{}, reg)
		in.OnInitEnd(func() { in.SetValue(migrationsUseKey{}, nil) })
	}
	files, err := DecodeMigrations(buf, reg.files, reg.sql)
	if err != nil {
		stack[0] = api.EncodeI32(in.Fail(ErrInvalid, "%s: %v", fn, err))
		return
	}
	if err := db.RegisterMigrations(in, files); err != nil {
		stack[0] = api.EncodeI32(in.failWith(err))
		return
	}
	for _, f := range files {
		reg.files++
		reg.sql += len(f.SQL)
	}
	stack[0] = 0
}
