// Package scheduler runs the tasks plugins register (greenroom.Schedule),
// with the semantics of Backstage's SchedulerService: a task has a cron
// expression or a period, a timeout, an initial delay and a scope. Global
// tasks run on one replica at a time and each due time runs once across
// all replicas, coordinated only through the runtime's database (a lease
// row per task, taken atomically); local tasks run on every replica on its
// own clock. Every run is recorded (docs/scheduler.md).
//
// Lifecycle: New (nothing runs) → SetTasks/RemovePlugin as plugin versions
// come and go (at any time) → Start (only when [scheduler] enabled) →
// Stop (asks running tasks to stop, interrupts those still running after
// a grace, records them, releases their leases).
package scheduler

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sirupsen/logrus"
	"github.com/uptrace/bun"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/logging"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

// Runner calls into the current version of a plugin: the runtime gives
// the scheduler one that picks the plugin's serving version.
type Runner func(ctx context.Context, plugin string, c plugin.Call) (code uint32, out []byte, err error)

// Config is what a Scheduler needs.
type Config struct {
	// Enabled runs tasks on this replica; a disabled scheduler still
	// lists them.
	Enabled bool
	// Lease is how long a global task's lease lasts without renewal: a
	// replica that dies mid-run holds its task at most this long.
	Lease time.Duration
	// LeaseSecret: Lease came from the environment (a config secret),
	// which the log does not tell decoded ("30s" for "30000ms").
	LeaseSecret bool
	// Replica names this replica in leases and history (NewReplicaID).
	Replica string
	Log     *logrus.Entry
	// DB returns the runtime's own database, or an error wrapping
	// ErrNoDatabase while it is not open (the runtime opens it when a
	// plugin is granted the scheduler).
	DB func(ctx context.Context) (*bun.DB, error)
	// Run calls a plugin's task export.
	Run Runner
	// PluginLog returns plugin id's logger, or nil: the lines about its
	// task runs take from its log rate limit like its own lines.
	PluginLog func(id string) *logging.PluginLogger
}

// tidyFirst is how long after Start the history is first tidied (a
// variable for tests).
var tidyFirst = 10 * time.Second

// Tuning.
const (
	// keepRuns is how many runs of each task the history keeps.
	keepRuns = 100
	// lostGrace: a global run whose lease expired this long ago, or a
	// run its task's lease does not name (a local run, or one that began
	// while the task was local, before a reload made it global) still
	// "running" this long past its timeout, belonged to a replica that
	// died (a takeover marks a global run lost at once).
	lostGrace = 5 * time.Minute
	// tidyEvery is how often the history is tidied.
	tidyEvery = time.Minute
	// maxBatch bounds the runs of one completion statement.
	maxBatch = 500
	// claimChunk bounds the tasks of one claim statement, and
	// claimWorkers how many claim statements run at once.
	claimChunk   = 100
	claimWorkers = 4
	// claimAhead is how long before a global task's due time replicas
	// claim it; the run waits for the due time.
	claimAhead = 250 * time.Millisecond
	// retryLocked is how soon a replica looks again at a task whose row
	// another replica was claiming at the same moment.
	retryLocked = 50 * time.Millisecond
	// retryError is how soon a failed database step is retried.
	retryError = 2 * time.Second
	// clockEvery is how often a replica reads the database's clock again
	// (dbClock); clockMaxRTT is the longest round trip a reading may take
	// to replace the last one (half of it is the reading's error).
	clockEvery  = 30 * time.Second
	clockMaxRTT = 500 * time.Millisecond
	// clockSlack: a claim that reads the database's clock further than
	// this (and half its round trip) from this replica's reckoning has
	// the clock read again.
	clockSlack = 100 * time.Millisecond
	// stepTolerance: the clock due times go by is taken as stepped back
	// when it reads this much less than its last reading and the time
	// since on the monotonic clock make.
	stepTolerance = time.Second
	// maxErrorText bounds the error text kept for a run, and
	// maxLogErrorText the part of it written in the log line of a failed
	// run.
	maxErrorText    = 4096
	maxLogErrorText = 512
)

// Errors of Trigger.
var (
	ErrUnknownTask = errors.New("no such task")
	ErrDisabled    = errors.New("the scheduler is disabled on this replica ([scheduler] enabled = false) or stopped")
	ErrRunning     = errors.New("task is running")
	// ErrNotRunning: Cancel found no run of the task in progress, on any
	// replica.
	ErrNotRunning = errors.New("task is not running")
	// ErrNoDatabase: the runtime's database is not open, as on a server
	// where no plugin is granted the scheduler (or the database).
	ErrNoDatabase = errors.New("the runtime's database is not open")
)

// RunningError says a task could not be triggered because it runs.
type RunningError struct {
	Plugin, Task string
	// Replica is the replica running it (for global tasks: the lease
	// holder), when known.
	Replica string
	// Why says why the run cannot be acted on, when it is not only that
	// it runs (a cancel that its replica would never read).
	Why string
}

func (e *RunningError) Error() string {
	msg := fmt.Sprintf("task %s/%s is running", e.Plugin, e.Task)
	if e.Replica != "" {
		msg += " on replica " + e.Replica
	}
	if e.Why != "" {
		msg += ", " + e.Why
	}
	return msg
}

func (e *RunningError) Is(target error) bool { return target == ErrRunning }

// Scheduler schedules and runs the tasks of every plugin of one runtime.
type Scheduler struct {
	cfg Config
	log *logrus.Entry

	mu    sync.Mutex
	tasks map[string]*task
	// active holds the runs claimed or running on this replica, also
	// those of tasks unregistered since they started.
	active  map[*run]struct{}
	st      store
	started bool
	stopped bool
	// closed: Stop waits for the runs; no new run may start.
	closed bool

	wake       chan struct{}
	loopCtx    context.Context
	loopCancel context.CancelFunc
	runCtx     context.Context
	runCancel  context.CancelFunc
	// stopping is closed when Stop begins: runs in progress are asked to
	// stop (their calls' CancelRequest) before runCancel interrupts them.
	stopping chan struct{}
	loops    sync.WaitGroup // loop, janitor
	// The renewer renews the leases of global runs until the runs have
	// ended, a stop's grace included: stopped with the loops, it let the
	// leases of runs still finishing lapse, and the runs were interrupted
	// as lost before their grace was up.
	renewCtx    context.Context
	renewCancel context.CancelFunc
	renewDone   chan struct{}
	// claimErrs throttles the line about failing claims.
	claimErrs  lineThrottle
	runs       sync.WaitGroup // task runs
	finishes   chan *finishReq
	writerStop chan struct{}
	writerDone chan struct{}
	// recording counts the goroutines recording leased runs' ends
	// (flush), which the writer waits for before it is done.
	recording sync.WaitGroup
	// handoff counts runs that returned and have not yet handed their
	// end to the writer (complete): Stop waits for them before it stops
	// the writer, when it counted them as recording.
	handoff sync.WaitGroup
	// dead makes the scheduler behave as if its process died: no more
	// database writes, leases left to expire (Abandon).
	dead atomic.Bool
	// clk times leases (realClock; tests may replace it before Start).
	clk clock
	// dbRef is the last reading of the database's clock: due times go by
	// that clock (dueNow), as its leases and claims do, whatever this
	// host's clock says. Nil on SQLite (the host's clock). dbKnown: read
	// (dbClock) since New; both change under mu.
	dbRef   atomic.Pointer[dbReading]
	dbKnown atomic.Bool
	// clockMu orders readings of the database's clock; clockAt is when
	// the last one came back (clk.Mono: a step of the host's clock back
	// held the next one off by the step), and clockStale asks for another.
	clockMu    sync.Mutex
	clockAt    time.Duration
	clockStale atomic.Bool
	// starts batches the rows of local runs as they start.
	starts startBatch
	// frame is the last tick's reading of the clock due times go by, on
	// the monotonic clock: the next tick compares, and sees that clock
	// stepped back (stepBack). The loop's alone.
	frame struct {
		now   time.Time
		mono  time.Duration
		known bool // dbKnown then (its first reading moves the clock)
		set   bool
	}

	stats stats
}

// task is one registered task and what this replica knows of it.
type task struct {
	Task
	key string
	// synced: the row of this registration is in the database.
	synced bool
	// gen counts the registrations SetTasks made of the task: a run, a
	// claim or a sync of an earlier one does not set its due time.
	gen   uint64
	regAt time.Time
	// due is the next due time: for global tasks the row's next_run as
	// last seen, for local tasks this replica's own.
	due time.Time
	// passed is the latest global due time this replica saw claimed (by
	// it or another replica): its sync never proposes one at or before
	// it, which would run it again (a row whose next_run another replica
	// cleared, registering the task as local, is registered again).
	passed time.Time
	// attempt is when this replica next acts on the task.
	attempt time.Time
	// run is the run this replica is claiming or running, or nil.
	run *run
	// unanswered is the last scheduled run whose claim failed: the
	// database may have committed it all the same (the answer was lost
	// with the connection), so the next claim of the same due time is
	// sent with its run id and finds the lease its own (store.claim).
	unanswered *run
}

