package database_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// rawMigrations is a plugin running dbguest that registers migrations as
// spec says ("count,size,calls", see dbguest's init).
func rawMigrations(id, spec string) string {
	return plugin(id, true, "", "") + fmt.Sprintf("[plugins.%s.config]\nraw_migrations = %q\n", id, spec)
}

// A plugin registering more migrations, or larger ones, than a plugin may
// is refused at once with ErrInvalid naming the limit; the plugin loads
// without them. 100000 files took the host tens of seconds, past the init
// timeout (quadratic duplicate check); more kept a core busy for hours.
func TestMigrationLimits(t *testing.T) {
	for spec, want := range map[string]string{
		"100000,8,1":  "100000 migrations, more than the 10000 a plugin may register",
		"1,4194305,1": "4194305 bytes of SQL, more than the 4194304 (4 MiB) a migration may have",
	} {
		begin := time.Now()
		in := start(t, backends[0].conf(t), rawMigrations("alpha", spec))
		if took := time.Since(begin); took > 10*time.Second {
			t.Errorf("%s: loading took %s", spec, took)
		}
		status, _, body := in.Get(t, "/api/alpha/init")
		var out struct{ Error string }
		json.Unmarshal([]byte(body), &out)
		if status != 200 || !strings.Contains(out.Error, "call 1: code -") || !strings.Contains(out.Error, want) {
			t.Errorf("%s: init reported %d %s, want a refusal containing %q", spec, status, body, want)
		}
	}
}

