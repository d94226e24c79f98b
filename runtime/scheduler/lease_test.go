package scheduler

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

// fakeClock is a clock that moves only when the test advances it. Its
// timers run in the goroutine that advances it; a tick is delivered only
// once its receiver waits for it, and the clock moves on only once the
// receiver has handled it and waits again (it calls Chan), so that each
// renewal round sees the time of its tick, whatever the machine's speed.
type fakeClock struct {
	t   testing.TB
	mu  sync.Mutex
	now time.Time
	// wallStep is how far the wall clock (Now) was stepped (stepWall):
	// Mono, timers and tickers go by now alone, as the monotonic clock
	// does.
	wallStep time.Duration
	timers   []*fakeTimer
	tickers  []*fakeTicker
}

type fakeTimer struct {
	at   time.Time
	f    func()
	done bool // fired or stopped
}

type fakeTicker struct {
	every   time.Duration
	next    time.Time
	ch      chan time.Time // unbuffered
	waiting chan struct{}  // the receiver called Chan
	idle    bool           // it waits for a tick (used by Advance only)
	stop    sync.Once
	stopped chan struct{}
}

func newFakeClock(t testing.TB) *fakeClock {
	return &fakeClock{t: t, now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now.Add(c.wallStep)
}

// Mono is the fake time since 2000, which no stepWall moves.
func (c *fakeClock) Mono() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
}

// stepWall steps the wall clock (Now) by d, as an operator or NTP does:
// the monotonic clock (Mono), timers and tickers are not moved.
func (c *fakeClock) stepWall(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wallStep += d
}

func (c *fakeClock) NewTicker(d time.Duration) ticker {
	c.mu.Lock()
	defer c.mu.Unlock()
	tk := &fakeTicker{every: d, next: c.now.Add(d), ch: make(chan time.Time), waiting: make(chan struct{}, 1), stopped: make(chan struct{})}
	c.tickers = append(c.tickers, tk)
	return tk
}

func (tk *fakeTicker) Chan() <-chan time.Time {
	select {
	case tk.waiting <- struct{}{}:
	default:
	}
	return tk.ch
}

func (tk *fakeTicker) Stop() { tk.stop.Do(func() { close(tk.stopped) }) }

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	tm := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, tm)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !tm.done
		tm.done = true
		return was
	}
}

// jump moves the clock to at without firing timers or ticks: what a
// goroutine sees when it has been held up (a statement stuck on the
// network) while timers that are due have not run yet.
func (c *fakeClock) jump(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if at.After(c.now) {
		c.now = at
	}
}

// AdvanceTo moves the clock to end, firing the timers and delivering the
// ticks due by then in time order (timers first at equal times).
func (c *fakeClock) AdvanceTo(end time.Time) {
	c.t.Helper()
	for {
		c.mu.Lock()
		var tm *fakeTimer
		var tk *fakeTicker
		at := end
		for _, x := range c.timers {
			if !x.done && !x.at.After(at) && (tm == nil || x.at.Before(at)) {
				tm, at = x, x.at
			}
		}
		for _, x := range c.tickers {
			select {
			case <-x.stopped:
				continue
			default:
			}
			if !x.next.After(at) && (tm == nil && tk == nil || x.next.Before(at)) {
				tm, tk, at = nil, x, x.next
			}
		}
		if at.After(c.now) {
			c.now = at
		}
		switch {
		case tm != nil:
			tm.done = true
			c.mu.Unlock()
			tm.f()
		case tk != nil:
			tk.next = tk.next.Add(tk.every)
			c.mu.Unlock()
			c.deliver(tk, at)
		default:
			c.mu.Unlock()
			return
		}
	}
}

func (c *fakeClock) deliver(tk *fakeTicker, at time.Time) {
	c.t.Helper()
	wait := func(what string) bool {
		select {
		case <-tk.waiting:
			return true
		case <-tk.stopped:
			return false
		case <-time.After(30 * time.Second):
			c.t.Fatalf("fake clock: the ticker's receiver did not %s within 30s", what)
			return false
		}
	}
	if !tk.idle && !wait("wait for its tick") {
		return
	}
	tk.idle = false
	select {
	case tk.ch <- at:
	case <-tk.stopped:
		return
	case <-time.After(30 * time.Second):
		c.t.Fatalf("fake clock: the ticker's receiver did not take its tick within 30s")
	}
	tk.idle = wait("handle its tick")
}

var errUnreachable = errors.New("dial tcp 10.0.0.5:5432: connect: no route to host (the test cut this replica off the database)")

// reachable is a store this replica can lose (every statement then fails,
// as when the network to the database is cut), and whose renewals can be
// held up (beforeRenew runs before each one).
type reachable struct {
	store
	down        atomic.Bool
	beforeRenew func()
}

func (r *reachable) register(ctx context.Context, regs []registration) ([]time.Time, error) {
	if r.down.Load() {
		return nil, errUnreachable
	}
	return r.store.register(ctx, regs)
}

