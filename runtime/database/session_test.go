package database_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// What a plugin's statements leave on a pooled connection, and how much
// host memory one result may take.

// committedNotes returns the notes of plugin id as another connection sees
// them: what is committed.
func committedNotes(t *testing.T, in *servertest.Instance, b backend, dbconf, id string) []string {
	t.Helper()
	db := in.RT.Database().DB().DB
	q := "SELECT note FROM plugin_" + id + ".notes ORDER BY note"
	if b.name == "sqlite" {
		dir := regexp.MustCompile(`connection = "file:(.*)"`).FindStringSubmatch(dbconf)[1]
		var err error
		if db, err = sql.Open("sqlite", "file:"+filepath.Join(dir, "plugins", id+".db")+"?_pragma=busy_timeout(2000)"); err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		q = "SELECT note FROM notes ORDER BY note"
	}
	rows, err := db.QueryContext(context.Background(), q)
	if err != nil {
		t.Fatalf("another connection: %v", err)
	}
	defer rows.Close()
	var notes []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		notes = append(notes, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("another connection: %v", err)
	}
	return notes
}

// A transaction a plugin begins with SQL (BEGIN, SAVEPOINT) and leaves
// open is rolled back when its call ends, the call fails saying so, and
// the connection goes back to the pool out of any transaction: later
// statements on it are committed.
func TestStrayTransactionRolledBack(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		// One connection: every call below reuses the one a stray
		// transaction was left on.
		in := start(t, dbconf, plugin("alpha", true, "good", "db_max_conns = 1"))
		begin := "BEGIN IMMEDIATE"
		if b.name == "pg" {
			begin = "BEGIN"
		}
		r := run(t, in, "alpha", exec(begin+"; INSERT INTO notes (note) VALUES ('stray begin')"))[0]
		if r.Kind != "invalid" || !strings.Contains(r.Error, "left a transaction open") {
			t.Errorf("BEGIN left open: got %+v, want invalid", r)
		}
		// PostgreSQL refuses SAVEPOINT outside a transaction; SQLite
		// begins one.
		r = run(t, in, "alpha", exec("SAVEPOINT sp; INSERT INTO notes (note) VALUES ('stray savepoint')"))[0]
		if r.Error == "" || b.name == "sqlite" && r.Kind != "invalid" {
			t.Errorf("SAVEPOINT left open: got %+v, want an error", r)
		}
		r = run(t, in, "alpha", query("BEGIN; SELECT count(*) FROM notes"))[0]
		if b.name == "sqlite" && r.Kind != "invalid" {
			// SQLite runs a query's first statement only: BEGIN.
			t.Errorf("query BEGIN: got %+v, want invalid", r)
		}
		must(t, in, "alpha", exec("INSERT INTO notes (note) VALUES ('a')"))
		must(t, in, "alpha", exec("INSERT INTO notes (note) VALUES ('b')"))
		// Transactions that end in the statement, and savepoints inside
		// a transaction, are fine.
		must(t, in, "alpha", exec(begin+"; INSERT INTO notes (note) VALUES ('c'); COMMIT"))
		must(t, in, "alpha", step{Op: "begin"}, exec("SAVEPOINT sp"), exec("INSERT INTO notes (note) VALUES ('d')"),
			exec("RELEASE sp"), exec("SAVEPOINT sp2"), exec("INSERT INTO notes (note) VALUES ('undone')"), exec("ROLLBACK TO sp2"), step{Op: "commit"})
		if got := fmt.Sprint(committedNotes(t, in, b, dbconf, "alpha")); got != "[a b c d]" {
			t.Errorf("committed notes = %s, want [a b c d]", got)
		}
		if b.name == "sqlite" {
			// The pool rolls back what a statement left open, whoever
			// sent it (pgx's pool discards such a connection).
			sqldb := in.RT.Database().PluginDB("alpha").SQL()
			for _, q := range []string{"BEGIN IMMEDIATE; INSERT INTO notes (note) VALUES ('stray pool')", "INSERT INTO notes (note) VALUES ('e')"} {
				if _, err := sqldb.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			if got := fmt.Sprint(committedNotes(t, in, b, dbconf, "alpha")); got != "[a b c d e]" {
				t.Errorf("committed notes = %s, want [a b c d e]", got)
			}
		}
	})
}