// A migration that never ends is cancelled at limits.migration_timeout:
// its plugin fails to load with a reason naming the key, the runtime
// finishes loading (readiness 200) and the other plugins serve. On
// PostgreSQL the server stops it too, also when the migration turned the
// statement timeout off. Without the limit, Load never returned.
func TestMigrationTimeout(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		conf := []string{dbconf, plugin("hang", true, "hang", `migration_timeout = "2s"`), plugin("alpha", true, "good", "")}
		hanging := []string{"hang"}
		if b.name == "pg" {
			conf = append(conf, plugin("pghang", true, "pghang", `migration_timeout = "2s"`), plugin("settings", true, "pgtimeout", `migration_timeout = "3m"`))
			hanging = append(hanging, "pghang")
		}
		begin := time.Now()
		in := start(t, conf...)
		if took := time.Since(begin); took > 30*time.Second {
			t.Errorf("loading took %s", took)
		}
		for _, id := range hanging {
			st, reason := in.RT.Slot(id).Status()
			if st != "failed" || !strings.Contains(reason, "migration 002_hang.up.sql failed") || !strings.Contains(reason, "limits.migration_timeout of 2s") {
				t.Errorf("%s: %s: %s", id, st, reason)
			}
			// On SQLite, which runs the file one statement at a time,
			// the line of the statement the timeout stopped comes first,
			// as for any error of a migration there (docs/database.md).
			// On PostgreSQL the client's deadline comes first, before
			// the server's error that would tell the statement.
			if want := "migration 002_hang.up.sql failed: line 2: the plugin's pending migrations ran past limits.migration_timeout of 2s"; b.name == "sqlite" && !strings.Contains(reason, want) {
				t.Errorf("%s: %s, want %q", id, reason, want)
			}
			var n int
			in.RT.Database().DB().QueryRow("SELECT count(*) FROM plugin_migrations WHERE plugin = ?", id).Scan(&n)
			if n != 1 {
				t.Errorf("%s has %d migrations recorded, want 1 (the one before the hanging one)", id, n)
			}
		}
		if status, _, body := in.Get(t, "/.greenroom/health/v1/readiness"); status != 200 {
			t.Errorf("readiness: %d %s", status, body)
		}
		must(t, in, "alpha", query("SELECT count(*) FROM applied"))
		if b.name != "pg" {
			return
		}
		// The server's statement timeout is what is left of the
		// migration timeout.
		r := must(t, in, "settings", query("SELECT ms FROM settings"))[0]
		if ms, _ := r.Rows[0][0].(float64); ms < 170000 || ms > 180000 {
			t.Errorf("statement_timeout during a migration with migration_timeout 3m: %v ms", r.Rows)
		}
		// Nothing of the hanging migrations still runs on the server.
		deadline := time.Now().Add(10 * time.Second)
		for {
			var n int
			err := in.RT.Database().DB().QueryRow("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND query LIKE '%RECURSIVE c(x)%' AND pid <> pg_backend_pid()").Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%d hanging migrations still run on the server", n)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// limits.db_max_size bounds a plugin's SQLite database, temp tables
// included: a write that needs more pages fails with ErrTooLarge naming
// the key, deleting rows makes room again, the plugin cannot lift the
// bound, another plugin is not bounded by it, and a reload changes it
// on the connections already open. Without it a plugin could fill the
// volume that also holds the runtime's database.
func TestSQLiteMaxSize(t *testing.T) {
	dbconf := backends[0].conf(t)
	conf := func(size string) string {
		return dbconf + plugin("alpha", true, "", `db_max_size = "`+size+`"`) + plugin("beta", true, "", "")
	}
	in := start(t, conf("256KiB"))
	must(t, in, "alpha", exec("CREATE TABLE blobs (b BLOB)"))
	full := func(r result) bool {
		return r.Kind == "too_large" && strings.Contains(r.Error, "limits.db_max_size of 262144 bytes")
	}
	var res []result
	for range 10 {
		if res = run(t, in, "alpha", exec("INSERT INTO blobs VALUES (randomblob(60000))")); res[0].Error != "" {
			break
		}
	}
	if !full(res[0]) {
		t.Fatalf("600 kB into a 256KiB database: %+v", res[0])
	}
	if n := count(t, in, "alpha", "blobs"); n < 2 || n > 4 {
		t.Errorf("%d rows of 60 kB fit in 256KiB", n)
	}
	if r := run(t, in, "alpha", exec("CREATE TEMP TABLE scratch AS SELECT randomblob(400000) AS b"))[0]; !full(r) {
		t.Errorf("a 400 kB temp table: %+v", r)
	}
	if r := run(t, in, "alpha", exec("PRAGMA max_page_count = 1000000"))[0]; r.Kind != "denied" {
		t.Errorf("PRAGMA max_page_count from the plugin: %+v", r)
	}
	// A temp database without tables would take a larger page size,
	// and so hold 16 times the bound in as many pages.
	for _, q := range []string{"PRAGMA temp.page_size = 65536", "PRAGMA page_size = 65536", "PRAGMA schema_version = 7"} {
		if r := run(t, in, "alpha", exec(q))[0]; r.Kind != "denied" {
			t.Errorf("%s from the plugin: %+v", q, r)
		}
	}
	if r := must(t, in, "alpha", query("PRAGMA temp.page_size"))[0]; r.Rows[0][0] != 4096.0 {
		t.Errorf("PRAGMA temp.page_size reads %v", r.Rows)
	}
	must(t, in, "alpha", exec("DELETE FROM blobs"), exec("INSERT INTO blobs VALUES (randomblob(60000))"))
	// The write-ahead log, outside max_page_count, is checkpointed and
	// cut back near the bound: forty rewrites of a 60 kB row left 4 MB
	// of it before.
	for range 40 {
		must(t, in, "alpha", exec("UPDATE blobs SET b = randomblob(60000)"))
	}
	dir := strings.TrimPrefix(strings.Split(strings.Split(dbconf, "connection = \"")[1], "\"")[0], "file:")
	if st, err := os.Stat(filepath.Join(dir, "plugins", "alpha.db-wal")); err != nil {
		t.Error(err)
	} else if st.Size() > 3*256<<10 {
		t.Errorf("write-ahead log after 40 rewrites of 60 kB under a 256KiB bound: %d bytes", st.Size())
	}
	must(t, in, "beta", exec("CREATE TABLE blobs (b BLOB)"), exec("INSERT INTO blobs VALUES (randomblob(1000000))"))

	in.SetConfig(conf("4MiB"))
	in.Reload(t)
	must(t, in, "alpha", exec("INSERT INTO blobs VALUES (randomblob(1000000))"))
}

// A migration past limits.db_max_size fails its plugin's load with a
// reason naming the key.
func TestSQLiteMaxSizeMigration(t *testing.T) {
	in := start(t, backends[0].conf(t), plugin("alpha", true, "sqlitebig", "db_max_size = \"64KiB\"\ndb_max_result = \"32MiB\""))
	if st, reason := in.RT.Slot("alpha").Status(); st != "failed" || !strings.Contains(reason, "migration 002_big.up.sql failed: line 2: the plugin's database reached limits.db_max_size of 65536 bytes") {
		t.Errorf("alpha: %s: %s", st, reason)
	}
}

// A limits.db_max_size from the environment is not quoted decoded ("of
// 65536 bytes" for "64KiB", which the log's redaction does not match) in
// the migration's error, which the plugin's callers read in its 503s.
func TestSQLiteMaxSizeMigrationFromTheEnvironment(t *testing.T) {
	migrationLimitFromTheEnvironment(t, "alpha", "sqlitebig", "db_max_size", "64KiB", "db_max_result = \"32MiB\"", "65536")
}

// A limits.migration_timeout from the environment is not quoted decoded
// ("of 2s" for "2000ms") in the error of the migration it cancelled,
// which the plugin's callers read in its 503s.
func TestMigrationTimeoutFromTheEnvironment(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	migrationLimitFromTheEnvironment(t, "hang", "hang", "migration_timeout", "2000ms", "", "of 2s")
}

// migrationLimitFromTheEnvironment loads plugin id with migration set
// set on SQLite and limits.<key> = value from the environment (plus the
// limits lines extra), which its migrations must pass: the plugin fails,
// and its last_error, its callers' 503 and the log say
// "limits.<key> of [REDACTED]", never decoded, as the text.
func migrationLimitFromTheEnvironment(t *testing.T, id, set, key, value, extra, decoded string) {
	t.Helper()
	const env = "GR_TEST_MIGRATION_LIMIT"
	cfg := backends[0].conf(t) + "\n" + plugin(id, true, set, fmt.Sprintf("%s = \"${%s}\"\n%s", key, env, extra))
	in := servertest.Start(t, cfg, servertest.Options{CacheDir: cacheDir, Env: map[string]string{env: value}})
	st, reason := in.RT.Slot(id).Status()
	_, _, body := in.Get(t, "/api/"+id+"/init")
	want := "limits." + key + " of [REDACTED]"
	if st != "failed" || !strings.Contains(reason, want) || !strings.Contains(body, want) {
		t.Errorf("%s: %s: %s; its callers read %s", id, st, reason, body)
	}
	for where, text := range map[string]string{"last_error": reason, "503": body, "log": in.Log.String()} {
		if strings.Contains(text, decoded) {
			t.Errorf("the %s quotes limits.%s from the environment decoded (%q): %s", where, key, decoded, text)
		}
	}
}

// A reload cannot bring limits.db_max_size to a process on PostgreSQL by
// also switching the config to SQLite (database.client needs a restart,
// so the running client decides): the new version fails, the old serves.
func TestPGReloadCannotBoundSize(t *testing.T) {
	in := start(t, backends[1].conf(t), plugin("alpha", true, "", ""))
	in.SetConfig(backends[0].conf(t) + plugin("alpha", true, "", `db_max_size = "64KiB"`))
	res := in.Reload(t)
	if pr := res.Plugins["alpha"]; pr.Outcome != "failed" || !strings.Contains(pr.Error, "limits.db_max_size is enforced on SQLite only, and this process runs on pg") {
		t.Errorf("reload: %+v", pr)
	}
	must(t, in, "alpha", exec("CREATE TABLE t (x int)"))
}

// A transaction whose statement fills the database is rolled back whole
// and stays ended: SQLite rolls back the transaction of a statement with
// no journal of its own, and a plugin that went on would otherwise have
// committed its later statements one by one (and lost the earlier ones).
func TestSQLiteMaxSizeEndsTheTransaction(t *testing.T) {
	in := start(t, backends[0].conf(t), plugin("alpha", true, "", `db_max_size = "256KiB"`))
	must(t, in, "alpha", exec("CREATE TABLE notes (b BLOB)"))
	for _, end := range []string{"commit", "rollback"} {
		res := run(t, in, "alpha", step{Op: "begin"}, exec("INSERT INTO notes VALUES ('first')"),
			exec("INSERT INTO notes VALUES (randomblob(400000))"), exec("INSERT INTO notes VALUES ('after')"), step{Op: end})
		if r := res[2]; r.Kind != "too_large" || !strings.Contains(r.Error, "the transaction it ran in was rolled back") {
			t.Errorf("%s: the statement that fills the database: %+v", end, r)
		}
		if r := res[3]; r.Error == "" || !strings.Contains(r.Error, "roll it back and start again") {
			t.Errorf("%s: a statement after it in the same transaction: %+v", end, r)
		}
		if r := res[4]; end == "commit" && !strings.Contains(r.Error, "commit refused") || end == "rollback" && r.Error != "" {
			t.Errorf("%s of the ended transaction: %+v", end, r)
		}
		if n := count(t, in, "alpha", "notes"); n != 0 {
			t.Errorf("%s: %d rows stored by the ended transaction", end, n)
		}
	}
}

// SQLite rolls back the whole transaction when a write in it is
// interrupted at db_statement_timeout, or fails an ON CONFLICT ROLLBACK,
// and goes on in autocommit mode: the plugin's later statements were each
// committed alone and its Rollback undid nothing. The runtime ends the
// transaction then, as it does at db_max_size, and as PostgreSQL leaves
// one: later statements and Commit fail, Rollback succeeds, nothing stays.
func TestSQLiteStatementFailureThatEndsTheTransaction(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[0].conf(t), plugin("alpha", true, "", `db_statement_timeout = "300ms"`))
	must(t, in, "alpha", exec("CREATE TABLE notes (n TEXT UNIQUE)"))
	endless := exec("INSERT INTO notes VALUES ((WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c))")
	for _, tc := range []struct {
		name, kind string
		failing    step
	}{
		{"timeout", "timeout", endless},
		// SQLite leaves the transaction of an interrupted read open; the
		// runtime ends it all the same, as PostgreSQL's statement_timeout
		// does.
		{"read timeout", "timeout", query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c")},
		{"or rollback", "", exec("INSERT OR ROLLBACK INTO notes VALUES ('first')")},
	} {
		for _, end := range []string{"commit", "rollback"} {
			res := run(t, in, "alpha", step{Op: "begin"}, exec("INSERT INTO notes VALUES ('first')"),
				tc.failing, exec("INSERT INTO notes VALUES ('after')"), step{Op: end})
			if r := res[2]; r.Error == "" || tc.kind != "" && r.Kind != tc.kind {
				t.Errorf("%s, %s: the failing statement: %+v", tc.name, end, r)
			}
			if r := res[3]; r.Error == "" || !strings.Contains(r.Error, "roll it back and start again") {
				t.Errorf("%s, %s: a statement after it in the same transaction: %+v", tc.name, end, r)
			}
			if r := res[4]; end == "commit" && !strings.Contains(r.Error, "commit refused") || end == "rollback" && r.Error != "" {
				t.Errorf("%s, %s of the ended transaction: %+v", tc.name, end, r)
			}
			if n := count(t, in, "alpha", "notes"); n != 0 {
				t.Errorf("%s, %s: %d rows stored by the ended transaction", tc.name, end, n)
			}
		}
	}
	// A failure SQLite does not end the transaction for leaves it open:
	// the plugin may go on and commit.
	res := run(t, in, "alpha", step{Op: "begin"}, exec("INSERT INTO notes VALUES ('first')"),
		exec("INSERT INTO notes VALUES ('first')"), exec("INSERT INTO notes VALUES ('after')"), step{Op: "commit"})
	if res[2].Error == "" || res[3].Error != "" || res[4].Error != "" {
		t.Errorf("a constraint failure in a transaction: %+v", res)
	}
	if n := count(t, in, "alpha", "notes"); n != 2 {
		t.Errorf("%d rows after the transaction that went on, want 2", n)
	}
}

// SQLite's memory is bounded for the whole process (database.sqlite_memory):
// json_group_array builds its value without looking at db_max_result
// (SQLITE_LIMIT_LENGTH) until it is done, and grew to gigabytes in an
// audit. Past the bound the statement fails with ErrTooLarge, naming it,
// and the next statement works.
func TestSQLiteMemoryBound(t *testing.T) {
	in := start(t, backends[0].conf(t)+"sqlite_memory = \"64MiB\"\n", plugin("alpha", true, "", `db_statement_timeout = "20s"`+"\ntimeout = \"30s\""))
	r := run(t, in, "alpha", query(`WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 2000)
		SELECT length(json_group_array(printf('%.*c', 100000, 'x'))) FROM c`))
	if r[0].Kind != "too_large" || !strings.Contains(r[0].Error, "database.sqlite_memory of 67108864 bytes") {
		t.Errorf("json_group_array of 200 MB: %+v, want ErrTooLarge naming database.sqlite_memory", r[0])
	}
	must(t, in, "alpha", query(`SELECT length(json_group_array(printf('%.*c', 1000, 'x'))) FROM (SELECT 1 UNION ALL SELECT 2)`))

	// In a transaction it ends the transaction, whether SQLite rolled it
	// back (a scalar subquery in an INSERT) or not (a SELECT): the same
	// every time, as at db_max_size.
	must(t, in, "alpha", exec("CREATE TABLE notes (n TEXT)"))
	for _, bomb := range []string{
		`SELECT length(json_group_array(printf('%.*c', 100000, 'x'))) FROM (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 2000) SELECT i FROM c)`,
		`INSERT INTO notes VALUES ((WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 2000) SELECT json_group_array(printf('%.*c', 100000, 'x')) FROM c))`,
	} {
		res := run(t, in, "alpha", step{Op: "begin"}, exec("INSERT INTO notes VALUES ('first')"), exec(bomb), exec("INSERT INTO notes VALUES ('after')"), step{Op: "commit"})
		if r := res[2]; r.Kind != "too_large" || !strings.Contains(r.Error, "the transaction it ran in was rolled back") {
			t.Errorf("the statement out of memory in a transaction: %+v", r)
		}
		if r := res[3]; !strings.Contains(r.Error, "ran out of SQLite's memory (database.sqlite_memory); roll it back and start again") {
			t.Errorf("a statement after it: %+v", r)
		}
		if r := res[4]; !strings.Contains(r.Error, "commit refused") {
			t.Errorf("its commit: %+v", r)
		}
		if n := count(t, in, "alpha", "notes"); n != 0 {
			t.Errorf("%d rows stored by the ended transaction", n)
		}
	}
}

// A migration that runs out of SQLite's memory fails its plugin's load
// with a reason naming database.sqlite_memory, not SQLite's bare "out of
// memory"; the plugin's statements are not run.
func TestSQLiteMemoryBoundMigration(t *testing.T) {
	in := start(t, backends[0].conf(t)+"sqlite_memory = \"64MiB\"\n", plugin("alpha", true, "sqlitememory", ""))
	st, reason := in.RT.Slot("alpha").Status()
	if st == "ready" || !strings.Contains(reason, "migration 001_bomb.up.sql failed: line 3: the statement needed more memory than SQLite may take in this process (database.sqlite_memory of 67108864 bytes") {
		t.Errorf("alpha is %s: %s; want its load failed naming database.sqlite_memory", st, reason)
	}
}

// A temporary table does not outlive the use of its SQLite connection: it
// lived in the connection's temporary database (a deleted file outside
// the data directory) for the plugin's next calls, unbounded without
// db_max_size, as a session's do on PostgreSQL until the reset there.
func TestSQLiteTempTablesEndWithTheirUse(t *testing.T) {
	in := start(t, backends[0].conf(t), plugin("alpha", true, "", "db_max_conns = 1"))
	must(t, in, "alpha", exec("CREATE TEMP TABLE big (x)"))
	for _, steps := range [][]step{
		{query("SELECT count(*) FROM temp.sqlite_schema")},
		{step{Op: "begin"}, exec("CREATE TEMP TABLE t2 (x)"), step{Op: "commit"}, query("SELECT count(*) FROM temp.sqlite_schema")},
	} {
		r := must(t, in, "alpha", steps...)
		if got := fmt.Sprint(r[len(r)-1].Rows); got != "[[0]]" {
			t.Errorf("temporary objects found by a later statement: %s", got)
		}
	}
	// Within one use of the connection, a transaction, they work.
	r := must(t, in, "alpha", step{Op: "begin"}, exec("CREATE TEMP TABLE t3 (x)"), exec("INSERT INTO t3 VALUES (1)"), query("SELECT count(*) FROM t3"), step{Op: "commit"})
	if got := fmt.Sprint(r[3].Rows); got != "[[1]]" {
		t.Errorf("a temporary table within its transaction: %s", got)
	}
}

// A pragma a plugin sets (foreign_keys, recursive_triggers: settings of
// the connection) lasts as long as the use of its connection, as a
// temporary table does: the next call gets a connection with the
// runtime's settings (foreign keys enforced) and not the previous call's.
// Reading a pragma, with an argument that names what to read included,
// keeps the connection.
func TestSQLitePragmasEndWithTheirUse(t *testing.T) {
	in := start(t, backends[0].conf(t), plugin("alpha", true, "", "db_max_conns = 1"))
	settings := query("SELECT (SELECT foreign_keys FROM pragma_foreign_keys), (SELECT recursive_triggers FROM pragma_recursive_triggers)")
	fresh := fmt.Sprint(must(t, in, "alpha", settings)[0].Rows)
	if fresh != "[[1 0]]" {
		t.Fatalf("a new connection's (foreign_keys, recursive_triggers): %s, want [[1 0]]", fresh)
	}
	for _, steps := range [][]step{
		{exec("PRAGMA foreign_keys = OFF"), exec("PRAGMA recursive_triggers = ON")},
		{exec("PRAGMA main.foreign_keys = 0; PRAGMA recursive_triggers = 1")},
		{step{Op: "begin"}, exec("PRAGMA recursive_triggers = 1"), settings, step{Op: "commit"}},
		// An empty value sets the pragma too (foreign_keys = '' is
		// OFF), where SQLite's authorizer, through the driver, showed
		// it as a read (no value): the connection went back to the pool
		// with foreign keys off.
		{exec("PRAGMA foreign_keys = ''")},
		{exec(`PRAGMA main.foreign_keys = ""`)},
	} {
		r := must(t, in, "alpha", steps...)
		if len(steps) > 2 {
			if got := fmt.Sprint(r[2].Rows); got != "[[1 1]]" {
				t.Errorf("within the transaction that set recursive_triggers: %s, want [[1 1]]", got)
			}
		}
		if got := fmt.Sprint(must(t, in, "alpha", settings)[0].Rows); got != fresh {
			t.Errorf("after %v the next call's (foreign_keys, recursive_triggers): %s, want a new connection's %s", steps, got, fresh)
		}
	}
	// total_changes() is the connection's (0 on a new one): the same
	// after a read of pragmas, the same connection.
	changes := query("SELECT total_changes()")
	before := must(t, in, "alpha", exec("CREATE TABLE t (x)"), exec("INSERT INTO t VALUES (1), (2)"), changes)[2]
	must(t, in, "alpha", query("SELECT count(*) FROM pragma_table_info('t')"), exec("PRAGMA table_info(t)"),
		exec("PRAGMA integrity_check(10)"), exec("PRAGMA foreign_keys"))
	if got, want := fmt.Sprint(must(t, in, "alpha", changes)[0].Rows), fmt.Sprint(before.Rows); got != want || want == "[[0]]" {
		t.Errorf("total_changes() after reading pragmas: %s, want %s (the same connection)", got, want)
	}
}

// A statement whose arguments pass limits.db_max_result is refused with
// ErrTooLarge naming the key, on both databases, before the host copies
// them: PostgreSQL stored a value it could never send back, and arguments
// of the plugin's whole memory were copied onto the host's heap. Arguments
// within it run.
func TestArgumentsBoundByMaxResult(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", `db_max_result = "64KiB"`))
		a, c := strings.Repeat("a", 30000), strings.Repeat("c", 40000)
		res := run(t, in, "alpha",
			query("SELECT length(?) + length(?)", a, a),
			query("SELECT length(?) + length(?)", a, c),
			exec("SELECT length(?)", strings.Repeat("x", 70000)))
		if r := res[0]; r.Error != "" || len(r.Rows) != 1 || fmt.Sprint(r.Rows[0][0]) != "60000" {
			t.Errorf("arguments of 60010 bytes: %+v", r)
		}
		for i, size := range []int{70010, 70005} {
			want := fmt.Sprintf("the statement's arguments take %d bytes, more than limits.db_max_result of 65536", size)
			if r := res[i+1]; r.Kind != "too_large" || !strings.Contains(r.Error, want) {
				t.Errorf("arguments of %d bytes: %s %q, want too_large containing %q", size, r.Kind, r.Error, want)
			}
		}
	})
}

