package database_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// wideRow is SELECT * of the table the wide1 migrations create (wide2
// adds a column), in a transaction on each of n pooled connections.
func wideEach(n int) step {
	return step{Op: "tx_each", SQL: "SELECT * FROM wide WHERE id = $1", Args: []any{1}, MS: n}
}

// waitListening waits until in's migration watch listens (it connects in
// its own time as the runtime starts).
func waitListening(t *testing.T, in *servertest.Instance) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var n int
		if err := in.RT.Database().DB().QueryRowContext(context.Background(),
			"SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE application_name = 'greenroom migration watch' AND datname = pg_catalog.current_database() AND query LIKE 'LISTEN %'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the migration watch did not listen within 10s")
		}
	}
}

// A replica's plugin connections keep each statement's description; when
// another replica's migration added a column to a table a SELECT * reads,
// the statement failed its Bind in a plugin's transaction once on each
// pooled connection (08P01 "bind message has 2 result formats but query
// has 3 columns"), aborting the transaction. The replica that migrates now
// tells the others (NOTIFY), and their connections forget their
// descriptions.
func TestPGTransactionsAfterAnotherReplicaAddedAColumn(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	dbconf := backends[1].conf(t)
	const conns = 3
	b := start(t, dbconf, plugin("alpha", true, "wide1", "db_max_conns = 3"))
	if r := must(t, b, "alpha", wideEach(conns))[0]; r.Affected != 0 {
		t.Fatalf("before the migration: %v", r.Rows)
	}
	heard := database.MigrationsHeard(b.RT.Database())
	waitListening(t, b)

	// Another replica, with the plugin's next version, applies its
	// migration adding a column as it loads.
	a := start(t, dbconf, plugin("alpha", true, "wide2", "db_max_conns = 3"))
	must(t, a, "alpha", query("SELECT b FROM wide"))

	// The notification reaches b's watch in its own time.
	for deadline := time.Now().Add(10 * time.Second); database.MigrationsHeard(b.RT.Database()) == heard; {
		if time.Now().After(deadline) {
			t.Error("the replica was not told of the other replica's migration within 10s")
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := must(t, b, "alpha", wideEach(conns))[0]
	if r.Affected != 0 || len(r.Rows) != conns {
		t.Errorf("SELECT * in a transaction on each of %d connections after another replica added a column: %d failed: %v", conns, r.Affected, r.Rows)
	}
	for _, row := range r.Rows {
		if row[0] != "[[1 x 7]]" {
			t.Errorf("a transaction's SELECT * = %v, want [[1 x 7]]", row[0])
		}
	}
}

// Without a notification (the change came from the plugin's own statement
// here; from another replica whose NOTIFY was lost, alike), a statement
// that met a stale description makes all of the plugin's connections
// forget theirs: one transaction fails, not one per connection.
func TestPGOneTransactionFailsAfterItsTableGainedAColumn(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	const conns = 3
	in := start(t, backends[1].conf(t), plugin("alpha", true, "wide1", "db_max_conns = 3"))
	if r := must(t, in, "alpha", wideEach(conns))[0]; r.Affected != 0 {
		t.Fatalf("before the change: %v", r.Rows)
	}
	must(t, in, "alpha", exec("ALTER TABLE wide ADD COLUMN b int NOT NULL DEFAULT 7"))
	if r := must(t, in, "alpha", wideEach(1))[0]; r.Affected != 1 {
		t.Errorf("the first transaction after the change: %v, want it to fail its Bind (the test no longer meets a stale description)", r.Rows)
	}
	r := must(t, in, "alpha", wideEach(conns))[0]
	if r.Affected != 0 {
		t.Errorf("after one transaction met a stale description, %d of %d more failed: %v", r.Affected, conns, r.Rows)
	}
}

// The watch's connection ended (a server restart, a failover, a network
// cut, here pg_terminate_backend): it says so once, at warn, connects
// again, and hears the other replicas' migrations from then on; the
// plugin's connections forget their descriptions as it is back (what was
// missed meanwhile is not known).
func TestPGMigrationWatchConnectsAgain(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	dbconf := backends[1].conf(t)
	b := start(t, dbconf, plugin("alpha", true, "wide1", ""))
	gen := func() int64 { return database.DescriptionGeneration(b.RT.Database(), "alpha") }
	waitLog := func(msg string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			for _, l := range b.LogLines(t) {
				if strings.HasPrefix(fmt.Sprint(l["msg"]), msg) {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no log line %q within 10s", msg)
			}
		}
	}
	before := gen()
	var ended int
	if err := b.RT.Database().DB().QueryRowContext(context.Background(),
		"SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity WHERE application_name = 'greenroom migration watch' AND datname = pg_catalog.current_database()").Scan(&ended); err != nil || ended != 1 {
		t.Fatalf("ended %d watch connections: %v", ended, err)
	}
	waitLog("hearing of other replicas' plugin migrations again")
	warned := 0
	for _, l := range b.LogLines(t) {
		if strings.HasPrefix(fmt.Sprint(l["msg"]), "not hearing of the plugin migrations") {
			warned++
			if l["level"] != "warning" {
				t.Errorf("the watch's loss logged at %v, want warning", l["level"])
			}
		}
	}
	if warned != 1 {
		t.Errorf("the watch's loss logged %d times, want once", warned)
	}
	if gen() == before {
		t.Error("the plugin's connections kept their descriptions when the watch connected again")
	}
	before = gen()
	heard := database.MigrationsHeard(b.RT.Database())
	start(t, dbconf, plugin("alpha", true, "wide2", ""))
	for deadline := time.Now().Add(10 * time.Second); database.MigrationsHeard(b.RT.Database()) == heard; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the watch, connected again, was not told of another replica's migration within 10s")
		}
	}
	if gen() == before {
		t.Error("the plugin's connections kept their descriptions when the watch heard of another replica's migration")
	}
}

