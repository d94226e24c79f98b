package database_test

import (
	"fmt"
	"strings"
	"testing"
)

// How a statement's arguments meet its placeholders, the same on both
// databases (docs/database.md, "Placeholders" and "Types"):
//   - a uint64 over math.MaxInt64, which no argument type of the wire
//     holds, is refused by database/sql in the guest, naming the
//     argument, and nothing runs (never stored wrapped to a negative);
//     one up to MaxInt64 is an int64;
//   - more arguments than placeholders are refused (ErrInvalid), on
//     SQLite too, whose driver ran the statement and ignored the ones
//     left over (an INSERT's third value dropped, silently); so are
//     fewer (one at least), ErrInvalid on both, and a $n skipped ($1
//     and $3 without $2: on PostgreSQL its own 42P18, ErrFailed);
//   - a $n used twice is one placeholder, given one argument, and $2
//     before $1 takes the second argument there.
func TestArgumentsAndPlaceholders(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "", ""))
		must(t, in, "alpha", exec("CREATE TABLE targs (i bigint, s text, u text)"))
		over := map[string]string{"uint64": "9223372036854775808"}
		res := run(t, in, "alpha",
			exec("INSERT INTO targs (i) VALUES (?)", over),
			query("SELECT count(*) FROM targs WHERE i = ?", map[string]string{"uint64": "18446744073709551615"}),
			exec("INSERT INTO targs (i, s) VALUES ($1, 'max')", map[string]string{"uint64": "9223372036854775807"}),
			query("SELECT CAST(i AS text) FROM targs"))
		for _, r := range res[:2] {
			if r.Kind != "other" || !strings.Contains(r.Error, "converting argument $1 type: uint64 values with high bit set are not supported") {
				t.Errorf("a uint64 over MaxInt64: %s %q, want database/sql's refusal naming the argument", r.Kind, r.Error)
			}
		}
		if res[2].Error != "" || fmt.Sprint(res[3].Rows) != "[[9223372036854775807]]" {
			t.Errorf("uint64 MaxInt64: %q, rows %v, want it stored as is and nothing else", res[2].Error, res[3].Rows)
		}

		// More arguments than placeholders, or fewer (but some): refused,
		// nothing runs.
		for _, s := range []step{
			exec("INSERT INTO targs (i, s) VALUES (?, ?)", 5),
			query("SELECT CAST($1 AS bigint), CAST($2 AS text)", 5),
			exec("INSERT INTO targs (i, s) VALUES (?, ?)", 5, "x", "dropped"),
			exec("INSERT INTO targs (i, s) VALUES ($1, $2)", 5, "x", "dropped"),
			exec("INSERT INTO targs (s, u) VALUES ($1, $1)", "x", "y"),
			query("SELECT CAST(? AS bigint)", 1, 2),
			query("SELECT CAST($1 AS bigint) + CAST($1 AS bigint)", 1, 2),
		} {
			r := run(t, in, "alpha", s)[0]
			if r.Kind != "invalid" || !strings.Contains(r.Error, "statement refused: ") || !strings.Contains(r.Error, "one argument per placeholder") {
				t.Errorf("%s %q with %d arguments: %s %q, want it refused (invalid)", s.Op, s.SQL, len(s.Args), r.Kind, r.Error)
			}
		}
		// A $n skipped: refused on both, by PostgreSQL as a placeholder
		// whose type it cannot tell (42P18).
		r := run(t, in, "alpha", exec("INSERT INTO targs (i, u) VALUES (CAST($1 AS bigint), CAST($3 AS text))", 1, 3))[0]
		switch {
		case b.name == "sqlite" && (r.Kind != "invalid" || !strings.Contains(r.Error, `missing named argument "3"`)),
			b.name == "pg" && (r.Kind != "failed" || r.SQLState != "42P18"):
			t.Errorf("$1 and $3 without $2: %s %q", r.Kind, r.Error)
		}
		// Placeholders given no argument at all: refused on both, but
		// PostgreSQL runs an Exec without arguments as sent (its ? is a
		// syntax error, its $1 no parameter).
		res = run(t, in, "alpha", exec("INSERT INTO targs (i) VALUES (?)"), exec("INSERT INTO targs (i) VALUES ($1)"), query("SELECT CAST($1 AS bigint)"))
		want := map[string][]string{"sqlite": {"invalid ", "invalid ", "invalid "}, "pg": {"failed 42601", "failed 42P02", "invalid "}}[b.name]
		for i, r := range res {
			if got := r.Kind + " " + r.SQLState; got != want[i] || r.Error == "" {
				t.Errorf("placeholders without arguments, %d: %s %q, want %s", i, got, r.Error, want[i])
			}
		}
		if n := count(t, in, "alpha", "targs"); n != 1 {
			t.Errorf("%d rows after the refused statements, want the one of before", n)
		}

		// A $n used twice, and out of order.
		res = must(t, in, "alpha",
			exec("INSERT INTO targs (i, s, u) VALUES ($2, $1, $1)", "twice", 7),
			query("SELECT i, s, u FROM targs WHERE i = $1 AND s = $2 AND u = $2", 7, "twice"),
			query("SELECT CAST($1 AS bigint) + CAST($1 AS bigint), CAST($3 AS text), CAST($2 AS text)", 21, "b", "c"))
		if fmt.Sprint(res[1].Rows) != "[[7 twice twice]]" || fmt.Sprint(res[2].Rows) != "[[42 c b]]" {
			t.Errorf("reused and reordered $n: %v %v", res[1].Rows, res[2].Rows)
		}
	})
}