func (r *reachable) claim(ctx context.Context, replica string, lease time.Duration, items []claimItem) ([]claimResult, error) {
	if r.down.Load() {
		return nil, errUnreachable
	}
	return r.store.claim(ctx, replica, lease, items)
}

func (r *reachable) start(ctx context.Context, replica string, sts []localStart) error {
	if r.down.Load() {
		return errUnreachable
	}
	return r.store.start(ctx, replica, sts)
}

func (r *reachable) finish(ctx context.Context, fs []finishItem) error {
	if r.down.Load() {
		return errUnreachable
	}
	return r.store.finish(ctx, fs)
}

func (r *reachable) renew(ctx context.Context, replica string, lease time.Duration, runIDs []string) (map[string]bool, error) {
	if r.beforeRenew != nil {
		r.beforeRenew()
	}
	if r.down.Load() {
		return nil, errUnreachable
	}
	return r.store.renew(ctx, replica, lease, runIDs)
}

func (r *reachable) tidy(ctx context.Context, keep int, live []string) error {
	if r.down.Load() {
		return errUnreachable
	}
	return r.store.tidy(ctx, keep, live)
}

func (r *reachable) orphans(ctx context.Context) ([]orphan, error) {
	if r.down.Load() {
		return nil, errUnreachable
	}
	return r.store.orphans(ctx)
}

func (r *reachable) tasks(ctx context.Context) ([]taskRow, time.Time, error) {
	if r.down.Load() {
		return nil, time.Time{}, errUnreachable
	}
	return r.store.tasks(ctx)
}

func (r *reachable) runs(ctx context.Context, plugin, task string, limit int) ([]Run, error) {
	if r.down.Load() {
		return nil, errUnreachable
	}
	return r.store.runs(ctx, plugin, task, limit)
}

// leaseReplica is one replica of a lease test: a scheduler on st and the
// fake clock, with one global task p/t that only triggers run.
type leaseReplica struct {
	*Scheduler
	// runs receives the context of each run as it starts; the run lasts
	// until its context ends. cancels receives its call's cancel request
	// just before.
	runs    chan context.Context
	cancels chan *hostfuncs.CancelRequest
}

const testLease = 30 * time.Second

func startLeaseReplica(t *testing.T, name string, clk *fakeClock, st store) *leaseReplica {
	t.Helper()
	return startLeaseReplicaWith(t, name, clk, st, hostfuncs.TaskSpec{ID: "t", Cron: "@yearly"})
}

// startLeaseReplicaWith is startLeaseReplica with p/t scheduled as spec
// says.
func startLeaseReplicaWith(t *testing.T, name string, clk *fakeClock, st store, spec hostfuncs.TaskSpec) *leaseReplica {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	r := &leaseReplica{runs: make(chan context.Context, 10), cancels: make(chan *hostfuncs.CancelRequest, 10)}
	r.Scheduler = New(Config{Enabled: true, Log: logrus.NewEntry(log), Lease: testLease, Replica: name,
		Run: func(ctx context.Context, p string, c plugin.Call) (uint32, []byte, error) {
			c.Encode(nil, 0)
			r.cancels <- c.Cancel
			r.runs <- ctx
			select {
			case <-ctx.Done():
			case <-c.Cancel.Done(): // Stop asks first
			}
			return 0, nil, &plugin.CallError{Plugin: p, Kind: plugin.FailCanceled, Err: context.Canceled}
		}})
	startWithTask(t, r.Scheduler, st, clk, spec)
	return r
}

// startWithTask starts s on st and clk with plugin p's one task, as spec
// says; it is stopped when the test ends, if not before.
func startWithTask(t *testing.T, s *Scheduler, st store, clk clock, spec hostfuncs.TaskSpec) {
	t.Helper()
	s.st, s.clk = st, clk
	task, err := NewTask("p", spec, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s.SetTasks("p", []Task{task})
	s.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.Stop(ctx)
	})
}

// trigger runs p/t on r now and returns its run's context.
func (r *leaseReplica) trigger(t *testing.T) context.Context {
	t.Helper()
	if _, err := r.Trigger(context.Background(), "p", "t"); err != nil {
		t.Fatalf("trigger on %s: %v", r.Replica(), err)
	}
	select {
	case ctx := <-r.runs:
		return ctx
	case <-time.After(30 * time.Second):
		t.Fatalf("the run triggered on %s did not start", r.Replica())
		return nil
	}
}

