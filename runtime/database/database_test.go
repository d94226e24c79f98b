package database_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// Two plugins with tables of the same name each see only their own rows.
func TestSameTableNamesAreSeparate(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", ""), plugin("beta", true, "good", ""))
		must(t, in, "alpha", exec("INSERT INTO notes (note) VALUES (?)", "alpha's"))
		must(t, in, "beta", exec("INSERT INTO notes (note) VALUES ($1)", "beta's 1"), exec("INSERT INTO notes (note) VALUES (?)", "beta's 2"))
		for id, want := range map[string]int{"alpha": 1, "beta": 2} {
			r := must(t, in, id, query("SELECT note FROM notes ORDER BY note"))[0]
			if len(r.Rows) != want || !strings.HasPrefix(r.Rows[0][0].(string), id) {
				t.Errorf("%s sees %v", id, r.Rows)
			}
		}
	})
}

// Hostile SQL from one plugin must not reach another plugin's data, the
// runtime's tables, the server's files or other roles.
func TestIsolationHostileSQL(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", ""), plugin("beta", true, "good", ""))
		must(t, in, "beta", exec("INSERT INTO notes (note) VALUES ('beta secret')"))
		var hostile []string
		switch b.name {
		case "pg":
			betaRole := database.RoleName(dbName(t, in), "beta")
			hostile = []string{
				// another plugin's table, by qualified name, and writes to it
				"SELECT * FROM plugin_beta.notes",
				"INSERT INTO plugin_beta.notes (note) VALUES ('x')",
				"DROP TABLE plugin_beta.notes",
				"CREATE TABLE plugin_beta.evil (x int)",
				"GRANT USAGE ON SCHEMA plugin_beta TO CURRENT_USER",
				// becoming someone else
				"SET ROLE " + betaRole,
				"SET ROLE postgres",
				"SET LOCAL ROLE postgres",
				"RESET ROLE",
				"SET SESSION AUTHORIZATION postgres",
				"RESET SESSION AUTHORIZATION",
				"SELECT set_config('role', 'postgres', false)",
				"SELECT set_config('session_authorization', 'postgres', false)",
				// another schema through search_path
				"SET search_path TO plugin_beta",
				"SET search_path = plugin_beta, public",
				"SET SCHEMA 'plugin_beta'",
				"SELECT 1; SET search_path TO plugin_beta",
				"SELECT set_config('search_path', 'plugin_beta', false)",
				"SELECT set_config(E'search_path', 'plugin_beta', false)",
				`SELECT "set_config"('search_path', 'plugin_beta', false)`,
				"SELECT set_config(('search_path'), 'plugin_beta', false)",
				`SELECT set_config(U&'search\005fpath', 'plugin_beta', false)`,
				"SELECT set_config('search_' || 'path', 'plugin_beta', false)",
				"UPDATE pg_settings SET setting = 'plugin_beta' WHERE name = 'search_path'",
				`SET"search_path" TO plugin_beta`,
				`SET U&"search\005fpath" TO plugin_beta`,
				"SELECT 1; --\rSET search_path TO plugin_beta",
				"SELECT 1 AS x$$a$; SET search_path TO plugin_beta; SELECT $a$ $a$",
				// the runtime's tables
				"SELECT * FROM greenroom.plugin_migrations",
				"SELECT * FROM greenroom.runtime_secrets",
				"SELECT * FROM greenroom.greenroom_migrations",
				"SELECT * FROM pg_authid",
				// the server's files and programs
				"SELECT pg_read_file('/etc/passwd')",
				"SELECT pg_read_binary_file('/etc/passwd')",
				"SELECT pg_ls_dir('.')",
				"SELECT lo_import('/etc/passwd')",
				"COPY notes TO PROGRAM 'id'",
				"COPY notes FROM PROGRAM 'id'",
				"COPY notes FROM '/etc/passwd'",
				"COPY notes TO '/tmp/greenroom-escape'",
				"CREATE EXTENSION IF NOT EXISTS pgcrypto",
				"CREATE EXTENSION IF NOT EXISTS dblink",
				// privileges
				"ALTER ROLE CURRENT_USER SUPERUSER",
				"ALTER ROLE CURRENT_USER CREATEROLE",
				"ALTER ROLE CURRENT_USER CREATEDB",
				"ALTER ROLE postgres PASSWORD 'owned'",
				"ALTER ROLE " + betaRole + " PASSWORD 'owned'",
				"ALTER ROLE CURRENT_USER PASSWORD 'owned'",
				"ALTER USER CURRENT_USER PASSWORD 'owned'",
				"ALTER ROLE CURRENT_USER SET search_path = plugin_beta",
				"CREATE ROLE evil LOGIN",
				"GRANT " + betaRole + " TO CURRENT_USER",
				// objects outside its schema
				"CREATE TABLE public.evil (x int)",
				"CREATE SCHEMA evil",
				"CREATE DATABASE evil",
				"CREATE TABLE greenroom.evil (x int)",
				"CREATE TEMP TABLE evil (x int)",
				"SELECT * INTO TEMP evil FROM notes",
				"CREATE TABLE pg_temp.evil (x int)",
				"SELECT 1 AS x INTO LOCAL TEMP evil",
				"SELECT 1 AS x INTO GLOBAL TEMPORARY TABLE evil",
				"SELECT*INTO TEMP evil FROM notes",
				// the server's configuration, native code, other servers:
				// each refused by the server for lack of privilege
				"ALTER SYSTEM SET work_mem = '1GB'",
				"SELECT pg_reload_conf()",
				"SELECT pg_stat_file('/etc/passwd')",
				"LOAD 'auto_explain'",
				"CREATE FUNCTION evil() RETURNS int LANGUAGE c AS 'libc.so.6', 'system'",
				"CREATE FUNCTION evil(cstring) RETURNS int LANGUAGE internal AS 'int4in'",
				"CREATE EXTENSION file_fdw",
				"CREATE EXTENSION postgres_fdw",
				"CREATE FOREIGN DATA WRAPPER evil",
				// what the statement filter does not read, the role's
				// privileges refuse
				"DO $$ BEGIN EXECUTE 'SET ROLE postgres'; END $$",
				"DO $$ BEGIN EXECUTE 'SET SESSION AUTHORIZATION postgres'; END $$",
				"DO $$ BEGIN EXECUTE 'SET ROLE " + betaRole + "'; END $$",
				"DO $$ BEGIN EXECUTE 'SET search_path = plugin_beta'; PERFORM * FROM notes; END $$",
				"SELECT query_to_xml('SELECT * FROM plugin_beta.notes', true, true, '')",
				// notifications, which a plugin cannot receive
				"LISTEN greenroom",
				"UNLISTEN *",
				"NOTIFY greenroom",
				"SELECT pg_notify('greenroom', 'x')",
			}
		case "sqlite":
			dir := strings.TrimPrefix(strings.Trim(strings.Split(dbconf, "connection = ")[1], "\"\n"), "file:")
			beta := filepath.Join(dir, "plugins", "beta.db")
			runtimeDB := filepath.Join(dir, "greenroom.db")
			escape := filepath.Join(t.TempDir(), "escape.db")
			hostile = []string{
				"ATTACH DATABASE '" + beta + "' AS beta",
				"ATTACH DATABASE '" + runtimeDB + "' AS rt",
				"ATTACH DATABASE ':memory:' AS m",
				"ATTACH DATABASE (SELECT '" + beta + "') AS beta",
				"SELECT * FROM beta.notes",
				"VACUUM INTO '" + escape + "'",
				"VACUUM",
				"SELECT load_extension('/usr/lib/x86_64-linux-gnu/libm.so.6')",
				"SELECT fts3_tokenizer('simple')",
				"PRAGMA temp_store_directory = '/tmp'",
				"PRAGMA database_list",
				"SELECT * FROM pragma_database_list",
				"PRAGMA writable_schema = ON",
				"PRAGMA journal_mode = DELETE",
				"PRAGMA locking_mode = EXCLUSIVE",
				"PRAGMA cache_size = -100000000",
				"PRAGMA mmap_size = 1000000000",
				"SELECT 1; ATTACH DATABASE '" + beta + "' AS beta",
				"ATTACH DATABASE 'file:" + beta + "?mode=ro' AS beta",
				"ATTACH DATABASE 'file:/etc/passwd?mode=ro' AS p",
				"ATTACH DATABASE 'file::memory:?cache=shared' AS m",
				"PRAGMA query_only = OFF",
				"PRAGMA trusted_schema = ON",
				"PRAGMA max_page_count = 2147483647",
				"PRAGMA main.journal_size_limit = -1",
				"PRAGMA hard_heap_limit = 0",
				"PRAGMA busy_timeout = 100000000",
				"PRAGMA compile_options",
				// An empty value is a value: these set, not read.
				"PRAGMA page_size = ''",
				"PRAGMA schema_version = ''",
				`PRAGMA main.page_size = ""`,
				"PRAGMA journal_mode = ''",
				// the CLI's file functions do not exist
				"SELECT readfile('/etc/passwd')",
				"SELECT writefile('" + escape + "', 'x')",
				"SELECT * FROM fsdir('/')",
				"CREATE VIRTUAL TABLE d USING sqlite_dbpage",
			}
			defer func() {
				if _, err := os.Stat(escape); err == nil {
					t.Errorf("VACUUM INTO wrote %s", escape)
				}
			}()
		}
		for _, sql := range hostile {
			for _, op := range []string{"exec", "query"} {
				r := run(t, in, "alpha", step{Op: op, SQL: sql})[0]
				t.Logf("%s %s: %s %s", op, sql, r.Kind, r.Error)
				if r.Error == "" {
					t.Errorf("%s %q was not refused: %+v", op, sql, r)
				} else if b.name == "sqlite" && r.Kind != "denied" && !strings.Contains(r.Error, "no such") {
					// What exists and the sandbox refuses is ErrDenied, as
					// the SDK documents (load_extension was ErrFailed).
					t.Errorf("%s %q: %s %s, want denied", op, sql, r.Kind, r.Error)
				}
			}
		}
		if b.name == "pg" {
			// Nor can it cancel or end the backends of another plugin,
			// or the runtime's own.
			betaRole, runtimeUser := database.RoleName(dbName(t, in), "beta"), ""
			must(t, in, "beta", query("SELECT count(*) FROM notes")) // a backend of beta's
			for _, r := range must(t, in, "alpha", query("SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database() AND usename IS NOT NULL"))[0].Rows {
				if u := r[0].(string); !strings.HasPrefix(u, "gr_") {
					runtimeUser = u
				}
			}
			for _, role := range []string{betaRole, runtimeUser} {
				for _, f := range []string{"pg_cancel_backend", "pg_terminate_backend"} {
					sql := "SELECT " + f + "(pid) FROM pg_stat_activity WHERE usename = ?"
					if n := must(t, in, "alpha", query("SELECT count(*) FROM pg_stat_activity WHERE usename = ?", role))[0].Rows[0][0]; n == float64(0) {
						t.Errorf("no backend of %q to try %s on", role, f)
					}
					if r := run(t, in, "alpha", query(sql, role))[0]; r.Kind != "denied" {
						t.Errorf("%s of %q's backends: %s %q, want denied", f, role, r.Kind, r.Error)
					}
				}
			}
			// A session can turn standard_conforming_strings off; then a
			// backslash escapes a quote in every literal.
			r := run(t, in, "alpha", step{Op: "begin"}, exec("SET LOCAL standard_conforming_strings = off"),
				exec(`SELECT '\''; SET search_path TO plugin_beta; --'`), query("SELECT current_setting('search_path')"), step{Op: "rollback"})
			if r[2].Error == "" {
				t.Errorf("SET search_path hidden by a backslash was not refused: %+v", r[3])
			}
		}
		// Nothing reached beta, and alpha still works.
		if n := count(t, in, "beta", "notes"); n != 1 {
			t.Errorf("beta has %d notes after the attacks, want 1", n)
		}
		must(t, in, "alpha", exec("INSERT INTO notes (note) VALUES ('still fine')"), query("SELECT * FROM notes"))
		if b.name == "sqlite" {
			// Inspecting its own schema is allowed.
			must(t, in, "alpha", query("PRAGMA table_info(notes)"), query("SELECT name FROM sqlite_master"))
		} else {
			r := must(t, in, "alpha", query("SELECT current_user, current_setting('search_path')"))[0]
			if got := r.Rows[0]; !strings.HasPrefix(got[0].(string), "gr_") || got[1] != "plugin_alpha" {
				t.Errorf("alpha's session is %v", got)
			}
		}
	})
}

