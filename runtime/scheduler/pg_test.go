package scheduler_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx"

	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// Tests with several replicas: each replica is a runtime and server of its
// own in this process, all on one PostgreSQL database (pgtest).

// row is a scheduler_runs row, read straight from the database.
type row struct {
	runID, replica, trigger, outcome, failure, errText string
	due, started, ended                                sql.NullTime
}

// runsOf reads every recorded run of a task, oldest first.
func runsOf(t testing.TB, db *sql.DB, plugin, task string) []row {
	t.Helper()
	rows, err := db.Query(`SELECT run_id, replica, triggered_by, outcome, COALESCE(failure, ''), COALESCE(error, ''), due_at, started_at, ended_at
FROM greenroom.scheduler_runs WHERE plugin = $1 AND task = $2 ORDER BY started_at`, plugin, task)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.runID, &r.replica, &r.trigger, &r.outcome, &r.failure, &r.errText, &r.due, &r.started, &r.ended); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func openPG(t testing.TB, url string) *sql.DB {
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// replicas starts n replicas (r1, r2, ...) of the same config on the
// database at url, concurrently.
func replicas(t *testing.T, n int, url string, conf ...string) []*servertest.Instance {
	t.Helper()
	db := fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", url)
	out := make([]*servertest.Instance, n)
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = start(t, fmt.Sprintf("r%d", i+1), append([]string{db}, conf...)...)
		}()
	}
	wg.Wait()
	for _, in := range out {
		if in == nil {
			t.FailNow()
		}
	}
	return out
}

// Three replicas, global tasks every second, for about ten seconds: each
// due time ran exactly once in total (counted from the history), and no
// two runs of a task ever overlapped. "quick" ends at once, so a replica
// that claims a due time late would find the lease free again: only the
// due-time check keeps it from running that due time a second time;
// "slow" runs long enough for the others to find its lease held.
func TestPGGlobalTaskRunsOncePerDueTime(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	ins := replicas(t, 3, url, plugin("sched", true,
		def{ID: "quick", Every: "1s"},
		def{ID: "slow", Every: "1s", Action: "sleep", MS: 300}))
	db := openPG(t, url)
	waitFor(t, 40*time.Second, "ten runs of each task", func() bool {
		return len(runsOf(t, db, "sched", "quick")) >= 11 && len(runsOf(t, db, "sched", "slow")) >= 11
	})
	// Stop every replica: a run in progress ends canceled.
	for _, in := range ins {
		in.RT.StopScheduler(context.Background())
	}
	for _, task := range []string{"quick", "slow"} {
		runs := runsOf(t, db, "sched", task)
		var dues []time.Time
		byReplica := map[string]int{}
		for i, r := range runs {
			if !r.due.Valid || r.trigger != "schedule" {
				t.Fatalf("%s run %d: %+v", task, i, r)
			}
			if r.outcome != "succeeded" && r.failure != "canceled" {
				t.Errorf("%s run %d: %s %s %s", task, i, r.outcome, r.failure, r.errText)
			}
			dues = append(dues, r.due.Time)
			byReplica[r.replica]++
			if i > 0 && r.started.Time.Before(runs[i-1].ended.Time) {
				t.Errorf("%s run %d started at %s before run %d ended at %s (replicas %s, %s)", task, i, r.started.Time, i-1, runs[i-1].ended.Time, r.replica, runs[i-1].replica)
			}
		}
		slices.SortFunc(dues, func(a, b time.Time) int { return a.Compare(b) })
		for i := 1; i < len(dues); i++ {
			if gap := dues[i].Sub(dues[i-1]); gap != time.Second {
				t.Errorf("%s: due times %d and %d are %s apart, want 1s: a due time ran twice or not at all", task, i-1, i, gap)
			}
		}
		t.Logf("%s: %d runs, by replica: %v", task, len(runs), byReplica)
	}
}

