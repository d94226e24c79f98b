package scheduler

import (
	"context"
	"sync"
	"testing"
	"time"
)

// hookedOrphans is a store whose orphans calls afterOrphans with what it
// found before it returns it: what other replicas do between a
// replica's search for lost triggered runs and its claim.
type hookedOrphans struct {
	store
	afterOrphans func([]orphan)
}

func (h *hookedOrphans) orphans(ctx context.Context) ([]orphan, error) {
	os, err := h.store.orphans(ctx)
	if err == nil && h.afterOrphans != nil {
		h.afterOrphans(os)
	}
	return os, err
}

// A replica finds a triggered run lost with its replica, and before its
// own claim goes out another replica runs the task again, and that run
// ends (a short task): the first replica must not run it a third time.
// The lost run was run again once; a claim that takes any free lease
// ran it twice (found when listing many orphans one claim at a time, or
// when a human trigger or a due time took the task first).
func TestRescueOfARunAnotherReplicaAlreadyRanAgainDoesNotRunItTwice(t *testing.T) {
	clk, sq := fakeClockSQLite(t)
	aStore := &reachable{store: sq}
	a := startLeaseReplica(t, "a", clk, aStore)
	var once sync.Once
	cRan := make(chan string, 1)
	bStore := &hookedOrphans{store: sq}
	bStore.afterOrphans = func(os []orphan) {
		if len(os) == 0 {
			return
		}
		once.Do(func() {
			// Replica c runs the task again, briefly, between b's
			// search and b's claim.
			ctx := context.Background()
			id := newRunID()
			res, err := sq.claim(ctx, "c", testLease, []claimItem{{plugin: "p", task: "t", manual: true, runID: id}})
			if err != nil || !res[0].claimed {
				t.Errorf("c's claim: %+v %v", res, err)
				return
			}
			if err := sq.finish(ctx, []finishItem{{runID: id, plugin: "p", task: "t", outcome: "succeeded", leased: true}}); err != nil {
				t.Error(err)
			}
			cRan <- id
		})
	}
	b := startLeaseReplica(t, "b", clk, bStore)
	start := clk.Now()
	aRun := a.trigger(t)
	aStore.down.Store(true)
	for end := start.Add(2 * testLease); clk.Now().Before(end) && len(cRan) == 0; {
		clk.AdvanceTo(clk.Now().Add(500 * time.Millisecond))
	}
	if len(cRan) == 0 {
		t.Fatal("no replica found a's lost triggered run")
	}
	if aRun.Err() == nil {
		t.Error("a's run still runs")
	}
	clk.AdvanceTo(clk.Now().Add(testLease))
	select {
	case <-b.runs:
		runs, _ := sq.runs(context.Background(), "p", "t", 10)
		t.Errorf("b ran the task again after c had already run a's lost triggered run again: %+v", runs)
	case <-time.After(200 * time.Millisecond):
	}
}

// A rescue claim (rescuer) takes the lease only while the lost triggered
// run it names still holds it: once another replica has run the task
// again, and that run has ended, the lease is free but the lost run has
// been run again already.
func TestStoreRescueClaimNeedsTheLostRunsLease(t *testing.T) {
	eachStore(t, func(t *testing.T, st store) {
		ctx := context.Background()
		const lease = 300 * time.Millisecond
		registerDueTask(t, st)
		claim := func(replica string, it claimItem) claimResult {
			t.Helper()
			res, err := st.claim(ctx, replica, lease, []claimItem{it})
			if err != nil {
				t.Fatal(err)
			}
			return res[0]
		}
		if r := claim("a", claimItem{plugin: "p", task: "t", manual: true, runID: "lost"}); !r.claimed {
			t.Fatalf("a's trigger: %+v", r)
		}
		// Not while the lease is live.
		if r := claim("b", claimItem{plugin: "p", task: "t", manual: true, runID: "b1", rescues: "lost"}); r.claimed || !r.held {
			t.Fatalf("rescue while a's lease is live: %+v", r)
		}
		time.Sleep(lease + 100*time.Millisecond)
		if os, err := st.orphans(ctx); err != nil || len(os) != 1 || os[0].runID != "lost" {
			t.Fatalf("orphans: %+v %v", os, err)
		}
		// c runs it again, and its run ends.
		if r := claim("c", claimItem{plugin: "p", task: "t", manual: true, runID: "c1", rescues: "lost"}); !r.claimed {
			t.Fatalf("c's rescue: %+v", r)
		}
		if err := st.finish(ctx, []finishItem{{runID: "c1", plugin: "p", task: "t", outcome: "succeeded", leased: true}}); err != nil {
			t.Fatal(err)
		}
		if os, err := st.orphans(ctx); err != nil || len(os) != 0 {
			t.Fatalf("orphans after c's run: %+v %v", os, err)
		}
		// b found the lost run before c took it: its rescue gets nothing.
		if r := claim("b", claimItem{plugin: "p", task: "t", manual: true, runID: "b1", rescues: "lost"}); r.claimed {
			t.Errorf("b's rescue of a run c already ran again: %+v", r)
		}
		// A trigger still does.
		if r := claim("b", claimItem{plugin: "p", task: "t", manual: true, runID: "b2"}); !r.claimed {
			t.Errorf("trigger: %+v", r)
		}
		runs, err := st.runs(ctx, "p", "t", 10)
		if err != nil || len(runs) != 3 {
			t.Fatalf("runs: %+v %v", runs, err)
		}
		if r := runs[2]; r.RunID != "lost" || r.Failure != "lost" {
			t.Errorf("a's run: %+v", r)
		}
	})
}

