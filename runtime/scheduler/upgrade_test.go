package scheduler

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

// During a rolling upgrade a replica from before cancel requests
// (runtime migration 20261206000001) runs a global task: it never reads
// cancel_requested_at. A cancel sent through a newer replica was recorded
// and answered 202 "requested", and the run went on to its end. Its row,
// written by that replica, lacks reads_cancel (20261207000001): the cancel
// is refused, a RunningError naming the replica and saying why, and
// nothing is recorded; the run of a replica that reads them is asked as
// before.
func TestCancelOfAnOlderReplicasRunIsRefused(t *testing.T) {
	eachStore(t, func(t *testing.T, st store) {
		ctx := context.Background()
		const lease = time.Minute
		_, due := registerDueTask(t, st)
		db := storeDB(t, st)
		if res, err := st.claim(ctx, "old", lease, []claimItem{{plugin: "p", task: "t", due: due, runID: "run1"}}); err != nil || !res[0].claimed {
			t.Fatalf("claim: %+v %v", res, err)
		}
		// The row as an older replica's claim writes it.
		if _, err := db.ExecContext(ctx, "UPDATE scheduler_runs SET reads_cancel = NULL WHERE run_id = 'run1'"); err != nil {
			t.Fatal(err)
		}
		log := logrus.New()
		log.SetOutput(io.Discard)
		s := New(Config{Enabled: true, Log: logrus.NewEntry(log), Lease: lease, Replica: "new"})
		s.st = st
		_, err := s.requestCancel(ctx, "p", "t", "")
		var running *RunningError
		if !errors.As(err, &running) || running.Replica != "old" || !strings.Contains(err.Error(), "would never read this one") {
			t.Fatalf("cancel of an older replica's run: %v, want a RunningError naming replica old and saying it would never read the cancel", err)
		}
		if held, err := st.renew(ctx, "old", lease, []string{"run1"}); err != nil {
			t.Fatalf("renew: %v %v", held, err)
		} else if held["run1"] {
			t.Errorf("the refused cancel was recorded for run1")
		}
		var requested sql.NullString
		if err := db.QueryRowContext(ctx, "SELECT CAST(cancel_requested_at AS TEXT) FROM scheduler_runs WHERE run_id = 'run1'").Scan(&requested); err != nil || requested.Valid {
			t.Errorf("cancel_requested_at of run1: %v %v, want NULL", requested, err)
		}
		// The same run, its row as this version writes it: asked.
		if _, err := db.ExecContext(ctx, "UPDATE scheduler_runs SET reads_cancel = true WHERE run_id = 'run1'"); err != nil {
			t.Fatal(err)
		}
		if run, err := s.requestCancel(ctx, "p", "t", ""); err != nil || run.RunID != "run1" || run.Replica != "old" {
			t.Fatalf("cancel of a run whose replica reads them: %+v %v", run, err)
		}
		if held, err := st.renew(ctx, "old", lease, []string{"run1"}); err != nil || !held["run1"] {
			t.Errorf("renew after the cancel: %v %v, want the cancel read", held, err)
		}
	})
}

