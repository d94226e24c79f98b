package plugin

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/sys"
)

// A guest's own proc_exit is an exit whatever its code, the two codes
// wazero uses when it closes a module for a context included: only a call
// whose context has ended was cancelled or timed out.
func TestClassifyExitCodes(t *testing.T) {
	live := context.Background()
	canceled, cancel := context.WithCancel(live)
	cancel()
	expired, cancel := context.WithDeadline(live, time.Now().Add(-time.Second))
	defer cancel()
	cases := []struct {
		ctx  context.Context
		code uint32
		want Failure
	}{
		{live, 3, FailExit},
		{live, 0, FailExit},
		{live, sys.ExitCodeContextCanceled, FailExit},
		{live, sys.ExitCodeDeadlineExceeded, FailExit},
		{canceled, sys.ExitCodeContextCanceled, FailCanceled},
		{expired, sys.ExitCodeDeadlineExceeded, FailTimeout},
	}
	for _, tc := range cases {
		if got := classify(tc.ctx, sys.NewExitError(tc.code), false, false); got != tc.want {
			t.Errorf("exit code %#x, context error %v: %v, want %v", tc.code, tc.ctx.Err(), got, tc.want)
		}
	}
	if got := classify(live, errors.New("wasm error: unreachable"), false, false); got != FailTrap {
		t.Errorf("a trap: %v", got)
	}
	// The trap a Go fatal error ends in is the guest's own exit.
	if got := classify(live, errors.New("wasm error: unreachable"), false, true); got != FailExit {
		t.Errorf("a trap after a fatal error: %v", got)
	}
}

// The message of such an exit gives its code, not a context's end.
func TestExitErrorMessage(t *testing.T) {
	for code, want := range map[uint32]string{
		3:                            "module closed with exit_code(3)",
		sys.ExitCodeContextCanceled:  "module closed with exit_code(4294967295)",
		sys.ExitCodeDeadlineExceeded: "module closed with exit_code(4026531839)",
	} {
		err := exitError(FailExit, sys.NewExitError(code))
		var exit *sys.ExitError
		if err.Error() != want || !errors.As(err, &exit) || exit.ExitCode() != code {
			t.Errorf("exit code %d: %q, want %q (and the exit error inside)", code, err, want)
		}
	}
}
