package plugin

import (
	"context"
	"slices"
	"sync"
	"time"
)

// callContext is the context of the call in progress on an instance: it
// ends at the call's deadline (DeadlineExceeded), when the caller's context
// ends, or when the call is interrupted (Canceled), and then raises the
// instance's interrupt flag. An instance keeps one and reuses it from call
// to call, so that a call allocates nothing for its deadline:
// context.WithDeadline plus context.AfterFunc cost about 4 µs per call
// (a timer, a channel, two child maps, and the lock of the caller's
// context, which every call in flight shares).
//
// It carries none of the caller's values (Value returns nil): nothing a
// call uses needs them, and delegating would let context.Cause find the
// caller's cancelCtx instead of this context's error.
type callContext struct {
	in    *instance
	timer *time.Timer // calls expire; made once, reset per call

	mu       sync.Mutex
	active   bool // a call is in progress
	deadline time.Time
	err      error
	done     chan struct{} // made when asked for
	afters   []*afterFunc  // see AfterFunc

	// linked is the caller's context of the latest call, watched for
	// cancellation by unlink's registration; callers mostly pass the same
	// one (the server's), so registering is rare. unlink is only used by
	// the goroutine making calls.
	linked context.Context
	unlink func() bool
}

type afterFunc struct{ f func() }

func newCallContext(in *instance) *callContext {
	c := &callContext{in: in}
	c.timer = time.AfterFunc(time.Hour, c.expire)
	c.timer.Stop()
	return c
}

// begin starts a call under parent, ending at deadline.
func (c *callContext) begin(parent context.Context, deadline time.Time) {
	c.mu.Lock()
	c.active, c.err, c.done, c.deadline = true, nil, nil, deadline
	c.mu.Unlock()
	c.timer.Reset(time.Until(deadline))
	if parent != c.linked {
		if c.unlink != nil {
			c.unlink()
		}
		c.mu.Lock()
		c.linked = parent
		c.mu.Unlock()
		c.unlink = nil
		if parent.Done() != nil {
			c.unlink = context.AfterFunc(parent, func() {
				c.mu.Lock()
				current := c.linked == parent
				c.mu.Unlock()
				if current {
					c.cancel(parent.Err())
				}
			})
		}
	}
	if d := parent.Done(); d != nil {
		select {
		case <-d:
			c.cancel(parent.Err())
		default:
		}
	}
}

// end ends the call. It returns the context's error as the call ended;
// when not nil, the interrupt flag was raised and the instance must not
// serve again. Whoever still holds the context sees it canceled.
func (c *callContext) end() error {
	c.timer.Stop()
	c.mu.Lock()
	err := c.err
	c.active = false
	if err == nil && c.done != nil {
		close(c.done)
	}
	c.unlockAndRunAfters()
	return err
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

// close releases the timer and the watch on the caller's context; the
// instance is being closed.
func (c *callContext) close() {
	c.timer.Stop()
	if c.unlink != nil {
		c.unlink()
	}
}

// expire is the timer's function. A timer that fired for an earlier call
// (its Stop came too late) finds the current call's deadline ahead and
// does nothing.
func (c *callContext) expire() {
	c.mu.Lock()
	early := time.Now().Before(c.deadline)
	c.mu.Unlock()
	if !early {
		c.cancel(context.DeadlineExceeded)
	}
}

// cancel ends the call in progress with err and raises the instance's
// interrupt flag; without a call in progress it does nothing.
func (c *callContext) cancel(err error) {
	c.mu.Lock()
	if !c.active || c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	if in := c.in; in.flag != nil {
		in.flag.Set(1)
		in.fuel.Set(1) // check at the next loop iteration or call
	}
	if c.done != nil {
		close(c.done)
	}
	c.unlockAndRunAfters()
}

func (c *callContext) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, true
}

func (c *callContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil || !c.active {
			close(c.done)
		}
	}
	return c.done
}

func (c *callContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && !c.active {
		return context.Canceled
	}
	return c.err
}

func (c *callContext) Value(any) any { return nil }

// AfterFunc arranges for f to run in its own goroutine when the call ends
// or is canceled. The context package uses it for contexts derived from
// this one (a statement's timeout, an HTTP request's), which would
// otherwise each need a goroutine to watch Done.
func (c *callContext) AfterFunc(f func()) (stop func() bool) {
	a := &afterFunc{f: f}
	c.mu.Lock()
	if c.err != nil || !c.active {
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
