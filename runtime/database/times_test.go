package database_test

import (
	"fmt"
	"testing"
)

// A time argument crosses as an instant: its zone is not kept (it comes
// back in UTC, the same instant), and its precision is the database's:
// SQLite keeps the nanoseconds, PostgreSQL keeps microseconds, the rest
// cut (truncated towards the past, as pgx encodes it: .9999995 is
// .999999, not rounded up to the next second). A timestamp without time
// zone column on PostgreSQL gets the UTC wall clock.
func TestTimesRoundTrip(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "", ""))
		ts := func(s string) map[string]string { return map[string]string{"time": s} }
		res := must(t, in, "alpha", exec("CREATE TABLE ttimes (k int, tz timestamptz, tn timestamp)"),
			exec("INSERT INTO ttimes VALUES (1, ?, ?)", ts("2026-03-29T01:30:00.123456789+05:30"), ts("2026-03-29T01:30:00.9999995+05:30")),
			exec("INSERT INTO ttimes VALUES (2, ?, ?)", ts("1969-12-31T23:59:59.000000501-08:00"), ts("2026-10-25T02:30:00.5-01:00")),
			query("SELECT tz, tn FROM ttimes ORDER BY k"),
			query("SELECT count(*) FROM ttimes WHERE tz = ?", ts("2026-03-28T20:00:00.123456Z")))
		want := map[string]string{
			"sqlite": "[[map[time:2026-03-28T20:00:00.123456789Z] map[time:2026-03-28T20:00:00.9999995Z]] [map[time:1970-01-01T07:59:59.000000501Z] map[time:2026-10-25T03:30:00.5Z]]]",
			"pg":     "[[map[time:2026-03-28T20:00:00.123456Z] map[time:2026-03-28T20:00:00.999999Z]] [map[time:1970-01-01T07:59:59Z] map[time:2026-10-25T03:30:00.5Z]]]",
		}[b.name]
		if got := fmt.Sprint(res[3].Rows); got != want {
			t.Errorf("times read back:\n%s\nwant\n%s", got, want)
		}
		// The same instant matches: on PostgreSQL the microseconds it
		// kept; on SQLite, whose times are text, only the same text.
		wantMatch := map[string]string{"sqlite": "[[0]]", "pg": "[[1]]"}[b.name]
		if got := fmt.Sprint(res[4].Rows); got != wantMatch {
			t.Errorf("matching the stored instant cut to microseconds: %s, want %s", got, wantMatch)
		}
	})
}
