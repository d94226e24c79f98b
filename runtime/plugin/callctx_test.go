package plugin

import (
	"context"
	"errors"
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

func TestCallContext(t *testing.T) {
	c := newCallContext(&instance{})
	defer c.close()

	// The deadline ends the call, and a context derived from the call's
	// ends with it.
	c.begin(context.Background(), time.Now().Add(20*time.Millisecond))
	child, cancel := context.WithTimeout(c, time.Hour)
	defer cancel()
	notDone(t, c, "before the deadline")
	waitDone(t, c, "deadline")
	waitDone(t, child, "derived context at the deadline")
	if !errors.Is(c.Err(), context.DeadlineExceeded) || !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err = %v, derived %v; want DeadlineExceeded", c.Err(), child.Err())
	}
	if err := c.end(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("end = %v", err)
	}

	// A call that ends in time: its derived contexts end with it, and the
	// next call starts afresh; the earlier call's timer, stopped, never
	// cancels a later call.
	c.begin(context.Background(), time.Now().Add(30*time.Millisecond))
	child2, cancel2 := context.WithCancel(c)
	defer cancel2()
	if err := c.end(); err != nil {
		t.Fatalf("end of a call in time = %v", err)
	}
	waitDone(t, child2, "derived context after the call")
	if c.Err() == nil {
		t.Error("the context of an ended call is not canceled")
	}
	c.begin(context.Background(), time.Now().Add(time.Hour))
	time.Sleep(60 * time.Millisecond)
	notDone(t, c, "past the previous call's deadline")
	c.cancel(context.Canceled) // an interrupt (forced drain)
	waitDone(t, c, "interrupt")
	if err := c.end(); !errors.Is(err, context.Canceled) {
		t.Fatalf("end after an interrupt = %v", err)
	}

	// Cancel without a call in progress does nothing to the next call.
	c.cancel(context.Canceled)
	c.begin(context.Background(), time.Now().Add(time.Hour))
	notDone(t, c, "after a cancel between calls")
	c.end()

	// The caller's context ending ends the call; a caller's context that
	// was replaced by another does not.
	parentA, cancelA := context.WithCancel(context.Background())
	c.begin(parentA, time.Now().Add(time.Hour))
	cancelA()
	waitDone(t, c, "caller's context canceled")
	c.end()
	c.begin(parentA, time.Now().Add(time.Hour))
	waitDone(t, c, "a call under an already canceled caller's context")
	c.end()
	parentB, cancelB := context.WithCancel(context.Background())
	parentC, cancelC := context.WithCancel(context.Background())
	defer cancelC()
	c.begin(parentB, time.Now().Add(time.Hour))
	c.end()
	c.begin(parentC, time.Now().Add(time.Hour))
	cancelB()
	time.Sleep(20 * time.Millisecond)
	notDone(t, c, "an earlier caller's context canceled")
	c.end()
}

// AfterFunc registrations run when the call ends and not after stop.
func TestCallContextAfterFunc(t *testing.T) {
	c := newCallContext(&instance{})
	defer c.close()
	c.begin(context.Background(), time.Now().Add(time.Hour))
	ran := make(chan string, 2)
	stop := context.AfterFunc(c, func() { ran <- "kept" })
	stopped := context.AfterFunc(c, func() { ran <- "stopped" })
	if !stopped() {
		t.Fatal("stop of a pending function returned false")
	}
	c.end()
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
