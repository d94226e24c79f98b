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
		{"  /* c */ create TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM u; END; SELECT 1", -1},
		{"CREATE TABLE a (x); CREATE TABLE b (y)", -1},
		{"", -1},
		{";;", -1},
	} {
		if got := secondStatement(tc.q); got != tc.want {
			t.Errorf("secondStatement(%q) = %d, want %d", tc.q, got, tc.want)
		}
	}
}
