package plugin

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/logging"
	"github.com/greenroom-dev/greenroom/runtime/plugin/instrument"
)

// instance is one sandboxed instantiation of a plugin's module. It serves
// one call at a time; the pool hands it out.
type instance struct {
	p      *Plugin
	mod    api.Module
	handle api.Function
	// flag and fuel are the interrupt globals of an instrumented module
	// (nil otherwise), see package instrument.
	flag  api.MutableGlobal
	fuel  api.MutableGlobal
	state hostfuncs.Instance
	calls int

	// callCtx is the context of the call in progress; sleep watches it so
	// that a guest blocked in a WASI sleep is interrupted at its deadline.
	// Only the goroutine running the call reads or writes it.
	callCtx context.Context
	stdout  lineWriter
	stderr  lineWriter
	// ct makes the contexts of the instance's calls; its cancel ends the
	// call in progress (a forced drain uses it).
	ct callTimer
	// initFailure is the first line of a Go panic or fatal error the
	// guest printed while it initialized: the reason a failed init gives.
	initFailure string
	// said is what the guest printed on stderr in the call in progress
	// that best says why it failed: its first Go panic or fatal error
	// line, else its last line (log.Fatal's message); saidPanic tells
	// the two apart.
	said      []byte
	saidPanic bool
	// oom is set when the guest printed the Go runtime's out-of-memory
	// fatal error during the call in progress, fatal when it printed any
	// fatal error (which ends in a trap on wasm, not in proc_exit).
	oom, fatal bool

	stack       [1]uint64
	reqBuf      []byte
	respHeaders [][2][]byte
}

// ProgramName is a guest's only argument, its program name (os.Args[0]
// for a Go guest).
const ProgramName = "plugin"

