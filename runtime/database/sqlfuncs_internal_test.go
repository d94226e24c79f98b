package database

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// pluginConn opens a plugin's SQLite database the way the runtime does
// (sqliteBackend.plugin, limitConn) and returns one of its connections.
func pluginConn(t testing.TB, maxResult int) *sql.Conn {
	t.Helper()
	ctx := context.Background()
	b, err := newSQLite(Config{Connection: "file:" + t.TempDir()}, logrus.NewEntry(logrus.New()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.open(ctx); err != nil {
		t.Fatal(err)
	}
	db, err := b.plugin(ctx, nil, "alpha", Limits{MaxConns: 1, MaxResult: maxResult})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := limitConn(ctx, conn, maxResult, 0, time.Second); err != nil {
		t.Fatal(err)
	}
	return conn
}

// pristineConn is a connection of the driver's default "sqlite" driver,
// with SQLite's built-in functions, and the same length limit.
func pristineConn(t testing.TB, maxResult int) *sql.Conn {
	t.Helper()
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := sqlite.Limit(conn, sqlite3.SQLITE_LIMIT_LENGTH, max(maxResult, 1<<16)); err != nil {
		t.Fatal(err)
	}
	return conn
}

type outcome struct {
	typ string
	val any
	err string
}

func eval(conn *sql.Conn, expr string, args ...any) outcome {
	var o outcome
	err := conn.QueryRowContext(context.Background(), "SELECT typeof(v), v FROM (SELECT "+expr+" AS v)", args...).Scan(&o.typ, &o.val)
	if err != nil {
		o.err = err.Error()
	}
	return o
}

var fuzzPieces = []string{
	"%", "_", "[", "]", "^", "-", "*", "?", "\\", "x", "a", "A", "b", "B", "z", "Z",
	" ", " ", "0", "9", "f", "F", "g", "é", "É", "€", "😀", "\x80", "\xbf", "\xc3", "\xe2\x82",
	"\xff", "\xed\xa0\x80", "\xc0\x80", "\x00", "aa", "ab", "%a", "[a-c]", "[^x]", "[]]", "[z-a]",
}

var likePieces = []string{"a", "A", "b", "%", "_", "*", "?", "[", "]", "^", "-", "\\", "é", "\x80"}

var jsonPieces = []string{
	"{", "}", "[", "]", ":", ",", " ", `"a"`, `"b"`, `"c"`, "1", "-2.5", "null", "true", `""`, `"é"`,
	`{"a":1}`, `{"a":null}`, `{"b":{"c":2}}`, `{"a":[1,2]}`, `{"a":{"b":null}}`, "a", "0x1f", "'x'", "/*c*/", "\x00", "\u00e9", "\\",
}

var hexPieces = []string{"0", "1", "a", "B", "f", "F", "9", "e", " ", "-", ":", "é", "\x80", "\x00", "g", "xx"}

func fuzzString(r *rand.Rand, pieces []string, maxLen int) string {
	var b strings.Builder
	for n := r.Intn(maxLen + 1); n > 0; n-- {
		b.WriteString(pieces[r.Intn(len(pieces))])
	}
	return b.String()
}

// fuzzValue is a random argument: text, blob, integer, real or NULL.
func fuzzValue(r *rand.Rand, pieces []string, maxLen int) any {
	switch k := r.Intn(20); {
	case k < 12:
		return fuzzString(r, pieces, maxLen)
	case k < 15:
		return []byte(fuzzString(r, pieces, maxLen))
	case k < 17:
		return []int64{0, 1, -1, 10, 100, 9, 90, 12345, -100, 1 << 62}[r.Intn(10)]
	case k < 18:
		return []float64{0, 1.5, -2.25, 1e20, 3, 0.1, 1e-7, 100}[r.Intn(8)]
	}
	return nil
}

// TestSQLFuncsMatchBuiltins compares the functions that replace SQLite's
// built-ins on plugin connections with the built-ins, on random
// arguments of every type: same value, same type, same error.
func TestSQLFuncsMatchBuiltins(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	plug, pristine := pluginConn(t, 1<<16), pristineConn(t, 1<<16)
	r := rand.New(rand.NewSource(1))
	cases := []struct {
		expr   string
		nArg   int
		pieces []string
	}{
		{"instr(?,?)", 2, fuzzPieces},
		{"replace(?,?,?)", 3, fuzzPieces},
		{"trim(?)", 1, fuzzPieces},
		{"trim(?,?)", 2, fuzzPieces},
		{"ltrim(?)", 1, fuzzPieces},
		{"ltrim(?,?)", 2, fuzzPieces},
		{"rtrim(?)", 1, fuzzPieces},
		{"rtrim(?,?)", 2, fuzzPieces},
		{"unhex(?,?)", 2, hexPieces},
		{"unhex(?)", 1, hexPieces},
		{"like(?,?)", 2, fuzzPieces},
		{"? LIKE ?", 2, fuzzPieces},
		{"? NOT LIKE ?", 2, fuzzPieces},
		{"like(?,?,?)", 3, fuzzPieces},
		{"? LIKE ? ESCAPE ?", 3, fuzzPieces},
		{"glob(?,?)", 2, fuzzPieces},
		{"? GLOB ?", 2, fuzzPieces},
		// Small alphabets, so that more patterns match.
		{"? LIKE ?", 2, likePieces},
		{"? LIKE ? ESCAPE ?", 3, likePieces},
		{"? GLOB ?", 2, likePieces},
		{"trim(?,?)", 2, likePieces},
		{"instr(?,?)", 2, likePieces},
		{"replace(?,?,?)", 3, likePieces},
		{"json_patch(?,?)", 2, jsonPieces},
		{"jsonb_patch(?,?)", 2, jsonPieces},
		{"json_patch(json(?),?)", 2, jsonPieces},
		{"json_object('k', json_patch(?,?))", 2, jsonPieces},
		{"json_patch(jsonb(?),jsonb(?))", 2, jsonPieces},
	}
	n, matched := 0, 0
	for _, c := range cases {
		for i := 0; i < 4000; i++ {
			args := make([]any, c.nArg)
			for j := range args {
				args[j] = fuzzValue(r, c.pieces, 8)
			}
			if strings.Contains(c.expr, "ESCAPE") || strings.HasPrefix(c.expr, "like(?,?,?") {
				// Mostly one character, sometimes not.
				if r.Intn(5) > 0 {
					args[2] = c.pieces[r.Intn(len(c.pieces))]
				}
			}
			got, want := eval(plug, c.expr, args...), eval(pristine, c.expr, args...)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %q: plugin connection %#v, SQLite %#v", c.expr, args, got, want)
			}
			if got.val == int64(1) {
				matched++
			}
			n++
		}
	}
	// Edges: lengths at SQLITE_LIMIT_LENGTH, the pattern length limit.
	big := strings.Repeat("a", 1<<16)
	for _, c := range []struct {
		expr string
		args []any
	}{
		{"replace(?,?,?)", []any{big, "a", "b"}},
		{"replace(?,?,?)", []any{big[1:], "a", "b"}},
		{"replace(?,?,?)", []any{big[100:], "a", "aa"}},
		{"replace(?,?,?)", []any{big[:1000], "", "aa"}},
		{"replace(?,?,?)", []any{big[:1000], "\x00a", "aa"}},
		{"trim(?,?)", []any{"abc", strings.Repeat("xy", 3000)}},
		{"trim(?,?)", []any{"abc", strings.Repeat("xy", 2731)}},
		{"trim(?,?)", []any{"abc", strings.Repeat("é", 5462)}},
		{"unhex(?,?)", []any{big[:1000], ""}},
		{"unhex(?,?)", []any{strings.Repeat("ab", 1<<15), ""}},
		{"unhex(?,?)", []any{strings.Repeat("ab", 1<<15-1), ""}},
		{"like(?,?)", []any{big[:50000], "a"}},
		{"like(?,?)", []any{big[:50001], "a"}},
		{"like(?,?)", []any{big[:50001], nil}},
		{"like(?,?)", []any{[]byte(big[:50001]), nil}},
		{"like(?,?,?)", []any{big[:50001], "a", "xy"}},
		{"like(?,?,?)", []any{"a", "a", "xy"}},
		{"like(?,?,?)", []any{nil, "a", "xy"}},
		{"like(?,?,?)", []any{"a", "a", ""}},
		{"like(?,?,?)", []any{"a", "a", nil}},
		{"like(?,?,?)", []any{"a%", "a", "%"}},
		{"like(?,?,?)", []any{"a%%", "a%", "%"}},
		{"like(?,?,?)", []any{"a__", "a_", "_"}},
		{"like(?,?,?)", []any{"a\x00b", "a", "\x00"}},
		{"glob(?,?)", []any{"*[", "abc"}},
		{"glob(?,?)", []any{"*[a-", "abc"}},
		{"instr(?,?)", []any{"é\x80é", "\x80"}},
		{"instr(?,?)", []any{"\x80é", "\x80"}},
		{"instr(?,?)", []any{"aé€b", "b"}},
		{"instr(?,?)", []any{[]byte("aé€b"), []byte("b")}},
		{"instr(?,?)", []any{[]byte("aé€b"), "b"}},
		{"instr(?,?)", []any{"a\x00b", "b"}},
		{"instr(?,?)", []any{"ab", ""}},
		{"instr(?,?)", []any{"", []byte{}}},
		{"instr(?,?)", []any{1.5, "."}},
		{"instr(?,?)", []any{int64(1234), 3.0}},
		{"json_patch(?,?)", []any{`{"a":1,"b":{"c":[1,2]}}`, `{"b":{"c":null,"d":"é"},"e":true}`}},
		{"json_object('k', json_patch(?,?))", []any{`{"a":1}`, `{"b":2}`}},
		{"json_patch(?,?)", []any{`{a:1}`, `{'b':0x10}`}},
		{"json_patch(?,?)", []any{`{"a":1`, `{}`}},
		{"json_patch(?,?)", []any{`{"a":1}`, nil}},
		{"jsonb_patch(?,?)", []any{`{"a":1}`, `{"a":2}`}},
		{"json_patch(jsonb(?),?)", []any{`{"a":1}`, `[1]`}},
		{"json_patch(?,?)", []any{`{"a":"` + big[:60000] + `"}`, `{"b":"` + big[:10000] + `"}`}},
	} {
		got, want := eval(plug, c.expr, c.args...), eval(pristine, c.expr, c.args...)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s %.60q: plugin connection %#v, SQLite %#v", c.expr, c.args, got, want)
		}
		n++
	}
	t.Logf("%d calls compared (%d returned 1)", n, matched)
}

