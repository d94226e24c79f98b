package database_test

import (
	"database/sql"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// A plugin whose load fails because PostgreSQL refuses connections for now
// (here: the runtime's user is at its CONNECTION LIMIT, SQLSTATE 53300) is
// retrying, not failed for good: its routes answer 503 with the reason and
// a Retry-After, readiness is 503 naming it, and once connections are
// allowed again it serves and the process is ready, without a reload. The
// audit saw 9 of 10 plugins failed until a SIGHUP, readiness 200 all along.
// Both at start (the runtime's database cannot even open) and in a reload
// adding a plugin (the runtime's pool is open; the plugin's cross-replica
// lock needs a connection of its own).
func TestPGLoadRetriesTransientErrors(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	admin := pgtest.Admin(t)
	url := createroleURL(t)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	role := pgx.Identifier{u.User.Username()}.Sanitize()
	limit := func(n string) {
		t.Helper()
		if _, err := admin.Exec("ALTER ROLE " + role + " CONNECTION LIMIT " + n); err != nil {
			t.Fatal(err)
		}
	}
	dbconf := "[database]\nclient = \"pg\"\nconnection = \"" + url + "\"\n"
	conf := dbconf + plugin("alpha", true, "", "") + plugin("beta", true, "", "")

	limit("0")
	in := start(t, conf)
	retrying(t, in, "alpha", "beta")
	limit("-1")
	serving(t, in, "alpha", "beta")

	limit("0")
	in.SetConfig(conf + plugin("gamma", true, "", ""))
	res := in.Reload(t)
	if pr := res.Plugins["gamma"]; pr.Outcome != runtime.OutcomeFailed || !strings.Contains(pr.Error, "53300") {
		t.Errorf("reload while the limit holds: gamma %+v", pr)
	}
	retrying(t, in, "gamma")
	must(t, in, "alpha", query("SELECT 1")) // serving with the connections it has
	limit("-1")
	serving(t, in, "gamma")

	var warned, loaded int
	for _, l := range in.LogLines(t) {
		msg, _ := l["msg"].(string)
		if l["plugin"] == "gamma" && strings.Contains(msg, "its load is retried after a database error") {
			warned++
		}
		if strings.Contains(msg, "loaded after retrying") {
			loaded++
		}
	}
	if warned == 0 || loaded != 3 {
		t.Errorf("log: %d warnings for gamma, %d plugins loaded after retrying (want some, and 3)", warned, loaded)
	}
}

// retrying checks that plugins ids are retrying their load: not serving,
// readiness 503 naming them.
func retrying(t *testing.T, in *servertest.Instance, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if st, reason := in.RT.Slot(id).Status(); st != runtime.StateRetrying || !strings.Contains(reason, "53300") {
			t.Fatalf("plugin %s: %s %q, want retrying after SQLSTATE 53300", id, st, reason)
		}
		status, h, body := in.Do(t, "POST", "/api/"+id+"/run", strings.NewReader(`{"steps":[]}`))
		if status != 503 || !strings.Contains(body, "plugin_unavailable") || !strings.Contains(body, "retrying its load after a database error") || h.Get("Retry-After") == "" {
			t.Errorf("plugin %s: %d %s (Retry-After %q)", id, status, body, h.Get("Retry-After"))
		}
	}
	status, _, body := in.Get(t, "/.greenroom/health/v1/readiness")
	for _, id := range ids {
		if status != 503 || !strings.Contains(body, "plugin "+id+" is retrying its load after a database error") {
			t.Errorf("readiness: %d %s, want 503 naming %s", status, body, id)
		}
	}
	if strings.Contains(body, "SQLSTATE") || strings.Contains(body, "user=") {
		t.Errorf("readiness, which answers anyone, quotes the database's error: %s", body)
	}
}

// serving waits until plugins ids serve and the process is ready.
func serving(t *testing.T, in *servertest.Instance, ids ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, _, body := in.Get(t, "/.greenroom/health/v1/readiness")
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready 20s after the connection limit was lifted: %d %s", status, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, id := range ids {
		must(t, in, id, query("SELECT 1"))
	}
}