// waitLost waits until r's run has ended, failed as lost.
func (r *leaseReplica) waitLost(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for r.Stats().Failures["lost"] != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the run on %s did not end as lost: %+v", r.Replica(), r.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Two replicas on one SQLite database, whose clock, like every replica's
// lease bookkeeping, is a fake clock: replica a runs a global task, then
// loses the database. Its run must be interrupted 5/6 of the lease after
// the claim or its last successful renewal, measured from that run, not
// at the renewer's next tick, and in any case before the lease expires
// and replica b may take the task. The renewer ticks every third of the
// lease from Start; a's run is claimed just before a tick, the phase in
// which a check made only at ticks comes latest.
func TestLostReplicaInterruptsItsRunBeforeTheLeaseExpires(t *testing.T) {
	const every, lostAfter = testLease / 3, testLease * 5 / 6
	for _, c := range []struct {
		name string
		// renewFirst: one renewal succeeds before the database is lost.
		renewFirst bool
	}{
		{"lost before the first renewal", false},
		{"lost after a renewal", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			clk := newFakeClock(t)
			sq := openStore(t, database.Config{Client: database.ClientSQLite, Connection: t.TempDir()}).(*sqliteStore)
			sq.now = clk.Now // the database's clock decides when a lease expires
			aStore := &reachable{store: sq}
			start := clk.Now()
			a := startLeaseReplica(t, "a", clk, aStore)
			b := startLeaseReplica(t, "b", clk, sq)

			clk.AdvanceTo(start.Add(every - time.Millisecond))
			aRun := a.trigger(t)
			leaseOK := clk.Now()
			if c.renewFirst {
				clk.AdvanceTo(start.Add(every))
				leaseOK = start.Add(every)
			}
			aStore.down.Store(true)
			// Renewals fail from now on; the last one that succeeded was
			// at leaseOK, so the lease expires at leaseOK + lease.
			clk.AdvanceTo(leaseOK.Add(lostAfter - time.Millisecond))
			if aRun.Err() != nil {
				t.Fatalf("a's run was interrupted %s after its last renewal, before 5/6 of the lease (%s)", clk.Now().Sub(leaseOK), lostAfter)
			}
			if _, err := b.Trigger(context.Background(), "p", "t"); !errors.Is(err, ErrRunning) {
				t.Fatalf("trigger on b while a's lease is live: %v, want ErrRunning", err)
			}
			clk.AdvanceTo(leaseOK.Add(lostAfter))
			if aRun.Err() == nil {
				t.Errorf("a's run still runs %s after a's last successful claim or renewal (the renewer ticks every %s since Start; the lease expires %s after it): it should have been interrupted by 5/6 of the lease, %s",
					clk.Now().Sub(leaseOK), every, testLease, lostAfter)
			}
			// The lease expires in the database: b takes the task.
			clk.AdvanceTo(leaseOK.Add(testLease + time.Millisecond/2))
			b.trigger(t)
			if aRun.Err() == nil {
				t.Errorf("replica b started the task %s after a's last renewal (the lease had expired) while a's run still ran: two replicas run it at once", clk.Now().Sub(leaseOK))
			}
			a.waitLost(t)
		})
	}
}

// A renewal that succeeds only after the run's deadline has passed (here
// it was held up until after the lease had expired in the database, and
// nobody had taken the task meanwhile, so the database accepted it) does
// not keep the run going: the run is interrupted all the same, even if its
// lease timer has not fired yet.
func TestLateRenewalDoesNotExtendTheRun(t *testing.T) {
	const every = testLease / 3
	clk, sq := fakeClockSQLite(t)
	aStore := &reachable{store: sq}
	start := clk.Now()
	a := startLeaseReplica(t, "a", clk, aStore)

	clk.AdvanceTo(start.Add(time.Second))
	aRun := a.trigger(t)
	claimed := clk.Now()
	expired := claimed.Add(testLease + time.Millisecond/2)
	var once sync.Once
	aStore.beforeRenew = func() {
		// The first renewal, sent at the first tick, reaches the
		// database only once the lease has expired there.
		once.Do(func() { clk.jump(expired) })
	}
	clk.AdvanceTo(start.Add(every))
	if aRun.Err() == nil {
		t.Errorf("a renewal sent %s after the claim that came back %s after it, past the lease's expiry in the database, kept the run going",
			start.Add(every).Sub(claimed), expired.Sub(claimed))
	}
	clk.AdvanceTo(clk.Now()) // the timers due by now fire
	if aRun.Err() == nil {
		t.Errorf("a's run still runs %s after its claim, its lease timer fired, after a late renewal", clk.Now().Sub(claimed))
	}
	a.waitLost(t)
}