// afterRun is when this replica next acts on t once r (claiming or
// running) is done with it, r's next due time (when r is a scheduled
// global run) set first; s.mu is held. If a reload changed the task since
// r began, r's due times are the old schedule's: the task follows the
// new registration, whose due time its sync learns (or has learnt).
func (t *task) afterRun(r *run) {
	if r.gen != t.gen {
		if t.synced {
			t.attempt = t.nextAttempt()
		}
		// Else its sync is due (attempt), in flight, or retrying.
		return
	}
	if t.Scope == Global && !r.manual {
		t.due = r.next
	}
	t.attempt = t.nextAttempt()
}

// sawClaimed records that due, a global due time, was claimed; s.mu is
// held.
func (t *task) sawClaimed(due time.Time) {
	if !due.IsZero() {
		t.passed = later(t.passed, due)
	}
}

func (t *task) notBefore() time.Time { return t.regAt.Add(t.InitialDelay) }

// nextAttempt is when this replica next acts on t for its due time: a
// global task is claimed up to claimAhead before it (its run still starts
// at the due time), so that the claim's round trip does not make it late;
// never before the task's initial delay has passed.
func (t *task) nextAttempt() time.Time {
	at := t.due
	if t.Scope == Global {
		at = at.Add(-claimAhead)
	}
	return later(at, t.notBefore())
}

// run is one run of a task on this replica.
type run struct {
	id     string
	task   *task
	spec   Task   // the registration it runs under
	gen    uint64 // and its task.gen
	manual bool
	// rescues is the id of the lost triggered run this manual run runs
	// again (rescuer), or "".
	rescues string
	due     time.Time
	// startAt is when (s.clk.Mono) a scheduled global run claimed ahead
	// of its due time begins, if startSet: the due time by the database's
	// clock as its claim read it (took). Not on SQLite: there the due
	// time by dueNow.
	startAt  time.Duration
	startSet bool
	// next is the next_run a scheduled global run stores as it ends.
	next    time.Time
	claimed bool
	// leaseOK is when this replica last knew it held the lease: when it
	// sent the claim, or the last renewal that came back in time (on
	// s.clk.Mono, which no step of this host's wall clock moves: a step
	// forward during the run, read by the wall clock, passed its lease
	// deadline and had it interrupted, lost, while its lease held). The
	// lease expires in the database no sooner than a lease after it.
	leaseOK time.Duration
	// leaseStop stops the timer that interrupts the run at its lease
	// deadline (watchLease).
	leaseStop func() bool
	// fence is the call's cancel request, whose fence follows leaseOK
	// (nil until the call, and for runs without a lease).
	fence  *hostfuncs.CancelRequest
	cancel context.CancelFunc
	lost   atomic.Bool
	// returned: the run's call into the plugin has returned; what is
	// left is recording its end, which a shutdown does not count as the
	// run still running.
	returned atomic.Bool
	// started: the run reached its due time and began (or was recorded
	// as ended); withdrawn: before that, the plugin stopped registering
	// its task. Both under Scheduler.mu.
	started, withdrawn bool
	// stop is closed when the run is asked to stop (its call's cancel
	// request): by Stop, or by an operator (Cancel, canceled).
	stop     chan struct{}
	stopOnce sync.Once
	canceled atomic.Bool
	// gone is closed when this replica lets the task go (forget): a
	// trigger that finds the run ending (returned, its end being
	// recorded) waits for it. Made by launch, under Scheduler.mu.
	gone chan struct{}
}

// askStop asks r to stop (cancel_requested answers 1 to its guest).
func (r *run) askStop() { r.stopOnce.Do(func() { close(r.stop) }) }

type finishReq struct {
	item finishItem
	done chan struct{}
}

// New returns a scheduler; nothing runs until Start.
func New(cfg Config) *Scheduler {
	if cfg.Log == nil {
		cfg.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	if cfg.Replica == "" {
		cfg.Replica = NewReplicaID()
	}
	if cfg.Lease < time.Second {
		cfg.Lease = 30 * time.Second
	}
	return &Scheduler{
		cfg:    cfg,
		log:    cfg.Log.WithField("component", "scheduler"),
		tasks:  map[string]*task{},
		active: map[*run]struct{}{},
		wake:   make(chan struct{}, 1),
		stats:  newStats(),
		clk:    realClock{},
	}
}

// NewReplicaID returns an id for this process: host name, process id and
// a random suffix, so that a restarted process is a new replica.
func NewReplicaID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "replica"
	}
	var b [3]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Replica returns this replica's id.
func (s *Scheduler) Replica() string { return s.cfg.Replica }

// Enabled reports whether this replica runs tasks.
func (s *Scheduler) Enabled() bool { return s.cfg.Enabled }

func key(plugin, id string) string { return plugin + "\x00" + id }

// SetTasks makes tasks the whole set plugin registers: new tasks are
// scheduled, changed ones rescheduled, and tasks the plugin no longer
// registers stop being scheduled (a run in progress finishes; their
// history stays). The runtime calls it when it installs a plugin version.
func (s *Scheduler) SetTasks(plugin string, tasks []Task) {
	s.mu.Lock()
	now := s.dueNow() // under mu: dbClock moves registrations made before its first reading
	keep := map[string]bool{}
	for _, nt := range tasks {
		k := key(plugin, nt.ID)
		keep[k] = true
		if t, ok := s.tasks[k]; ok {
			if t.Task.Equal(&nt) {
				if t.TimeoutSecret != nt.TimeoutSecret {
					// Only whether its timeout (limits.timeout, the
					// same value) is a secret changed: the admin API
					// tells it so from now on, and the row is written
					// again (timeout_shown_ms, which other replicas
					// list); its schedule and a run in progress stay.
					t.TimeoutSecret = nt.TimeoutSecret
					t.synced, t.attempt = false, now
				}
				continue
			}
			// A run in progress goes on under the old registration;
			// the new one is written to the database at once (tick) and
			// scheduled from now, as if registered now.
			t.Task = nt
			t.gen++
			t.synced, t.regAt, t.attempt = false, now, now
			if nt.Scope == Local {
				t.due = t.first(now)
			}
			continue
		}
		t := &task{Task: nt, key: k, regAt: now, attempt: now}
		if nt.Scope == Local {
			t.due = t.first(now)
		}
		s.tasks[k] = t
	}
	var dropped []string
	for k, t := range s.tasks {
		if t.Plugin == plugin && !keep[k] {
			delete(s.tasks, k)
			dropped = append(dropped, t.ID)
			// A run claimed ahead of its due time has not begun: it
			// does not, and its claim is undone (execute).
			if r := t.run; r != nil && r.claimed && !r.manual && !r.started {
				r.withdrawn = true
				if r.cancel != nil {
					r.cancel()
				}
			}
		}
	}
	s.mu.Unlock()
	if len(dropped) > 0 {
		s.log.WithFields(logrus.Fields{"plugin": plugin, "tasks": dropped}).Info("the plugin no longer registers these tasks: they are no longer scheduled (their history stays)")
	}
	s.wakeUp()
}

// RemovePlugin stops scheduling every task of plugin (removed or closed).
func (s *Scheduler) RemovePlugin(plugin string) { s.SetTasks(plugin, nil) }

func (s *Scheduler) wakeUp() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// store returns the scheduler's tables, opening the database if needed.
func (s *Scheduler) store(ctx context.Context) (store, error) {
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	if st != nil {
		return st, nil
	}
	if s.cfg.DB == nil {
		return nil, fmt.Errorf("scheduler: %w", ErrNoDatabase)
	}
	db, err := s.cfg.DB(ctx)
	if err != nil {
		return nil, fmt.Errorf("scheduler: database: %w", err)
	}
	st, err = newStore(db)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.st == nil {
		s.st = st
	}
	st = s.st
	s.mu.Unlock()
	return st, nil
}

// Start begins scheduling on this replica, unless the scheduler is
// disabled. Tasks may be set before or after.
func (s *Scheduler) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.stopped || !s.cfg.Enabled {
		return
	}
	s.started = true
	s.loopCtx, s.loopCancel = context.WithCancel(context.Background())
	s.runCtx, s.runCancel = context.WithCancel(context.Background())
	s.stopping = make(chan struct{})
	s.finishes = make(chan *finishReq, maxBatch)
	s.writerStop, s.writerDone = make(chan struct{}), make(chan struct{})
	s.renewCtx, s.renewCancel = context.WithCancel(context.Background())
	s.renewDone = make(chan struct{})
	s.loops.Add(4)
	go s.loop()
	go s.renewer(s.clk.NewTicker(s.cfg.Lease / 3))
	go s.janitor()
	go s.rescuer(s.clk.NewTicker(s.rescueEvery()))
	go s.canceller(s.cancelEvery())
	go s.writer()
	lease := s.cfg.Lease.String()
	if s.cfg.LeaseSecret {
		lease = logging.Redacted
	}
	s.log.WithFields(logrus.Fields{"replica": s.cfg.Replica, "lease": lease}).Info("scheduler started")
}