// A triggered run its replica interrupts as lost (it could not renew its
// lease in time: it froze, or lost the database for most of a lease),
// the replica reaching the database again before the lease expired, did
// not end: it is run again, as it is when the replica never comes back.
// It used to be recorded lost by its replica, its lease released, and
// nothing ran it again.
func TestTriggeredRunLostByItsReplicaRunsAgain(t *testing.T) {
	clk, sq := fakeClockSQLite(t)
	aStore := &reachable{store: sq}
	a := startLeaseReplica(t, "a", clk, aStore)
	b := startLeaseReplica(t, "b", clk, sq)
	start := clk.Now()
	aRun := a.trigger(t)
	aStore.down.Store(true)
	clk.AdvanceTo(start.Add(testLease * 5 / 6))
	if aRun.Err() == nil {
		t.Fatal("a's run was not interrupted at 5/6 of the lease")
	}
	a.waitLost(t)
	aStore.down.Store(false)
	time.Sleep(300 * time.Millisecond) // what a would record, it records
	var again context.Context
	var on string
	for end := start.Add(3 * testLease); again == nil && clk.Now().Before(end); {
		clk.AdvanceTo(clk.Now().Add(500 * time.Millisecond))
		select {
		case again = <-a.runs:
			on = "a"
		case again = <-b.runs:
			on = "b"
		case <-time.After(20 * time.Millisecond):
		}
	}
	runs, err := sq.runs(context.Background(), "p", "t", 10)
	if err != nil {
		t.Fatal(err)
	}
	if again == nil {
		t.Fatalf("no replica ran again the triggered run a interrupted as lost, %s after it: %+v", clk.Now().Sub(start), runs)
	}
	if clk.Now().Before(start.Add(testLease)) {
		t.Errorf("%s ran it again %s after a's claim, before the lease expired", on, clk.Now().Sub(start))
	}
	if len(runs) != 2 || runs[1].Replica != "a" || runs[1].Failure != "lost" || runs[0].Replica != on || runs[0].Outcome != "running" || runs[0].Trigger != "manual" {
		t.Errorf("runs: %+v", runs)
	}
}

// A replica held up (SIGSTOP) while its triggered run's lease expired and
// another replica ran the task again comes back and records its old run
// as it ended: that touches neither the new run's row nor its lease.
func TestStoreLateEndOfARescuedRunLeavesTheNewRunAlone(t *testing.T) {
	eachStore(t, func(t *testing.T, st store) {
		ctx := context.Background()
		const lease = 300 * time.Millisecond
		registerDueTask(t, st)
		if res, err := st.claim(ctx, "a", lease, []claimItem{{plugin: "p", task: "t", manual: true, runID: "x"}}); err != nil || !res[0].claimed {
			t.Fatalf("a's trigger: %+v %v", res, err)
		}
		time.Sleep(lease + 100*time.Millisecond)
		if res, err := st.claim(ctx, "b", time.Minute, []claimItem{{plugin: "p", task: "t", manual: true, runID: "y", rescues: "x"}}); err != nil || !res[0].claimed {
			t.Fatalf("b's rescue: %+v %v", res, err)
		}
		if err := st.finish(ctx, []finishItem{{runID: "x", plugin: "p", task: "t", outcome: "succeeded", leased: true}}); err != nil {
			t.Fatal(err)
		}
		rows, _, err := st.tasks(ctx)
		if err != nil || len(rows) != 1 {
			t.Fatalf("tasks: %+v %v", rows, err)
		}
		if r := rows[0]; r.leaseOwner != "b" || r.runID != "y" || r.lastOutcome != "failed" || r.lastRunID != "x" {
			t.Errorf("task row after a's late end: %+v", r)
		}
		if ok, err := st.renew(ctx, "a", lease, []string{"x"}); err != nil || len(ok) != 0 {
			t.Errorf("a renews its old lease: %v %v", ok, err)
		}
		runs, err := st.runs(ctx, "p", "t", 10)
		if err != nil || len(runs) != 2 || runs[0].RunID != "y" || runs[0].Outcome != "running" || runs[1].Failure != "lost" {
			t.Errorf("runs: %+v %v", runs, err)
		}
	})
}

// A replica that shuts down while its triggered run runs records it
// canceled and releases the lease: nobody runs it again. One that cannot
// reach the database as it shuts down leaves it running: it is run again
// once its lease expires (docs/scheduler.md).
func TestTriggeredRunCanceledAtShutdownIsNotRunAgain(t *testing.T) {
	t.Parallel()
	for _, down := range []bool{false, true} {
		t.Run(map[bool]string{false: "recorded", true: "database away"}[down], func(t *testing.T) {
			clk, sq := fakeClockSQLite(t)
			aStore := &reachable{store: sq}
			a := startLeaseReplica(t, "a", clk, aStore)
			b := startLeaseReplica(t, "b", clk, sq)
			start := clk.Now()
			a.trigger(t)
			aStore.down.Store(down)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a.Stop(ctx)
			var again bool
			for end := start.Add(3 * testLease); !again && clk.Now().Before(end); {
				clk.AdvanceTo(clk.Now().Add(time.Second))
				select {
				case <-b.runs:
					again = true
				case <-time.After(10 * time.Millisecond):
				}
			}
			runs, err := sq.runs(context.Background(), "p", "t", 10)
			if err != nil {
				t.Fatal(err)
			}
			if again != down {
				t.Errorf("run again: %v, want %v: %+v", again, down, runs)
			}
			if r := runs[len(runs)-1]; !down && (r.Outcome != "failed" || r.Failure != "canceled") {
				t.Errorf("a's run: %+v", r)
			}
		})
	}
}
