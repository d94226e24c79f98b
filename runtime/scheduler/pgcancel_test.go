package scheduler

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

// failingCancelReads is a store whose reads of cancel requests (between
// renewals) fail.
type failingCancelReads struct{ store }

func (failingCancelReads) cancelRequested(ctx context.Context, runIDs []string) ([]string, error) {
	return nil, errUnreachable
}

// Two replicas on one PostgreSQL database with the default lease (30 s,
// renewed every 10 s): a cancel sent through b for the run on a reaches it
// before a's next renewal. a's renewals hang from the start, so the only
// ways the run can end are the cancel read between renewals (canceled)
// and its lease deadline (lost, 25 s on); before, a read the request only
// as it renewed, and the run ended lost. Where those reads fail, the
// renewal still delivers the cancel (a's renewals do not hang then).
func TestPGCancelThroughAnotherReplicaBeforeTheNextRenewal(t *testing.T) {
	t.Parallel()
	base := openStore(t, database.Config{Client: database.ClientPG, Connection: pgtest.URL(t), Isolation: database.IsolationRole})
	for _, c := range []struct {
		name string
		// reads: a's reads of cancel requests between renewals work;
		// without, its renewals do not hang.
		reads bool
	}{{"read between renewals", true}, {"renewal as the fallback", false}} {
		t.Run(c.name, func(t *testing.T) {
			began := make(chan struct{}, 1)
			replica := func(name string, st store) *Scheduler {
				log := logrus.New()
				log.SetOutput(io.Discard)
				s := New(Config{Enabled: true, Log: logrus.NewEntry(log), Lease: testLease, Replica: name,
					Run: func(ctx context.Context, p string, c plugin.Call) (uint32, []byte, error) {
						c.Encode(nil, 0)
						began <- struct{}{}
						select {
						case <-ctx.Done():
						case <-c.Cancel.Done():
						}
						return 0, nil, &plugin.CallError{Plugin: p, Kind: plugin.FailCanceled, Err: context.Canceled}
					}})
				startWithTask(t, s, st, realClock{}, hostfuncs.TaskSpec{ID: "t" + strings.ReplaceAll(c.name, " ", "_"), Cron: "@yearly", Timeout: time.Hour})
				return s
			}
			id := "t" + strings.ReplaceAll(c.name, " ", "_")
			stalled := new(atomic.Bool)
			var aStore store = stalledRenewals{base, stalled}
			if c.reads {
				stalled.Store(true)
			} else {
				aStore = failingCancelReads{aStore}
			}
			a, b := replica("a", aStore), replica("b", base)
			ctx := context.Background()
			run, err := a.Trigger(ctx, "p", id)
			if err != nil {
				t.Fatalf("trigger on a: %v", err)
			}
			select {
			case <-began:
			case <-time.After(30 * time.Second):
				t.Fatal("the run did not begin")
			}
			sent := time.Now()
			got, err := b.Cancel(ctx, "p", id)
			if err != nil || got.RunID != run.RunID || got.Replica != "a" {
				t.Fatalf("cancel through b: %+v %v; want a's run %s", got, err, run.RunID)
			}
			var r Run
			deadline := time.Now().Add(time.Minute)
			for {
				runs, err := base.runs(ctx, "p", id, 5)
				if err != nil {
					t.Fatal(err)
				}
				i := slices.IndexFunc(runs, func(r Run) bool { return r.RunID == run.RunID })
				if i >= 0 && runs[i].Outcome != "running" {
					r = runs[i]
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the run did not end: %+v", runs)
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Logf("%s: the run ended %s after the cancel was sent through b (a renews every %s)", c.name, time.Since(sent).Round(time.Millisecond), testLease/3)
			if r.Failure != "canceled" || !strings.Contains(r.Error, "canceled by an operator") {
				t.Errorf("the run: %+v; want failed, canceled by an operator", r)
			}
			if _, err := b.Cancel(ctx, "p", id); !errors.Is(err, ErrNotRunning) {
				t.Errorf("cancel once it ended: %v; want ErrNotRunning", err)
			}
		})
	}
}
