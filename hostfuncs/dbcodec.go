package hostfuncs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// This file is the wire encoding of the database host functions
// (docs/abi.md, "Database"): statements and their arguments from the guest,
// rows and exec results to it. Everything from the guest is untrusted: every
// length and count is checked against what is left of the buffer.

// Value tags. A value is a tag byte followed by its payload.
const (
	TagNull   = 0 // no payload
	TagInt64  = 1 // 8 bytes, two's complement, little-endian
	TagDouble = 2 // 8 bytes, IEEE 754 binary64 bits, little-endian
	TagFalse  = 3 // no payload
	TagTrue   = 4 // no payload
	TagString = 5 // u32 length + UTF-8 bytes
	TagBytes  = 6 // u32 length + bytes
	TagTime   = 7 // i64 Unix seconds + u32 nanoseconds (0-999999999), UTC
)

// Limits on what a guest may send in one statement.
const (
	MaxStatementSQL  = 1 << 20 // bytes of SQL text
	MaxStatementArgs = 65535   // arguments (PostgreSQL's limit)
)

// Limits on the migrations a guest registers with db_migrations, over all
// its calls in one init. The runtime reads every file's SQL through its
// statement filter and applies it at load: without a bound, a guest could
// register millions (or gigabytes) from its init.
const (
	MaxMigrations        = 10000    // files
	MaxMigrationNameSize = 255      // bytes of a file's name
	MaxMigrationSQL      = 4 << 20  // bytes of one file's SQL
	MaxMigrationsSQL     = 64 << 20 // bytes of SQL of every file
)

// Statement is a decoded db_query or db_exec request.
type Statement struct {
	// Tx is the transaction the statement runs in, 0 for none.
	Tx   uint32
	SQL  string
	Args []any // nil, int64, float64, bool, string, []byte or time.Time
	// Deadline is the plugin's own deadline for the statement, in Unix
	// nanoseconds, 0 for none (an optional last field of the request).
	Deadline int64
}

// ExecResult is what db_exec reports.
type ExecResult struct {
	RowsAffected int64
	// LastInsertID is valid when HasLastInsertID (SQLite); PostgreSQL
	// statements use RETURNING instead.
	LastInsertID    int64
	HasLastInsertID bool
}

// MigrationFile is one migration a guest registered with db_migrations.
type MigrationFile struct {
	Name string
	SQL  string
}

// errMalformed is wrapped by decoding errors.
var errMalformed = errors.New("malformed request")

// ErrArgsTooLarge is wrapped by DecodeStatement's error for a statement
// whose arguments pass its maxArgs.
var ErrArgsTooLarge = errors.New("arguments too large")

// DecodeStatement parses a statement request:
//
//	u32 tx, bytes sql, u32 argc, value × argc
//
// maxArgs, when positive, bounds the arguments' encoded size (tags and
// lengths included; the plugin's db_max_result): past it the error wraps
// ErrArgsTooLarge, and no argument has been copied out of b, which is
// guest memory. The lengths are read in place first.
func DecodeStatement(b []byte, maxArgs int) (Statement, error) {
	return decodeStatement(b, maxArgs, false)
}

