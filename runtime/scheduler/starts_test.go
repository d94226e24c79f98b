package scheduler

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/database"
)

// gatedStarts is a store whose first start waits for gate, and which
// counts the start statements it is sent.
type gatedStarts struct {
	store
	gate  chan struct{}
	calls atomic.Int32
}

func (g *gatedStarts) start(ctx context.Context, replica string, sts []localStart) error {
	if g.calls.Add(1) == 1 {
		<-g.gate
	}
	return g.store.start(ctx, replica, sts)
}

// Local runs that start while a start is being written are written
// together, in one transaction, not one statement each: under a flood
// of 1000 tasks on SQLite a local task's run began up to 2.7 s late,
// waiting for its row behind the others'.
func TestLocalStartsBatched(t *testing.T) {
	g := &gatedStarts{store: openStore(t, database.Config{Client: database.ClientSQLite, Connection: t.TempDir()}), gate: make(chan struct{})}
	s := New(Config{Log: quietLog()})
	s.st = g
	ctx := context.Background()
	const n = 200
	start := func(i int) error {
		return s.recordStart(ctx, localStart{runID: fmt.Sprintf("run%03d", i), plugin: "p", task: "l", due: time.Now(), timeout: time.Second})
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	wg.Go(func() { errs <- start(0) })
	waitUntil(t, "the first start's write", func() bool { return g.calls.Load() == 1 })
	for i := 1; i < n; i++ {
		wg.Go(func() { errs <- start(i) })
	}
	waitUntil(t, "the other starts queued", func() bool {
		s.starts.mu.Lock()
		defer s.starts.mu.Unlock()
		return len(s.starts.pending) == n-1
	})
	close(g.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if c := g.calls.Load(); c != 2 {
		t.Errorf("%d start statements for %d runs, want 2 (the first, then the rest together)", c, n)
	}
	runs, err := g.store.runs(ctx, "p", "l", 2*n)
	if err != nil || len(runs) != n {
		t.Fatalf("%d runs recorded (%v), want %d", len(runs), err, n)
	}
	waitUntil(t, "the goroutine writing starts to end with the queue", func() bool {
		s.starts.mu.Lock()
		defer s.starts.mu.Unlock()
		return !s.starts.draining
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("timed out waiting for %s", what)
			return
		}
	}
}

// A batch of starts writes every run's row, scheduled (with its due
// time) and manual (without) alike, on both databases.
func TestStoreStartBatch(t *testing.T) {
	eachStore(t, func(t *testing.T, st store) {
		ctx := context.Background()
		due := time.Now().UTC().Truncate(time.Second)
		sts := []localStart{
			{runID: "s1", plugin: "p", task: "l", due: due, timeout: time.Second},
			{runID: "m1", plugin: "p", task: "l", manual: true, timeout: 2 * time.Second},
			{runID: "s2", plugin: "q", task: "l", due: due.Add(time.Second), timeout: time.Second},
		}
		if err := st.start(ctx, "a", sts); err != nil {
			t.Fatal(err)
		}
		got := map[string]Run{}
		for _, pt := range [][2]string{{"p", "l"}, {"q", "l"}} {
			runs, err := st.runs(ctx, pt[0], pt[1], 10)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range runs {
				got[r.RunID] = r
			}
		}
		if len(got) != 3 {
			t.Fatalf("runs %+v, want s1, m1 and s2", got)
		}
		for _, want := range sts {
			r := got[want.runID]
			trigger := map[bool]string{false: "schedule", true: "manual"}[want.manual]
			if r.Outcome != "running" || r.Replica != "a" || r.Trigger != trigger || r.Plugin != want.plugin ||
				(want.manual && r.Due != nil) || (!want.manual && (r.Due == nil || !r.Due.Equal(want.due))) {
				t.Errorf("%s: %+v", want.runID, r)
			}
		}
	})
}
