package greenroom

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	sqlite "github.com/greenroom-dev/greenroom/guest-sdk/greenroom/internal/sqlitetest"
)

// fakeDB answers every query with one fixed result and records requests.
type fakeDB struct {
	reqs   [][]byte
	flags  []uint32 // of each begin
	result string
	err    error
}

func (f *fakeDB) exec(req []byte) (string, error) {
	f.reqs = append(f.reqs, append([]byte(nil), req...))
	var b []byte
	b = binary.LittleEndian.AppendUint64(b, 3)
	b = binary.LittleEndian.AppendUint64(b, 42)
	return string(append(b, 1)), f.err
}
func (f *fakeDB) query(req []byte) (string, error) {
	f.reqs = append(f.reqs, append([]byte(nil), req...))
	return f.result, f.err
}
func (f *fakeDB) begin(flags uint32) (uint32, error) {
	f.flags = append(f.flags, flags)
	return 9, f.err
}
func (f *fakeDB) commit(uint32) error     { return f.err }
func (f *fakeDB) rollback(uint32) error   { return f.err }
func (f *fakeDB) migrations([]byte) error { return f.err }

func TestDriverEncodesAndDecodes(t *testing.T) {
	ts := time.Date(2026, 11, 29, 1, 2, 3, 4, time.UTC)
	// One row of every type, in the host's encoding (docs/abi.md).
	var res []byte
	res = binary.LittleEndian.AppendUint32(res, 7)
	for _, c := range []string{"n", "i", "f", "b", "s", "x", "t"} {
		res = appendField(appendField(res, c), "T")
	}
	res = binary.LittleEndian.AppendUint32(res, 1)
	for _, v := range []driver.Value{nil, int64(-5), 2.5, true, "str", []byte{1, 2}, ts} {
		var err error
		if res, err = appendValue(res, v); err != nil {
			t.Fatal(err)
		}
	}
	f := &fakeDB{result: string(res)}
	db := sql.OpenDB(connector{f})
	defer db.Close()

	var (
		n           sql.NullString
		i           int64
		fl          float64
		b           bool
		s           string
		x           []byte
		tm          time.Time
		placeholder = "SELECT ?"
	)
	if err := db.QueryRow(placeholder, int32(7), "a", nil, math.Pi, false, []byte("z"), ts).Scan(&n, &i, &fl, &b, &s, &x, &tm); err != nil {
		t.Fatal(err)
	}
	if n.Valid || i != -5 || fl != 2.5 || !b || s != "str" || string(x) != "\x01\x02" || !tm.Equal(ts) {
		t.Errorf("scanned %v %v %v %v %q %v %v", n, i, fl, b, s, x, tm)
	}
	// The request carries the statement and its arguments, typed.
	want, _ := appendStatement(nil, 0, placeholder, named([]driver.Value{int64(7), "a", nil, math.Pi, false, []byte("z"), ts}), 0)
	if string(f.reqs[0]) != string(want) {
		t.Errorf("request\n%x\nwant\n%x", f.reqs[0], want)
	}
	// A nil []byte is NULL, an empty one an empty blob.
	f.reqs = nil
	db.Exec("INSERT INTO t VALUES (?, ?)", []byte(nil), []byte{})
	want, _ = appendStatement(nil, 0, "INSERT INTO t VALUES (?, ?)", named([]driver.Value{nil, []byte{}}), 0)
	if len(f.reqs) != 1 || string(f.reqs[0]) != string(want) || !strings.Contains(string(want), string([]byte{tagNull, tagBytes, 0, 0, 0, 0})) {
		t.Errorf("nil and empty []byte: request\n%x\nwant\n%x", f.reqs, want)
	}
	// A context's deadline goes with the statement (the host stops it
	// there), and an error once the context ended is the context's too.
	f.reqs = nil
	dl := time.Now().Add(time.Hour)
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	db.ExecContext(ctx, "SELECT 1")
	want, _ = appendStatement(nil, 0, "SELECT 1", nil, dl.UnixNano())
	if len(f.reqs) != 1 || string(f.reqs[0]) != string(want) || len(want) != 4+4+8+4+8 {
		t.Errorf("statement with a deadline: request\n%x\nwant\n%x", f.reqs, want)
	}
	cancel()
	f.err = &Error{Op: "db_exec", Code: errTimeout, Message: "the plugin's deadline for this statement passed"}
	if err := statementError(ctx, f.err); !errors.Is(err, context.Canceled) || !errors.Is(err, ErrTimeout) || err.Error() != f.err.Error() {
		t.Errorf("statement error after the context ended: %v", err)
	}
	f.err = nil
	r, err := db.Exec("DELETE FROM t")
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := r.RowsAffected(); a != 3 {
		t.Errorf("affected %d", a)
	}
	if id, err := r.LastInsertId(); id != 42 || err != nil {
		t.Errorf("last id %d %v", id, err)
	}
	if _, err := db.Exec("SELECT 1", sql.Named("x", 1)); err == nil {
		t.Error("named argument accepted")
	}
	// Host errors keep their kind.
	f.err = &Error{Op: "db_query", Code: -2, Message: "capability \"database\" not granted"}
	if _, err := db.Query("SELECT 1"); !errors.Is(err, ErrDenied) || errors.Is(err, ErrTimeout) {
		t.Errorf("err = %v", err)
	}
	// A malformed result is an error, not a panic.
	f.err, f.result = nil, string(res[:len(res)-3])
	if _, err := db.Query("SELECT 1"); err == nil {
		t.Error("truncated result accepted")
	}
}

