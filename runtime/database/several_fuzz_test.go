package database

import (
	"strings"
	"testing"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteComplete is SQLite's own sqlite3_complete(q): q ends a statement
// (at a semicolon, or a trigger's "; END;") outside strings and comments.
func sqliteComplete(t *testing.T, tls *libc.TLS, q string) bool {
	p, err := libc.CString(q)
	if err != nil {
		t.Fatal(err)
	}
	defer libc.Xfree(tls, p)
	return sqlite3.Xsqlite3_complete(tls, p) != 0
}

// FuzzSecondStatement: secondStatement finds the second statement where
// SQLite's sqlite3_complete says the first has ended: the first offset k
// of a byte that begins a token (no space, semicolon or comment) where
// q[:k] is complete, and q[:k] + " x" is not (k is outside a comment: in
// a -- comment, " x" would not begin a statement).
func FuzzSecondStatement(f *testing.F) {
	for _, s := range []string{
		"SELECT 1; SELECT 2", "SELECT 1 -- ; SELECT 2\n", "SELECT 1 /* ; */ ; x", "SELECT [a;]]; x",
		"CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM u; END; SELECT 1",
		"EXPLAIN CREATE TRIGGER tr BEGIN SELECT 'a;'; END ; ;\n x", "SELECT \"a\"\"b;\"; x",
		"CREATE TRIGGER tr BEGIN SELECT 1; END\v; x", "SELECT 1;\f-- c\r\n/**/x",
	} {
		f.Add(s)
	}
	tls := libc.NewTLS()
	f.Cleanup(tls.Close)
	f.Fuzz(func(t *testing.T, q string) {
		// A statement first (a leading semicolon ends none), no NUL
		// (sqlite3_complete reads up to it), and short: the reference
		// is quadratic.
		if q == "" || len(q) > 400 || strings.IndexByte(q, 0) >= 0 || q[0]|0x20 < 'a' || q[0]|0x20 > 'z' {
			return
		}
		want := -1
		for k := 1; k < len(q) && want < 0; k++ {
			if strings.IndexByte(" \t\n\r\f;", q[k]) >= 0 || strings.HasPrefix(q[k:], "--") || strings.HasPrefix(q[k:], "/*") {
				continue
			}
			if sqliteComplete(t, tls, q[:k]) && !sqliteComplete(t, tls, q[:k]+" x") {
				want = k
			}
		}
		if got := secondStatement(q); got != want {
			t.Fatalf("secondStatement(%q) = %d, sqlite3_complete says %d", q, got, want)
		}
	})
}
