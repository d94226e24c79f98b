package hostfuncs

import (
	"context"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// cancel_requested answers 0 for a call without a cancellation request
// (a request) or one not yet made, 1 once it is made, and records that
// the guest was told; Reset drops the request with the call.
func TestCancelRequested(t *testing.T) {
	in := &Instance{}
	ask := func() int32 {
		stack := []uint64{0}
		cancelRequested(WithInstance(context.Background(), in), nil, stack)
		return api.DecodeI32(stack[0])
	}
	if got := ask(); got != 0 {
		t.Errorf("no request: %d, want 0", got)
	}
	done := make(chan struct{})
	in.Cancel = NewCancelRequest(done)
	if got := ask(); got != 0 || in.Cancel.Seen() {
		t.Errorf("request not made: %d (seen %v), want 0", got, in.Cancel.Seen())
	}
	close(done)
	if got := ask(); got != 1 || !in.Cancel.Seen() || !in.Cancel.Requested() {
		t.Errorf("request made: %d (seen %v), want 1, seen", got, in.Cancel.Seen())
	}
	c := in.Cancel
	in.Reset()
	if got := ask(); got != 0 || in.Cancel != nil || !c.Seen() {
		t.Errorf("after Reset: %d, want 0", got)
	}
	var none *CancelRequest
	if none.Requested() || none.Seen() || none.Done() != nil {
		t.Error("a nil request reports something")
	}
}

// A host call that waits (a read, a statement) ends when the stop is
// asked, and the guest counts as told; one that returns first is not.
func TestStoppableHostCall(t *testing.T) {
	var none *CancelRequest
	ctx, release := none.stoppable(context.Background())
	release()
	if ctx.Err() != nil {
		t.Error("a call without a cancellation request was ended")
	}

	done := make(chan struct{})
	c := NewCancelRequest(done)
	ctx, release = c.stoppable(context.Background())
	if ctx.Err() != nil || c.Seen() {
		t.Fatal("ended before the stop was asked")
	}
	close(done)
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting call's context did not end when the stop was asked")
	}
	release()
	if !c.Seen() {
		t.Error("a call ended by the stop does not count as seen")
	}

	c = NewCancelRequest(make(chan struct{}))
	_, release = c.stoppable(context.Background())
	release()
	if c.Seen() {
		t.Error("a call that returned before any stop counts as seen")
	}

	// A call made after the stop (a Run's cleanup, with a context of its
	// own) runs as usual.
	c = NewCancelRequest(done) // already closed
	ctx, release = c.stoppable(context.Background())
	defer release()
	time.Sleep(10 * time.Millisecond)
	if ctx.Err() != nil {
		t.Error("a call made after the stop was asked was ended")
	}
}

// Past its fence every host call of the call traps with ErrFenced before
// the function acts, and the request records that one did; a fence moved
// on lets calls through again.
func TestFencedHostCallTraps(t *testing.T) {
	now := time.Unix(1000, 0)
	c := NewFencedCancelRequest(nil, func() time.Time { return now })
	in := &Instance{Cancel: c, Counters: NewCounters()}
	ran := 0
	f := counted(0, false, api.GoModuleFunc(func(context.Context, api.Module, []uint64) { ran++ }))
	call := func() (err any) {
		defer func() { err = recover() }()
		f.Call(WithInstance(context.Background(), in), nil, []uint64{0})
		return nil
	}
	if err := call(); err != nil || ran != 1 {
		t.Fatalf("without a fence: %v, ran %d", err, ran)
	}
	c.SetFence(now.Add(time.Second))
	if err := call(); err != nil || ran != 2 || c.WasFenced() {
		t.Fatalf("before the fence: %v, ran %d", err, ran)
	}
	now = now.Add(2 * time.Second)
	if err := call(); err != ErrFenced || ran != 2 || !c.WasFenced() {
		t.Fatalf("past the fence: %v, ran %d, fenced %v; want ErrFenced, not run", err, ran, c.WasFenced())
	}
	c.SetFence(now.Add(time.Second))
	if err := call(); err != nil || ran != 3 {
		t.Fatalf("fence moved on: %v, ran %d", err, ran)
	}
	var none *CancelRequest
	none.SetFence(now)
	if none.Fenced() || none.WasFenced() || NewCancelRequest(nil).Fenced() {
		t.Error("a request without a clock is fenced")
	}
}