// pathological are calls that took SQLite's built-ins seconds to minutes
// (quadratic in their arguments), with what they return.
var pathological = []struct {
	name, sql string
	want      any // a value, or the error it fails with
	builtin   bool
}{
	{"instr", "SELECT instr(replace(hex(zeroblob(500000)),'0','a'), replace(hex(zeroblob(250000)),'0','a')||'b')", int64(0), true},
	{"replace", "SELECT length(replace(replace(hex(zeroblob(500000)),'0','a'), replace(hex(zeroblob(250000)),'0','a')||'b', 'x'))", int64(1000000), true},
	{"trim", "SELECT length(trim(replace(hex(zeroblob(100000)),'0','a'), 'bcdefghijklmnopqrstuvwxyz' || replace(hex(zeroblob(50000)),'0','b') || 'a'))", int64(0), true},
	{"ltrim", "SELECT length(ltrim(replace(hex(zeroblob(100000)),'0','a'), 'bcdefghijklmnopqrstuvwxyz' || replace(hex(zeroblob(50000)),'0','b') || 'a'))", int64(0), true},
	{"rtrim multibyte", "SELECT length(rtrim(replace(hex(zeroblob(100000)),'0','é'), char(128) || 'x' || char(233) || replace(hex(zeroblob(50000)),'0',char(128)) || 'é'))", int64(0), false},
	{"like", "SELECT replace(hex(zeroblob(100000)),'0','a') LIKE '%' || replace(hex(zeroblob(20000)),'0','a') || 'b%'", errLikeTooComplex, false},
	{"glob", "SELECT replace(hex(zeroblob(100000)),'0','a') GLOB '*' || replace(hex(zeroblob(20000)),'0','a') || 'b*'", errLikeTooComplex, false},
	{"like escape", "SELECT replace(hex(zeroblob(100000)),'0','a') LIKE '%' || replace(hex(zeroblob(20000)),'0','a') || 'b%' ESCAPE 'x'", errLikeTooComplex, false},
	{"like many %", "SELECT replace(hex(zeroblob(100000)),'0','a') LIKE '%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%b'", int64(0), true},
	{"unhex", "SELECT length(unhex(replace(hex(zeroblob(100000)),'0','z'), replace(hex(zeroblob(50000)),'0','y') || 'z'))", int64(0), true},
	{"like long characters", "SELECT replace(hex(zeroblob(9000)), '00', 'a' || CAST(unhex('c0' || replace(hex(zeroblob(800)), '00', '80')) AS TEXT)) LIKE '%a' || replace(hex(zeroblob(20000)), '00', '_') || 'x'", errLikeTooComplex, false},
	{"trim long set", "SELECT trim('abc', replace(hex(zeroblob(2000000)), '00', 'é'))", "string or blob too big", true},
	{"instr periodic", "SELECT instr(replace(hex(zeroblob(4194304/16)),'00','abcdefghijklmnop'), replace(hex(zeroblob(4194304/32)),'00','abcdefghijklmnop') || 'X')", int64(0), false},
	{"replace periodic", "SELECT length(replace(replace(hex(zeroblob(1048576/16)),'00','abcdefghijklmnop'), replace(hex(zeroblob(1048576/32)),'00','abcdefghijklmnop') || 'X', 'y'))", int64(1048576), false},
	{"json_patch", "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 20000) SELECT length(json_patch((SELECT json_group_object('a'||i, i) FROM c), (SELECT json_group_object('b'||i, i) FROM c)))", "json_patch of a target of up to 20000 members and a patch of up to 20000 is refused: its time grows with the patch's members times the target's and the patch's (more than 16777216)", false},
	{"jsonb_patch", "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 20000) SELECT length(jsonb_patch((SELECT jsonb_group_object('a'||i, i) FROM c), (SELECT jsonb_group_object('b'||i, i) FROM c)))", "jsonb_patch of a target of up to", false},
	{"json_patch into {}", "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 40000) SELECT length(json_patch('{}', (SELECT json_group_object('k'||i, i) FROM c)))", "json_patch of a target of up to 0 members and a patch of up to 40000 is refused", false},
	{"json_patch small patch", "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 100000) SELECT json_patch((SELECT json_group_object('a'||i, i) FROM c), '{\"a5\":null,\"z\":1}') ->> '$.z'", int64(1), true},
}

