package plugin

import (
	"context"
	"fmt"
	goruntime "runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// pool hands out instances, one call at a time each, and never holds more
// than max of them (busy, idle or being created).
//
// A token (of tokens) is the right to own one instance; idle holds instances
// nobody owns, as a stack: the instance released last is handed out first,
// while its memory and the code it ran are still in the CPU's caches
// (rotating through every instance measurably slowed each call). acquire takes a token (waiting at most the queue timeout),
// then an idle instance or, if there is none, a new one. release returns the
// instance and the token. Discarded and retired instances are closed;
// a retired one is closed and replaced in the background (see renew).
type pool struct {
	p            *Plugin
	tokens       *Tokens
	queueTimeout time.Duration

	// renewing counts retired instances whose successors are starting
	// while they keep their tokens (renew).
	renewing atomic.Int32

	mu     sync.Mutex
	idle   []*instance // guarded by mu; a stack
	closed bool
	live   int // instances that exist (busy, idle or being created)
	all    map[*instance]struct{}
	done   chan struct{}
	wg     sync.WaitGroup // instances being started or replaced in the background
	// starts is the context instances start under: close cancels it,
	// which interrupts an initializer still running (its instance could
	// never serve).
	starts     context.Context
	stopStarts context.CancelFunc

	c *Counters
}

// newPool makes a pool drawing on tok, or on tokens of its own for max
// instances when tok is nil.
func newPool(p *Plugin, tok *Tokens, max int, queueTimeout time.Duration) *pool {
	if tok == nil {
		tok = NewTokens(max)
	}
	starts, stopStarts := context.WithCancel(context.Background())
	return &pool{
		p:            p,
		c:            p.spec.Counters,
		tokens:       tok,
		queueTimeout: queueTimeout,
		done:         make(chan struct{}),
		all:          map[*instance]struct{}{},
		starts:       starts,
		stopStarts:   stopStarts,
	}
}

// track records a created instance among the pool's live ones.
func (pl *pool) track(in *instance) {
	pl.mu.Lock()
	pl.all[in] = struct{}{}
	pl.mu.Unlock()
}

// acquire returns an instance for the caller's exclusive use, and the
// deadline of the call it is for: timeout from the moment the caller got
// the instance. A caller that finds none idle waits for a new one to start
// at most timeout, then gives up with FailTimeout (ErrStarting); the
// instance goes on starting in the background (bounded by the init
// timeout) and is left idle for a later call.
func (pl *pool) acquire(ctx context.Context, timeout time.Duration) (*instance, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return nil, time.Time{}, &CallError{Plugin: pl.p.id, Kind: FailCanceled, Err: err}
	}
	if !pl.tokens.tryTake(arrivalOf(ctx)) {
		if err := pl.wait(ctx, timeout); err != nil {
			return nil, time.Time{}, err
		}
	}
	if in := pl.pop(); in != nil {
		return in, time.Now().Add(timeout), nil
	}
	// Counted as live, and as work close waits for, under the lock that
	// close takes to mark the pool closed.
	pl.mu.Lock()
	if pl.closed {
		pl.mu.Unlock()
		pl.tokens.give()
		return nil, time.Time{}, &CallError{Plugin: pl.p.id, Kind: FailClosed, Err: ErrClosed}
	}
	pl.live++
	pl.wg.Add(1)
	pl.mu.Unlock()

	// The instance starts in a goroutine of its own; the caller waits for
	// it at most timeout. Whoever is second (the caller giving up, or the
	// start finishing) decides, under mu, who owns the instance.
	type created struct {
		in  *instance
		err error
	}
	var (
		mu        sync.Mutex
		abandoned bool
		ch        = make(chan created, 1)
	)
	go func() {
		defer pl.wg.Done()
		in, err := pl.p.newInstance(pl.starts)
		if err == nil {
			pl.c.Created.Add(1)
			pl.track(in)
		}
		mu.Lock()
		defer mu.Unlock()
		if !abandoned {
			ch <- created{in, err}
			return
		}
		// The caller gave up: the instance waits idle for the next call.
		defer pl.tokens.give()
		if err != nil {
			pl.remove()
			if pl.starts.Err() == nil { // not the pool closing
				pl.p.log.WithError(err).Warn("a new instance, which a call stopped waiting for, could not be created")
			}
			return
		}
		pl.park(in)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	var c created
	select {
	case c = <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
	if c.in == nil && c.err == nil {
		mu.Lock()
		select {
		case c = <-ch: // it started as the caller gave up: take it
		default:
			abandoned = true
		}
		mu.Unlock()
	}
	switch {
	case abandoned && ctx.Err() != nil:
		return nil, time.Time{}, &CallError{Plugin: pl.p.id, Kind: FailCanceled, Err: ctx.Err()}
	case abandoned:
		return nil, time.Time{}, &CallError{Plugin: pl.p.id, Kind: FailTimeout, Err: fmt.Errorf("%w (waited %s; an initializer may run for %s), and will serve a later call", ErrStarting, toldDuration(timeout, pl.p.spec.Limits.TimeoutSecret), toldDuration(pl.p.spec.Limits.InitTimeout, pl.p.spec.Limits.TimeoutSecret))}
	case c.err != nil && pl.starts.Err() != nil:
		// The pool closed while the instance started (a reload swapped
		// in a new version, or the plugin was removed): closed, as for a
		// caller that arrived later, so that the call goes to the new
		// version (or gets 404).
		pl.remove()
		pl.tokens.give()
		return nil, time.Time{}, &CallError{Plugin: pl.p.id, Kind: FailClosed, Err: ErrClosed}
	case c.err != nil:
		pl.remove()
		pl.tokens.give()
		return nil, time.Time{}, &CallError{Plugin: pl.p.id, Kind: FailInstantiate, Err: c.err}
	}
	return c.in, time.Now().Add(timeout), nil
}

// wait blocks for a token until the queue timeout. While a retired or
// discarded instance's successor starts (renew holds its token), a caller
// whose queue timeout passes waits on, at most timeout more, as a caller
// that finds no idle instance waits for a new one: the instance it waits
// for is not busy, it is being replaced (with one instance, or an
// initializer slower than queue_timeout, every retirement answered 503
// plugin_busy to a lone caller). Past that, when every instance is still
// one starting, it fails as such a caller does (FailTimeout, ErrStarting);
// when any serves a call, as busy.
func (pl *pool) wait(ctx context.Context, timeout time.Duration) error {
	pl.c.QueueWaits.Add(1)
	start := time.Now()
	t := time.NewTimer(pl.queueTimeout)
	defer func() {
		t.Stop()
		pl.c.QueueNanos.Add(int64(time.Since(start)))
	}()
	w := pl.tokens.enqueue(arrivalOf(ctx))
	extended := false
	for {
		select {
		case <-w.granted:
			return nil
		case <-t.C:
			if !extended && pl.renewing.Load() > 0 {
				extended = true
				t.Reset(timeout)
				continue
			}
			if pl.tokens.leave(w) {
				return nil // granted as the timer fired
			}
			if extended && int(pl.renewing.Load()) >= pl.tokens.count() {
				// Every instance is one still starting, none serving a
				// call: the answer of a caller that waited its timeout for
				// a new instance of its own (504). With any serving a call,
				// the pool is busy (503), as without replacements.
				return &CallError{Plugin: pl.p.id, Kind: FailTimeout, Err: fmt.Errorf("%w (waited %s for an instance being replaced; an initializer may run for %s), and will serve a later call", ErrStarting, toldDuration(pl.queueTimeout+timeout, pl.p.spec.Limits.TimeoutSecret || pl.p.spec.Limits.QueueTimeoutSecret), toldDuration(pl.p.spec.Limits.InitTimeout, pl.p.spec.Limits.TimeoutSecret))}
			}
			pl.c.Rejected.Add(1)
			return &CallError{Plugin: pl.p.id, Kind: FailBusy, Err: ErrBusy}
		case <-pl.done:
			if pl.tokens.leave(w) {
				pl.tokens.give()
			}
			return &CallError{Plugin: pl.p.id, Kind: FailClosed, Err: ErrClosed}
		case <-ctx.Done():
			if pl.tokens.leave(w) {
				pl.tokens.give()
			}
			return &CallError{Plugin: pl.p.id, Kind: FailCanceled, Err: ctx.Err()}
		}
	}
}

// Tokens are the rights to run a call on an instance of a plugin, max of
// them, shared by its versions (Spec.Tokens): while a reload's new version
// serves beside the old one finishing its calls, both together run at most
// limits.instances calls (each with its own tokens, the overlap ran up to
// that many more at each reload). A caller that finds none free waits in
// line, ordered by when its call arrived rather than by when it began to
// wait: a call that a reload moved from the version it waited on
// (Runtime.Handle, ErrMoved) keeps its place, ahead of calls that arrived
// after it. (Re-queued at the back, such calls lost their place at each
// of several reloads in a row, and some waited out their queue timeout:
// 503 plugin_busy.) A token given back goes straight to the first in line.
type Tokens struct {
	mu      sync.Mutex
	held    int
	max     int
	waiters []*tokenWaiter // by arrival, earliest first
	onGrant func(arrival time.Time)
}

// OnGrant has f called, in order, with the arrival of each call handed a
// token (WithArrival; when its attempt began without), as it is handed
// one: the order the line serves calls in, for tests. f runs under the
// tokens' lock; it must not block or use them.
func (t *Tokens) OnGrant(f func(arrival time.Time)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.onGrant = f
}

// granted reports a token handed to the call that arrived at arrival.
// Under t.mu.
func (t *Tokens) granted(arrival time.Time) {
	if t.onGrant != nil {
		t.onGrant(arrival)
	}
}

// NewTokens returns tokens for max calls at once.
func NewTokens(max int) *Tokens { return &Tokens{max: max} }

// SetMax changes how many calls may run at once: more hands tokens to
// those waiting; fewer takes effect as calls end.
func (t *Tokens) SetMax(max int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.max = max
	for t.held < t.max && len(t.waiters) > 0 {
		t.held++
		t.handOver()
	}
}

// handOver gives a token to the first in line.
func (t *Tokens) handOver() {
	w := t.waiters[0]
	t.waiters[0] = nil
	t.waiters = t.waiters[1:]
	t.granted(w.arrival)
	w.granted <- struct{}{}
}

type tokenWaiter struct {
	arrival time.Time
	granted chan struct{} // receives the token handed over
}

// tryTake takes a token for a call that arrived at arrival if one is
// free and nobody waits for it.
func (t *Tokens) tryTake(arrival time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held < t.max && len(t.waiters) == 0 {
		t.held++
		t.granted(arrival)
		return true
	}
	return false
}

// enqueue puts a call that arrived at arrival in line; its granted
// channel receives the token when its turn comes (at once if one is
// free).
func (t *Tokens) enqueue(arrival time.Time) *tokenWaiter {
	w := &tokenWaiter{arrival: arrival, granted: make(chan struct{}, 1)}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held < t.max && len(t.waiters) == 0 {
		t.held++
		t.granted(arrival)
		w.granted <- struct{}{}
		return w
	}
	i := len(t.waiters)
	for i > 0 && t.waiters[i-1].arrival.After(arrival) {
		i--
	}
	t.waiters = slices.Insert(t.waiters, i, w)
	return w
}

// leave takes w out of the line. It reports whether w was handed a token
// meanwhile, which its caller then holds.
func (t *Tokens) leave(w *tokenWaiter) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i := slices.Index(t.waiters, w); i >= 0 {
		t.waiters = slices.Delete(t.waiters, i, i+1)
		return false
	}
	return true
}

// give returns a token: to the first in line, or to the free ones (and
// to those only while more are held than max allows now).
func (t *Tokens) give() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.waiters) > 0 && t.held <= t.max {
		t.handOver()
		return
	}
	t.held--
}