// newInstance instantiates the plugin's module in its runtime and runs the
// guest's initializer (for Go guests: the runtime and every init function).
func (p *Plugin) newInstance(ctx context.Context) (*instance, error) {
	in := &instance{p: p}
	in.ct.init()
	in.state.Host = p.spec.Host
	in.state.Counters = p.spec.HostCounters
	in.state.MaxResponse = p.spec.Limits.MaxResponse
	in.state.MaxResponseSecret = p.spec.Limits.MaxResponseSecret
	in.state.GC = p.gc
	redact := logging.RedactorOf(p.log.Logger)
	in.stdout = lineWriter{in: in, stream: "stdout", redact: redact}
	in.stderr = lineWriter{in: in, stream: "stderr", redact: redact}
	cfg := wazero.NewModuleConfig().
		WithName("").
		// A program name and nothing else: Go code counts on os.Args[0]
		// (glog and klog name their files after it at start-up,
		// flag.Parse reads os.Args[1:]), and with no arguments at all
		// such a plugin's init failed out of range. The name tells the
		// guest nothing: not its id, nor its file.
		WithArgs(ProgramName).
		WithStdout(&in.stdout).
		WithStderr(&in.stderr).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(in.sleep).
		WithRandSource(randReader{in})
	// Start functions are run below, under the same interruption as calls:
	// WASI's _start is refused at load, and the rewrite takes a start
	// section's function out into the export instrument.StartName (with
	// interruption off, wazero runs the section inside instantiation).
	cfg = cfg.WithStartFunctions()
	ictx, cancel := context.WithTimeout(ctx, p.spec.Limits.InitTimeout)
	defer cancel()
	var alloc *instanceAllocator
	if p.alloc != nil {
		alloc = &instanceAllocator{MemoryAllocator: p.alloc}
		ictx = experimental.WithMemoryAllocator(ictx, alloc)
	}
	in.callCtx = ictx
	// A start section is the module initializing, as _initialize is: the
	// host functions apply their init rules to it (no database; routes
	// and tasks may be registered), its lines are tagged phase=init, and
	// what it leaves open ends with it.
	// What the start function and the initializer register is one
	// registration, ended once both have run (or one failed).
	defer in.state.EndInit()
	in.state.Initializing = true
	mod, err := p.rt.InstantiateModule(hostfuncs.WithInstance(ictx, &in.state), p.cm, cfg)
	in.state.Initializing = false
	in.state.EndCall()
	in.callCtx = nil
	if err != nil {
		// wazero drops a module whose instantiation failed after its
		// memory was made without closing it: the memory is freed here.
		alloc.free()
		// As for the initializer below: the first line of wazero's
		// error, not its wasm stack trace (ErrorDetail has it).
		err = firstLineError{err}
		if ictx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("instantiate: the start function ran past the init timeout of %s (limits.timeout, at least 10s): %w", toldDuration(p.spec.Limits.InitTimeout, p.spec.Limits.TimeoutSecret), err)
		}
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	in.mod = mod
	if p.mode == InterruptFlag {
		flag, ok1 := mod.ExportedGlobal(instrument.FlagName).(api.MutableGlobal)
		fuel, ok2 := mod.ExportedGlobal(instrument.FuelName).(api.MutableGlobal)
		if !ok1 || !ok2 {
			mod.Close(context.Background())
			return nil, fmt.Errorf("instantiate: instrumented module lacks its interrupt globals")
		}
		in.flag, in.fuel = flag, fuel
	}
	// The start section's function (see above), then the initializer,
	// each under the init timeout and the instrumented checks.
	for _, name := range []string{instrument.StartName, hostfuncs.ExportInitialize} {
		init := mod.ExportedFunction(name)
		if init == nil || name == instrument.StartName && p.mode != InterruptFlag {
			continue // (the rewrite exports a start function only with the checks)
		}
		what := "guest initializer"
		if name == instrument.StartName {
			what = "start function"
		}
		in.state.Initializing = true
		_, kind, tainted, err := in.run(ctx, time.Now().Add(p.spec.Limits.InitTimeout), init, 0) // ends what init left open
		in.state.Initializing = false
		if err == nil && tainted {
			// The deadline (or the pool's close) came while the guest was
			// in a host call that let it return (a URL read cut short at
			// the deadline, a log write the log's output held up), and
			// the guest returned without passing another check: the call
			// ended, but the interrupt flag is set, and the instance's
			// first call would trap at its first check (500 plugin_trap
			// for a request that did nothing wrong). It ran past its
			// timeout, as one the checks stopped did.
			kind, err = FailTimeout, errInitPastDeadline
			if ctx.Err() != nil {
				kind, err = FailCanceled, fmt.Errorf("it returned after it was canceled (%w), from a host call that let it through", ctx.Err())
			}
		}
		if err != nil {
			in.ct.close()
			mod.Close(context.Background())
			// The reason is shown to operators (and in each 503): the
			// first line of wazero's error, not its wasm stack trace,
			// nor what the plugin printed, which go to the log (see
			// ErrorDetail).
			if len(in.said) > 0 && in.initFailure == "" {
				err = fmt.Errorf("%w\nthe plugin printed: %s", err, in.stderr.initFailure(in.said))
			}
			err = firstLineError{err}
			if kind == FailTimeout {
				return nil, fmt.Errorf("%s ran past the init timeout of %s (limits.timeout, at least 10s): %w", what, toldDuration(p.spec.Limits.InitTimeout, p.spec.Limits.TimeoutSecret), err)
			}
			if in.initFailure != "" {
				return nil, fmt.Errorf("%s (%s): %s: %w", what, kind, in.initFailure, err)
			}
			return nil, fmt.Errorf("%s (%s): %w", what, kind, err)
		}
	}
	// What the initializer left in the host's buffers (output it wrote,
	// a URL read's result) is let go as a call's is when it ends: the
	// instance may wait idle long before its first call.
	in.state.Reset()
	in.handle = mod.ExportedFunction(hostfuncs.ExportHandle)
	if in.handle == nil {
		mod.Close(context.Background())
		return nil, fmt.Errorf("instantiate: module does not export %s", hostfuncs.ExportHandle)
	}
	return in, nil
}

// errInitPastDeadline is the error of an initializer (or start function)
// that returned after its deadline had fired, which no check of its own
// saw: it ran past the init timeout all the same.
var errInitPastDeadline = errors.New("it returned after its deadline, from a host call the deadline cut short")

