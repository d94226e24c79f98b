package scheduler

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
)

// The store's statements, on both databases: what a claim takes, what it
// leaves, and what completing, renewing and tidying do.
func TestStore(t *testing.T) {
	t.Parallel()
	eachStore(t, testStore)
}

// eachStore runs test on a store on SQLite and one on PostgreSQL.
func eachStore(t *testing.T, test func(t *testing.T, st store)) {
	for _, b := range []struct {
		name string
		cfg  func(testing.TB) database.Config
	}{
		{"sqlite", func(t testing.TB) database.Config {
			return database.Config{Client: database.ClientSQLite, Connection: t.TempDir()}
		}},
		{"pg", func(t testing.TB) database.Config {
			return database.Config{Client: database.ClientPG, Connection: pgtest.URL(t), Isolation: database.IsolationRole}
		}},
	} {
		t.Run(b.name, func(t *testing.T) { test(t, openStore(t, b.cfg(t))) })
	}
}

// openStore opens the runtime's database and returns its scheduler store.
func openStore(t testing.TB, cfg database.Config) store {
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	svc := database.New(cfg, log)
	if err := svc.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	st, err := newStore(svc.DB())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func testStore(t *testing.T, st store) {
	ctx := context.Background()
	const lease = 1500 * time.Millisecond
	task, due := registerDueTask(t, st)
	// Registering again (another replica, a restart) keeps next_run.
	if got, err := st.register(ctx, []registration{{task: &task, next: due.Add(time.Hour)}}); err != nil || !got[0].Equal(due) {
		t.Fatalf("register again: %v %v", got, err)
	}
	next := due.Add(time.Minute)
	claim := func(replica string, it claimItem) claimResult {
		t.Helper()
		res, err := st.claim(ctx, replica, lease, []claimItem{it})
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	// A claim for a stale due time gets nothing and learns next_run.
	if r := claim("a", claimItem{plugin: "p", task: "t", due: due.Add(-time.Minute), runID: "stale"}); r.claimed || !r.exists || !r.nextRun.Equal(due) {
		t.Errorf("stale claim: %+v", r)
	}
	if r := claim("a", claimItem{plugin: "p", task: "nope", due: due, runID: "x"}); r.claimed || r.exists {
		t.Errorf("claim of an unknown task: %+v", r)
	}
	if r := claim("a", claimItem{plugin: "p", task: "t", due: due, runID: "run1"}); !r.claimed {
		t.Fatalf("claim: %+v", r)
	}
	// The lease is held: neither the same due time nor a trigger gets it;
	// next_run stays the due time until its run ends.
	if r := claim("b", claimItem{plugin: "p", task: "t", due: due, runID: "run2"}); r.claimed || !r.held || r.holder != "a" || !r.nextRun.Equal(due) || r.ahead {
		t.Errorf("claim under a lease: %+v", r)
	}
	if r := claim("b", claimItem{plugin: "p", task: "t", manual: true, runID: "run2"}); r.claimed || !r.held {
		t.Errorf("manual claim under a lease: %+v", r)
	}
	if held, err := st.renew(ctx, "b", lease, []string{"run1"}); err != nil || len(held) != 0 {
		t.Errorf("renew by another replica: %v %v", held, err)
	}
	if held, err := st.renew(ctx, "a", lease, []string{"run1"}); err != nil || len(held) != 1 || held["run1"] {
		t.Errorf("renew: %v %v", held, err)
	}
	// a dies; its lease expires; b takes the task over: the due time a's
	// run never finished is still due, b runs it, and a's run is marked
	// lost.
	time.Sleep(lease + 200*time.Millisecond)
	if r := claim("b", claimItem{plugin: "p", task: "t", due: due, runID: "run2"}); !r.claimed {
		t.Fatalf("claim after the lease expired: %+v", r)
	}
	runs, err := st.runs(ctx, "p", "t", 10)
	if err != nil || len(runs) != 2 {
		t.Fatalf("runs: %+v %v", runs, err)
	}
	if r := runs[1]; r.RunID != "run1" || r.Outcome != "failed" || r.Failure != "lost" || r.Replica != "a" || r.Trigger != "schedule" || r.Due == nil || !r.Due.Equal(due) {
		t.Errorf("the dead replica's run: %+v", r)
	}
	if r := runs[0]; r.RunID != "run2" || r.Outcome != "running" || r.Trigger != "schedule" || r.Due == nil || !r.Due.Equal(due) {
		t.Errorf("the run that took over: %+v", r)
	}
	// The lost run is the task's last one until run2 ends.
	if rows, _, err := st.tasks(ctx); err != nil || len(rows) != 1 || rows[0].lastRunID != "run1" || rows[0].lastOutcome != "failed" ||
		rows[0].lastFailure != "lost" || rows[0].lastReplica != "a" || rows[0].lastEnd.IsZero() || !rows[0].nextRun.Equal(due) {
		t.Errorf("task row after the takeover: %+v %v", rows, err)
	}
	// a comes back and reports run1: its row stays lost, b's lease and
	// next_run stay; b's run ends, releases the lease and moves next_run.
	if err := st.finish(ctx, []finishItem{{runID: "run1", plugin: "p", task: "t", outcome: "succeeded", due: due, next: next}}); err != nil {
		t.Fatal(err)
	}
	if r := claim("c", claimItem{plugin: "p", task: "t", manual: true, runID: "run3"}); r.claimed || r.holder != "b" || !r.nextRun.Equal(due) {
		t.Errorf("b's lease after a's late finish: %+v", r)
	}
	if err := st.finish(ctx, []finishItem{{runID: "run2", plugin: "p", task: "t", outcome: "failed", failure: "error", err: "it broke", duration: 1500 * time.Microsecond, due: due, next: next}}); err != nil {
		t.Fatal(err)
	}
	rows, _, err := st.tasks(ctx)
	if err != nil || len(rows) != 1 {
		t.Fatalf("tasks: %+v %v", rows, err)
	}
	if r := rows[0]; r.runID != "" || r.leaseOwner != "" || !r.nextRun.Equal(next) || r.lastRunID != "run2" || r.lastOutcome != "failed" ||
		r.lastFailure != "error" || r.lastError != "it broke" || r.lastDurationUS.Int64 != 1500 || r.lastReplica != "b" || r.lastStart.IsZero() || r.lastEnd.IsZero() {
		t.Errorf("task row: %+v", r)
	}
	// A manual run leaves next_run as it is.
	if r := claim("c", claimItem{plugin: "p", task: "t", manual: true, runID: "run3"}); !r.claimed {
		t.Fatalf("manual claim: %+v", r)
	}
	if err := st.finish(ctx, []finishItem{{runID: "run3", plugin: "p", task: "t", outcome: "succeeded"}}); err != nil {
		t.Fatal(err)
	}
	// The next due time is claimed once.
	if r := claim("c", claimItem{plugin: "p", task: "t", due: next, runID: "run4"}); !r.claimed || !r.nextRun.Equal(next) {
		t.Errorf("claim of the next due time: %+v", r)
	}
	// It is held, by a run that has not begun (ahead): a trigger waits.
	if r := claim("b", claimItem{plugin: "p", task: "t", due: next, runID: "run5"}); r.claimed || !r.held || !r.ahead {
		t.Errorf("second claim of a due time: %+v", r)
	}
	if r := claim("b", claimItem{plugin: "p", task: "t", manual: true, runID: "run5"}); r.claimed || !r.held || !r.ahead {
		t.Errorf("manual claim while a run claimed ahead holds the lease: %+v", r)
	}
	// Claimed ahead of its due time (a minute ahead here), a run is
	// recorded as starting at the due time.
	if runs, err := st.runs(ctx, "p", "t", 1); err != nil || len(runs) != 1 || runs[0].RunID != "run4" || !runs[0].Started.Equal(next) {
		t.Errorf("run claimed ahead: %+v %v", runs, err)
	}
	// A registration that changes the schedule while a run holds the
	// lease sets next_run; the run's end leaves it.
	task.Every = 2 * time.Minute
	if got, err := st.register(ctx, []registration{{task: &task, next: due.Add(time.Hour)}}); err != nil || !got[0].Equal(due.Add(time.Hour)) {
		t.Errorf("register a changed schedule: %v %v", got, err)
	}
	if err := st.finish(ctx, []finishItem{{runID: "run4", plugin: "p", task: "t", outcome: "succeeded", due: next, next: next.Add(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	if rows, _, err := st.tasks(ctx); err != nil || len(rows) != 1 || !rows[0].nextRun.Equal(due.Add(time.Hour)) || rows[0].leaseOwner != "" {
		t.Errorf("task row after a run of the old schedule ended: %+v %v", rows, err)
	}
	// Local tasks have no next_run; tidy keeps the last runs.
	local, _ := NewTask("p", hostfuncs.TaskSpec{ID: "l", Every: time.Second, Scope: hostfuncs.ScopeLocal}, time.Second)
	if got, err := st.register(ctx, []registration{{task: &local, next: due}}); err != nil || !got[0].IsZero() {
		t.Errorf("register local: %v %v", got, err)
	}
	for i := 0; i < 5; i++ {
		id := "l" + string(rune('0'+i))
		if err := st.start(ctx, "a", []localStart{localStart{runID: id, plugin: "p", task: "l", due: due}}); err != nil {
			t.Fatal(err)
		}
		if err := st.finish(ctx, []finishItem{{runID: id, plugin: "p", task: "l", outcome: "succeeded"}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := st.tidy(ctx, 3, nil); err != nil {
		t.Fatal(err)
	}
	if runs, _ := st.runs(ctx, "p", "l", 10); len(runs) != 3 || runs[0].RunID != "l4" {
		t.Errorf("after tidy: %+v", runs)
	}
	if runs, _ := st.runs(ctx, "p", "t", 10); len(runs) != 3 {
		t.Errorf("after tidy, the global task: %+v", runs)
	}
	// A run that began while its task was local, which a reload then made
	// global, is not lost while it may still run (up to its timeout and
	// the grace); past that, tidy records it lost, as the task's last run.
	flip, _ := NewTask("p", hostfuncs.TaskSpec{ID: "flip", Every: time.Hour, Scope: hostfuncs.ScopeLocal}, time.Second)
	if _, err := st.register(ctx, []registration{{task: &flip, next: due}}); err != nil {
		t.Fatal(err)
	}
	if err := st.start(ctx, "a", []localStart{localStart{runID: "f1", plugin: "p", task: "flip", due: due}}); err != nil {
		t.Fatal(err)
	}
	flip.Scope = Global
	if _, err := st.register(ctx, []registration{{task: &flip, next: due.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if err := st.tidy(ctx, 3, nil); err != nil {
		t.Fatal(err)
	}
	if runs, _ := st.runs(ctx, "p", "flip", 10); len(runs) != 1 || runs[0].Outcome != "running" {
		t.Errorf("a run begun local, its task now global, after tidy: %+v", runs)
	}
	backdate(t, st, "f1", lostGrace+2*time.Second)
	if err := st.tidy(ctx, 3, nil); err != nil {
		t.Fatal(err)
	}
	if runs, _ := st.runs(ctx, "p", "flip", 10); len(runs) != 1 || runs[0].Outcome != "failed" || runs[0].Failure != "lost" {
		t.Errorf("the same run past its timeout and the grace, after tidy: %+v", runs)
	}
	// A local run is lost by the timeout it started with, not by the task
	// row's, which the last replica to register wrote (replicas with
	// different limits.timeout; an audit's run was marked lost while it
	// ran, and its success was never recorded).
	long, _ := NewTask("p", hostfuncs.TaskSpec{ID: "long", Every: time.Hour, Scope: hostfuncs.ScopeLocal}, 10*time.Minute)
	if _, err := st.register(ctx, []registration{{task: &long}}); err != nil {
		t.Fatal(err)
	}
	if err := st.start(ctx, "c", []localStart{localStart{runID: "g1", plugin: "p", task: "long", due: due, timeout: long.Timeout}}); err != nil {
		t.Fatal(err)
	}
	short, _ := NewTask("p", hostfuncs.TaskSpec{ID: "long", Every: time.Hour, Scope: hostfuncs.ScopeLocal}, time.Second)
	if _, err := st.register(ctx, []registration{{task: &short}}); err != nil {
		t.Fatal(err)
	}
	backdate(t, st, "g1", lostGrace+2*time.Second)
	if err := st.tidy(ctx, 3, nil); err != nil {
		t.Fatal(err)
	}
	if runs, _ := st.runs(ctx, "p", "long", 10); len(runs) != 1 || runs[0].Outcome != "running" {
		t.Errorf("a local run within its own timeout, the row's shorter, after tidy: %+v", runs)
	}
	backdate(t, st, "g1", 10*time.Minute)
	if err := st.tidy(ctx, 3, nil); err != nil {
		t.Fatal(err)
	}
	if runs, _ := st.runs(ctx, "p", "long", 10); len(runs) != 1 || runs[0].Failure != "lost" {
		t.Errorf("the same run past its own timeout and the grace, after tidy: %+v", runs)
	}
	rows, _, err = st.tasks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.task == "flip" && (r.lastRunID != "f1" || r.lastOutcome != "failed" || r.lastFailure != "lost" || r.lastReplica != "a") {
			t.Errorf("the task's last run after tidy marked it lost: %+v", r)
		}
	}
}

// backdate moves a run's start d into the past.
func backdate(t *testing.T, st store, runID string, d time.Duration) {
	t.Helper()
	var err error
	switch s := st.(type) {
	case *sqliteStore:
		_, err = s.db.Exec("UPDATE scheduler_runs SET started_at = started_at - ? WHERE run_id = ?", d.Microseconds(), runID)
	case *pgStore:
		_, err = s.db.Exec("UPDATE scheduler_runs SET started_at = started_at - $1 * interval '1 microsecond' WHERE run_id = $2", d.Microseconds(), runID)
	default:
		t.Fatalf("store %T", st)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// unclaim gives a claim back: next_run is still the claimed due time, the
// lease is free and the run's row is gone; a claim another replica holds
// now is left alone.
func TestStoreUnclaim(t *testing.T) {
	eachStore(t, func(t *testing.T, st store) {
		ctx := context.Background()
		task, err := NewTask("p", hostfuncs.TaskSpec{ID: "t", Every: time.Minute}, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		due := trunc(time.Now().Add(time.Second))
		if _, err := st.register(ctx, []registration{{task: &task, next: due}}); err != nil {
			t.Fatal(err)
		}
		res, err := st.claim(ctx, "a", time.Minute, []claimItem{{plugin: "p", task: "t", due: due, runID: "run1"}})
		if err != nil || !res[0].claimed {
			t.Fatalf("claim: %+v %v", res, err)
		}
		// Not b's to give back.
		if err := st.unclaim(ctx, "b", unclaimItem{runID: "run1", plugin: "p", task: "t"}); err != nil {
			t.Fatal(err)
		}
		rows, _, err := st.tasks(ctx)
		if err != nil || len(rows) != 1 || rows[0].leaseOwner != "a" || rows[0].runID != "run1" {
			t.Fatalf("after another replica's unclaim: %+v %v", rows, err)
		}
		if err := st.unclaim(ctx, "a", unclaimItem{runID: "run1", plugin: "p", task: "t"}); err != nil {
			t.Fatal(err)
		}
		rows, _, err = st.tasks(ctx)
		if err != nil || len(rows) != 1 || rows[0].leaseOwner != "" || rows[0].runID != "" || !rows[0].nextRun.Equal(due) {
			t.Fatalf("after the unclaim: %+v %v", rows, err)
		}
		if runs, err := st.runs(ctx, "p", "t", 10); err != nil || len(runs) != 0 {
			t.Errorf("runs after the unclaim: %+v %v", runs, err)
		}
		// The due time can be claimed again.
		if res, err := st.claim(ctx, "b", time.Minute, []claimItem{{plugin: "p", task: "t", due: due, runID: "run2"}}); err != nil || !res[0].claimed {
			t.Errorf("claim after the unclaim: %+v %v", res, err)
		}
	})
}

// A claim whose answer was lost (the database committed it, then the
// connection dropped) is sent again with the same run ids: the replica
// finds the lease its own, and neither a second run row nor a lost run
// comes of it. Without this the due time's run never began: the retry
// found the lease held (by this replica, unknowingly) until it expired
// into a lost run.
func TestStoreClaimSentAgain(t *testing.T) {
	eachStore(t, func(t *testing.T, st store) {
		ctx := context.Background()
		const lease = 300 * time.Millisecond
		_, due := registerDueTask(t, st)
		next := due.Add(time.Minute)
		claim := func(replica string, it claimItem) claimResult {
			t.Helper()
			res, err := st.claim(ctx, replica, lease, []claimItem{it})
			if err != nil {
				t.Fatal(err)
			}
			return res[0]
		}
		it := claimItem{plugin: "p", task: "t", due: due, runID: "run1"}
		if r := claim("a", it); !r.claimed {
			t.Fatalf("claim: %+v", r)
		}
		if r := claim("a", it); !r.claimed {
			t.Fatalf("the same claim sent again: %+v", r)
		}
		// Another replica does not get it with the same run id.
		if r := claim("b", it); r.claimed || r.holder != "a" {
			t.Errorf("the claim's run id from another replica: %+v", r)
		}
		// Sent again after the lease expired, with nobody else claiming
		// meanwhile (a retry comes seconds later): still its own.
		time.Sleep(lease + 100*time.Millisecond)
		if r := claim("a", it); !r.claimed {
			t.Fatalf("sent again after the lease expired: %+v", r)
		}
		rows, _, err := st.tasks(ctx)
		if err != nil || len(rows) != 1 {
			t.Fatalf("tasks: %+v %v", rows, err)
		}
		if r := rows[0]; !r.nextRun.Equal(due) || r.leaseOwner != "a" || r.runID != "run1" || r.lastRunID != "" {
			t.Errorf("task row after the claim was sent three times: %+v", r)
		}
		if err := st.finish(ctx, []finishItem{{runID: "run1", plugin: "p", task: "t", outcome: "succeeded", due: due, next: next}}); err != nil {
			t.Fatal(err)
		}
		// A manual claim, sent twice.
		m := claimItem{plugin: "p", task: "t", manual: true, runID: "run2"}
		if r := claim("a", m); !r.claimed {
			t.Fatalf("manual claim: %+v", r)
		}
		if r := claim("a", m); !r.claimed {
			t.Fatalf("the manual claim sent again: %+v", r)
		}
		runs, err := st.runs(ctx, "p", "t", 10)
		if err != nil || len(runs) != 2 {
			t.Fatalf("runs: %+v %v", runs, err)
		}
		if r := runs[1]; r.RunID != "run1" || r.Outcome != "succeeded" || r.Due == nil || !r.Due.Equal(due) {
			t.Errorf("the scheduled run: %+v", r)
		}
		if r := runs[0]; r.RunID != "run2" || r.Outcome != "running" || r.Trigger != "manual" {
			t.Errorf("the manual run: %+v", r)
		}
		if rows, _, err := st.tasks(ctx); err != nil || len(rows) != 1 || !rows[0].nextRun.Equal(next) || rows[0].lastRunID != "run1" {
			t.Errorf("task row after the manual claim: %+v %v", rows, err)
		}
	})
}

// registerDueTask registers the global task p/t, due every minute, its
// first due time (returned) a second ago.
func registerDueTask(t *testing.T, st store) (Task, time.Time) {
	t.Helper()
	task, err := NewTask("p", hostfuncs.TaskSpec{ID: "t", Every: time.Minute}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	due := trunc(time.Now().Add(-time.Second))
	got, err := st.register(context.Background(), []registration{{task: &task, next: due}})
	if err != nil || !got[0].Equal(due) {
		t.Fatalf("register: %v %v", got, err)
	}
	return task, due
}

// An operator's cancel sent to a replica that does not run the run
// (requestCancel) marks that run's row, which the replica holding the
// lease reads between renewals (cancelRequested) and as it renews it:
// never its own run, nor a run that no
// longer holds a live lease (it ended), nor a later run of the task.
func TestStoreCancelRequest(t *testing.T) {
	eachStore(t, func(t *testing.T, st store) {
		ctx := context.Background()
		const lease = time.Minute
		_, due := registerDueTask(t, st)
		renew := func(id string) (held, cancel bool) {
			t.Helper()
			got, err := st.renew(ctx, "a", lease, []string{id})
			if err != nil {
				t.Fatal(err)
			}
			cancel, held = got[id]
			return held, cancel
		}
		request := func(replica, runID string) (Run, bool) {
			t.Helper()
			run, ok, err := st.requestCancel(ctx, "p", "t", replica, runID)
			if err != nil {
				t.Fatal(err)
			}
			return run, ok
		}
		if _, ok := request("b", ""); ok {
			t.Errorf("a cancel with no run in progress hit one")
		}
		if res, err := st.claim(ctx, "a", lease, []claimItem{{plugin: "p", task: "t", due: due, runID: "run1"}}); err != nil || !res[0].claimed {
			t.Fatalf("claim: %+v %v", res, err)
		}
		if _, ok := request("a", ""); ok {
			t.Errorf("a's cancel of its own run was recorded for it")
		}
		if _, ok := request("b", "run0"); ok {
			t.Errorf("a cancel naming another run hit run1")
		}
		if held, cancel := renew("run1"); !held || cancel {
			t.Fatalf("renew before any cancel: held %v, cancel %v", held, cancel)
		}
		asked := func(ids ...string) []string {
			t.Helper()
			got, err := st.cancelRequested(ctx, ids)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		if got := asked("run1", "run0"); len(got) != 0 {
			t.Errorf("cancel requests before any: %v", got)
		}
		if run, ok := request("b", ""); !ok || run.RunID != "run1" || run.Replica != "a" || run.Outcome != "running" || run.Trigger != "schedule" {
			t.Fatalf("cancel through b: %+v %v", run, ok)
		}
		if got := asked("run0", "run1", "run9"); !slices.Equal(got, []string{"run1"}) {
			t.Errorf("cancel requests after the cancel: %v; want run1", got)
		}
		if held, cancel := renew("run1"); !held || !cancel {
			t.Fatalf("renew after the cancel: held %v, cancel %v", held, cancel)
		}
		// run1 ends (on its own, before a renewal read the cancel): the
		// cancel changes nothing of it, and no later run.
		if err := st.finish(ctx, []finishItem{{runID: "run1", plugin: "p", task: "t", outcome: "succeeded", due: due, next: due.Add(time.Minute), leased: true}}); err != nil {
			t.Fatal(err)
		}
		if _, ok := request("b", "run1"); ok {
			t.Errorf("a cancel of the ended run1 was recorded")
		}
		if res, err := st.claim(ctx, "a", lease, []claimItem{{plugin: "p", task: "t", manual: true, runID: "run2"}}); err != nil || !res[0].claimed {
			t.Fatalf("claim run2: %+v %v", res, err)
		}
		if held, cancel := renew("run2"); !held || cancel {
			t.Errorf("renew of the later run2: held %v, cancel %v", held, cancel)
		}
		if got := asked("run2"); len(got) != 0 {
			t.Errorf("cancel requests of the later run2: %v", got)
		}
		if _, ok := request("b", "run1"); ok {
			t.Errorf("a cancel naming run1 hit run2")
		}
		runs, err := st.runs(ctx, "p", "t", 10)
		if err != nil || len(runs) != 2 || runs[1].RunID != "run1" || runs[1].Outcome != "succeeded" {
			t.Errorf("runs: %+v %v", runs, err)
		}
	})
}

// run reads a run's row by its id, among any number of the task's runs
// begun after it (the trigger's and the cancel's started_at:
// recordedStart, recordedStartNow); none for an unknown id.
func TestStoreRunByID(t *testing.T) {
	eachStore(t, func(t *testing.T, st store) {
		ctx := context.Background()
		var sts []localStart
		for i := range 7 {
			sts = append(sts, localStart{runID: fmt.Sprintf("run%d", i), plugin: "p", task: "l", manual: true, timeout: time.Minute})
		}
		if err := st.start(ctx, "a", sts[:1]); err != nil {
			t.Fatal(err)
		}
		if err := st.start(ctx, "b", sts[1:]); err != nil {
			t.Fatal(err)
		}
		r, ok, err := st.run(ctx, "run0")
		if err != nil || !ok || r.RunID != "run0" || r.Replica != "a" || r.Started.IsZero() {
			t.Fatalf("run0: %+v %v %v", r, ok, err)
		}
		if _, ok, err := st.run(ctx, "nope"); err != nil || ok {
			t.Errorf("an unknown run id: found %v, %v", ok, err)
		}
	})
}