// A plugin's SQLite connections run in SQLite's defensive mode, which
// makes read-only what the authorizer lets through but no plugin may
// write: the raw pages of its file (sqlite_dbpage, which it may read), the
// schema table, and the shadow tables of its FTS5 and R*Tree tables. Writing
// any of those would let a plugin hand SQLite a corrupt file or index: pages
// and records its code (C compiled to Go, in the runtime's process) reads
// as they are, without the checks SQL writes pass. Nothing tested the mode
// (the connector's _defensive=1): without it, the first statement below
// wrote zeros over page 1 of the plugin's file ("file is not a database"
// after).
func TestSQLiteDefensiveMode(t *testing.T) {
	in := start(t, backends[0].conf(t), plugin("alpha", true, "good", ""))
	must(t, in, "alpha",
		exec("CREATE VIRTUAL TABLE ft USING fts5(a)"), exec("INSERT INTO ft VALUES ('hello')"),
		exec("CREATE VIRTUAL TABLE r USING rtree(id, a, b)"), exec("INSERT INTO r VALUES (1, 0, 1)"),
		query("SELECT pgno FROM sqlite_dbpage WHERE pgno = 1"))
	for _, sql := range []string{
		"UPDATE sqlite_dbpage SET data = zeroblob(4096) WHERE pgno = 1",
		"INSERT INTO sqlite_dbpage (pgno, data) VALUES (1000, zeroblob(4096))",
		"DELETE FROM sqlite_dbpage",
		"UPDATE sqlite_schema SET sql = 'CREATE TABLE notes (x)' WHERE name = 'notes'",
		"DELETE FROM sqlite_master WHERE name = 'notes'",
		"INSERT INTO ft_data VALUES (10, x'00')",
		"UPDATE ft_data SET block = x'ffffffff'",
		"DELETE FROM ft_config",
		"DROP TABLE ft_idx",
		"ALTER TABLE ft_content RENAME TO x",
		"UPDATE r_node SET data = x'00'",
		"INSERT INTO r_parent VALUES (5, 6)",
		"DELETE FROM r_rowid",
	} {
		if r := run(t, in, "alpha", exec(sql))[0]; r.Error == "" {
			t.Errorf("%q was not refused: %+v", sql, r)
		}
	}
	must(t, in, "alpha", query("PRAGMA integrity_check"), exec("INSERT INTO ft(ft) VALUES ('integrity-check')"))
	if r := must(t, in, "alpha", query("SELECT count(*) FROM ft WHERE ft MATCH 'hello'"), query("SELECT count(*) FROM notes"))[0]; r.Rows[0][0] != float64(1) {
		t.Errorf("the FTS5 table: %v", r.Rows)
	}
}

// SQLite's ALTER TABLE column forms pass its authorizer, in migrations and
// in handlers.
func TestSQLiteAlterColumns(t *testing.T) {
	in := start(t, backends[0].conf(t), plugin("alpha", true, "sqlitealter", ""))
	if st, reason := in.RT.Slot("alpha").Status(); st != "ready" {
		t.Fatalf("alpha is %s: %s", st, reason)
	}
	r := must(t, in, "alpha", exec("CREATE TABLE more (a TEXT, b TEXT, c TEXT)"), exec("ALTER TABLE more DROP COLUMN c"),
		exec("ALTER TABLE more RENAME COLUMN b TO bb"), exec("ALTER TABLE main.more ADD COLUMN d TEXT"),
		// A temporary table lasts as long as its transaction (the use of
		// its connection).
		step{Op: "begin"}, exec("CREATE TEMP TABLE tt (a TEXT, b TEXT)"), exec("ALTER TABLE temp.tt DROP COLUMN b"), step{Op: "commit"},
		query("SELECT group_concat(name, ' ') FROM pragma_table_info('items')"),
		query("SELECT group_concat(name, ' ') FROM pragma_table_info('more')"))
	if got := fmt.Sprint(r[8].Rows, r[9].Rows); got != "[[a bb d]] [[a bb d]]" {
		t.Errorf("columns after ALTER TABLE: %s, want [[a bb d]] [[a bb d]]", got)
	}
}

func dbName(t *testing.T, in *servertest.Instance) string {
	var name string
	if err := in.RT.Database().DB().QueryRow("SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestTransactions(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", ""))
		res := must(t, in, "alpha",
			step{Op: "begin"},
			exec("INSERT INTO notes (note) VALUES ('committed')"),
			query("SELECT count(*) FROM notes"),
			step{Op: "commit"},
			step{Op: "begin"},
			exec("INSERT INTO notes (note) VALUES ('rolled back')"),
			step{Op: "rollback"},
		)
		if n := res[2].Rows[0][0].(float64); n != 1 {
			t.Errorf("inside the transaction count = %v, want 1", n)
		}
		// A transaction left open when the request ends is rolled back.
		must(t, in, "alpha", step{Op: "begin"}, exec("INSERT INTO notes (note) VALUES ('left open')"))
		r := must(t, in, "alpha", query("SELECT note FROM notes"))[0]
		if len(r.Rows) != 1 || r.Rows[0][0] != "committed" {
			t.Errorf("notes = %v, want only the committed one", r.Rows)
		}
		if !strings.Contains(in.Log.String(), "still open when the call ended; rolled back") {
			t.Error("no warning logged for the transaction left open")
		}
		// A failing statement inside a transaction does not leak into a
		// later one; commit of an unknown transaction fails cleanly.
		res = run(t, in, "alpha", step{Op: "begin"}, exec("INSERT INTO nope VALUES (1)"), step{Op: "rollback"}, step{Op: "commit"})
		if res[1].Error == "" || res[2].Error != "" || res[3].Error == "" {
			t.Errorf("results %+v", res)
		}
		must(t, in, "alpha", step{Op: "begin", ReadOnly: true}, query("SELECT count(*) FROM notes"), step{Op: "commit"})
	})
}

