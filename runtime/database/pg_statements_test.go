package database_test

import (
	"context"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/jackc/pgx/v5/pgconn"
)

// pgStatementStarts finds the statements PostgreSQL itself runs of a
// query string, as the server counts them: each file below, sent whole in
// a transaction (as a migration is), completes as many statements as it
// lists, with standard_conforming_strings on and off. The shapes are those
// where a semicolon does not end a statement (literals of every kind,
// comments, a function's BEGIN ATOMIC body, empty ones too, a rule's
// actions in parentheses) or where words look like such a body's.
func TestPGStatementStartsAsTheServerRuns(t *testing.T) {
	ctx := context.Background()
	c, err := pgconn.Connect(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE TABLE t (x int); CREATE TABLE a (x int)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	files := []string{
		"SELECT 1; SELECT ';'; SELECT $$;$$; SELECT $a$ ; $$ ; $a$",
		"SELECT /* ; /* ; */ ; */ 2;\n-- ; c\nSELECT \"a;b\" FROM (SELECT 1 AS \"a;b\") s;;",
		"SELECT E'\\';'; SELECT 'a'\n';'; SELECT B'101', X'1F', N'n;'",
		"SELECT U&'!0041;' UESCAPE '!'; SELECT U&\"a;\" FROM (SELECT 1 AS \"a;\") s",
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT ';'; SELECT 1; END; SELECT 2",
		"CREATE FUNCTION g() RETURNS void LANGUAGE sql BEGIN ATOMIC END; SELECT 2; SELECT 3",
		"CREATE PROCEDURE p() BEGIN ATOMIC ; INSERT INTO a VALUES (1); ; END;\nSELECT 2",
		"CREATE FUNCTION h() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END; SELECT 2",
		"CREATE FUNCTION k(begin int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT (begin); END; SELECT 1 AS begin, 2 AS atomic",
		"CREATE RULE r AS ON UPDATE TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO a VALUES (2));\nINSERT INTO t VALUES (1)",
		"CREATE RULE q AS ON DELETE TO t DO INSTEAD (SELECT 1; ; SELECT 2); SELECT 3",
		"DO $$ BEGIN PERFORM 1; END $$; SELECT x$y$ FROM (SELECT 1 AS x$y$) s; SAVEPOINT s; RELEASE SAVEPOINT s",
	}
	for _, scs := range []string{"on", "off"} {
		if _, err := c.Exec(ctx, "SET standard_conforming_strings = "+scs+"; SET escape_string_warning = off").ReadAll(); err != nil {
			t.Fatal(err)
		}
		for _, q := range files {
			if scs == "off" {
				if strings.Contains(q, "U&'") {
					continue // refused with standard_conforming_strings off
				}
				q = strings.ReplaceAll(q, "E'\\';'", "'\\';'")
			}
			c.Exec(ctx, "BEGIN").ReadAll()
			rs, err := c.Exec(ctx, q).ReadAll()
			c.Exec(ctx, "ROLLBACK").ReadAll()
			if err != nil {
				t.Errorf("standard_conforming_strings %s: %q: %v", scs, q, err)
				continue
			}
			if got := database.PGStatementStarts(q, scs == "off"); len(got) != len(rs) {
				t.Errorf("standard_conforming_strings %s: %q: the server ran %d statements, pgStatementStarts finds %d (at %v)", scs, q, len(rs), len(got), got)
			}
		}
	}
}
