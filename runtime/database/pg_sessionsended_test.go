package database_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// endSessions ends every session of the database at url but the caller's
// (pg_terminate_backend: 57P01, what a server's restart or a failover
// does to them), and returns how many it ended.
func endSessions(t *testing.T, admin *sql.DB) int {
	t.Helper()
	var n int
	if err := admin.QueryRow("SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity WHERE datname = pg_catalog.current_database() AND pid <> pg_catalog.pg_backend_pid()").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// useRuntimePool has each of the runtime's pooled connections run a
// statement, at once, twice: each was used a moment ago (pgx's
// database/sql driver checks a connection it reuses only when it was
// idle for over a second since its last reuse, or was never reused).
func useRuntimePool(t *testing.T, in *servertest.Instance) {
	t.Helper()
	db := in.RT.Database().DB().DB
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := db.ExecContext(context.Background(), "SELECT pg_catalog.pg_sleep(0.05)"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

// A reload right after the server ended the replica's sessions (a
// restart, a failover: here pg_terminate_backend, which ends them with
// the same 57P01) applies the new version's migration. The runtime's
// pooled connections, used a moment before, were reused unchecked, and
// the reload failed on the first one (`read applied migrations: FATAL:
// terminating connection due to administrator command (SQLSTATE
// 57P01)`), the old version serving until the operator reloaded again
// (a rolling upgrade's replica that reloaded during a failover); with
// those checked, the migration failed the same way on a pooled
// connection of the plugin's, as the migration's own error.
func TestPGReloadRightAfterTheServerEndedTheSessions(t *testing.T) {
	url := pgtest.URL(t)
	admin, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	admin.SetMaxOpenConns(1)
	conf := fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", url)
	a := start(t, conf, plugin("alpha", true, "wide1", "db_max_conns = 3"))
	// Another replica, left to itself (with pgtest.Restartable's real
	// restart, its reload failed the same way: the runtime's own use
	// kept its pooled connections within pgx's second).
	b := start(t, conf, plugin("alpha", true, "wide1", "db_max_conns = 3"))
	must(t, a, "alpha", wideEach(3))
	useRuntimePool(t, a)
	must(t, a, "alpha", wideEach(3))
	useRuntimePool(t, a)
	if n := endSessions(t, admin); n == 0 {
		t.Fatal("no session ended")
	}
	a.SetConfig(conf + plugin("alpha", true, "wide2", "db_max_conns = 3"))
	if res := a.Reload(t); res.Plugins["alpha"].Outcome != "reloaded" {
		t.Fatalf("reload with a migration right after the sessions ended: %+v", res.Plugins["alpha"])
	}
	if r := run(t, a, "alpha", query("SELECT * FROM wide")); r[0].Error != "" || len(r[0].Columns) != 3 {
		t.Errorf("a after its reload: %+v", r[0])
	}
	b.SetConfig(conf + plugin("alpha", true, "wide2", "db_max_conns = 3"))
	if res := b.Reload(t); res.Plugins["alpha"].Outcome != "reloaded" {
		t.Fatalf("the other replica's reload after the sessions ended: %+v", res.Plugins["alpha"])
	}
}
