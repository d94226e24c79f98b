package scheduler

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

// startedRun is a run of a reloadReplica's task as it began.
type startedRun struct {
	due    time.Time // zero for a manual run
	manual bool
}

// reloadReplica is a scheduler on the fake clock (due times and the
// loop's wake-ups included) whose task runs last until the test releases
// them.
type reloadReplica struct {
	*Scheduler
	clk     *fakeClock
	st      store
	runs    chan startedRun
	release chan struct{}
}

func startReloadReplica(t *testing.T, st store) *reloadReplica {
	t.Helper()
	clk := newFakeClock(t)
	if sq, ok := st.(*sqliteStore); ok {
		sq.now = clk.Now
	} else {
		st = fakeDBClock{st}
	}
	r := &reloadReplica{clk: clk, st: st, runs: make(chan startedRun, 10), release: make(chan struct{})}
	r.Scheduler = New(Config{Enabled: true, Log: quietLog(), Lease: time.Hour, Replica: "r",
		Run: func(ctx context.Context, p string, c plugin.Call) (uint32, []byte, error) {
			b := c.Encode(nil, 0)
			// AppendTaskRun ends with the due time and the manual flag.
			due := int64(binary.LittleEndian.Uint64(b[len(b)-9:]))
			sr := startedRun{manual: b[len(b)-1] == 1}
			if due != 0 {
				sr.due = time.Unix(0, due).UTC()
			}
			r.runs <- sr
			select {
			case <-r.release:
			case <-ctx.Done():
			case <-c.Cancel.Done(): // Stop asks first
			}
			return hostfuncs.HandleOK, nil, nil
		}})
	r.Scheduler.st, r.Scheduler.clk = st, clk
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r.Stop(ctx)
	})
	return r
}

func (r *reloadReplica) set(t *testing.T, scope uint8, every time.Duration) {
	t.Helper()
	task, err := NewTask("p", hostfuncs.TaskSpec{ID: "t", Every: every, Scope: scope}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r.SetTasks("p", []Task{task})
}

// next waits for the next run to start with the fake clock moved to at
// (timers the scheduler sets meanwhile, up to at, fire too).
func (r *reloadReplica) next(t *testing.T, at time.Time, what string) startedRun {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.clk.AdvanceTo(at)
		select {
		case sr := <-r.runs:
			return sr
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no run started by %s (fake clock)", what, at.Format(time.RFC3339Nano))
			return startedRun{}
		}
	}
}

