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