// Replicas that disagree on a task's scope (a rollout that makes it local
// reaches one replica first) run no global due time twice: the local
// registration clears the row's next due time, and the global replica,
// registering it again, proposed its first due time, long past and run
// already, and ran it again (an audit's: three runs of one due time).
func TestPGScopeDisagreementRunsNoDueTimeTwice(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	conf := fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", url)
	global := start(t, "r1", conf, plugin("sched", true, def{ID: "flip", Every: "1s"}))
	db := openPG(t, url)
	waitFor(t, 30*time.Second, "three runs on the global replica", func() bool { return len(runsOf(t, db, "sched", "flip")) >= 3 })
	local := start(t, "r2", conf, plugin("sched", true, def{ID: "flip", Every: "1s", Scope: "local"}))
	time.Sleep(3 * time.Second)
	local.RT.StopScheduler(context.Background())
	global.RT.StopScheduler(context.Background())
	seen := map[time.Time]string{}
	for _, r := range runsOf(t, db, "sched", "flip") {
		if r.replica != global.RT.Scheduler().Replica() {
			continue
		}
		if prev, ok := seen[r.due.Time]; ok {
			t.Errorf("due time %s ran twice on the global replica: runs %s and %s", r.due.Time, prev, r.runID)
		}
		seen[r.due.Time] = r.runID
	}
	if !strings.Contains(global.Log.String(), "registers this global task as local") {
		t.Errorf("the disagreement is not logged:\n%s", global.Log.String())
	}
}

// The replica holding a task's lease stops abruptly mid-run (no lease
// released, nothing recorded): once the lease expires another replica runs
// the task, and the dead replica's run is recorded as lost.
func TestPGLeaseTakeoverWhenReplicaDies(t *testing.T) {
	t.Parallel()
	// every: a due time passes while the run holds the lease (1s), or
	// none does (1h): the takeover then runs the dead run's own due time.
	for _, every := range []string{"1s", "1h"} {
		t.Run("every "+every, func(t *testing.T) { testPGLeaseTakeover(t, every) })
	}
}

func testPGLeaseTakeover(t *testing.T, every string) {
	url := pgtest.URL(t)
	ins := replicas(t, 3, url, schedConf("3s"),
		plugin("sched", true, def{ID: "slow", Every: every, Timeout: "30s", Action: "sleep", MS: 8000}))
	db := openPG(t, url)
	var first row
	waitFor(t, 30*time.Second, "a run in progress", func() bool {
		for _, r := range runsOf(t, db, "sched", "slow") {
			if r.outcome == "running" {
				first = r
				return true
			}
		}
		return false
	})
	var dead *servertest.Instance
	for _, in := range ins {
		if in.RT.Scheduler().Replica() == first.replica {
			dead = in
		}
	}
	time.Sleep(500 * time.Millisecond) // let it renew once or not: either way the lease is live
	dead.RT.Scheduler().Abandon()
	// The dead replica renews no more: its lease ends at lease_until.
	var owner string
	var until time.Time
	if err := db.QueryRow("SELECT lease_owner, lease_until FROM greenroom.scheduler_tasks WHERE plugin = 'sched' AND task = 'slow'").Scan(&owner, &until); err != nil {
		t.Fatal(err)
	}
	if owner != first.replica {
		t.Fatalf("lease owner %s right after %s died", owner, first.replica)
	}

	var next row
	waitFor(t, 30*time.Second, "another replica to run the task", func() bool {
		for _, r := range runsOf(t, db, "sched", "slow") {
			if r.runID != first.runID && r.replica != first.replica {
				next = r
				return true
			}
		}
		return false
	})
	// Both times come from the database's clock.
	if next.started.Time.Before(until) {
		t.Errorf("replica %s took the task at %s, before the dead replica's lease expired at %s", next.replica, next.started.Time, until)
	}
	// No run started between the first run's start and the takeover.
	for _, r := range runsOf(t, db, "sched", "slow") {
		if r.runID != first.runID && r.started.Time.Before(next.started.Time) {
			t.Errorf("run %s by %s started at %s, while %s held the lease", r.runID, r.replica, r.started.Time, first.replica)
		}
		if r.runID == first.runID && (r.outcome != "failed" || r.failure != "lost") {
			t.Errorf("the dead replica's run is %s/%s, want failed/lost", r.outcome, r.failure)
		}
	}
	// The due time the dead replica's run never finished is the one run.
	if !next.due.Valid || !first.due.Valid || !next.due.Time.Equal(first.due.Time) {
		t.Errorf("the run that took over is of due time %v, the dead replica's run's was %v", next.due, first.due)
	}
}