// run calls fn(arg) until deadline or until parent ends, interrupting the
// guest then (see callContext). It returns the kind of failure when err is
// not nil, and reports tainted when the interrupt fired, even if the call
// managed to return: such an instance must be discarded.
func (in *instance) run(parent context.Context, deadline time.Time, fn api.Function, arg uint64) (code uint64, kind Failure, tainted bool, err error) {
	c := in.ct.begin(in, parent, deadline)
	code, err = in.call(c, fn, arg)
	if err != nil {
		kind = classify(c, err, in.oom, in.fatal) // before end, which would mask why
		err = exitError(kind, err)
		if (kind == FailExit || kind == FailTrap) && len(in.said) > 0 && !in.state.Initializing {
			// The reason is in the plugin's log at info, which an
			// operator logging warnings does not see: the warning
			// about the failure quotes it (redacted, one line). Not
			// a failed init's: its reason is in every 503 (see
			// newInstance, which gives it to the log only).
			err = saidError{err, in.stderr.initFailure(in.said)}
		}
	}
	// What the call left open ends while its context is alive: a database
	// transaction is rolled back on its connection, which then serves
	// again. Once the context is cancelled, database/sql rolls it back by
	// closing the connection, and the next call waits for a new one.
	in.state.EndCall()
	return code, kind, in.ct.end(c) != nil && in.flag != nil, err
}

// call invokes fn(arg) in the instance under ctx and returns its result.
func (in *instance) call(ctx *callContext, fn api.Function, arg uint64) (uint64, error) {
	in.callCtx = ctx
	in.oom, in.fatal = false, false
	in.said, in.saidPanic = in.said[:0], false
	if !in.state.Initializing {
		in.calls++ // requests and task runs; not the start-up call
	}
	in.stack[0] = arg
	err := fn.CallWithStack(ctx, in.stack[:])
	in.callCtx = nil
	in.flushOutput()
	return in.stack[0], err
}

// errInterrupted is the panic value of a WASI sleep or output write cut
// short by the end of its call's context; wazero turns it into the call's
// error.
var errInterrupted = errors.New("interrupted in a host call at the call's deadline")

// sleep implements WASI's clock sleep (poll_oneoff) for the guest. When the
// call's context ends it traps, so that the deadline interrupts a guest
// blocked in a sleep as it interrupts one stuck in a loop.
func (in *instance) sleep(ns int64) {
	ctx := in.callCtx
	if ctx == nil {
		time.Sleep(time.Duration(max(ns, 0)))
		return
	}
	if ns > 0 {
		t := time.NewTimer(time.Duration(ns))
		select {
		case <-t.C:
			return
		case <-ctx.Done():
			t.Stop()
		}
	}
	if ctx.Err() != nil {
		panic(errInterrupted)
	}
}

// randReader is the guest's random source (WASI random_get): the
// system's, read in pieces with the call's deadline checked between them,
// as one call may ask for gigabytes.
type randReader struct{ in *instance }

func (r randReader) Read(p []byte) (int, error) {
	r.in.interruptAtDeadline()
	return rand.Read(p[:min(len(p), 1<<20)])
}

// interruptAtDeadline traps, like a cut-short sleep, when the call in
// progress is past its deadline or canceled, or past its fence (a global
// task run whose lease may have passed on: hostfuncs.ErrFenced, as the
// greenroom host functions trap).
func (in *instance) interruptAtDeadline() {
	if ctx := in.callCtx; ctx != nil && ctx.Err() != nil {
		panic(errInterrupted)
	}
	if in.state.Cancel.Fenced() {
		panic(hostfuncs.ErrFenced)
	}
}

func (in *instance) memorySize() uint64 {
	if in.mod == nil || in.mod.Memory() == nil {
		return 0
	}
	return uint64(in.mod.Memory().Size())
}

func (in *instance) close() {
	in.ct.close()
	if in.mod != nil {
		in.mod.Close(context.Background())
	}
}

func (in *instance) flushOutput() {
	in.stdout.flush()
	in.stderr.flush()
}

// maxLine bounds one line of guest output; longer lines, with or without
// their newline, are split into lines of maxLine bytes.
const maxLine = 16 << 10

