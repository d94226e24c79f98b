package database_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	osexec "os/exec"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// The runtime's cross-replica locks are rows of its own table, which plugin
// roles cannot touch: a plugin holding the advisory locks the runtime once
// used does not stop another replica from opening or provisioning a
// plugin; and a plugin waiting for its lock (another replica provisioning
// it) holds up neither the runtime's database nor other plugins.
func TestPGLocksOutOfPluginsReach(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	url := pgtest.URL(t)
	in := start(t, fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", url), plugin("alpha", true, "good", ""), plugin("beta", true, "good", ""))
	key := func(name string) int64 {
		h := fnv.New64a()
		h.Write([]byte("greenroom:" + name))
		return int64(h.Sum64())
	}
	// Advisory locks are refused (and the runtime takes none: its locks
	// are rows of greenroom.runtime_locks, which alpha holds locked here).
	if r := run(t, in, "alpha", exec(fmt.Sprintf("SELECT pg_advisory_lock(%d), pg_advisory_lock(%d)", key("runtime"), key("plugin:beta"))))[0]; r.Kind != "denied" {
		t.Errorf("session advisory locks: %s %q, want denied", r.Kind, r.Error)
	}
	if r := run(t, in, "alpha", step{Op: "begin"}, exec(fmt.Sprintf("SELECT pg_advisory_xact_lock(%d), pg_advisory_xact_lock(%d)", key("runtime"), key("plugin:beta"))))[1]; r.Kind != "denied" {
		t.Errorf("transaction advisory locks: %s %q, want denied", r.Kind, r.Error)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	svc := database.New(database.Config{Client: database.ClientPG, Connection: url, Isolation: database.IsolationRole}, logrus.New())
	defer svc.Close()
	lim := database.Limits{MaxConns: 2, StatementTimeout: 5 * time.Second, MaxResult: 1 << 20}
	if err := svc.Open(ctx); err != nil {
		t.Fatalf("a second replica could not open the database: %v", err)
	}
	if _, err := svc.Plugin(ctx, "beta", lim); err != nil {
		t.Fatalf("a second replica could not provision beta: %v", err)
	}

	// Another replica provisioning gamma holds its lock.
	db := svc.DB()
	if _, err := db.ExecContext(ctx, "INSERT INTO greenroom.runtime_locks (name) VALUES ('plugin:gamma') ON CONFLICT DO NOTHING"); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT name FROM greenroom.runtime_locks WHERE name = 'plugin:gamma' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	gamma := make(chan error, 1)
	go func() {
		_, err := svc.Plugin(ctx, "gamma", lim)
		gamma <- err
	}()
	for waiting := 0; waiting == 0; time.Sleep(20 * time.Millisecond) {
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'greenroom lock' AND wait_event_type = 'Lock' AND datname = current_database()").Scan(&waiting); err != nil {
			t.Fatalf("gamma never waited for its lock: %v", err)
		}
	}
	others := make(chan error, 1)
	go func() {
		svc.DB()
		svc.PluginDB("beta")
		_, err := svc.Plugin(ctx, "delta", lim)
		others <- err
	}()
	select {
	case err := <-others:
		if err != nil {
			t.Errorf("delta: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the runtime's database or another plugin waited for gamma's lock")
	}
	select {
	case err := <-gamma:
		t.Fatalf("gamma was provisioned while another replica held its lock (%v)", err)
	default:
	}
	tx.Rollback()
	if err := <-gamma; err != nil {
		t.Fatalf("gamma: %v", err)
	}
	// Plugin roles cannot reach the lock rows.
	for _, sql := range []string{
		"SELECT * FROM greenroom.runtime_locks FOR UPDATE",
		"LOCK TABLE greenroom.runtime_locks",
		"SELECT * FROM greenroom.runtime_locks",
	} {
		if r := run(t, in, "alpha", step{Op: "begin"}, exec(sql))[1]; r.Kind != "denied" {
			t.Errorf("%s: got %+v, want denied", sql, r)
		}
	}
}

// A plugin does not read back what database.connection sets for the
// runtime's session beyond PostgreSQL's own settings: a custom setting
// given as a parameter or in options (where an operator may keep an
// application key, and which, from ${DATABASE_URL}, is part of a secret)
// was in every plugin connection, for current_setting to return.
func TestPGConnectionParametersNotInPluginSessions(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	u := pgtest.URL(t) + "&gr.test_secret=ParamSecret1234&options=" + strings.ReplaceAll(url.QueryEscape("-c gr.test_opt=OptSecret1234"), "+", "%20") + "&TimeZone=Pacific/Auckland"
	in := start(t, fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", u), plugin("alpha", true, "", ""))
	r := must(t, in, "alpha", query("SELECT coalesce(current_setting('gr.test_secret', true), ''), coalesce(current_setting('gr.test_opt', true), ''), current_setting('TimeZone')"))[0]
	if got := fmt.Sprint(r.Rows); got != "[[  Pacific/Auckland]]" {
		t.Errorf("the plugin's session reads %s, want neither custom setting and the time zone", got)
	}
	// The runtime's own connection keeps them.
	var opt string
	if err := in.RT.Database().DB().QueryRow("SELECT current_setting('gr.test_opt', true)").Scan(&opt); err != nil || opt != "OptSecret1234" {
		t.Errorf("the runtime's connection: %q, %v", opt, err)
	}
}

// Notifications are dropped, not buffered by the driver: a plugin cannot
// receive them, and could otherwise fill the host's memory.
func TestPGNotificationsDropped(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "good", ""))
	ctx := context.Background()
	conn, err := in.RT.Database().PluginDB("alpha").SQL().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// As a DO block could: the runtime's own use of the pool is not
	// filtered.
	for _, sql := range []string{"LISTEN greenroom_test", "SELECT pg_notify('greenroom_test', repeat('x', 1000))"} {
		if _, err := conn.ExecContext(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	err = conn.Raw(func(dc any) error {
		wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		if n, _ := dc.(interface{ Conn() *pgx.Conn }).Conn().WaitForNotification(wctx); n != nil {
			t.Errorf("notification of %d bytes buffered", len(n.Payload))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A reload's db_statement_timeout and db_max_result apply to the plugin's
// connections opened before it.
func TestReloadedDBLimits(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		conf := func(timeout, maxResult string) string {
			return dbconf + plugin("alpha", true, "good", fmt.Sprintf("timeout = \"20s\"\ndb_statement_timeout = %q\ndb_max_result = %q", timeout, maxResult))
		}
		in := start(t, conf("300ms", "64KiB"))
		big := "SELECT repeat('x', 300000)"
		if b.name == "sqlite" {
			big = "SELECT hex(zeroblob(150000))"
		}
		var steps []step
		if b.name == "pg" {
			// Every connection of the pool opens with the first limits.
			steps = []step{{Op: "begin"}, {Op: "begin"}, {Op: "begin"}, {Op: "rollback"}}
		}
		if r := run(t, in, "alpha", append(steps, query(big))...); r[len(r)-1].Error == "" {
			t.Fatalf("a 300000 byte value passed db_max_result of 64KiB")
		}
		in.SetConfig(conf("20s", "1MiB"))
		if res := in.Reload(t); res.Plugins["alpha"].Outcome != "reloaded" {
			t.Fatalf("reload: %+v", res.Plugins["alpha"])
		}
		steps = []step{query(big)}
		if b.name == "pg" {
			steps = append(steps, query("SELECT pg_sleep(1)"))
		}
		for range 4 {
			for i, r := range run(t, in, "alpha", steps...) {
				if r.Error != "" {
					t.Errorf("%s after the reload: %s", strings.Fields(steps[i].SQL)[1], r.Error)
				}
			}
		}
	})
}

// The statement filter on a real server: what it refuses would otherwise
// have run (a changed search_path, a temporary table, a rule that
// notifies, an aggregate over set_config, a COPY that waits for data), and
// what it lets through runs.
func TestPGStatementFilter(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "good", "db_max_conns = 1\ndb_statement_timeout = \"3s\""), plugin("beta", true, "good", ""))
	must(t, in, "alpha", exec("CREATE DOMAIN x$e AS text"), exec("CREATE TABLE j (x int)"), exec("CREATE TABLE files (path text, note text)"),
		exec("CREATE TABLE help (k text, v text)"), exec("CREATE TABLE config (name text, v text)"), exec("CREATE TABLE temp (x int)"),
		exec("CREATE TABLE prefs (notify boolean)"), exec(`INSERT INTO files VALUES ('a\b', 'uses pg_notify')`),
		exec("INSERT INTO config VALUES ('work_mem', '')"))
	for _, sql := range []string{
		// x$E is one identifier: the literal is a plain one
		`SELECT plugin_alpha.x$E'\'; SET search_path TO plugin_beta; --'`,
		// SELECT INTO TEMP with a column labelled insert or merge
		`SELECT 1 AS "insert" INTO TEMP t1`,
		"SELECT 1 insert INTO TEMP t2",
		"SELECT 1 merge INTO TEMP t3",
		"EXPLAIN ANALYZE CREATE TEMP TABLE t4 AS SELECT 1",
		// an UPDATE of the view would update pg_settings
		"CREATE VIEW s AS SELECT * FROM pg_settings",
		"UPDATE ONLY (pg_settings) SET setting = 'plugin_beta' WHERE name = 'search_path'",
		"CREATE RULE r AS ON INSERT TO j DO ALSO NOTIFY greenroom",
		"CREATE AGGREGATE a(text, boolean) (SFUNC = 'set_config', STYPE = text, INITCOND = 'search_path')",
		"CREATE AGGREGATE a(text, boolean) (SFUNC = set_config, STYPE = text, INITCOND = 'search_path')",
		"COPY j FROM STDIN",
		"COPY j TO STDOUT",
		`SET standard_conforming_strings = off; SELECT '\''; SET search_path TO plugin_beta; --'`,
	} {
		for _, op := range []string{"exec", "query"} {
			r := run(t, in, "alpha", step{Op: op, SQL: sql})[0]
			if r.Kind != "denied" || !strings.Contains(r.Error, "statement refused") {
				t.Errorf("%s %q: got %+v, want refused", op, sql, r)
			}
		}
	}
	// A session with standard_conforming_strings off, however it was
	// turned off, reads a backslash in every literal as an escape. (Only
	// within a transaction: a connection's settings are reset before it
	// goes back to the pool, after each statement outside one.)
	r := run(t, in, "alpha", step{Op: "begin"}, exec(`DO $$ BEGIN EXECUTE 'SET standard_' || 'conforming_strings = off'; END $$`),
		exec(`SELECT '\''; SET search_path TO plugin_beta; --'`), exec("SET standard_conforming_strings = on"), step{Op: "commit"})
	if r[1].Error != "" || r[2].Kind != "denied" || r[3].Error != "" || r[4].Error != "" {
		t.Errorf("standard_conforming_strings off for the session: %+v", r)
	}
	r = must(t, in, "alpha",
		// a function's own search_path; pg_temp qualifying nothing
		exec("CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT 1 $$"),
		exec("ALTER FUNCTION f() SET search_path = plugin_alpha, pg_temp"),
		query(`SELECT f(), 1 AS "pg_temp"`),
		// backslashes in plain literals
		query(`SELECT replace(path, '\', '/') FROM files WHERE note = 'uses pg_notify'`),
		exec(`INSERT INTO help VALUES ('paths', 'Use C:\'), ('notify', 'We notify you; listen for updates')`),
		query(`SELECT count(*) FROM files WHERE path LIKE 'a\_%' ESCAPE '\' AND note = 'pg_temp'`),
		// columns and aliases named set_config, pg_notify, notify
		exec("CREATE TABLE s (set_config text, pg_notify text)"),
		query("SELECT * FROM j AS pg_notify"),
		query("SELECT notify FROM prefs"),
		// pg_settings read, to update another table
		exec("WITH s AS (SELECT setting FROM pg_settings WHERE name = 'work_mem') UPDATE config SET v = s.setting FROM s WHERE config.name = 'work_mem'"),
		exec("CREATE TABLE settings AS SELECT name, setting FROM pg_settings"),
		// a table named temp
		exec("INSERT INTO temp VALUES (1)"),
		exec("EXPLAIN ANALYZE INSERT INTO temp VALUES (2)"),
		exec("MERGE INTO temp t USING (SELECT 3 AS x) s ON t.x = s.x WHEN NOT MATCHED THEN INSERT VALUES (s.x)"),
		exec("CREATE RULE r2 AS ON INSERT TO j DO ALSO INSERT INTO temp VALUES (NEW.x)"),
		exec("INSERT INTO j VALUES (4)"),
		exec("EXPLAIN ANALYZE CREATE TABLE t5 AS SELECT 1"),
		exec("CREATE AGGREGATE total(int) (SFUNC = int4pl, STYPE = int)"),
		query("SELECT total(x) FROM temp"),
		query("SELECT 'a'::x$e"),
		query("SELECT 1 AS x$$a$, ? AS y", "arg"),
	)
	if got := fmt.Sprint(r[2].Rows, r[3].Rows, r[5].Rows, r[9].Affected, r[18].Rows, r[20].Rows); got != "[[1 1]] [[a/b]] [[0]] 1 [[10]] [[1 arg]]" {
		t.Errorf("allowed statements returned %s", got)
	}
	res := must(t, in, "alpha", query(`SELECT current_setting('search_path'), pg_my_temp_schema()::int,
		(SELECT count(*) FROM pg_rules WHERE rulename = 'r'), to_regclass('s') IS NULL OR NOT EXISTS (SELECT FROM pg_views WHERE viewname = 's'),
		(SELECT count(*) FROM pg_proc WHERE proname = 'a')`))[0]
	if got := fmt.Sprint(res.Rows); got != "[[plugin_alpha 0 0 true 0]]" {
		t.Errorf("alpha's session after the refused statements (search_path, temporary schema, rule r, no view s, aggregate a): %s", got)
	}
}

// A session whose client_encoding is no longer UTF8 runs no more of the
// plugin's statements: in SJIS the last byte of ぁ (E3 81 81) and the
// backslash after it are one character, so that a literal the filter
// reads as open (E'ぁ\'...) is closed for the server, which ran the
// LISTEN, advisory lock and temporary table the filter took for text
// (and PREPARE TRANSACTION, where the server allows it). Outside a
// transaction such a connection is not put back in the pool.
func TestPGClientEncodingChanged(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "good", "db_max_conns = 1\ndb_statement_timeout = \"3s\""))
	hidden := `SELECT E'ぁ\'; LISTEN evilchan; CREATE TEMP TABLE sneaky (x int); --'`
	for _, set := range []string{"SET client_encoding = 'SJIS'", "SET NAMES 'BIG5'", "SELECT set_config('client_encoding', 'GBK', false)", "SET LOCAL client_encoding = 'SJIS'"} {
		r := run(t, in, "alpha", step{Op: "begin"}, exec(set), exec(hidden), query("SELECT 1"), step{Op: "rollback"})
		if r[1].Error != "" || r[2].Kind != "denied" || !strings.Contains(r[2].Error, "client_encoding") || r[3].Kind != "denied" || r[4].Error != "" {
			t.Errorf("%s in a transaction, then statements: %+v", set, r)
		}
		r = run(t, in, "alpha", exec(set), exec(hidden), query("SELECT current_setting('client_encoding'), pg_my_temp_schema()::int"))
		if r[0].Error != "" || r[1].Error != "" || fmt.Sprint(r[2].Rows) != "[[UTF8 0]]" {
			t.Errorf("%s, then statements outside a transaction: %+v", set, r)
		}
	}
	res := must(t, in, "alpha", query("SELECT count(*) FROM pg_listening_channels()"))[0]
	if fmt.Sprint(res.Rows) != "[[0]]" {
		t.Errorf("alpha's session listens: %v", res.Rows)
	}
}

// A hostile 1 MiB statement reaches the server (which refuses it) in
// well under a second of filtering: the filter took seconds of host CPU
// on it, past the request's deadline, when it was quadratic.
func TestPGStatementFilterLinear(t *testing.T) {
	in := start(t, backends[1].conf(t), plugin("alpha", true, "good", ""))
	n := 49000
	for _, sql := range []string{
		"select 1 " + strings.Repeat("as(", n) + strings.Repeat(")insert into temp ", n),
		"select 1 " + strings.Repeat("as(", n) + strings.Repeat(")insert into temp ", n) + "-- standard_conforming_strings",
	} {
		begin := time.Now()
		r := run(t, in, "alpha", exec(sql))[0]
		if took := time.Since(begin); took > 2*time.Second || r.Kind != "failed" || !strings.Contains(r.Error, "syntax error") {
			t.Errorf("%d bytes: %s, %+v; want a syntax error from the server in well under a second", len(sql), took, r)
		}
	}
}

// A statement whose client died without a cancel request (a replica
// killed mid-statement: its socket closes, nothing else is sent) is ended
// by the server within about client_connection_check_interval, instead of
// running on to its statement_timeout and committing after another replica
// took the global task's expired lease. The client is a child process
// connecting as the plugin's connections do, killed with SIGKILL (a dying
// connection in this process would send a cancel request: pgconn does).
func TestPGStatementOfDeadClientEnds(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "good", "db_statement_timeout = \"60s\""))
	ctx := context.Background()
	db := in.RT.Database().PluginDB("alpha").SQL()
	// The child connects as the plugin's connections do: its parameters,
	// and the check interval they run with.
	var interval string
	if err := db.QueryRowContext(ctx, "SHOW client_connection_check_interval").Scan(&interval); err != nil || interval != "1s" {
		t.Errorf("plugin connections run with client_connection_check_interval = %q (%v), want 1s", interval, err)
	}
	conf := database.PluginConnConfig(in.RT.Database(), "alpha")
	conf.RuntimeParams["client_connection_check_interval"] = interval
	dsn := []string{"host=" + conf.Host, "port=" + strconv.Itoa(int(conf.Port)), "dbname=" + conf.Database, "user=" + conf.User, "password=" + conf.Password, "sslmode=disable"}
	for k, v := range conf.RuntimeParams {
		dsn = append(dsn, k+"='"+strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v)+"'")
	}
	child := osexec.Command(os.Args[0])
	child.Env = append(os.Environ(), deadClientEnv+"="+strings.Join(dsn, " "))
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	var pid int
	if _, err := fmt.Fscan(out, &pid); err != nil {
		t.Fatalf("the child process gave no backend pid: %v", err)
	}
	within(t, 10*time.Second, "the child's statement to run", func() bool {
		var state string
		err := db.QueryRowContext(ctx, "SELECT coalesce(state, '') FROM pg_stat_activity WHERE pid = $1", pid).Scan(&state)
		return err == nil && state == "active"
	})
	child.Process.Kill()
	child.Wait()
	killed := time.Now()
	within(t, 10*time.Second, "the dead client's statement to end", func() bool {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	t.Logf("the dead client's statement ended %s after it was killed", time.Since(killed).Round(time.Millisecond))
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM notes WHERE note = 'late'").Scan(&n); err != nil || n != 0 {
		t.Errorf("the dead client's INSERT committed %d rows (%v)", n, err)
	}
}

