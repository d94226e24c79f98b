package database_test

import (
	"strings"
	"testing"
)

// Several statements in one Exec or Query (docs/database.md, "Several
// statements in one call"): what each database runs, what RowsAffected
// then says, and what a failure in the middle leaves.
func TestSeveralStatementsInAQuery(t *testing.T) {
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", ""))
		steps := []step{
			exec("INSERT INTO notes (note) VALUES ('a'), ('b'); INSERT INTO notes (note) VALUES ('c')"),
			exec("UPDATE notes SET note = note || '1'; DELETE FROM notes WHERE note = 'c1'"),
			exec("INSERT INTO notes (note) VALUES ('d'); INSERT INTO nosuch (x) VALUES (1)"),
			exec("INSERT INTO notes (note) VALUES (?); INSERT INTO notes (note) VALUES (?)", "e", "f"),
			query("SELECT count(*) FROM notes; SELECT 42"),
			query("SELECT note FROM notes ORDER BY note"),
			exec("INSERT INTO notes (note) VALUES ('g')"),
			exec("CREATE TABLE t2 (x int)"),
		}
		res := run(t, in, "alpha", steps...)
		// Without arguments every statement runs, on both; RowsAffected
		// is the last statement's (1), not the sum (3, then 4).
		for i := range 2 {
			if res[i].Error != "" || res[i].Affected != 1 {
				t.Errorf("step %d: %q, affected %d; want every statement run and the last's count, 1", i, res[i].Error, res[i].Affected)
			}
		}
		// A statement that changes no row affects none, also on SQLite,
		// whose sqlite3_changes() still said the INSERT's 1.
		if res[6].Error != "" || res[6].Affected != 1 || res[7].Error != "" || res[7].Affected != 0 {
			t.Errorf("INSERT then CREATE TABLE: %q affected %d, %q affected %d; want 1 and 0", res[6].Error, res[6].Affected, res[7].Error, res[7].Affected)
		}
		if res[2].Error == "" {
			t.Error("a failing second statement: no error")
		}
		var notes []string
		for _, r := range res[5].Rows {
			notes = append(notes, r[0].(string))
		}
		got := strings.Join(notes, ",")
		switch b.name {
		case "sqlite":
			// Each statement commits on its own: the first INSERT of
			// step 2 stays. With arguments, several statements are
			// refused before they run (SQLite would number each
			// statement's ? from the first argument). A query returns
			// the last statement's rows.
			if res[3].Kind != "invalid" || !strings.Contains(res[3].Error, "several statements") {
				t.Errorf("step 3: %s %q, want invalid naming several statements", res[3].Kind, res[3].Error)
			}
			if res[4].Error != "" || len(res[4].Rows) != 1 || res[4].Rows[0][0].(float64) != 42 {
				t.Errorf("step 4: %q %v", res[4].Error, res[4].Rows)
			}
			if got != "a1,b1,d" {
				t.Errorf("notes %s, want a1,b1,d", got)
			}
		case "pg":
			// One implicit transaction: step 2's INSERT is undone with
			// its failing neighbour. With arguments, or in a query,
			// several statements are refused by the server.
			for _, i := range []int{3, 4} {
				if res[i].SQLState != "42601" || !strings.Contains(res[i].Error, "cannot insert multiple commands into a prepared statement") {
					t.Errorf("step %d: %q (SQLSTATE %q), want 42601", i, res[i].Error, res[i].SQLState)
				}
			}
			if got != "a1,b1" {
				t.Errorf("notes %s, want a1,b1", got)
			}
		}
	})
}
