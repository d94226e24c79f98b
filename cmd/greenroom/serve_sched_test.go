package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/build"
)

// serve starts the scheduler, and on shutdown cancels the task runs in
// progress, records them and releases their leases before it exits.
func TestServeShutdownStopsTasks(t *testing.T) {
	_, _ = testShutdownStopsTask(t, `
[plugins.sched.capabilities]
scheduler = true
[[plugins.sched.config.tasks]]
id = "slow"
every = "1s"
timeout = "1m"
action = "sleep"
ms = 60000
`)
}

// A run waiting in a host call (here one long SQLite statement) is stopped
// by the shutdown too: the call ends when the stop is asked, as the Run's
// ctx would end a native statement. It ran on to its end (or was cut at
// the shutdown's deadline, exit 1), the guest being unable to ask
// cancel_requested while it waited.
func TestServeShutdownStopsATaskInAHostCall(t *testing.T) {
	took, runErr := testShutdownStopsTask(t, `
limits = { db_statement_timeout = "1m" }
[plugins.sched.capabilities]
scheduler = true
database = true
[[plugins.sched.config.tasks]]
id = "slow"
every = "1s"
timeout = "1m"
action = "slowsql"
ms = 1000000
`)
	if took > 5*time.Second {
		t.Errorf("shutdown took %s with a task in a statement; want it stopped at once", took)
	}
	// The statement says why it ended: not a deadline.
	if !strings.Contains(runErr, "the task run was asked to stop") || strings.Contains(runErr, "deadline") {
		t.Errorf("the run's error: %q, want the stop named, no deadline", runErr)
	}
}

// testShutdownStopsTask serves the tasks guest as plugin sched with
// plugin's config (its limits, capabilities and tasks: one task that runs
// for a long time), waits for its run to begin, shuts down, and checks the
// run was recorded canceled and its lease released. It returns how long
// the shutdown took and the run's error text.
func testShutdownStopsTask(t *testing.T, plugin string) (time.Duration, string) {
	cache := filepath.Join(os.TempDir(), "greenroom-test-guests")
	wasm, _, err := build.Cached(context.Background(), filepath.Join("..", "..", "runtime", "scheduler", "testdata", "guests", "tasks"), cache)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
[server]
listen = "127.0.0.1:0"
[log]
level = "warn"
[runtime]
cache_dir = %q
[database]
connection = "file:data"
[auth]
dangerously_disable = true
[plugins.sched]
path = %q
%s`, filepath.Join(cache, "cmd-test-cache"), wasm, plugin)), 0o644)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{cfgPath}, runtime.Options{}, false) }()
	defer cancel()

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "data", "greenroom.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		db.QueryRow("SELECT count(*) FROM scheduler_runs WHERE outcome = 'running'").Scan(&n)
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no run started")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // into the run (and its statement)
	stopped := time.Now()
	cancel()
	var took time.Duration
	select {
	case err := <-done:
		took = time.Since(stopped)
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not shut down")
	}
	var outcome, failure string
	var lease, runErr sql.NullString
	if err := db.QueryRow("SELECT outcome, failure, error FROM scheduler_runs").Scan(&outcome, &failure, &runErr); err != nil || outcome != "failed" || failure != "canceled" {
		t.Errorf("the run in progress: %s/%s %v, want failed/canceled", outcome, failure, err)
	}
	if err := db.QueryRow("SELECT lease_owner FROM scheduler_tasks").Scan(&lease); err != nil || lease.Valid {
		t.Errorf("lease after shutdown: %v %v, want released", lease, err)
	}
	return took, runErr.String
}
