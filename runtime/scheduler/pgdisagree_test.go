package scheduler

import (
	"context"
	"encoding/binary"
	"io"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
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
	type span struct {
		replica    string
		due        time.Time
		start, end time.Time
	}
	var mu sync.Mutex
	var spans []span
	var reps []*Scheduler
	for _, r := range []struct {
		name string
		spec hostfuncs.TaskSpec
	}{
		{"one", hostfuncs.TaskSpec{ID: "t", Every: time.Second}},
		{"three", hostfuncs.TaskSpec{ID: "t", Every: 3 * time.Second}},
		{"two", hostfuncs.TaskSpec{ID: "t", Every: 2 * time.Second, InitialDelay: time.Second}},
	} {
		log := logrus.New()
		log.SetOutput(io.Discard)
		s := New(Config{Enabled: true, Log: logrus.NewEntry(log), Lease: testLease, Replica: r.name,
			Run: func(ctx context.Context, p string, c plugin.Call) (uint32, []byte, error) {
				sp := span{replica: r.name, start: time.Now()}
				enc := c.Encode(nil, 0) // ... u64 due_ns, u8 flags
				sp.due = time.Unix(0, int64(binary.LittleEndian.Uint64(enc[len(enc)-9:])))
				time.Sleep(300 * time.Millisecond)
				sp.end = time.Now()
				mu.Lock()
				spans = append(spans, sp)
				mu.Unlock()
				return 0, nil, nil
			}})
		startWithTask(t, s, st, realClock{}, r.spec)
		reps = append(reps, s)
	}
	time.Sleep(8 * time.Second)
	for _, s := range reps {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.Stop(ctx)
		cancel()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(spans) < 3 {
		t.Fatalf("%d runs in 8 s: %+v", len(spans), spans)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start.Before(spans[j].start) })
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
