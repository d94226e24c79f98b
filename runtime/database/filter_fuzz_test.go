package database

import (
	"testing"
	"time"
)

// Seeds of the statement filter's fuzzers: statements it refuses, in the
// shapes that have fooled it or a reader like it.
var filterSeeds = []string{
	"SET ROLE x", "SELECT 'a'';SET ROLE x' ; SET ROLE y", "SELECT E'\\'' ; SET ROLE y --'",
	"SELECT $$ ; $$ ; LISTEN c", "SELECT x$$a$ ; NOTIFY c", "SELECT /* /* */ ; */ SET search_path = x",
	"SELECT set_config('search_path', 'x', false)", "CREATE TEMP TABLE t (x int)", "SELECT 1 INTO TEMP t",
	"SELECT lo_create(1)", "PREPARE TRANSACTION 'x'", "COPY t FROM STDIN", "UPDATE pg_settings SET setting = 'x'",
	"CREATE AGGREGATE a (sfunc = 'set_config', stype = text)", "CREATE OPERATOR ### (function = 'lo_get')",
	"SELECT pg_advisory_lock(1)", "SELECT * FROM pg_temp.t", "SELECT U&\"s\\0065t\" ROLE x", "SELECT ?, ?::jsonb ? 'a'",
	"SELECT $a?$ $a?$ ?", "INSERT INTO t VALUES (?, E'\\'?', ?)", "SELECT 1 -- ?\r?",
	"SELECT E''\n'\\' ' ; LISTEN c; --'", "SELECT E'' -- c\n'\\' ?, ' ; SET ROLE x; --'",
}

// The filter never panics and reads any statement in linear time (a
// second is far past it: TestDeniedCommandLinear measures).
func FuzzDeniedCommand(f *testing.F) {
	for _, s := range filterSeeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, q string, bs bool) {
		start := time.Now()
		deniedCommand(q, bs)
		transactionControl(q)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("%d bytes took %s", len(q), d)
		}
	})
}

// The filter reads q; the server receives questionMarksToDollars(q). The
// rewrite must not change what the filter would have refused.
func FuzzRewriteKeepsFilter(f *testing.F) {
	for _, s := range filterSeeds {
		f.Add(s, uint8(2))
	}
	f.Fuzz(func(t *testing.T, q string, n uint8) {
		if n == 0 {
			n = 1
		}
		r := questionMarksToDollars(q, int(n))
		for _, bs := range []bool{false, true} {
			if a, b := deniedCommand(q, bs), deniedCommand(r, bs); a == "" && b != "" {
				t.Fatalf("backslashes=%v: q=%q passes, rewritten %q refused as %q", bs, q, r, b)
			}
		}
		if a, b := transactionControl(q), transactionControl(r); a == "" && b != "" {
			t.Fatalf("q=%q no txn control, rewritten %q is %q", q, r, b)
		}
	})
}