// During a rolling upgrade a new version of a plugin no longer registers
// a global task that replicas still on the old version run. An operator
// behind a load balancer sends the cancel of that task's run to any
// replica: one on the new version (which lists the task and its running
// run, GET tasks/{plugin}/{task}) answered 404 unknown_task, as the task
// is not registered there, so the run could be stopped only by reaching
// a replica still on the old version. The cancel is relayed through the
// database, as for a registered task's run on another replica, by an
// enabled replica and by one with enabled = false; a task that no
// replica runs, registered here or not, is still ErrUnknownTask.
func TestCancelOfATaskNotRegisteredHereRunningElsewhere(t *testing.T) {
	eachStore(t, func(t *testing.T, st store) {
		ctx := context.Background()
		const lease = time.Minute
		_, due := registerDueTask(t, st)
		log := logrus.New()
		log.SetOutput(io.Discard)
		for _, enabled := range []bool{true, false} {
			s := New(Config{Enabled: enabled, Log: logrus.NewEntry(log), Lease: lease, Replica: "new"})
			s.st = st
			s.Start()
			if _, err := s.Cancel(ctx, "p", "t"); !errors.Is(err, ErrUnknownTask) {
				t.Errorf("enabled=%v: cancel of a task no replica runs: %v, want ErrUnknownTask", enabled, err)
			}
			s.Stop(ctx)
		}
		if res, err := st.claim(ctx, "old", lease, []claimItem{{plugin: "p", task: "t", due: due, runID: "run1"}}); err != nil || !res[0].claimed {
			t.Fatalf("claim: %+v %v", res, err)
		}
		for _, enabled := range []bool{true, false} {
			s := New(Config{Enabled: enabled, Log: logrus.NewEntry(log), Lease: lease, Replica: "new"})
			s.st = st
			s.Start()
			run, err := s.Cancel(ctx, "p", "t")
			if err != nil || run.RunID != "run1" || run.Replica != "old" {
				t.Errorf("enabled=%v: cancel of run1, on replica old, of a task not registered here: %+v %v, want it requested", enabled, run, err)
			}
			if _, err := s.Cancel(ctx, "p", "other"); !errors.Is(err, ErrUnknownTask) {
				t.Errorf("enabled=%v: cancel of a task nobody knows: %v, want ErrUnknownTask", enabled, err)
			}
			s.Stop(ctx)
		}
		if held, err := st.renew(ctx, "old", lease, []string{"run1"}); err != nil || !held["run1"] {
			t.Errorf("renew after the cancel: %v %v, want the cancel read", held, err)
		}
	})
}