// deadClientEnv, set, makes the test binary the client of
// TestPGStatementOfDeadClientEnds: it connects with the connection string
// the variable holds, prints its backend's pid and runs a statement of
// 30 s, until it is killed.
const deadClientEnv = "GREENROOM_TEST_DEAD_CLIENT"

func deadClient(dsn string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(conn.PgConn().PID())
	_, err = conn.Exec(ctx, "INSERT INTO notes SELECT 'late' FROM pg_sleep(30)")
	fmt.Fprintln(os.Stderr, "the dead client's statement returned:", err)
	os.Exit(1)
}

// within waits until cond holds, polling; it fails the test after d.
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("waited %s for %s", d, what)
		}
	}
}

// endlessLoop is a statement that will not end on the server's cancel: it
// turns off the check for a gone client and catches query_canceled.
const endlessLoop = `DO $$ BEGIN PERFORM set_config('client_connection_check_interval', '0', false);
	LOOP BEGIN PERFORM pg_sleep(0.2); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$`

// A statement that will not end — its loop catches the cancel of the
// server's statement_timeout, and it turned off the server's check for a
// gone client — is given up by the client at db_statement_timeout; its
// backend must not run on (outside db_max_conns, past the runtime's own
// shutdown): the runtime ends it.
func TestPGGivenUpBackendEnds(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "good", "db_statement_timeout = \"1s\""))
	rt := in.RT.Database().DB().DB
	role := database.RoleName(dbName(t, in), "alpha")
	for _, steps := range [][]step{{exec(endlessLoop)}, {{Op: "begin"}, exec(endlessLoop)}} {
		r := run(t, in, "alpha", steps...)
		if last := r[len(r)-1]; last.Kind != "timeout" {
			t.Fatalf("the endless statement: %s %q, want a timeout", last.Kind, last.Error)
		}
		within(t, 15*time.Second, "the given-up backend to end", func() bool {
			var n int
			if err := rt.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND query LIKE '%pg_sleep(0.2)%'", role).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n == 0
		})
	}
	if !strings.Contains(in.Log.String(), "ended the database backend of a connection given up after its statement's timeout") {
		t.Error("the runtime did not say it ended the backend")
	}
}

