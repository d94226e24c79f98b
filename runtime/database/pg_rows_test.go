package database_test

import "testing"

// Rows of no columns reach the plugin as rows, as with a native driver:
// SELECT FROM generate_series(1, 3) is three rows.
func TestPGZeroColumnRows(t *testing.T) {
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