type connector struct{ t dbTransport }

func (c connector) Connect(context.Context) (driver.Conn, error) { return &conn{t: c.t}, nil }
func (c connector) Driver() driver.Driver                        { return &sqlDriver{t: c.t} }

func TestSQLState(t *testing.T) {
	for msg, want := range map[string]string{
		`ERROR: duplicate key value violates unique constraint "kv_pkey" (SQLSTATE 23505)`: "23505",
		`constraint failed: UNIQUE constraint failed: kv.k (1555) (SQLSTATE 23505)`:        "23505",
		`no such table: nope`:                   "",
		`(SQLSTATE 2350`:                        "",
		`(SQLSTATE 23505) and more`:             "",
		`a (SQLSTATE 42P01) b (SQLSTATE 23502)`: "23502",
		`(SQLSTATE 23505)`:                      "23505",
		// A marker in the error's own text (a table name, a search term
		// SQLite quotes) is not the runtime's.
		`SQL logic error: no such table: x (SQLSTATE 23505) (1)`: "",
	} {
		err := fmt.Errorf("wrapped: %w", &Error{Op: "db_exec", Code: errFailed, Message: msg})
		if got := SQLState(err); got != want {
			t.Errorf("SQLState(%q) = %q, want %q", msg, got, want)
		}
	}
	if SQLState(errors.New("(SQLSTATE 23505)")) != "" {
		t.Error("an error not from the runtime has an SQLSTATE")
	}
	// Natively, the driver's own error: pgx's SQLState, SQLite's
	// extended codes (modernc.org/sqlite's Code), mapped as the runtime.
	for err, want := range map[error]string{
		fmt.Errorf("insert: %w", pgLikeError{"23505"}): "23505",
		sqlite.New(2067): "23505", // SQLITE_CONSTRAINT_UNIQUE
		sqlite.New(1555): "23505", // _PRIMARYKEY
		sqlite.New(787):  "23503", // _FOREIGNKEY
		sqlite.New(1299): "23502", // _NOTNULL
		sqlite.New(275):  "23514", // _CHECK
		sqlite.New(19):   "23000", // SQLITE_CONSTRAINT
		sqlite.New(1):    "",      // SQLITE_ERROR
		sqlite.New(5):    "",      // SQLITE_BUSY
		// An application's error with a Code method of its own is not
		// SQLite's, wrapping one or not.
		appError{275, nil}:              "",
		appError{409, sqlite.New(2067)}: "23505",
		errors.Join(errors.New("x"), appError{409, sqlite.New(787)}): "23503",
	} {
		if got := SQLState(err); got != want {
			t.Errorf("SQLState(%v) = %q, want %q", err, got, want)
		}
	}
}