// PostgreSQL does not interrupt array containment (@>) over large arrays:
// not on statement_timeout, nor on the client's cancel, nor on
// pg_terminate_backend. A plugin could make each of its connections such
// a backend, and the pool replaces each one it gives up, until the
// server's max_connections were taken from every other plugin (an
// audit's). A backend that outlives its reap counts against the plugin's
// db_max_conns until it ends.
func TestPGUninterruptibleBackendTakesAConnection(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "good", "db_max_conns = 1\ndb_statement_timeout = \"300ms\"\ntimeout = \"30s\""))
	rt := in.RT.Database().DB().DB
	role := database.RoleName(dbName(t, in), "alpha")
	var most atomic.Int64
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			var n int64
			if err := rt.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE usename = $1", role).Scan(&n); err == nil && n > most.Load() {
				most.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	running := stuckContainment(t, in, 60000)
	if !running() {
		t.Fatal("the containment's backend ended with its timeout: this server interrupts it, or computed it in time; the test needs larger arrays")
	}
	r := run(t, in, "alpha", query("SELECT 1"))
	if r[0].Kind != "timeout" || !strings.Contains(r[0].Error, "still run on the server") {
		t.Errorf("a statement while the given-up backend runs on: %s %q, want a timeout saying the backend takes the connection", r[0].Kind, r[0].Error)
	}
	within(t, 90*time.Second, "the containment's backend to end", func() bool { return !running() })
	close(stop)
	<-sampled
	if n := most.Load(); n > 1 {
		t.Errorf("the plugin had %d backends at once, over its db_max_conns of 1", n)
	}
	within(t, 10*time.Second, "a connection once the backend ended", func() bool {
		r := run(t, in, "alpha", query("SELECT 1"))
		return r[0].Error == "" && fmt.Sprint(r[0].Rows) == "[[1]]"
	})
}

// stuckContainment has plugin alpha run an array containment over n
// elements, which PostgreSQL does not interrupt, past its statement
// timeout, and returns whether its backend still runs.
func stuckContainment(t *testing.T, in *servertest.Instance, n int) (running func() bool) {
	t.Helper()
	stuck := fmt.Sprintf("SELECT array(SELECT generate_series(1, %d)) @> array(SELECT g FROM generate_series(1, %d) g)", n, n)
	if r := run(t, in, "alpha", query(stuck)); r[0].Kind != "timeout" {
		t.Fatalf("the containment: %s %q, want a timeout", r[0].Kind, r[0].Error)
	}
	rt, role := in.RT.Database().DB().DB, database.RoleName(dbName(t, in), "alpha")
	return func() bool {
		var k int
		if err := rt.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND query = $2", role, stuck).Scan(&k); err != nil {
			t.Fatal(err)
		}
		return k > 0
	}
}

