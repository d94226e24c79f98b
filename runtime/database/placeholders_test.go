package database

import "testing"

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
	}
	for _, c := range cases {
		if got := questionMarksToDollars(c.in, c.args); got != c.want {
			t.Errorf("%q:\n got %q\nwant %q", c.in, got, c.want)
		}
	}
	// The statement filter reads what the plugin sent; the rewrite must
	// not show the server code the filter saw as a literal.
	q := "SELECT $a? $a$ AS p, set_config('search_path', 'x', false) AS s, $1::int AS n -- $a$"
	if deniedCommand(q) != "" || deniedCommand(questionMarksToDollars(q, 1)) != "" {
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
		"CREATE TEMP TABLE t (x int)", "CREATE TEMPORARY TABLE t (x int)", "create local temporary table t (x int)",
		"CREATE GLOBAL TEMP TABLE t (x int)", "CREATE OR REPLACE TEMP VIEW v AS SELECT 1", "CREATE TEMP SEQUENCE s",
		"SELECT * INTO TEMP t FROM notes", "SELECT 1 INTO TEMPORARY TABLE t", "CREATE TABLE pg_temp.t (x int)",
		`CREATE TABLE "pg_temp".t (x int)`,
		"WITH n AS (SELECT 1 AS x) SELECT x INTO TEMP t FROM n",
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
		// comments end at \r too; identifiers may hold $; backslashes may
		// escape quotes (standard_conforming_strings off)
		"SELECT 1; --\rSET search_path TO x", "SELECT 1 AS x$$a$; SET search_path TO x; SELECT $a$ $a$",
		"SELECT '\\''; SET search_path TO x; --'",
		// notifications
		"LISTEN c", "UNLISTEN *", "unlisten*", `LISTEN"c"`, "NOTIFY c, 'x'", "SELECT pg_notify('c', 'x')",
		"SELECT pg_catalog.pg_notify('c', 'x')",
	}
	for _, q := range denied {
		if deniedCommand(q) == "" {
			t.Errorf("%q not refused", q)
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
	}
	for _, q := range allowed {
		if cmd := deniedCommand(q); cmd != "" {
			t.Errorf("%q refused as %s", q, cmd)
		}
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