type pgLikeError struct{ state string }

func (e pgLikeError) Error() string    { return "ERROR: (SQLSTATE " + e.state + ")" }
func (e pgLikeError) SQLState() string { return e.state }

type appError struct {
	code int
	err  error
}

func (e appError) Error() string { return fmt.Sprintf("app error %d", e.code) }
func (e appError) Code() int     { return e.code }
func (e appError) Unwrap() error { return e.err }

// countingDB stands for the runtime's pool: it counts the connections in
// use (one per open transaction, one during a statement outside one) and
// records the most at once.
type countingDB struct {
	mu        sync.Mutex
	inUse     int
	most      int
	txs       map[uint32]bool
	next      uint32
	statement time.Duration // how long a statement holds its connection
}

func (f *countingDB) take() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inUse++
	f.most = max(f.most, f.inUse)
}

func (f *countingDB) give() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inUse--
}

func (f *countingDB) run(req []byte) {
	if binary.LittleEndian.Uint32(req) == 0 { // outside a transaction
		f.take()
		defer f.give()
	}
	time.Sleep(f.statement)
}

func (f *countingDB) exec(req []byte) (string, error) {
	f.run(req)
	return string(make([]byte, 17)), nil
}

func (f *countingDB) query(req []byte) (string, error) {
	f.run(req)
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, 1)
	b = appendField(appendField(b, "n"), "INTEGER")
	b = binary.LittleEndian.AppendUint32(b, 2)
	for i := range 2 {
		b, _ = appendValue(b, int64(i))
	}
	return string(b), nil
}

func (f *countingDB) begin(uint32) (uint32, error) {
	f.take()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	if f.txs == nil {
		f.txs = map[uint32]bool{}
	}
	f.txs[f.next] = true
	return f.next, nil
}

func (f *countingDB) end(tx uint32) error {
	f.mu.Lock()
	ok := f.txs[tx]
	delete(f.txs, tx)
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("no transaction %d", tx)
	}
	f.give()
	return nil
}

func (f *countingDB) commit(tx uint32) error   { return f.end(tx) }
func (f *countingDB) rollback(tx uint32) error { return f.end(tx) }
func (f *countingDB) migrations([]byte) error  { return nil }

type gatedConnector struct {
	t    dbTransport
	gate *connGate
}

func (c gatedConnector) Connect(context.Context) (driver.Conn, error) {
	return &conn{t: c.t, gate: c.gate}, nil
}
func (c gatedConnector) Driver() driver.Driver { return &sqlDriver{t: c.t, gate: c.gate} }

// Goroutines sharing the database with more transactions and statements
// at once than the runtime's connections wait in the guest for one, never
// holding more than db_max_conns, and all succeed.
func TestConnGateShares(t *testing.T) {
	f := &countingDB{statement: time.Millisecond}
	db := sql.OpenDB(gatedConnector{f, newConnGate(2, 10*time.Second)})
	defer db.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			if i%2 == 0 {
				tx, err := db.Begin()
				if err != nil {
					errs <- err
					return
				}
				time.Sleep(5 * time.Millisecond)
				if _, err := tx.Exec("SELECT 1"); err != nil {
					errs <- err
				}
				errs <- tx.Commit()
				return
			}
			_, err := db.Exec("SELECT 1")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if f.most > 2 || f.inUse != 0 {
		t.Errorf("%d connections in use at most (want at most 2), %d still in use", f.most, f.inUse)
	}
}

