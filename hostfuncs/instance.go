package hostfuncs

import (
	"bytes"
	"context"
	"fmt"
	"unicode/utf8"

	"github.com/tetratelabs/wazero/api"
)

// Host is what the runtime provides to one plugin's host functions. The wire
// code decodes arguments, calls these methods and encodes the results; it
// never sees how they are implemented.
//
// Methods that can fail in an expected way return a *Failure, whose code
// the host function returns to the guest; any other error becomes
// ErrFailed.
type Host interface {
	// Config returns the value of key in the plugin's own config table.
	Config(key string) (string, bool)
	// PublicRoute records the guest's request that path (relative to its
	// mount) be served without a credential. The route becomes public
	// only if the operator lists it too. An error means the path is
	// malformed.
	PublicRoute(path string) error
	// Database returns the plugin's database, or an error naming the
	// capability when the plugin was not granted it.
	Database() (Database, error)
	// Scheduler returns an error naming the capability when the plugin
	// was not granted the scheduler.
	Scheduler() error
	// RegisterTask records a task the guest registers while it
	// initializes (Instance.Initializing is true; in is the registering
	// instance). An error (a *Failure, ErrInvalid) means the task is
	// refused, which also fails the plugin's load.
	RegisterTask(in *Instance, t TaskSpec) error

	// LogEnabled reports whether a record at level (an slog level: -4
	// debug, 0 info, 4 warn, 8 error) would be written, i.e. whether it
	// passes the plugin's level floor and the runtime's log level.
	LogEnabled(level int32) bool
	// Log writes rec for the call in progress on in, tagged with the
	// plugin and the call's request id or task, unless the plugin's rate
	// limit drops it. It returns LogWritten, LogFiltered or LogDropped.
	// The record's strings are the host's own copies; Log may keep them.
	// A Host with a rate limit implements LogLimiter too, so that
	// log_write drops a record over the limit before decoding it.
	Log(in *Instance, rec *LogRecord) int32

	// ReadURL performs one URL reader operation for the call in progress
	// (capability "urlreader"), under ctx, the call's context. With a nil
	// req it only reports whether the plugin has the capability: nil, or
	// the error naming it.
	ReadURL(ctx context.Context, in *Instance, req *URLRequest) (*URLResponse, error)
}

// MaxMessage bounds the error message a host function leaves in the result
// slot, so that a guest can always read it with a buffer of this size.
const MaxMessage = 4096

// MessageRedactor is implemented by a Host that knows its plugin's
// secrets. Fail passes a message longer than MaxMessage through
// RedactMessage before it cuts the message, so that the cut cannot leave
// the first part of a secret in it: a plugin may log the error it gets,
// and the log's redactor matches whole secrets only. RedactMessage may
// change b in place and returns the result. A message within MaxMessage
// is not cut and not looked at.
type MessageRedactor interface {
	RedactMessage(b []byte) []byte
}

// maxKeptResult is the largest result slot kept between calls; a larger one
// (a big URL read) is released when the call ends.
const maxKeptResult = 1 << 20

// Instance is the host-side state of one guest instance. The runtime keeps
// one per instance and puts it in the context of every call into that
// instance (WithInstance); host functions find it there.
//
// An Instance serves one call at a time, like its guest.
type Instance struct {
	Host Host

	// Request is the request envelope of the call in progress.
	Request []byte
	// Response collects what the guest writes with response_write.
	Response []byte
	// MaxResponse bounds Response; past it response_write fails with
	// ErrTooLarge and ResponseOverflow is set.
	MaxResponse int
	// MaxResponseSecret: MaxResponse came from the environment (a config
	// secret), which response_write's error does not quote.
	MaxResponseSecret bool
	ResponseOverflow  bool

	// RequestID and Task identify the call in progress (one of them is
	// set), for logs and providers.
	RequestID string
	Task      string
	// Cancel, when not nil, is how the host asks the call in progress to
	// stop on its own (cancel_requested); nil for requests.
	Cancel *CancelRequest
	// Counters counts this instance's host calls (shared by the plugin's
	// instances); nil counts nothing.
	Counters *Counters

	// GC is the garbage-collector tuning gc_memory_limit and gc_percent
	// give the guest; the runtime sets it before the instance starts.
	GC GCTuning

	// Initializing is true while the guest's initializer runs; host
	// functions that register things (routes, tasks, migrations) accept
	// calls only then.
	Initializing bool

	result []byte // the result slot, see result_read
	values map[any]any
	onEnd  []func()
	onInit []func()
	logRec LogRecord // reused by log_write, emptied after each write
}

// Value returns what a provider stored on this instance under key.
func (in *Instance) Value(key any) any { return in.values[key] }

// SetValue stores provider state on this instance (an open transaction, a
// statement cache). It lives as long as the instance.
func (in *Instance) SetValue(key, v any) {
	if in.values == nil {
		in.values = map[any]any{}
	}
	in.values[key] = v
}

// OnCallEnd registers f to run when the call in progress ends, however it
// ends (a transaction left open is rolled back there).
func (in *Instance) OnCallEnd(f func()) { in.onEnd = append(in.onEnd, f) }