// 100 concurrent requests each insert a row; none is lost.
func TestConcurrentInserts(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", `instances = 8
queue_timeout = "30s"
timeout = "30s"
db_max_conns = 4
db_statement_timeout = "20s"`))
		var wg sync.WaitGroup
		errs := make(chan string, 100)
		for i := 0; i < 100; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := run(t, in, "alpha", exec("INSERT INTO notes (note) VALUES (?)", fmt.Sprintf("note %d", i)))
				if res[0].Error != "" {
					errs <- res[0].Error
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
		if n := count(t, in, "alpha", "notes"); n != 100 {
			t.Errorf("%d rows after 100 inserts", n)
		}
	})
}

// With every connection busy a statement waits for one, and past the
// statement timeout fails cleanly.
func TestPoolExhaustion(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf,
			plugin("patient", true, "good", "instances = 3\ndb_max_conns = 1\ndb_statement_timeout = \"20s\"\ntimeout = \"30s\""),
			plugin("hasty", true, "good", "instances = 3\ndb_max_conns = 1\ndb_statement_timeout = \"1s\"\ntimeout = \"30s\""))
		hold := func(id string, ms int, done chan<- []result) {
			done <- run(t, in, id, step{Op: "begin"}, exec("INSERT INTO notes (note) VALUES ('held')"), step{Op: "sleep", MS: ms}, step{Op: "commit"})
		}
		heldP, heldH := make(chan []result, 1), make(chan []result, 1)
		go hold("patient", 1500, heldP)
		go hold("hasty", 4000, heldH)
		waitInUse(t, in, "patient")
		waitInUse(t, in, "hasty")

		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			r := run(t, in, "patient", query("SELECT count(*) FROM notes"))[0]
			if r.Error != "" || r.Rows[0][0].(float64) != 1 {
				t.Errorf("patient: waiting statement got %+v, want the committed row", r)
			}
		}()
		go func() {
			defer wg.Done()
			start := time.Now()
			r := run(t, in, "hasty", query("SELECT count(*) FROM notes"))[0]
			if r.Kind != "timeout" || !strings.Contains(r.Error, "pool exhausted") {
				t.Errorf("hasty: got %+v, want a pool exhausted timeout", r)
			}
			if took := time.Since(start); took < 900*time.Millisecond {
				t.Errorf("hasty failed after %v, before its 1s statement timeout", took)
			}
		}()
		wg.Wait()
		for _, ch := range []chan []result{heldP, heldH} {
			for _, r := range <-ch {
				if r.Error != "" {
					t.Errorf("holder: %s", r.Error)
				}
			}
		}
	})
}

// On SQLite one transaction writes at a time: a second one (BEGIN
// IMMEDIATE) waits for the first's write lock at most db_statement_timeout,
// then fails with ErrTimeout saying why; it waited the driver's 10 s busy
// timeout and failed with SQLITE_BUSY as ErrFailed.
func TestSQLiteWriteLockWait(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[0].conf(t), plugin("alpha", true, "good", "db_max_conns = 3\ndb_statement_timeout = \"1s\"\ntimeout = \"30s\""))
	begin := time.Now()
	r := run(t, in, "alpha", step{Op: "begin"}, exec("INSERT INTO notes (note) VALUES ('first')"), step{Op: "begin"})
	took := time.Since(begin)
	if r[0].Error != "" || r[1].Error != "" {
		t.Fatalf("first transaction: %+v", r[:2])
	}
	if r[2].Kind != "timeout" || !strings.Contains(r[2].Error, "write lock") || !strings.Contains(r[2].Error, "limits.db_statement_timeout of 1s") {
		t.Errorf("second transaction: %s %q, want a timeout naming the write lock", r[2].Kind, r[2].Error)
	}
	if took < 900*time.Millisecond || took > 5*time.Second {
		t.Errorf("the second transaction failed after %v, want about its 1s statement timeout", took)
	}
	// The first was rolled back at the end of the call; the plugin's
	// database works.
	if n := count(t, in, "alpha", "notes"); n != 0 {
		t.Errorf("%d notes, want 0", n)
	}
	// A write outside any transaction, while another request's
	// transaction holds the lock, says the same (it said the statement
	// ran past its timeout).
	// SQLite counts its lock wait by the sleeps it asked for, so on a
	// machine short of CPU the wait can end after the statement's context
	// did: then the message is the statement timeout's. A timeout it is
	// every time; the lock is named in at least one of three tries.
	var named bool
	var last result
	for try := 0; try < 3 && !named; try++ {
		held := holdWriteLock(t, in, "alpha", 2500)
		last = run(t, in, "alpha", exec("INSERT INTO notes (note) VALUES ('waits')"))[0]
		if last.Kind != "timeout" {
			t.Errorf("a write waiting for the lock: %s %q, want a timeout", last.Kind, last.Error)
		}
		named = strings.Contains(last.Error, "write lock")
		for _, r := range <-held {
			if r.Error != "" {
				t.Errorf("holder: %s", r.Error)
			}
		}
	}
	if !named {
		t.Errorf("a write waiting for the lock: %s %q, want a timeout naming the write lock", last.Kind, last.Error)
	}
}

// A transaction begun in SQL as deferred that read first cannot take the
// write lock another transaction holds: SQLite refuses it at once, without
// its busy wait (which could deadlock). The error says so, not that the
// database stayed locked for the statement timeout.
func TestSQLiteDeferredUpgradeFailsAtOnce(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[0].conf(t), plugin("alpha", true, "good", "db_statement_timeout = \"3s\"\ntimeout = \"30s\""))
	held := holdWriteLock(t, in, "alpha", 1500)
	begin := time.Now()
	r := run(t, in, "alpha", exec("BEGIN; SELECT count(*) FROM notes; INSERT INTO notes (note) VALUES ('x'); COMMIT"))[0]
	took := time.Since(begin)
	<-held
	if r.Kind != "timeout" || strings.Contains(r.Error, "stayed locked") || !strings.Contains(r.Error, "BEGIN IMMEDIATE") {
		t.Errorf("a deferred transaction's write: %s %q (after %v), want a timeout saying the lock was refused at once", r.Kind, r.Error, took)
	}
	if n := count(t, in, "alpha", "notes"); n != 1 {
		t.Errorf("%d notes, want the holder's 1", n)
	}
}

// waitInUse waits until plugin id holds one of its connections.
func waitInUse(t *testing.T, in *servertest.Instance, id string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for in.RT.Database().PluginDB(id).Stats().InUse < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%s never held its connection", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// holdWriteLock starts a request of plugin id that inserts in a
// transaction and keeps it open for ms, and returns once the insert has
// run (the transaction holds SQLite's write lock); the request's results
// arrive on the channel.
func holdWriteLock(t *testing.T, in *servertest.Instance, id string, ms int) <-chan []result {
	t.Helper()
	held := make(chan []result, 1)
	go func() {
		held <- run(t, in, id, step{Op: "begin"}, exec("INSERT INTO notes (note) VALUES ('held')"), step{Op: "sleep", MS: ms}, step{Op: "commit"})
	}()
	waitInUse(t, in, id)
	time.Sleep(100 * time.Millisecond) // past its INSERT
	return held
}

// A reload's migration waits for the write lock the running version holds
// as long as limits.migration_timeout allows, not the short busy timeout
// pooled connections have for the plugin's statements.
func TestSQLiteMigrationWaitsForTheWriteLock(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	dbconf := backends[0].conf(t)
	conf := func(migrations string) string {
		return dbconf + plugin("alpha", true, migrations, "db_max_conns = 3\ndb_statement_timeout = \"500ms\"\ntimeout = \"20s\"")
	}
	in := start(t, conf("good"))
	// Connections that served statements, with their short busy timeout.
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			must(t, in, "alpha", step{Op: "begin", ReadOnly: false}, query("SELECT 1"), step{Op: "sleep", MS: 300}, step{Op: "rollback"})
		}()
	}
	wg.Wait()
	if idle := in.RT.Database().PluginDB("alpha").Stats().Idle; idle < 2 {
		t.Fatalf("%d idle connections, want 2", idle)
	}
	held := holdWriteLock(t, in, "alpha", 2000)
	in.SetConfig(conf("more"))
	if res := in.Reload(t); res.Plugins["alpha"].Outcome != "reloaded" {
		t.Fatalf("reload with a migration while a transaction holds the lock: %+v", res.Plugins["alpha"])
	}
	if r := must(t, in, "alpha", query("SELECT name FROM applied WHERE name = '003'"))[0]; len(r.Rows) != 1 {
		t.Errorf("migration 003 not applied: %v", r.Rows)
	}
	<-held
}

// slowStatement runs until it is cancelled (or for 30 s on PostgreSQL).
func slowStatement(b backend) string {
	if b.name == "pg" {
		return "SELECT pg_sleep(30)"
	}
	return "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
}

func TestStatementTimeout(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", "db_statement_timeout = \"300ms\"\ntimeout = \"20s\""))
		slow := slowStatement(b)
		for _, op := range []string{"query", "exec"} {
			start := time.Now()
			r := run(t, in, "alpha", step{Op: op, SQL: slow})[0]
			if r.Kind != "timeout" || !strings.Contains(r.Error, "db_statement_timeout") {
				t.Errorf("%s: got %+v, want a statement timeout", op, r)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("%s: cancelled after %v", op, took)
			}
		}
		must(t, in, "alpha", query("SELECT count(*) FROM notes"))
	})
}

// A statement whose context has an earlier deadline than
// db_statement_timeout stops at it (the plugin's QueryContext with a
// timeout), and the plugin sees the context's error.
func TestStatementFollowsPluginDeadline(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", "db_statement_timeout = \"20s\"\ntimeout = \"30s\""))
		slow := slowStatement(b)
		for _, op := range []string{"query", "exec"} {
			start := time.Now()
			r := run(t, in, "alpha", step{Op: op, SQL: slow, TimeoutMS: 300})[0]
			if r.Kind != "timeout" || !r.CtxDeadline || !strings.Contains(r.Error, "the plugin's deadline for this statement passed") {
				t.Errorf("%s: got %+v, want the plugin's deadline", op, r)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("%s: cancelled after %v, want about 300ms", op, took)
			}
		}
		// A deadline later than the statement timeout changes nothing.
		if r := run(t, in, "alpha", step{Op: "query", SQL: "SELECT 1", TimeoutMS: 60000})[0]; r.Error != "" {
			t.Errorf("with a distant deadline: %+v", r)
		}
	})
}

// A slow statement made with the request's own context (its deadline is
// the call's) is stopped by the call's timeout, not by the plugin's
// deadline: the client gets 504 and the instance is discarded, every time.
// When the statement's timer for the plugin's deadline ran on its own, it
// often fired before the call's, the guest got its timeout error in time to
// answer 200, and the instance was kept.
func TestStatementAtCallDeadline(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", "timeout = \"1s\"\ndb_statement_timeout = \"30s\""))
		slow := slowStatement(b)
		const n = 8
		for i := range n {
			// The request's context, and one whose own timeout is later
			// than the call's (so its deadline is the call's too).
			s := step{Op: "query", SQL: slow}
			if i%2 == 1 {
				s = step{Op: "exec", SQL: slow, TimeoutMS: 60000}
			}
			body, _ := json.Marshal(map[string]any{"steps": []step{s}})
			status, _, resp := in.Do(t, "POST", "/api/alpha/run", bytes.NewReader(body))
			if status != 504 {
				t.Errorf("request %d (%s): %d %s, want 504 at the call's timeout", i, s.Op, status, resp)
			}
		}
		if d := in.RT.Slot("alpha").Plugin().Stats().Discarded; d < n {
			t.Errorf("%d instances discarded, want %d (one per timed-out call)", d, n)
		}
		must(t, in, "alpha", query("SELECT count(*) FROM notes"))
	})
}

// A constraint violation has the same SQLSTATE on both databases, so a
// plugin can tell a duplicate key from other failures portably.
func TestConstraintSQLState(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", ""))
		r := run(t, in, "alpha",
			exec("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL CHECK (v >= 0))"),
			exec("INSERT INTO kv VALUES ('a', 1)"),
			exec("INSERT INTO kv VALUES ('a', 2)"),
			exec("INSERT INTO kv VALUES ('b', NULL)"),
			exec("INSERT INTO kv VALUES ('c', -1)"),
			exec("INSERT INTO nope VALUES (1)"))
		for i, want := range []string{"", "", "23505", "23502", "23514"} {
			if r[i].SQLState != want || (want != "" && r[i].Kind != "failed") {
				t.Errorf("step %d: %s %q sqlstate %q, want %q", i, r[i].Kind, r[i].Error, r[i].SQLState, want)
			}
		}
		// Other refusals carry PostgreSQL's own SQLSTATE, and none on SQLite.
		if want := map[string]string{"pg": "42P01", "sqlite": ""}[b.name]; r[5].Kind != "failed" || r[5].SQLState != want {
			t.Errorf("missing table: %s %q sqlstate %q, want %q", r[5].Kind, r[5].Error, r[5].SQLState, want)
		}
	})
}

func TestResultLimit(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", "db_max_result = \"64KiB\""))
		many := "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 100000) SELECT x, 'padding padding padding' FROM c"
		big := "SELECT randomblob(10000000)"
		if b.name == "pg" {
			many = "SELECT x, 'padding padding padding' FROM generate_series(1, 100000) x"
			big = "SELECT repeat('x', 10000000)"
		}
		r := run(t, in, "alpha", query(many))[0]
		if r.Kind != "too_large" || !strings.Contains(r.Error, "db_max_result") {
			t.Errorf("many rows: got %.200v, want too_large", r)
		}
		// One value over the limit: SQLite's length limit, pgx's message
		// limit.
		if r := run(t, in, "alpha", query(big))[0]; r.Kind != "too_large" || !strings.Contains(r.Error, "db_max_result") {
			t.Errorf("one huge value: got %.200v, want too_large", r)
		}
		// Under the limit is fine, and the plugin keeps working.
		must(t, in, "alpha", query(strings.Replace(many, "100000", "100", 1)), query("SELECT count(*) FROM notes"))
	})
}

// A result's column names and types count toward db_max_result as its
// rows do. SQLite names a column by its alias or its expression, up to a
// statement's length, and a view joined with itself repeats its name in
// every column: 40 columns of a 900 kB name (36 MB) crossed a 1 MiB limit
// to the guest, whose instance ran out of memory (500) instead of the
// query failing with ErrTooLarge. PostgreSQL cuts names to 63 bytes, but
// a thousand columns pass 64 KiB the same way.
func TestColumnNamesCountTowardTheResultLimit(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", "db_max_result = \"64KiB\""))
		var cols []string
		switch b.name {
		case "sqlite":
			for _, c := range []string{"a", "b"} {
				cols = append(cols, "1 AS "+strings.Repeat(c, 60000))
			}
		case "pg":
			for i := range 1000 {
				cols = append(cols, fmt.Sprintf("1 AS c%062d", i))
			}
		}
		sql := "SELECT " + strings.Join(cols, ", ") + " WHERE 1 = 0"
		r := run(t, in, "alpha", query(sql))[0]
		if r.Kind != "too_large" || !strings.Contains(r.Error, "column names") || !strings.Contains(r.Error, "db_max_result") {
			t.Errorf("%d columns with long names: got %q %.300q with %d columns, want too_large naming the column names", len(cols), r.Kind, r.Error, len(r.Columns))
		}
		// Under the limit is fine, and the plugin keeps working.
		must(t, in, "alpha", query("SELECT "+strings.Join(cols[:1], ", ")+" WHERE 1 = 0"), query("SELECT count(*) FROM notes"))
	})
}

func TestTypesRoundTrip(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "", ""))
		ddl := "CREATE TABLE vals (i INTEGER, f REAL, b BOOLEAN, s TEXT, x BLOB, ts TIMESTAMP, n TEXT)"
		if b.name == "pg" {
			ddl = "CREATE TABLE vals (i bigint, f double precision, b boolean, s text, x bytea, ts timestamptz, n text)"
		}
		ts := "2026-11-29T12:34:56.123456Z"
		blob := map[string]string{"bytes": "AAEC/w=="}
		res := must(t, in, "alpha", exec(ddl),
			exec("INSERT INTO vals VALUES (?, ?, ?, ?, ?, ?, ?)", -9007199254740993, 1.5, true, "héllo 'quoted' ?", blob, map[string]string{"time": ts}, nil),
			query("SELECT i, f, b, s, x, ts, n FROM vals WHERE i = $1 AND s = $2", -9007199254740993, "héllo 'quoted' ?"))
		if res[1].Affected != 1 {
			t.Errorf("affected = %d", res[1].Affected)
		}
		if b.name == "sqlite" && res[1].LastID == nil {
			t.Error("no LastInsertId on SQLite")
		}
		r := res[2]
		if len(r.Rows) != 1 {
			t.Fatalf("rows = %v", r.Rows)
		}
		row := r.Rows[0]
		wantBool := any(true)
		wantBoolType := "bool"
		if b.name == "sqlite" {
			wantBool, wantBoolType = float64(1), "int64" // SQLite has no boolean type
		}
		want := []any{float64(-9007199254740993), 1.5, wantBool, "héllo 'quoted' ?", map[string]any{"bytes": "AAEC/w=="}, map[string]any{"time": ts}, nil}
		if fmt.Sprint(row) != fmt.Sprint(want) {
			t.Errorf("row = %v\nwant  %v", row, want)
		}
		wantTypes := []string{"int64", "float64", wantBoolType, "string", "[]uint8", "time.Time", "<nil>"}
		if fmt.Sprint(r.GoTypes) != fmt.Sprint(wantTypes) {
			t.Errorf("Go types = %v, want %v", r.GoTypes, wantTypes)
		}
		// Times come back as time.Time whatever the spelling of the
		// column's type: on SQLite the driver parses only DATE, DATETIME
		// and TIMESTAMP itself.
		res = must(t, in, "alpha", exec("CREATE TABLE times (a timestamptz, b TIMESTAMP WITH TIME ZONE, c timestamp(6), d timestamp, e TIMESTAMPTZ)"),
			exec("INSERT INTO times VALUES (?, ?, ?, ?, ?)", map[string]string{"time": ts}, map[string]string{"time": ts}, map[string]string{"time": ts}, map[string]string{"time": ts}, map[string]string{"time": ts}),
			query("SELECT a, b, c, d, e, 'not a time' FROM times"))
		r = res[2]
		if fmt.Sprint(r.GoTypes) != "[time.Time time.Time time.Time time.Time time.Time string]" || fmt.Sprint(r.Rows[0][:5]) != "["+strings.Repeat("map[time:"+ts+"] ", 4)+"map[time:"+ts+"]]" {
			t.Errorf("times: %v %v", r.GoTypes, r.Rows)
		}
		// A time SQLite cannot keep as a time (its text has a four-digit
		// year, written in UTC) is refused rather than stored unreadable;
		// PostgreSQL keeps it.
		late := map[string]string{"time": "9999-12-31T23:59:59.999999-07:30"}
		r = run(t, in, "alpha", exec("INSERT INTO times (a) VALUES (?)", late), query("SELECT a FROM times WHERE a > ?", map[string]string{"time": "9999-01-01T00:00:00Z"}))[0]
		switch {
		case b.name == "sqlite" && (r.Kind != "invalid" || !strings.Contains(r.Error, "outside the years 0000 to 9999")):
			t.Errorf("SQLite, a time after 9999 in UTC: %s %q, want it refused", r.Kind, r.Error)
		case b.name == "pg" && r.Error != "":
			t.Errorf("PostgreSQL, a time after 9999 in UTC: %s %q", r.Kind, r.Error)
		}
		// SQLite would store a NaN as NULL, silently: refused there;
		// PostgreSQL keeps it. The infinities both keep.
		res = run(t, in, "alpha", exec("CREATE TABLE floats (f double precision)"),
			exec("INSERT INTO floats VALUES (?)", map[string]string{"float": "NaN"}),
			exec("INSERT INTO floats VALUES (?)", map[string]string{"float": "+Inf"}),
			query("SELECT count(*) FROM floats WHERE f IS NULL"))
		switch {
		case b.name == "sqlite" && (res[1].Kind != "invalid" || !strings.Contains(res[1].Error, "argument 1: NaN, which SQLite would store as NULL")):
			t.Errorf("SQLite, a NaN argument: %s %q, want it refused", res[1].Kind, res[1].Error)
		case b.name == "pg" && res[1].Error != "":
			t.Errorf("PostgreSQL, a NaN argument: %s %q", res[1].Kind, res[1].Error)
		case res[2].Error != "" || res[3].Error != "" || res[3].Rows[0][0].(float64) != 0:
			t.Errorf("%s: +Inf %q, NULL rows %v", b.name, res[2].Error, res[3].Rows)
		}
		// Emulated prepared statements.
		must(t, in, "alpha", step{Op: "prepare", SQL: "INSERT INTO vals (i) VALUES (?)", Args: []any{7}})
		if r := must(t, in, "alpha", query("SELECT count(*) FROM vals WHERE i = 7"))[0]; r.Rows[0][0].(float64) != 3 {
			t.Errorf("prepared statement ran %v times, want 3", r.Rows[0][0])
		}
	})
}

// A plugin without the capability gets an error naming it on every call,
// and nothing is opened for it.
func TestCapabilityDenied(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("nodb", false, "good", ""), plugin("alpha", true, "good", ""))
		const want = `capability "database" not granted to plugin nodb (set database = true under [plugins.nodb.capabilities])`
		for _, s := range []step{exec("CREATE TABLE x (y int)"), query("SELECT 1"), {Op: "begin"}, {Op: "prepare", SQL: "SELECT 1"}} {
			r := run(t, in, "nodb", s)[0]
			if r.Kind != "denied" || !strings.Contains(r.Error, want) {
				t.Errorf("%s: got %+v, want denied naming the capability", s.Op, r)
			}
		}
		_, _, body := in.Get(t, "/api/nodb/init")
		if !strings.Contains(body, `capability \"database\" not granted to plugin nodb`) {
			t.Errorf("greenroom.Migrations without the capability: %s", body)
		}
		if db := in.RT.Database().PluginDB("nodb"); db != nil {
			t.Error("a database was opened for a plugin without the capability")
		}
		switch b.name {
		case "sqlite":
			dir := strings.TrimPrefix(strings.Trim(strings.Split(dbconf, "connection = ")[1], "\"\n"), "file:")
			if _, err := os.Stat(filepath.Join(dir, "plugins", "nodb.db")); err == nil {
				t.Error("nodb.db exists")
			}
		case "pg":
			var n int
			in.RT.Database().DB().QueryRow("SELECT count(*) FROM pg_namespace WHERE nspname = 'plugin_nodb'").Scan(&n)
			if n != 0 {
				t.Error("schema plugin_nodb exists")
			}
		}
	})
}