// A backend seen outliving its termination stays counted against
// db_max_conns however long the reap's checks fail meanwhile (new
// connections refused by the server for a while): the reap used to give
// up after ten failed checks, and the plugin then opened a second backend
// past a db_max_conns of 1 while the first still ran (an audit's).
//
// Not parallel: while its containment runs (for half a minute), every
// DROP DATABASE on the server waits for it (PostgreSQL 15 and later: the
// drop waits for every backend to absorb a barrier, which one that does
// not check for interrupts does not), and so would the cleanup of every
// parallel test then ending.
func TestPGSurvivorStaysCountedThroughFailedChecks(t *testing.T) {
	var failing atomic.Bool
	// Before start: kept until the runtime (and its reaps) closed.
	conf := backends[1].conf(t)
	database.SetReapAttempts(t, connOf(t, conf), 2)
	database.FailReapChecks(t, connOf(t, conf), failing.Load)
	in := start(t, conf, plugin("alpha", true, "good", "db_max_conns = 1\ndb_statement_timeout = \"300ms\"\ntimeout = \"30s\""))
	running := stuckContainment(t, in, 130000)
	within(t, 10*time.Second, "the reap to see the backend outlive its termination", func() bool {
		return strings.Contains(in.Log.String(), "ended the database backend")
	})
	failing.Store(true)
	time.Sleep(4 * time.Second) // twice the attempts it once gave up after
	failing.Store(false)
	// A check that succeeds counts the backend again, and (5 s after
	// its termination) says it still runs. Waited for, not slept: on a
	// loaded machine the check's own connection took 6 s.
	within(t, 30*time.Second, "a check to succeed after the failed ones", func() bool {
		return strings.Contains(in.Log.String(), "still runs")
	})
	if !running() {
		t.Fatal("the containment's backend ended meanwhile: the test needs larger arrays")
	}
	r := run(t, in, "alpha", query("SELECT 1"))
	if r[0].Kind != "timeout" || !strings.Contains(r[0].Error, "still run on the server") {
		t.Errorf("a statement while the given-up backend runs on, after failed checks: %s %q, want a timeout saying the backend takes the connection", r[0].Kind, r[0].Error)
	}
	if !strings.Contains(in.Log.String(), "cannot check the database backend that outlived pg_terminate_backend") {
		t.Error("the failing checks are not logged")
	}
	within(t, 120*time.Second, "the containment's backend to end", func() bool { return !running() })
}

// The driver keeps the description of each distinct statement it runs,
// keyed by its whole text, up to 512 per connection: statements of up to
// 1 MiB each held gigabytes of the runtime's memory for as long as the
// connection lived (an audit's). Only statements up to 4 KiB are kept;
// longer ones are described each time, with arguments or without, as a
// query or an exec, and still run.
func TestPGLongStatementsNotCached(t *testing.T) {
	in := start(t, backends[1].conf(t), plugin("alpha", true, "good", "db_max_conns = 1"))
	pad := strings.Repeat("x", 256<<10)
	var before goruntime.MemStats
	goruntime.GC()
	goruntime.ReadMemStats(&before)
	for i := range 120 {
		steps := []step{query(fmt.Sprintf("SELECT $1::int /* %d %s */", i, pad), i)}
		if i%2 == 0 {
			steps = append(steps, query(fmt.Sprintf("SELECT %d /* %s */", i, pad)))
		}
		r := must(t, in, "alpha", steps...)
		if got := fmt.Sprint(r[0].Rows); got != fmt.Sprintf("[[%d]]", i) {
			t.Fatalf("statement %d: %s", i, got)
		}
	}
	if r := must(t, in, "alpha", exec("CREATE TABLE long_t (a int) /* "+pad+" */; INSERT INTO long_t VALUES (1)"), exec("INSERT INTO long_t VALUES ($1) /* "+pad+" */", 2), query("SELECT count(*) FROM long_t")); fmt.Sprint(r[2].Rows) != "[[2]]" {
		t.Errorf("long execs: %v", r[2].Rows)
	}
	var after goruntime.MemStats
	goruntime.GC()
	goruntime.ReadMemStats(&after)
	grew := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("the heap grew %d KiB", grew>>10)
	if grew > 24<<20 {
		t.Errorf("the heap grew %d MiB over 180 distinct statements of 256 KiB: their descriptions are kept", grew>>20)
	}
}

// activeBackends counts the backends of role running a statement.
func activeBackends(t *testing.T, rt *sql.DB, role string) int {
	t.Helper()
	var n int
	if err := rt.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND state = 'active'", role).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// deferredLoop makes every insert into table forever's transaction run,
// at its COMMIT, a trigger that will not end on the server's cancel.
var deferredLoop = []step{
	exec("CREATE TABLE forever (x int)"),
	exec(`CREATE FUNCTION forever() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
		PERFORM set_config('client_connection_check_interval', '0', false);
		LOOP BEGIN PERFORM pg_sleep(0.2); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$`),
	exec("CREATE CONSTRAINT TRIGGER forever AFTER INSERT ON forever DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION forever()"),
}

// A Commit that will not end — a deferred trigger, run by COMMIT, whose
// loop catches the cancel — is given up at the call's deadline, which
// closes its connection; its backend must not run on (outside
// db_max_conns, past the runtime's shutdown), one more per call: the
// runtime ends it, as a statement's.
func TestPGGivenUpCommitEnds(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "", "db_statement_timeout = \"1s\"\ntimeout = \"3s\""))
	rt := in.RT.Database().DB().DB
	role := database.RoleName(dbName(t, in), "alpha")
	must(t, in, "alpha", deferredLoop...)
	body, _ := json.Marshal(map[string]any{"steps": []step{{Op: "begin"}, exec("INSERT INTO forever VALUES (1)"), {Op: "commit"}}})
	if status, _, resp := in.Do(t, "POST", "/api/alpha/run", bytes.NewReader(body)); status != 504 {
		t.Fatalf("the endless commit: %d %s, want 504 (the call's deadline)", status, resp)
	}
	within(t, 20*time.Second, "the given-up commit's backend to end", func() bool { return activeBackends(t, rt, role) == 0 })
}

// A migration that will not end (its loop catches the cancel, after it
// turned off the server's statement_timeout and client check) is given up
// at limits.migration_timeout; its backend must not run on, one more per
// load: the runtime ends it.
func TestPGGivenUpMigrationEnds(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	givenUpMigrationEnds(t, backends[1].conf(t))
}

// givenUpMigrationEnds is TestPGGivenUpMigrationEnds on the database of
// conf.
func givenUpMigrationEnds(t *testing.T, conf string) {
	in := start(t, conf, plugin("alpha", true, "pgunkillable", "migration_timeout = \"2s\""))
	if st, reason := in.RT.Slot("alpha").Status(); st != "failed" || !strings.Contains(reason, "limits.migration_timeout of 2s") {
		t.Fatalf("alpha: %s: %s, want failed at its migration timeout", st, reason)
	}
	rt := in.RT.Database().DB().DB
	role := database.RoleName(dbName(t, in), "alpha")
	for end := time.Now().Add(20 * time.Second); activeBackends(t, rt, role) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			// What ran on, for a failure seen twice in full runs of
			// the package and never alone.
			t.Fatalf("waited 20s for the given-up migration's backend to end; the role's backends now:\n%s\nthe log's lines on backends:\n%s", backendsOf(t, rt, role), linesWith(in.Log.String(), "backend"))
		}
	}
}

// The given-up migration's backend is ended also when database/sql's own
// rollback of the migration's transaction (Tx.awaitDone, at its context's
// end) comes before the runtime's: that rollback discarded the
// connection, closing the *sql.Conn through which the reap reaches the
// backend's pid, and the reap did nothing (TestPGGivenUpMigrationEnds
// failed so in about one full run of the package in three).
func TestPGGivenUpMigrationEndsAfterTheTxRollback(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	conf := backends[1].conf(t)
	var ran atomic.Bool
	database.SetMigrationFailedHook(t, connOf(t, conf), func() { ran.Store(true); time.Sleep(300 * time.Millisecond) })
	givenUpMigrationEnds(t, conf)
	if !ran.Load() {
		t.Error("the hook that lets database/sql's rollback come first did not run")
	}
}