// Every role may NOTIFY: a plugin's DO block sent on the migration
// channel naming another plugin, and every replica made that plugin's
// connections forget their descriptions (a DEALLOCATE ALL and a describe
// per statement, as long as it kept sending). A notification counts now
// only when a runtime signed it (the key is in greenroom.runtime_secrets,
// which plugin roles cannot read: TestIsolationHostileSQL); the forged
// ones, the bare id and one with a made-up signature, are ignored. The
// watch hears them before the runtime's own notification sent after.
func TestPGForgedMigrationNoticeIgnored(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "", ""), plugin("beta", true, "", ""))
	waitListening(t, in)
	must(t, in, "beta", query("SELECT 1"))
	db := in.RT.Database()
	before := database.DescriptionGeneration(db, "beta")
	heard, ignored := database.MigrationsHeard(db), database.MigrationNoticesIgnored(db)
	must(t, in, "alpha", exec(`DO $$ BEGIN
		EXECUTE 'NOT' || 'IFY greenroom_plugin_migrated, ''beta''';
		EXECUTE 'NOT' || 'IFY greenroom_plugin_migrated, ''beta AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA''';
	END $$`))
	database.NotifyMigrated(db, "alpha")
	for deadline := time.Now().Add(10 * time.Second); database.MigrationsHeard(db) == heard; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the watch did not hear the runtime's own notification within 10s")
		}
	}
	if n := database.MigrationNoticesIgnored(db) - ignored; n != 2 {
		t.Errorf("the watch ignored %d notifications, want the plugin's 2", n)
	}
	if after := database.DescriptionGeneration(db, "beta"); after != before {
		t.Errorf("a plugin's DO block made another plugin's connections forget their descriptions (generation %d -> %d)", before, after)
	}
	if n := database.MigrationsHeard(db) - heard; n != 1 {
		t.Errorf("the watch handled %d notifications, want the runtime's 1", n)
	}
	warned := 0
	for _, l := range in.LogLines(t) {
		if strings.HasPrefix(fmt.Sprint(l["msg"]), "ignored a notification on greenroom_plugin_migrated") {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("the ignored notifications logged %d times, want once", warned)
	}
}

// BenchmarkPGStatement runs a SELECT * with an argument through the
// plugin's database as a guest's db.Query reaches it (without the guest
// and HTTP around it): alone, and in a transaction (begin, the query,
// commit). It measures the path the statement descriptions' cache is on
// (docs/benchmarks.md).
//
//	go test -run '^$' -bench PGStatement ./runtime/database/
func BenchmarkPGStatement(b *testing.B) {
	in := servertest.Start(b, backends[1].conf(b)+"\n"+plugin("alpha", true, "wide1", ""), servertest.Options{CacheDir: cacheDir})
	pdb := in.RT.Database().PluginDB("alpha")
	ctx := context.Background()
	inst := &hostfuncs.Instance{}
	var w hostfuncs.RowWriter
	st := &hostfuncs.Statement{SQL: "SELECT * FROM wide WHERE id = $1", Args: []any{int64(1)}}
	b.Run("alone", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := pdb.Query(ctx, inst, st, &w); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tx", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tx, err := pdb.Begin(ctx, inst, hostfuncs.TxOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if err := pdb.Query(ctx, inst, &hostfuncs.Statement{Tx: tx, SQL: st.SQL, Args: st.Args}, &w); err != nil {
				b.Fatal(err)
			}
			if err := pdb.Commit(ctx, inst, tx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