// Data and applied migrations survive a restart; migrations are applied
// once, also by two replicas starting together, and new ones are applied
// on the next start.
func TestRestartAndReplicas(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		conf := []string{dbconf, plugin("alpha", true, "good", "")}
		var wg sync.WaitGroup
		replicas := make([]*servertest.Instance, 2)
		for i := range replicas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				replicas[i] = start(t, conf...)
			}()
		}
		wg.Wait()
		for i, in := range replicas {
			if st, reason := in.RT.Slot("alpha").Status(); st != "ready" {
				t.Fatalf("replica %d: alpha is %s: %s", i, st, reason)
			}
		}
		must(t, replicas[0], "alpha", exec("INSERT INTO notes (note) VALUES ('kept')"))
		if n := count(t, replicas[1], "alpha", "applied"); n != 1 {
			t.Errorf("migration 002 applied %d times by two replicas", n)
		}
		for _, in := range replicas {
			stop(t, in)
		}

		in := start(t, dbconf, plugin("alpha", true, "more", ""))
		r := must(t, in, "alpha", query("SELECT note FROM notes"), query("SELECT name FROM applied ORDER BY name"))
		if len(r[0].Rows) != 1 || r[0].Rows[0][0] != "kept" {
			t.Errorf("after restart notes = %v", r[0].Rows)
		}
		if fmt.Sprint(r[1].Rows) != "[[002] [003]]" {
			t.Errorf("after restart with a new migration, applied = %v", r[1].Rows)
		}
		var recs []string
		rows, err := in.RT.Database().DB().QueryContext(context.Background(), "SELECT name FROM plugin_migrations WHERE plugin = 'alpha' ORDER BY name")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var n string
			rows.Scan(&n)
			recs = append(recs, n)
		}
		rows.Close()
		// 004 is empty: recorded, nothing run.
		if fmt.Sprint(recs) != "[001_notes.up.sql 002_applied.up.sql 003_more.up.sql 004_empty.up.sql]" {
			t.Errorf("recorded migrations = %v", recs)
		}
	})
}

