package database

import (
	"context"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

// A transaction's idle bound is a second past the call's deadline, and
// in a global task's run no later than the run's fence, which moves with
// each renewal of its lease.
func TestIdleBound(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := time.Now()
	clock := func() time.Time { return now }
	in := &hostfuncs.Instance{Cancel: hostfuncs.NewFencedCancelRequest(make(chan struct{}), clock)}
	bound, fence, ok := idleBound(ctx, in)
	if !ok || fence != 0 || bound < 59*time.Second || bound > 61*time.Second {
		t.Errorf("no fence: %v %d %v, want about a minute", bound, fence, ok)
	}
	in.Cancel.SetFence(now.Add(20 * time.Second))
	bound, fence, ok = idleBound(ctx, in)
	if !ok || fence != now.Add(20*time.Second).UnixNano() || bound != 20*time.Second {
		t.Errorf("fenced: %v %d %v, want 20s to the fence", bound, fence, ok)
	}
	in.Cancel.SetFence(now.Add(-time.Second))
	if bound, _, _ = idleBound(ctx, in); bound != time.Millisecond {
		t.Errorf("past the fence: %v, want the least bound", bound)
	}
	if _, _, ok := idleBound(context.Background(), &hostfuncs.Instance{}); ok {
		t.Error("a call with neither deadline nor fence has a bound")
	}
}
