package database_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A statement that SQLite takes seconds to compile ends at
// db_statement_timeout: the driver watches the context only once the
// statement runs, and SQLite's interrupt does not reach the copying of
// views into a statement. Seven views that each join the one before with
// itself over a sum of 900 terms compiled past the request's timeout
// (504; 12.7 s on the driver alone) for a 300 ms db_statement_timeout.
// Now the call ends within ten times the timeout (0.65 to 0.85 s
// measured), with ErrTimeout, by Exec as by Query, in a transaction or
// not, with arguments or not (their count is checked by a compile of
// its own, watched too), and the connection serves the next statement.
func TestSQLiteCompileEndsAtTheStatementTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	in := start(t, backends[0].conf(t), plugin("alpha", true, "", fmt.Sprintf("db_statement_timeout = %q", timeout.String())))
	steps := []step{exec("CREATE TABLE t (x)"), exec("CREATE VIEW s0 AS SELECT 1" + strings.Repeat("+x", 900) + " AS x FROM t")}
	for i := 1; i <= 7; i++ {
		steps = append(steps, exec(fmt.Sprintf("CREATE VIEW s%d AS SELECT a.x+b.x AS x FROM s%d a, s%d b", i, i-1, i-1)))
	}
	must(t, in, "alpha", steps...)
	for _, tc := range []struct {
		name  string
		steps []step
		at    int // the step that compiles the views
	}{
		{"query", []step{query("SELECT x FROM s7")}, 0},
		{"exec", []step{exec("INSERT INTO t SELECT x FROM s7")}, 0},
		{"in a transaction", []step{{Op: "begin"}, query("SELECT x FROM s7"), {Op: "rollback"}}, 1},
		// With arguments, the statement is compiled once more first, for
		// its placeholders (checkArgs): under the same watch.
		{"query with an argument", []step{query("SELECT x FROM s7 WHERE x > ?", 1)}, 0},
		{"exec with an argument", []step{exec("INSERT INTO t SELECT x FROM s7 WHERE x > ?", 1)}, 0},
	} {
		began := time.Now()
		res := run(t, in, "alpha", tc.steps...)
		took := time.Since(began)
		if r := res[tc.at]; r.Kind != "timeout" {
			t.Errorf("%s: %+v, want a timeout", tc.name, r)
		}
		if took > 10*timeout {
			t.Errorf("%s: took %v for a db_statement_timeout of %v", tc.name, took, timeout)
		}
		t.Logf("%s: %v", tc.name, took)
		if r := must(t, in, "alpha", query("SELECT count(*) FROM t"))[0]; r.Rows[0][0] != float64(0) {
			t.Errorf("%s: then %+v", tc.name, r)
		}
	}
}