// A plugin's db_statement_timeout, db_max_result and db_max_conns from the
// environment are secrets: the errors its statements get (which it may
// hand its callers) and the log name them [REDACTED], not decoded ("of
// 300ms" for "0.3s", "of 65536 bytes" or "of 65536" for "64KiB", which
// the redaction of the secrets as written does not match).
func TestStatementLimitsFromTheEnvironmentNotTold(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	b := backends[0]
	cfg := b.conf(t) + "\n" + plugin("alpha", true, "good", "db_statement_timeout = \"${GR_ST}\"\ndb_max_result = \"${GR_MR}\"\ndb_max_conns = \"${GR_MC}\"\ntimeout = \"20s\"")
	in := servertest.Start(t, cfg, servertest.Options{CacheDir: cacheDir, Env: map[string]string{"GR_ST": "0.3s", "GR_MR": "64KiB", "GR_MC": "3"}})
	res := run(t, in, "alpha",
		step{Op: "query", SQL: slowStatement(b)},
		query("SELECT zeroblob(70000)"),
		exec("SELECT length(?)", strings.Repeat("x", 70000)))
	for i, want := range []string{"ran past limits.db_statement_timeout of [REDACTED]", "exceeds limits.db_max_result of [REDACTED]", "more than limits.db_max_result of [REDACTED]"} {
		if r := res[i]; !strings.Contains(r.Error, want) || strings.Contains(r.Error, "300ms") || strings.Contains(r.Error, "65536") {
			t.Errorf("step %d: %s %q, want it to say %q", i, r.Kind, r.Error, want)
		}
	}
	if log := in.Log.String(); strings.Contains(log, "300ms") || strings.Contains(log, "65536") {
		t.Errorf("the log tells a limit from the environment decoded:\n%s", log)
	}
}