// A goroutine whose own transactions hold every connection gets
// ErrTimeout after the statement timeout, from a statement as from a new
// transaction, instead of waiting for ever (Go's runtime killed such an
// instance as deadlocked); a context that ends first ends the wait with
// its error. Rows left open hold no connection: a statement inside a loop
// over them runs with db_max_conns = 1.
func TestConnGateOwnTransactions(t *testing.T) {
	f := &countingDB{}
	db := sql.OpenDB(gatedConnector{f, newConnGate(2, 50*time.Millisecond)})
	defer db.Close()
	var held []*sql.Tx
	for range 2 {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, tx)
	}
	_, err := db.Begin()
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "pool exhausted: all 2 connections") {
		t.Errorf("third transaction: %v", err)
	}
	if _, err := db.Exec("SELECT 1"); !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("statement with both held: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := db.ExecContext(ctx, "SELECT 1"); !errors.Is(err, context.Canceled) {
		t.Errorf("statement with a cancelled context: %v", err)
	}
	// A transaction's own statements need no other connection.
	if _, err := held[0].Exec("SELECT 1"); err != nil {
		t.Error(err)
	}
	for _, tx := range held {
		tx.Rollback()
	}
	if _, err := db.Exec("SELECT 1"); err != nil {
		t.Errorf("after the rollbacks: %v", err)
	}

	one := sql.OpenDB(gatedConnector{f, newConnGate(1, 50*time.Millisecond)})
	defer one.Close()
	rows, err := one.Query("SELECT n")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
		if _, err := one.Exec("SELECT 1"); err != nil {
			t.Errorf("statement inside a loop over rows: %v", err)
		}
	}
	rows.Close()
	if n != 2 || f.inUse != 0 {
		t.Errorf("%d rows, %d connections in use", n, f.inUse)
	}
}

// BeginTx sends the isolation levels a database gives and read-only in
// db_begin's flags, and refuses the others (Write Committed,
// Linearizable, levels database/sql does not define) with ErrInvalid
// naming the level, before anything reaches the runtime.
func TestIsolationLevels(t *testing.T) {
	f := &fakeDB{}
	db := sql.OpenDB(connector{f})
	defer db.Close()
	ctx := context.Background()
	for level := sql.IsolationLevel(-1); level <= 9; level++ {
		supported := level == sql.LevelDefault || level == sql.LevelReadUncommitted || level == sql.LevelReadCommitted ||
			level == sql.LevelRepeatableRead || level == sql.LevelSnapshot || level == sql.LevelSerializable
		for _, ro := range []bool{false, true} {
			f.flags = nil
			tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: level, ReadOnly: ro})
			if !supported {
				if err == nil {
					tx.Rollback()
					t.Errorf("%s (read-only %v): begun", level, ro)
					continue
				}
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "isolation level "+level.String()+" is not supported") {
					t.Errorf("%s (read-only %v): %v, want ErrInvalid naming the level", level, ro, err)
				}
				if len(f.flags) != 0 {
					t.Errorf("%s: sent to the runtime (flags %v)", level, f.flags)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s (read-only %v): %v", level, ro, err)
				continue
			}
			want := uint32(level) << 8
			if ro {
				want |= 1
			}
			if len(f.flags) != 1 || f.flags[0] != want {
				t.Errorf("%s (read-only %v): flags %v, want %#x", level, ro, f.flags, want)
			}
			if err := tx.Rollback(); err != nil {
				t.Error(err)
			}
		}
	}
}

// A migration file with a NUL byte is refused when it is registered,
// naming the file (the runtime refuses it too).
func TestMigrationsNUL(t *testing.T) {
	fsys := fstest.MapFS{
		"m/001_a.up.sql": {Data: []byte("CREATE TABLE a (x int);")},
		"m/002_b.up.sql": {Data: []byte("CREATE TABLE b (x int);\x00DROP TABLE a;")},
	}
	err := Migrations(fsys)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "m/002_b.up.sql has a NUL byte (at byte 23)") {
		t.Errorf("Migrations: %v, want ErrInvalid naming m/002_b.up.sql", err)
	}
}

