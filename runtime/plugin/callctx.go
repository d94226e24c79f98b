package plugin

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

// callContext is the context of one call into an instance: it ends at the
// call's deadline (DeadlineExceeded), when the caller's context ends, when
// the call is interrupted (Canceled), or when the call returns, and when
// it ends during the call it raises the instance's interrupt flag.
//
// It replaces context.WithDeadline + context.AfterFunc +
// hostfuncs.WithInstance per call, which cost about 4 µs and eleven
// allocations (a timer, channels, two child maps, and the lock of the
// caller's context, which every call in flight shares). What a call needs
// beyond this one small object lives in the instance and is reused: the
// timer (callTimer), and the watch on the caller's context, made once per
// distinct caller's context (callers mostly pass the server's).
//
// It carries none of the caller's values (Value returns nil): nothing a
// call uses needs them, and delegating would let context.Cause find the
// caller's cancelCtx instead of this context's error. It implements
// AfterFunc, which the context package uses for contexts derived from it
// (a statement's timeout, an HTTP request's) instead of a goroutine each.
type callContext struct {
	in       *instance
	parent   context.Context
	deadline time.Time

	mu     sync.Mutex
	active bool // the call has not returned
	err    error
	done   chan struct{} // made when asked for
	afters []*afterFunc
}

type afterFunc struct{ f func() }

// callTimer is what an instance keeps for its calls' contexts.
//
// Its timer is not reset for every call, nor stopped when a call returns:
// a call's deadline is almost always later than the one the timer is
// already set for (the previous call's), so the call keeps that timer, and
// expire, when it fires, sets it again for the deadline of whatever call is
// running then. A call thus touches the timer only when its deadline is
// earlier than the pending one (a caller's shorter deadline, or no timer
// pending), and an instance sees one extra firing per timeout period
// instead of a reset and a stop per call (about 3% of a /ping's CPU under
// load, docs/benchmarks.md).
type callTimer struct {
	cur   atomic.Pointer[callContext] // the call in progress
	timer *time.Timer                 // made once; see armed

	// armed is when the timer is set to fire (Unix nanoseconds), 0 when
	// it is not set; it changes only with the timer, under mu.
	mu    sync.Mutex
	armed atomic.Int64

	// linked is the Done channel of a recent call's caller's context,
	// watched for cancellation through unlink's registration. Only the
	// goroutine making the instance's calls uses them. Keyed by the
	// channel, not the context: the server gives each call a context of
	// its own carrying values (plugin.WithArrival, WithAdmission) over
	// one cancellation, its base context, and a registration per call
	// cost two allocations and a turn of that base context's lock,
	// shared by every call in flight (BenchmarkPing: 18 to 29 allocations
	// a request with both).
	linked <-chan struct{}
	unlink func() bool
}

func (t *callTimer) init() {
	t.timer = time.AfterFunc(time.Hour, t.expire)
	t.timer.Stop()
}

// begin starts the context of a call under parent, ending at deadline.
func (t *callTimer) begin(in *instance, parent context.Context, deadline time.Time) *callContext {
	c := &callContext{in: in, parent: parent, deadline: deadline, active: true}
	// Stored before armed is read: an expire that finds armed set to a
	// time it then clears reads cur afterwards, so it sees c.
	t.cur.Store(c)
	if a := t.armed.Load(); a == 0 || a > deadline.UnixNano() {
		t.arm(deadline)
	}
	d := parent.Done()
	if d != t.linked {
		if t.unlink != nil {
			t.unlink()
		}
		t.linked, t.unlink = d, nil
		if d != nil {
			t.unlink = context.AfterFunc(parent, func() {
				if c := t.cur.Load(); c != nil && c.parent.Done() == d {
					c.cancel(c.parent.Err())
				}
			})
		}
	}
	if d != nil {
		select {
		case <-d:
			c.cancel(parent.Err())
		default:
		}
	}
	return c
}

// end ends c's call. It returns the context's error as the call returned;
// when not nil, the interrupt flag was raised and the instance must not
// serve again. Whoever still holds c sees it canceled from now on.
func (t *callTimer) end(c *callContext) error {
	t.cur.Store(nil) // the timer stays set; see callTimer
	c.mu.Lock()
	err := c.err
	c.active = false
	if err == nil {
		c.err = context.Canceled
		if c.done != nil {
			close(c.done)
		}
	}
	c.unlockAndRunAfters()
	return err
}

// close releases the timer and the watch on the caller's context; the
// instance is being closed.
func (t *callTimer) close() {
	t.timer.Stop()
	if t.unlink != nil {
		t.unlink()
	}
}

// cancel interrupts the call in progress, if any.
func (t *callTimer) cancel(err error) {
	if c := t.cur.Load(); c != nil {
		c.cancel(err)
	}
}

// arm sets the timer for at unless it is already set for an earlier time.
func (t *callTimer) arm(at time.Time) {
	t.mu.Lock()
	if a := t.armed.Load(); a == 0 || a > at.UnixNano() {
		t.armed.Store(at.UnixNano())
		t.timer.Reset(time.Until(at))
	}
	t.mu.Unlock()
}

// expire is the timer's function. It cancels the call in progress if its
// deadline has passed; if the call's deadline is still ahead (the timer
// was set for an earlier call's), it sets the timer for it; with no call
// in progress it leaves the timer unset.
func (t *callTimer) expire() {
	t.mu.Lock()
	t.armed.Store(0)
	c := t.cur.Load()
	if c == nil {
		t.mu.Unlock()
		return
	}
	if wait := time.Until(c.deadline); wait > 0 {
		t.armed.Store(c.deadline.UnixNano())
		t.timer.Reset(wait)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	c.cancel(context.DeadlineExceeded)
}

// cancel ends the context with err; if the call is still running, it
// raises the instance's interrupt flag. An ended context stays as it is.
func (c *callContext) cancel(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	if in := c.in; c.active && in.flag != nil {
		in.flag.Set(1)
		in.fuel.Set(1) // check at the next loop iteration or call
	}
	if c.done != nil {
		close(c.done)
	}
	c.unlockAndRunAfters()
}

// unlockAndRunAfters takes the functions registered with AfterFunc,
// unlocks c.mu and starts them.
func (c *callContext) unlockAndRunAfters() {
	afters := c.afters
	c.afters = nil
	c.mu.Unlock()
	for _, a := range afters {
		go a.f()
	}
}

func (c *callContext) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *callContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		}
	}
	return c.done
}

func (c *callContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *callContext) Value(any) any { return nil }

// GreenroomInstance gives host functions the call's instance state (see
// hostfuncs.InstanceContext).
func (c *callContext) GreenroomInstance() *hostfuncs.Instance { return &c.in.state }

// AfterFunc arranges for f to run in its own goroutine when the context
// ends; stop cancels that unless it already happened.
func (c *callContext) AfterFunc(f func()) (stop func() bool) {
	a := &afterFunc{f: f}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	c.afters = append(c.afters, a)
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		i := slices.Index(c.afters, a)
		if i < 0 {
			return false
		}
		c.afters = slices.Delete(c.afters, i, i+1)
		return true
	}
}
