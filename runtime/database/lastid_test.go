package database_test

import "testing"

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