// A global run claimed ahead of its due time that does not begin, because
// the replica shuts down or a reload drops its task in the 250 ms before
// that time, gives its claim back: the due time stays due (another
// replica runs it), the lease is free, and no run is recorded that did
// not happen. It was recorded as canceled, started after it ended, and
// its due time was lost; a dropped task's run began and failed, "not
// registered".
func TestClaimedRunThatDoesNotBeginIsGivenBack(t *testing.T) {
	for _, how := range []string{"shutdown", "task dropped", "task dropped and added back"} {
		t.Run(how, func(t *testing.T) {
			clk, sq := fakeClockSQLite(t)
			s, task, ran := startEvery5s(t, "a", clk, sq)
			_, until := oneTaskRow(t, sq)
			// The first run comes at once; the one under test is the next.
			due := firstRunThenDue(until, ran, clk.Now())
			clk.AdvanceTo(due.Add(-100 * time.Millisecond)) // past claimAhead: the run is claimed
			claimed := until("the claim", func(r taskRow) bool { return r.leaseOwner == "a" })
			if !claimed.nextRun.Equal(due) {
				t.Fatalf("the claim moved next_run (its run's end does): %+v", claimed)
			}
			switch how {
			case "shutdown":
				s.Stop(context.Background())
			case "task dropped":
				s.SetTasks("p", nil)
			default:
				// Reloads back to back: the task registered again reads
				// next_run (the due time: a claim leaves it) and must run
				// the due time given back, once the old claim is given
				// back (its claim may find the lease still held, and then
				// tries again a second later).
				s.SetTasks("p", nil)
				s.SetTasks("p", []Task{task})
				until("the claim given back", func(r taskRow) bool { return r.runID != claimed.runID })
				for i := 1; i < 5 && ran.Load() < 2; i++ {
					clk.AdvanceTo(due.Add(time.Duration(i) * time.Second))
					time.Sleep(50 * time.Millisecond)
				}
				until("the due time given back to run", func(r taskRow) bool { return ran.Load() == 2 && r.leaseOwner == "" })
				runs, err := sq.runs(context.Background(), "p", "t", 10)
				if err != nil || len(runs) != 2 || runs[0].Due == nil || !runs[0].Due.Equal(due) {
					t.Errorf("runs after the task came back: %+v %v", runs, err)
				}
				return
			}
			back := until("the claim given back", func(r taskRow) bool { return r.leaseOwner == "" })
			if !back.nextRun.Equal(due) || back.runID != "" {
				t.Errorf("after the claim was given back: next_run %s (want the due time %s), run_id %q", back.nextRun, due, back.runID)
			}
			if runs, err := sq.runs(context.Background(), "p", "t", 10); err != nil || len(runs) != 1 {
				t.Errorf("runs recorded, want the first only: %+v %v", runs, err)
			}
			if n := ran.Load(); n != 1 {
				t.Errorf("the task ran %d times, want the first run only", n)
			}
		})
	}
}

// gatedClaim is a store whose claims wait until release is closed, having
// said on entered that they came.
type gatedClaim struct {
	store
	entered chan struct{}
	release chan struct{}
}

func (g *gatedClaim) claim(ctx context.Context, replica string, lease time.Duration, items []claimItem) ([]claimResult, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.release
	return g.store.claim(ctx, replica, lease, items)
}

