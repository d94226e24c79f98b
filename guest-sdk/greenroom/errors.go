package greenroom

import "context"

// Error is an error the runtime returned from a host function. Compare it
// with errors.Is against ErrDenied, ErrTimeout, ... to learn its kind; its
// message says what happened and names the rule or limit involved.
type Error struct {
	// Op is the host function, e.g. "db_query", "urlreader_call".
	Op string
	// Code is the ABI error code (docs/abi.md, "Error codes").
	Code    int32
	Message string
}

func (e *Error) Error() string { return "greenroom: " + e.Message }

// Is reports whether target is an *Error with the same code (ErrDenied,
// ErrTimeout, ...). A timeout also matches context.DeadlineExceeded.
func (e *Error) Is(target error) bool {
	if target == context.DeadlineExceeded {
		return e.Code == errTimeout
	}
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Timeout reports whether a deadline passed, as net.Error does, so that
// code written for net/http errors recognises it.
func (e *Error) Timeout() bool { return e.Code == errTimeout }

// Temporary is false: retrying the same call gives the same answer.
func (e *Error) Temporary() bool { return false }

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

// Kinds of Error, for errors.Is.
var (
	// ErrNotFound: the key, row or resource does not exist. A URL read
	// that gets HTTP 404 matches it too.
	ErrNotFound = &Error{Code: errNotFound, Message: "not found"}
	// ErrDenied: the plugin was not granted the capability, or a rule
	// refused: the database sandbox (another plugin's data, ATTACH, SET
	// ROLE, ...), an allow rule, a grant or an address rule of the URL
	// reader. The message says which.
	ErrDenied = &Error{Code: errDenied, Message: "denied"}
	// ErrInvalid: an argument was malformed (a bad URL, a method the URL
	// reader does not support).
	ErrInvalid = &Error{Code: errInvalid, Message: "invalid"}
	// ErrFailed: the service behind the function failed: the database
	// refused or failed the statement (a syntax error, a constraint), or a
	// read failed (network, DNS, TLS, too many redirects).
	ErrFailed = &Error{Code: errFailed, Message: "failed"}
	// ErrTimeout: a deadline passed: limits.db_statement_timeout,
	// reading.timeout, the request's deadline or the context's, or every
	// database connection stayed busy. It also matches
	// context.DeadlineExceeded.
	ErrTimeout = &Error{Code: errTimeout, Message: "timeout"}
	// ErrTooLarge: a result, or a statement's arguments, passed its limit
	// (limits.db_max_result, reading.max_bytes).
	ErrTooLarge = &Error{Code: errTooLarge, Message: "too large"}
	// ErrNotModified: a conditional read (IfNoneMatch, IfModifiedSince)
	// found the resource unchanged.
	ErrNotModified = &Error{Code: errNotModified, Message: "not modified"}
)