// The replica running a triggered run stops abruptly: another replica
// runs the task again once the lease has expired, as it runs a due time
// whose run was lost (above), though the task is not due (@yearly).
func TestPGTriggeredRunTakenOverWhenReplicaDies(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	ins := replicas(t, 3, url, schedConf("3s"),
		plugin("sched", true, def{ID: "slow", Cron: "@yearly", Timeout: "30s", Action: "sleep", MS: 8000}))
	db := openPG(t, url)
	if status, body := trigger(t, ins[1], "sched", "slow"); status != 200 {
		t.Fatalf("trigger: %d %s", status, body)
	}
	first := runsOf(t, db, "sched", "slow")
	if len(first) != 1 || first[0].replica != ins[1].RT.Scheduler().Replica() || first[0].outcome != "running" {
		t.Fatalf("runs after the trigger: %+v", first)
	}
	time.Sleep(500 * time.Millisecond)
	ins[1].RT.Scheduler().Abandon()
	var until time.Time
	if err := db.QueryRow("SELECT lease_until FROM greenroom.scheduler_tasks WHERE plugin = 'sched' AND task = 'slow'").Scan(&until); err != nil {
		t.Fatal(err)
	}
	var next row
	waitFor(t, 30*time.Second, "another replica to run the task again", func() bool {
		for _, r := range runsOf(t, db, "sched", "slow") {
			if r.runID != first[0].runID {
				next = r
				return true
			}
		}
		return false
	})
	if next.replica == first[0].replica || next.trigger != "manual" {
		t.Errorf("the run that took over: %+v", next)
	}
	if next.started.Time.Before(until) {
		t.Errorf("replica %s took the task at %s, before the dead replica's lease expired at %s", next.replica, next.started.Time, until)
	}
	time.Sleep(2 * time.Second) // no third run: the lease is held again
	runs := runsOf(t, db, "sched", "slow")
	if len(runs) != 2 {
		t.Fatalf("%d runs, want the lost one and the one that took over: %+v", len(runs), runs)
	}
	if r := runs[0]; r.outcome != "failed" || r.failure != "lost" {
		t.Errorf("the dead replica's run is %s/%s, want failed/lost", r.outcome, r.failure)
	}
}

// A run that lasts longer than the lease keeps it (the replica renews it):
// no other replica runs the task meanwhile, and the run is not lost.
func TestPGLongRunRenewsLease(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	replicas(t, 2, url, schedConf("2s"),
		plugin("sched", true, def{ID: "long", Every: "1s", Timeout: "30s", Action: "sleep", MS: 3000}))
	db := openPG(t, url)
	var runs []row
	waitFor(t, 40*time.Second, "two runs to end", func() bool {
		runs = runsOf(t, db, "sched", "long")
		return len(runs) >= 2 && runs[1].outcome != "running"
	})
	for i, r := range runs[:2] {
		t.Logf("run %d on %s: %s to %s", i, r.replica, r.started.Time.Format("15:04:05.000"), r.ended.Time.Format("15:04:05.000"))
		if r.outcome != "succeeded" {
			t.Errorf("run %d: %s %s %s", i, r.outcome, r.failure, r.errText)
		}
		if d := r.ended.Time.Sub(r.started.Time); d < 3000*time.Millisecond {
			t.Errorf("run %d lasted %s", i, d)
		}
	}
	if runs[1].started.Time.Before(runs[0].ended.Time) {
		t.Errorf("run 1 (%s) started at %s, before run 0 (%s) ended at %s", runs[1].replica, runs[1].started.Time, runs[0].replica, runs[0].ended.Time)
	}
}

// A local task runs on each of the three replicas.
func TestPGLocalTaskRunsOnEveryReplica(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	replicas(t, 3, url, plugin("sched", true, def{ID: "here", Every: "1s", Scope: "local"}))
	db := openPG(t, url)
	waitFor(t, 30*time.Second, "two runs on each replica", func() bool {
		n := map[string]int{}
		for _, r := range runsOf(t, db, "sched", "here") {
			if r.outcome == "succeeded" {
				n[r.replica]++
			}
		}
		return n["r1"] >= 2 && n["r2"] >= 2 && n["r3"] >= 2
	})
}