// EndCall runs and clears the OnCallEnd functions. The runtime calls it
// after every call into the guest, including failed ones.
func (in *Instance) EndCall() {
	for i := len(in.onEnd) - 1; i >= 0; i-- {
		in.onEnd[i]()
	}
	clear(in.onEnd)
	in.onEnd = in.onEnd[:0]
}

// OnInitEnd registers f to run once the instance's initialization has
// ended, however it ended: its start function and its initializer are
// calls of their own (each ends what it left open), but what they register
// (migrations, say) is one registration, gathered over both.
func (in *Instance) OnInitEnd(f func()) { in.onInit = append(in.onInit, f) }

// EndInit runs and clears the OnInitEnd functions. The runtime calls it
// once the instance's start function and initializer have run, or one of
// them failed.
func (in *Instance) EndInit() {
	for i := len(in.onInit) - 1; i >= 0; i-- {
		in.onInit[i]()
	}
	in.onInit = nil
}

// SetResult fills the result slot and returns its length as a host
// function result.
func (in *Instance) SetResult(b []byte) int32 {
	in.result = append(in.result[:0], b...)
	return int32(len(in.result))
}

// Fail fills the result slot with an error message and returns code. A
// message over MaxMessage bytes has its plugin's secrets redacted, when
// the Host is a MessageRedactor, and is then cut to MaxMessage bytes (at
// a UTF-8 boundary).
func (in *Instance) Fail(code int32, format string, args ...any) int32 {
	in.result = fmt.Appendf(in.result[:0], format, args...)
	if len(in.result) > MaxMessage {
		if r, ok := in.Host.(MessageRedactor); ok {
			in.result = r.RedactMessage(in.result)
		}
	}
	if len(in.result) > MaxMessage {
		// A database error ends with its SQLSTATE, which the guest reads
		// there (greenroom.SQLState): a cut keeps it.
		var state []byte
		if m := in.result; len(m) > len(sqlStateTail) && m[len(m)-1] == ')' && string(m[len(m)-len(sqlStateTail):len(m)-6]) == sqlStateTail[:len(sqlStateTail)-6] {
			state = bytes.Clone(m[len(m)-len(sqlStateTail):])
		}
		n := MaxMessage - len(state)
		for n > 0 && !utf8.RuneStart(in.result[n]) {
			n--
		}
		in.result = append(in.result[:n], state...)
	}
	return code
}

// sqlStateTail is the shape of the SQLSTATE a database error ends with.
const sqlStateTail = " (SQLSTATE 00000)"

// Reset clears per-call state before the instance is used again.
func (in *Instance) Reset() {
	in.RequestID, in.Task = "", ""
	in.Cancel = nil
	in.Request = nil
	in.Response = in.Response[:0]
	if cap(in.Response) > maxKeptResult {
		in.Response = nil // one large response does not stay with the instance
	}
	in.ResponseOverflow = false
	if cap(in.result) > maxKeptResult {
		in.result = nil
	}
	in.result = in.result[:0]
	// db_query's writer holds the buffer of a result before the last
	// (they swap), or one a result over db_max_result grew.
	if w, ok := in.values[rowWriterKey{}].(*RowWriter); ok && cap(w.buf) > maxKeptResult {
		w.buf = nil
	}
}

type instanceKey struct{}

// WithInstance returns a context for calls into the guest that in belongs to.
func WithInstance(ctx context.Context, in *Instance) context.Context {
	return context.WithValue(ctx, instanceKey{}, in)
}

// InstanceContext is a context that carries its call's instance itself,
// an alternative to WithInstance for a caller that makes its own context
// type for calls (and so needs no value context on top of it).
type InstanceContext interface {
	context.Context
	GreenroomInstance() *Instance
}

// instanceOf returns the instance of the call ctx belongs to, or nil.
func instanceOf(ctx context.Context) *Instance {
	if ic, ok := ctx.(InstanceContext); ok {
		return ic.GreenroomInstance()
	}
	in, _ := ctx.Value(instanceKey{}).(*Instance)
	return in
}

func instanceFrom(ctx context.Context, fn string) *Instance {
	in := instanceOf(ctx)
	if in == nil {
		panic(&TrapError{Func: fn, Reason: "called outside a greenroom call (no instance state in context)"})
	}
	return in
}

// TrapError is the panic value of a host function that traps because the
// guest misused the ABI (an out-of-range pointer, a call at the wrong
// time). wazero turns it into the error of the guest call, and the runtime
// discards the instance.
type TrapError struct {
	Func   string
	Reason string
}

func (e *TrapError) Error() string {
	return fmt.Sprintf("%s.%s: %s", ModuleName, e.Func, e.Reason)
}

// guestBytes returns the n bytes of guest memory at ptr, without copying,
// or traps if any of them lie outside the guest's memory. n == 0 yields nil
// whatever ptr is.
func guestBytes(mod api.Module, fn string, ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		panic(&TrapError{Func: fn, Reason: fmt.Sprintf(
			"range [%d, %d) is outside guest memory of %d bytes", ptr, uint64(ptr)+uint64(n), mod.Memory().Size())})
	}
	return b
}