func stop(t *testing.T, in *servertest.Instance) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in.Server.Shutdown(ctx)
	if err := in.RT.Close(ctx); err != nil {
		t.Error(err)
	}
}

// A failing migration keeps its plugin out of service with the reason;
// the others serve.
func TestFailingMigration(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("broken", true, "bad", ""), plugin("alpha", true, "good", ""))
		status, _, body := in.Do(t, "POST", "/api/broken/run", strings.NewReader(`{"steps":[]}`))
		if status != 503 || !strings.Contains(body, "migration 002_broken.up.sql failed") || !strings.Contains(body, "plugin_unavailable") {
			t.Errorf("broken: %d %s", status, body)
		}
		// Both say where in the file (SQLite did not: TestSQLiteMigrationErrorNamesItsLine).
		if !strings.Contains(body, "migration 002_broken.up.sql failed: line 3: ") {
			t.Errorf("broken: %s, want the line of the error", body)
		}
		must(t, in, "alpha", query("SELECT count(*) FROM notes"))
		var n int
		in.RT.Database().DB().QueryRow("SELECT count(*) FROM plugin_migrations WHERE plugin = 'broken'").Scan(&n)
		if n != 1 {
			t.Errorf("broken has %d migrations recorded, want 1 (the one before the failure)", n)
		}
	})
}

// A failing migration on SQLite names the line its failing statement
// begins on, as PostgreSQL names the line of its error: SQLite's error
// said only what failed ("no such table: no_such_table"), not in which of
// the file's statements. The file is run one statement at a time, split
// where SQLite ends each: a trigger's body, with semicolons of its own,
// stays one statement, as do semicolons in strings and comments.
func TestSQLiteMigrationErrorNamesItsLine(t *testing.T) {
	dbconf := backends[0].conf(t)
	in := start(t, dbconf, plugin("lines", true, "sqlitelines", ""), plugin("bad", true, "sqlitelinesbad", ""))
	r := must(t, in, "lines", query("SELECT note FROM notes ORDER BY note"), query("SELECT note FROM note_log ORDER BY note"))
	if fmt.Sprint(r[0].Rows) != "[[x] [y;z]]" || fmt.Sprint(r[1].Rows) != "[[end; of trigger] [end; of trigger] [x] [y;z]]" {
		t.Errorf("a file with a trigger: notes %v, log %v", r[0].Rows, r[1].Rows)
	}
	st, reason := in.RT.Slot("bad").Status()
	if st != "failed" || !strings.Contains(reason, "migration 002_fails.up.sql failed: line 6: ") || !strings.Contains(reason, "no such table: no_such_table") {
		t.Errorf("bad: %s: %s; want its load failed naming line 6", st, reason)
	}
	var n int
	in.RT.Database().DB().QueryRow("SELECT count(*) FROM plugin_migrations WHERE plugin = 'bad'").Scan(&n)
	if n != 1 {
		t.Errorf("bad has %d migrations recorded, want 1 (the one before the failure)", n)
	}
}