// capacity is max.
func (t *Tokens) capacity() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.max
}

// count is how many tokens are held.
func (t *Tokens) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.held
}

type arrivalKey struct{}

// WithArrival returns ctx for a call that arrived at t, before this
// attempt of it: a call a reload moved to the plugin's new version
// waits there ahead of the calls that arrived after it.
func WithArrival(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, arrivalKey{}, t)
}

type admissionKey struct{}

// Admission is how a call let in under a decision (its credential, the
// routes open) that a reload may put out of date while the call waits for
// an instance is let in again (WithAdmission).
type Admission interface {
	// Admit decides again if the decision is out of date, and returns
	// nil at once if not; a non-nil error is the refusal.
	Admit() error
}

// WithAdmission returns ctx for a call let in under a decision that a
// reload may put out of date while the call waits for an instance. Once
// the call has its instance, before any guest code runs and before its
// input is encoded, a.Admit is called, with the instance held. A call it
// refuses does not run; it gets ErrReadmit, and the instance goes to the
// next call. The call keeps its instance while Admit decides: given back
// to be let in again, it went to the call next in line, one that arrived
// later, and under reloads one after another the calls waiting longest
// were served last. The decision is the call's, within its
// limits.timeout: a credential checked again in microseconds, unless it
// needs a JWKS fetch. (An interface rather than a func: the server's
// admission is one object per call, where a closure over its variables
// cost four allocations a request.)
func WithAdmission(ctx context.Context, a Admission) context.Context {
	return context.WithValue(ctx, admissionKey{}, a)
}

