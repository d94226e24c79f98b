package database

import (
	"strings"
	"testing"
	"time"

	"modernc.org/sqlite"
)

func TestQuestionMarksToDollars(t *testing.T) {
	cases := []struct {
		in   string
		args int
		want string
	}{
		{"SELECT ?", 1, "SELECT $1"},
		{"INSERT INTO t (a, b) VALUES (?, ?)", 2, "INSERT INTO t (a, b) VALUES ($1, $2)"},
		{"SELECT '?', ? -- why?\n, ?", 2, "SELECT '?', $1 -- why?\n, $2"},
		{`SELECT "a?b", ? /* ? /* nested ? */ ? */ , ?`, 2, `SELECT "a?b", $1 /* ? /* nested ? */ ? */ , $2`},
		{"SELECT $$ ? $$, $tag$ it's ? $tag$, ?", 1, "SELECT $$ ? $$, $tag$ it's ? $tag$, $1"},
		{"SELECT E'\\' ?', ?", 1, "SELECT E'\\' ?', $1"},
		{"SELECT 'it''s ?', ?", 1, "SELECT 'it''s ?', $1"},
		{"SELECT $1, data ? 'key'", 1, "SELECT $1, data ? 'key'"}, // already numbered: jsonb ? stays
		{"SELECT data ? 'key'", 0, "SELECT data ? 'key'"},         // no arguments: untouched
		{"SELECT a$1 FROM t WHERE x = ?", 1, "SELECT a$1 FROM t WHERE x = $1"},
		// PostgreSQL ends a -- comment at a carriage return too.
		{"SELECT 1 AS a --\r, ? AS b", 1, "SELECT 1 AS a --\r, $1 AS b"},
		{"SELECT $a? $a$ x $a$", 1, "SELECT $a $1 $a$ x $a$"},
		{"SELECT x FROM t WHERE y=x?", 1, "SELECT x FROM t WHERE y=x $1"},
		// $ continues an identifier: x$$a$ is not x and a dollar quote.
		{"SELECT 1 AS x$$a$, ? AS y", 1, "SELECT 1 AS x$$a$, $1 AS y"},
		{"SELECT 1 AS x$, ? AS y, $$?$$", 1, "SELECT 1 AS x$, $1 AS y, $$?$$"},
		// E'...' only when E is a token of its own: x$E'\' and xE'\' are
		// plain literals; a number ends before E.
		{"SELECT x$E'\\', ? FROM t", 1, "SELECT x$E'\\', $1 FROM t"},
		{"SELECT xE'\\', ? FROM t", 1, "SELECT xE'\\', $1 FROM t"},
		{"SELECT e'\\'', ?", 1, "SELECT e'\\'', $1"},
		{"SELECT 1 FROM t WHERE a=E'\\'' OR b=?", 1, "SELECT 1 FROM t WHERE a=E'\\'' OR b=$1"},
		{"SELECT 1E'\\'', ?", 1, "SELECT 1E'\\'', $1"},
		{"SELECT 1$a$ ? $a$, ?", 1, "SELECT 1$a$ ? $a$, $1"},
		// A literal continued on the next line keeps its escapes: E'a'
		// then '\' ? ' is one literal, and the ? after it the placeholder.
		{"SELECT E'a'\n'\\' ? ', ?", 1, "SELECT E'a'\n'\\' ? ', $1"},
		{"SELECT E'a' -- c\n\n  '\\' ? ', ?", 1, "SELECT E'a' -- c\n\n  '\\' ? ', $1"},
		{"SELECT E'a' '\\' ?, ' '", 1, "SELECT E'a' '\\' $1, ' '"}, // no newline: two literals
		// ?1 (SQLite's numbered form) is not $11.
		{"SELECT ?1", 1, "SELECT $1 1"},
	}
	for _, c := range cases {
		if got := questionMarksToDollars(c.in, c.args); got != c.want {
			t.Errorf("%q:\n got %q\nwant %q", c.in, got, c.want)
		}
	}
	// The statement filter reads what the plugin sent; the rewrite must
	// not show the server code the filter saw as a literal.
	q := "SELECT $a? $a$ AS p, set_config('search_path', 'x', false) AS s, $1::int AS n -- $a$"
	if deniedCommand(q, false) != "" || deniedCommand(questionMarksToDollars(q, 1), false) != "" {
		t.Errorf("%q rewritten to %q, which runs set_config", q, questionMarksToDollars(q, 1))
	}
}

