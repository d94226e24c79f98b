package scheduler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// stopRun starts task id of plugin sched on in by a trigger, waits for
// its guest to log "task start", stops the scheduler with a deadline of
// timeout, and returns Stop's error and the run as recorded.
func stopRun(t *testing.T, in *servertest.Instance, id string, timeout time.Duration) error {
	t.Helper()
	if status, body := trigger(t, in, "sched", id); status >= 300 {
		t.Fatalf("trigger: %d %s", status, body)
	}
	waitFor(t, 20*time.Second, "the run to start", func() bool {
		return len(jsonLines(t, in, "sched", "task start")) > 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return in.RT.StopScheduler(ctx)
}

// checkStopped checks that task id's only run is recorded as failed,
// canceled, with an error holding want, and that its lease is released.
func checkStopped(t *testing.T, in *servertest.Instance, id, want string) {
	t.Helper()
	runs := history(t, in, "sched", id)
	if len(runs) != 1 || runs[0].Outcome != "failed" || runs[0].Failure != "canceled" || !strings.Contains(runs[0].Error, want) {
		t.Errorf("runs %+v; want one, failed, canceled, with an error holding %q", runs, want)
	}
	st := find(list(t, in, ""), "sched", id)
	if st == nil || st.Running || st.RunningOn != "" {
		t.Errorf("task after the stop: %+v; want it not running and its lease released", st)
	}
}

// A graceful stop asks a running task to stop before it interrupts it:
// Run sees its ctx cancelled (Canceled), and gets to clean up — here a
// log line and a database write — and return. The run is recorded as
// canceled and its global lease released. Before, the run was
// interrupted mid-way and its cleanup never ran.
func TestStopCancelsRunContext(t *testing.T) {
	conf := strings.Replace(plugin("sched", true, def{ID: "wait", Cron: "@yearly", Action: "cleanup", MS: 60000}),
		"scheduler = true\n", "scheduler = true\ndatabase = true\n", 1)
	in := start(t, "one", sqliteConf(t), conf)
	if err := stopRun(t, in, "wait", 30*time.Second); err != nil {
		t.Errorf("stop: %v", err)
	}
	done := jsonLines(t, in, "sched", "task ctx done")
	if len(done) != 1 || done[0]["err"] != "context canceled" {
		t.Errorf("lines of the task's cleanup: %v; want one, err=context canceled\n%.4000s", done, in.Log.String())
	}
	_, _, body := in.Get(t, "/api/sched/rows")
	var rows struct {
		Rows  int    `json:"rows"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &rows); err != nil || rows.Rows != 1 {
		t.Errorf("rows the cleanup wrote: %s (%v); want 1", body, err)
	}
	checkStopped(t, in, "wait", "returned after its context was cancelled: context canceled")
}

// A task that ignores its ctx (a loop that never blocks) is interrupted
// once the grace has passed: what is left of Stop's deadline less a tenth
// (at most a second), so Stop still returns in time, and its error names
// the run it cut off (the process then exits non-zero, as for requests
// the shutdown's deadline cuts off); a run that returned when asked
// (above) is none.
func TestStopInterruptsRunAfterGrace(t *testing.T) {
	t.Parallel()
	in := start(t, "one", sqliteConf(t), plugin("sched", true, def{ID: "spin", Cron: "@yearly", Action: "spin"}))
	err := stopRun(t, in, "spin", 4*time.Second)
	if err == nil || !strings.Contains(err.Error(), "interrupted at the shutdown's deadline") || !strings.Contains(err.Error(), "sched/spin") {
		t.Errorf("stop: %v; want the run named as interrupted", err)
	}
	checkStopped(t, in, "spin", "did not return within the grace")
}

// The leases of runs still finishing are renewed through the stop's
// grace: with a lease shorter than the grace, a run that ignores its ctx
// is interrupted at the grace's end and recorded canceled, and Stop names
// it. Before, renewal stopped with the scheduler's loops, the lease
// lapsed, and the run was interrupted early as lost, and Stop returned
// nil (the process exited 0 having cut a run off; an audit's).
func TestStopRenewsLeasesThroughTheGrace(t *testing.T) {
	t.Parallel()
	in := start(t, "one", sqliteConf(t), schedConf("3s"), plugin("sched", true, def{ID: "spin", Cron: "@yearly", Action: "spin"}))
	began := time.Now()
	err := stopRun(t, in, "spin", 7*time.Second)
	if err == nil || !strings.Contains(err.Error(), "interrupted at the shutdown's deadline") || !strings.Contains(err.Error(), "sched/spin") {
		t.Errorf("stop: %v; want the run named as interrupted", err)
	}
	if took := time.Since(began); took < 5*time.Second {
		t.Errorf("the run was interrupted %s into a 7s stop, before its grace ended", took)
	}
	checkStopped(t, in, "spin", "did not return within the grace")
}

// A scheduled run's lateness is counted when it starts, not when it
// ends: a long run's shows (greenroom_task_lateness_seconds) while it
// runs.
func TestLatenessCountedAtStart(t *testing.T) {
	in := start(t, "one", sqliteConf(t), plugin("sched", true, def{ID: "long", Every: "1s", Timeout: "60s", Action: "cleanup", MS: 60000}))
	waitFor(t, 20*time.Second, "the run to start", func() bool {
		return len(jsonLines(t, in, "sched", "task start")) > 0
	})
	st := in.RT.Scheduler().Stats()
	if st.Lateness.Count != 1 || st.Running != 1 {
		t.Errorf("while the first run runs: lateness count %d, running %d; want 1 and 1", st.Lateness.Count, st.Running)
	}
}

// A run that ignores its ctx but ends before the shutdown's deadline is
// not cut: shutdown_timeout is how long task runs get to finish (it was
// interrupted after a fixed 5 s grace, and the process exited 1).
func TestStopLetsRunFinishWithinDeadline(t *testing.T) {
	t.Parallel()
	in := start(t, "one", sqliteConf(t), plugin("sched", true, def{ID: "busy", Cron: "@yearly", Timeout: "1m", Action: "busy", MS: 7000}))
	if err := stopRun(t, in, "busy", 15*time.Second); err != nil {
		t.Errorf("stop: %v; want the run to end on its own within the deadline", err)
	}
	checkStopped(t, in, "busy", "returned after its context was cancelled")
}

// A stop with no runs in progress cut nothing, even when its deadline has
// already passed: Stop chose at random between its runs' end and the
// passed deadline, and reported runs cut off that never were (the process
// exited 1 after a clean shutdown).
func TestStopWithoutRunsPastItsDeadline(t *testing.T) {
	t.Parallel()
	for i := range 20 {
		in := start(t, "one", sqliteConf(t), plugin("sched", true, def{ID: "idle", Cron: "@yearly"}))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := in.RT.StopScheduler(ctx); err != nil {
			t.Fatalf("stop %d with no runs and its deadline passed: %v", i, err)
		}
	}
}

// cancel posts .../cancel for task id of plugin sched.
func cancelTask(t *testing.T, in *servertest.Instance, id string) (int, string) {
	t.Helper()
	status, _, body := in.Do(t, "POST", "/.greenroom/scheduler/v1/tasks/sched/"+id+"/cancel", nil)
	return status, body
}

// An operator cancels a task's run over the admin API (POST .../cancel):
// the run is asked to stop as at a shutdown (its ctx is cancelled, here it
// cleans up and returns), and one that does not return ("busy" never
// looks) is interrupted 5 s later; each is recorded failed, canceled,
// saying so, and its lease released, while the scheduler goes on. Wrong
// requests get the usual answers: 409 task_not_running with no run in
// progress, 404 for an unknown task, 405 for another method. The admin API
// had no way to stop a run (a POST to .../cancel was a 404 no route).
func TestCancelOverAdminAPI(t *testing.T) {
	t.Parallel()
	conf := strings.Replace(plugin("sched", true,
		def{ID: "wait", Cron: "@yearly", Timeout: "60s", Action: "cleanup", MS: 60000},
		def{ID: "busy", Cron: "@yearly", Timeout: "60s", Action: "busy", MS: 60000}),
		"scheduler = true\n", "scheduler = true\ndatabase = true\n", 1)
	in := start(t, "one", sqliteConf(t), conf)
	if status, body := cancelTask(t, in, "wait"); status != 409 || !strings.Contains(body, `"task_not_running"`) {
		t.Errorf("cancel with no run in progress: %d %s", status, body)
	}
	if status, body := cancelTask(t, in, "nope"); status != 404 || !strings.Contains(body, `"unknown_task"`) {
		t.Errorf("cancel of an unknown task: %d %s", status, body)
	}
	if status, _, body := in.Do(t, "GET", "/.greenroom/scheduler/v1/tasks/sched/wait/cancel", nil); status != 405 {
		t.Errorf("GET .../cancel: %d %s", status, body)
	}
	if status, _, body := in.DoAnon(t, "POST", "/.greenroom/scheduler/v1/tasks/sched/wait/cancel", nil); status != 401 {
		t.Errorf("cancel without a credential: %d %s", status, body)
	}
	for i, c := range []struct{ id, want string }{
		{"wait", "canceled by an operator (POST .../cancel) during the run; it returned after its context was cancelled: context canceled"},
		{"busy", "interrupted: canceled by an operator (POST .../cancel) during the run, which did not return within 5s"},
	} {
		if status, body := trigger(t, in, "sched", c.id); status != 200 {
			t.Fatalf("trigger %s: %d %s", c.id, status, body)
		}
		// Its guest's first line, not the listing's running: a run
		// listed as running may not have begun yet, and a cancel then
		// stops it before it begins (the test failed so under load).
		waitFor(t, 10*time.Second, c.id+"'s run to begin", func() bool {
			return len(jsonLines(t, in, "sched", "task start")) > i
		})
		began := time.Now()
		status, body := cancelTask(t, in, c.id)
		var run struct {
			RunID   string    `json:"run_id"`
			Replica string    `json:"replica"`
			Started time.Time `json:"started_at"`
		}
		if status != 202 || json.Unmarshal([]byte(body), &run) != nil || run.RunID == "" || run.Replica != "one" {
			t.Fatalf("cancel %s: %d %s", c.id, status, body)
		}
		waitFor(t, 15*time.Second, c.id+"'s run to end", func() bool { return len(ended(history(t, in, "sched", c.id), "")) == 1 })
		if d := time.Since(began); d > 9*time.Second {
			t.Errorf("%s's run ended %s after the cancel", c.id, d)
		}
		checkStopped(t, in, c.id, c.want)
		if runs := history(t, in, "sched", c.id); runs[0].RunID != run.RunID {
			t.Errorf("%s: canceled run %s, recorded %+v", c.id, run.RunID, runs)
		} else if !run.Started.Equal(runs[0].Started) {
			// The answer said 0001-01-01T00:00:00Z.
			t.Errorf("%s: the cancel's answer has started_at %s, the history %s", c.id, run.Started, runs[0].Started)
		}
	}
	// The scheduler goes on: the task runs again.
	if status, body := trigger(t, in, "sched", "wait"); status != 200 {
		t.Errorf("trigger after the cancel: %d %s", status, body)
	}
}

// A run of a task a reload dropped finishes on the old version, and an
// operator can still cancel it; the task's listing is gone, and a cancel
// without a run is a 404.
func TestCancelRunOfADroppedTask(t *testing.T) {
	db := sqliteConf(t)
	conf := func(defs ...def) string {
		return db + strings.Replace(plugin("sched", true, defs...), "scheduler = true\n", "scheduler = true\ndatabase = true\n", 1)
	}
	in := start(t, "one", conf(def{ID: "keep", Cron: "@yearly"}, def{ID: "wait", Cron: "@yearly", Timeout: "60s", Action: "cleanup", MS: 60000}))
	if status, body := trigger(t, in, "sched", "wait"); status != 200 {
		t.Fatalf("trigger: %d %s", status, body)
	}
	waitFor(t, 10*time.Second, "the run to begin", func() bool { return len(jsonLines(t, in, "sched", "task start")) > 0 })
	in.SetConfig(conf(def{ID: "keep", Cron: "@yearly"}))
	if res := in.Reload(t); res.Plugins["sched"].Outcome != "reloaded" {
		t.Fatalf("reload: %+v", res)
	}
	if status, body := cancelTask(t, in, "wait"); status != 202 {
		t.Fatalf("cancel of the dropped task's run: %d %s", status, body)
	}
	waitFor(t, 10*time.Second, "the run to end", func() bool { return len(ended(history(t, in, "sched", "wait"), "")) == 1 })
	if runs := history(t, in, "sched", "wait"); runs[0].Failure != "canceled" || !strings.Contains(runs[0].Error, "canceled by an operator") {
		t.Errorf("the run: %+v", runs[0])
	}
	if status, body := cancelTask(t, in, "wait"); status != 404 || !strings.Contains(body, `"unknown_task"`) {
		t.Errorf("cancel once it ended: %d %s", status, body)
	}
}

// A cancel sent right after a trigger answered finds the run, begun or
// not: the listing shows it running from the trigger's answer on, and a
// run launched but not begun yet does not begin. Only a begun run was
// looked at, so such a cancel answered 409 task_not_running now and then
// (seen in CI, TestCancelOverAdminAPI). A local task's run records its
// start in the database before it begins, which widens the window.
func TestCancelRightAfterTrigger(t *testing.T) {
	conf := strings.Replace(plugin("sched", true,
		def{ID: "wait", Cron: "@yearly", Timeout: "60s", Scope: "local", Action: "cleanup", MS: 60000}),
		"scheduler = true\n", "scheduler = true\ndatabase = true\n", 1)
	in := start(t, "one", sqliteConf(t), conf)
	const n = 10
	for i := range n {
		if status, body := trigger(t, in, "sched", "wait"); status != 200 {
			t.Fatalf("trigger %d: %d %s", i, status, body)
		}
		if status, body := cancelTask(t, in, "wait"); status != 202 {
			t.Fatalf("cancel %d, right after its trigger: %d %s", i, status, body)
		}
		// Ended in the history: the next trigger comes at once. The end
		// is recorded a moment before the replica lets the task go, and a
		// trigger in between answered 409 (seen in CI); it waits for the
		// ending run now (TestTriggerWhileARunIsEnding).
		waitFor(t, 10*time.Second, "the run to end", func() bool { return len(ended(history(t, in, "sched", "wait"), "")) == i+1 })
	}
	for _, r := range history(t, in, "sched", "wait") {
		if r.Outcome != "failed" || r.Failure != "canceled" || !strings.Contains(r.Error, "canceled by an operator (POST .../cancel)") {
			t.Errorf("run %+v; want failed, canceled by an operator", r)
		}
	}
}

// A global task's due time is claimed up to 250 ms ahead, and the listing
// shows it running from the claim; a cancel then finds the run, which
// does not begin: it is recorded canceled and its due time is done with
// (not given back for another replica to run). It answered 409
// task_not_running.
func TestCancelRunClaimedAhead(t *testing.T) {
	t.Parallel()
	conf := strings.Replace(plugin("sched", true,
		def{ID: "wait", Every: "2s", Timeout: "60s", Action: "cleanup", MS: 60000}),
		"scheduler = true\n", "scheduler = true\ndatabase = true\n", 1)
	in := start(t, "one", sqliteConf(t), conf)
	// The first due time comes at once; the next, 2 s later, is claimed
	// ahead of it.
	for i := 1; i <= 2; i++ {
		deadline := time.Now().Add(10 * time.Second)
		for st := find(list(t, in, ""), "sched", "wait"); st == nil || !st.Running; st = find(list(t, in, ""), "sched", "wait") {
			if time.Now().After(deadline) {
				t.Fatalf("run %d was never listed running", i)
			}
			time.Sleep(2 * time.Millisecond)
		}
		if status, body := cancelTask(t, in, "wait"); status != 202 {
			t.Fatalf("cancel of run %d, listed running: %d %s", i, status, body)
		}
		waitFor(t, 10*time.Second, "the run to end", func() bool { return len(ended(history(t, in, "sched", "wait"), "")) == i })
	}
	runs := ended(history(t, in, "sched", "wait"), "")
	for _, r := range runs {
		if r.Failure != "canceled" || !strings.Contains(r.Error, "canceled by an operator (POST .../cancel)") {
			t.Errorf("run %+v; want failed, canceled by an operator", r)
		}
	}
	if !strings.Contains(runs[0].Error, "before the run began") {
		t.Logf("the second run had begun when it was canceled (%s): the window was missed", runs[0].Error)
	}
}

// The 202 of a cancel of a run on this replica says when the run started
// as its history has it. It looked for the run among the task's 5 newest
// history rows: with a local task running on six replicas or more (each
// runs its own), the run of the replica asked was pushed out by the
// others' later ones, and the answer said the cancel's time. It reads the
// run's row by its run id now.
func TestCancelStartedAtWithManyReplicas(t *testing.T) {
	t.Parallel()
	conf := strings.Replace(plugin("sched", true,
		def{ID: "wait", Cron: "@yearly", Timeout: "60s", Action: "cleanup", MS: 60000, Scope: "local"}),
		"scheduler = true\n", "scheduler = true\ndatabase = true\n", 1)
	db := sqliteConf(t)
	one := start(t, "one", db, conf)
	if status, body := trigger(t, one, "sched", "wait"); status != 200 {
		t.Fatalf("trigger: %d %s", status, body)
	}
	waitFor(t, 10*time.Second, "the run to begin", func() bool { return len(jsonLines(t, one, "sched", "task start")) > 0 })
	// Five more replicas each run the task, after one's run began.
	for i := range 5 {
		o := start(t, fmt.Sprintf("r%d", i), db, conf)
		if status, body := trigger(t, o, "sched", "wait"); status != 200 {
			t.Fatalf("trigger on r%d: %d %s", i, status, body)
		}
	}
	waitFor(t, 10*time.Second, "six runs in the history", func() bool { return len(history(t, one, "sched", "wait")) >= 6 })
	status, body := cancelTask(t, one, "wait")
	startedAsInHistory(t, one, "cancel", status, 202, body)
}

// The trigger's 200 says when the run started as its history has it, read
// by the run's id: it looked among the task's 5 newest history rows too,
// which five runs begun later on other replicas (by started_at: here
// rows written so, as other replicas' runs begun between this run's row
// and the answer's read, or recorded by clocks ahead, would be) left it
// out of: the answer said the time it gave up, half a second later.
func TestTriggerStartedAtWithManyReplicas(t *testing.T) {
	t.Parallel()
	conf := strings.Replace(plugin("sched", true,
		def{ID: "wait", Cron: "@yearly", Timeout: "60s", Action: "cleanup", MS: 60000, Scope: "local"}),
		"scheduler = true\n", "scheduler = true\ndatabase = true\n", 1)
	one := start(t, "one", sqliteConf(t), conf)
	later := time.Now().Add(time.Hour).UnixMicro()
	for i := range 5 {
		if _, err := one.RT.Database().DB().ExecContext(context.Background(),
			"INSERT INTO scheduler_runs (run_id, plugin, task, replica, triggered_by, started_at, outcome) VALUES (?, 'sched', 'wait', ?, 'manual', ?, 'running')",
			fmt.Sprintf("later-%d", i), fmt.Sprintf("r%d", i), later+int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	status, body := trigger(t, one, "sched", "wait")
	startedAsInHistory(t, one, "trigger", status, 200, body)
}

// startedAsInHistory checks that the answer (status, body) to a trigger or
// cancel (what) of o's task sched/wait is want and names a run whose
// started_at is its history's.
func startedAsInHistory(t *testing.T, o *servertest.Instance, what string, status, want int, body string) {
	t.Helper()
	var run struct {
		RunID   string    `json:"run_id"`
		Started time.Time `json:"started_at"`
	}
	if status != want || json.Unmarshal([]byte(body), &run) != nil {
		t.Fatalf("%s: %d %s", what, status, body)
	}
	for _, r := range history(t, o, "sched", "wait") {
		if r.RunID == run.RunID {
			if !r.Started.Equal(run.Started) {
				t.Errorf("the %s's answer has started_at %s, the history %s", what, run.Started, r.Started)
			}
			return
		}
	}
	t.Errorf("run %s of the %s's answer is not in the history", run.RunID, what)
}