// readmit decides again whether ctx's call may run (WithAdmission).
func readmit(ctx context.Context) error {
	if a, ok := ctx.Value(admissionKey{}).(Admission); ok {
		return a.Admit()
	}
	return nil
}

func arrivalOf(ctx context.Context) time.Time {
	if t, ok := ctx.Value(arrivalKey{}).(time.Time); ok {
		return t
	}
	return time.Now()
}

// add counts a new instance unless the pool is closed.
func (pl *pool) add() bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.closed {
		return false
	}
	pl.live++
	return true
}

func (pl *pool) remove() {
	pl.mu.Lock()
	pl.live--
	pl.mu.Unlock()
}

// release gives back an instance that completed its call normally. It is
// retired instead when it has served its quota of calls or its memory grew
// past the retirement mark.
func (pl *pool) release(in *instance) {
	lim := pl.p.spec.Limits
	switch {
	case lim.MaxRequests > 0 && in.calls >= lim.MaxRequests,
		lim.RetireMemory > 0 && in.memorySize() > lim.RetireMemory:
		pl.c.Retired.Add(1)
		pl.renew(in, "retired")
		return
	}
	pl.park(in)
	pl.tokens.give()
}

// park makes in idle, or closes it if the pool is closed.
func (pl *pool) park(in *instance) {
	pl.mu.Lock()
	if !pl.closed {
		pl.idle = append(pl.idle, in)
		pl.mu.Unlock()
		return
	}
	pl.mu.Unlock()
	pl.drop(in)
}

