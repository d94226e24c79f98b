package database_test

import (
	"fmt"
	"testing"
)

// LastInsertId on SQLite is the call's own INSERT's row id, or 0 when the
// call inserted no row (docs/database.md, "RowsAffected"): SQLite's
// last_insert_rowid() keeps the connection's last INSERT's, possibly
// another call's, through an UPDATE, a DELETE, an INSERT OR IGNORE that
// ignored and an INSERT a trigger ran.
func TestSQLiteLastInsertID(t *testing.T) {
	in := start(t, backends[0].conf(t), plugin("alpha", true, "", ""))
	res := must(t, in, "alpha",
		exec("CREATE TABLE t (id INTEGER PRIMARY KEY, n TEXT UNIQUE)"),
		exec("CREATE TABLE audit (id INTEGER PRIMARY KEY, n TEXT)"),
		exec("INSERT INTO audit (n) VALUES ('x'), ('y'), ('z')"),
		exec("INSERT INTO t (n) VALUES ('a')"),
		exec("UPDATE t SET n = 'b'"),
		exec("INSERT OR IGNORE INTO t (n) VALUES ('b')"),
		exec("CREATE TRIGGER tr AFTER UPDATE ON t BEGIN INSERT INTO audit (n) VALUES (new.n); END"),
		exec("UPDATE t SET n = 'c'"),
		exec("INSERT INTO t (n) VALUES ('d'); UPDATE t SET n = 'e' WHERE n = 'c'"),
		exec("DELETE FROM t WHERE n = 'd'"),
		exec("SELECT 1"),
	)
	for i, want := range []int64{0, 0, 3, 1, 0, 0, 0, 0, 2, 0, 0} {
		if res[i].LastID == nil {
			t.Errorf("step %d: no LastInsertId, want %d", i, want)
		} else if *res[i].LastID != want {
			t.Errorf("step %d: LastInsertId %d, want %d", i, *res[i].LastID, want)
		}
	}
	// The trigger did insert: its row is there, and the INSERT's of step 3.
	res = must(t, in, "alpha", query("SELECT count(*) FROM audit"), query("SELECT id FROM t WHERE n = 'e'"))
	if res[0].Rows[0][0].(float64) != 5 || res[1].Rows[0][0].(float64) != 1 {
		t.Errorf("audit rows %v, t's row %v; want 5 and id 1", res[0].Rows, res[1].Rows)
	}
}

// What an INSERT leaves in its SQLite connection, last_insert_rowid(),
// ends with the use of the connection, as lastval() does on PostgreSQL
// (TestPGSequenceStateEndsWithTheCall): a later call on the same pooled
// connection read the row id an earlier call (another request, another
// user) had inserted, with SELECT last_insert_rowid(), and got it as the
// LastInsertId of an upsert that updated. It finds 0 now, as on a new
// connection. Within a transaction the function works as before.
func TestSQLiteLastInsertIDEndsWithTheCall(t *testing.T) {
	in := start(t, backends[0].conf(t), plugin("alpha", true, "", "db_max_conns = 1"))
	conn := query("SELECT total_changes()") // the connection's own count: 0 on a new one
	must(t, in, "alpha", exec("CREATE TABLE t (id INTEGER PRIMARY KEY, n TEXT UNIQUE, v INT)"))
	first := must(t, in, "alpha", exec("INSERT INTO t (n, v) VALUES ('another user''s', 1), ('shared', 1)"), conn)
	if *first[0].LastID != 2 {
		t.Fatalf("the insert's LastInsertId %d, want 2", *first[0].LastID)
	}
	// db_max_conns = 1: the same connection, which has counted changes.
	r := must(t, in, "alpha", conn, query("SELECT last_insert_rowid()"),
		exec("INSERT INTO t (n, v) VALUES ('shared', 2) ON CONFLICT (n) DO UPDATE SET v = excluded.v"))
	if fmt.Sprint(r[0].Rows) != fmt.Sprint(first[1].Rows) || fmt.Sprint(r[0].Rows) == "[[0]]" {
		t.Fatalf("the next call's total_changes() %v, the first's %v: not the same connection", r[0].Rows, first[1].Rows)
	}
	if got := fmt.Sprint(r[1].Rows); got != "[[0]]" {
		t.Errorf("last_insert_rowid() in a later call: %s, want [[0]] (a new connection's)", got)
	}
	if r[2].LastID == nil || *r[2].LastID != 0 {
		t.Errorf("LastInsertId of an upsert that updated, in a later call: %v, want 0", r[2].LastID)
	}
	// Within a transaction it is the transaction's insert's.
	r = must(t, in, "alpha", step{Op: "begin"}, exec("INSERT INTO t (n, v) VALUES ('mine', 3)"), query("SELECT last_insert_rowid()"), step{Op: "commit"})
	if got := fmt.Sprint(r[2].Rows); got != "[[3]]" {
		t.Errorf("last_insert_rowid() in the transaction that inserted: %s, want [[3]]", got)
	}
}