// linesWith is the lines of log that contain word.
func linesWith(log, word string) string {
	var b strings.Builder
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, word) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// backendsOf describes the backends of role, one per line.
func backendsOf(t *testing.T, rt *sql.DB, role string) string {
	t.Helper()
	rows, err := rt.Query(`SELECT pid, coalesce(state, ''), backend_start, coalesce(wait_event, ''), left(query, 80), coalesce(backend_xid::text, '') FROM pg_stat_activity WHERE usename = $1`, role)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var pid int
		var state, wait, query, xid string
		var started time.Time
		if err := rows.Scan(&pid, &state, &started, &wait, &query, &xid); err != nil {
			return err.Error()
		}
		fmt.Fprintf(&b, "pid %d %s since %s, waiting for %q, xid %q: %q\n", pid, state, started.Format(time.RFC3339Nano), wait, xid, query)
	}
	return b.String()
}

// A plugin can make every later login of its role fail, from a DO block
// (ALTER ROLE CURRENT_USER SET local_preload_libraries naming no file:
// FATAL at each login). The backend of a connection it then gives up is
// ended all the same, from a connection of the runtime's user, and the
// next start (here a second replica) clears the role's settings: the
// plugin loads and serves again.
func TestPGRoleLoginsBrokenByThePlugin(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	conf := backends[1].conf(t)
	alpha := plugin("alpha", true, "good", "db_statement_timeout = \"1s\"")
	in := start(t, conf, alpha)
	rt := in.RT.Database().DB().DB
	role := database.RoleName(dbName(t, in), "alpha")
	must(t, in, "alpha", exec(`DO $$ BEGIN EXECUTE 'ALTER ROLE CURRENT_USER SET local_preload_libraries = ''greenroom_no_such_library'''; END $$`))
	if r := run(t, in, "alpha", exec(endlessLoop)); r[0].Kind != "timeout" {
		t.Fatalf("the endless statement: %s %q, want a timeout", r[0].Kind, r[0].Error)
	}
	within(t, 20*time.Second, "the given-up backend to end", func() bool { return activeBackends(t, rt, role) == 0 })
	again := start(t, conf, alpha)
	if r := must(t, again, "alpha", query("SELECT current_setting('local_preload_libraries')")); fmt.Sprint(r[0].Rows) != "[[]]" {
		t.Errorf("local_preload_libraries after the role was provisioned again: %v", r[0].Rows)
	}
}

// A plugin's GRANT ... ON DATABASE grants it nothing, but locks the
// database's row of pg_database until its transaction ends; the statement
// filter refuses it, and from a DO block, in a transaction the plugin
// keeps open, it holds up the runtime's grant of CONNECT to a new
// plugin's role (during a reload, under the runtime's cross-replica lock)
// no longer than grantLockTimeout: the new plugin loads, and the log says
// which session held the row.
func TestPGDatabaseRowHeldByAPlugin(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	conf := backends[1].conf(t)
	alpha := plugin("alpha", true, "", "timeout = \"30s\"")
	in := start(t, conf, alpha)
	rt := in.RT.Database().DB().DB
	if r := run(t, in, "alpha", exec("GRANT CONNECT ON DATABASE "+dbName(t, in)+" TO PUBLIC"))[0]; r.Kind != "denied" || !strings.Contains(r.Error, "GRANT ... ON DATABASE") {
		t.Errorf("GRANT CONNECT ON DATABASE: %s %q, want it refused", r.Kind, r.Error)
	}
	done := make(chan []result, 1)
	go func() {
		done <- run(t, in, "alpha", step{Op: "begin"},
			exec("DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO PUBLIC', current_database()); END $$"),
			step{Op: "sleep", MS: 12000}, step{Op: "commit"})
	}()
	within(t, 10*time.Second, "the plugin to lock the database's row", func() bool {
		var locked bool
		if err := rt.QueryRow("SELECT xmax::text <> '0' FROM pg_database WHERE datname = current_database()").Scan(&locked); err != nil {
			t.Fatal(err)
		}
		return locked
	})
	in.SetConfig(conf + "\n" + alpha + "\n" + plugin("beta", true, "", ""))
	begin := time.Now()
	in.Reload(t)
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("the reload took %s while a plugin held the database's row", took)
	}
	must(t, in, "beta", query("SELECT 1"))
	if log := in.Log.String(); !strings.Contains(log, "stayed locked for 3s") || !strings.Contains(log, `application_name \"greenroom plugin alpha\"`) {
		t.Error("the runtime did not say which session held the database's row")
	}
	<-done
}

// A plugin cannot LISTEN by a statement, but can from a DO block; a
// pooled connection left listening holds the cluster's notification queue
// while it sits idle (it reads nothing). The runtime ends what a
// connection listens to before it goes back to the pool.
func TestPGListenEndsWithTheStatement(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "good", "db_max_conns = 1"))
	listen := exec("DO $$ BEGIN EXECUTE 'LISTEN greenroom_test'; END $$")
	channels := query("SELECT count(*) FROM pg_listening_channels()")
	for _, steps := range [][]step{
		{listen},
		{{Op: "begin"}, listen, {Op: "commit"}},
	} {
		must(t, in, "alpha", steps...)
		// db_max_conns = 1: the same connection.
		if r := must(t, in, "alpha", channels); fmt.Sprint(r[0].Rows) != "[[0]]" {
			t.Errorf("after %v the pooled connection listens to %v channels", steps, r[0].Rows)
		}
	}
}

// What a call leaves in its connection's session ends with the call: a
// cursor DECLAREd WITH HOLD (its result held in the backend's memory or a
// temporary file), a temporary table a DO block created, a SET; the
// runtime's own settings stay (client_connection_check_interval is SET
// after connecting, statement_timeout a startup parameter).
func TestPGSessionResetBetweenCalls(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "", "db_max_conns = 1\ndb_statement_timeout = \"7s\""))
	pid := query("SELECT pg_backend_pid()")
	state := query(`SELECT (SELECT count(*) FROM pg_cursors WHERE is_holdable), (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()),
		current_setting('work_mem'), current_setting('client_connection_check_interval'), current_setting('statement_timeout')`)
	before := must(t, in, "alpha", pid, state)
	// The server's own work_mem and client_connection_check_interval
	// (0 where the runtime cannot use it) are whatever they are here.
	fresh := fmt.Sprint(before[1].Rows)
	if !strings.HasPrefix(fresh, "[[0 0 ") || !strings.HasSuffix(fresh, " 7s]]") || strings.Contains(fresh, " 64MB ") {
		t.Fatalf("a new connection's session has (cursors WITH HOLD, temporary tables, work_mem, client_connection_check_interval, statement_timeout) %s", fresh)
	}
	leave := []step{
		exec("DECLARE held CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 1000) g"),
		exec("DO $$ BEGIN CREATE TEMP TABLE left_behind (x int); END $$"),
		exec("SET work_mem = '64MB'"),
	}
	for _, steps := range [][]step{
		leave,
		append(append([]step{{Op: "begin"}}, leave...), state, step{Op: "commit"}),
	} {
		r := must(t, in, "alpha", steps...)
		if len(steps) > len(leave) {
			if got := fmt.Sprint(r[len(r)-2].Rows); !strings.HasPrefix(got, "[[1 1 64MB ") {
				t.Fatalf("within the transaction: %s, want the cursor, the table and the setting", got)
			}
		}
		// db_max_conns = 1: the same connection.
		after := must(t, in, "alpha", pid, state)
		if fmt.Sprint(after[0].Rows) != fmt.Sprint(before[0].Rows) {
			t.Fatalf("the next call ran on backend %v, the first on %v", after[0].Rows, before[0].Rows)
		}
		if got := fmt.Sprint(after[1].Rows); got != fresh {
			t.Errorf("after %d steps, the next call's session has (cursors WITH HOLD, temporary tables, work_mem, client_connection_check_interval, statement_timeout) %s, want a new connection's %s", len(steps), got, fresh)
		}
	}
}

