package scheduler

import (
	"context"
	"encoding/binary"
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
	var runs spanLog
	var reps []*Scheduler
	for _, name := range []string{"a", "b", "c"} {
		s := runs.replica(name, 150*time.Millisecond)
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
	spans := runs.sorted()
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

// runSpan is a run of a test's replica (spanLog): the replica, the due
// time it ran (zero for a trigger's) and when it began and ended.
type runSpan struct {
	replica         string
	due, start, end time.Time
}

// spanLog records the runs of the replicas it makes.
type spanLog struct {
	mu    sync.Mutex
	spans []runSpan
}

// replica returns a replica named name whose runs last d and are
// recorded.
func (l *spanLog) replica(name string, d time.Duration) *Scheduler {
	log := logrus.New()
	log.SetOutput(io.Discard)
	return New(Config{Enabled: true, Log: logrus.NewEntry(log), Lease: testLease, Replica: name,
		Run: func(ctx context.Context, p string, c plugin.Call) (uint32, []byte, error) {
			sp := runSpan{replica: name, start: time.Now()}
			enc := c.Encode(nil, 0) // ... u64 due_ns, u8 flags
			sp.due = time.Unix(0, int64(binary.LittleEndian.Uint64(enc[len(enc)-9:])))
			time.Sleep(d)
			sp.end = time.Now()
			l.mu.Lock()
			l.spans = append(l.spans, sp)
			l.mu.Unlock()
			return 0, nil, nil
		}})
}

// sorted returns the runs recorded so far, by when they began.
func (l *spanLog) sorted() []runSpan {
	l.mu.Lock()
	defer l.mu.Unlock()
	spans := append([]runSpan(nil), l.spans...)
	sort.Slice(spans, func(i, j int) bool { return spans[i].start.Before(spans[j].start) })
	return spans
}