// decodeStatement is DecodeStatement; its refusal of arguments over
// maxArgs names the limit [REDACTED] when secret (from the environment).
func decodeStatement(b []byte, maxArgs int, secret bool) (Statement, error) {
	var st Statement
	d := decoder{b: b, base: errMalformed}
	st.Tx = d.u32()
	sql := d.bytes()
	argc := d.u32()
	if d.err != nil {
		return st, d.err
	}
	if len(sql) > MaxStatementSQL {
		return st, fmt.Errorf("statement of %d bytes exceeds the limit of %d bytes on a statement's text: pass values as arguments (placeholders), not in the text, and insert many rows in batches", len(sql), MaxStatementSQL)
	}
	if !utf8.Valid(sql) {
		return st, fmt.Errorf("%w: statement text is not UTF-8", errMalformed)
	}
	if argc > MaxStatementArgs {
		return st, fmt.Errorf("%d arguments exceed the limit of %d", argc, MaxStatementArgs)
	}
	// Each value takes at least its tag byte.
	if uint64(argc) > uint64(len(b)-d.off) {
		return st, fmt.Errorf("%w: argument count %d exceeds the request", errMalformed, argc)
	}
	if maxArgs > 0 {
		size, err := argsSize(b[d.off:], argc)
		if err != nil {
			return st, err
		}
		if size > maxArgs {
			shownMax := redacted
			if !secret {
				shownMax = strconv.Itoa(maxArgs)
			}
			return st, fmt.Errorf("%w: the statement's arguments take %d bytes, more than limits.db_max_result of %s, the most a statement may send (as a result may return): store a value that large in parts, and insert many rows in smaller batches", ErrArgsTooLarge, size, shownMax)
		}
	}
	st.SQL = string(sql)
	if argc > 0 {
		st.Args = make([]any, argc)
	}
	for i := range st.Args {
		v, err := d.value()
		if err != nil {
			return st, fmt.Errorf("argument %d: %w", i+1, err)
		}
		st.Args[i] = v
	}
	// An optional i64 after the arguments: the plugin's deadline.
	if len(b)-d.off == 8 {
		st.Deadline = int64(d.u64())
		if st.Deadline < 0 {
			return st, fmt.Errorf("%w: negative deadline", errMalformed)
		}
	}
	if d.off != len(b) {
		return st, fmt.Errorf("%w: %d trailing bytes", errMalformed, len(b)-d.off)
	}
	return st, nil
}

// argsSize returns the encoded size of the argc values at the start of b,
// reading their tags and lengths in place; an error for values that
// overrun b.
func argsSize(b []byte, argc uint32) (int, error) {
	d := decoder{b: b, base: errMalformed}
	for i := uint32(0); i < argc && d.err == nil; i++ {
		n := 0
		switch tag := d.u8(); tag {
		case TagNull, TagFalse, TagTrue:
		case TagInt64, TagDouble:
			n = 8
		case TagTime:
			n = 12
		case TagString, TagBytes:
			n = int(d.u32())
		default:
			if d.err == nil {
				return 0, fmt.Errorf("argument %d: %w: unknown value tag %d", i+1, errMalformed, tag)
			}
		}
		if d.err == nil && n > len(b)-d.off {
			return 0, fmt.Errorf("argument %d: %w: value of %d bytes at byte %d overruns the request", i+1, errMalformed, n, d.off)
		}
		d.off += n
	}
	return d.off, d.err
}

// DecodeMigrations parses a db_migrations request:
//
//	u32 count, (bytes name, bytes sql) × count
//
// priorFiles and priorSQL are the files and bytes of SQL the init's
// earlier calls registered: the bounds (MaxMigrations, MaxMigrationsSQL)
// hold over them all. b is read whole in place, and refused, before
// anything is copied out of it (it is guest memory).
func DecodeMigrations(b []byte, priorFiles, priorSQL int) ([]MigrationFile, error) {
	d := decoder{b: b, base: errMalformed}
	n := d.u32()
	if d.err != nil {
		return nil, d.err
	}
	if uint64(n) > uint64(len(b)-d.off)/8 {
		return nil, fmt.Errorf("%w: migration count %d exceeds the request", errMalformed, n)
	}
	if priorFiles+int(n) > MaxMigrations {
		return nil, fmt.Errorf("%d migrations, more than the %d a plugin may register", priorFiles+int(n), MaxMigrations)
	}
	start := d.off
	total := priorSQL
	for i := uint32(0); i < n; i++ {
		name, sql := d.bytes(), d.bytes()
		if d.err != nil {
			return nil, d.err
		}
		switch total += len(sql); {
		case len(name) > MaxMigrationNameSize:
			return nil, fmt.Errorf("migration %d: a name of %d bytes, more than the %d a migration's may have", i+1, len(name), MaxMigrationNameSize)
		case len(sql) > MaxMigrationSQL:
			return nil, fmt.Errorf("migration %d: %d bytes of SQL, more than the %d (4 MiB) a migration may have", i+1, len(sql), MaxMigrationSQL)
		case total > MaxMigrationsSQL:
			return nil, fmt.Errorf("migration %d: more than %d bytes of SQL in the plugin's migrations, the most they may total (64 MiB)", i+1, MaxMigrationsSQL)
		}
		if !utf8.Valid(name) || !utf8.Valid(sql) {
			return nil, fmt.Errorf("%w: migration %d is not UTF-8", errMalformed, i+1)
		}
	}
	if d.off != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes", errMalformed, len(b)-d.off)
	}
	// Checked whole: now the copies.
	d.off = start
	files := make([]MigrationFile, n)
	for i := range files {
		files[i] = MigrationFile{Name: string(d.bytes()), SQL: string(d.bytes())}
	}
	return files, nil
}

