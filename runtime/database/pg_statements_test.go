package database_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"
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

// A PostgreSQL migration's file after which the server's transaction is no
// longer open fails, whatever got past the filter that refuses COMMIT and
// the like (applyOne): recorded as applied, the file would be taken for
// one that ran whole in its transaction, and the transaction id recorded
// for it would be that of a transaction of its own.
func TestPGMigrationLeavingItsTransactionFails(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("pgx", pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct {
		q    string
		done int
		left bool
	}{
		{"CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)", 2, false},
		{"CREATE TABLE a (x int); COMMIT; CREATE TABLE b (x int)", 3, true},
		{"CREATE TABLE c (x int); ROLLBACK", 2, true},
		{"CREATE TABLE d (x int); COMMIT; BEGIN; CREATE TABLE e (x int)", 4, false},
	} {
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		done, err := database.PGExecCounting(ctx, conn, tx, tc.q)
		if done != tc.done {
			t.Errorf("%q: %d statements done, want %d", tc.q, done, tc.done)
		}
		if left := err != nil && strings.Contains(err.Error(), "ended the transaction it runs in"); left != tc.left || (err != nil && !left) {
			t.Errorf("%q: error %v, want the transaction's end told: %v", tc.q, err, tc.left)
		}
		tx.Rollback()
		conn.Raw(func(any) error { return driver.ErrBadConn })
		conn.Close()
	}
}