// cancelGrace is how long a run an operator cancels (Cancel) has to
// return once asked to stop, before it is interrupted.
const cancelGrace = 5 * time.Second

// stopGrace is how long Stop waits for the runs in progress to return on
// their own once asked to stop when its ctx has no deadline
// (docs/scheduler.md, "Shutdown").
const stopGrace = 5 * time.Second

// grace is how long Stop waits for runs to return on their own before it
// interrupts them: what is left until ctx's deadline (the shutdown's:
// shutdown_timeout is how long task runs get to finish), less a tenth of
// it, at most a second, in which interrupted runs end and are recorded and
// their leases released; stopGrace without a deadline.
func grace(ctx context.Context) time.Duration {
	g := stopGrace
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		g = left - min(left/10, time.Second)
	}
	return max(g, 0)
}

// stopRequested reports whether Stop has begun (the runs in progress are
// asked to stop).
func (s *Scheduler) stopRequested() bool {
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

// Stop stops scheduling and stops the runs in progress: it asks them to
// stop (the task's ctx is cancelled in a guest that asks the host,
// cancel_requested, as the Go SDK does), waits for them to return for a
// grace (see grace), then interrupts those still running. Each is
// recorded as failed, canceled, and its global lease released so that
// another replica may take the task at once. It waits for them until ctx
// ends.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.started || s.stopped {
		s.stopped = true
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	s.loopCancel()
	s.loops.Wait()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.runs.Wait()
		close(done)
	}()
	close(s.stopping)
	// The runs that do not return within the grace are cut off: the
	// shutdown reports them (a non-zero exit), as it does requests.
	var cut []string
	if !s.dead.Load() {
		// A replica that dies gives its runs no grace (Abandon).
		g := grace(ctx)
		t := time.NewTimer(g)
		select {
		case <-done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		select {
		case <-done:
		default:
			cut = s.stillRunning()
		}
	}
	s.runCancel()
	ended, recording := false, false
	select {
	case <-done:
		ended = true
	case <-ctx.Done():
		// done is closed by a goroutine: with no run left (none at all,
		// or the last one ending), a deadline that has passed cut
		// nothing.
		s.mu.Lock()
		idle := len(s.active) == 0
		s.mu.Unlock()
		// Runs that returned and wait only for their end to be
		// recorded (a history write slowed by the database, an audit's
		// 1000 tasks on SQLite) were not cut off: the writer records
		// them below.
		switch {
		case idle:
			<-done
			ended = true
		case len(s.stillRunning()) == 0:
			ended, recording = true, true
		}
	}
	var err error
	switch {
	case ended:
		if len(cut) > 0 {
			err = fmt.Errorf("scheduler: task runs interrupted at the shutdown's deadline, not returned after they were asked to stop: %s", strings.Join(cut, ", "))
		}
	default:
		err = fmt.Errorf("scheduler: task runs still running when the shutdown deadline passed")
		if len(cut) > 0 {
			err = fmt.Errorf("%w: %s", err, strings.Join(cut, ", "))
		}
	}
	// The runs have ended (or the deadline passed): their leases are
	// released or left to expire.
	s.renewCancel()
	<-s.renewDone
	if recording {
		s.handoff.Wait() // every returned run's end is queued before the writer's last drain
	}
	close(s.writerStop)
	<-s.writerDone
	if recording {
		<-done // their ends recorded, the runs finish
	}
	s.log.Info("scheduler stopped")
	return err
}

// stillRunning names the runs whose call into their plugin has not
// returned, sorted.
func (s *Scheduler) stillRunning() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for r := range s.active {
		if !r.returned.Load() {
			names = append(names, r.spec.Plugin+"/"+r.spec.ID)
		}
	}
	slices.Sort(names)
	return names
}

// Abandon stops this replica as if its process died: runs are interrupted
// but nothing more is written, so their rows stay "running" and their
// leases are left to expire. Tests use it to show that another replica
// takes over.
func (s *Scheduler) Abandon() {
	s.dead.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Stop(ctx)
}

// loop acts on tasks as they come due.
func (s *Scheduler) loop() {
	defer s.loops.Done()
	for {
		if s.loopCtx.Err() != nil {
			return
		}
		// On s.clk, like due times, so that a fake clock drives the loop.
		stop := s.clk.AfterFunc(s.tick(s.loopCtx), s.wakeUp)
		select {
		case <-s.loopCtx.Done():
		case <-s.wake:
		}
		stop()
	}
}

// tick syncs new registrations, starts due local runs and claims due
// global ones; it returns how long to sleep.
func (s *Scheduler) tick(ctx context.Context) time.Duration {
	s.mu.Lock()
	idle := len(s.tasks) == 0
	s.mu.Unlock()
	if !idle {
		// A failed reading keeps the last; none yet holds the syncs
		// (sync), and so every run, until one comes back.
		s.dbClock(ctx)
	}
	now := s.dueNow()
	if back := s.steppedBack(now, s.clk.Mono()); back > 0 {
		s.stepBack(ctx, back, now)
	}
	var syncs, claims []*task
	var locals []*run
	s.mu.Lock()
	prior := s.priorRuns()
	for _, t := range s.tasks {
		if t.attempt.After(now) {
			continue
		}
		if !t.synced {
			// Also while a run of the task is in progress: a reload's
			// change is written at once, and the task's next due time
			// is the new registration's when that run ends.
			syncs = append(syncs, t)
			t.attempt = now.Add(time.Hour) // until sync says otherwise
			continue
		}
		if t.run != nil || prior[t.key] {
			continue
		}
		r := &run{id: newRunID(), task: t, spec: t.Task, gen: t.gen, due: t.due}
		t.run = r
		if t.Scope == Local {
			t.due = t.next(r.due, now)
			locals = append(locals, r)
			continue
		}
		r.next = t.next(r.due, now)
		if u := t.unanswered; u != nil && u.gen == t.gen && u.due.Equal(r.due) {
			r.id, r.next = u.id, u.next
		}
		t.unanswered = nil
		claims = append(claims, t)
	}
	s.mu.Unlock()
	if len(syncs) > 0 {
		s.sync(ctx, syncs)
	}
	for _, r := range locals {
		s.mustLaunch(r)
	}
	// Claims go in chunks, a few at a time: the runs of a chunk start as
	// soon as its statement returns, while the next chunks are claimed.
	var wg sync.WaitGroup
	sem := make(chan struct{}, claimWorkers)
	for len(claims) > 0 {
		n := min(len(claims), claimChunk)
		chunk := claims[:n]
		claims = claims[n:]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.claimRuns(ctx, chunk)
		}()
	}
	wg.Wait()
	return s.untilNext()
}

// steppedBack returns how far the clock due times go by (the database's,
// the host's on SQLite) was stepped back since the last tick, now being
// its reading at mono (clock.Mono), or 0.
func (s *Scheduler) steppedBack(now time.Time, mono time.Duration) time.Duration {
	f := &s.frame
	known := s.dbKnown.Load()
	var back time.Duration
	if f.set && f.known == known {
		back = f.now.Add(mono - f.mono).Sub(now)
	}
	f.now, f.mono, f.known, f.set = now, mono, known, true
	if back > stepTolerance {
		return back
	}
	return 0
}

// stepBack moves the tasks' due times after the clock they go by was
// stepped back by back (NTP correcting a clock that ran ahead, an
// operator): due times are absolute, and each task would otherwise wait
// the step out, however often it is due. Each task's next due time
// becomes what Task.steppedDue says (an Every task's moves back by the
// step); a global task's is moved in its row, only if the row still has
// the due time this replica saw and no run holds its lease (another
// replica that saw the step may have moved it first: the row's is then
// taken), and a scheduled global run in progress stores the moved one as
// it ends. Registration times move back too (initial delays count from
// them), and the latest due time seen claimed.
func (s *Scheduler) stepBack(ctx context.Context, back time.Duration, now time.Time) {
	type move struct {
		t        *task
		gen      uint64
		from, to time.Time
	}
	var moves []move
	s.mu.Lock()
	for _, t := range s.tasks {
		t.regAt = t.regAt.Add(-back)
		if !t.passed.IsZero() {
			t.passed = t.passed.Add(-back)
		}
		if r := t.run; r != nil && r.gen == t.gen && t.Scope == Global && !r.manual && !r.next.IsZero() {
			r.next = t.steppedDue(r.next, back, now)
		}
		if !t.synced {
			continue // its sync reckons from regAt
		}
		to := t.steppedDue(t.due, back, now)
		if !to.Before(t.due) {
			t.attempt = t.nextAttempt()
			continue
		}
		if t.Scope == Local || t.run != nil {
			t.due = to
			if t.run == nil {
				t.attempt = t.nextAttempt()
			}
			continue
		}
		moves = append(moves, move{t, t.gen, t.due, to})
	}
	s.mu.Unlock()
	s.log.WithField("step", back.String()).Warn("the clock due times go by was stepped back; moving the tasks' next due times by the step (see docs/scheduler.md, Clock steps)")
	if len(moves) == 0 {
		return
	}
	st, err := s.store(ctx)
	for _, m := range moves {
		got := m.from
		if err == nil {
			got, err = st.reschedule(ctx, m.t.Plugin, m.t.ID, m.from, m.to)
		}
		if err != nil {
			s.log.WithError(err).WithFields(logrus.Fields{"plugin": m.t.Plugin, "task": m.t.ID}).Error("cannot move the task's next due time after the clock was stepped back; it waits for its due time as it was")
			continue
		}
		s.mu.Lock()
		if t := m.t; s.tasks[t.key] == t && t.gen == m.gen && t.run == nil && !got.IsZero() {
			t.due = got
			t.attempt = t.nextAttempt()
		}
		s.mu.Unlock()
	}
}

