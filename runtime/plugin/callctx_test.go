package plugin

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func waitDone(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: context not done within 5s", what)
	}
}

func notDone(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
		t.Fatalf("%s: context done (%v)", what, ctx.Err())
	default:
	}
	if err := ctx.Err(); err != nil {
		t.Fatalf("%s: Err = %v", what, err)
	}
}

func newTestCallTimer(t *testing.T) (*instance, *callTimer) {
	in := &instance{}
	in.ct.init()
	t.Cleanup(in.ct.close)
	return in, &in.ct
}

func TestCallContext(t *testing.T) {
	in, ct := newTestCallTimer(t)
	bg := context.Background()

	// The deadline ends the call, and a context derived from the call's
	// ends with it.
	c := ct.begin(in, bg, time.Now().Add(20*time.Millisecond))
	child, cancel := context.WithTimeout(c, time.Hour)
	defer cancel()
	notDone(t, c, "before the deadline")
	waitDone(t, c, "deadline")
	waitDone(t, child, "derived context at the deadline")
	if !errors.Is(c.Err(), context.DeadlineExceeded) || !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err = %v, derived %v; want DeadlineExceeded", c.Err(), child.Err())
	}
	if err := ct.end(c); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("end = %v", err)
	}

	// A call that returns in time: its derived contexts end with it; the
	// next call starts afresh, and the timer, still set for the earlier
	// call's deadline, does not cancel it when it fires.
	c = ct.begin(in, bg, time.Now().Add(30*time.Millisecond))
	child2, cancel2 := context.WithCancel(c)
	defer cancel2()
	if err := ct.end(c); err != nil {
		t.Fatalf("end of a call in time = %v", err)
	}
	waitDone(t, child2, "derived context after the call")
	c = ct.begin(in, bg, time.Now().Add(time.Hour))
	time.Sleep(60 * time.Millisecond)
	notDone(t, c, "past the previous call's deadline")
	ct.cancel(context.Canceled) // an interrupt (forced drain)
	waitDone(t, c, "interrupt")
	if err := ct.end(c); !errors.Is(err, context.Canceled) {
		t.Fatalf("end after an interrupt = %v", err)
	}

	// An interrupt without a call in progress does nothing to the next.
	ct.cancel(context.Canceled)
	c = ct.begin(in, bg, time.Now().Add(time.Hour))
	notDone(t, c, "after an interrupt between calls")
	ct.end(c)

	// The caller's context ending ends the call; a caller's context that
	// was replaced by another does not.
	parentA, cancelA := context.WithCancel(bg)
	c = ct.begin(in, parentA, time.Now().Add(time.Hour))
	cancelA()
	waitDone(t, c, "caller's context canceled")
	ct.end(c)
	c = ct.begin(in, parentA, time.Now().Add(time.Hour))
	waitDone(t, c, "a call under an already canceled caller's context")
	ct.end(c)
	parentB, cancelB := context.WithCancel(bg)
	parentC, cancelC := context.WithCancel(bg)
	defer cancelC()
	c = ct.begin(in, parentB, time.Now().Add(time.Hour))
	ct.end(c)
	c = ct.begin(in, parentC, time.Now().Add(time.Hour))
	cancelB()
	time.Sleep(20 * time.Millisecond)
	notDone(t, c, "an earlier caller's context canceled")
	ct.end(c)
}

// The timer is set only when a call's deadline is earlier than the one it
// is set for, and when it fires for an earlier call's deadline it is set
// again for the running call's: no call ends before its deadline, and
// every call that runs past it ends.
func TestCallTimerKeepsEarlierDeadline(t *testing.T) {
	in, ct := newTestCallTimer(t)
	bg := context.Background()
	endsAt := func(c *callContext, what string) {
		t.Helper()
		waitDone(t, c, what)
		if now := time.Now(); now.Before(c.deadline) {
			t.Fatalf("%s: ended %v before its deadline", what, c.deadline.Sub(now))
		}
		if err := ct.end(c); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: end = %v, want DeadlineExceeded", what, err)
		}
	}

	// A deadline earlier than the one the timer is set for sets it.
	ct.end(ct.begin(in, bg, time.Now().Add(time.Hour)))
	endsAt(ct.begin(in, bg, time.Now().Add(40*time.Millisecond)), "a shorter deadline after a long one")

	// A later deadline keeps the timer; when it fires for the earlier
	// call, it is set again for this one.
	ct.end(ct.begin(in, bg, time.Now().Add(60*time.Millisecond)))
	c := ct.begin(in, bg, time.Now().Add(250*time.Millisecond))
	if got, want := ct.armed.Load(), c.deadline.UnixNano(); got >= want {
		t.Fatalf("timer set for %d, want the earlier call's deadline (before %d)", got, want)
	}
	time.Sleep(150 * time.Millisecond) // past the earlier call's deadline
	notDone(t, c, "past the earlier call's deadline")
	if got := ct.armed.Load(); got != c.deadline.UnixNano() {
		t.Fatalf("after firing for an earlier call, timer set for %d, want %d", got, c.deadline.UnixNano())
	}
	endsAt(c, "a longer deadline after a short one")

	// With no call in progress, the timer fires once and stays unset.
	ct.end(ct.begin(in, bg, time.Now().Add(20*time.Millisecond)))
	deadline := time.Now().Add(5 * time.Second)
	for ct.armed.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("timer still set 5s after the last call's deadline")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A call's context, once done, stays done with its error, whatever later
