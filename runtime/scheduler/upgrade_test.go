package scheduler

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
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
		var db *sql.DB
		switch x := st.(type) {
		case *pgStore:
			db = x.db
		case *sqliteStore:
			db = x.db
		}
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