// priorRuns returns the keys of the tasks with a run in progress on this
// replica under an earlier registration, one SetTasks dropped since (a
// reload removed the plugin, or stopped its serving version, and a later
// one registered the task again): the task's new registration starts no
// run until that one has ended (forget wakes the loop then), so that a
// run never overlaps the previous run of the same task on this replica.
// Before, a plugin removed while its local task ran and added back at
// once ran the task again beside the run still finishing on its old
// version. s.mu is held.
func (s *Scheduler) priorRuns() map[string]bool {
	var prior map[string]bool
	for r := range s.active {
		if s.tasks[r.task.key] != r.task {
			if prior == nil {
				prior = map[string]bool{}
			}
			prior[r.task.key] = true
		}
	}
	return prior
}

func (s *Scheduler) untilNext() time.Duration {
	now := s.dueNow()
	wait := time.Minute
	s.mu.Lock()
	prior := s.priorRuns()
	for _, t := range s.tasks {
		if prior[t.key] && t.synced {
			continue // woken when that run ends
		}
		if t.run == nil || !t.synced {
			wait = min(wait, t.attempt.Sub(now))
		}
	}
	s.mu.Unlock()
	return max(wait, 0)
}

// sync writes the rows of new or changed registrations and learns each
// global task's next due time.
func (s *Scheduler) sync(ctx context.Context, ts []*task) {
	// A first due time, and the due times to come, go by the database's
	// clock: not one is written before it has been read.
	clockErr := s.dbClock(ctx)
	if clockErr == nil && !s.dbKnown.Load() {
		clockErr = errors.New("the database's clock has not been read")
	}
	regs := make([]registration, len(ts))
	gens := make([]uint64, len(ts))
	s.mu.Lock()
	now := s.dueNow()
	for i, t := range ts {
		spec := t.Task
		regs[i] = registration{task: &spec, at: t.regAt}
		gens[i] = t.gen
		if t.Scope == Global {
			regs[i].next = t.first(t.regAt)
			if !t.passed.IsZero() && !regs[i].next.After(t.passed) {
				regs[i].next = t.next(t.passed, now)
			}
		}
	}
	s.mu.Unlock()
	var nexts []time.Time
	err := clockErr
	var st store
	if err == nil {
		st, err = s.store(ctx)
	}
	if err == nil {
		nexts, err = st.register(ctx, regs)
	}
	if err != nil && ctx.Err() == nil {
		s.log.WithError(err).Error("cannot register tasks in the database; retrying")
	}
	now = s.dueNow()
	s.mu.Lock()
	for i, t := range ts {
		if s.tasks[t.key] != t || t.gen != gens[i] {
			continue // replaced meanwhile: synced again
		}
		if err != nil {
			t.attempt = now.Add(retryError)
			continue
		}
		t.synced = true
		if t.Scope == Global {
			t.due = nexts[i]
			if t.due.IsZero() {
				t.synced, t.attempt = false, now.Add(retryError)
				continue
			}
		}
		// A run in progress (claimed or running before the change)
		// leaves the task alone until it ends: then afterRun.
		t.attempt = t.nextAttempt()
	}
	s.mu.Unlock()
	s.wakeUp()
}

// dbReading is a reading of the database's clock: db, at mono on this
// replica's monotonic clock (clock.Mono).
type dbReading struct {
	db   time.Time
	mono time.Duration
}

// dueNow is the time by the database's clock, as this replica reckons it
// (the host's clock until dbClock has read it, and on SQLite): the clock
// due times go by.
func (s *Scheduler) dueNow() time.Time { return s.dueAt(s.clk.Mono(), s.clk.Now) }

// dueAt is the time by the database's clock at mono (clock.Mono): the last
// reading, and the time elapsed since on the monotonic clock, which no
// step of this host's clock moves; wall is this host's clock, for
// SQLite and before the first reading.
func (s *Scheduler) dueAt(mono time.Duration, wall func() time.Time) time.Time {
	if r := s.dbRef.Load(); r != nil {
		return r.db.Add(mono - r.mono)
	}
	return wall()
}