func (d *decoder) u8() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("truncated at byte %d", d.off)
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *decoder) u64() uint64 {
	lo := uint64(d.u32())
	hi := uint64(d.u32())
	return lo | hi<<32
}

func (d *decoder) value() (any, error) {
	tag := d.u8()
	var v any
	switch tag {
	case TagNull:
	case TagInt64:
		v = int64(d.u64())
	case TagDouble:
		v = math.Float64frombits(d.u64())
	case TagFalse:
		v = false
	case TagTrue:
		v = true
	case TagString:
		b := d.bytes()
		if d.err == nil && !utf8.Valid(b) {
			return nil, fmt.Errorf("%w: string is not UTF-8", errMalformed)
		}
		v = string(b)
	case TagBytes:
		v = append([]byte{}, d.bytes()...)
	case TagTime:
		sec := int64(d.u64())
		nsec := d.u32()
		if d.err == nil && nsec > 999_999_999 {
			return nil, fmt.Errorf("%w: time nanoseconds %d out of range", errMalformed, nsec)
		}
		v = time.Unix(sec, int64(nsec)).UTC()
	default:
		if d.err == nil {
			return nil, fmt.Errorf("%w: unknown value tag %d", errMalformed, tag)
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	return v, nil
}

// AppendValue encodes v, one of the types a database/sql driver returns
// (nil, int64, float64, bool, string, []byte, time.Time), onto dst. Other
// integer and float types are widened; anything else is sent as its text.
func AppendValue(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, TagNull)
	case int64:
		return binary.LittleEndian.AppendUint64(append(dst, TagInt64), uint64(x))
	case int:
		return AppendValue(dst, int64(x))
	case int32:
		return AppendValue(dst, int64(x))
	case float64:
		return binary.LittleEndian.AppendUint64(append(dst, TagDouble), math.Float64bits(x))
	case float32:
		return AppendValue(dst, float64(x))
	case bool:
		if x {
			return append(dst, TagTrue)
		}
		return append(dst, TagFalse)
	case string:
		return appendString(append(dst, TagString), x)
	case []byte:
		return appendBytes(append(dst, TagBytes), x)
	case time.Time:
		dst = binary.LittleEndian.AppendUint64(append(dst, TagTime), uint64(x.Unix()))
		return binary.LittleEndian.AppendUint32(dst, uint32(x.Nanosecond()))
	default:
		return appendString(append(dst, TagString), fmt.Sprint(x))
	}
}

// RowWriter encodes a query result for the result slot:
//
//	u32 ncols, (bytes name, bytes type) × ncols, u32 nrows, value × (ncols × nrows)
//
// It refuses to grow past its limit: each value is checked before it is
// encoded, so that one wide row cannot take more memory than the limit.
type RowWriter struct {
	buf      []byte
	limit    int
	cols     int
	rows     uint32
	countAt  int
	rowStart int
}

// ErrResultTooLarge is returned by RowWriter.Columns, RowWriter.Row and
// RowWriter.Value once the result would pass the writer's limit.
var ErrResultTooLarge = errors.New("result too large")