// What nextval() leaves in the session (lastval(), currval() of each
// sequence it advanced) ends with the use of its connection, as the
// session's other state does: a later call on the same connection read the
// id an earlier call (another request, another user) had inserted, where a
// new session fails (55000).
func TestPGSequenceStateEndsWithTheCall(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "", "db_max_conns = 1"))
	pid := query("SELECT pg_backend_pid()")
	first := must(t, in, "alpha", pid, exec("CREATE TABLE items (id serial PRIMARY KEY, v text)"),
		query("WITH i AS (INSERT INTO items (v) VALUES ('a') RETURNING id) SELECT id FROM i"))
	if got := fmt.Sprint(first[2].Rows); got != "[[1]]" {
		t.Fatalf("inserted id %s, want [[1]]", got)
	}
	for _, q := range []string{"SELECT lastval()", "SELECT currval('items_id_seq')"} {
		r := run(t, in, "alpha", pid, query(q))
		// db_max_conns = 1: the same connection.
		if fmt.Sprint(r[0].Rows) != fmt.Sprint(first[0].Rows) {
			t.Fatalf("the next call ran on backend %v, the first on %v", r[0].Rows, first[0].Rows)
		}
		if r[1].SQLState != "55000" {
			t.Errorf("%s in a later call: %v %q, want 55000 (not yet defined in this session)", q, r[1].Rows, r[1].Error)
		}
	}
	// Within one transaction they work.
	r := must(t, in, "alpha", step{Op: "begin"}, exec("INSERT INTO items (v) VALUES ('b')"), query("SELECT lastval(), currval('items_id_seq')"), step{Op: "commit"})
	if got := fmt.Sprint(r[2].Rows); got != "[[2 2]]" {
		t.Errorf("lastval(), currval() in the transaction that inserted: %s, want [[2 2]]", got)
	}
}

// A reload whose migration changes a column's type is seen by the
// statements of the plugin's pool, which a reload keeps: each connection
// kept the description (parameter and result types) of each statement it
// had run, and sent the next run of that statement with the old types, so
// that a statement right for the new column failed once per connection
// (an INSERT of a text into a column migrated from int to text: invalid
// input syntax for type integer).
func TestPGReloadedMigrationRedescribesStatements(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	dbconf := backends[1].conf(t)
	conf := func(migrations string) string {
		return dbconf + plugin("alpha", true, migrations, "db_max_conns = 3")
	}
	in := start(t, conf("retype"))
	insert := "INSERT INTO r (v) VALUES ($1)"
	// Three connections, each of which has run the INSERT (holders: three
	// goroutines, each in a transaction of its own at once).
	if r := must(t, in, "alpha", step{Op: "holders", MS: 3, SQL: insert, Args: []any{7}}); r[0].Affected != 3 {
		t.Fatalf("%d of 3 transactions inserted", r[0].Affected)
	}
	if idle := in.RT.Database().PluginDB("alpha").Stats().Idle; idle != 3 {
		t.Fatalf("%d idle connections, want 3", idle)
	}
	in.SetConfig(conf("retyped"))
	if res := in.Reload(t); res.Plugins["alpha"].Outcome != "reloaded" {
		t.Fatalf("reload with a migration: %+v", res.Plugins["alpha"])
	}
	r := run(t, in, "alpha", step{Op: "holders", MS: 3, SQL: insert, Args: []any{"abc"}})
	if r[0].Error != "" || r[0].Affected != 3 {
		t.Errorf("after the column became text, %d of 3 transactions inserted a text: %s", r[0].Affected, r[0].Error)
	}
}