func TestDeniedCommand(t *testing.T) {
	denied := []string{
		"SET ROLE x", "set role x", "SET SESSION ROLE x", "SET LOCAL ROLE x", "RESET ROLE", "reset role;",
		"SET SESSION AUTHORIZATION x", "RESET SESSION AUTHORIZATION", "SET search_path TO x",
		"SET search_path=x", "SET LOCAL search_path = x", "SET SCHEMA 'x'", "SELECT 1; SET ROLE x",
		"/* c */ SET ROLE x", "-- c\nSET ROLE x", `SET "role" x`, "SELECT 1;\n  RESET ROLE",
		"SELECT set_config('search_path', 'plugin_beta', false)", "select SET_CONFIG ( 'ROLE' , 'x', true)",
		"SELECT pg_catalog.set_config('session_authorization', 'x', false)",
		"ALTER ROLE CURRENT_USER PASSWORD 'x'", "alter user current_user set search_path = x",
		"ALTER ROLE CURRENT_USER SET statement_timeout = 0", "ALTER GROUP g ADD USER x", "SELECT 1; ALTER ROLE x NOLOGIN",
		// the database is the operator's (isolation = "schema" runs as
		// its owner, often)
		"ALTER DATABASE d CONNECTION LIMIT 0", "alter database d set local_preload_libraries = 'x'",
		"CREATE DATABASE d", "SELECT 1; DROP DATABASE d", "drop database if exists d",
		"CREATE TEMP TABLE t (x int)", "CREATE TEMPORARY TABLE t (x int)", "create local temporary table t (x int)",
		"CREATE GLOBAL TEMP TABLE t (x int)", "CREATE OR REPLACE TEMP VIEW v AS SELECT 1", "CREATE TEMP SEQUENCE s",
		"SELECT * INTO TEMP t FROM notes", "SELECT 1 INTO TEMPORARY TABLE t", "CREATE TABLE pg_temp.t (x int)",
		`CREATE TABLE "pg_temp".t (x int)`,
		"WITH n AS (SELECT 1 AS x) SELECT x INTO TEMP t FROM n",
		// A literal continued after a newline keeps E's escapes: the
		// server reads '\' ' as the rest of the E'' literal, so what
		// follows it is code.
		"SELECT E''\n'\\' ' INTO TEMP t --'", "SELECT E''\n'\\' ' ; LISTEN c; --'",
		"SELECT E'' -- c\n'\\' ' ; SET search_path TO x; --'", "SELECT E'x'\r\n \n'\\' ' ; SET ROLE x; --'",
		"SELECT e'x'\n'a'\n'\\' ' ; SET ROLE x; --'", "SELECT E'x'\v\n'\\' ' ; SET ROLE x; --'",
		// set_config's name in any form but a plain literal
		"SELECT set_config(E'search_path', 'x', false)", `SELECT "set_config"('search_path', 'x', false)`,
		"SELECT set_config(('search_path'), 'x', false)", `SELECT set_config(U&'search\005fpath', 'x', false)`,
		"SELECT set_config('search_' || 'path', 'x', false)", "SELECT set_config('search_'\n'path', 'x', false)",
		"SELECT set_config/**/('search_path', 'x', false)", "SELECT set_config(setting_name => 'search_path', new_value => 'x', is_local => false)",
		"SELECT set_config('search\\_path', 'x', false)", `SELECT U&"set\005fconfig"('search_path', 'x', false)`,
		"SELECT set_config(name, 'x', false) FROM t", "SELECT set_config('search_path'::text, 'x', false)",
		"UPDATE pg_settings SET setting = 'x' WHERE name = 'search_path'",
		"update pg_catalog . pg_settings set setting = 'x' where name = 'role'",
		// SET's name quoted, or with no space
		`SET"search_path" TO x`, `SET U&"search\005fpath" TO x`, `SET U&"search!005fpath" UESCAPE '!' TO x`,
		`SET "session_authorization" = x`, "SET role=x", "SET LOCAL role TO x",
		// temporary tables
		"SELECT 1 AS x INTO LOCAL TEMP t", "SELECT 1 AS x INTO GLOBAL TEMPORARY TABLE t", "SELECT*INTO TEMP t FROM n",
		// comments end at \r too; identifiers may hold $, and then E is no
		// escape string's: x$E'\' is x$E and a plain literal
		"SELECT 1; --\rSET search_path TO x", "SELECT 1 AS x$$a$; SET search_path TO x; SELECT $a$ $a$",
		`SELECT plugin_alpha.x$E'\'; SET search_path TO plugin_beta; --'`, `SELECT x$e'\'; RESET ROLE; --'`,
		`SELECT xE'\'; RESET ROLE; --'`,
		// a statement naming standard_conforming_strings is read both ways
		`SET standard_conforming_strings = off; SELECT '\''; SET search_path TO x; --'`,
		// notifications, also as a rule's action
		"LISTEN c", "UNLISTEN *", "unlisten*", `LISTEN"c"`, "NOTIFY c, 'x'", "SELECT pg_notify('c', 'x')",
		"SELECT pg_catalog.pg_notify('c', 'x')", "SELECT pg_notify /**/ ('c', 'x')",
		"CREATE RULE r AS ON INSERT TO j DO ALSO NOTIFY greenroom", "create rule r as on insert to j do notify c",
		"CREATE RULE r AS ON INSERT TO j DO INSTEAD (NOTIFY c)", "CREATE RULE r AS ON INSERT TO j DO ALSO (INSERT INTO k VALUES (1); NOTIFY c)",
		// SELECT ... INTO TEMP with a column labelled insert or merge, which
		// is no INSERT INTO temp
		`SELECT 1 AS "insert" INTO TEMP t`, "SELECT 1 insert INTO TEMP t", "SELECT 1 merge INTO TEMP t",
		"SELECT 1 AS insert INTO TEMP t", "SELECT (1) insert INTO TEMP t", "SELECT also insert INTO TEMP t FROM s",
		"SELECT explain insert INTO TEMP t FROM s", "SELECT not materialized(1) insert INTO TEMP t",
		"EXPLAIN ANALYZE SELECT 1 insert INTO TEMP t", "PREPARE p AS SELECT 1 AS insert INTO TEMP t",
		"PREPARE p AS SELECT 1 INTO TEMP t", "WITH a AS (SELECT 1) SELECT (1) merge INTO LOCAL TEMP t",
		// CREATE TEMP after EXPLAIN ANALYZE, which runs it
		"EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1", "EXPLAIN (ANALYZE) CREATE TEMPORARY TABLE t AS SELECT 1",
		"explain analyze create global temp table t as select 1",
		// pg_settings as an UPDATE's target, or under a view or rule an
		// UPDATE could go through
		"UPDATE ONLY (pg_settings) SET setting = 'x' WHERE name = 'search_path'",
		`UPDATE postgres.pg_catalog."pg_settings" SET setting = 'x' WHERE name = 'search_path'`,
		"WITH u AS (UPDATE pg_settings SET setting = 'x' WHERE name = 'search_path' RETURNING 1) SELECT * FROM u",
		"EXPLAIN ANALYZE UPDATE pg_settings SET setting = 'x' WHERE name = 'search_path'",
		"CREATE VIEW s AS SELECT * FROM pg_settings", `CREATE OR REPLACE VIEW s AS SELECT name, setting FROM pg_catalog."pg_settings"`,
		"CREATE RULE r AS ON UPDATE TO v DO INSTEAD UPDATE pg_settings SET setting = NEW.x WHERE name = NEW.n",
		"CREATE VIEW s AS TABLE pg_settings",
		// aggregates whose support function is set_config, or named by a
		// string
		"CREATE AGGREGATE a(text, boolean) (SFUNC = 'set_config', STYPE = text, INITCOND = 'search_path')",
		"CREATE AGGREGATE a(text, boolean) (sfunc = set_config, stype = text, initcond = 'search_path')",
		"CREATE OR REPLACE AGGREGATE a(text, boolean) (SFUNC = pg_catalog.set_config, STYPE = text, INITCOND = 'role')",
		"CREATE AGGREGATE a (BASETYPE = text, SFUNC = E'set_config', STYPE = text)",
		`CREATE AGGREGATE a(text, boolean) (SFUNC = U&'set\005fconfig', STYPE = text, INITCOND = 'search_path')`,
		"CREATE AGGREGATE a(text, boolean) (SFUNC = $$set_config$$, STYPE = text, INITCOND = 'search_path')",
		`CREATE AGGREGATE a(text) (SFUNC = textcat, STYPE = text, FINALFUNC = "set_config")`,
		// the runtime's bound on an idle transaction
		"SET LOCAL idle_in_transaction_session_timeout = 0", "set idle_in_transaction_session_timeout to default",
		"RESET idle_in_transaction_session_timeout", "SELECT set_config('idle_in_transaction_session_timeout', '0', true)",
		// COPY's data stream
		"COPY t FROM STDIN", "COPY t TO stdout", "COPY (SELECT 1) TO STDOUT WITH (FORMAT csv)", "copy t (a, b) from stdin;",
	}
	for _, q := range denied {
		for _, backslashes := range []bool{false, true} {
			if deniedCommand(q, backslashes) == "" {
				t.Errorf("%q not refused (backslashes %v)", q, backslashes)
			}
		}
	}
	// Refused where standard_conforming_strings is off, when a backslash
	// escapes a quote in every literal; read with it on, as the server
	// then reads them, they hide nothing.
	backslashes := []string{
		"SELECT '\\''; SET search_path TO x; --'", `SELECT 'a\''; RESET ROLE; --'`,
		`SELECT '\', '; SET ROLE x; --'`,
	}
	for _, q := range backslashes {
		if deniedCommand(q, true) == "" {
			t.Errorf("%q not refused with backslashes", q)
		}
		if cmd := deniedCommand(q, false); cmd != "" {
			t.Errorf("%q refused as %s without backslashes", q, cmd)
		}
	}
	allowed := []string{
		"SELECT 'SET ROLE x'", "SELECT 1 -- SET ROLE x", "SET statement_timeout = 1000", "RESET ALL",
		"SET TIME ZONE 'UTC'", "INSERT INTO roles (role) VALUES ('x')", "SELECT $$; SET ROLE x$$",
		"UPDATE t SET role = 'x'", "SET application_name = 'x'",
		"SELECT 'ALTER ROLE x'", "ALTER TABLE notes ADD COLUMN role text", "CREATE TABLE temp (x int)",
		"CREATE TABLE t (temp int)", "SELECT set_config('statement_timeout', '1000', false)",
		"SELECT my_set_config('role')", "SELECT pg_temp_stats FROM t", "INSERT INTO temp VALUES (1)",
		"SELECT 'pg_temp.t'", "DO $$ BEGIN EXECUTE 'ALTER ROLE x'; END $$",
		"WITH n AS (SELECT 1) INSERT INTO temp SELECT * FROM n", "INSERT INTO temp SELECT 1",
		"SELECT set_config( 'statement_timeout' , '1000', false)", "SELECT 'C:\\dir', 'SET ROLE x'",
		"SELECT $a$ SET ROLE x $a$, x$y FROM t", "SELECT 'listen', notify_me FROM pg_settings",
		"UPDATE t SET x = 1 -- pg_settings", "SELECT 1 INTO t", "INSERT INTO t SELECT 1 FROM local",
		// a backslash is a character of a plain literal
		`SELECT replace(path, '\', '/') FROM files WHERE note = 'uses pg_notify'`,
		`INSERT INTO help VALUES ('paths', 'Use C:\'), ('notify', 'We notify you; listen for updates')`,
		`SELECT * FROM files WHERE path LIKE 'a\_%' ESCAPE '\' AND kind = 'pg_temp'`,
		`SELECT E'\'; SET ROLE x; --'`, `SELECT e'it\'s'`, `SET standard_conforming_strings = on`,
		// pg_temp that qualifies no name; a function's own search_path
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT 1 $$",
		"ALTER FUNCTION f() SET search_path = x, pg_temp", `SELECT 1 AS "pg_temp"`, "SELECT 1 AS pg_temp",
		"CREATE PROCEDURE p() LANGUAGE sql SET search_path = pg_temp AS $$ SELECT 1 $$", "ALTER ROUTINE f() RESET search_path",
		// columns and aliases named set_config, pg_notify or notify
		"CREATE TABLE s (set_config text, pg_notify text)", "SELECT * FROM t AS pg_notify", "SELECT set_config, pg_notify FROM s",
		"CREATE TABLE prefs (notify boolean)", "SELECT notify FROM prefs", "SELECT count(notify) FROM prefs WHERE notify",
		"CREATE RULE r AS ON INSERT TO j DO ALSO INSERT INTO log VALUES ('notify')",
		// reading pg_settings, also to update another table
		"WITH s AS (SELECT setting FROM pg_settings WHERE name = 'work_mem') UPDATE config SET v = s.setting FROM s WHERE config.name = 'work_mem'",
		"UPDATE config c SET v = s.setting FROM pg_settings s WHERE s.name = c.name",
		"CREATE TABLE settings AS SELECT name, setting FROM pg_settings", "SELECT * FROM pg_settings FOR UPDATE",
		// INSERT INTO and MERGE INTO a table named temp, wherever a command
		// may be
		"MERGE INTO temp t USING s ON t.x = s.x WHEN NOT MATCHED THEN INSERT VALUES (s.x)",
		"WITH s AS (SELECT 1 AS x) MERGE INTO temp t USING s ON t.x = s.x WHEN MATCHED THEN DELETE",
		"EXPLAIN ANALYZE INSERT INTO temp VALUES (1)", "EXPLAIN (ANALYZE, VERBOSE) INSERT INTO temp VALUES (1)",
		"PREPARE p AS INSERT INTO temp VALUES (1)", "PREPARE p (int) AS INSERT INTO temp VALUES ($1)",
		"WITH a AS (INSERT INTO temp VALUES (1) RETURNING x) SELECT * FROM a",
		"WITH a AS MATERIALIZED (SELECT 1) INSERT INTO temp SELECT * FROM a",
		"WITH a AS NOT MATERIALIZED (INSERT INTO local VALUES (1) RETURNING x) SELECT * FROM a",
		"CREATE RULE r AS ON INSERT TO j DO ALSO INSERT INTO temp VALUES (NEW.x)",
		"CREATE RULE r AS ON INSERT TO j DO INSTEAD (INSERT INTO temp VALUES (NEW.x); INSERT INTO global VALUES (NEW.x))",
		"EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1", "SELECT 1 AS x INTO t",
		// aggregates over other functions, by name
		"CREATE AGGREGATE total(int) (SFUNC = int4pl, STYPE = int)",
		"CREATE AGGREGATE a(text) (SFUNC = pg_catalog.textcat, STYPE = text, INITCOND = '')",
		// COPY to and from nowhere else is the server's to refuse
		"SELECT 'stdin', stdout FROM t", "CREATE TABLE copy_log (stdin text)",
		"SELECT 'a'::x$e", "SELECT x$e FROM t",
		// continued literals, read as the server does: all text
		"SELECT 'a'\n'; SET ROLE x'", "SELECT E'a\\''\n'; SET ROLE x'", "SELECT 'a' -- c\n'; LISTEN c'",
	}
	for _, q := range allowed {
		if cmd := deniedCommand(q, false); cmd != "" {
			t.Errorf("%q refused as %s", q, cmd)
		}
	}
}