// lineWriter turns a guest's stdout or stderr into log lines tagged with
// the plugin, the stream and the request in progress.
//
// A line is split without splitting a secret. The writer keeps the line
// raw (buf) until it must cut it, then redacts the part of it no secret
// still being written can begin in (all but its last hold bytes) into
// out, cutting out into lines of maxLine bytes as it fills, and keeps the
// rest raw: a secret that begins in it may share bytes with one that
// ends before it (overlapping secrets, "AAAA-BBBB" and "BBBB-CCCC" in
// "AAAA-BBBB-CCCC"), and redacting the buffer whole took those bytes
// with the first secret's replacement, leaving the second's rest in the
// line. What it holds, out and buf, stays under maxLine plus hold+1.
type lineWriter struct {
	in     *instance
	stream string
	redact *logging.Redactor // the log's, nil when it has none
	buf    []byte            // the line's raw text not yet redacted
	out    []byte            // the line redacted before buf, not yet emitted
	// cov is how many bytes at buf's start a secret covers whose
	// Redacted is already in out (or emitted): they are left out.
	cov int
	// split is set when part of the line was emitted already.
	split bool
	rec   hostfuncs.LogRecord
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	// A secret with line breaks (a PEM key) printed whole is redacted
	// before the write is cut into lines, none of which would hold it.
	// The write may be the guest's whole memory: redacted with the
	// call's deadline checked as it goes.
	if w.redact != nil && w.redact.Multiline() && (bytes.IndexByte(p, '\n') >= 0 || bytes.IndexByte(p, '\r') >= 0) {
		p = w.redact.RedactChecked(p, w.in.interruptAtDeadline)
	}
	for len(p) > 0 {
		// A write is a host call, where the interrupt flag is not seen:
		// one of many megabytes of short lines must still end at the
		// call's deadline, as a sleep does.
		w.in.interruptAtDeadline()
		hold := w.hold()
		room := max(maxLine+hold-len(w.out)-len(w.buf), 0)
		// Only the first room+1 bytes can end this piece's line: looking
		// for the newline in all of p made a write of one long line
		// quadratic (64 MiB without a newline: seconds of scanning,
		// TestLineWriterLongLineLinear).
		line, rest, end := p, []byte(nil), false
		if i := bytes.IndexByte(p[:min(len(p), room+1)], '\n'); i >= 0 {
			line, rest, end = p[:i], p[i+1:], true
		}
		if len(line) > room {
			line, rest, end = line[:room], p[room:], false
		}
		w.buf = append(w.buf, line...)
		p = rest
		if end {
			w.emitLines()
			continue
		}
		if len(w.out)+len(w.buf) >= maxLine+hold {
			// out is under maxLine: at least one byte of buf is past
			// the last hold.
			w.redactTo(len(w.buf) - hold)
		}
	}
	return n, nil
}

// hold is how many bytes at the end of an unfinished line could begin a
// secret and must not be cut off yet.
func (w *lineWriter) hold() int {
	if w.redact == nil {
		return 0
	}
	return max(w.redact.Longest()-1, 0)
}

// redactTo moves buf[:limit] into out redacted, each run of bytes that
// secrets beginning before limit cover (overlapping or touching) as one
// Redacted, emitting out as it reaches maxLine; a run that goes on past
// limit leaves its bytes past limit in cov. Every secret that begins
// before limit ends within buf (limit is at most len(buf) less hold).
func (w *lineWriter) redactTo(limit int) {
	at := 0 // buf[:at] is in out
	rs, re := 0, w.cov
	open := w.cov > 0 // the run rs..re is out's last Redacted already
	flushRun := func() {
		if re > rs || open {
			w.appendText(w.buf[at:rs])
			if !open {
				if len(w.out)+len(redacted) > maxLine {
					w.emitOut(len(w.out))
				}
				w.out = append(w.out, redacted...)
				if len(w.out) == maxLine {
					w.emitOut(maxLine)
				}
			}
			at = max(at, re)
		}
	}
	if w.redact != nil {
		w.redact.Spans(w.buf, limit, func(start, end int) {
			if start <= re && (re > rs || open) {
				re = max(re, end) // overlapping or touching the run
				return
			}
			flushRun()
			rs, re, open = start, end, false
		})
	}
	flushRun()
	w.cov = max(at-limit, 0)
	if at < limit {
		w.appendText(w.buf[at:limit])
	}
	w.buf = w.buf[:copy(w.buf, w.buf[limit:])]
}

// appendText appends text redacted already to out, emitting out as it
// reaches maxLine.
func (w *lineWriter) appendText(b []byte) {
	for len(b) > 0 {
		k := min(len(b), maxLine-len(w.out))
		w.out = append(w.out, b[:k]...)
		b = b[k:]
		if len(w.out) == maxLine {
			w.emitOut(cut(w.out))
		}
	}
}

// emitOut emits out[:c] as a piece of the line and keeps the rest.
func (w *lineWriter) emitOut(c int) {
	w.emit(w.out[:c])
	w.out = w.out[:copy(w.out, w.out[c:])]
	w.split = true
}

