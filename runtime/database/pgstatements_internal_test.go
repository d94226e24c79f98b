package database

import (
	"fmt"
	"testing"
)

// pgStatementStarts finds each statement PostgreSQL runs of a query
// string, to name the line of a migration's failing statement when the
// server's error gives no position.
func TestPGStatementStarts(t *testing.T) {
	for _, tc := range []struct {
		q           string
		backslashes bool
		want        []int
	}{
		{"", false, nil},
		{";; ;\n-- c\n/* d */ ;", false, nil},
		{"SELECT 1", false, []int{0}},
		{"SELECT 1; SELECT 2;", false, []int{0, 10}},
		{"  -- c; d\n  SELECT 1;SELECT 2", false, []int{12, 21}},
		{"SELECT ';', \"a;b\", $$;$$, $x$ $$; $x$ /* /* ; */ ; */; SELECT 2", false, []int{0, 55}},
		{"SELECT E'\\';'; SELECT 2", false, []int{0, 15}},
		// With standard_conforming_strings off a backslash escapes a
		// quote in every literal.
		{"SELECT '\\';'; SELECT 2", true, []int{0, 14}},
		{"SELECT '\\'; SELECT 2", false, []int{0, 12}},
		{"DO $$ BEGIN PERFORM 1; END $$; SELECT 2", false, []int{0, 31}},
		// A function's SQL-standard body ends at its END.
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT 3", false, []int{0, 83}},
		{"CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END;\nSELECT 3", false, []int{0, 89}},
		// An empty body ends where it begins.
		{"CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC END; SELECT 2; SELECT 3", false, []int{0, 64, 74}},
		// A rule's actions in parentheses are its statement's.
		{"CREATE RULE r AS ON UPDATE TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO a VALUES (2));\nINSERT INTO t VALUES (NULL)", false, []int{0, 94}},
		// begin and atomic as two columns open no body.
		{"SELECT begin, atomic FROM t; SELECT 2", false, []int{0, 29}},
	} {
		if got := pgStatementStarts(tc.q, tc.backslashes); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("pgStatementStarts(%q, %v) = %v, want %v", tc.q, tc.backslashes, got, tc.want)
		}
	}
}