// discard closes an instance that failed; it is never reused. Its
// successor is created in the background, as a retired instance's is
// (renew), so that the plugin's next call finds an instance ready rather
// than waiting for one to start (a plugin whose initializer is slower
// than its timeout answered 504 to the calls after a crash).
func (pl *pool) discard(in *instance) {
	pl.c.Discarded.Add(1)
	pl.renew(in, "discarded")
}

func (pl *pool) drop(in *instance) {
	in.close()
	pl.mu.Lock()
	delete(pl.all, in)
	pl.mu.Unlock()
	pl.remove()
}

// interrupt ends the calls still running in a closed pool (their contexts
// are cancelled: guest code traps at its next check, host calls return)
// and waits for their instances to come back and be closed, at most
// interruptWait. It returns how many did not.
func (pl *pool) interrupt() int {
	pl.mu.Lock()
	for in := range pl.all {
		in.ct.cancel(context.Canceled)
	}
	pl.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), interruptWait)
	defer cancel()
	return pl.close(ctx)
}

// interruptWait bounds how long an interrupted call may take to come
// back: a guest with checks traps within microseconds; one without
// (limits.interruptible = false) looping never does, and the shutdown or
// reload goes on without it after this (docs/operations.md).
const interruptWait = time.Second

// renew closes a retired (or discarded) instance and creates its
// successor in the background, keeping the old one's token meanwhile: a
// waiting caller gets the next instance that frees up instead of creating
// one itself, so no request waits for an instance to be created or closed
// (several milliseconds for a Go guest) because another one was retired.
// The successor is parked idle; if it cannot be created, the next caller
// that finds no idle instance tries again.
func (pl *pool) renew(old *instance, why string) {
	pl.mu.Lock()
	if pl.closed {
		pl.mu.Unlock()
		pl.drop(old)
		pl.tokens.give()
		return
	}
	pl.wg.Add(1)
	pl.renewing.Add(1)
	pl.mu.Unlock()
	go func() {
		defer pl.wg.Done()
		defer func() {
			pl.tokens.give()
			pl.renewing.Add(-1)
		}()
		pl.drop(old)
		if !pl.add() {
			return
		}
		in, err := pl.p.newInstance(pl.starts)
		if err != nil {
			pl.remove()
			if pl.starts.Err() == nil { // not the pool closing
				pl.p.log.WithError(err).Warn("could not replace a " + why + " instance")
			}
			return
		}
		pl.c.Created.Add(1)
		pl.track(in)
		pl.park(in)
	}()
}