// A failing migration on PostgreSQL names the line its failing statement
// begins on also when the server's error points nowhere in the file (a
// constraint violated, an exception raised in a DO block, a division by
// zero): the reason said only what failed, not in which of the file's
// statements. The file is still sent whole, in the migration's one
// transaction; the statement is the one after those the server
// completed, found past semicolons in dollar quotes, a function's BEGIN
// ATOMIC body, strings, quoted names and comments.
func TestPGMigrationErrorWithoutPositionNamesItsLine(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	dbconf := backends[1].conf(t)
	in := start(t, dbconf, plugin("lines", true, "pglines", ""), plugin("do", true, "pglinesdo", ""), plugin("div", true, "pglinesdiv", ""))
	for _, tc := range []struct{ id, want, what string }{
		{"lines", "migration 002_fails.up.sql failed: line 19: ", "duplicate key value violates unique constraint"},
		{"do", "migration 002_fails.up.sql failed: line 4: ", "found 1 notes; too many"},
		{"div", "migration 002_fails.up.sql failed: line 2: ", "division by zero"},
	} {
		st, reason := in.RT.Slot(tc.id).Status()
		if st != "failed" || !strings.Contains(reason, tc.want) || !strings.Contains(reason, tc.what) {
			t.Errorf("%s: %s: %s; want its load failed with %q ... %q", tc.id, st, reason, tc.want, tc.what)
		}
		var n int
		in.RT.Database().DB().QueryRow("SELECT count(*) FROM plugin_migrations WHERE plugin = ?", tc.id).Scan(&n)
		if n != 1 {
			t.Errorf("%s has %d migrations recorded, want 1 (the one before the failure)", tc.id, n)
		}
	}
}

// A version that fails to load changes nothing of the plugin's database
// for the version serving (its pool's limits), and what it registered
// (migrations) stays its own: a later version that registers none applies
// none.
func TestFailedVersionLeavesTheDatabaseAlone(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf+plugin("alpha", true, "good", "db_max_conns = 3"))
		maxOpen := func() int { return in.RT.Database().PluginDB("alpha").Stats().MaxOpenConnections }
		if n := maxOpen(); n != 3 {
			t.Fatalf("max open connections %d, want 3", n)
		}
		in.SetConfig(dbconf + plugin("alpha", true, "bad", "db_max_conns = 1"))
		if status, _, body := in.Do(t, "POST", "/.greenroom/plugins/v1/reload", nil); status != 422 {
			t.Fatalf("reload with a failing migration: %d %s", status, body)
		}
		if n := maxOpen(); n != 3 {
			t.Errorf("after the failed version: max open connections %d, want the serving version's 3", n)
		}
		in.SetConfig(dbconf + plugin("alpha", true, "", "db_max_conns = 2"))
		if res := in.Reload(t); res.Plugins["alpha"].Outcome != "reloaded" {
			t.Fatalf("reload to a version without migrations: %+v", res.Plugins["alpha"])
		}
		if n := maxOpen(); n != 2 {
			t.Errorf("after the new version: max open connections %d, want 2", n)
		}
	})
}

// A migration may not end the transaction it runs in: its COMMIT would
// keep what came before it and run the rest outside, unrecorded (SQLite)
// or recorded as applied (PostgreSQL). It is refused, with a message that
// names the statement on both databases (SQLite's authorizer reports END
// as the COMMIT it is), and nothing of it stays.
func TestMigrationCannotCommit(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, _ string) {
		// commitatomic's COMMIT follows columns named begin and atomic,
		// which were taken for a function's BEGIN ATOMIC body.
		for set, cmd := range map[string]string{"commit": "COMMIT", "begin": "BEGIN", "rollback": "ROLLBACK", "end": map[string]string{"pg": "END", "sqlite": "COMMIT"}[b.name], "commitatomic": "COMMIT"} {
			t.Run(set, func(t *testing.T) {
				dbconf := b.conf(t)
				in := start(t, dbconf, plugin("alpha", true, set, ""))
				status, _, body := in.Do(t, "POST", "/api/alpha/run", strings.NewReader(`{"steps":[]}`))
				want := "migration 002_" + set + ".up.sql failed: statement refused: " + cmd + " in a migration: each migration runs in a transaction of its own, which it may not end or begin"
				if status != 503 || !strings.Contains(body, want) {
					t.Fatalf("alpha: %d %s, want 503 %q", status, body, want)
				}
				var n int
				in.RT.Database().DB().QueryRow("SELECT count(*) FROM plugin_migrations WHERE plugin = 'alpha'").Scan(&n)
				if n != 1 {
					t.Errorf("%d migrations recorded, want 1 (the one before the refused one)", n)
				}
				// The failed version holds no pool: the plugin's database
				// is looked at from outside.
				if !tableExists(t, in, dbconf, b, "alpha", "notes") {
					t.Errorf("table notes of the migration before the refused one is missing")
				}
				for _, table := range []string{"early", "late"} {
					if tableExists(t, in, dbconf, b, "alpha", table) {
						t.Errorf("table %s of the refused migration exists", table)
					}
				}
			})
		}
	})
}

// A SQLite migration is held to the plugin's value size (db_max_result):
// a 20 MB value is refused, as from a request (it took the host ~1 GB
// for a 900 MB one).
func TestSQLiteMigrationValueLimit(t *testing.T) {
	in := start(t, backends[0].conf(t), plugin("alpha", true, "sqlitebig", ""))
	status, _, body := in.Do(t, "POST", "/api/alpha/run", strings.NewReader(`{"steps":[]}`))
	if status != 503 || !strings.Contains(body, "migration 002_big.up.sql failed") {
		t.Fatalf("alpha: %d %s", status, body)
	}
}

// A plugin a reload removes gives its database pool back once its last
// version closed (its connections, files and the pool's goroutine stayed
// for the life of the process); one removed and added back while a call
// of the removed version still runs keeps the pool that call uses, and
// both work.
func TestRemovedPluginClosesItsPool(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		with := dbconf + plugin("alpha", true, "good", "")
		without := dbconf + "[plugins.other]\npath = " + fmt.Sprintf("%q", helloWasm) + "\n"
		in := start(t, with)
		must(t, in, "alpha", exec("INSERT INTO notes VALUES ('one')"))
		svc := in.RT.Database()
		closed := func() bool {
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
				if svc.PluginDB("alpha") == nil {
					return true
				}
			}
			return false
		}
		for range 3 {
			in.SetConfig(without)
			in.Reload(t)
			if !closed() {
				t.Fatal("the removed plugin's pool is still open")
			}
			in.SetConfig(with)
			in.Reload(t)
			if n := count(t, in, "alpha", "notes"); n != 1 {
				t.Fatalf("added back: %d notes, want 1", n)
			}
		}
		// Removed and added back while a call of the removed version
		// runs: the call and the new version share the pool.
		slow := make(chan []result, 1)
		go func() { slow <- run(t, in, "alpha", step{Op: "sleep", MS: 600}, query("SELECT count(*) FROM notes")) }()
		time.Sleep(200 * time.Millisecond)
		in.SetConfig(without)
		in.Reload(t)
		in.SetConfig(with)
		in.Reload(t)
		if res := <-slow; res[1].Error != "" {
			t.Errorf("the removed version's call: %+v", res)
		}
		time.Sleep(100 * time.Millisecond) // the removed version's close
		if n := count(t, in, "alpha", "notes"); n != 1 || svc.PluginDB("alpha") == nil {
			t.Errorf("the version added back: %d notes, pool %v", n, svc.PluginDB("alpha"))
		}
	})
}

// tableExists reports whether plugin id's database has table, looked at
// from outside the plugin: the runtime's connection on PostgreSQL, the
// plugin's file on SQLite.
func tableExists(t *testing.T, in *servertest.Instance, dbconf string, b backend, id, table string) bool {
	t.Helper()
	var n int
	if b.name == "pg" {
		if err := in.RT.Database().DB().DB.QueryRow("SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = $2", database.SchemaName(id), table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	_, dir, _ := strings.Cut(dbconf, "connection = \"file:")
	dir, _, _ = strings.Cut(dir, "\"")
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "plugins", id+".db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// Goroutines of one request sharing greenroom.DB() with more transactions
// at once than db_max_conns wait for a connection as with a native
// driver, and all succeed: the SDK caps its pool at db_max_conns, so a
// goroutine waits in the guest, where the holders run. Waiting in the
// host held the guest's only thread: the holders never ran, and every
// waiter failed "pool exhausted" at db_statement_timeout.
func TestGoroutinesWaitForConnectionsInTheGuest(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf+plugin("alpha", true, "good", "db_max_conns = 2\ndb_statement_timeout = \"2s\""))
		// Read-only: SQLite lets one read-write transaction at a time,
		// whatever the pool (docs/database.md).
		res := run(t, in, "alpha", step{Op: "holders", MS: 8, SQL: "SELECT 1", ReadOnly: true})
		if r := res[0]; r.Error != "" || r.Affected != 8 {
			t.Errorf("8 goroutines, 2 connections: %d succeeded, error %q", r.Affected, r.Error)
		}
	})
}

