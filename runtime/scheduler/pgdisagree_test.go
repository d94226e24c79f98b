package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
)

// Three replicas on one PostgreSQL database register one global task with
// three schedules (every 1s, every 3s, and every 2s after an initial
// delay of 1s: a config change that has reached some replicas and not
// others), each run lasting 300 ms. Runs follow one schedule or another,
// as docs/scheduler.md says; but no due time runs twice, and no two runs
// overlap.
func TestPGScheduleDisagreementRunsNoDueTimeTwice(t *testing.T) {
	t.Parallel()
	st := openStore(t, database.Config{Client: database.ClientPG, Connection: pgtest.URL(t), Isolation: database.IsolationRole})
	var runs spanLog
	var reps []*Scheduler
	for _, r := range []struct {
		name string
		spec hostfuncs.TaskSpec
	}{
		{"one", hostfuncs.TaskSpec{ID: "t", Every: time.Second}},
		{"three", hostfuncs.TaskSpec{ID: "t", Every: 3 * time.Second}},
		{"two", hostfuncs.TaskSpec{ID: "t", Every: 2 * time.Second, InitialDelay: time.Second}},
	} {
		s := runs.replica(r.name, 300*time.Millisecond)
		startWithTask(t, s, st, realClock{}, r.spec)
		reps = append(reps, s)
	}
	time.Sleep(8 * time.Second)
	for _, s := range reps {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.Stop(ctx)
		cancel()
	}
	spans := runs.sorted()
	if len(spans) < 3 {
		t.Fatalf("%d runs in 8 s: %+v", len(spans), spans)
	}
	seen := map[time.Time]string{}
	for i, sp := range spans {
		if other, ok := seen[sp.due]; ok {
			t.Errorf("due time %s ran twice, on %s and %s", sp.due.UTC(), other, sp.replica)
		}
		seen[sp.due] = sp.replica
		if i > 0 && sp.start.Before(spans[i-1].end) {
			t.Errorf("run on %s (due %s) began before the run on %s (due %s) ended", sp.replica, sp.due.UTC(), spans[i-1].replica, spans[i-1].due.UTC())
		}
		t.Logf("%s ran due time %s", sp.replica, sp.due.UTC().Format("15:04:05.000000"))
	}
}
