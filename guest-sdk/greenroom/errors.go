package greenroom

import (
	"context"
	"errors"
	"fmt"
)

// Errors the runtime reports through host functions. Test for them with
// errors.Is: every error a greenroom function returns for one of these
// conditions is an *Error that matches the sentinel.
var (
	// ErrNotFound: the key, row or resource does not exist. A URL read
	// that gets HTTP 404 matches it too.
	ErrNotFound = errors.New("greenroom: not found")
	// ErrDenied: the operator did not grant the capability, or a rule
	// refused (an allow rule, a grant, an address rule); the message says
	// which.
	ErrDenied = errors.New("greenroom: denied")
	// ErrInvalid: an argument was malformed (a bad URL, a method the URL
	// reader does not support).
	ErrInvalid = errors.New("greenroom: invalid argument")
	// ErrFailed: the service behind the function failed (network, DNS,
	// TLS, too many redirects).
	ErrFailed = errors.New("greenroom: failed")
	// ErrTimeout: a deadline passed: the operator's timeout, the call's
	// deadline or the context's. It also matches context.DeadlineExceeded.
	ErrTimeout = errors.New("greenroom: timeout")
	// ErrTooLarge: an argument or result is over its limit (a body over
	// the operator's reading.max_bytes).
	ErrTooLarge = errors.New("greenroom: too large")
	// ErrNotModified: a conditional read (IfNoneMatch, IfModifiedSince)
	// found the resource unchanged.
	ErrNotModified = errors.New("greenroom: not modified")
)

// ABI error codes (docs/abi.md, "Error codes").
const (
	errNotFound    = -1
	errDenied      = -2
	errInvalid     = -3
	errFailed      = -4
	errTimeout     = -5
	errTooLarge    = -6
	errNotModified = -7
)

var codeSentinels = map[int32]error{
	errNotFound:    ErrNotFound,
	errDenied:      ErrDenied,
	errInvalid:     ErrInvalid,
	errFailed:      ErrFailed,
	errTimeout:     ErrTimeout,
	errTooLarge:    ErrTooLarge,
	errNotModified: ErrNotModified,
}

// Error is a failure the runtime reported: the host function, its ABI error
// code and the runtime's message, which names the rule or limit involved.
type Error struct {
	Func    string // the host function, e.g. "urlreader_call"
	Code    int32  // a negative ABI error code
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("greenroom: %s: %s", e.Func, e.Message)
}

// Is matches the sentinel of e's code, and context.DeadlineExceeded for
// timeouts.
func (e *Error) Is(target error) bool {
	if target == context.DeadlineExceeded {
		return e.Code == errTimeout
	}
	s, ok := codeSentinels[e.Code]
	return ok && s == target
}

// Timeout reports whether a deadline passed, as net.Error does, so that
// code written for net/http errors recognises it.
func (e *Error) Timeout() bool { return e.Code == errTimeout }

// Temporary is false: retrying the same call gives the same answer.
func (e *Error) Temporary() bool { return false }
