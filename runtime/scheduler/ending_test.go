package scheduler

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

// heldFinish records the ends of runs, then holds the replica back
// (until release is closed) before it lets the task go: the moment between
// the end shown in the history and the replica letting the task go,
// widened.
type heldFinish struct {
	store
	recorded chan struct{}
	release  chan struct{}
}

func (h *heldFinish) finish(ctx context.Context, fs []finishItem) error {
	err := h.store.finish(ctx, fs)
	h.recorded <- struct{}{}
	select {
	case <-h.release:
	case <-time.After(30 * time.Second):
	}
	return err
}

// A trigger that comes while a run is ending (its end recorded in the
// history, the replica not yet done with the task) waits for the replica
// to let the task go and runs it, global and local tasks alike; it
// answered 409 task_running (seen in CI: TestCancelRightAfterTrigger). A
// trigger while the run is still running keeps answering 409.
func TestTriggerWhileARunIsEnding(t *testing.T) {
	for _, scope := range []string{"global", "local"} {
		t.Run(scope, func(t *testing.T) {
			st := openStore(t, database.Config{Client: database.ClientSQLite, Connection: t.TempDir()})
			h := &heldFinish{store: st, recorded: make(chan struct{}, 10), release: make(chan struct{})}
			log := logrus.New()
			log.SetOutput(io.Discard)
			proceed := make(chan struct{}, 10)
			s := New(Config{Enabled: true, Log: logrus.NewEntry(log), Lease: testLease, Replica: "a",
				Run: func(ctx context.Context, p string, c plugin.Call) (uint32, []byte, error) {
					c.Encode(nil, 0)
					select {
					case <-proceed:
					case <-ctx.Done():
					}
					return hostfuncs.HandleOK, nil, nil
				}})
			spec := hostfuncs.TaskSpec{ID: "t", Cron: "@yearly"}
			if scope == "local" {
				spec.Scope = hostfuncs.ScopeLocal
			}
			startWithTask(t, s, h, realClock{}, spec)
			ctx := context.Background()
			if _, err := s.Trigger(ctx, "p", "t"); err != nil {
				t.Fatalf("first trigger: %v", err)
			}
			// Still running: 409.
			if _, err := s.Trigger(ctx, "p", "t"); !errors.Is(err, ErrRunning) {
				t.Fatalf("trigger while the run runs: %v; want ErrRunning", err)
			}
			proceed <- struct{}{}
			select {
			case <-h.recorded:
			case <-time.After(30 * time.Second):
				t.Fatal("the run's end was not recorded")
			}
			if _, runs, err := s.Task(ctx, "p", "t", 5); err != nil || len(runs) != 1 || runs[0].Ended == nil {
				t.Fatalf("history once the end is recorded: %+v %v; want the run ended", runs, err)
			}
			got := make(chan error, 1)
			go func() {
				_, err := s.Trigger(ctx, "p", "t")
				got <- err
			}()
			// Time for a trigger that does not wait to answer; one that
			// waits answers once the replica lets the task go.
			time.Sleep(200 * time.Millisecond)
			close(h.release)
			select {
			case err := <-got:
				if err != nil {
					t.Fatalf("trigger as the run's end is recorded: %v; want the task run again", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the trigger did not answer")
			}
			proceed <- struct{}{}
		})
	}
}