// calls on the instance do: code that outlives a call (a goroutine the
// context package starts to watch a derived context, a connection's
// cleanup) must never see Done closed and Err nil. (Reusing one context
// object for every call broke that, and the context package panicked
// with "missing cancel error" under load.)
func TestCallContextOutlivesItsCall(t *testing.T) {
	in, ct := newTestCallTimer(t)
	var wg sync.WaitGroup
	var prev context.Context
	for i := range 2000 {
		c := ct.begin(in, context.Background(), time.Now().Add(time.Hour))
		if prev != nil && prev.Err() == nil {
			t.Fatal("the previous call's context has no error once the next call began")
		}
		prev = c
		// opaque hides AfterFunc, so the context package watches the
		// derived context from a goroutine that may run after the call.
		child, cancel := context.WithCancel(opaque{c})
		wg.Go(func() {
			<-child.Done()
			cancel()
		})
		if i%2 == 0 {
			ct.cancel(context.Canceled)
		}
		ct.end(c)
		if c.Err() == nil {
			t.Fatal("ended call's context has no error")
		}
		select {
		case <-c.Done():
		default:
			t.Fatal("ended call's context not done")
		}
	}
	wg.Wait()
}

// opaque is a context that hides its implementation's methods beyond
// context.Context.
type opaque struct{ context.Context }

// AfterFunc registrations run when the call ends and not after stop.
func TestCallContextAfterFunc(t *testing.T) {
	in, ct := newTestCallTimer(t)
	c := ct.begin(in, context.Background(), time.Now().Add(time.Hour))
	ran := make(chan string, 2)
	stop := context.AfterFunc(c, func() { ran <- "kept" })
	stopped := context.AfterFunc(c, func() { ran <- "stopped" })
	if !stopped() {
		t.Fatal("stop of a pending function returned false")
	}
	ct.end(c)
	select {
	case got := <-ran:
		if got != "kept" {
			t.Fatalf("ran %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("function not run at the end of the call")
	}
	if stop() {
		t.Error("stop after the function ran returned true")
	}
	select {
	case got := <-ran:
		t.Fatalf("ran %q after stop", got)
	case <-time.After(20 * time.Millisecond):
	}
}

type callValueKey struct{}

// Calls whose caller's contexts differ only in their values (the server
// gives each call its own, carrying its arrival and admission, over one
// base context) share one watch on that cancellation: beginning one costs
// the call context alone, where a registration on the base context per
// call cost two allocations more and a turn of its lock, which every call
// in flight shares. The base context's end still ends the call running.
func TestCallTimerWatchesOneCancellationOnce(t *testing.T) {
	in, ct := newTestCallTimer(t)
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctxs := make([]context.Context, 64)
	for i := range ctxs {
		ctxs[i] = context.WithValue(base, callValueKey{}, i)
	}
	ct.end(ct.begin(in, ctxs[0], time.Now().Add(time.Hour)))
	i := 0
	allocs := testing.AllocsPerRun(50, func() {
		i++
		ct.end(ct.begin(in, ctxs[i%len(ctxs)], time.Now().Add(time.Hour)))
	})
	if allocs > 1 {
		t.Errorf("a call under a new context over the same cancellation allocated %.0f times, want 1 (the call context)", allocs)
	}
	c := ct.begin(in, ctxs[5], time.Now().Add(time.Hour))
	cancel()
	waitDone(t, c, "the base context canceled")
	if err := ct.end(c); !errors.Is(err, context.Canceled) {
		t.Fatalf("end = %v, want Canceled", err)
	}
}