// ALTER TABLE names its database in arg1: DROP COLUMN passes the column
// where other actions pass the database.
func TestAuthorizeAlterTable(t *testing.T) {
	cases := []struct {
		arg1, arg2, db string
		want           sqlite.AuthorizerReturnCode
	}{
		{"main", "t", "c", sqlite.AuthorizerOK}, // DROP COLUMN c
		{"main", "t", "", sqlite.AuthorizerOK},  // ADD COLUMN, RENAME
		{"temp", "t", "c", sqlite.AuthorizerOK},
		{"other", "t", "", sqlite.AuthorizerDeny},
		{"other", "t", "main", sqlite.AuthorizerDeny},
	}
	for _, c := range cases {
		if got := authorize(sqlite.AuthAlterTable, c.arg1, c.arg2, c.db, ""); got != c.want {
			t.Errorf("ALTER TABLE %s.%s (%q): %v, want %v", c.arg1, c.arg2, c.db, got, c.want)
		}
	}
	if got := authorize(sqlite.AuthInsert, "t", "", "other", ""); got != sqlite.AuthorizerDeny {
		t.Errorf("INSERT INTO other.t: %v", got)
	}
}

func TestRoleAndSchemaNames(t *testing.T) {
	long := "a234567890123456789012345678901234567890123456789012345678901-z"
	for _, id := range []string{"todo", "my-plugin", long} {
		r, s := RoleName("greenroom", id), SchemaName(id)
		if len(r) > 63 || len(s) > 63 {
			t.Errorf("%s: role %q schema %q longer than 63 bytes", id, r, s)
		}
	}
	if RoleName("db1", "todo") == RoleName("db2", "todo") {
		t.Error("two databases share a role name")
	}
	if SchemaName("a-b") != "plugin_a_b" || SchemaName(long) == SchemaName(long[:len(long)-1]+"y") {
		t.Error("schema names collide")
	}
}