// No prepared statement outlives the use of its connection: the driver
// prepares none by name (each kept its plans in the backend's memory for
// the connection's life, up to 512 per connection: an audit grew one
// backend to 842 MB with large distinct statements), and a plugin's own
// PREPARE ends with the statement or transaction that made it (one of a
// 2000-branch UNION ALL held 1 GB). Also where the operator turned the
// driver's description cache off (description_cache_capacity=0), which the
// runtime's mode for plugin connections would otherwise need.
func TestPGPreparedStatementsEndWithTheCall(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	for _, param := range []string{"", "description_cache_capacity=0"} {
		t.Run(param, func(t *testing.T) {
			url := pgtest.URL(t)
			if param != "" {
				url += map[bool]string{true: "&", false: "?"}[strings.Contains(url, "?")] + param
			}
			testPGPreparedStatementsEndWithTheCall(t, fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", url))
		})
	}
}

func testPGPreparedStatementsEndWithTheCall(t *testing.T, dbconf string) {
	in := start(t, dbconf, plugin("alpha", true, "", "db_max_conns = 1"))
	pid := query("SELECT pg_backend_pid()")
	prepared := query("SELECT count(*) FROM pg_prepared_statements")
	first := must(t, in, "alpha", pid)
	for i := range 3 {
		// Distinct statements with arguments, as a plugin builds them.
		var steps []step
		for j := range 5 {
			steps = append(steps, query(fmt.Sprintf("SELECT $1::text || '%d'", i*5+j), "x"))
		}
		r := must(t, in, "alpha", append(steps, pid, prepared)...)
		// db_max_conns = 1: the same connection.
		if got, want := fmt.Sprint(r[len(r)-2].Rows), fmt.Sprint(first[0].Rows); got != want {
			t.Fatalf("call %d ran on backend %s, the first on %s", i, got, want)
		}
		if got := fmt.Sprint(r[len(r)-1].Rows); got != "[[0]]" {
			t.Errorf("after call %d the backend holds %s prepared statements, want 0", i, got)
		}
	}
	// Within one use of the connection (a transaction) a PREPAREd
	// statement works.
	r := must(t, in, "alpha", step{Op: "begin"}, exec("PREPARE leak AS SELECT 42"), query("EXECUTE leak"), step{Op: "commit"})
	if got := fmt.Sprint(r[2].Rows); got != "[[42]]" {
		t.Errorf("EXECUTE in the transaction that prepared it: %s, want [[42]]", got)
	}
	must(t, in, "alpha", exec("PREPARE leak AS SELECT 42"))
	r = run(t, in, "alpha", query("EXECUTE leak"), prepared)
	if r[0].Error == "" || !strings.Contains(r[0].Error, "does not exist") {
		t.Errorf("EXECUTE in a later call: %v %q, want the statement gone", r[0].Rows, r[0].Error)
	}
	if got := fmt.Sprint(r[1].Rows); got != "[[0]]" {
		t.Errorf("after a PREPARE the backend holds %s prepared statements, want 0", got)
	}
	// A statement described before its table changed shape is read with
	// its result's columns (a server-side prepared statement failed once:
	// "cached plan must not change result type").
	q := query("SELECT * FROM t WHERE a = $1", "x")
	r = must(t, in, "alpha", exec("CREATE TABLE t (a text)"), exec("INSERT INTO t VALUES ('x')"), q,
		exec("ALTER TABLE t ADD COLUMN b int DEFAULT 7"), q, exec("ALTER TABLE t ALTER COLUMN b TYPE text"), q)
	if got := fmt.Sprint(r[2].Rows, r[4].Rows, r[6].Rows); got != "[[x]] [[x 7]] [[x 7]]" {
		t.Errorf("SELECT * as its table changed: %s, want [[x]] [[x 7]] [[x 7]]", got)
	}
}

// A session-level advisory lock a DO block took ends with the use of its
// connection, as the session's other state does. Where the runtime's user
// is not a superuser it cannot revoke the lock functions from PUBLIC, so
// a plugin can take one (a review found it held after the call).
func TestPGAdvisoryLockEndsWithTheCall(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	conf := fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", createroleURL(t))
	in := start(t, conf, plugin("alpha", true, "", "db_max_conns = 1"))
	must(t, in, "alpha", exec("DO $$ BEGIN PERFORM pg_advisory_lock(4242); END $$"))
	var n int
	if err := pgtest.Admin(t).QueryRow("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND database = (SELECT oid FROM pg_database WHERE datname = $1)", dbName(t, in)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d advisory locks 4242 held after the call", n)
	}
}

// Setting up a plugin's database waits for locks on its role and schema
// (a plugin's DO block can hold its role's with ALTER ROLE CURRENT_USER in
// a long transaction); limits.migration_timeout bounds that wait, so a
// replica starting then is not kept unready for good.
func TestPGProvisionBounded(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	url := pgtest.URL(t)
	in := start(t, fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", url), plugin("alpha", true, "good", ""))
	rt := in.RT.Database().DB().DB
	tx, err := rt.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec("ALTER ROLE " + database.RoleName(dbName(t, in), "alpha") + " SET work_mem = '4MB'"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	svc := database.New(database.Config{Client: database.ClientPG, Connection: url, Isolation: database.IsolationRole}, logrus.New())
	defer svc.Close()
	if err := svc.Open(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = svc.Plugin(ctx, "alpha", database.Limits{MaxConns: 2, StatementTimeout: 5 * time.Second, MaxResult: 1 << 20, MigrationTimeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "did not finish within 4s, twice limits.migration_timeout") {
		t.Errorf("provisioning under a held role lock: %v, want the migration timeout named", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("provisioning took %s", took)
	}
}

// The reap does not need the plugin's pool, which the plugin itself can
// keep busy: with db_max_conns = 1 and a transaction holding that
// connection, the given-up backend is ended all the same.
func TestPGGivenUpBackendEndsWithThePoolBusy(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "good", "db_max_conns = 1\ndb_statement_timeout = \"1s\"\ntimeout = \"30s\""))
	rt := in.RT.Database().DB().DB
	role := database.RoleName(dbName(t, in), "alpha")
	done := make(chan []result, 2)
	go func() { done <- run(t, in, "alpha", exec(endlessLoop)) }()
	time.Sleep(300 * time.Millisecond)
	go func() {
		done <- run(t, in, "alpha", step{Op: "begin"}, step{Op: "sleep", MS: 12000}, step{Op: "commit"})
	}()
	within(t, 11*time.Second, "the given-up backend to end while the pool is busy", func() bool {
		var n int
		if err := rt.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND query LIKE '%pg_sleep(0.2)%'", role).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	<-done
	<-done
}

// A database whose pg_stat_activity PUBLIC may not read (a hardening some
// operators apply) still serves plugins: only the reap of given-up
// backends needs the view, and it goes without.
func TestPGWithoutStatActivity(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	conf := backends[1].conf(t)
	in := start(t, conf, plugin("beta", false, "", ""))
	u := conf[strings.Index(conf, "connection = \"")+len("connection = \""):]
	rt, err := sql.Open("pgx", u[:strings.Index(u, "\"")])
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if _, err := rt.Exec("REVOKE SELECT ON pg_catalog.pg_stat_activity FROM PUBLIC"); err != nil {
		t.Fatal(err)
	}
	in.SetConfig(conf + "\n" + plugin("beta", false, "", "") + "\n" + plugin("alpha", true, "good", ""))
	in.Reload(t)
	if r := must(t, in, "alpha", query("SELECT 1")); fmt.Sprint(r[0].Rows) != "[[1]]" {
		t.Errorf("SELECT 1 = %v", r[0].Rows)
	}
}

// Against a server that checks passwords: a plugin that changes its own
// role's password (PostgreSQL lets every role) breaks no more than its own
// next login, which the runtime heals by setting the derived password
// back, for its pool and for the reap of a backend it gave up (the reap
// opens its connection as the pool does).
func TestPGPasswordChangedByThePlugin(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	url := pgtest.PasswordURL(t)
	in := start(t, fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", url), plugin("alpha", true, "good", "db_statement_timeout = \"1s\"\ndb_max_conns = 1"))
	rt := in.RT.Database().DB().DB
	role := database.RoleName(dbName(t, in), "alpha")
	must(t, in, "alpha", exec("DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', current_user, 'changed-by-the-plugin'); END $$"))
	if r := run(t, in, "alpha", exec(endlessLoop)); r[0].Kind != "timeout" {
		t.Fatalf("the endless statement: %s %q, want a timeout", r[0].Kind, r[0].Error)
	}
	within(t, 15*time.Second, "the given-up backend to end", func() bool {
		var n int
		if err := rt.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND query LIKE '%pg_sleep(0.2)%'", role).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	// The pool logs in again too (its connection was given up).
	if r := must(t, in, "alpha", query("SELECT 1")); fmt.Sprint(r[0].Rows) != "[[1]]" {
		t.Errorf("SELECT 1 after the password change: %v", r[0].Rows)
	}
	if !strings.Contains(in.Log.String(), "restoring the derived password") {
		t.Error("the runtime did not say it restored the role's password")
	}
}

// A transaction a call leaves open is rolled back on its connection,
// which then serves the plugin's next call: the rollback runs while the
// call's context is alive. (Once that context was cancelled, database/sql
// rolled the transaction back by closing the connection; the next call
// waited for a new one, longer than a small db_statement_timeout, and
// failed "pool exhausted" with no connection in use.)
func TestPGLeftOpenTransactionKeepsItsConnection(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "", "db_max_conns = 1\ninstances = 1"))
	pid := func(res []result) any {
		t.Helper()
		r := res[len(res)-1]
		if r.Error != "" || len(r.Rows) != 1 {
			t.Fatalf("pg_backend_pid: %+v", r)
		}
		return r.Rows[0][0]
	}
	first := pid(run(t, in, "alpha", step{Op: "begin", Background: true}, step{Op: "query", SQL: "SELECT pg_backend_pid()"}))
	for i := range 3 {
		res := run(t, in, "alpha", step{Op: "query", SQL: "SELECT pg_backend_pid()"}, step{Op: "begin", Background: true})
		if got := pid(res[:1]); got != first {
			t.Fatalf("call %d ran on backend %v, the left-open transaction's was %v: its connection was closed, not rolled back", i+2, got, first)
		}
	}
}

// A migration's row is written before its transaction commits, with the
// transaction's id until the COMMIT is confirmed. A replica that stops in
// between leaves the row; the next load asks the server what became of
// the transaction: one that never committed is applied again (it was
// once recorded as applied for ever, its tables missing), one that did is
// not applied twice. A COMMIT that fails leaves no row.
func TestPGMigrationCommitSettled(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	rows := func(t *testing.T, in *servertest.Instance) map[string]string {
		t.Helper()
		out := map[string]string{}
		r, err := in.RT.Database().DB().DB.Query("SELECT name, coalesce(xact, '') FROM plugin_migrations WHERE plugin = 'alpha'")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for r.Next() {
			var name, xact string
			if err := r.Scan(&name, &xact); err != nil {
				t.Fatal(err)
			}
			out[name] = xact
		}
		return out
	}
	stopAt := func(stage string) func(string) error {
		return func(s string) error {
			if s == stage {
				return errors.New("replica stopped")
			}
			return nil
		}
	}
	for _, stage := range []string{"before", "after"} {
		t.Run("stopped "+stage+" commit", func(t *testing.T) {
			conf := backends[1].conf(t)
			alpha := plugin("alpha", true, "good", "")
			database.SetMigrationCommitHook(t, connOf(t, conf), stopAt(stage))
			in := start(t, conf, alpha)
			database.SetMigrationCommitHook(t, connOf(t, conf), nil)
			if st, reason := in.RT.Slot("alpha").Status(); st != "failed" || !strings.Contains(reason, "replica stopped") {
				t.Fatalf("alpha: %s %s, want failed at its first migration", st, reason)
			}
			if r := rows(t, in); len(r) != 1 || r["001_notes.up.sql"] == "" {
				t.Fatalf("rows %v, want 001 recorded with its transaction", r)
			}
			again := start(t, conf, alpha) // the next replica, or the restart
			if st, reason := again.RT.Slot("alpha").Status(); st != "ready" {
				t.Fatalf("alpha on the next load: %s %s", st, reason)
			}
			must(t, again, "alpha", query("SELECT count(*) FROM notes"))
			if r := run(t, again, "alpha", query("SELECT count(*) FROM applied")); fmt.Sprint(r[0].Rows) != "[[1]]" {
				t.Errorf("002 applied %v times, want once", r[0].Rows)
			}
			if r := rows(t, again); len(r) != 2 || r["001_notes.up.sql"] != "" || r["002_applied.up.sql"] != "" {
				t.Errorf("rows %v, want both confirmed", r)
			}
		})
	}
	t.Run("commit fails", func(t *testing.T) {
		conf := backends[1].conf(t)
		in := start(t, conf, plugin("alpha", true, "pgcommitfail", ""))
		if st, reason := in.RT.Slot("alpha").Status(); st != "failed" || !strings.Contains(reason, "refused at commit") {
			t.Fatalf("alpha: %s %s, want failed at the COMMIT", st, reason)
		}
		if r := rows(t, in); len(r) != 0 {
			t.Errorf("rows %v, want none", r)
		}
	})
}

// A server that goes away and comes back (a restart, a failover:
// sessions ended with 57P01) is over for the plugin as soon as it is
// back: the connections found dead while it was down, whose backends the
// reap could not look for, are not counted as backends still running (an
// audit found the plugin kept from connecting for 11 s after a restart of
// 0.3 s: each was held as one until its reap gave up).
func TestPGRestartRecoversAtOnce(t *testing.T) {
	url, down, up := pgtest.Restartable(t)
	in := start(t, fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", url), plugin("alpha", true, "good", "db_max_conns = 2\ndb_statement_timeout = \"500ms\"\ntimeout = \"30s\""))
	// Both connections in the pool, then the server goes away.
	done := make(chan struct{}, 2)
	for range 2 {
		go func() {
			run(t, in, "alpha", step{Op: "begin"}, query("SELECT pg_sleep(0.2)"), step{Op: "commit"})
			done <- struct{}{}
		}()
	}
	<-done
	<-done
	down()
	// The pool finds its connections dead while the server is down.
	for range 4 {
		if r := run(t, in, "alpha", query("SELECT 1")); r[0].Error == "" {
			t.Fatal("a statement succeeded with the server down")
		}
	}
	up()
	// A statement waits for a connection at most db_statement_timeout
	// (500ms): served, none waited for a reap of a connection the server
	// ended.
	start := time.Now()
	for range 3 {
		if r := run(t, in, "alpha", query("SELECT 1")); r[0].Error != "" {
			t.Errorf("after the server came back: %s", r[0].Error)
		}
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("three statements after the server came back took %s", took)
	}
}

// A server restart that ends a plugin's migration is passing: the plugin
// retries its load and applies the migration once the server is back,
// rather than stay failed until a reload. (A plugin ending its own
// backend is not: TestPGSelfTerminatedMigrationFails.)
func TestPGRestartDuringMigrationRetries(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	url, down, up := pgtest.Restartable(t)
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			var n int
			if db.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(3)%' AND pid <> pg_backend_pid()").Scan(&n) == nil && n > 0 {
				db.Close()
				down()
				up()
				return
			}
		}
	}()
	in := start(t, fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", url), plugin("alpha", true, "pgslow", ""))
	<-restarted
	wantRetriedAfterRestart(t, in)
	must(t, in, "alpha", query("SELECT count(*) FROM notes"))
}

// wantRetriedAfterRestart waits for plugin alpha (the pgslow guest) to
// settle and checks that it is ready, its load retried after the
// server's restart ended its migration, and its migrations applied once.
func wantRetriedAfterRestart(t *testing.T, in *servertest.Instance) {
	t.Helper()
	st, reason := in.RT.Slot("alpha").Status()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && st != "ready" && st != "failed"; time.Sleep(100 * time.Millisecond) {
		st, reason = in.RT.Slot("alpha").Status()
	}
	if st != "ready" {
		t.Fatalf("alpha after the restart: %s %s, want ready once its load was retried", st, reason)
	}
	if !strings.Contains(in.Log.String(), "restarted or failed over while it ran") {
		t.Error("no log line says the migration was ended by the server's restart")
	}
	if n := count(t, in, "alpha", "applied"); n != 1 {
		t.Errorf("002 applied %d times, want once", n)
	}
}

// A server's shutdown ends its sessions one after another: the
// migration's may end before the runtime's pooled sessions, which then
// still answer with the old server's start. The migration is taken for
// ended by the restart all the same (the server refuses new connections
// from the start of its shutdown), and the load retried: it failed for
// good, as its own SQL's failure (a flaky
// TestPGRestartDuringMigrationRetries on a busy host). A smart shutdown,
// which keeps the sessions it has, and pg_terminate_backend of the
// migration's stand for that moment here.
func TestPGRestartEndingTheMigrationBeforeThePoolRetries(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	url, drain, down, up := pgtest.Draining(t)
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Opened before the shutdown begins, to end the migration's session.
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan bool, 1)
	go func() {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			var pid int
			if conn.QueryRowContext(context.Background(), "SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_sleep(3)%' AND pid <> pg_backend_pid()").Scan(&pid) == nil {
				drain()
				var ok bool
				err := conn.QueryRowContext(context.Background(), "SELECT pg_terminate_backend($1)", pid).Scan(&ok)
				ended <- err == nil && ok
				return
			}
		}
		ended <- false
	}()
	in := start(t, fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", url), plugin("alpha", true, "pgslow", ""))
	if !<-ended {
		t.Fatal("the migration's session was not ended")
	}
	conn.Close()
	// The load's first attempt is over (Load returned): then the server
	// restarts.
	down()
	up()
	wantRetriedAfterRestart(t, in)
}

// A plugin whose migration ends its own backend gets the same error a
// server's restart gives (57P01), but the server did not restart: the
// plugin fails, it does not retry for ever.
func TestPGSelfTerminatedMigrationFails(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "pgselfkill", ""))
	st, reason := in.RT.Slot("alpha").Status()
	if st != "failed" || !strings.Contains(reason, "57P01") {
		t.Fatalf("alpha: %s %s, want failed with the backend's termination", st, reason)
	}
}