// A statement's request buffer is kept by its connection for the next
// statement, but not one grown by a large argument: database/sql keeps
// idle connections for the instance's life, and each held the largest
// statement it had sent (an 8 MiB upload into a BLOB kept 8 MiB of the
// plugin's memory per connection).
func TestLargeStatementBufferNotKept(t *testing.T) {
	f := &fakeDB{}
	db := sql.OpenDB(connector{f})
	defer db.Close()
	ctx := context.Background()
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	kept := func() (n int) {
		c.Raw(func(dc any) error { n = cap(dc.(*conn).buf); return nil })
		return n
	}
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (?)", "small"); err != nil {
		t.Fatal(err)
	}
	if kept() == 0 {
		t.Error("a small statement's buffer was not kept for the next")
	}
	if _, err := c.ExecContext(ctx, "INSERT INTO files VALUES (?)", make([]byte, 8<<20)); err != nil {
		t.Fatal(err)
	}
	if n := kept(); n > maxKeptStatementBuf {
		t.Errorf("after an 8 MiB argument the connection keeps a buffer of %d bytes", n)
	}
	if _, err := c.QueryContext(ctx, "SELECT * FROM files WHERE data = ?", make([]byte, 8<<20)); err == nil {
		t.Fatal("the fake's empty result decoded")
	}
	if n := kept(); n > maxKeptStatementBuf {
		t.Errorf("after an 8 MiB query argument the connection keeps a buffer of %d bytes", n)
	}
	if len(f.reqs) != 3 || len(f.reqs[1]) < 8<<20 {
		t.Errorf("requests sent: %d", len(f.reqs))
	}
}

type bigUint uint64

// A uint64 over math.MaxInt64, which no value of the wire holds, is
// refused before anything is sent (database/sql's conversion, which the
// driver leaves in place: it has no NamedValueChecker), never sent
// wrapped to a negative int64; one up to MaxInt64 is sent as an int64.
func TestDriverRefusesLargeUint64(t *testing.T) {
	f := &fakeDB{}
	db := sql.OpenDB(connector{f})
	defer db.Close()
	for _, v := range []any{uint64(math.MaxInt64) + 1, uint64(math.MaxUint64), bigUint(math.MaxUint64)} {
		_, err := db.Exec("INSERT INTO t VALUES (?)", v)
		if err == nil || !strings.Contains(err.Error(), "uint64 values with high bit set are not supported") {
			t.Errorf("%T %v: %v, want it refused", v, v, err)
		}
	}
	if len(f.reqs) != 0 {
		t.Fatalf("%d requests sent for refused arguments", len(f.reqs))
	}
	if _, err := db.Exec("INSERT INTO t VALUES (?)", uint64(math.MaxInt64)); err != nil {
		t.Fatal(err)
	}
	want, _ := appendStatement(nil, 0, "INSERT INTO t VALUES (?)", named([]driver.Value{int64(math.MaxInt64)}), 0)
	if len(f.reqs) != 1 || string(f.reqs[0]) != string(want) {
		t.Errorf("uint64 MaxInt64: request\n%x\nwant\n%x", f.reqs, want)
	}
}

// endsDB is a fakeDB that records which transactions were committed and
// which rolled back.
type endsDB struct {
	fakeDB
	ends []string
}

func (f *endsDB) commit(tx uint32) error {
	f.ends = append(f.ends, fmt.Sprint("commit ", tx))
	return nil
}
func (f *endsDB) rollback(tx uint32) error {
	f.ends = append(f.ends, fmt.Sprint("rollback ", tx))
	return nil
}