// adversarialStatements are statements of about 1 MiB (the largest a
// plugin may send) that made the filter quadratic: every INSERT INTO TEMP
// or PREPARE ... AS INSERT INTO TEMP after a closing parenthesis searched
// back for its opening one.
func adversarialStatements(n int) map[string]string {
	return map[string]string{
		"with":         "select 1 " + strings.Repeat("as(", n) + strings.Repeat(")insert into temp ", n),
		"materialized": "select 1 " + strings.Repeat("as materialized(", n/4) + strings.Repeat(")insert into temp ", n/4),
		"settings":     "select 1 " + strings.Repeat("as(", n) + strings.Repeat(")insert into temp ", n) + "-- standard_conforming_strings",
	}
}

// The filter reads a statement in time linear in its length: a hostile 1
// MiB statement is checked in a few milliseconds (it took seconds of host
// CPU, past the call's deadline, when the filter was quadratic). The bound
// is generous for a slow shared machine.
func TestDeniedCommandLinear(t *testing.T) {
	for name, q := range adversarialStatements(49000) {
		for _, backslashes := range []bool{false, true} {
			start := time.Now()
			deniedCommand(q, backslashes)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("%s (%d bytes, backslashes %v): checked in %s, want well under a second", name, len(q), backslashes, took)
			}
		}
	}
}