// A statement a connection described before its table gained a column
// runs on, also when the table had more than one column: another
// replica's migration that adds a column (as docs/operations.md asks a
// rollout's migrations to do) made the old version's SELECT * and
// RETURNING * with arguments fail once on each of its connections (ERROR:
// bind message has 2 result formats but query has 3 columns, SQLSTATE
// 08P01): the driver binds one result format per column it described,
// and the server takes a single one for all columns (why a table of one
// column never met it), or as many as there are.
func TestPGStatementAfterItsTableGainedAColumn(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "", "db_max_conns = 1"))
	sel := query("SELECT * FROM w WHERE a = $1", "x")
	ret := query("UPDATE w SET b = b + 1 WHERE a = $1 RETURNING *", "x")
	retExec := exec("UPDATE w SET b = b + 1 WHERE a = $1 RETURNING *, 1", "x")
	must(t, in, "alpha", exec("CREATE TABLE w (a text, b int)"), exec("INSERT INTO w VALUES ('x', 1)"), sel, ret, retExec)
	// The column another replica's migration adds (here the plugin's
	// own statement: the same connection's descriptions are kept).
	must(t, in, "alpha", exec("ALTER TABLE w ADD COLUMN c int DEFAULT 7"))
	r := run(t, in, "alpha", sel, ret, retExec)
	if r[0].Error != "" || fmt.Sprint(r[0].Rows) != "[[x 3 7]]" {
		t.Errorf("SELECT * after the table gained a column: %v %q, want [[x 3 7]]", r[0].Rows, r[0].Error)
	}
	if r[1].Error != "" || fmt.Sprint(r[1].Rows) != "[[x 4 7]]" {
		t.Errorf("UPDATE ... RETURNING * after the table gained a column: %v %q, want [[x 4 7]]", r[1].Rows, r[1].Error)
	}
	if r[2].Error != "" || r[2].Affected != 1 {
		t.Errorf("UPDATE ... RETURNING * run as an Exec after the table gained a column: %d rows %q, want 1", r[2].Affected, r[2].Error)
	}
	// In a transaction the refused Bind has aborted it, and the statement
	// is not run again (docs/database.md); the description is dropped, so
	// the plugin's next transaction runs it.
	must(t, in, "alpha", sel, exec("ALTER TABLE w ADD COLUMN d int DEFAULT 8"))
	run(t, in, "alpha", step{Op: "begin"}, sel, step{Op: "rollback"})
	r = run(t, in, "alpha", step{Op: "begin"}, sel, step{Op: "commit"})
	if r[1].Error != "" || fmt.Sprint(r[1].Rows) != "[[x 5 7 8]]" {
		t.Errorf("SELECT * in the transaction after the one that met the change: %v %q, want [[x 5 7 8]]", r[1].Rows, r[1].Error)
	}
}