// dbClock reads the database's clock when it has not been read yet, was
// read clockEvery ago, or a claim found the reading off (clockStale), and
// sets dbRef: the database's time in the middle of the round trip.
// Replicas whose clocks differ then agree on when a due time comes:
// reckoned by their own clocks, one 20 s ahead ran every due time 20 s
// early, and the due times another stored at once, while the claims'
// leases went by the database's clock; and one whose clock was stepped
// back 20 s waited 20 s. The first reading moves the registrations made
// before it, which went by this host's clock, to the database's.
func (s *Scheduler) dbClock(ctx context.Context) error {
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	if s.dbKnown.Load() && !s.clockStale.Load() && s.clk.Mono()-s.clockAt < clockEvery {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := s.store(ctx)
	if err != nil {
		return err
	}
	// The best of three readings: the one with the shortest round trip.
	var ref *dbReading
	var rtt, off time.Duration
	for range 3 {
		sentWall, sent := s.clk.Now(), s.clk.Mono()
		db, err := st.dbNow(ctx)
		back := s.clk.Mono()
		if err != nil {
			if s.dbKnown.Load() {
				// The last reading stands; the next try in retryError.
				s.clockAt = s.clk.Mono() + retryError - clockEvery
			}
			return err
		}
		if db.IsZero() {
			break // SQLite: the host's clock
		}
		if d := back - sent; ref == nil || d < rtt {
			wall := sentWall.Add(d / 2).Round(0)
			rtt, off, ref = d, db.Sub(wall), &dbReading{db: db, mono: sent + d/2}
			if off.Abs() <= d/2 {
				// The clocks agree, as far as the reading can tell.
				off, ref.db = 0, wall
			}
		}
	}
	s.clockAt = s.clk.Mono()
	s.clockStale.Store(false)
	if s.dbKnown.Load() && rtt > clockMaxRTT {
		return nil // too rough: the last reading stands
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dbKnown.Load() {
		for _, t := range s.tasks {
			t.regAt, t.attempt = t.regAt.Add(off), t.attempt.Add(off)
			if t.Scope == Local {
				t.due = t.first(t.regAt)
			}
		}
		s.dbKnown.Store(true)
	}
	if ref != nil {
		if s.dueAt(ref.mono, s.clk.Now).Sub(ref.db) > stepTolerance {
			// Stepped back: the loop moves the due times (stepBack)
			// now, not at its next wake-up, an hour away.
			defer s.wakeUp()
		}
		s.dbRef.Store(ref)
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// claimRuns tries to take the leases of due global tasks in one statement
// and starts the runs it got.
func (s *Scheduler) claimRuns(ctx context.Context, ts []*task) {
	items := make([]claimItem, len(ts))
	s.mu.Lock()
	for i, t := range ts {
		r := t.run
		items[i] = claimItem{plugin: t.Plugin, task: t.ID, due: r.due, runID: r.id}
	}
	s.mu.Unlock()
	sent := s.clk.Mono()
	var res []claimResult
	// Not cancelled by Stop: a claim that took leases must say so, so that
	// its runs start, are cancelled and release them.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	st, err := s.store(cctx)
	if err == nil {
		res, err = st.claim(cctx, s.cfg.Replica, s.cfg.Lease, items)
	}
	back := s.clk.Mono()
	// This replica's reckoning of the database's clock at back, which the
	// due times claimed went by (checkClock may read it again).
	est := s.dueAt(back, s.clk.Now)
	if err != nil && ctx.Err() == nil {
		s.claimFailed(err, "cannot claim due tasks; retrying")
	}
	s.checkClock(ctx, res, sent, back)
	now := s.dueNow()
	var won []*run
	var lost int64
	s.mu.Lock()
	for i, t := range ts {
		r := t.run
		if r.gen != t.gen {
			// A reload changed the task during the claim: the run, if
			// claimed, goes on under the old registration, and the new
			// one's sync sets the task's due time, not this claim.
			if err == nil && res[i].claimed {
				r.took(res[i], sent, back, est)
				t.sawClaimed(r.due)
				r.withdrawn = s.tasks[t.key] != t // changed, then dropped
				won = append(won, r)
				continue
			}
			if err == nil {
				lost++
			}
			t.run = nil
			t.afterRun(r)
			continue
		}
		if err != nil {
			t.run, t.unanswered, t.attempt = nil, r, now.Add(retryError)
			continue
		}
		x := res[i]
		switch {
		case x.claimed:
			r.took(x, sent, back, est)
			t.sawClaimed(r.due)
			t.due = r.next
			// Dropped by a reload while the claim was on its way: the
			// run does not begin, and its claim is undone (execute).
			r.withdrawn = s.tasks[t.key] != t
			won = append(won, r)
			continue
		case !x.exists:
			t.synced = false
			t.attempt = now
		case x.nextRun.IsZero():
			// Only a local registration clears next_run: another replica
			// registers the task as local (a change of scope that has
			// reached it and not this one). Registered again as global:
			// the row follows the last to register.
			s.log.WithFields(logrus.Fields{"plugin": t.Plugin, "task": t.ID}).Warn("the task's row has no next due time: most likely another replica registers this global task as local (replicas disagree on its scope: reload every replica); registering it again as global")
			t.synced, t.attempt = false, now.Add(retryError)
		case !x.nextRun.Equal(r.due):
			// Another replica ran it: wait for the due time it stored.
			if x.nextRun.After(r.due) {
				t.sawClaimed(r.due)
			}
			t.due = x.nextRun
			t.attempt = t.nextAttempt()
		case x.held:
			// Still due, but a run holds the lease (a long run, or a
			// replica that died and whose lease has not expired yet).
			t.attempt = now.Add(s.heldRetry())
		default:
			// Another replica was claiming it at the same moment.
			t.attempt = now.Add(retryLocked)
		}
		lost++
		t.run = nil
	}
	s.mu.Unlock()
	s.stats.claimed(int64(len(won)), lost)
	for _, r := range won {
		s.mustLaunch(r)
	}
}

// took records that the claim of scheduled run r, sent at sent and back
// at back (s.clk.Mono), took its lease: the run begins at its due
// time by the database's clock, which the claim read (x.dbNow; none on
// SQLite, whose clock is the host's). Counted from back, the claim's
// reading being older, it begins no sooner, even should this replica's
// reckoning of the database's clock be off. Unless the claim read that
// clock behind the reckoning (est, at back) by more than the round trip
// and stepTolerance: the clock was stepped back since this replica last
// read it, and the due time, reckoned before the step, would have waited
// the step out (an hour's step, an hour, the lease held all along); the
// run then begins at its due time by the reckoning, as it would have had
// the clock not been stepped (checkClock reads the clock again, and the
// next tick moves the due times: stepBack).
func (r *run) took(x claimResult, sent, back time.Duration, est time.Time) {
	r.claimed, r.leaseOK = true, sent
	if !x.dbNow.IsZero() {
		wait := r.due.Sub(x.dbNow)
		if est.Sub(x.dbNow) > back-sent+stepTolerance {
			wait = r.due.Sub(est)
		}
		r.startAt, r.startSet = back+wait, true
	}
}

// checkClock reads the database's clock again (dbClock) when a claim,
// sent at sent and back at back (Mono), read it (res[0].dbNow) further
// from this replica's reckoning than the round trip explains (the
// database's clock, or this replica's monotonic one, drifted).
func (s *Scheduler) checkClock(ctx context.Context, res []claimResult, sent, back time.Duration) {
	if len(res) == 0 || res[0].dbNow.IsZero() || s.dbRef.Load() == nil {
		return
	}
	rtt := back - sent
	est := s.dueAt(sent+rtt/2, s.clk.Now)
	if res[0].dbNow.Sub(est).Abs() > rtt/2+clockSlack {
		s.clockStale.Store(true)
		s.dbClock(ctx)
	}
}

// mustLaunch launches a run of the loop, which Stop waits for before it
// closes (so the launch cannot be refused; if it were, the task is freed).
func (s *Scheduler) mustLaunch(r *run) {
	if !s.launch(r) {
		s.mu.Lock()
		if r.task.run == r {
			r.task.run = nil
		}
		s.mu.Unlock()
	}
}

// claimFailed logs a failed claim (or search for claims) with msg, at
// most once per claimErrEvery, with how many it held back since.
func (s *Scheduler) claimFailed(err error, msg string) {
	if n, ok := s.claimErrs.take(time.Now()); ok {
		e := s.log.WithError(err)
		if n > 0 {
			e = e.WithField("also_failed", n)
		}
		e.Error(msg)
	}
}

// heldRetry is how often a replica looks at a due task whose lease another
// run holds.
func (s *Scheduler) heldRetry() time.Duration {
	return min(max(s.cfg.Lease/4, 100*time.Millisecond), time.Second)
}

// lineThrottle lets one line through per claimErrEvery, and counts the
// ones it held back since. A database that is down fails every claim,
// one per chunk of due tasks every retry: a plugin's 1000 tasks made
// hundreds of lines a second.
type lineThrottle struct {
	mu   sync.Mutex
	last time.Time
	held int
}

// claimErrEvery is how often a failing claim is logged at most.
const claimErrEvery = 5 * time.Second

// take reports whether a line may be written now, and how many were held
// back before it.
func (l *lineThrottle) take(now time.Time) (held int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < claimErrEvery {
		l.held++
		return 0, false
	}
	held, l.held, l.last = l.held, 0, now
	return held, true
}

// launch starts r, unless Stop is already waiting for the runs (then it
// reports false and r does not run).
func (s *Scheduler) launch(r *run) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.active[r] = struct{}{}
	s.runs.Add(1)
	r.stop = make(chan struct{})
	r.gone = make(chan struct{})
	s.mu.Unlock()
	go s.execute(r)
	return true
}

// execute runs r in the plugin and records the outcome.
func (s *Scheduler) execute(r *run) {
	defer s.runs.Done()
	ctx, cancel := context.WithCancel(s.runCtx)
	defer cancel()
	s.mu.Lock()
	r.cancel = cancel
	if r.lost.Load() || r.withdrawn {
		cancel() // lost, or its task dropped, before it began
	} else if r.claimed {
		s.watchLease(r)
	}
	s.mu.Unlock()
	t := r.spec
	log := s.log.WithFields(logrus.Fields{"plugin": t.Plugin, "task": t.ID, "run_id": r.id})
	if t.Scope == Local && !s.dead.Load() && ctx.Err() == nil {
		err := s.recordStart(ctx, localStart{runID: r.id, plugin: t.Plugin, task: t.ID, manual: r.manual, due: r.due, timeout: r.spec.Timeout})
		if err != nil && ctx.Err() == nil {
			log.WithError(err).Warn("cannot record the start of a run")
		}
	}
	wait := r.due.Sub(s.dueNow())
	if r.startSet {
		wait = r.startAt - s.clk.Mono()
	}
	if wait > 0 && !r.manual {
		// Claimed ahead: start at the due time.
		due := make(chan struct{})
		stop := s.clk.AfterFunc(wait, func() { close(due) })
		select {
		case <-due:
		case <-ctx.Done():
			stop()
		case <-s.stopping:
			stop()
		case <-r.stop: // an operator canceled it (Cancel): its call is not made
			stop()
		}
	}
	// Stopped: interrupted, or Stop has begun (no run begins then).
	stopped := ctx.Err() != nil || s.stopRequested()
	s.mu.Lock()
	// A scheduled global run stopped before it began (a shutdown, its
	// task dropped by a reload), whether or not its due time had come,
	// never began: its claim is undone rather than recorded as a run, so
	// that the due time is not lost (another replica runs it) and no run
	// is recorded that did not happen.
	unclaim := r.claimed && !r.manual && !r.lost.Load() && (r.withdrawn || stopped)
	r.started = !unclaim
	s.mu.Unlock()
	if unclaim {
		s.unclaim(r, log)
		return
	}
	s.stats.running.Add(1)
	var began time.Time
	var dueNS int64
	if !r.manual {
		dueNS = r.due.UnixNano()
	}
	var code uint32
	var out []byte
	var err error
	var deadline int64 // the call's, Unix nanoseconds on the real clock
	var lateSeen bool  // its lateness counted (when the call began)
	// Stop asks the run to stop through cancel before it interrupts it.
	// A global run's host calls trap past its lease deadline (renewals
	// move it on): should this process be held up past it, the run does
	// nothing more before its timer interrupts it.
	// Asked to stop by Stop, or by an operator (Cancel).
	ended := make(chan struct{})
	defer close(ended)
	go func() {
		select {
		case <-s.stopping:
			r.askStop()
		case <-ended:
		}
	}()
	cancelReq := hostfuncs.NewFencedCancelRequest(r.stop, s.monoNow)
	s.mu.Lock()
	if r.claimed {
		r.fence = cancelReq
		cancelReq.SetFence(monoTime(s.leaseDeadline(r)))
	}
	s.mu.Unlock()
	if stopped {
		// Stopped before it began: Stop began, or it was interrupted
		// while it waited for its due time.
		err = &plugin.CallError{Plugin: t.Plugin, Kind: plugin.FailCanceled, Err: plugin.ErrNotBegun}
	} else {
		grace := runGrace(t.Timeout)
		code, out, err = s.cfg.Run(ctx, t.Plugin, plugin.Call{
			Export:  hostfuncs.ExportTaskRun,
			Task:    t.ID,
			Timeout: t.Timeout + grace,
			Cancel:  cancelReq,
			Encode: func(dst []byte, d int64) []byte {
				// Run's ctx ends at the timeout; the call is
				// interrupted grace later.
				if d > 0 {
					d -= int64(grace)
				}
				began, deadline = s.clk.Now(), d
				// How late the run started is known now: counted when it
				// starts, not when it ends, so that a long run's lateness
				// shows while it runs.
				if !r.manual && !lateSeen {
					lateSeen = true
					s.stats.late(s.dueNow().Sub(r.due))
				}
				return hostfuncs.AppendTaskRun(dst, hostfuncs.TaskRun{ID: t.ID, RunID: r.id, Deadline: d, Due: dueNS, Manual: r.manual})
			},
		})
	}
	if r.claimed && !r.manual && !r.lost.Load() && !r.canceled.Load() && plugin.KindOf(err) == plugin.FailCanceled && errors.Is(err, plugin.ErrNotBegun) {
		// The call did not begin either (the replica was asked to stop
		// while it waited for an instance, or a reload removed the
		// plugin): given back in the same way. Not one an operator
		// canceled: its due time is done with, recorded canceled.
		r.returned.Store(true)
		s.stats.running.Add(-1)
		s.unclaim(r, log)
		return
	}
	s.handoff.Add(1)
	r.returned.Store(true)
	queued := sync.OnceFunc(s.handoff.Done)
	defer queued()
	// A Run that returned an error once its timeout had passed (ctx.Err(),
	// or an error its ended ctx caused) timed out, as one the runtime
	// interrupted did.
	pastDeadline := deadline > 0 && !time.Now().Before(time.Unix(0, deadline))
	end := s.clk.Now()
	s.stats.running.Add(-1)
	if began.IsZero() {
		began = end
	}
	if !r.manual && !lateSeen {
		s.stats.late(s.dueNow().Sub(r.due))
	}
	outcome, failure, msg := s.outcome(r, code, out, err, pastDeadline, cancelReq.Seen())
	s.stats.ran(outcome, failure)
	s.logRun(log, t.Plugin, outcome, failure, msg, end.Sub(began))
	// A triggered run lost (this replica could not renew its lease in
	// time: it froze, or lost the database) did not end: its row is left
	// running and its lease to expire, as if this replica had died, so
	// that the rescuer runs it again (and its claim marks it lost).
	// Recorded lost, which released the lease, it left nothing behind
	// to run it again, as a scheduled run leaves its due time.
	lostTrigger := r.claimed && r.manual && failure == "lost"
	if !s.dead.Load() && !lostTrigger {
		f := finishItem{runID: r.id, plugin: t.Plugin, task: t.ID, outcome: outcome, failure: failure, err: msg, duration: end.Sub(began), leased: r.claimed}
		// The due time is done with, unless its run was lost: then it
		// stays due, and the replica that takes the task runs it again.
		if r.claimed && !r.manual && failure != "lost" {
			s.mu.Lock() // stepBack may move r.next
			f.due, f.next = r.due, r.next
			s.mu.Unlock()
		}
		s.complete(f, queued)
	}
	s.forget(r, true)
}

// runGrace is how long after a run's timeout, when its Run's ctx ends,
// the runtime interrupts the call: time for a Run that watches ctx to
// return ctx.Err() or clean up. A tenth of the timeout, at most a second.
// (With both at the same instant, whether Run saw its ctx end at all was
// a race, lost about half the time.)
func runGrace(timeout time.Duration) time.Duration { return min(timeout/10, time.Second) }

// forget drops r from the runs in progress and from its task, which then
// acts on its next due time: the one after r's when r ran, r's own when
// its claim was given back.
func (s *Scheduler) forget(r *run, ran bool) {
	s.mu.Lock()
	delete(s.active, r)
	if r.gone != nil {
		close(r.gone)
		r.gone = nil
	}
	if r.leaseStop != nil {
		r.leaseStop()
		r.leaseStop = nil
	}
	if tk := r.task; tk.run == r {
		tk.run = nil
		if ran {
			tk.afterRun(r)
		} else {
			tk.due = r.due
			tk.attempt = tk.nextAttempt()
		}
	}
	// A task dropped and registered again (reloads back to back) before
	// its claim was given back read next_run as the claim left it, a
	// period on: the due time given back is its due time.
	if !ran {
		if nt := s.tasks[r.task.key]; nt != nil && nt != r.task && nt.run == nil && nt.Scope == Global && r.due.Before(nt.due) {
			nt.due = r.due
			nt.attempt = nt.nextAttempt()
		}
	}
	s.mu.Unlock()
	s.wakeUp()
}

// unclaim undoes the claim of r, which never began (see execute), and
// forgets r.
func (s *Scheduler) unclaim(r *run, log *logrus.Entry) {
	if !s.dead.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := s.store(ctx)
		if err == nil {
			err = st.unclaim(ctx, s.cfg.Replica, unclaimItem{runID: r.id, plugin: r.spec.Plugin, task: r.spec.ID})
		}
		cancel()
		if err != nil {
			log.WithError(err).Warn("cannot give back a claimed run that did not start; its lease expires on its own")
		} else {
			log.Debug("gave back a claimed run that did not start")
		}
	}
	s.forget(r, false)
}

// logRun writes the line of a run that ended: debug when it succeeded,
// warn when it failed. The line is the runtime's, but the plugin decides
// how many there are (its tasks and their schedules) and what their errors
// say, so it takes from the plugin's log rate limit like the plugin's own
// lines: one over the limit is dropped and counted with them (in the
// plugin's summary line and greenroom_log_lines_dropped_total). The error
// is cut to maxLogErrorText bytes; the history keeps up to maxErrorText.
func (s *Scheduler) logRun(log *logrus.Entry, plugin, outcome, failure, msg string, d time.Duration) {
	level := logrus.WarnLevel
	if outcome == "succeeded" {
		level = logrus.DebugLevel
	}
	if !log.Logger.IsLevelEnabled(level) {
		return
	}
	if s.cfg.PluginLog != nil {
		if pl := s.cfg.PluginLog(plugin); pl != nil && !pl.Allow() {
			return
		}
	}
	f := log.WithFields(logrus.Fields{"outcome": outcome, "duration": d.Round(time.Microsecond).String()})
	if outcome == "succeeded" {
		f.Debug("task run ended")
		return
	}
	// msg was redacted before it was cut to maxErrorText, so this cut
	// cannot leave part of a secret either.
	f.WithFields(logrus.Fields{"failure": failure, "error": cutText(msg, maxLogErrorText)}).Warn("task run failed")
}

// outcome classifies how a run ended: "succeeded", or "failed" with the
// kind of failure and its message. pastDeadline: the run's timeout had
// passed when the call returned; stopSeen: the guest learnt that Stop
// asked it to stop (cancel_requested) before it returned.
func (s *Scheduler) outcome(r *run, code uint32, out []byte, err error, pastDeadline, stopSeen bool) (outcome, failure, msg string) {
	switch {
	case r.lost.Load() || r.fence.WasFenced():
		return "failed", "lost", "this replica could not renew the task's lease in time; the run was interrupted so that it never runs twice at once"
	case err == nil && stopSeen && !pastDeadline:
		// It returned after its ctx was cancelled for the shutdown (or
		// an operator's cancel), with or without an error: it did not
		// run to its end.
		msg = "the replica shut down during the run; it returned after its context was cancelled"
		if r.canceled.Load() {
			msg = "canceled by an operator (POST .../cancel) during the run; it returned after its context was cancelled"
		}
		if code != hostfuncs.HandleOK {
			if m := errorText(s.redact(out)); m != "" {
				msg += ": " + m
			}
		}
		return "failed", "canceled", errorText([]byte(msg))
	case err == nil && code == hostfuncs.HandleOK:
		return "succeeded", "", ""
	case err == nil:
		msg = errorText(s.redact(out))
		if msg == "" {
			msg = "the task returned an error"
		}
		if pastDeadline {
			return "failed", "timeout", errorText([]byte(fmt.Sprintf("ended at its timeout of %s: %s", r.spec.toldTimeout(), msg)))
		}
		return "failed", "error", msg
	}
	kind := plugin.KindOf(err)
	switch {
	case kind == plugin.FailTimeout && errors.Is(err, plugin.ErrStarting):
		return "failed", "timeout", fmt.Sprintf("did not run: no instance was ready within its timeout of %s (a new one was still starting)", r.spec.toldTimeout())
	case kind == plugin.FailTimeout:
		return "failed", "timeout", fmt.Sprintf("interrupted at its timeout of %s", r.spec.toldTimeout())
	case kind == plugin.FailCanceled && r.canceled.Load() && !errors.Is(err, plugin.ErrNotBegun):
		return "failed", "canceled", fmt.Sprintf("interrupted: canceled by an operator (POST .../cancel) during the run, which did not return within %s after it was asked to stop", cancelGrace)
	case kind == plugin.FailCanceled && r.canceled.Load() && errors.Is(err, plugin.ErrNotBegun):
		return "failed", "canceled", "canceled by an operator (POST .../cancel) before the run began"
	case kind == plugin.FailCanceled && s.stopRequested() && errors.Is(err, plugin.ErrNotBegun):
		return "failed", "canceled", "the replica shut down before the run began"
	case kind == plugin.FailCanceled && s.stopRequested():
		return "failed", "canceled", "interrupted: the replica shut down during the run, which did not return within the grace after it was asked to stop"
	case kind == plugin.FailCanceled && !errors.Is(err, plugin.ErrNotBegun):
		// Not Stop, nor a lost lease (above): the plugin's version closed
		// under the run, which only a reload's drain does. wazero's words
		// ("at the call's deadline") would read as the run's timeout.
		return "failed", "canceled", "interrupted: a reload replaced the plugin version it ran on, and the run did not end within server.shutdown_timeout, after which that version's calls are cut"
	case kind == 0:
		return "failed", "unavailable", errorText(s.redact([]byte(err.Error())))
	}
	return "failed", kind.String(), errorText(s.redact([]byte(err.Error())))
}

// redact replaces the secrets in a run's error text before errorText cuts
// it, so that a cut cannot leave part of one in the log or the history.
func (s *Scheduler) redact(b []byte) []byte {
	if r := logging.RedactorOf(s.log.Logger); r != nil {
		return r.Redact(bytes.Clone(b))
	}
	return b
}

// errorText makes b fit for the history: valid UTF-8 without NUL bytes
// (PostgreSQL's text refuses them; both become U+FFFD), at most
// maxErrorText bytes.
func errorText(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	return cutText(s, maxErrorText)
}

// cutText cuts the valid UTF-8 text s to at most n bytes, at a rune
// boundary, marking a cut with "..." (within the n bytes).
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:max(n-len("..."), 0)]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "..."
}

