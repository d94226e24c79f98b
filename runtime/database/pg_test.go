package database_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
)

// The runtime's cross-replica locks are rows of its own table, which plugin
// roles cannot touch: a plugin holding the advisory locks the runtime once
// used does not stop another replica from opening or provisioning a
// plugin; and a plugin waiting for its lock (another replica provisioning
// it) holds up neither the runtime's database nor other plugins.
func TestPGLocksOutOfPluginsReach(t *testing.T) {
	url := pgtest.URL(t)
	in := start(t, fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", url), plugin("alpha", true, "good", ""), plugin("beta", true, "good", ""))
	key := func(name string) int64 {
		h := fnv.New64a()
		h.Write([]byte("greenroom:" + name))
		return int64(h.Sum64())
	}
	// Session locks: they stay on alpha's pooled connection.
	must(t, in, "alpha", exec(fmt.Sprintf("SELECT pg_advisory_lock(%d), pg_advisory_lock(%d)", key("runtime"), key("plugin:beta"))))

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
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'greenroom lock' AND wait_event_type = 'Lock'").Scan(&waiting); err != nil {
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

// Notifications are dropped, not buffered by the driver: a plugin cannot
// receive them, and could otherwise fill the host's memory.
func TestPGNotificationsDropped(t *testing.T) {
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
		if n, _ := dc.(*stdlib.Conn).Conn().WaitForNotification(wctx); n != nil {
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