// warm creates n instances now and leaves them idle. It takes no token:
// a reload warms its new version while the old one's calls still hold
// theirs, which they give back to the calls on the new version. The first
// instance starts alone (its initializer registers the version's routes,
// tasks and migrations first); the others then start together, a few at
// a time: one after the other, a reload of a plugin whose init took 3 s
// and that had 8 live instances took 25 s (an audit).
func (pl *pool) warm(ctx context.Context, n int) error {
	// An instance starts under the pool's context (close interrupts it),
	// and ctx's: a load given up is not waited for.
	starts, cancel := context.WithCancel(pl.starts)
	defer cancel()
	defer context.AfterFunc(ctx, cancel)()
	var retireWarned atomic.Bool // said once per load, not per instance
	one := func() error {
		if !pl.add() {
			return &CallError{Plugin: pl.p.id, Kind: FailClosed, Err: ErrClosed}
		}
		in, err := pl.p.newInstance(starts)
		if err != nil {
			pl.remove()
			if ctx.Err() != nil {
				return &CallError{Plugin: pl.p.id, Kind: FailCanceled, Err: ctx.Err()}
			}
			return &CallError{Plugin: pl.p.id, Kind: FailInstantiate, Err: err}
		}
		if err := pl.p.overRetireMemory(in); err != nil && retireWarned.CompareAndSwap(false, true) {
			pl.p.log.Warn(err.Error())
		}
		pl.c.Created.Add(1)
		pl.track(in)
		pl.park(in)
		return nil
	}
	if n < 1 {
		return nil
	}
	if err := one(); err != nil {
		return err
	}
	if f := pl.p.spec.FirstInstance; f != nil {
		f()
	}
	rest := make(chan struct{}, n-1)
	for range n - 1 {
		rest <- struct{}{}
	}
	close(rest)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range min(n-1, max(4, goruntime.GOMAXPROCS(0))) {
		wg.Go(func() {
			for range rest {
				if err := one(); err != nil {
					once.Do(func() { first = err; cancel() }) // the others end too
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// close stops handing out instances, closes the idle ones and waits until
// the busy ones come back (they are closed on release) or ctx ends. It
// reports how many instances were still busy when ctx ended.
func (pl *pool) close(ctx context.Context) int {
	pl.mu.Lock()
	if !pl.closed {
		pl.closed = true
		close(pl.done)
	}
	pl.mu.Unlock()
	// Instances still starting would never serve: their initializers are
	// interrupted, and waited for as long as ctx allows (one that cannot
	// be interrupted, limits.interruptible = false, is left running).
	pl.stopStarts()
	started := make(chan struct{})
	go func() { pl.wg.Wait(); close(started) }()
	select {
	case <-started:
	case <-ctx.Done():
		// An interrupted start ends at once: give it a moment even past
		// ctx's end (a crash's replacement may have begun just before),
		// so that it is not reported as a call still running.
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-started:
		case <-t.C:
		}
		t.Stop()
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		for in := pl.pop(); in != nil; in = pl.pop() {
			pl.drop(in)
		}
		pl.mu.Lock()
		live := pl.live
		pl.mu.Unlock()
		if live == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return live
		case <-tick.C:
		}
	}
}

// Stats are a pool's figures at one moment.
type Stats struct {
	Max        int   `json:"max"`
	Live       int   `json:"live"`
	Idle       int   `json:"idle"`
	Busy       int   `json:"busy"`
	Created    int64 `json:"created"`
	Discarded  int64 `json:"discarded"`
	Retired    int64 `json:"retired"`
	QueueWaits int64 `json:"queue_waits"`
	Rejected   int64 `json:"rejected"`
	QueueTime  int64 `json:"queue_wait_ns"`
}

func (pl *pool) stats() Stats {
	pl.mu.Lock()
	live := pl.live
	pl.mu.Unlock()
	idle := pl.idleCount()
	// An instance starting in the background (a retired or discarded
	// one's successor) is live but serves no call yet.
	starting := int(pl.renewing.Load())
	return Stats{
		Max:        pl.tokens.capacity(),
		Live:       live,
		Idle:       idle,
		Busy:       max(live-idle-starting, 0),
		Created:    pl.c.Created.Load(),
		Discarded:  pl.c.Discarded.Load(),
		Retired:    pl.c.Retired.Load(),
		QueueWaits: pl.c.QueueWaits.Load(),
		Rejected:   pl.c.Rejected.Load(),
		QueueTime:  pl.c.QueueNanos.Load(),
	}
}

// pop takes the most recently parked idle instance, or returns nil.
func (pl *pool) pop() *instance {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	n := len(pl.idle)
	if n == 0 {
		return nil
	}
	in := pl.idle[n-1]
	pl.idle[n-1] = nil
	pl.idle = pl.idle[:n-1]
	return in
}

func (pl *pool) idleCount() int {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return len(pl.idle)
}