// A transaction whose BeginTx context ended is rolled back by the driver
// at its next statement or its Commit, which fail with the context's
// error and sql.ErrTxDone; its Rollback then succeeds, and the connection
// begins the next transaction. (In a guest the context's own timer, and
// database/sql's goroutine that rolls back, run only when the goroutine
// blocks: the runtime's TestTransactionContextEnds.)
func TestTransactionContextEnded(t *testing.T) {
	for _, first := range []string{"exec", "query", "commit"} {
		f := &endsDB{}
		c := &conn{t: f}
		ctx := newPassingCtx()
		tx, err := c.BeginTx(ctx, driver.TxOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ctx.pass()
		switch first {
		case "exec":
			_, err = c.ExecContext(context.Background(), "INSERT INTO t VALUES (1)", nil)
		case "query":
			_, err = c.QueryContext(context.Background(), "SELECT 1", nil)
		}
		if first != "commit" && (!errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, sql.ErrTxDone)) {
			t.Errorf("%s past the transaction's deadline: %v", first, err)
		}
		if err := tx.Commit(); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, sql.ErrTxDone) {
			t.Errorf("%s, then Commit past the transaction's deadline: %v", first, err)
		}
		if fmt.Sprint(f.ends) != "[rollback 9]" || len(f.reqs) != 0 {
			t.Errorf("%s: transaction ended with %v, %d statements sent; want rolled back, none sent", first, f.ends, len(f.reqs))
		}
		if _, err := c.BeginTx(context.Background(), driver.TxOptions{}); err != nil {
			t.Errorf("%s: the next transaction: %v", first, err)
		}
	}
	// Rollback after a statement refused.
	f := &endsDB{}
	c := &conn{t: f}
	ctx, cancel := context.WithCancel(context.Background())
	tx, _ := c.BeginTx(ctx, driver.TxOptions{})
	cancel()
	if _, err := c.ExecContext(context.Background(), "SELECT 1", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("after cancel: %v", err)
	}
	if err := tx.Rollback(); err != nil || fmt.Sprint(f.ends) != "[rollback 9]" {
		t.Errorf("Rollback: %v, ends %v", err, f.ends)
	}
	// A context past its deadline begins nothing.
	passed := newPassingCtx()
	passed.pass()
	if _, err := c.BeginTx(passed, driver.TxOptions{}); !errors.Is(err, context.DeadlineExceeded) || len(f.flags) != 1 {
		t.Errorf("BeginTx past the deadline: %v, %d begun", err, len(f.flags))
	}
}

// passingCtx is a context whose deadline is an hour away until pass is
// called, and past from then on: a test's transaction begins under it
// however slowly the machine runs (a 1 ms timeout had passed before
// BeginTx ran, on a loaded CI machine), and its deadline then passes.
type passingCtx struct {
	context.Context
	passed atomic.Bool
	done   chan struct{}
	at     time.Time
}

func newPassingCtx() *passingCtx {
	return &passingCtx{Context: context.Background(), done: make(chan struct{}), at: time.Now().Add(time.Hour)}
}

// pass makes the deadline have passed.
func (c *passingCtx) pass() {
	if !c.passed.Swap(true) {
		close(c.done)
	}
}

func (c *passingCtx) Deadline() (time.Time, bool) {
	if c.passed.Load() {
		return time.Now().Add(-time.Millisecond), true
	}
	return c.at, true
}

func (c *passingCtx) Done() <-chan struct{} { return c.done }

func (c *passingCtx) Err() error {
	if c.passed.Load() {
		return context.DeadlineExceeded
	}
	return nil
}

// useEndedTx uses tx, which the runtime rolled back when the call that
// began it ended, first as first says ("exec", "query", "commit",
// "rollback"), when (the test's words) it is: it must fail with
// sql.ErrTxDone saying why, a Commit after a statement too, sending
// nothing to the host, its connection free again.
func useEndedTx(t *testing.T, db *sql.DB, f *endsDB, tx *sql.Tx, first, when string) {
	t.Helper()
	var err error
	switch first {
	case "exec":
		_, err = tx.Exec("INSERT INTO t VALUES (1)")
	case "query":
		_, err = tx.Query("SELECT 1")
	case "commit":
		err = tx.Commit()
	case "rollback":
		err = tx.Rollback()
	}
	if !errors.Is(err, sql.ErrTxDone) || !strings.Contains(err.Error(), "rolled back when the call that began it ended") {
		t.Errorf("%s %s: %v, want sql.ErrTxDone saying why", first, when, err)
	}
	if first == "exec" || first == "query" {
		if err := tx.Commit(); !errors.Is(err, sql.ErrTxDone) {
			t.Errorf("%s, then Commit: %v, want sql.ErrTxDone", first, err)
		}
	}
	if len(f.reqs) != 0 || len(f.ends) != 0 {
		t.Errorf("%s: %d statements and %v sent to the host, want none", first, len(f.reqs), f.ends)
	}
	if n := db.Stats().InUse; n != 0 {
		t.Errorf("%s: %d connections in use after the transaction failed", first, n)
	}
}