// A replica shutting down gives back a due time it claimed but whose run
// did not begin, also when the due time had already come: the claim came
// back as the shutdown began (a due time past when it was claimed: a
// task's first, one a long run or a dead replica held), or the run's call
// was still waiting for an instance when the replica was asked to stop.
// Nothing ran, so the due time stays due and another replica runs it; it
// was recorded as a canceled run ("the replica shut down before the run
// began") and its next_run moved on: a task due every hour lost that
// run, as no replica ran it.
func TestShutdownGivesBackADueTimeWhoseRunDidNotBegin(t *testing.T) {
	for _, how := range []string{"claim returns as the replica stops", "call waits for an instance"} {
		t.Run(how, func(t *testing.T) {
			clk, sq := fakeClockSQLite(t)
			g := &gatedClaim{store: sq, entered: make(chan struct{}, 1), release: make(chan struct{})}
			if how == "call waits for an instance" {
				close(g.release)
			}
			log := logrus.New()
			log.SetOutput(io.Discard)
			called := make(chan struct{}, 1)
			s := New(Config{Enabled: true, Log: logrus.NewEntry(log), Lease: testLease, Replica: "a",
				Run: func(ctx context.Context, p string, c plugin.Call) (uint32, []byte, error) {
					if how == "claim returns as the replica stops" {
						called <- struct{}{} // the run began after all: the race went the other way
						return hostfuncs.HandleOK, nil, nil
					}
					// The pool: no instance free until the stop is asked,
					// and then the call does not begin.
					called <- struct{}{}
					<-c.Cancel.Done()
					return 0, nil, &plugin.CallError{Plugin: p, Kind: plugin.FailCanceled, Err: plugin.ErrNotBegun}
				}})
			s.st, s.clk = g, clk
			// Due at once (an Every task's first due time), then in an hour.
			task, err := NewTask("p", hostfuncs.TaskSpec{ID: "t", Every: time.Hour}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			due := clk.Now()
			s.SetTasks("p", []Task{task})
			s.Start()
			stopped := make(chan struct{})
			if how == "claim returns as the replica stops" {
				select {
				case <-g.entered:
				case <-time.After(10 * time.Second):
					t.Fatal("no claim")
				}
				go func() { s.Stop(context.Background()); close(stopped) }()
				time.Sleep(50 * time.Millisecond) // Stop waits for the loop, whose claim is in flight
				close(g.release)
			} else {
				select {
				case <-called:
				case <-time.After(10 * time.Second):
					t.Fatal("the run did not start")
				}
				go func() { s.Stop(context.Background()); close(stopped) }()
			}
			<-stopped
			if how == "claim returns as the replica stops" && len(called) > 0 {
				t.Skip("the run began before the stop was asked: nothing to give back")
			}
			row, _ := oneTaskRow(t, sq)
			r := row()
			if !r.nextRun.Equal(due) || r.leaseOwner != "" || r.runID != "" {
				t.Errorf("after the stop: next_run %s (want the due time %s, still due), lease %q run %q (want released)", r.nextRun, due, r.leaseOwner, r.runID)
			}
			if runs, err := sq.runs(context.Background(), "p", "t", 10); err != nil || len(runs) != 0 {
				t.Errorf("runs recorded, want none (none began): %+v %v", runs, err)
			}
		})
	}
}

// A replica held up past its run's lease deadline (its process stopped,
// say) runs on until its timers fire; meanwhile another replica may take
// the task. Past that deadline every host call of the run traps (the
// call's fence, which renewals move on), so the run does nothing more on
// the task's behalf, and it is recorded as lost. An audit stopped a
// replica with SIGSTOP past its lease: after SIGCONT its run wrote a log
// line seven seconds after another replica had taken the task.
func TestHeldUpRunIsFenced(t *testing.T) {
	const every, lostAfter = testLease / 3, testLease * 5 / 6
	clk, sq := fakeClockSQLite(t)
	start := clk.Now()
	a := startLeaseReplica(t, "a", clk, sq)
	clk.AdvanceTo(start.Add(time.Second))
	aRun := a.trigger(t)
	fence := <-a.cancels
	claimed := clk.Now()
	if fence.Fenced() {
		t.Fatal("the run is fenced as it begins")
	}
	// A renewal at the first tick moves the fence on.
	clk.AdvanceTo(start.Add(every))
	clk.jump(claimed.Add(lostAfter + time.Millisecond))
	if fence.Fenced() {
		t.Errorf("fenced %s after its claim, though a renewal %s after it succeeded", clk.Now().Sub(claimed), every-time.Second)
	}
	// Held up: the clock jumps past the renewed deadline, no timer fires.
	clk.jump(start.Add(every).Add(lostAfter + time.Millisecond))
	if aRun.Err() != nil {
		t.Fatal("the run's timer fired: the test must hold it up")
	}
	if !fence.Fenced() {
		t.Errorf("not fenced %s after its last renewal, past its lease deadline (%s)", clk.Now().Sub(start.Add(every)), lostAfter)
	}
	clk.AdvanceTo(clk.Now()) // the timers due by now fire
	a.waitLost(t)
}

// A step of the running replica's wall clock forward (NTP, an operator)
// during a global run does not make the run lost: its lease deadline, its
// fence and its renewals go by the monotonic clock, and the database's
// clock (here the store's, which the step does not move, as it does not
// move PostgreSQL's) keeps the lease. The fence went by the wall clock
// (Unix nanoseconds, without the monotonic reading): past a step of more
// than what was left of the lease deadline, the run's next host call
// trapped and the run was recorded lost while its lease held.
func TestWallClockStepDoesNotLoseARun(t *testing.T) {
	clk, sq := fakeClockSQLite(t)
	sq.now = func() time.Time { return time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Add(clk.Mono()) }
	start := clk.Now()
	a := startLeaseReplica(t, "a", clk, sq)
	clk.AdvanceTo(start.Add(time.Second))
	aRun := a.trigger(t)
	fence := <-a.cancels
	clk.stepWall(time.Hour)
	if fence.Fenced() {
		t.Error("the run's host calls are fenced right after a step of the wall clock")
	}
	// Renewals and lease timers over three leases.
	clk.AdvanceTo(start.Add(3 * testLease))
	if aRun.Err() != nil || fence.Fenced() || fence.WasFenced() {
		t.Fatalf("after a step of the wall clock: the run's ctx %v, fenced %v", aRun.Err(), fence.WasFenced())
	}
	if n := a.Stats().Failures["lost"]; n != 0 {
		t.Errorf("%d runs lost", n)
	}
	row, _ := oneTaskRow(t, sq)
	if r := row(); r.leaseOwner != "a" || r.runID == "" {
		t.Errorf("the lease after the step: %+v", r)
	}
}

// answerLost is a store whose next claim, once lose is set, is committed
// and then fails, as when the connection drops before the answer comes.
type answerLost struct {
	store
	lose atomic.Bool
}

func (a *answerLost) claim(ctx context.Context, replica string, lease time.Duration, items []claimItem) ([]claimResult, error) {
	res, err := a.store.claim(ctx, replica, lease, items)
	if err == nil && a.lose.CompareAndSwap(true, false) {
		return nil, errors.New("read tcp 127.0.0.1:50412->127.0.0.1:5432: read: connection reset by peer (the test dropped the claim's answer)")
	}
	return res, err
}

// A scheduled claim that the database committed but whose answer never
// came back is retried with the same run id, finds the lease its own and
// runs the due time, once. Before, the retry saw next_run moved on by the
// claim it did not know it had made, the due time was skipped and the
// claim's run row ended as lost when its lease expired.
func TestClaimWhoseAnswerWasLostRuns(t *testing.T) {
	clk, sq := fakeClockSQLite(t)
	st := &answerLost{store: sq}
	s, _, ran := startEvery5s(t, "a", clk, st)
	_, until := oneTaskRow(t, sq)
	due := firstRunThenDue(until, ran, clk.Now())
	st.lose.Store(true)
	clk.AdvanceTo(due.Add(-100 * time.Millisecond)) // claimed ahead: committed, answer lost
	until("the claim", func(r taskRow) bool { return r.leaseOwner == "a" && !st.lose.Load() })
	clk.AdvanceTo(due.Add(retryError + time.Second)) // the retry, well before the next due time
	until("the due time to run", func(r taskRow) bool { return ran.Load() == 2 && r.leaseOwner == "" })
	runs, err := sq.runs(context.Background(), "p", "t", 10)
	if err != nil || len(runs) != 2 {
		t.Fatalf("runs: %+v %v", runs, err)
	}
	if r := runs[0]; r.Outcome != "succeeded" || r.Due == nil || !r.Due.Equal(due) {
		t.Errorf("the run of the due time whose claim's answer was lost: %+v", r)
	}
	if n := s.Stats().Failures["lost"]; n != 0 {
		t.Errorf("%d runs lost", n)
	}
}

// A trigger's claim whose answer was lost is sent again with the same run
// id: the trigger succeeds and its run is recorded once.
func TestTriggerWhoseAnswerWasLost(t *testing.T) {
	clk, sq := fakeClockSQLite(t)
	st := &answerLost{store: sq}
	st.lose.Store(true)
	r := startLeaseReplica(t, "a", clk, st)
	r.trigger(t)
	runs, err := sq.runs(context.Background(), "p", "t", 10)
	if err != nil || len(runs) != 1 || runs[0].Outcome != "running" || runs[0].Trigger != "manual" {
		t.Fatalf("runs: %+v %v", runs, err)
	}
	if st.lose.Load() {
		t.Fatal("the claim's answer was never dropped")
	}
}

// oneTaskRow returns a reader of the only task row of sq (zero before the
// task is registered) and a wait of up to 10s for a condition on it.
func oneTaskRow(t *testing.T, sq store) (row func() taskRow, until func(what string, cond func(taskRow) bool) taskRow) {
	row = func() taskRow {
		rows, _, err := sq.tasks(context.Background())
		if err != nil || len(rows) > 1 {
			t.Fatalf("task rows: %v %v", rows, err)
		}
		if len(rows) == 0 {
			return taskRow{} // not registered yet
		}
		return rows[0]
	}
	until = func(what string, cond func(taskRow) bool) taskRow {
		for end := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if r := row(); cond(r) {
				return r
			} else if time.Now().After(end) {
				t.Fatalf("waited 10s for %s: %+v", what, r)
			}
		}
	}
	return row, until
}