// complete hands a finished run to the writer and waits until it is
// recorded, so that the task's lease is released before it runs again.
func (s *Scheduler) complete(f finishItem, queued func()) {
	req := &finishReq{item: f, done: make(chan struct{})}
	select {
	case s.finishes <- req:
		queued()
	case <-s.writerDone:
		queued()
		return
	}
	select {
	case <-req.done:
	case <-s.writerDone:
	}
}

// writer records finished runs, batching those that end together.
func (s *Scheduler) writer() {
	defer close(s.writerDone)
	for {
		var batch []*finishReq
		select {
		case req := <-s.finishes:
			batch = append(batch, req)
		case <-s.writerStop:
			// Runs have all ended: record what is queued, then stop.
			for {
				select {
				case req := <-s.finishes:
					batch = append(batch, req)
					continue
				default:
				}
				break
			}
			s.flush(batch)
			s.recording.Wait()
			return
		}
	more:
		for len(batch) < maxBatch {
			select {
			case req := <-s.finishes:
				batch = append(batch, req)
			default:
				break more
			}
		}
		s.flush(batch)
	}
}

func (s *Scheduler) flush(batch []*finishReq) {
	// The ends of runs without a lease (local runs) are recorded here,
	// with three attempts; those of leased runs, which may wait out an
	// outage (record), in a goroutine of their own, so that local runs
	// ending meanwhile do not wait behind them for nothing (a review: a
	// local task due every second ran once in a 10 s outage).
	var leased, others []*finishReq
	for _, req := range batch {
		if req.item.leased {
			leased = append(leased, req)
		} else {
			others = append(others, req)
		}
	}
	done := func(reqs []*finishReq) {
		for _, req := range reqs {
			close(req.done)
		}
	}
	if s.dead.Load() {
		done(batch)
		return
	}
	s.record(itemsOf(others), false)
	done(others)
	if len(leased) > 0 {
		s.recording.Go(func() {
			s.record(itemsOf(leased), true)
			done(leased)
		})
	}
}