// A task that sets no timeout runs under its plugin's limits.timeout,
// which may come from the environment (a secret: the admin API shows it
// [REDACTED] for a task registered on this replica). GET tasks?all=true
// lists too the tasks that no plugin registers here, their timeout read
// from scheduler_tasks, which another replica (or an older version)
// wrote: it was shown, "2s" for the secret 2000ms. The row says which
// timeout its replica may show (timeout_shown_ms, runtime migration
// 20261207000002); one it does not match is [REDACTED]: a secret one, a
// row written before that migration or inserted by an older replica
// (NULL), and one whose timeout an older replica's registration rewrote
// since a newer one wrote it.
func TestTaskTimeoutFromTheEnvironmentNotToldByOtherReplicas(t *testing.T) {
	eachStore(t, func(t *testing.T, st store) {
		ctx := context.Background()
		db := storeDB(t, st)
		secret, err := NewTask("p", hostfuncs.TaskSpec{ID: "secret", Every: time.Minute}, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		secret.TimeoutSecret = true
		own, err := NewTask("p", hostfuncs.TaskSpec{ID: "own", Every: time.Minute, Timeout: 3 * time.Second}, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		old, err := NewTask("p", hostfuncs.TaskSpec{ID: "old", Every: time.Minute}, 4*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		rewritten, err := NewTask("p", hostfuncs.TaskSpec{ID: "rewritten", Every: time.Minute}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		next := trunc(time.Now().Add(time.Minute))
		if _, err := st.register(ctx, []registration{{task: &own, next: next}, {task: &old, next: next}, {task: &rewritten, next: next}, {task: &secret, next: next}}); err != nil {
			t.Fatalf("register: %v", err)
		}
		log := logrus.New()
		log.SetOutput(io.Discard)
		s := New(Config{Enabled: true, Log: logrus.NewEntry(log), Replica: "other"})
		s.st = st
		timeouts := func() map[string]string {
			t.Helper()
			list, err := s.Tasks(ctx, true)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, ts := range list {
				if ts.Registered {
					t.Errorf("task %s listed as registered here", ts.ID)
				}
				got[ts.ID] = ts.Timeout
			}
			return got
		}
		want := map[string]string{"secret": "[REDACTED]", "own": "3s", "old": "4s", "rewritten": "5s"}
		if got := timeouts(); !maps.Equal(got, want) {
			t.Fatalf("timeouts of the tasks registered elsewhere: %v, want %v", got, want)
		}
		// "old" as an older replica inserts it (the column left NULL),
		// "rewritten" as an older replica's registration updates it with
		// the 6s of a limits.timeout from its environment.
		if _, err := db.ExecContext(ctx, "UPDATE scheduler_tasks SET timeout_shown_ms = NULL WHERE task = 'old'"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "UPDATE scheduler_tasks SET timeout_ms = 6000 WHERE task = 'rewritten'"); err != nil {
			t.Fatal(err)
		}
		want["old"], want["rewritten"] = "[REDACTED]", "[REDACTED]"
		if got := timeouts(); !maps.Equal(got, want) {
			t.Errorf("timeouts after an older replica's registrations: %v, want %v", got, want)
		}
		// Registered again by a replica that may show them: shown.
		secret.TimeoutSecret = false
		if _, err := st.register(ctx, []registration{{task: &secret, next: next}, {task: &rewritten, next: next}, {task: &old, next: next}}); err != nil {
			t.Fatalf("register: %v", err)
		}
		want["secret"], want["rewritten"], want["old"] = "2s", "5s", "4s"
		if got := timeouts(); !maps.Equal(got, want) {
			t.Errorf("timeouts after registrations that may show them: %v, want %v", got, want)
		}
	})
}

// A reload whose config makes the plugin's limits.timeout come from the
// environment, with the value it had, registers the same task (the
// timeout of one that sets none is that value): SetTasks kept the
// registration it had, told as not secret, and the admin API showed its
// timeout, on this replica and, from its row, on others. The same
// registration is kept (no reschedule), told secret, and its row written
// again; and back.
func TestReloadThatMakesTheTaskTimeoutSecretHidesIt(t *testing.T) {
	eachStore(t, func(t *testing.T, st store) {
		ctx := context.Background()
		log := logrus.New()
		log.SetOutput(io.Discard)
		task, err := NewTask("p", hostfuncs.TaskSpec{ID: "t", Cron: "@yearly"}, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		s := New(Config{Enabled: true, Log: logrus.NewEntry(log), Lease: time.Minute, Replica: "a"})
		s.st = st
		s.SetTasks("p", []Task{task})
		s.Start()
		defer s.Stop(ctx)
		other := New(Config{Enabled: true, Log: logrus.NewEntry(log), Replica: "b"})
		other.st = st
		told := func(s *Scheduler, all bool) string {
			t.Helper()
			list, err := s.Tasks(ctx, all)
			if err != nil || len(list) > 1 || len(list) == 0 && !all {
				t.Fatalf("tasks on %s: %+v %v", s.Replica(), list, err)
			}
			if len(list) == 0 {
				return "" // not in the database yet
			}
			return list[0].Timeout
		}
		for _, secret := range []bool{false, true, false} {
			want := "2s"
			if secret {
				want = "[REDACTED]"
			}
			task.TimeoutSecret = secret
			s.SetTasks("p", []Task{task})
			if got := told(s, false); got != want {
				t.Errorf("secret %v: the timeout on the replica registering it: %s, want %s", secret, got, want)
			}
			deadline := time.Now().Add(30 * time.Second)
			for told(other, true) != want {
				if time.Now().After(deadline) {
					t.Fatalf("secret %v: the timeout on another replica: %s, want %s", secret, told(other, true), want)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})
}

// storeDB is the database under st, for a test that writes rows as
// another replica (or an older version) would.
func storeDB(t *testing.T, st store) *sql.DB {
	t.Helper()
	switch x := st.(type) {
	case *pgStore:
		return x.db
	case *sqliteStore:
		return x.db
	}
	t.Fatalf("store %T", st)
	return nil
}
