package scheduler

import (
	"context"
	"errors"
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

// Three replicas on one PostgreSQL database run a global task due every
// second, each run lasting 150 ms, and each replica is sent a trigger of
// it every 70 ms for 5 s, racing the due times and each other. Each
// trigger runs the task or answers that it runs (ErrRunning), and no two
// runs overlap, scheduled or triggered, on any replicas.
func TestPGTriggersRacingTheScheduleNeverOverlap(t *testing.T) {
	t.Parallel()
	st := openStore(t, database.Config{Client: database.ClientPG, Connection: pgtest.URL(t), Isolation: database.IsolationRole})
	type span struct {
		replica    string
		start, end time.Time
	}
	var mu sync.Mutex
	var spans []span
	var reps []*Scheduler
	for _, name := range []string{"a", "b", "c"} {
		log := logrus.New()
		log.SetOutput(io.Discard)
		s := New(Config{Enabled: true, Log: logrus.NewEntry(log), Lease: testLease, Replica: name,
			Run: func(ctx context.Context, p string, c plugin.Call) (uint32, []byte, error) {
				c.Encode(nil, 0)
				sp := span{replica: name, start: time.Now()}
				time.Sleep(150 * time.Millisecond)
				sp.end = time.Now()
				mu.Lock()
				spans = append(spans, sp)
				mu.Unlock()
				return 0, nil, nil
			}})
		startWithTask(t, s, st, realClock{}, hostfuncs.TaskSpec{ID: "t", Every: time.Second})
		reps = append(reps, s)
	}
	var wg sync.WaitGroup
	var ran, refused int
	var cmu sync.Mutex
	end := time.Now().Add(5 * time.Second)
	for _, s := range reps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				_, err := s.Trigger(context.Background(), "p", "t")
				cmu.Lock()
				switch {
				case err == nil:
					ran++
				case errors.Is(err, ErrRunning):
					refused++
				default:
					t.Errorf("trigger on %s: %v", s.Replica(), err)
				}
				cmu.Unlock()
				time.Sleep(70 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	for _, s := range reps {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.Stop(ctx)
		cancel()
	}
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(spans, func(i, j int) bool { return spans[i].start.Before(spans[j].start) })
	for i := 1; i < len(spans); i++ {
		if spans[i].start.Before(spans[i-1].end) {
			t.Errorf("a run on %s began %s before the run on %s ended", spans[i].replica, spans[i-1].end.Sub(spans[i].start), spans[i-1].replica)
		}
	}
	if ran == 0 {
		t.Errorf("no trigger ran the task in 5 s (%d refused)", refused)
	}
	t.Logf("%d runs; %d triggers ran it, %d were refused", len(spans), ran, refused)
}