// A transaction begun with db.Begin() and used after the call that began
// it ended (kept in a variable, or by a goroutine that outlived its
// handler), which the runtime rolled back then, fails at its next
// statement, its Commit or its Rollback with sql.ErrTxDone, as
// database/sql reports a transaction already ended, without a word to
// the host; its connection is free again. It failed with the runtime's
// "transaction 9 is not open", which errors.Is(err, sql.ErrTxDone) did
// not match.
func TestTransactionOfAnEndedCall(t *testing.T) {
	for _, first := range []string{"exec", "query", "commit", "rollback"} {
		f := &endsDB{}
		db := sql.OpenDB(connector{t: f})
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		dbCallEnded()
		dbCallBegins() // the next call
		useEndedTx(t, db, f, tx, first, "after the call ended")
		// The connection begins the next transaction, which runs.
		tx, err = db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec("INSERT INTO t VALUES (2)"); err != nil || len(f.reqs) != 1 {
			t.Errorf("%s: the next transaction's statement: %v (%d sent)", first, err, len(f.reqs))
		}
		if err := tx.Commit(); err != nil || fmt.Sprint(f.ends) != "[commit 9]" {
			t.Errorf("%s: the next transaction's Commit: %v (ends %v)", first, err, f.ends)
		}
		db.Close()
	}
}