func BenchmarkDeniedCommandAdversarial(b *testing.B) {
	q := adversarialStatements(49000)["settings"]
	b.SetBytes(int64(len(q)))
	for b.Loop() {
		deniedCommand(q, true)
	}
}

// PostgreSQL's lexer takes time quadratic in how deep /* */ comments nest,
// and is deaf to cancels and pg_terminate_backend meanwhile: an audit held
// another plugin's lock for a minute with "SELECT 1 " and 35,000 openers.
func TestDeniedDeepComments(t *testing.T) {
	deep := strings.Repeat("/*", maxCommentDepth+1)
	denied := []string{
		"SELECT 1 " + deep,
		"SELECT 1 " + deep + strings.Repeat("*/", maxCommentDepth+1),
		// a DO block's body is lexed when it runs
		"DO $$ BEGIN PERFORM 1; " + deep + strings.Repeat("*/", maxCommentDepth+1) + " END $$",
		"SELECT '" + deep + "'",
	}
	for _, q := range denied {
		if got := deniedCommand(q, false); !strings.Contains(got, "nested") {
			t.Errorf("%.40q...: got %q, want refused for nesting", q, got)
		}
	}
	allowed := []string{
		"SELECT 1 " + strings.Repeat("/*", maxCommentDepth) + strings.Repeat("*/", maxCommentDepth),
		"SELECT 1 " + strings.Repeat("/* c */", 10*maxCommentDepth), // many, not deep
		"SELECT 1 /* a /* b */ c */",
	}
	for _, q := range allowed {
		if got := deniedCommand(q, false); got != "" {
			t.Errorf("%.40q...: refused as %q", q, got)
		}
	}
}
