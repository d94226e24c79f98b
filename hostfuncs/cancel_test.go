package hostfuncs

import (
	"context"
	"testing"

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