// none checks that no run starts with the fake clock moved to at.
func (r *reloadReplica) none(t *testing.T, at time.Time, what string) {
	t.Helper()
	r.clk.AdvanceTo(at)
	select {
	case sr := <-r.runs:
		t.Fatalf("%s: a run (due %s) started by %s", what, sr.due.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
	case <-time.After(200 * time.Millisecond):
	}
}

// row waits until the task's row has schedule (and, for a global task,
// next_run), while the run in progress still runs.
func (r *reloadReplica) row(t *testing.T, scope uint8, schedule string, next time.Time) {
	t.Helper()
	var last taskRow
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		rows, _, err := r.st.tasks(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range rows {
			if x.plugin == "p" && x.task == "t" {
				last = x
			}
		}
		if last.schedule == schedule && (scope == hostfuncs.ScopeLocal || last.nextRun.Equal(next)) {
			return
		}
		r.wakeUp()
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("while the run in progress runs, the task's row has schedule %q next_run %s; want %q %s (the reload's change written at once)",
		last.schedule, last.nextRun.Format(time.RFC3339Nano), schedule, next.Format(time.RFC3339Nano))
}

// A reload that changes a task's schedule while the task runs takes
// effect when that run ends: the task follows its new schedule from the
// reload, as if registered then, not from the old schedule's next due
// time, and its row has the new schedule at once. The audit's repro: every
// 60s, a run lasting 10s, a reload to every 2s 3s into it.
func TestReloadDuringRunReschedules(t *testing.T) {
	for _, scope := range []uint8{hostfuncs.ScopeGlobal, hostfuncs.ScopeLocal} {
		name := map[uint8]string{hostfuncs.ScopeGlobal: "global", hostfuncs.ScopeLocal: "local"}[scope]
		t.Run(name, func(t *testing.T) {
			eachStore(t, func(t *testing.T, st store) {
				r := startReloadReplica(t, st)
				t0 := trunc(r.clk.Now())
				r.set(t, scope, time.Minute)
				r.Start()
				if sr := r.next(t, t0, "first run"); !sr.due.Equal(t0) {
					t.Fatalf("first run due %s, want %s", sr.due, t0)
				}
				reload := t0.Add(3 * time.Second)
				r.clk.AdvanceTo(reload)
				r.set(t, scope, 2*time.Second)
				r.row(t, scope, "every 2s", reload)

				r.clk.AdvanceTo(t0.Add(10 * time.Second))
				r.release <- struct{}{}
				// Due at the reload, missed while the first run ran: it
				// runs once, as soon as that run ends.
				sr := r.next(t, t0.Add(10*time.Second), "after the run in progress ended, 7s after a reload to every 2s")
				if !sr.due.Equal(reload) {
					t.Errorf("the run after the reload is due %s, want %s (the reload)", sr.due, reload)
				}
				r.release <- struct{}{}
				// Then the new grid: reload + 2s·k, the first after now.
				r.none(t, t0.Add(11*time.Second-claimAhead-time.Millisecond), "before the new grid's next due time")
				if sr := r.next(t, t0.Add(11*time.Second), "the new grid's due time"); !sr.due.Equal(t0.Add(11 * time.Second)) {
					t.Errorf("next run due %s, want %s", sr.due, t0.Add(11*time.Second))
				}
				r.release <- struct{}{}
			})
		})
	}
}

// The same for a run an operator triggered: every 10m changed to every 5m
// while the triggered run runs takes effect when it ends, not at the old
// schedule's next due time.
func TestReloadDuringTriggeredRunReschedules(t *testing.T) {
	t.Parallel()
	for _, scope := range []uint8{hostfuncs.ScopeGlobal, hostfuncs.ScopeLocal} {
		name := map[uint8]string{hostfuncs.ScopeGlobal: "global", hostfuncs.ScopeLocal: "local"}[scope]
		t.Run(name, func(t *testing.T) {
			eachStore(t, func(t *testing.T, st store) {
				r := startReloadReplica(t, st)
				t0 := trunc(r.clk.Now())
				r.set(t, scope, 10*time.Minute)
				r.Start()
				r.next(t, t0, "first run")
				r.release <- struct{}{}

				r.clk.AdvanceTo(t0.Add(time.Minute))
				// Once the first run's end is recorded.
				deadline := time.Now().Add(10 * time.Second)
				for {
					_, err := r.Trigger(context.Background(), "p", "t")
					if err == nil {
						break
					}
					if !errors.Is(err, ErrRunning) || time.Now().After(deadline) {
						t.Fatal(err)
					}
					time.Sleep(10 * time.Millisecond)
				}
				if sr := r.next(t, t0.Add(time.Minute), "triggered run"); !sr.manual {
					t.Fatalf("the triggered run is not manual: %+v", sr)
				}
				reload := t0.Add(2 * time.Minute)
				r.clk.AdvanceTo(reload)
				r.set(t, scope, 5*time.Minute)
				r.row(t, scope, "every 5m0s", reload)

				r.clk.AdvanceTo(t0.Add(3 * time.Minute))
				r.release <- struct{}{}
				sr := r.next(t, t0.Add(3*time.Minute), "after the triggered run ended, a minute after a reload to every 5m")
				if !sr.due.Equal(reload) {
					t.Errorf("the run after the reload is due %s, want %s (the reload)", sr.due, reload)
				}
				r.release <- struct{}{}
				next := reload.Add(5 * time.Minute)
				r.none(t, next.Add(-claimAhead-time.Millisecond), "before the new grid's next due time")
				if sr := r.next(t, next, "the new grid's due time"); !sr.due.Equal(next) {
					t.Errorf("next run due %s, want %s", sr.due, next)
				}
				r.release <- struct{}{}
			})
		})
	}
}