// TestSQLFuncsPathological runs each call that kept a CPU busy for seconds
// or minutes with SQLite's built-ins: on a plugin connection it returns
// what the built-in returns, or fails with the LIKE/GLOB work budget's
// error.
func TestSQLFuncsPathological(t *testing.T) {
	conn := pluginConn(t, 8<<20)
	for _, p := range pathological {
		start := time.Now()
		var v any
		err := conn.QueryRowContext(context.Background(), p.sql).Scan(&v)
		t.Logf("%s: %v (%v, %v)", p.name, time.Since(start), v, err)
		if msg, ok := p.want.(string); ok {
			if err == nil || !strings.Contains(err.Error(), msg) {
				t.Errorf("%s: got %v, %v; want the error %q", p.name, v, err, msg)
			}
		} else if err != nil || !reflect.DeepEqual(v, p.want) {
			t.Errorf("%s: got %v, %v; want %v", p.name, v, err, p.want)
		}
	}
}

// The replaced functions may be used where trusted_schema=0 allows only
// innocuous functions: views, triggers, CHECK constraints, indexes.
func TestSQLFuncsInSchema(t *testing.T) {
	conn := pluginConn(t, 1<<20)
	ctx := context.Background()
	for _, q := range []string{
		"CREATE TABLE t(a TEXT CHECK (trim(a) <> '' AND a NOT LIKE '%!%' ESCAPE '!'), b TEXT)",
		"CREATE INDEX t_a ON t(replace(a, 'x', 'y')) WHERE instr(a, 'q') = 0",
		"CREATE VIEW v AS SELECT a FROM t WHERE a LIKE 'a%' AND a GLOB '*[a-z]*' AND ltrim(a) = rtrim(a, ' ') AND unhex('00', ' ') IS NOT NULL",
		"CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET b = trim(new.a, 'a') WHERE rowid = new.rowid; END",
		"INSERT INTO t(a) VALUES ('abc'), ('axa')",
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM v").Scan(&n); err != nil || n != 2 {
		t.Errorf("view: %d, %v; want 2", n, err)
	}
	var b string
	if err := conn.QueryRowContext(ctx, "SELECT b FROM t WHERE a = 'axa'").Scan(&b); err != nil || b != "x" {
		t.Errorf("trigger: %q, %v; want x", b, err)
	}
	// The pragma that would put SQLite's like() back is refused.
	if _, err := conn.ExecContext(ctx, "PRAGMA case_sensitive_like = 1"); err == nil {
		t.Error("PRAGMA case_sensitive_like allowed")
	}
	// A new database stays UTF-8, which the replacements read: in UTF-16,
	// SQLite's instr reads a BLOB beside a text as UTF-16.
	fresh := pluginConn(t, 1<<16)
	if _, err := fresh.ExecContext(ctx, "PRAGMA encoding = 'UTF-16le'"); err == nil {
		t.Error("PRAGMA encoding = 'UTF-16le' allowed")
	}
	var enc string
	if err := fresh.QueryRowContext(ctx, "PRAGMA encoding").Scan(&enc); err != nil || enc != "UTF-8" {
		t.Errorf("PRAGMA encoding: %q, %v; want UTF-8", enc, err)
	}
}

