package database_test

import (
	"strings"
	"testing"
)

// A NUL byte in a statement's text is refused before it reaches the
// database, on both: SQLite would end the statement at it, running less
// than the plugin sent, and PostgreSQL's protocol ends a statement's text
// at one. A NUL in a string argument is refused on PostgreSQL, whose text
// cannot hold one, naming the argument; SQLite stores it.
func TestNULBytes(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", ""))
		steps := []step{
			exec("INSERT INTO notes (note) VALUES ('kept')"),
			exec("INSERT INTO notes (note) VALUES ('a')\x00; DELETE FROM notes"),
			query("SELECT note FROM notes WHERE note = 'kept'\x00 OR true"),
			exec("DELETE FROM notes\x00"),
			exec("INSERT INTO notes (note) VALUES (?), (?)", "a", "x\x00y"),
			exec("INSERT INTO notes (note) VALUES ($1), ($2)", "b", "x\x00y"),
			query("SELECT count(*) FROM notes"),
		}
		res := run(t, in, "alpha", steps...)
		for i := 1; i <= 3; i++ {
			if res[i].Kind != "invalid" || !strings.Contains(res[i].Error, "NUL byte") {
				t.Errorf("step %d (%q): %s %q, want invalid naming the NUL byte", i, steps[i].SQL, res[i].Kind, res[i].Error)
			}
		}
		if b.name == "pg" {
			for _, i := range []int{4, 5} {
				if res[i].Kind != "invalid" || !strings.Contains(res[i].Error, "argument 2") || !strings.Contains(res[i].Error, "NUL byte") {
					t.Errorf("step %d: %s %q, want invalid naming argument 2's NUL byte", i, res[i].Kind, res[i].Error)
				}
			}
		} else {
			// SQLite keeps it.
			for _, i := range []int{4, 5} {
				if res[i].Error != "" {
					t.Errorf("step %d: %s", i, res[i].Error)
				}
			}
		}
		want := 1
		if b.name == "sqlite" {
			want = 5
		}
		if got := res[6].Rows; len(got) != 1 || int(got[0][0].(float64)) != want {
			t.Errorf("rows left: %v, want %d", got, want)
		}
	})
}