// With skip_migrations, a plugin whose migrations are pending is retrying,
// not failed for good: its replica stays unready (readiness promises 503
// until migrations are done), and once `greenroom migrate up` (here a
// replica without skip_migrations) applied them, it serves by itself. It
// stayed failed, ready all along, until a reload.
func TestSkipMigrationsWaitsForMigrateUp(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	dbconf := backends[1].conf(t)
	// The runtime's own migrations applied, the plugin's not.
	start(t, dbconf, plugin("beta", true, "", ""))
	in := start(t, dbconf+"skip_migrations = true\n", plugin("alpha", true, "good", ""))
	if st, reason := in.RT.Slot("alpha").Status(); st != runtime.StateRetrying || !strings.Contains(reason, "greenroom migrate up") {
		t.Fatalf("alpha with its migrations pending: %s %q, want retrying, naming migrate up", st, reason)
	}
	if status, _, body := in.Get(t, "/.greenroom/health/v1/readiness"); status != 503 || !strings.Contains(body, "plugin alpha is retrying its load while its migrations are pending") {
		t.Errorf("readiness with alpha's migrations pending: %d %s", status, body)
	}
	if status, _, body := in.Do(t, "POST", "/api/alpha/run", strings.NewReader(`{"steps":[]}`)); status != 503 || !strings.Contains(body, "retrying its load while its migrations are pending") || strings.Contains(body, "database error") {
		t.Errorf("alpha with its migrations pending: %d %s", status, body)
	}
	start(t, dbconf, plugin("alpha", true, "good", "")) // migrate up
	serving(t, in, "alpha")
	must(t, in, "alpha", query("SELECT count(*) FROM notes"))
}

// A load that waits its whole bound (twice migration_timeout) for the
// plugin's cross-replica lock, held by a replica or `migrate up` applying
// a long migration, is retried, not failed for good: the holder ends, and
// the plugin then loads by itself. An audit saw a plugin waiting for
// `migrate up` stay failed, the replica ready, until a reload.
func TestLoadRetriesAfterWaitingForTheMigrationLock(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	dbconf := backends[1].conf(t)
	first := start(t, dbconf, plugin("beta", true, "", "")) // the runtime's tables
	tx := holdPluginLock(t, first.RT.Database().DB().DB, "alpha")
	in := start(t, dbconf, plugin("alpha", true, "good", `migration_timeout = "1s"`))
	if st, reason := in.RT.Slot("alpha").Status(); st != runtime.StateRetrying || !strings.Contains(reason, "cross-replica lock") {
		t.Fatalf("alpha after waiting for its lock: %s %q, want retrying", st, reason)
	}
	if status, _, body := in.Get(t, "/.greenroom/health/v1/readiness"); status != 503 || !strings.Contains(body, "plugin alpha is retrying its load after waiting for its migration lock") {
		t.Errorf("readiness while alpha waits for its lock: %d %s, want 503 saying why", status, body)
	}
	tx.Rollback()
	serving(t, in, "alpha")
	must(t, in, "alpha", query("SELECT count(*) FROM notes"))
}

// A load waiting for the plugin's cross-replica lock when the server ends
// the runtime's lock connection (a restart, a failover: FATAL 57P01) is
// retried, not failed for good (an audit saw the plugin failed on every
// replica after a restart, the replicas ready, until a reload).
func TestLoadRetriesWhenTheServerEndsItsLockWait(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	dbconf := backends[1].conf(t)
	first := start(t, dbconf, plugin("beta", true, "", "")) // the runtime's tables
	rt := first.RT.Database().DB().DB
	tx := holdPluginLock(t, rt, "alpha")
	go func() {
		// End the lock wait as a restart would, once it waits.
		for range 300 {
			var n int
			rt.QueryRow("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'greenroom lock' AND wait_event_type = 'Lock' AND datname = current_database()").Scan(&n)
			if n > 0 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	in := start(t, dbconf, plugin("alpha", true, "good", `migration_timeout = "60s"`))
	if st, reason := in.RT.Slot("alpha").Status(); st != runtime.StateRetrying || !strings.Contains(reason, "57P01") {
		t.Fatalf("alpha after the server ended its lock wait: %s %q, want retrying", st, reason)
	}
	tx.Rollback()
	serving(t, in, "alpha")
}

// holdPluginLock takes plugin id's cross-replica lock, a row of the
// runtime's table, in a transaction it returns (rolled back when the test
// ends, if not before), as a replica migrating the plugin holds it.
func holdPluginLock(t *testing.T, db *sql.DB, id string) *sql.Tx {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback() })
	if _, err := tx.Exec("INSERT INTO greenroom.runtime_locks (name) VALUES ($1) ON CONFLICT DO NOTHING", "plugin:"+id); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("SELECT 1 FROM greenroom.runtime_locks WHERE name = $1 FOR UPDATE", "plugin:"+id); err != nil {
		t.Fatal(err)
	}
	return tx
}
