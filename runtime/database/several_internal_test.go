package database

import "testing"

func TestSecondStatement(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want int
	}{
		{"SELECT 1", -1},
		{"SELECT 1;", -1},
		{"SELECT 1;  ;\n-- done\n/* and */ ; ", -1},
		{"SELECT ';' || \"a;b\" || `c;d` || [e;f] FROM t", -1},
		{"SELECT 'it''s; fine'", -1},
		{"SELECT 1 -- ; SELECT 2\n", -1},
		{"SELECT 1 /* ; SELECT 2 */", -1},
		{"SELECT 1 /* unterminated ; SELECT 2", -1},
		{"SELECT 'unterminated ; SELECT 2", -1},
		{"SELECT 1; SELECT 2", 10},
		{"SELECT 1;SELECT 2", 9},
		{"SELECT 1; -- c\nDELETE FROM t", 15},
		{"SELECT 1 ; /* c */ ; x", 21},
		{"INSERT INTO t VALUES (?); INSERT INTO t VALUES (?)", 26},
		{"SELECT [a]]; SELECT 2", 13},
		// A trigger's body holds statements: it ends at "; END;".
		{"  /* c */ create TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM u; END; SELECT 1", 72},
		{"CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM u; UPDATE v SET x = CASE WHEN y THEN 1 END; END", -1},
		{"CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT ';END;'; END ; ;\n x", 67},
		{"EXPLAIN QUERY PLAN CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END; SELECT 2", 76},
		{"CREATE TABLE a (x); CREATE TABLE b (y)", 20},
		{"CREATE TABLE trigger (end); SELECT 1", 28},
		{"CREATE VIEW v AS SELECT 1; DELETE FROM t", 27},
		{"SELECT 1end; SELECT 2", 13},
		{"SELECT x$end; SELECT 2", 14},
		{"SELECT \u00e9end; SELECT 2", 14},
		{"", -1},
		{";;", -1},
	} {
		if got := secondStatement(tc.q); got != tc.want {
			t.Errorf("secondStatement(%q) = %d, want %d", tc.q, got, tc.want)
		}
	}
}
