package plugin

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/tetratelabs/wazero/sys"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

// Failure says how a call into a plugin failed. The server maps each to an
// HTTP status.
type Failure int

const (
	// FailBusy: every instance was busy for the whole queue timeout (503).
	FailBusy Failure = iota + 1
	// FailTimeout: the call ran past the plugin's timeout and was interrupted (504).
	FailTimeout
	// FailCanceled: the caller went away or the server is shutting down.
	FailCanceled
	// FailTrap: the guest trapped (unreachable, out-of-bounds access, stack
	// overflow, ABI misuse) (500).
	FailTrap
	// FailPanic: the guest's handler panicked (500).
	FailPanic
	// FailMemory: the guest hit its memory cap (500).
	FailMemory
	// FailExit: the guest exited (a Go runtime fatal error, os.Exit) (500).
	FailExit
	// FailBadResponse: the guest wrote a malformed or oversized response (502).
	FailBadResponse
	// FailInstantiate: a new instance could not be created (500).
	FailInstantiate
	// FailClosed: the plugin was closed (reloaded or shut down) before the
	// call got an instance; the caller may retry on the current version.
	FailClosed
)

var failureNames = map[Failure]string{
	FailBusy:        "busy",
	FailTimeout:     "timeout",
	FailCanceled:    "canceled",
	FailTrap:        "trap",
	FailPanic:       "panic",
	FailMemory:      "memory_limit",
	FailExit:        "exit",
	FailBadResponse: "bad_response",
	FailInstantiate: "instantiate",
	FailClosed:      "closed",
}

func (f Failure) String() string {
	if s, ok := failureNames[f]; ok {
		return s
	}
	return fmt.Sprintf("failure(%d)", int(f))
}

// CallError is the error of a failed call into a plugin.
type CallError struct {
	Plugin string
	Kind   Failure
	Err    error
}

func (e *CallError) Error() string {
	return fmt.Sprintf("plugin %s: %s: %v", e.Plugin, e.Kind, e.Err)
}

func (e *CallError) Unwrap() error { return e.Err }

// ErrBusy is the cause of FailBusy errors.
var ErrBusy = errors.New("all instances busy for the whole queue timeout")

// ErrClosed is the cause of FailClosed errors.
var ErrClosed = errors.New("plugin closed")

// ErrReadmit is the error of a call that got an instance after the
// decision that let it in went out of date, and that the decision taken
// again under the config now in force refused (WithAdmission): the guest
// was not called, and the call counts as no failure. The refusal is its
// caller's to answer.
var ErrReadmit = errors.New("the call was refused when let in again after a reload that came while it waited for an instance")

// ErrStarting is a call that waited its whole timeout for a new instance
// to start (FailTimeout); the instance goes on starting and serves a later
// call.
var ErrStarting = errors.New("no instance was ready in time: a new one is still starting")

// KindOf returns the Failure of err, or 0 when err is not a CallError.
func KindOf(err error) Failure {
	var ce *CallError
	if errors.As(err, &ce) {
		return ce.Kind
	}
	return 0
}

// classify turns the error of a guest call into a Failure. oom reports
// whether the guest printed the Go runtime's out-of-memory fatal error
// during the call, fatal whether it printed any Go fatal error (the
// runtime then aborts with a trap: an exit of the guest's own, as
// proc_exit is); ctx is the call's context.
func classify(ctx context.Context, err error, oom, fatal bool) Failure {
	var trap *hostfuncs.TrapError
	if errors.As(err, &trap) {
		return FailTrap
	}
	if oom {
		return FailMemory
	}
	// Past the deadline, whatever stopped the guest (wazero closing the
	// module, the interrupt flag's unreachable, a cut-short sleep) was the
	// deadline.
	switch ctx.Err() {
	case context.DeadlineExceeded:
		return FailTimeout
	case context.Canceled:
		return FailCanceled
	}
	// With the context still live, an exit is the guest's own proc_exit,
	// whatever its code: the two codes wazero uses when it closes a module
	// for a context (0xffffffff, 0xefffffff) are codes a guest can choose.
	var exit *sys.ExitError
	if errors.As(err, &exit) || fatal {
		return FailExit
	}
	return FailTrap
}

// guestExit is a guest's proc_exit with one of the codes wazero also uses
// for a closed context, whose messages ("module closed with context
// canceled") would say the opposite of what happened.
type guestExit struct{ *sys.ExitError }

func (e guestExit) Error() string {
	return fmt.Sprintf("module closed with exit_code(%d)", e.ExitCode())
}

func (e guestExit) Unwrap() error { return e.ExitError }

// exitError returns err with the message of a plain exit when kind is
// FailExit and err is an exit with one of those codes.
func exitError(kind Failure, err error) error {
	var exit *sys.ExitError
	if kind == FailExit && errors.As(err, &exit) {
		if c := exit.ExitCode(); c == sys.ExitCodeContextCanceled || c == sys.ExitCodeDeadlineExceeded {
			return guestExit{exit}
		}
	}
	return err
}

// Counters are a plugin's cumulative figures. The runtime keeps one set per
// plugin id and passes it to every version it loads, so they survive
// reloads (Prometheus counters must only grow).
type Counters struct {
	// Pool.
	Created, Discarded, Retired atomic.Int64
	QueueWaits, QueueNanos      atomic.Int64
	Rejected                    atomic.Int64 // busy for the whole queue timeout
	// Calls.
	Calls    atomic.Int64
	Failures [failureCount]atomic.Int64 // indexed by Failure
}

const failureCount = int(FailClosed) + 1

// Failed returns how many calls failed with kind.
func (c *Counters) Failed(kind Failure) int64 {
	if kind <= 0 || int(kind) >= failureCount {
		return 0
	}
	return c.Failures[kind].Load()
}

// Failures lists every Failure, for exporters.
func Failures() []Failure {
	out := make([]Failure, 0, failureCount-1)
	for f := Failure(1); int(f) < failureCount; f++ {
		out = append(out, f)
	}
	return out
}

// Reject counts a call refused after waiting its whole queue timeout, as
// the pool counts one (Rejected, and a FailBusy failure): the server's
// for a call that reloads moved from version to version meanwhile.
func (c *Counters) Reject() {
	c.Rejected.Add(1)
	c.fail(FailBusy)
}

func (c *Counters) fail(kind Failure) {
	if kind > 0 && int(kind) < failureCount {
		c.Failures[kind].Add(1)
	}
}