func itemsOf(reqs []*finishReq) []finishItem {
	items := make([]finishItem, len(reqs))
	for i, req := range reqs {
		items[i] = req.item
	}
	return items
}

// record records the ends of runs, retrying a failure. A run holding a
// lease whose end is not recorded is marked lost once the lease expires,
// and its due time, which it did complete, runs again: with waitOut, a
// database away for a moment (a restart, a failover) is waited for until
// the runs' leases would be given up (lostAfter; their renewal goes on
// meanwhile), not three quick attempts (1.2 s: an audit's PostgreSQL
// restart of 5 s ran a due time twice). A batch the server refuses (it
// answered, with an error retrying does not change) gets three attempts,
// then its runs are recorded one by one; so does a replica shutting down,
// and a batch of runs without leases.
func (s *Scheduler) record(items []finishItem, waitOut bool) {
	if len(items) == 0 {
		return
	}
	var err error
	giveUp := time.Now().Add(s.lostAfter())
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = s.finish(ctx, items)
		cancel()
		if err == nil {
			return
		}
		wait := min(time.Duration(attempt+1)*200*time.Millisecond, time.Second)
		if attempt >= 2 && (!waitOut || refused(err) || time.Now().Add(wait).After(giveUp) || s.isStopping()) {
			break
		}
		time.Sleep(wait)
	}
	failed := items
	if len(items) > 1 {
		// One run the database refuses must not leave the others of its
		// batch (other tasks', other plugins') running with their leases
		// held: record them one by one, all within one more timeout.
		failed = nil
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		for _, it := range items {
			if ferr := s.finish(ctx, []finishItem{it}); ferr != nil {
				failed, err = append(failed, it), ferr
			}
		}
		cancel()
	}
	if len(failed) > 0 {
		s.log.WithError(err).WithFields(logrus.Fields{"runs": len(failed), "first_run_id": failed[0].runID}).
			Error("cannot record the end of task runs; their leases expire on their own")
	}
}

// refused reports whether err is PostgreSQL answering a statement with an
// error of its own (a bad value, a constraint), which the same statement
// meets again, rather than a connection lost, a server shutting down or
// restarting, too many connections, or a conflict with another
// transaction.
func refused(err error) bool {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return false
	}
	switch {
	case strings.HasPrefix(pg.Code, "08"), strings.HasPrefix(pg.Code, "57P"), strings.HasPrefix(pg.Code, "40"), pg.Code == "53300":
		return false
	}
	return true
}

// isStopping reports whether Stop has begun.
func (s *Scheduler) isStopping() bool {
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

// finish records the end of runs in one transaction.
func (s *Scheduler) finish(ctx context.Context, items []finishItem) error {
	st, err := s.store(ctx)
	if err != nil {
		return err
	}
	if err := st.finish(ctx, items); err != nil {
		return fmt.Errorf("scheduler: record the end of %d run(s): %w", len(items), err)
	}
	return nil
}

// lostAfter is how long after r.leaseOK a run is interrupted unless a
// renewal came back meanwhile: 5/6 of the lease, so that it is interrupted
// a sixth of the lease before its lease can expire in the database and
// another replica take the task.
func (s *Scheduler) lostAfter() time.Duration { return s.cfg.Lease * 5 / 6 }

// leaseDeadline is the claimed run r's lease deadline on s.clk.Mono:
// lostAfter past r.leaseOK. s.mu is held.
func (s *Scheduler) leaseDeadline(r *run) time.Duration { return r.leaseOK + s.lostAfter() }

// monoNow is s.clk.Mono as a time (monoTime), the clock a run's fence
// goes by (hostfuncs.CancelRequest.SetFence): read by the wall clock, a
// step of this host's clock forward during a global run trapped its
// next host call as if it were past its lease deadline, and the run was
// recorded lost, its lease still held.
func (s *Scheduler) monoNow() time.Time { return monoTime(s.clk.Mono()) }

// monoTime is the instant d past a fixed origin: a reading of s.clk.Mono
// as a time.Time, only to be compared with others.
func monoTime(d time.Duration) time.Time { return time.Unix(0, 0).Add(d) }

// watchLease interrupts the claimed run r (as lost) at its lease deadline,
// lostAfter past r.leaseOK: at once if that has passed, else by a timer of
// its own, which rearms itself while renewals move r.leaseOK on. So the
// deadline holds for each run whatever the phase of the renewer's ticks.
// s.mu is held.
func (s *Scheduler) watchLease(r *run) {
	if _, running := s.active[r]; !running || r.lost.Load() {
		return
	}
	left := s.leaseDeadline(r) - s.clk.Mono()
	if left <= 0 {
		s.lose(r)
		return
	}
	r.leaseStop = s.clk.AfterFunc(left, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.watchLease(r)
	})
}

