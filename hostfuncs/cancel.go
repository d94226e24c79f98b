package hostfuncs

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// CancelRequest asks one call into a guest to stop on its own: once its
// channel is closed, cancel_requested answers 1 during the call, and a
// guest that asks (the Go SDK does, while a task's Run runs) ends the
// work's context. It is cooperative: the host still interrupts the call
// when it chooses to (the scheduler does after a grace).
type CancelRequest struct {
	done <-chan struct{}
	seen atomic.Bool

	// Fencing (SetFence): after fence (Unix nanoseconds on now's clock;
	// 0 for none) the call's host calls trap with ErrFenced instead of
	// acting, and fenced records that one did.
	now    func() time.Time
	fence  atomic.Int64
	fenced atomic.Bool
}

// ErrFenced is the trap of a host call made after the call's fence: what
// let it run (a global task's lease) may have passed to another replica.
var ErrFenced = errors.New("host call refused: the run's lease may have passed to another replica (this replica was held up past its lease deadline)")

// NewFencedCancelRequest is NewCancelRequest for a call that can be
// fenced (SetFence) on the clock now.
func NewFencedCancelRequest(done <-chan struct{}, now func() time.Time) *CancelRequest {
	return &CancelRequest{done: done, now: now}
}

// SetFence sets, or moves, the instant after which the call's host calls
// trap rather than act (on the clock the request was made with; nothing
// for a request made without one). A scheduler sets it to a global run's
// lease deadline, which its renewals move on: a replica whose process was
// held up (stopped, starved) past it, and whose timers have not yet
// interrupted the run, can then no longer write a log line, run a
// statement or read a URL on the run's behalf while another replica runs
// the task.
func (c *CancelRequest) SetFence(at time.Time) {
	if c != nil {
		c.fence.Store(at.UnixNano())
	}
}

// FenceLeft returns the fence (as SetFence set it) and how long is left
// until it on the request's clock; ok is false when there is none.
func (c *CancelRequest) FenceLeft() (fence int64, left time.Duration, ok bool) {
	if c == nil || c.now == nil {
		return 0, 0, false
	}
	f := c.fence.Load()
	if f == 0 {
		return 0, 0, false
	}
	return f, time.Duration(f - c.now().UnixNano()), true
}

// Fenced reports whether the call is past its fence, and records it.
func (c *CancelRequest) Fenced() bool {
	if c == nil || c.now == nil {
		return false
	}
	f := c.fence.Load()
	if f == 0 || c.now().UnixNano() <= f {
		return false
	}
	c.fenced.Store(true)
	return true
}

// WasFenced reports whether a host call of the call was refused past its
// fence.
func (c *CancelRequest) WasFenced() bool { return c != nil && c.fenced.Load() }

// NewCancelRequest returns a request that is made when done is closed.
func NewCancelRequest(done <-chan struct{}) *CancelRequest {
	return &CancelRequest{done: done}
}

// Requested reports whether the cancellation was requested.
func (c *CancelRequest) Requested() bool {
	if c == nil {
		return false
	}
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Done returns a channel that is closed when the cancellation is
// requested (nil, never closed, for a nil request).
func (c *CancelRequest) Done() <-chan struct{} {
	if c == nil {
		return nil
	}
	return c.done
}

// Seen reports whether the guest asked cancel_requested after the
// cancellation was requested, and so was told.
func (c *CancelRequest) Seen() bool { return c != nil && c.seen.Load() }

// cancel_requested() -> i32
//
// Returns 1 when the host asked the call in progress to stop (a task run
// when the replica shuts down, or an operator cancels it), 0 otherwise (always for a request, and
// during initialization). Never fails; takes no arguments.
func cancelRequested(ctx context.Context, _ api.Module, stack []uint64) {
	in := instanceFrom(ctx, "cancel_requested")
	stack[0] = 0
	if c := in.Cancel; c.Requested() {
		c.seen.Store(true)
		stack[0] = 1
	}
}

// stoppable returns ctx, ended too when the cancellation is requested,
// for a host call that waits on something outside the guest (a URL read,
// a statement). A guest blocked in such a call cannot ask
// cancel_requested, so without this a task run waiting on a slow read
// was not stopped by a shutdown but cut off at its end (exit 1). A call
// ended so counts as seen: the guest learns of the stop from its error.
// Only a call in progress when the stop is asked is ended: one made
// after it (a Run cleaning up with a context of its own) runs as usual,
// until the grace ends. release must be called when the host call
// returns.
func (c *CancelRequest) stoppable(ctx context.Context) (_ context.Context, release func()) {
	if c == nil || c.done == nil || c.Requested() {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	returned := make(chan struct{})
	go func() {
		select {
		case <-c.done:
			c.seen.Store(true)
			cancel()
		case <-returned:
		}
	}()
	return ctx, func() {
		close(returned)
		cancel()
	}
}