// Reset empties w and sets the most bytes it may hold (0: no limit).
func (w *RowWriter) Reset(limit int) {
	w.buf = w.buf[:0]
	w.limit = limit
	w.cols, w.rows, w.countAt, w.rowStart = 0, 0, 0, 0
}

// Columns writes the column header; call it once, before any row. The
// header counts toward the limit like the rows: it returns
// ErrResultTooLarge, writing nothing, when the names and types alone
// would pass it (SQLite takes a column's name from its alias or its
// expression, up to a statement's length, and a join of a view with
// itself repeats it in every column: 40 columns of 900 kB names crossed
// a 1 MiB limit before).
func (w *RowWriter) Columns(names, types []string) error {
	if w.limit > 0 {
		n := len(w.buf) + 8
		for i, name := range names {
			n += 8 + len(name)
			if i < len(types) {
				n += len(types[i])
			}
		}
		if n > w.limit {
			return ErrResultTooLarge
		}
	}
	w.cols = len(names)
	w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(len(names)))
	for i, n := range names {
		w.buf = appendString(w.buf, n)
		t := ""
		if i < len(types) {
			t = types[i]
		}
		w.buf = appendString(w.buf, t)
	}
	w.countAt = len(w.buf)
	w.buf = binary.LittleEndian.AppendUint32(w.buf, 0)
	w.rowStart = len(w.buf)
	return nil
}

// Row appends one row of len(vals) == number of columns values. It returns
// ErrResultTooLarge (and drops the row) when the result would pass the limit.
func (w *RowWriter) Row(vals []any) error {
	for _, v := range vals {
		if err := w.Value(v); err != nil {
			w.DropRow()
			return err
		}
	}
	w.EndRow()
	return nil
}

// Value appends one value of the current row, as Row does for each of its
// values; EndRow ends the row. It returns ErrResultTooLarge, without
// encoding a string or []byte, when v would take the result past the
// limit; the caller then drops the row (DropRow).
func (w *RowWriter) Value(v any) error {
	switch x := v.(type) {
	case string:
		if w.limit > 0 && len(w.buf)+5+len(x) > w.limit {
			return ErrResultTooLarge
		}
		w.buf = appendString(append(w.buf, TagString), x)
		return nil
	case []byte:
		if w.limit > 0 && len(w.buf)+5+len(x) > w.limit {
			return ErrResultTooLarge
		}
		w.buf = appendBytes(append(w.buf, TagBytes), x)
		return nil
	}
	// The others take 13 bytes at most (types no driver returns: their
	// text).
	n := len(w.buf)
	w.buf = AppendValue(w.buf, v)
	if w.limit > 0 && len(w.buf) > w.limit {
		w.buf = w.buf[:n]
		return ErrResultTooLarge
	}
	return nil
}

// EndRow counts the values appended since the last row as one row.
func (w *RowWriter) EndRow() {
	w.rows++
	w.rowStart = len(w.buf)
}

// DropRow removes the values appended since the last row.
func (w *RowWriter) DropRow() {
	w.buf = w.buf[:w.rowStart]
}

// Rows is the number of rows written.
func (w *RowWriter) Rows() int { return int(w.rows) }

// Len is the encoded size so far.
func (w *RowWriter) Len() int { return len(w.buf) }

// Bytes returns the encoded result. It is valid until the next Reset.
func (w *RowWriter) Bytes() []byte {
	if w.countAt+4 <= len(w.buf) {
		binary.LittleEndian.PutUint32(w.buf[w.countAt:], w.rows)
	}
	return w.buf
}

// AppendExecResult encodes an exec result:
//
//	i64 rows_affected, i64 last_insert_id, u8 has_last_insert_id
func AppendExecResult(dst []byte, r ExecResult) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.RowsAffected))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.LastInsertID))
	if r.HasLastInsertID {
		return append(dst, 1)
	}
	return append(dst, 0)
}