// A handler whose own open transactions hold every connection, then
// wants one more, gets ErrTimeout ("pool exhausted") after
// db_statement_timeout, from a statement as from a transaction, and with
// the context.Background() that db.Exec and db.Begin use: the instance
// lives on. (With the SDK's database/sql pool capped at db_max_conns, the
// handler waited in database/sql for ever and Go's runtime ended the
// instance as deadlocked: 500 plugin_exit.) Rows left open hold no
// connection: a statement in a loop over them runs with db_max_conns = 1.
func TestOwnTransactionsHoldEveryConnection(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf+plugin("alpha", true, "good", "db_max_conns = 2\ndb_statement_timeout = \"1s\"")+
			plugin("beta", true, "good", "db_max_conns = 1"))
		res := run(t, in, "alpha",
			step{Op: "hold", MS: 2, ReadOnly: true, Background: true},
			step{Op: "exec", SQL: "SELECT 1", Background: true},
			step{Op: "begin", ReadOnly: true, Background: true},
		)
		if res[0].Error != "" {
			t.Fatalf("holding two transactions: %+v", res[0])
		}
		for i, r := range res[1:] {
			if r.Kind != "timeout" || !strings.Contains(r.Error, "pool exhausted: all 2 connections") {
				t.Errorf("step %d with both connections held: %+v, want a pool exhausted timeout", i+1, r)
			}
		}
		if res := run(t, in, "alpha", step{Op: "exec", SQL: "SELECT 1"}); res[0].Error != "" {
			t.Errorf("the next request: %+v", res[0])
		}
		res = run(t, in, "beta", step{Op: "query_loop", SQL: "SELECT 1 UNION ALL SELECT 2"})
		if r := res[0]; r.Error != "" || r.Affected != 2 {
			t.Errorf("statements in a loop over open rows, one connection: %+v", r)
		}
	})
}

// A transaction a handler leaves open (begun with db.Begin(), whose
// context never ends) is rolled back by the runtime when the request
// ends, and the SDK gives its connection back too: the instance's next
// request gets the connection (it waited db_statement_timeout and failed
// "pool exhausted" for the instance's life).
func TestLeftOpenTransactionFreesItsConnection(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf+plugin("gamma", true, "good", "db_max_conns = 1\ndb_statement_timeout = \"1s\"\ninstances = 1"))
		for i := range 3 {
			res := run(t, in, "gamma", step{Op: "exec", SQL: "SELECT 1", Background: true}, step{Op: "begin", ReadOnly: true, Background: true})
			for j, r := range res {
				if r.Error != "" {
					t.Fatalf("request %d, step %d: %+v", i, j, r)
				}
			}
		}
	})
}

// A transaction still used after the call that began it ended (kept in a
// variable, or by a goroutine that outlived its handler) is the one the
// runtime rolled back then: its later statements, its Commit and its
// Rollback fail with sql.ErrTxDone, as database/sql reports a
// transaction already ended, never run outside any transaction and
// autocommitted. (When the SDK gave back the connections of a call's open
// transactions by forgetting their ids, the next statement ran with no
// transaction and its write stayed; then they failed with the runtime's
// "transaction N is not open", which was not sql.ErrTxDone.)
func TestRolledBackTransactionStaysEnded(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf+plugin("alpha", true, "", "instances = 1"))
		must(t, in, "alpha", exec("CREATE TABLE kept (v TEXT)"))
		for _, end := range []string{"kept_commit", "kept_rollback"} {
			res := run(t, in, "alpha", step{Op: "keep_begin"}, step{Op: "kept_exec", SQL: "INSERT INTO kept VALUES ('in the transaction')"})
			for i, r := range res {
				if r.Error != "" {
					t.Fatalf("request 1, step %d: %+v", i, r)
				}
			}
			steps := []step{{Op: "kept_exec", SQL: "INSERT INTO kept VALUES ('after the call ended')"}, {Op: end}}
			if end == "kept_rollback" {
				steps = steps[1:]
			}
			res = run(t, in, "alpha", steps...)
			for i, r := range res {
				if !r.TxDone || !strings.Contains(r.Error, "rolled back when the call that began it ended") {
					t.Errorf("%s: request 2, step %d on the rolled back transaction: %+v; want sql.ErrTxDone saying why", end, i, r)
				}
			}
			if n := count(t, in, "alpha", "kept"); n != 0 {
				t.Errorf("%s: %d rows written by a transaction the runtime rolled back", end, n)
			}
		}
		// The connection the transaction held serves the next one.
		must(t, in, "alpha", step{Op: "begin"}, exec("INSERT INTO kept VALUES ('next')"), step{Op: "commit"})
		if n := count(t, in, "alpha", "kept"); n != 1 {
			t.Errorf("%d rows after the next transaction, want 1", n)
		}
	})
}

// A transaction a goroutine begins while the call ends (in the SDK's yield
// at the end of a call that left a transaction open, its request's
// context ended) would be rolled back by the runtime with the call's
// others: its Begin fails at once with sql.ErrTxDone, on both databases,
// sending nothing. Its use in a later call failed with the runtime's
// "transaction N is not open" (it was begun after the SDK counted the
// call ended, so it passed for one of the next call); then, on SQLite,
// where every read-write transaction takes the write lock as it begins,
// the Begin waited for the transaction the call left open, in a host call
// that holds the guest, so that the call could not end to roll that one
// back: the request answered only when the busy timeout failed the Begin
// (5 s by default), here past the request's timeout (504).
func TestTransactionBegunAsTheCallEndsStaysEnded(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf+plugin("alpha", true, "", "instances = 1\ndb_statement_timeout = \"60s\"\ntimeout = \"10s\""))
		must(t, in, "alpha", exec("CREATE TABLE kept (v TEXT)"))
		for _, end := range []string{"kept_commit", "kept_rollback"} {
			// A transaction left open makes the SDK yield as the call
			// ends; the request answers (200) before its timeout.
			must(t, in, "alpha", step{Op: "keep_begin_at_end"}, step{Op: "begin"})
			steps := []step{{Op: "kept_exec", SQL: "INSERT INTO kept VALUES ('after the call ended')"}, {Op: end}}
			if end == "kept_rollback" {
				steps = steps[1:]
			}
			res := run(t, in, "alpha", steps...)
			for i, r := range res {
				if !r.TxDone || !strings.Contains(r.Error, "as the call that would hold it was ending") {
					t.Errorf("%s: request 2, step %d on the transaction begun as request 1 ended: %+v; want sql.ErrTxDone saying why", end, i, r)
				}
			}
			if n := count(t, in, "alpha", "kept"); n != 0 {
				t.Errorf("%s: %d rows written by a transaction begun as its call ended", end, n)
			}
		}
		// The connections serve the next transaction.
		must(t, in, "alpha", step{Op: "begin"}, exec("INSERT INTO kept VALUES ('next')"), step{Op: "commit"})
		if n := count(t, in, "alpha", "kept"); n != 1 {
			t.Errorf("%d rows after the next transaction, want 1", n)
		}
	})
}

// A goroutine's write outside any transaction while the call ends (in the
// SDK's yield at the end of a call that left a transaction open) runs at
// once: the SDK rolls back the call's open transactions before it yields
// (db_rollback with bit 31 set, docs/abi.md), and the runtime logs its
// warning for each, as when it rolls them back itself. It waited for what
// the transaction left open held, in a host call that holds the guest, so
// that the call could not end to roll that one back: on SQLite for its
// write lock, on PostgreSQL for the row it updated, until
// db_statement_timeout failed the write with ErrTimeout, holding the
// request's answer that long.
func TestWriteAsTheCallEndsDoesNotWaitForItsOpenTransaction(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	const warning = "still open when the call ended; rolled back"
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf+plugin("alpha", true, "", "instances = 1\ndb_statement_timeout = \"10s\"\ntimeout = \"60s\""))
		must(t, in, "alpha", exec("CREATE TABLE ends (k INTEGER PRIMARY KEY, v TEXT)"), exec("INSERT INTO ends VALUES (1, 'before')"))
		for i := range 2 {
			warnings := strings.Count(in.Log.String(), warning)
			began := time.Now()
			must(t, in, "alpha",
				step{Op: "begin", Background: true}, // left open: db.Begin(), whose context never ends
				exec("UPDATE ends SET v = 'left open' WHERE k = 1"),
				exec("INSERT INTO ends VALUES (2, 'left open')"),
				step{Op: "exec_at_end", SQL: "UPDATE ends SET v = ? WHERE k = 1", Args: []any{fmt.Sprint("as call ", i, " ended")}},
			)
			took := time.Since(began)
			res := must(t, in, "alpha", query("SELECT k, v FROM ends ORDER BY k"))
			r := run(t, in, "alpha", step{Op: "at_end"})[0]
			if r.Error != "" || r.Affected != 1 {
				t.Errorf("call %d: the goroutine's write as the call ended: %+v (the call took %s), want it run at once", i, r, took.Round(time.Millisecond))
			}
			if got, want := fmt.Sprint(res[0].Rows), fmt.Sprint("[[1 as call ", i, " ended]]"); got != want {
				t.Errorf("call %d: rows %s, want %s: the goroutine's write, and none of the transaction left open", i, got, want)
			}
			if n := strings.Count(in.Log.String(), warning) - warnings; n != 1 {
				t.Errorf("call %d: %d warnings for the transaction left open, want 1", i, n)
			}
		}
		// The connections serve the next transaction.
		must(t, in, "alpha", step{Op: "begin"}, exec("INSERT INTO ends VALUES (3, 'next')"), step{Op: "commit"})
		if n := count(t, in, "alpha", "ends"); n != 2 {
			t.Errorf("%d rows after the next transaction, want 2", n)
		}
	})
}