// startEvery5s starts replica name on st and clk with one global task p/t
// due every 5s, whose runs it counts (and which end at once); it is
// stopped when the test ends, if not before.
func startEvery5s(t *testing.T, name string, clk *fakeClock, st store) (*Scheduler, Task, *atomic.Int32) {
	return startEvery5sRunning(t, name, clk, st, nil)
}

// startEvery5sRunning is startEvery5s whose runs last (in real time) what
// runFor, when not nil, returns.
func startEvery5sRunning(t *testing.T, name string, clk *fakeClock, st store, runFor func() time.Duration) (*Scheduler, Task, *atomic.Int32) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	ran := new(atomic.Int32)
	s := New(Config{Enabled: true, Log: logrus.NewEntry(log), Lease: testLease, Replica: name,
		Run: func(ctx context.Context, p string, c plugin.Call) (uint32, []byte, error) {
			ran.Add(1)
			if runFor != nil {
				time.Sleep(runFor())
			}
			return 0, nil, nil
		}})
	s.st, s.clk = st, clk
	task, err := NewTask("p", hostfuncs.TaskSpec{ID: "t", Every: 5 * time.Second}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s.SetTasks("p", []Task{task})
	s.Start()
	t.Cleanup(func() { s.Stop(context.Background()) })
	return s, task, ran
}