// BenchmarkLikeBudget measures the time a LIKE call takes to use up
// likeBudget.
func BenchmarkLikeBudget(b *testing.B) {
	conn := pluginConn(b, 8<<20)
	for b.Loop() {
		var v any
		err := conn.QueryRowContext(context.Background(), pathological[5].sql).Scan(&v)
		if err == nil {
			b.Fatal(fmt.Sprint(v))
		}
	}
}

// indexLinear finds what bytes.Index finds.
func TestIndexLinear(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	for i := 0; i < 20000; i++ {
		sep := []byte(fuzzString(r, []string{"a", "b", "ab", "\x00", "é"}, 30))
		s := []byte(fuzzString(r, []string{"a", "b", "ab", "\x00", "é"}, 200))
		if r.Intn(3) == 0 && len(s) > 0 {
			k := r.Intn(len(s))
			s = append(append(s[:k:k], sep...), s[k:]...)
		}
		if got, want := indexLinear(s, sep), bytes.Index(s, sep); got != want {
			t.Fatalf("indexLinear(%q, %q) = %d, want %d", s, sep, got, want)
		}
	}
}

// A statement stops at its deadline however many replaced functions one
// expression calls: each checks the statement's interrupt when it starts.
// Three hundred LIKE calls in one sum, each just under the work bound
// (about 0.1 s), ran to their end, 34 s past the deadline, before.
func TestSQLFuncsStopAtTheDeadline(t *testing.T) {
	conn := pluginConn(t, 8<<20)
	var q strings.Builder
	q.WriteString("SELECT 0")
	for i := range 300 {
		fmt.Fprintf(&q, " + (?1 LIKE '%%' || replace(hex(zeroblob(300)), '00', 'a') || 'b%d%%')", i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	var v any
	err := conn.QueryRowContext(ctx, q.String(), strings.Repeat("a", 50000)).Scan(&v)
	took := time.Since(start)
	t.Logf("%v, %v in %v", v, err, took)
	if err == nil {
		t.Errorf("the statement ran to its end (%v) past its deadline", v)
	}
	if took > 10*time.Second { // a bound, not a benchmark: 0.1 s here, 34 s without the checks
		t.Errorf("the statement stopped %v after it began, its deadline 100 ms", took)
	}
}

// A time's text reads as a time in a TIMESTAMPTZ column as the driver
// reads it in a TIMESTAMP one: its own layouts and Go's time.String form.
func TestParseSQLiteTime(t *testing.T) {
	want := time.Date(2024, 1, 1, 10, 0, 0, 500_000_000, time.UTC)
	for _, s := range []string{
		"2024-01-01 10:00:00.5+00:00",
		"2024-01-01T10:00:00.5Z",
		"2024-01-01 11:00:00.5+01:00",
		"2024-01-01 10:00:00.5 +0000 UTC",
		"2024-01-01 10:00:00.5 +0000 UTC m=+0.000012345",
	} {
		if got, ok := parseSQLiteTime(s); !ok || !got.Equal(want) {
			t.Errorf("%q: %v %v, want %v", s, got, ok, want)
		}
	}
	for _, s := range []string{"not a time", "2024-01-01 10:00:00.5 +0000 UTC trailing", "m=+1"} {
		if got, ok := parseSQLiteTime(s); ok {
			t.Errorf("%q read as the time %v", s, got)
		}
	}
}
