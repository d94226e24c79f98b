package hostfuncs

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/api"
)

func TestStatementRoundTrip(t *testing.T) {
	ts := time.Date(1, 1, 1, 0, 0, 0, 5, time.UTC)
	vals := []any{nil, int64(math.MinInt64), math.Inf(-1), true, false, "héllo", []byte{0, 1, 255}, ts}
	req := appendUint32(nil, 7)
	req = appendString(req, "SELECT ?")
	req = appendUint32(req, uint32(len(vals)))
	for _, v := range vals {
		req = AppendValue(req, v)
	}
	st, err := DecodeStatement(req, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Tx != 7 || st.SQL != "SELECT ?" || !reflect.DeepEqual(st.Args, vals) {
		t.Errorf("decoded %+v", st)
	}
	// Every truncation fails cleanly.
	for n := 0; n < len(req); n++ {
		if _, err := DecodeStatement(req[:n], 0); err == nil {
			t.Fatalf("truncated request of %d/%d bytes decoded", n, len(req))
		}
	}
	// The optional last field: the plugin's deadline.
	withDeadline := binary.LittleEndian.AppendUint64(append([]byte(nil), req...), uint64(1_800_000_000_000_000_000))
	if st, err := DecodeStatement(withDeadline, 0); err != nil || st.Deadline != 1_800_000_000_000_000_000 || !reflect.DeepEqual(st.Args, vals) {
		t.Errorf("with a deadline: %+v %v", st, err)
	}
	for _, bad := range [][]byte{
		withDeadline[:len(withDeadline)-1],                                   // 7 bytes left over
		append(withDeadline, 0),                                              // 9
		binary.LittleEndian.AppendUint64(append([]byte(nil), req...), 1<<63), // negative
	} {
		if _, err := DecodeStatement(bad, 0); err == nil {
			t.Errorf("request with %d bytes after its arguments decoded", len(bad)-len(req))
		}
	}
}

// A statement's text over the limit is refused with what to do instead.
func TestStatementTooLong(t *testing.T) {
	req := appendUint32(nil, 0)
	req = appendString(req, "INSERT INTO t VALUES ('"+strings.Repeat("x", MaxStatementSQL)+"')")
	req = appendUint32(req, 0)
	_, err := DecodeStatement(req, 0)
	if err == nil || !strings.Contains(err.Error(), "exceeds the limit of 1048576 bytes") || !strings.Contains(err.Error(), "pass values as arguments") {
		t.Errorf("err = %v", err)
	}
}

func TestRowWriterLimit(t *testing.T) {
	var w RowWriter
	w.Reset(64)
	w.Columns([]string{"a"}, []string{"TEXT"})
	if err := w.Row([]any{"short"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Row([]any{string(make([]byte, 100))}); err != ErrResultTooLarge {
		t.Fatalf("err = %v", err)
	}
	if w.Rows() != 1 || w.Len() > 64 {
		t.Errorf("rows %d len %d", w.Rows(), w.Len())
	}
}

// The column header counts toward the limit: names and types that would
// pass it are refused before they are encoded, with nothing written.
func TestRowWriterLimitsColumns(t *testing.T) {
	var w RowWriter
	w.Reset(64)
	if err := w.Columns([]string{string(make([]byte, 30)), string(make([]byte, 30))}, []string{"TEXT", "TEXT"}); err != ErrResultTooLarge {
		t.Fatalf("err = %v", err)
	}
	if w.Len() != 0 {
		t.Errorf("wrote %d bytes", w.Len())
	}
	w.Reset(64)
	if err := w.Columns([]string{string(make([]byte, 20)), "b"}, []string{"TEXT"}); err != nil {
		t.Fatal(err)
	}
	if w.Len() != 8+8+20+4+8+1 {
		t.Errorf("header of %d bytes", w.Len())
	}
}

// A value that would pass the limit is refused before it is encoded, so
// that one wide row never takes more memory than the limit; Value and
// EndRow build a row one value at a time.
func TestRowWriterChecksEachValue(t *testing.T) {
	var w RowWriter
	w.Reset(1 << 16)
	w.Columns([]string{"a", "b", "c"}, nil)
	big := make([]byte, 10<<20)
	if err := w.Row([]any{"fits", big, big}); err != ErrResultTooLarge {
		t.Fatalf("err = %v", err)
	}
	if w.Rows() != 0 || cap(w.buf) >= 1<<20 {
		t.Errorf("rows %d, buffer grew to %d bytes", w.Rows(), cap(w.buf))
	}
	header := w.Len()
	for _, v := range []any{int64(1), "x", nil} {
		if err := w.Value(v); err != nil {
			t.Fatal(err)
		}
	}
	w.EndRow()
	if err := w.Value(int64(2)); err != nil {
		t.Fatal(err)
	}
	if err := w.Value(big); err != ErrResultTooLarge {
		t.Fatalf("err = %v", err)
	}
	w.DropRow()
	if w.Rows() != 1 || w.Len() != header+9+6+1 {
		t.Errorf("rows %d len %d, want 1 row of %d bytes", w.Rows(), w.Len(), 9+6+1)
	}
}

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

// dbHost is a Host whose Database is db.
type dbHost struct {
	Host
	db Database
}

func (h dbHost) Database() (Database, error) { return h.db, nil }

// limitDB is a Database with a db_max_result of max that counts the
// statements that reach it.
type limitDB struct {
	Database
	max   int
	calls int
}

func (d *limitDB) MaxResult() int { return d.max }
func (d *limitDB) Exec(context.Context, *Instance, *Statement) (ExecResult, error) {
	d.calls++
	return ExecResult{}, nil
}
func (d *limitDB) Query(context.Context, *Instance, *Statement, *RowWriter) error {
	d.calls++
	return nil
}

// db_exec and db_query refuse a statement whose arguments, encoded, pass
// the plugin's db_max_result before they copy them out of the guest's
// memory: an argument of the whole memory (up to 4 GiB) was copied onto
// the host's heap at each call, for the database to store a value it
// could never send back. At the bound they are passed on.
func TestStatementArgumentsTooLargeNotCopied(t *testing.T) {
	const max = 1 << 20
	stmt := func(args ...any) []byte {
		req := appendUint32(nil, 0)
		req = appendString(req, "INSERT INTO t VALUES (?)")
		req = appendUint32(req, uint32(len(args)))
		for _, v := range args {
			req = AppendValue(req, v)
		}
		return req
	}
	atBound := stmt(make([]byte, max-5))
	over := stmt(make([]byte, max-5), nil)
	huge := stmt(make([]byte, 64<<20))
	many := stmt(make([]byte, max/2), make([]byte, max/2), int64(1))
	for _, fn := range []struct {
		name string
		f    func(context.Context, api.Module, []uint64)
	}{{"db_exec", dbExec}, {"db_query", dbQuery}} {
		db := &limitDB{max: max}
		in := &Instance{Host: dbHost{db: db}}
		call := func(req []byte) (int32, string, uint64) {
			mem := module{mem: memory{b: req}}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			code, trap := bufferCall(fn.f, in, mem)(0, uint32(len(req)))
			runtime.ReadMemStats(&after)
			if trap != nil {
				t.Fatalf("%s: %v", fn.name, trap)
			}
			return code, string(in.result), after.TotalAlloc - before.TotalAlloc
		}
		if code, msg, _ := call(atBound); code < 0 || db.calls != 1 {
			t.Errorf("%s: arguments of %d bytes at db_max_result of %d: %d %q, want passed on", fn.name, max, max, code, msg)
		}
		for _, tc := range []struct {
			name string
			req  []byte
			size int
		}{{"one byte over", over, max + 1}, {"64 MiB", huge, 64<<20 + 5}, {"three arguments", many, max + 19}} {
			code, msg, alloc := call(tc.req)
			if code != ErrTooLarge || db.calls != 1 {
				t.Errorf("%s, %s: %d %q (%d statements passed on), want ErrTooLarge", fn.name, tc.name, code, msg, db.calls)
			}
			if want := fmt.Sprintf("%s: the statement's arguments take %d bytes, more than limits.db_max_result of %d", fn.name, tc.size, max); !strings.Contains(msg, want) {
				t.Errorf("%s, %s: message %q, want it to contain %q", fn.name, tc.name, msg, want)
			}
			if alloc > 1<<20 {
				t.Errorf("%s, %s: refusing it allocated %d bytes", fn.name, tc.name, alloc)
			}
		}
	}
}

// migrationsDB is a Database that registers every migration it is given.
type migrationsDB struct {
	Database
	files, sql int
}

func (d *migrationsDB) RegisterMigrations(_ *Instance, files []MigrationFile) error {
	for _, f := range files {
		d.files++
		d.sql += len(f.SQL)
	}
	return nil
}

// db_migrations refuses migrations past MaxMigrationsSQL, over the calls
// of one init, before it copies any of them out of the guest's memory: a
// call that crossed the bound had its files copied first (up to 64 MiB at
// each call, for the runtime to refuse them, as many calls as the init's
// timeout let through).
func TestMigrationsTooLargeNotCopied(t *testing.T) {
	enc := func(sizes ...int) []byte {
		b := appendUint32(nil, uint32(len(sizes)))
		for i, n := range sizes {
			b = appendString(b, fmt.Sprintf("%03d.up.sql", i))
			b = appendBytes(b, make([]byte, n))
		}
		return b
	}
	db := &migrationsDB{}
	in := &Instance{Host: dbHost{db: db}, Initializing: true}
	call := func(req []byte) (int32, string, uint64) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		code, trap := bufferCall(dbMigrations, in, module{mem: memory{b: req}})(0, uint32(len(req)))
		runtime.ReadMemStats(&after)
		if trap != nil {
			t.Fatal(trap)
		}
		return code, string(in.result), after.TotalAlloc - before.TotalAlloc
	}
	if code, msg, _ := call(enc(MaxMigrationSQL, MaxMigrationSQL)); code != 0 || db.files != 2 {
		t.Fatalf("two migrations of 4 MiB: %d %q", code, msg)
	}
	// 56 MiB and a byte more after the first call's 8 MiB.
	code, msg, alloc := call(enc(append(slicesRepeat(MaxMigrationSQL, 14), 1)...))
	if code != ErrInvalid || !strings.Contains(msg, "the most they may total (64 MiB)") || db.files != 2 {
		t.Errorf("a call crossing the bound: %d %q (%d registered), want ErrInvalid naming the bound", code, msg, db.files)
	}
	if alloc > 1<<20 {
		t.Errorf("a call crossing the bound: refusing it allocated %d bytes", alloc)
	}
	// At the bound, then one byte past it over the init's calls.
	if code, msg, _ := call(enc(slicesRepeat(MaxMigrationSQL, 14)...)); code != 0 || db.sql != MaxMigrationsSQL {
		t.Fatalf("up to the bound: %d %q (%d bytes registered)", code, msg, db.sql)
	}
	code, msg, alloc = call(enc(1))
	if code != ErrInvalid || !strings.Contains(msg, "the most they may total (64 MiB)") || db.sql != MaxMigrationsSQL {
		t.Errorf("one byte past the bound in a later call: %d %q", code, msg)
	}
	if alloc > 1<<20 {
		t.Errorf("one byte past the bound: refusing it allocated %d bytes", alloc)
	}
	// A new init starts from none; one call crossing the bound alone is
	// refused uncopied too.
	in.EndInit()
	code, msg, alloc = call(enc(append(slicesRepeat(MaxMigrationSQL, 16), 1)...))
	if code != ErrInvalid || !strings.Contains(msg, "the most they may total (64 MiB)") || alloc > 1<<20 {
		t.Errorf("one call of 64 MiB and a byte: %d %q, %d bytes allocated", code, msg, alloc)
	}
	if code, msg, _ := call(enc(MaxMigrationSQL)); code != 0 {
		t.Errorf("the next init: %d %q", code, msg)
	}
}

func slicesRepeat(n, count int) []int {
	s := make([]int, count)
	for i := range s {
		s[i] = n
	}
	return s
}
