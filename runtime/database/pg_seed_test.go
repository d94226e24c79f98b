package database_test

import (
	"fmt"
	"testing"
)

// The seed a call gives random() (setseed, from a statement or a DO block)
// ends with the use of its connection, as the session's other state does
// (TestPGSessionResetBetweenCalls): no RESET or DISCARD ends it, and a later
// call on the same pooled connection (another request) got the very
// sequence of random() the earlier one had fixed.
func TestPGRandomSeedEndsWithTheCall(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "", "db_max_conns = 1"))
	pid := query("SELECT pg_backend_pid()")
	random := query("SELECT random(), random()")
	// Within a transaction (one use of the connection) the seed holds,
	// as PostgreSQL has it.
	first := must(t, in, "alpha", pid, step{Op: "begin"}, exec("SELECT setseed(0.42)"), random, step{Op: "commit"})
	seeded := fmt.Sprint(first[3].Rows)
	if again := must(t, in, "alpha", step{Op: "begin"}, exec("SELECT setseed(0.42)"), random, step{Op: "commit"}); fmt.Sprint(again[2].Rows) != seeded {
		t.Fatalf("random() after setseed(0.42) in a transaction: %v, then %v", seeded, again[2].Rows)
	}
	for _, seed := range []string{"SELECT setseed(0.42)", "DO $$ BEGIN PERFORM setseed(0.42); END $$"} {
		must(t, in, "alpha", exec(seed))
		r := must(t, in, "alpha", pid, random)
		// db_max_conns = 1: the same connection.
		if fmt.Sprint(r[0].Rows) != fmt.Sprint(first[0].Rows) {
			t.Fatalf("the next call ran on backend %v, the first on %v", r[0].Rows, first[0].Rows)
		}
		if got := fmt.Sprint(r[1].Rows); got == seeded {
			t.Errorf("after %q, the next call's random() gave %s, the sequence of setseed(0.42)", seed, got)
		}
	}
}