// A replica that dies in the middle of a scheduled run leaves its due time
// due: once the lease expires, another replica runs it, not at the task's
// next due time (an hour on here). The claim used to move next_run on, so
// a replica killed mid-run cost that due time its run, and nothing ran
// until the next one (an audit killed a replica running a task due every
// minute: the next run came 55 s after the lease expired).
func TestDeadReplicasDueTimeRunsOnceTheLeaseExpires(t *testing.T) {
	t.Parallel()
	clk, sq := fakeClockSQLite(t)
	aStore := &reachable{store: sq}
	spec := hostfuncs.TaskSpec{ID: "t", Every: time.Hour}
	start := clk.Now()
	a := startLeaseReplicaWith(t, "a", clk, aStore, spec)
	var aRun context.Context
	select {
	case aRun = <-a.runs: // the first due time comes at once
	case <-time.After(10 * time.Second):
		t.Fatal("the first run did not start on a")
	}
	b := startLeaseReplicaWith(t, "b", clk, sq, spec)
	aStore.down.Store(true) // a is cut off: it can neither renew nor finish
	runs := takeOver(t, clk, sq, aRun, b, start, "the due time a's run never finished")
	if r := runs[1]; r.Replica != "a" || r.Failure != "lost" || r.Due == nil || !r.Due.Equal(start) {
		t.Errorf("a's run: %+v", r)
	}
	if r := runs[0]; r.Replica != "b" || r.Outcome != "running" || r.Trigger != "schedule" || r.Due == nil || !r.Due.Equal(start) {
		t.Errorf("b's run, of the same due time: %+v", r)
	}
}

// A triggered run whose replica is cut off from the database before it
// ends is run again by another replica once its lease has expired, as a
// dead replica's due time is (above): in Backstage a trigger makes the
// task due now, and a run that never finished leaves it due. The task is
// @yearly, so no due time comes meanwhile; before, nothing ran it again
// and the history kept the run as running for minutes.
func TestDeadReplicasTriggeredRunRunsAgainOnceTheLeaseExpires(t *testing.T) {
	t.Parallel()
	clk, sq := fakeClockSQLite(t)
	aStore := &reachable{store: sq}
	a := startLeaseReplica(t, "a", clk, aStore)
	b := startLeaseReplica(t, "b", clk, sq)
	start := clk.Now()
	aRun := a.trigger(t)
	aStore.down.Store(true) // a is cut off: it can neither renew nor finish
	runs := takeOver(t, clk, sq, aRun, b, start, "again the triggered run a never finished")
	if r := runs[1]; r.Replica != "a" || r.Outcome != "failed" || r.Failure != "lost" || r.Trigger != "manual" {
		t.Errorf("a's run: %+v", r)
	}
	if r := runs[0]; r.Replica != "b" || r.Outcome != "running" || r.Trigger != "manual" {
		t.Errorf("b's run: %+v", r)
	}
	// Once is enough: b's run holds the lease, and a replica that is
	// cut off, or finds it taken, does not run it again.
	clk.AdvanceTo(clk.Now().Add(testLease / 2))
	select {
	case <-b.runs:
		t.Error("b ran the task a second time")
	case <-a.runs:
		t.Error("a ran the task again while cut off")
	case <-time.After(100 * time.Millisecond):
	}
}

// takeOver moves clk on until replica b starts a run, after a's run
// (aRun, claimed at start) was cut off from the database: b must, once
// the lease has expired and not before, while a's run is interrupted. It
// returns the task's two runs, newest first.
func takeOver(t *testing.T, clk *fakeClock, sq *sqliteStore, aRun context.Context, b *leaseReplica, start time.Time, what string) []Run {
	t.Helper()
	var bRun context.Context
	for end := start.Add(testLease + 10*time.Second); bRun == nil && clk.Now().Before(end); {
		clk.AdvanceTo(clk.Now().Add(500 * time.Millisecond))
		select {
		case bRun = <-b.runs:
		case <-time.After(20 * time.Millisecond):
		}
	}
	if bRun == nil {
		t.Fatalf("b did not run %s, %s after a's claim (lease %s)", what, clk.Now().Sub(start), testLease)
	}
	if aRun.Err() == nil {
		t.Error("b runs the task while a's run still runs")
	}
	if took := clk.Now().Sub(start); took < testLease {
		t.Errorf("b took the task over %s after a's claim, before the lease (%s) expired", took, testLease)
	}
	runs, err := sq.runs(context.Background(), "p", "t", 10)
	if err != nil || len(runs) != 2 {
		t.Fatalf("runs: %+v %v", runs, err)
	}
	return runs
}

