package scheduler

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

// stalledRenewals is a store whose renewals hang while stalled is set, as
// those of a replica held up (SIGSTOP, a starved process, a stalled
// proxy) whose runs' timers still fire.
type stalledRenewals struct {
	store
	stalled *atomic.Bool
}

func (s stalledRenewals) renew(ctx context.Context, replica string, lease time.Duration, runIDs []string) (map[string]bool, error) {
	for s.stalled.Load() {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return s.store.renew(ctx, replica, lease, runIDs)
}

// pauseSpan is one run's span on one replica, on the host's clock.
type pauseSpan struct {
	replica    string
	due        time.Time
	start, end time.Time
}

// Two replicas on one PostgreSQL database, a lease of 6s, a global task
// due every hour whose run lasts until its ctx ends. The replica running
// it stops renewing (its renewals hang): its run is interrupted at its
// lease deadline (5 s after its last renewal), before the lease expires
// in the database (6 s) and the other replica takes the task, which runs
// the same due time again; the two runs never overlap, and the first is
// recorded lost.
func TestPGReplicaWhoseRenewalsStallLosesItsRunBeforeTheTakeover(t *testing.T) {
	t.Parallel()
	const lease = 6 * time.Second
	base := openStore(t, database.Config{Client: database.ClientPG, Connection: pgtest.URL(t), Isolation: database.IsolationRole})
	var mu sync.Mutex
	var spans []pauseSpan
	began := make(chan string, 4)
	replica := func(name string, st store) *Scheduler {
		log := logrus.New()
		log.SetOutput(io.Discard)
		s := New(Config{Enabled: true, Log: logrus.NewEntry(log), Lease: lease, Replica: name,
			Run: func(ctx context.Context, p string, c plugin.Call) (uint32, []byte, error) {
				c.Encode(nil, 0)
				sp := pauseSpan{replica: name, start: time.Now()}
				began <- name
				select {
				case <-ctx.Done():
				case <-c.Cancel.Done():
				}
				sp.end = time.Now()
				mu.Lock()
				spans = append(spans, sp)
				mu.Unlock()
				return 0, nil, &plugin.CallError{Plugin: p, Kind: plugin.FailCanceled, Err: context.Canceled}
			}})
		startWithTask(t, s, st, realClock{}, hostfuncs.TaskSpec{ID: "t", Every: time.Hour, Timeout: time.Hour})
		return s
	}
	stalled := new(atomic.Bool)
	replica("a", stalledRenewals{base, stalled})
	select {
	case r := <-began:
		if r != "a" {
			t.Fatalf("first run on %s", r)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no first run on a")
	}
	replica("b", base)
	// Let a renew once, then stall it.
	time.Sleep(lease / 3)
	stalled.Store(true)
	select {
	case r := <-began:
		if r != "b" {
			t.Fatalf("second run on %s", r)
		}
	case <-time.After(3 * lease):
		t.Fatal("b did not take the task over")
	}
	stalled.Store(false)
	mu.Lock()
	defer mu.Unlock()
	if len(spans) != 1 || spans[0].replica != "a" {
		t.Fatalf("runs ended when b began: %+v, want a's alone", spans)
	}
	runs, err := base.runs(context.Background(), "p", "t", 10)
	if err != nil {
		t.Fatal(err)
	}
	var lost, running int
	for _, r := range runs {
		switch {
		case r.Replica == "a" && r.Failure == "lost":
			lost++
		case r.Replica == "b" && r.Outcome == "running":
			running++
		}
	}
	if lost != 1 || running != 1 || len(runs) != 2 || !runs[0].Due.Equal(*runs[1].Due) {
		t.Errorf("history: %+v; want a's run lost and b's running, of the same due time", runs)
	}
}