// The transactions a call leaves open are rolled back by the SDK as the
// call ends, before its yield, each with db_rollback's bit 31 set (the
// runtime then logs its warning, as for one it rolls back itself): a
// goroutine's statement outside a transaction in the yield ran while they
// were still open in the runtime, which rolled them back only once the
// call had returned, and waited in the host for what they held (on SQLite
// the write lock) until db_statement_timeout. Their later use fails with
// sql.ErrTxDone, sending nothing; their connections serve again. The
// runtime's TestWriteAsTheCallEndsDoesNotWaitForItsOpenTransaction runs
// it in a guest.
func TestCallEndRollsBackOpenTransactions(t *testing.T) {
	f := &endsDB{}
	g := newConnGate(2, 10*time.Second)
	d := &sqlDriver{t: f, gate: g}
	db := sql.OpenDB(gatedConnector{f, g})
	defer db.Close()
	left, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := left.Exec("INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	ended, err := db.Begin() // ended in the call: not rolled back again
	if err != nil {
		t.Fatal(err)
	}
	if err := ended.Commit(); err != nil {
		t.Fatal(err)
	}
	d.callEnded()
	t.Cleanup(func() { dbCallEnding.Store(false) }) // whatever fails below
	// Bit 31 written out, not txCallEnded: the handle is the runtime's
	// wire format (hostfuncs.TxCallEnded), which a change of the
	// constant would break with this test still passing.
	if want := fmt.Sprint([]string{"commit 9", fmt.Sprint("rollback ", uint32(9|1<<31))}); fmt.Sprint(f.ends) != want {
		t.Errorf("ends sent as the call ended: %v, want %s", f.ends, want)
	}
	// In the yield: a statement outside a transaction is sent, the
	// transaction left open is ended.
	if _, err := db.Exec("INSERT INTO t VALUES (2)"); err != nil || len(f.reqs) != 2 {
		t.Errorf("a statement as the call ends: %v (%d sent)", err, len(f.reqs))
	}
	if _, err := left.Exec("INSERT INTO t VALUES (3)"); !errors.Is(err, sql.ErrTxDone) || !strings.Contains(err.Error(), "rolled back when the call that began it ended") {
		t.Errorf("the transaction left open, as the call ends: %v, want sql.ErrTxDone saying why", err)
	}
	if err := left.Rollback(); !errors.Is(err, sql.ErrTxDone) {
		t.Errorf("its Rollback: %v, want sql.ErrTxDone", err)
	}
	if len(f.reqs) != 2 || len(f.ends) != 2 {
		t.Errorf("%d statements and %v sent, want nothing more for the ended transaction", len(f.reqs), f.ends)
	}
	if n := db.Stats().InUse; n != 0 {
		t.Errorf("%d connections in use after the call ended", n)
	}
	// The next call has both connections, and ends nothing it did not
	// leave open.
	dbCallBegins()
	a, errA := db.Begin()
	b, errB := db.Begin()
	if errA != nil || errB != nil {
		t.Fatalf("the next call's transactions: %v, %v", errA, errB)
	}
	a.Commit()
	b.Rollback()
	f.ends = nil
	d.callEnded()
	dbCallBegins()
	if len(f.ends) != 0 {
		t.Errorf("%v sent as a call with no transaction open ended", f.ends)
	}
}

// A goroutine that begins a transaction while its call ends (in
// dbCallEnded's yield, its request's context ended) gets sql.ErrTxDone at
// once, and nothing is sent to the runtime, which would roll such a
// transaction back with the call's others. Begun, it was counted with the
// next call, and its statements were sent to the runtime, which refused
// them ("transaction N is not open"); then its use failed with
// sql.ErrTxDone, but on SQLite the Begin itself waited in the host for
// the write lock of the transaction the call left open, until the busy
// timeout. The runtime's TestTransactionBegunAsTheCallEndsStaysEnded
// runs it in a guest. The next call begins transactions again.
func TestTransactionBegunAsTheCallEnds(t *testing.T) {
	f := &endsDB{}
	db := sql.OpenDB(connector{t: f})
	defer db.Close()
	dbCallEnded()
	t.Cleanup(func() { dbCallEnding.Store(false) }) // whatever fails below
	for _, opts := range []*sql.TxOptions{nil, {ReadOnly: true}, {Isolation: sql.LevelSerializable}} {
		_, err := db.BeginTx(context.Background(), opts) // in the yield, after the SDK counted the end
		if !errors.Is(err, sql.ErrTxDone) || !strings.Contains(err.Error(), "as the call that would hold it was ending") {
			t.Errorf("Begin(%+v) as the call ends: %v, want sql.ErrTxDone saying why", opts, err)
		}
	}
	// A level neither database gives is refused as such, whenever.
	if _, err := db.BeginTx(context.Background(), &sql.TxOptions{Isolation: sql.LevelLinearizable}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Begin(Linearizable) as the call ends: %v, want ErrInvalid", err)
	}
	if len(f.flags) != 0 || len(f.reqs) != 0 || len(f.ends) != 0 {
		t.Errorf("%d begins, %d statements and %v sent to the host as the call ended, want none", len(f.flags), len(f.reqs), f.ends)
	}
	if n := db.Stats().InUse; n != 0 {
		t.Errorf("%d connections in use after the refused Begins", n)
	}
	// Statements outside a transaction are the database's, as the call
	// ends too.
	if _, err := db.Exec("INSERT INTO t VALUES (1)"); err != nil || len(f.reqs) != 1 {
		t.Errorf("a statement as the call ends: %v (%d sent)", err, len(f.reqs))
	}
	dbCallBegins() // the next call
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("INSERT INTO t VALUES (2)"); err != nil || len(f.reqs) != 2 {
		t.Errorf("the next call's transaction's statement: %v (%d sent)", err, len(f.reqs))
	}
	if err := tx.Commit(); err != nil || len(f.ends) != 1 {
		t.Errorf("the next call's transaction's Commit: %v (ends %v)", err, f.ends)
	}
}
