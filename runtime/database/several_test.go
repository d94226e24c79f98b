package database_test

import (
	"strings"
	"testing"
)

// Several statements in one Exec or Query (docs/database.md, "Several
// statements in one call"): what each database runs, what RowsAffected
// then says, and what a failure in the middle leaves.
func TestSeveralStatementsInAQuery(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
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
			query("SELECT note FROM notes; DELETE FROM notes"),
			query("SELECT count(*) FROM notes"),
			query("SELECT 1; SELECT 2; ATTACH DATABASE 'x.db' AS x"),
			exec("DELETE FROM notes; ATTACH DATABASE 'x.db' AS x"),
			query("SELECT count(*) FROM notes"),
			exec("DELETE FROM notes;" + strings.Repeat(" SELECT 1;", 40) + " ATTACH DATABASE 'x.db' AS x"),
			query("SELECT count(*) FROM notes"),
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
		// Nothing of a refused query ran: the notes are all there (3 on
		// PostgreSQL, which undid step 2's INSERT).
		// Nor of an Exec with a statement refused after a DELETE: SQLite
		// would have run the DELETE before it came to the ATTACH.
		want := map[string]float64{"sqlite": 4, "pg": 3}[b.name]
		for _, i := range []int{9, 12, 14} {
			if len(res[i].Rows) != 1 || res[i].Rows[0][0].(float64) != want {
				t.Errorf("step %d, notes after a refused call: %v %q, want %v", i, res[i].Rows, res[i].Error, want)
			}
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
			// statement's ? from the first argument). So is a query of
			// several (SQLite would run them all, the DELETE of step 8
			// included, and return the last one's rows), unless one is
			// a statement the sandbox denies: then it is refused as such.
			for _, i := range []int{3, 4, 8} {
				if res[i].Kind != "invalid" || !strings.Contains(res[i].Error, "several statements") {
					t.Errorf("step %d: %s %q, want invalid naming several statements", i, res[i].Kind, res[i].Error)
				}
			}
			for _, i := range []int{10, 11, 13} {
				if res[i].Kind != "denied" || !strings.Contains(res[i].Error, "ATTACH") {
					t.Errorf("step %d: %s %q, want denied naming ATTACH", i, res[i].Kind, res[i].Error)
				}
			}
			if got != "a1,b1,d" {
				t.Errorf("notes %s, want a1,b1,d", got)
			}
		case "pg":
			// One implicit transaction: step 2's INSERT is undone with
			// its failing neighbour. With arguments, or in a query,
			// several statements are refused by the server.
			for _, i := range []int{10, 11, 13} { // ATTACH is no PostgreSQL
				if res[i].SQLState != "42601" {
					t.Errorf("step %d: %q (SQLSTATE %q), want 42601", i, res[i].Error, res[i].SQLState)
				}
			}
			for _, i := range []int{3, 4, 8} {
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