// A read-only transaction refuses writes, and the connection it ran on
// writes again afterwards.
func TestReadOnlyTransaction(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", "db_max_conns = 1"))
		res := run(t, in, "alpha", step{Op: "begin", ReadOnly: true}, exec("INSERT INTO notes (note) VALUES ('read-only')"),
			query("SELECT count(*) FROM notes"), step{Op: "commit"})
		if res[1].Error == "" {
			t.Errorf("insert in a read-only transaction: got %+v, want an error", res[1])
		}
		if b.name == "sqlite" && (res[2].Error != "" || res[3].Error != "") {
			// (PostgreSQL aborts the transaction at the failed insert.)
			t.Errorf("read-only transaction: %+v", res)
		}
		res = run(t, in, "alpha", step{Op: "begin", ReadOnly: true}, exec("CREATE TABLE t (x INTEGER)"), step{Op: "rollback"})
		if res[1].Error == "" {
			t.Errorf("create table in a read-only transaction: got %+v, want an error", res[1])
		}
		if b.name == "sqlite" {
			r := run(t, in, "alpha", step{Op: "begin", ReadOnly: true}, exec("PRAGMA query_only = 0"), step{Op: "rollback"})[1]
			if r.Kind != "denied" {
				t.Errorf("plugin's PRAGMA query_only: got %+v, want denied", r)
			}
		}
		must(t, in, "alpha", exec("INSERT INTO notes (note) VALUES ('written')"))
		must(t, in, "alpha", step{Op: "begin"}, exec("INSERT INTO notes (note) VALUES ('in a transaction')"), step{Op: "commit"})
		if got := fmt.Sprint(committedNotes(t, in, b, dbconf, "alpha")); got != "[in a transaction written]" {
			t.Errorf("committed notes = %s", got)
		}
	})
}

// Transaction control sent as SQL inside a transaction the plugin began
// is refused: a COMMIT would leave the plugin's later statements
// committing alone and its Rollback undoing nothing (an audit's plugin
// kept rows it had rolled back, on PostgreSQL). Savepoints stay the
// plugin's. A read-only transaction cannot be made read-write.
func TestTransactionControlInsideTransaction(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", "db_max_conns = 1"))
		control := []string{"COMMIT", "commit /* x */", "END", "ROLLBACK", "BEGIN", "-- c\nCOMMIT;", "COMMIT TRANSACTION"}
		if b.name == "pg" {
			// AND CHAIN begins the next transaction at once: the
			// plugin's Rollback would undo only what came after it.
			control = append(control, "ABORT", "START TRANSACTION", "COMMIT AND CHAIN", "ROLLBACK AND CHAIN", "END AND CHAIN")
		}
		for _, q := range control {
			res := run(t, in, "alpha", step{Op: "begin"}, exec("INSERT INTO notes (note) VALUES ('kept?')"), exec(q),
				exec("INSERT INTO notes (note) VALUES ('after')"), step{Op: "rollback"})
			if res[2].Kind != "denied" {
				t.Errorf("%q inside a transaction: got %+v, want denied", q, res[2])
			}
			if res[4].Error != "" {
				t.Errorf("rollback after %q: %+v", q, res[4])
			}
		}
		if got := fmt.Sprint(committedNotes(t, in, b, dbconf, "alpha")); got != "[]" {
			t.Errorf("committed notes after rolled-back transactions = %s, want none", got)
		}
		// Savepoints are the plugin's.
		must(t, in, "alpha", step{Op: "begin"}, exec("INSERT INTO notes (note) VALUES ('a')"), exec("SAVEPOINT s"),
			exec("INSERT INTO notes (note) VALUES ('b')"), exec("ROLLBACK TO SAVEPOINT s"), exec("RELEASE SAVEPOINT s"), step{Op: "commit"})
		if got := fmt.Sprint(committedNotes(t, in, b, dbconf, "alpha")); got != "[a]" {
			t.Errorf("committed notes = %s, want [a]", got)
		}
		lift := []string{"PRAGMA query_only = 0"}
		if b.name == "pg" {
			lift = []string{"SET TRANSACTION READ WRITE", "SET transaction_read_only = off", "SET LOCAL transaction_read_only TO 'of'",
				"RESET transaction_read_only", "/* x */ set transaction isolation level serializable, read write"}
			// Sent with other statements in one call (the simple
			// protocol runs them all), what follows a SET would run
			// before the check: refused whole (a review wrote to a
			// sequence, which no rollback undoes).
			must(t, in, "alpha", exec("CREATE SEQUENCE IF NOT EXISTS ro_seq"))
			res := run(t, in, "alpha", step{Op: "begin", ReadOnly: true},
				exec("SET TRANSACTION READ WRITE; SELECT nextval('ro_seq')"), step{Op: "rollback"})
			if res[1].Kind != "denied" {
				t.Errorf("SET with another statement in a read-only transaction: %+v, want denied", res[1])
			}
			if r := run(t, in, "alpha", query("SELECT last_value, is_called FROM ro_seq"))[0]; fmt.Sprint(r.Rows) != "[[1 false]]" {
				t.Errorf("the sequence after a refused read-only call: %v %s, want untouched", r.Rows, r.Error)
			}
			// What PostgreSQL lets a transaction set before its first
			// query stays the plugin's to set.
			must(t, in, "alpha", step{Op: "begin", ReadOnly: true}, exec("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, DEFERRABLE"),
				query("SELECT count(*) FROM notes"), step{Op: "commit"})
		}
		for _, q := range lift {
			res := run(t, in, "alpha", step{Op: "begin", ReadOnly: true}, exec(q),
				exec("INSERT INTO notes (note) VALUES ('read-only')"), step{Op: "commit"})
			if res[1].Error == "" && res[2].Error == "" {
				t.Errorf("%q then INSERT in a read-only transaction: both ran: %+v", q, res)
			}
		}
		if got := fmt.Sprint(committedNotes(t, in, b, dbconf, "alpha")); got != "[a]" {
			t.Errorf("committed notes = %s, want [a]", got)
		}
	})
}