// Trigger runs a task now; a second trigger while it runs gets 409, on
// the replica running it and on another one.
func TestPGTriggerConflict(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	ins := replicas(t, 2, url, plugin("sched", true,
		def{ID: "yearly", Cron: "0 0 1 1 *", Action: "sleep", MS: 3000},
		def{ID: "here", Cron: "0 0 1 1 *", Scope: "local", Action: "sleep", MS: 3000}))
	a, b := ins[0], ins[1]

	status, body := trigger(t, a, "sched", "yearly")
	if status != http.StatusOK || !strings.Contains(body, `"run_id"`) {
		t.Fatalf("trigger: %d %s", status, body)
	}
	if status, body := trigger(t, a, "sched", "yearly"); status != http.StatusConflict || !strings.Contains(body, "task_running") {
		t.Errorf("second trigger on the same replica: %d %s", status, body)
	}
	if status, body := trigger(t, b, "sched", "yearly"); status != http.StatusConflict || !strings.Contains(body, "r1") {
		t.Errorf("second trigger on another replica: %d %s, want 409 naming r1", status, body)
	}
	if st := find(list(t, b, ""), "sched", "yearly"); st == nil || !st.Running || st.RunningOn != "r1" {
		t.Errorf("listed on r2 while it runs on r1: %+v", st)
	}
	// A local task runs on each replica independently.
	if status, body := trigger(t, a, "sched", "here"); status != http.StatusOK {
		t.Errorf("trigger local on r1: %d %s", status, body)
	}
	if status, body := trigger(t, b, "sched", "here"); status != http.StatusOK {
		t.Errorf("trigger local on r2: %d %s", status, body)
	}
	if status, _ := trigger(t, b, "sched", "here"); status != http.StatusConflict {
		t.Errorf("trigger local on r2 again: %d", status)
	}
	waitFor(t, 20*time.Second, "the triggered run to end", func() bool {
		st := find(list(t, a, ""), "sched", "yearly")
		return st != nil && !st.Running && st.LastOutcome == "succeeded"
	})
	if status, body := trigger(t, b, "sched", "yearly"); status != http.StatusOK {
		t.Errorf("trigger after the run ended: %d %s", status, body)
	}
	for _, path := range []string{"sched/nope", "nope/yearly", "sched/..", "sched/a%20b"} {
		if status, body := trigger(t, a, strings.Split(path, "/")[0], strings.Split(path, "/")[1]); status != http.StatusNotFound {
			t.Errorf("trigger %s: %d %s, want 404", path, status, body)
		}
	}
	runs := history(t, a, "sched", "yearly")
	if len(runs) != 2 || runs[0].Trigger != "manual" || runs[1].Trigger != "manual" || runs[1].Replica != "r1" || runs[0].Replica != "r2" {
		t.Errorf("history: %+v", runs)
	}
}