// SQLite's authorizer refuses with one code for everything; the error says
// what it refused, in a handler's statement (in a transaction or not) and
// in a migration, where an audit got the same words for ATTACH, VACUUM
// INTO and a PRAGMA.
func TestSQLiteRefusalsNameWhat(t *testing.T) {
	in := start(t, backends[0].conf(t), plugin("alpha", true, "good", ""), plugin("esc", true, "sqliteattach", ""))
	for sql, want := range map[string]string{
		"ATTACH DATABASE ':memory:' AS m":    "ATTACH (and VACUUM, which attaches its target) is not allowed",
		"VACUUM":                             "ATTACH (and VACUUM, which attaches its target) is not allowed",
		"PRAGMA journal_mode = DELETE":       "PRAGMA journal_mode = DELETE is not allowed",
		"SELECT * FROM pragma_database_list": "PRAGMA database_list is not allowed",
		"SELECT load_extension('x')":         "function load_extension() is not allowed",
		"SELECT geopoly_overlap('[[0,0],[1,0],[0,1],[0,0]]', '[[0,0],[2,0],[0,2],[0,0]]')": "function geopoly_overlap() is not allowed",
		"SELECT geopoly_within('[[0,0],[1,0],[0,1],[0,0]]', '[[0,0],[2,0],[0,2],[0,0]]')":  "function geopoly_within() is not allowed",
		"SELECT 1; PRAGMA writable_schema = 1":                                             "PRAGMA writable_schema = 1 is not allowed",
	} {
		for _, inTx := range []bool{false, true} {
			if inTx && sql == "VACUUM" {
				continue // SQLite refuses it in a transaction itself
			}
			steps := []step{exec(sql)}
			if inTx {
				steps = []step{{Op: "begin"}, exec(sql), {Op: "rollback"}}
			}
			res := run(t, in, "alpha", steps...)
			r := res[len(steps)/2]
			if r.Kind != "denied" || !strings.Contains(r.Error, "statement refused by the sandbox: "+want) {
				t.Errorf("%q (in a transaction: %t): %s %s, want it to say %q", sql, inTx, r.Kind, r.Error, want)
			}
		}
	}
	// Forgotten once said: a later failure of another kind is not named
	// after it.
	if r := run(t, in, "alpha", exec("SELECT * FROM nosuchtable"))[0]; strings.Contains(r.Error, "is not allowed") {
		t.Errorf("a later error: %s", r.Error)
	}
	if st, reason := in.RT.Slot("esc").Status(); st != "failed" || !strings.Contains(reason, "002_attach.up.sql") || !strings.Contains(reason, "ATTACH (and VACUUM, which attaches its target) is not allowed") {
		t.Errorf("esc is %s: %s", st, reason)
	}
}

// The warning for a transaction a call left open comes as often as the
// plugin likes: it takes from the plugin's log rate limit, as the
// plugin's own lines do (an audit's: 89 000 lines in 10 s, none dropped).
func TestOpenTransactionLinesAreRateLimited(t *testing.T) {
	in := start(t, backends[0].conf(t), plugin("alpha", true, "good", "log_rate = 0.001\nlog_burst = 3"))
	for range 10 {
		must(t, in, "alpha", step{Op: "begin"}, query("SELECT 1"))
	}
	if n := strings.Count(in.Log.String(), "still open when the call ended; rolled back"); n == 0 || n > 3 {
		t.Errorf("%d warnings for 10 transactions left open with log_burst 3, want 1 to 3", n)
	}
	if in.RT.DroppedLogLines("alpha") == 0 {
		t.Error("no dropped line counted")
	}
}

// A transaction whose context (the one given to BeginTx) ends is rolled
// back, as database/sql does natively: its later statements fail with the
// context's error (and sql.ErrTxDone), and its Commit commits nothing. In a
// guest the context's deadline timer fires only when the goroutine blocks,
// and a handler busy past the deadline (computing, or in a slow statement)
// had its transaction's later statements run and its Commit commit them.
func TestTransactionContextEnds(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", ""))
		// Deadlines of 1 s, not less: on a loaded CI run an INSERT on
		// PostgreSQL took over the 200 ms they were, before the deadline
		// the test is about.
		res := run(t, in, "alpha",
			step{Op: "begin", TimeoutMS: 1000},
			exec("INSERT INTO notes (note) VALUES ('before the deadline')"),
			step{Op: "spin", MS: 1200},
			exec("INSERT INTO notes (note) VALUES ('after the deadline')"),
			step{Op: "commit"})
		if res[0].Error != "" || res[1].Error != "" {
			t.Fatalf("before the deadline: %+v", res[:2])
		}
		if r := res[3]; !r.CtxDeadline || !strings.Contains(r.Error, "transaction's context ended") {
			t.Errorf("a statement after the transaction's deadline: %+v, want the context's error", r)
		}
		if r := res[4]; !r.CtxDeadline {
			t.Errorf("Commit after the transaction's deadline: %+v, want the context's error", r)
		}
		// Commit alone, with no statement after the deadline.
		res = run(t, in, "alpha",
			step{Op: "begin", TimeoutMS: 1000},
			exec("INSERT INTO notes (note) VALUES ('before the deadline')"),
			step{Op: "spin", MS: 1200},
			step{Op: "commit"},
			// The connection serves the next transaction.
			step{Op: "begin"}, query("SELECT count(*) FROM notes"), step{Op: "commit"})
		if r := res[3]; !r.CtxDeadline {
			t.Errorf("Commit after the transaction's deadline: %+v, want the context's error", r)
		}
		if r := res[5]; r.Error != "" || r.Rows[0][0].(float64) != 0 {
			t.Errorf("notes after two transactions past their deadline: %+v, want none", r)
		}
		// A transaction begun with a context past its deadline.
		res = run(t, in, "alpha", step{Op: "begin", TimeoutMS: 1, MS: 5}, exec("INSERT INTO notes (note) VALUES ('begun past the deadline')"))
		if r := res[0]; !r.CtxDeadline {
			t.Errorf("BeginTx past its context's deadline: %+v, want the context's error", r)
		}
	})
}

// Rows whose context is cancelled give no more rows, and rows.Err is the
// context's error, as database/sql gives natively once it has closed them:
// the rows are all in the guest, and database/sql's goroutine that closes
// them runs only when the guest's goroutine blocks, so a loop over them
// read every row and ended with no error.
func TestRowsEndWithTheirContext(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", ""))
		r := run(t, in, "alpha", exec("INSERT INTO notes (note) VALUES ('a'), ('b'), ('c')"),
			step{Op: "cancel_iter", SQL: "SELECT note FROM notes"})[1]
		if r.Affected != 0 || r.Error != "context canceled" {
			t.Errorf("rows after their context was cancelled: %d rows, error %q; want none and context canceled", r.Affected, r.Error)
		}
	})
}

// Transactions a request left open, begun with its context, are given back
// to the SDK's pool by the time the request ends: db.Stats().InUse counts
// none of them at the start of the next request. They were counted in use
// until the next request blocked (database/sql's goroutine that rolls
// such a transaction back runs only then, in a guest).
func TestLeftOpenTransactionsNotInUse(t *testing.T) {
	in := start(t, backends[0].conf(t), plugin("alpha", true, "", "instances = 1"))
	res := run(t, in, "alpha", step{Op: "begin", ReadOnly: true}, step{Op: "begin", ReadOnly: true}, step{Op: "in_use"})
	if r := res[2]; r.Error != "" || r.Affected != 2 {
		t.Fatalf("two transactions open: %+v, want 2 in use", r)
	}
	if r := run(t, in, "alpha", step{Op: "in_use"})[0]; r.Error != "" || r.Affected != 0 {
		t.Errorf("at the start of the next request: %+v, want none in use", r)
	}
	// One begun with context.Background() is the handler's to end, as
	// natively: it stays in use until it is (its next use fails).
	run(t, in, "alpha", step{Op: "keep_begin"})
	if r := run(t, in, "alpha", step{Op: "in_use"})[0]; r.Affected != 1 {
		t.Errorf("a kept transaction: %+v, want 1 in use", r)
	}
}

// During a rolling upgrade, or after a rollback, a replica on a plugin's
// version before loads against migrations a newer version applied: it
// serves, leaving them alone, as docs/operations.md says. It said nothing
// about them, and an operator rolling back saw nothing say that the
// database was ahead of the version it ran; the load names them, once, at
// info level.
func TestOlderVersionNamesMigrationsItDoesNotKnow(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		stop(t, start(t, dbconf, plugin("alpha", true, "more", "")))
		in := start(t, dbconf, plugin("alpha", true, "good", ""))
		must(t, in, "alpha", query("SELECT count(*) FROM notes"))
		var said []map[string]any
		for _, l := range in.LogLines(t) {
			if msg, _ := l["msg"].(string); strings.Contains(msg, "applied migrations this version of the plugin does not register") {
				said = append(said, l)
			}
		}
		if len(said) != 1 || said[0]["migrations"] != "003_more.up.sql, 004_empty.up.sql" || said[0]["level"] != "info" {
			t.Errorf("log lines naming the migrations the old version does not know: %v, want one at info naming 003_more.up.sql and 004_empty.up.sql", said)
		}
	})
}