// lose marks r lost and interrupts it: another replica may hold its lease
// now, or soon. s.mu is held.
func (s *Scheduler) lose(r *run) {
	if r.lost.CompareAndSwap(false, true) && r.cancel != nil {
		r.cancel()
	}
}

// renewer extends the leases of the global runs in progress, every third
// of the lease (from Start, all in one statement), interrupts a run
// whose lease another replica holds, and cancels a run an operator
// canceled through another replica (CancelRun) that the canceller, which
// reads those requests more often, has not. A run whose renewals fail is
// interrupted at its lease deadline by watchLease.
func (s *Scheduler) renewer(tick ticker) {
	defer close(s.renewDone)
	every := s.cfg.Lease / 3
	defer tick.Stop()
	for {
		select {
		case <-s.renewCtx.Done():
			return
		case <-tick.Chan():
		}
		var held []*run
		s.mu.Lock()
		for r := range s.active {
			if r.claimed && r.spec.Scope == Global {
				held = append(held, r)
			}
		}
		s.mu.Unlock()
		if len(held) == 0 || s.dead.Load() {
			continue
		}
		ids := make([]string, len(held))
		for i, r := range held {
			ids[i] = r.id
		}
		sent := s.clk.Mono()
		ctx, cancel := context.WithTimeout(s.renewCtx, every)
		var ok map[string]bool
		st, err := s.store(ctx)
		if err == nil {
			ok, err = st.renew(ctx, s.cfg.Replica, s.cfg.Lease, ids)
		}
		cancel()
		if err != nil && s.renewCtx.Err() == nil {
			s.log.WithError(err).Warn("cannot renew task leases")
		}
		s.mu.Lock()
		now := s.clk.Mono()
		for _, r := range held {
			if _, running := s.active[r]; !running || r.lost.Load() {
				continue // ended (and released) or interrupted meanwhile
			}
			cancel, held := ok[r.id]
			switch {
			case err == nil && !held:
				// Another replica may hold it now (or soon): stop.
				s.lose(r)
			case now >= s.leaseDeadline(r):
				// The run's deadline passed before this renewal came
				// back, even if it succeeded: the run is interrupted all
				// the same (its timer may not have run yet), as a late
				// success would let it run on past the point where its
				// lease may have expired in the database.
				s.lose(r)
			case err == nil:
				// From when it was sent: the database set the new expiry
				// no sooner.
				r.leaseOK = max(r.leaseOK, sent)
				r.fence.SetFence(monoTime(s.leaseDeadline(r)))
				if cancel && !r.canceled.Load() {
					// An operator canceled it through another replica
					// (CancelRun).
					s.cancelRun(r)
					s.log.WithFields(logrus.Fields{"plugin": r.spec.Plugin, "task": r.spec.ID, "run_id": r.id}).
						Info("task run canceled through the admin API of another replica")
				}
			}
		}
		s.mu.Unlock()
	}
}

// cancelPoll is how often a replica running global runs reads the cancel
// requests sent for them through other replicas (canceller), at most.
const cancelPoll = 500 * time.Millisecond

// cancelEvery is cancelPoll, or a third of the lease when shorter (the
// renewal reads them as often).
func (s *Scheduler) cancelEvery() time.Duration { return min(cancelPoll, s.cfg.Lease/3) }

// canceller cancels the global runs in progress on this replica that an
// operator canceled through another replica (CancelRun,
// store.requestCancel): every cancelEvery while there are any, it reads
// which of them have a cancel request on their row, one statement for
// all. The renewer reads the same requests as it renews, every third of
// the lease (10 s by default): the cancel took that long to reach the
// run. A read that fails is let go (the next one, or the renewal, reads
// the request); the renewal stays the fallback. On the real clock: it
// keeps no lease.
func (s *Scheduler) canceller(every time.Duration) {
	defer s.loops.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-s.loopCtx.Done():
			return
		case <-tick.C:
		}
		if s.dead.Load() {
			continue
		}
		var ids []string
		byID := map[string]*run{}
		s.mu.Lock()
		for r := range s.active {
			if r.claimed && r.spec.Scope == Global && !r.canceled.Load() && !r.returned.Load() && !r.lost.Load() {
				ids = append(ids, r.id)
				byID[r.id] = r
			}
		}
		s.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(s.loopCtx, max(every, time.Second))
		st, err := s.store(ctx)
		var asked []string
		if err == nil {
			asked, err = st.cancelRequested(ctx, ids)
		}
		cancel()
		if err != nil {
			if s.loopCtx.Err() == nil {
				s.log.WithError(err).Debug("cannot read cancel requests; the lease renewal reads them too")
			}
			continue
		}
		s.mu.Lock()
		for _, id := range asked {
			r := byID[id]
			if r == nil || r.canceled.Load() {
				continue
			}
			if _, running := s.active[r]; !running {
				continue
			}
			s.cancelRun(r)
			s.log.WithFields(logrus.Fields{"plugin": r.spec.Plugin, "task": r.spec.ID, "run_id": r.id}).
				Info("task run canceled through the admin API of another replica")
		}
		s.mu.Unlock()
	}
}

// janitor tidies the history now and then: runs of dead replicas are
// marked lost, and only the last keepRuns runs of each task are kept.
func (s *Scheduler) janitor() {
	defer s.loops.Done()
	wait := tidyFirst
	for {
		select {
		case <-s.loopCtx.Done():
			return
		case <-time.After(wait):
		}
		wait = tidyEvery
		if s.dead.Load() {
			continue
		}
		ctx, cancel := context.WithTimeout(s.loopCtx, 30*time.Second)
		err := s.tidy(ctx)
		cancel()
		// No database, no history: no plugin is granted the scheduler.
		if err != nil && s.loopCtx.Err() == nil && !errors.Is(err, ErrNoDatabase) {
			s.log.WithError(err).Warn("cannot tidy the task history")
		}
	}
}

// tidy tidies the history once (store.tidy). The runs in progress on this
// replica are live, whatever their rows say: on SQLite, whose clock is
// the host's, a step of this host's clock forward past a run's timeout
// (a local run) or its lease (a global one, until its next renewal) by
// more than lostGrace made the history's tidying record this replica's
// own live run lost.
func (s *Scheduler) tidy(ctx context.Context) error {
	st, err := s.store(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	live := make([]string, 0, len(s.active))
	for r := range s.active {
		live = append(live, r.id)
	}
	s.mu.Unlock()
	return st.tidy(ctx, keepRuns, live)
}

// rescueEvery is how often a replica looks for triggered runs lost with
// their replica (rescuer): a quarter of the lease, within 100 ms and 5 s.
func (s *Scheduler) rescueEvery() time.Duration {
	return min(max(s.cfg.Lease/4, 100*time.Millisecond), 5*time.Second)
}

// rescuer runs again the triggered runs whose replica stopped renewing
// their lease (it died, froze, or lost the database) before they ended.
// A scheduled run leaves its due time behind it, still due, for the
// next replica to claim once the lease has expired; a triggered one
// holds the lease without a due time, so it needs this. As in Backstage,
// where a trigger makes the task due now and a run that never finished
// leaves it due, the first replica registering the task that sees the
// lease expired runs it again, as a trigger would (the claim marks the
// lost run lost); the others find the lease taken.
func (s *Scheduler) rescuer(tick ticker) {
	defer s.loops.Done()
	defer tick.Stop()
	for {
		select {
		case <-s.loopCtx.Done():
			return
		case <-tick.Chan():
		}
		if s.dead.Load() {
			continue
		}
		ctx, cancel := context.WithTimeout(s.loopCtx, 10*time.Second)
		st, err := s.store(ctx)
		var lost []orphan
		if err == nil {
			lost, err = st.orphans(ctx)
		}
		cancel()
		if err != nil {
			// No database: no plugin is granted the scheduler. Else
			// the claims fail too, and say so.
			if s.loopCtx.Err() == nil && !errors.Is(err, ErrNoDatabase) {
				s.claimFailed(err, "cannot look for triggered runs lost with their replica; retrying")
			}
			continue
		}
		for _, o := range lost {
			s.mu.Lock()
			t := s.tasks[key(o.plugin, o.task)]
			ours := t != nil && t.Scope == Global && t.synced && t.run == nil
			s.mu.Unlock()
			if !ours {
				continue
			}
			run, err := s.trigger(s.loopCtx, o.plugin, o.task, o.runID)
			if err != nil {
				continue // another replica took it, or this one stops
			}
			s.log.WithFields(logrus.Fields{"plugin": o.plugin, "task": o.task, "run_id": run.RunID, "lost_run_id": o.runID}).
				Warn("running again a triggered run whose replica stopped renewing its lease before it ended")
		}
	}
}

// newRunID returns a run id: 16 hex digits of the Unix time in
// microseconds, then 8 random ones. Ids sort by time (mostly), which keeps
// inserts into the history's primary key at its end.
func newRunID() string {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMicro()))
	rand.Read(b[8:])
	return hex.EncodeToString(b[:])
}
