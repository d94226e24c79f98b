package database_test

import (
	"strings"
	"testing"
)

// Rows of no columns reach the plugin as rows, as with a native driver:
// SELECT FROM generate_series(1, 3) is three rows.
func TestPGZeroColumnRows(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "good", ""))
	r := must(t, in, "alpha",
		query("SELECT FROM generate_series(1, 3)"),
		query("SELECT WHERE false"),
		exec("INSERT INTO notes (note) VALUES ('a'), ('b')"),
		step{Op: "begin"}, query("SELECT FROM notes"), step{Op: "commit"},
	)
	for i, want := range map[int]int{0: 3, 1: 0, 4: 2} {
		if got := len(r[i].Rows); got != want || len(r[i].Columns) != 0 {
			t.Errorf("step %d: %d rows of columns %v, want %d rows of none", i, got, r[i].Columns, want)
		}
	}
}

// Columns PostgreSQL has no Go type for here come back as their text
// (docs/database.md, "Types"), json and jsonb too: not as []byte, which a
// plugin scanning into any would encode as base64.
func TestPGTextOfUntypedColumns(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "good", ""))
	r := must(t, in, "alpha", query(`SELECT '{"a":1}'::json, '{"a": 1}'::jsonb, 1.50::numeric, '00000000-0000-0000-0000-000000000001'::uuid, ARRAY[1,2]`))
	want := []any{`{"a":1}`, `{"a": 1}`, "1.50", "00000000-0000-0000-0000-000000000001", "{1,2}"}
	if len(r[0].Rows) != 1 || len(r[0].Rows[0]) != len(want) {
		t.Fatalf("rows %v", r[0].Rows)
	}
	for i, w := range want {
		if got := r[0].Rows[0][i]; got != w {
			t.Errorf("column %s: %#v, want the text %#v", r[0].Columns[i], got, w)
		}
	}
}

// A statement in a transaction that costs its connection (a result over
// db_max_result stops the query by closing it) ends the transaction: the
// server rolled it back. Later statements and Commit say so, Rollback
// succeeds, nothing stays; the driver's own words ("bad connection",
// "failed to deallocate cached statement(s)") reached the plugin before.
func TestPGLostConnectionEndsTheTransaction(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "good", `db_max_result = "64KiB"`))
	for _, end := range []string{"commit", "rollback"} {
		res := run(t, in, "alpha", step{Op: "begin"}, exec("INSERT INTO notes (note) VALUES ('first')"),
			query("SELECT repeat('ab', 100000) FROM generate_series(1, 3)"), exec("INSERT INTO notes (note) VALUES ('after')"), step{Op: end})
		if r := res[2]; r.Kind != "too_large" {
			t.Errorf("%s: the result over db_max_result: %+v", end, r)
		}
		if r := res[3]; !strings.Contains(r.Error, "roll it back and start again") {
			t.Errorf("%s: a statement after it in the same transaction: %+v", end, r)
		}
		if r := res[4]; end == "commit" && !strings.Contains(r.Error, "commit refused") || end == "rollback" && r.Error != "" {
			t.Errorf("%s of the ended transaction: %+v", end, r)
		}
		if n := count(t, in, "alpha", "notes"); n != 0 {
			t.Errorf("%s: %d rows stored by the ended transaction", end, n)
		}
	}
}

// A notice or an error longer than db_max_result ends the connection (the
// driver refuses the message); through Exec without arguments the driver
// says only "bad connection", so the runtime says what most likely
// happened and names the limit. The plugin's next statement works.
func TestPGOversizedNoticeNamesTheLimit(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "good", "db_max_result = \"64KiB\""))
	for _, sql := range []string{
		"DO $$BEGIN RAISE NOTICE '%', repeat('x', 200000); END$$",
		"DO $$BEGIN RAISE EXCEPTION '%', repeat('x', 200000); END$$",
	} {
		r := run(t, in, "alpha", exec(sql))[0]
		if r.Error == "" || strings.Contains(r.Error, "driver: bad connection") || !strings.Contains(r.Error, "limits.db_max_result of 65536 bytes") {
			t.Errorf("%s: %s %q, want an error naming limits.db_max_result", sql, r.Kind, r.Error)
		}
		must(t, in, "alpha", query("SELECT 1"))
	}
}