// One row of many large values fails with ErrTooLarge without the host
// copying it whole: each value is counted as it is read (SQLite reads the
// row whole first, so its columns are capped too; PostgreSQL's driver
// refuses the row's message before reading it).
func TestWideRowResultLimit(t *testing.T) {
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", "db_max_result = \"1MiB\""))
		wide := func(n int) string {
			col := "zeroblob(1000000)"
			if b.name == "pg" {
				col = "repeat('x', 1000000)"
			}
			cols := make([]string, n)
			for i := range cols {
				cols[i] = fmt.Sprintf("%s AS c%d", col, i)
			}
			return "SELECT " + strings.Join(cols, ", ")
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r := run(t, in, "alpha", query(wide(100)))[0]
		runtime.ReadMemStats(&after)
		if r.Kind != "too_large" || !strings.Contains(r.Error, "db_max_result") {
			t.Errorf("100 values of 1 MB: got %.300v, want too_large", r)
		}
		// The driver's copy of the row (SQLite) is all: 100 MB.
		alloc := (after.TotalAlloc - before.TotalAlloc) >> 20
		if alloc > 150 {
			t.Errorf("a refused 100 MB row allocated %d MiB on the host", alloc)
		}
		t.Logf("a refused 100 MB row allocated %d MiB on the host", alloc)
		if b.name == "sqlite" {
			if r := run(t, in, "alpha", query(wide(101)))[0]; r.Error == "" || !strings.Contains(r.Error, "too many columns") {
				t.Errorf("101 columns: got %.300v, want too many columns", r)
			}
			if r := run(t, in, "alpha", exec("CREATE TABLE wide ("+strings.Repeat("c INTEGER, ", 100)+"d INTEGER)"))[0]; r.Error == "" {
				t.Errorf("a table of 101 columns was created")
			}
		}
		// A row under the limit is fine.
		if r := must(t, in, "alpha", query(strings.Replace(wide(1), "1000000", "1000", 1)))[0]; len(r.Rows) != 1 {
			t.Errorf("rows = %d", len(r.Rows))
		}
	})
}

// A migration runs under the same statement filter as the plugin's
// statements, and what it sets for its session does not reach the
// plugin's connections.
func TestMigrationSession(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, b.name+"session", "db_max_conns = 1"), plugin("hostile", true, "pghostile", ""))
		if b.name == "sqlite" {
			r := must(t, in, "alpha", query("PRAGMA recursive_triggers"))[0]
			if fmt.Sprint(r.Rows) != "[[0]]" {
				t.Errorf("recursive_triggers after the migration = %v, want 0", r.Rows)
			}
			return
		}
		r := must(t, in, "alpha", query("SHOW statement_timeout"), query("SHOW work_mem"), query("SELECT count(*) FROM s"))
		if fmt.Sprint(r[0].Rows, r[1].Rows) != "[[5s]] [[4MB]]" {
			t.Errorf("statement_timeout, work_mem after the migration = %v %v, want 5s 4MB", r[0].Rows, r[1].Rows)
		}
		st, reason := in.RT.Slot("hostile").Status()
		if st == "ready" || !strings.Contains(reason, "migration 002_escape.up.sql failed: statement refused") || !strings.Contains(reason, "SET search_path") {
			t.Errorf("hostile migration: %s: %s", st, reason)
		}
	})
}

// A *sql.DB may be used from several goroutines at once, and each gets its
// own rows and errors back: the SDK reads the host's one result slot per
// instance in the same step as the call that filled it, even when an
// allocation in between lets another goroutine run.
func TestParallelStatementsGetTheirOwnResults(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("par", true, "", `timeout = "60s"`))
		for i := range 3 {
			status, _, body := in.Get(t, "/api/par/parallel?g=60&k=30")
			var out struct {
				Bad      int
				Examples []string
			}
			if status != 200 || json.Unmarshal([]byte(body), &out) != nil {
				t.Fatalf("request %d: %d %s", i, status, body)
			}
			if out.Bad != 0 {
				t.Errorf("request %d: %d of 1800 statements got another's answer, e.g. %q", i, out.Bad, out.Examples)
			}
		}
	})
}

// A statement that is empty or only a comment runs and affects nothing, in
// and out of a transaction; on SQLite it has no result, which trapped the
// guest (a nil pointer in the host).
func TestEmptyStatements(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("empty", true, "", ""))
		for _, sql := range []string{"", ";", "   ", "-- nothing", "/* c */"} {
			if r := must(t, in, "empty", exec(sql))[0]; r.Affected != 0 {
				t.Errorf("%q: affected %d", sql, r.Affected)
			}
			if r := must(t, in, "empty", step{Op: "begin"}, exec(sql), step{Op: "commit"})[1]; r.Affected != 0 {
				t.Errorf("%q in a transaction: affected %d", sql, r.Affected)
			}
		}
		if status, _, body := in.Get(t, "/api/empty/init"); status != 200 {
			t.Errorf("the plugin after them: %d %s", status, body)
		}
	})
}