// emitLines emits the buffer as a finished line, in pieces of maxLine
// bytes cut after redaction, and empties it.
func (w *lineWriter) emitLines() {
	if len(w.out) > 0 || w.cov > 0 || len(w.buf) > maxLine {
		w.redactTo(len(w.buf))
		w.buf, w.out = w.out, w.buf[:0]
	}
	if len(w.buf) > 0 || !w.split {
		w.emit(w.buf)
	}
	w.buf = w.buf[:0]
	w.split = false
}

// initFailure makes a printed panic line fit to be a load error: redacted,
// valid UTF-8 without control characters (an operator's terminal would
// obey escape sequences in it) and at most 512 bytes.
func (w *lineWriter) initFailure(line []byte) string {
	b := bytes.Clone(line)
	if w.redact != nil {
		b = w.redact.Redact(b)
	}
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return '\uFFFD'
		}
		return r
	}, strings.ToValidUTF8(string(b), "\uFFFD"))
	if len(s) > 512 {
		s = strings.ToValidUTF8(s[:512], "") + "..."
	}
	return s
}

var redacted = []byte(logging.Redacted)

// cut returns where the first piece of out, maxLine bytes, ends: at
// maxLine, or before its last bytes when they begin a Redacted (one the
// guest printed, or a multiline secret's, replaced before the write was
// cut into lines), which would straddle the cut.
func cut(out []byte) int {
	for k := len(redacted) - 1; k > 0; k-- {
		if bytes.HasSuffix(out, redacted[:k]) {
			return len(out) - k
		}
	}
	return len(out)
}

func (w *lineWriter) flush() {
	if len(w.buf) > 0 || len(w.out) > 0 {
		w.emitLines()
	}
}

var oomMarker = []byte("out of memory")

// fatalMarker begins the line the Go runtime prints for a fatal error
// (runtime.throw, runtime.fatal).
var fatalMarker = []byte("fatal error: ")

// emit writes one line through the plugin's logger, as an info record with
// the stream as its tag, under the same level floor and rate limit as the
// plugin's structured records.
func (w *lineWriter) emit(line []byte) {
	if w.stream == "stderr" && bytes.Contains(line, oomMarker) {
		w.in.oom = true
	}
	if w.stream == "stderr" && bytes.HasPrefix(line, fatalMarker) {
		w.in.fatal = true
	}
	if w.stream == "stderr" && !w.in.saidPanic && len(line) > 0 {
		// Whole (at most maxLine): redacted before it is cut to size
		// (initFailure), so that no secret is cut out of the redactor's
		// sight.
		w.in.saidPanic = bytes.HasPrefix(line, []byte("panic: ")) || bytes.HasPrefix(line, fatalMarker)
		w.in.said = append(w.in.said[:0], line...)
	}
	if w.stream == "stderr" && w.in.state.Initializing && w.in.initFailure == "" &&
		(bytes.HasPrefix(line, []byte("panic: ")) || bytes.HasPrefix(line, fatalMarker)) {
		w.in.initFailure = w.initFailure(line)
	}
	st := &w.in.state
	if !st.Host.LogEnabled(hostfuncs.LevelInfo) {
		return
	}
	limiter, limited := st.Host.(hostfuncs.LogLimiter)
	if limited && !limiter.LogAllow(len(line)) {
		return // dropped before the line is copied
	}
	w.rec = hostfuncs.LogRecord{Level: hostfuncs.LevelInfo, Message: string(line), Stream: w.stream}
	if limited {
		limiter.LogAllowed(st, &w.rec, len(line))
		return
	}
	st.Host.Log(st, &w.rec)
}

// saidError is a failed call's error with what the guest printed on
// stderr about it (see instance.said).
type saidError struct {
	err  error
	said string
}

func (e saidError) Error() string { return e.err.Error() + "; the plugin printed: " + e.said }
func (e saidError) Unwrap() error { return e.err }

// firstLineError is err shown by its first line only.
type firstLineError struct{ err error }

func (e firstLineError) Error() string {
	msg, _, _ := strings.Cut(e.err.Error(), "\n")
	return msg
}

func (e firstLineError) Unwrap() error { return e.err }

// ErrorDetail returns what a load error leaves out of its message (the
// wasm stack trace of a failed initializer), for the log; "" when nothing.
func ErrorDetail(err error) string {
	var fe firstLineError
	if !errors.As(err, &fe) {
		return ""
	}
	_, rest, _ := strings.Cut(fe.err.Error(), "\n")
	return rest
}
