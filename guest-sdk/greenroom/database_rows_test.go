package greenroom

import (
	"database/sql"
	"encoding/binary"
	"strings"
	"testing"
	"unsafe"
)

// zeroColumnResult is a result of nrows rows of no columns, in the host's
// encoding (hostfuncs.RowWriter: u32 ncols = 0, u32 nrows, no values), as
// PostgreSQL's SELECT FROM generate_series(1, nrows) gives.
func zeroColumnResult(nrows uint32) string {
	b := binary.LittleEndian.AppendUint32(nil, 0)
	return string(binary.LittleEndian.AppendUint32(b, nrows))
}

// Rows of no columns are rows: database/sql sees as many as the host
// sent, as with a native driver (pgx returns 3 for SELECT FROM
// generate_series(1, 3)).
func TestZeroColumnRows(t *testing.T) {
	for _, want := range []int{0, 1, 3, 1000} {
		f := &fakeDB{result: zeroColumnResult(uint32(want))}
		db := sql.OpenDB(connector{f})
		rows, err := db.Query("SELECT FROM generate_series(1, 3)")
		if err != nil {
			t.Fatal(err)
		}
		cols, err := rows.Columns()
		if err != nil || len(cols) != 0 {
			t.Errorf("columns %v %v, want none", cols, err)
		}
		got := 0
		for rows.Next() {
			if err := rows.Scan(); err != nil {
				t.Fatalf("row %d: %v", got, err)
			}
			got++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if got != want {
			t.Errorf("%d rows of no columns sent, database/sql saw %d", want, got)
		}
		// QueryRow: a row, or sql.ErrNoRows.
		err = db.QueryRow("SELECT WHERE true").Scan()
		if want > 0 && err != nil || want == 0 && err != sql.ErrNoRows {
			t.Errorf("QueryRow of %d rows of no columns: %v", want, err)
		}
		db.Close()
	}
	// Rows of columns still end where the values do; a count the values
	// do not fill is a malformed result, not rows of missing values.
	res := binary.LittleEndian.AppendUint32(nil, 1)
	res = appendField(appendField(res, "x"), "INT8")
	res = binary.LittleEndian.AppendUint32(res, 2)
	res, _ = appendValue(res, int64(1))
	res, _ = appendValue(res, int64(2))
	f := &fakeDB{result: string(res)}
	db := sql.OpenDB(connector{f})
	defer db.Close()
	rows, err := db.Query("SELECT x FROM t")
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for rows.Next() {
		var x int64
		rows.Scan(&x)
		got = append(got, x)
	}
	if len(got) != 2 || got[0] != 1 || got[1] != 2 || rows.Err() != nil {
		t.Errorf("rows %v %v, want [1 2]", got, rows.Err())
	}
	if _, err := decodeRows(string(res[:len(res)-9])); err == nil {
		t.Error("a result with a row short of its values accepted")
	}
}

// inside reports whether s's bytes lie within buf's.
func inside(s, buf string) bool {
	if len(s) == 0 || len(buf) == 0 {
		return false
	}
	p, lo := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(buf)))
	return p >= lo && p < lo+uintptr(len(buf))
}

// A string a plugin scans and keeps holds only itself, as with a native
// driver: not the whole result it came in (an audit's cache of one short
// column per query grew the heap by the whole result each time).
func TestScannedStringsAreCopies(t *testing.T) {
	res := binary.LittleEndian.AppendUint32(nil, 2)
	res = appendField(appendField(res, "name"), "TEXT")
	res = appendField(appendField(res, "blob"), "BLOB")
	res = binary.LittleEndian.AppendUint32(res, 1)
	res, _ = appendValue(res, "short")
	res, _ = appendValue(res, []byte(strings.Repeat("x", 4096)))
	result := string(res)
	rs, err := decodeRows(result)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append([]string{rs.vals[0].(string)}, append(rs.cols, rs.types...)...) {
		if inside(s, result) {
			t.Errorf("%q is a view of the result, which it keeps alive", s)
		}
	}
	if rs.vals[0] != "short" || rs.cols[0] != "name" || rs.types[1] != "BLOB" {
		t.Errorf("decoded %v %v %v", rs.vals[0], rs.cols, rs.types)
	}
}
