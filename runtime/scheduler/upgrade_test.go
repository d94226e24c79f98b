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