// A trigger in the moments between a replica's claim of a due time and
// that due time (claims go out up to 250 ms ahead) does not answer 409:
// nothing runs yet. It waits for the due time; the scheduled run, which
// ends at once here, is then over and the trigger runs. On the replica
// holding the claim and on another one. An audit's triggers of a task due
// every second got 409 "is running" one time in four.
func TestTriggerBetweenClaimAndDueTime(t *testing.T) {
	for _, on := range []string{"the replica holding the claim", "another replica"} {
		t.Run(on, func(t *testing.T) {
			clk, sq := fakeClockSQLite(t)
			// The due time's run takes 200 ms: the trigger waits it out
			// too, rather than answering 409 as it begins.
			var slow atomic.Bool
			runFor := func() time.Duration {
				if slow.Load() {
					return 200 * time.Millisecond
				}
				return 0
			}
			a, _, aRan := startEvery5sRunning(t, "a", clk, sq, runFor)
			// The first run, on a alone; then the due time under test.
			_, until := oneTaskRow(t, sq)
			due := firstRunThenDue(until, aRan, clk.Now())
			replicas := map[string]*Scheduler{"a": a}
			if on == "another replica" {
				replicas["b"], _, _ = startEvery5sRunning(t, "b", clk, sq, runFor)
			}
			slow.Store(true)
			clk.AdvanceTo(due.Add(-100 * time.Millisecond)) // the due time is claimed ahead of it
			holder := until("the claim", func(r taskRow) bool { return r.leaseOwner != "" }).leaseOwner
			trig := replicas[holder]
			if on == "another replica" {
				trig = replicas[map[string]string{"a": "b", "b": "a"}[holder]]
			}
			done := make(chan error, 1)
			go func() {
				_, err := trig.Trigger(context.Background(), "p", "t")
				done <- err
			}()
			time.Sleep(100 * time.Millisecond) // the trigger waits for the due time
			select {
			case err := <-done:
				t.Fatalf("the trigger answered before the due time: %v", err)
			default:
			}
			clk.AdvanceTo(due) // the scheduled run begins and ends
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("trigger: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the trigger did not return")
			}
			runs, err := sq.runs(context.Background(), "p", "t", 10)
			if err != nil || len(runs) != 3 {
				t.Fatalf("runs: %+v %v", runs, err)
			}
			var manual, scheduled int
			for _, r := range runs {
				switch {
				case r.Trigger == "manual" && r.Replica == trig.Replica():
					manual++
				case r.Trigger == "schedule" && r.Due != nil && r.Due.Equal(due) && r.Replica == holder && r.Outcome == "succeeded":
					scheduled++
				}
			}
			if manual != 1 || scheduled != 1 {
				t.Errorf("want the due time's run on %s and the triggered one on %s: %+v", holder, trig.Replica(), runs)
			}
		})
	}
}

// fakeClockSQLite returns a fake clock and a scheduler store on a new
// SQLite database whose clock it is.
func fakeClockSQLite(t *testing.T) (*fakeClock, *sqliteStore) {
	clk := newFakeClock(t)
	sq := openStore(t, database.Config{Client: database.ClientSQLite, Connection: t.TempDir()}).(*sqliteStore)
	sq.now = clk.Now
	return clk, sq
}

// firstRunThenDue waits for the first run of startEvery5s's task, which
// comes at once (ran counts runs; start is the clock's time before it),
// and returns the next due time.
func firstRunThenDue(until func(string, func(taskRow) bool) taskRow, ran *atomic.Int32, start time.Time) time.Time {
	return until("the first run", func(r taskRow) bool {
		return ran.Load() == 1 && r.leaseOwner == "" && r.lastRunID != "" && r.nextRun.After(start)
	}).nextRun
}

// On SQLite, whose clock is the host's, a step of this host's clock
// forward (further than lostGrace past a local run's timeout, or a global
// run's lease until its next renewal) does not make the history's tidying
// record this replica's own runs in progress lost: they ran on, and their
// ends could no longer be recorded.
func TestClockStepDoesNotLoseOwnRunsOnSQLite(t *testing.T) {
	for _, c := range []struct {
		name  string
		scope uint8
	}{{"global", hostfuncs.ScopeGlobal}, {"local", hostfuncs.ScopeLocal}} {
		t.Run(c.name, func(t *testing.T) {
			clk, sq := fakeClockSQLite(t) // the host's clock: the step moves it
			start := clk.Now()
			a := startLeaseReplicaWith(t, "a", clk, sq, hostfuncs.TaskSpec{ID: "t", Cron: "@yearly", Timeout: time.Minute, Scope: c.scope})
			clk.AdvanceTo(start.Add(time.Second))
			aRun := a.trigger(t)
			<-a.cancels
			clk.stepWall(2 * time.Hour)
			if err := a.tidy(context.Background()); err != nil {
				t.Fatal(err)
			}
			runs, err := sq.runs(context.Background(), "p", "t", 10)
			if err != nil || len(runs) != 1 || runs[0].Outcome != "running" || aRun.Err() != nil {
				t.Errorf("the run in progress after the step and a tidying: %+v %v", runs, err)
			}
		})
	}
}

// The real clock's Mono (CLOCK_BOOTTIME on Linux) counts real time, as
// the monotonic clock does while the host is not suspended.
func TestRealClockMono(t *testing.T) {
	var c realClock
	wall, mono := time.Now(), c.Mono()
	time.Sleep(50 * time.Millisecond)
	d, want := c.Mono()-mono, time.Since(wall)
	if diff := (d - want).Abs(); diff > 20*time.Millisecond {
		t.Errorf("Mono advanced %s while Go's monotonic clock advanced %s", d, want)
	}
	if _, ok := bootClock(); !ok && useBoot {
		t.Error("CLOCK_BOOTTIME was read once and no longer can be")
	}
}