// A graceful stop cancels the run in progress, records it and releases
// its lease: another replica runs the task at once, long before the lease
// would have expired.
func TestPGGracefulStopReleasesLease(t *testing.T) {
	url := pgtest.URL(t)
	ins := replicas(t, 2, url, schedConf("60s"),
		plugin("sched", true, def{ID: "slow", Every: "1s", Timeout: "30s", Action: "sleep", MS: 20000}))
	db := openPG(t, url)
	var first row
	waitFor(t, 30*time.Second, "a run in progress", func() bool {
		for _, r := range runsOf(t, db, "sched", "slow") {
			if r.outcome == "running" {
				first = r
				return true
			}
		}
		return false
	})
	for _, in := range ins {
		if in.RT.Scheduler().Replica() == first.replica {
			if err := in.RT.StopScheduler(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	stopped := time.Now()
	var next row
	waitFor(t, 20*time.Second, "the other replica to take the task", func() bool {
		for _, r := range runsOf(t, db, "sched", "slow") {
			if r.replica != first.replica {
				next = r
				return true
			}
		}
		return false
	})
	if d := next.started.Time.Sub(stopped); d > 10*time.Second {
		t.Errorf("took %s after a graceful stop; the lease was not released", d)
	}
	for _, r := range runsOf(t, db, "sched", "slow") {
		if r.runID == first.runID && (r.outcome != "failed" || r.failure != "canceled") {
			t.Errorf("the stopped replica's run: %+v", r)
		}
	}
}

// A cancel sent to a replica that does not run the global task's run (an
// operator behind a load balancer cannot pick the replica) is recorded in
// the database for that run: 202, naming the replica running it, which
// cancels it when it reads the request (within half a second:
// TestPGCancelThroughAnotherReplicaBeforeTheNextRenewal), and it is
// recorded canceled by an operator. It hits only the run it meant: not another task's run on the
// same replica, not a later run of the task, and not a run that ended
// before the cancel came (?run_id= names an ended run: 409
// task_not_running). A replica with enabled = false relays a cancel too.
// Until 2026-12-06 such a cancel answered 409 task_running_elsewhere,
// naming the replica to send it to.
func TestPGCancelFromAnyReplica(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	conf := plugin("sched", true,
		def{ID: "long", Cron: "@yearly", Timeout: "60s", Action: "sleep", MS: 30000},
		def{ID: "other", Cron: "@yearly", Timeout: "60s", Action: "sleep", MS: 30000})
	// r3 runs no tasks.
	var disabled *servertest.Instance
	started := make(chan struct{})
	go func() {
		defer close(started)
		disabled = start(t, "r3", fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", url), conf, "[scheduler]\nenabled = false\nlease = \"3s\"\n")
	}()
	ins := replicas(t, 2, url, conf, schedConf("3s"))
	if <-started; disabled == nil {
		t.FailNow()
	}
	db := openPG(t, url)
	triggered := func(id string) string {
		t.Helper()
		status, body := trigger(t, ins[0], "sched", id)
		var run struct {
			RunID string `json:"run_id"`
		}
		if status != 200 || json.Unmarshal([]byte(body), &run) != nil {
			t.Fatalf("trigger %s on r1: %d %s", id, status, body)
		}
		return run.RunID
	}
	cancel := func(in *servertest.Instance, query string) (int, string) {
		t.Helper()
		status, _, body := in.Do(t, "POST", "/.greenroom/scheduler/v1/tasks/sched/long/cancel"+query, nil)
		return status, body
	}
	outcome := func(task, runID string) row {
		t.Helper()
		for _, r := range runsOf(t, db, "sched", task) {
			if r.runID == runID {
				return r
			}
		}
		t.Fatalf("no run %s of %s", runID, task)
		return row{}
	}
	first, other := triggered("long"), triggered("other")
	status, body := cancel(ins[1], "")
	var answer struct {
		RunID   string `json:"run_id"`
		Replica string `json:"replica"`
		Cancel  string `json:"cancel"`
	}
	if status != 202 || json.Unmarshal([]byte(body), &answer) != nil || answer.RunID != first || answer.Replica != "r1" || answer.Cancel != "requested" {
		t.Fatalf("cancel on r2: %d %s", status, body)
	}
	waitFor(t, 10*time.Second, "the run to end", func() bool { return outcome("long", first).outcome != "running" })
	if r := outcome("long", first); r.failure != "canceled" || !strings.Contains(r.errText, "canceled by an operator") {
		t.Errorf("the canceled run: %+v", r)
	}
	// A later run of the task: neither that cancel nor one naming the
	// run that ended touches it, over several renewals.
	second := triggered("long")
	if status, body := cancel(ins[1], "?run_id="+first); status != 409 || !strings.Contains(body, `"task_not_running"`) {
		t.Errorf("cancel of the ended run: %d %s", status, body)
	}
	time.Sleep(3 * time.Second)
	if r, o := outcome("long", second), outcome("other", other); r.outcome != "running" || o.outcome != "running" {
		t.Fatalf("after the cancel of another run: %+v, the other task's %+v", r, o)
	}
	// A replica that runs no tasks relays the cancel as well.
	if status, body := cancel(disabled, "?run_id="+second); status != 202 || !strings.Contains(body, `"requested"`) {
		t.Fatalf("cancel on a disabled replica: %d %s", status, body)
	}
	waitFor(t, 10*time.Second, "the second run to end", func() bool { return outcome("long", second).outcome != "running" })
	if r, o := outcome("long", second), outcome("other", other); r.failure != "canceled" || o.outcome != "running" {
		t.Errorf("the second run %+v, the other task's %+v", r, o)
	}
	if status, body := cancel(ins[1], ""); status != 409 || !strings.Contains(body, `"task_not_running"`) {
		t.Errorf("cancel with no run in progress: %d %s", status, body)
	}
}
