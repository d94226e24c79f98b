package plugin

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/plugin/instrument"
)

// Limits bound what one plugin may use.
type Limits struct {
	// Memory caps each instance's linear memory, in bytes (rounded down to
	// 64 KiB pages).
	Memory uint64
	// MemorySecret: Memory came from the environment (a config secret),
	// so a load error does not quote it (instrument.MemoryError): the
	// error reaches the plugin's callers, and the log's redaction matches
	// the secret as written ("1MiB"), not as decoded ("16 pages
	// (1048576 bytes)").
	MemorySecret bool
	// Timeout bounds each call; the guest is interrupted when it passes.
	Timeout time.Duration
	// TimeoutSecret: Timeout came from the environment, so no error or
	// log line quotes it nor what is computed from it (InitTimeout, a
	// wait of QueueTimeout + Timeout) (see MemorySecret).
	TimeoutSecret bool
	// InitTimeout bounds the guest's initializer when an instance is created.
	InitTimeout time.Duration
	// Instances is the most instances that exist at once.
	Instances int
	// QueueTimeout is how long a call waits for a free instance.
	QueueTimeout time.Duration
	// QueueTimeoutSecret: QueueTimeout came from the environment (see
	// TimeoutSecret).
	QueueTimeoutSecret bool
	// MaxRequests retires an instance after this many calls (0: never).
	MaxRequests int
	// RetireMemory retires an instance once its memory passes this many
	// bytes (0: never).
	RetireMemory uint64
	// RetireMemorySecret: RetireMemory came from the environment, or was
	// computed from a Memory that did (3/4 of it), so the warning about
	// instances that start over it does not quote it (see MemorySecret).
	RetireMemorySecret bool
	// MaxResponse bounds a response envelope, in bytes.
	MaxResponse int
	// MaxResponseSecret: MaxResponse came from the environment, so the
	// refusal of a response over it, which the caller reads, does not
	// quote it (see MemorySecret).
	MaxResponseSecret bool
	// Warm is how many instances are created at load.
	Warm int
	// NoInterrupt turns off interruption of the guest's own code at the
	// deadline (host calls and sleeps are still cut short). Only for
	// plugins the operator vetted: a runaway loop then holds its instance
	// and a core until it ends.
	NoInterrupt bool
	// NoInterruptSecret: NoInterrupt comes from the environment, a
	// secret. The load does not log its debug line about the module's
	// instrumentation for interruption, which only an interrupted
	// module has: the line's presence would tell the secret.
	NoInterruptSecret bool
	// GCPercent is the guest's GOGC: 0 for Go's default (100), -1 for off
	// (only the memory limit starts a collection). See GCTuning.
	GCPercent int
}

// Interruption is how a plugin's guest code is stopped at its deadline.
type Interruption string

const (
	// InterruptFlag: the module is instrumented at load with a check of a
	// host-set flag at every loop header and function entry (cheap).
	InterruptFlag Interruption = "flag"
	// InterruptWazero: wazero's close-on-context-done, which tests and
	// benchmarks compare the flag with (slower: its check leaves compiled
	// code on every loop iteration; and it does not interrupt a loop-free
	// tree of calls). A load never picks it: a module that cannot be
	// instrumented is refused.
	InterruptWazero Interruption = "wazero"
	// InterruptOff: limits.interruptible = false.
	InterruptOff Interruption = "off"
)

// Spec is everything Load needs to know about one plugin.
type Spec struct {
	ID   string
	Wasm []byte
	// ReadWasm, when Wasm is nil, reads the module's bytes. Load calls it
	// only if it needs them: when the engine has no rewritten module for
	// Sum on disk, or when Sum is not the SHA256 pin. Sum and Size are
	// then required. Load hashes the bytes it gets: when they are not the
	// module Sum names (a remembered sum was wrong, or the file changed),
	// it starts over with those bytes and their own sum, so the pin and
	// the cache keys always see the true one.
	ReadWasm func() ([]byte, error)
	// Size is the module's length in bytes when Wasm is nil.
	Size   int
	SHA256 string // optional pin, hex
	// Sum is the hex sha256 of the module, when the caller already
	// computed it.
	Sum    string
	Limits Limits
	// Host provides the plugin's host functions (config, capabilities).
	Host hostfuncs.Host
	Log  *logrus.Entry
	// Engine compiles and runs the module; plugins share one. Nil gives
	// this plugin an engine of its own (with Cache), closed with it.
	Engine *Engine
	Cache  wazero.CompilationCache
	// Counters accumulate across versions of one plugin; nil gives this
	// version its own.
	Counters *Counters
	// Tokens bound the calls the versions of one plugin run at once
	// (their owner sets their max to Limits.Instances as a version starts
	// serving); nil gives this version tokens of its own, for
	// Limits.Instances calls.
	Tokens *Tokens
	// HostCounters count host-function calls; nil gives this version its
	// own.
	HostCounters *hostfuncs.Counters
	// OnClose, when set, runs once, when Close has closed the version:
	// what the version held outside the plugin (its use of its database
	// pool) is released there. (A Load that fails never calls it.)
	OnClose func()
	// FirstInstance, when set, runs once the version's first instance has
	// initialized, before Load starts any other (Limits.Warm): what that
	// initializer registered is the version's (its public routes).
	FirstInstance func()

	// forceWazero makes tests use the fallback interruption.
	forceWazero bool
}

// Plugin is a loaded plugin: its compiled module and its instance pool.
type Plugin struct {
	id     string
	spec   Spec
	closed sync.Once // runs spec.OnClose
	rt     wazero.Runtime
	engine *Engine // the engine it was loaded with
	own    *Engine // the engine Load made for this plugin alone, if any
	cm     wazero.CompiledModule
	// alloc makes each instance's memory (Engine.compileWith).
	alloc experimental.MemoryAllocator
	// release gives cm back to the engine.
	release func()
	info    Info
	pool    *pool
	log     *logrus.Entry
	mode    Interruption
	// gc is the garbage-collector tuning every instance's guest is given.
	gc hostfuncs.GCTuning

	CompileTime time.Duration
	LoadTime    time.Duration
}

const pageSize = 65536

// hideMemoryCap returns err with the cap of an instrument.MemoryError
// left out of its message when the cap is a secret (Limits.MemorySecret).
// Rewrite returns a MemoryError as it is, unwrapped.
func hideMemoryCap(err error, secret bool) error {
	if me, ok := err.(*instrument.MemoryError); ok && secret {
		hidden := *me
		hidden.CapSecret = true
		return &hidden
	}
	return err
}

// maxMemoryPages is the largest memory cap a module gets (see Load).
const maxMemoryPages = 65535

// MaxTableEntries bounds a plugin's tables: they are fixed at their
// initial size, which may total at most this many entries (8 MiB of the
// host's memory per instance; a Go guest's table has a few thousand).
// See instrument.Options.MaxTableEntries.
const MaxTableEntries = 1 << 20

// gcTuning returns what a plugin's Go guest is told about garbage
// collection (hostfuncs.GCTuning) under lim, for a module whose memory
// starts at minPages: a soft memory limit that keeps the Go heap below the
// size at which the pool retires the instance (RetireMemory, or the cap
// when there is none), and lim.GCPercent.
//
// Without it a plugin that keeps a working set of a third of the retire
// size or more lets its heap grow to about twice that between collections
// (GOGC=100), passes the retire size and is replaced after nearly every
// request, losing what it kept. The limit counts only what the Go runtime
// allocated above the module's initial memory (its static data), less
// headroom: the collector lets the heap overshoot a soft limit a little.
// Where that leaves under 4 MiB, no limit is set (the collector would run
// almost constantly).
func gcTuning(lim Limits, minPages uint32) hostfuncs.GCTuning {
	t := hostfuncs.GCTuning{Percent: int32(lim.GCPercent)}
	threshold := lim.RetireMemory
	if threshold == 0 || threshold > lim.Memory {
		threshold = lim.Memory
	}
	reserved := uint64(minPages)*pageSize + max(2<<20, threshold/16)
	if threshold >= reserved+4<<20 {
		t.MemoryLimit = threshold - reserved
	}
	return t
}

// Load compiles and validates the plugin's module, and creates its warm
// instances. On error nothing stays open.
//
// A panic while loading (a bug in greenroom's rewriter or in wazero that
// this module meets) fails this load with a *panicError, its stack logged
// on spec.Log at error level: one hostile module must not end the process
// at start or at a reload.
func Load(ctx context.Context, spec Spec) (_ *Plugin, err error) {
	if spec.Log == nil {
		spec.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	defer func() {
		var pe *panicError
		if errors.As(err, &pe) {
			spec.Log.WithFields(logrus.Fields{"panic": fmt.Sprint(pe.val), "stack": string(pe.stack)}).Error("loading the plugin panicked; it is not served (please report this with the module)")
		}
	}()
	defer recoverAs("loading the module", &err)
	p, err := loadOnce(ctx, spec)
	var ws *wrongSum
	if errors.As(err, &ws) {
		spec.Log.WithFields(logrus.Fields{"sum": spec.Sum, "file_sum": ws.sum}).Debug("the module read is not the one its sum names; loading it under its own sum")
		spec.Wasm, spec.ReadWasm, spec.Sum, spec.Size = ws.wasm, nil, ws.sum, len(ws.wasm)
		return loadOnce(ctx, spec)
	}
	return p, err
}

// panicError is a panic recovered while loading a module: what was being
// done, the value, and the goroutine's stack (for the log only: the error's
// message reaches the 503 a failed plugin's routes answer).
type panicError struct {
	what  string
	val   any
	stack []byte
}

func (e *panicError) Error() string {
	return fmt.Sprintf("%s panicked: %v (a bug in greenroom or wazero that this module meets; the stack is in the log)", e.what, e.val)
}

// recoverAs, deferred, turns a panic into *err, a *panicError naming what.
func recoverAs(what string, err *error) {
	if v := recover(); v != nil {
		*err = &panicError{what: what, val: v, stack: debug.Stack()}
	}
}

// ModuleError is the error of a load that failed once the module was
// read and compiled (its first instance failed: a guest initializer that
// panicked, say): Info describes that module, for an operator asking what
// it imports. Its message is Err's.
type ModuleError struct {
	Info Info
	Err  error
}

func (e *ModuleError) Error() string { return e.Err.Error() }
func (e *ModuleError) Unwrap() error { return e.Err }

// wrongSum is what loadOnce returns when ReadWasm gave bytes that are not the
// module spec.Sum names.
type wrongSum struct {
	wasm []byte
	sum  string
}

func (e *wrongSum) Error() string {
	return "the module read has sha256 " + e.sum + ", not the sum it was loaded under"
}

func loadOnce(ctx context.Context, spec Spec) (_ *Plugin, err error) {
	start := time.Now()
	lim := &spec.Limits
	if lim.Instances < 1 {
		lim.Instances = 1
	}
	if lim.Warm < 1 {
		lim.Warm = 1
	}
	lim.Warm = min(lim.Warm, lim.Instances)
	if lim.InitTimeout <= 0 {
		lim.InitTimeout = max(lim.Timeout, 10*time.Second)
	}
	if spec.Host == nil {
		return nil, errors.New("plugin spec has no host")
	}
	if spec.Counters == nil {
		spec.Counters = &Counters{}
	}
	if spec.HostCounters == nil {
		spec.HostCounters = hostfuncs.NewCounters()
	}
	p := &Plugin{id: spec.ID, spec: spec, log: spec.Log}
	wasm, size, sum := spec.Wasm, len(spec.Wasm), spec.Sum
	lazy := wasm == nil && spec.ReadWasm != nil
	if lazy {
		if sum == "" {
			return nil, errors.New("plugin spec has ReadWasm but no Sum")
		}
		size = spec.Size
	} else if sum == "" {
		sum = SHA256(wasm)
	}
	p.info = Info{SHA256: sum, Size: size}
	// original returns the module's bytes, reading them first if the
	// caller deferred that. A failure to read them is kept in srcErr: it
	// ends the load, where a failure to rewrite them falls back. Bytes
	// that are not the module sum names end it with a *wrongSum, and Load
	// starts over under their own sum.
	var srcErr error
	original := func() ([]byte, error) {
		if lazy {
			b, err := spec.ReadWasm()
			if err == nil {
				err = checkMagic(b)
			}
			if err == nil {
				if got := SHA256(b); got != sum {
					err = &wrongSum{wasm: b, sum: got}
				}
			}
			if err != nil {
				srcErr = err
				return nil, err
			}
			wasm, lazy = b, false
		}
		return wasm, nil
	}
	if pin := strings.ToLower(strings.TrimSpace(spec.SHA256)); pin != "" && pin != p.info.SHA256 {
		// A sum the caller remembered is not evidence enough against
		// the pin: the file is read and hashed first.
		if lazy {
			if _, err := original(); err != nil {
				return nil, err
			}
		}
		return nil, fmt.Errorf("sha256 pin mismatch: config pins %s, file is %s", pin, p.info.SHA256)
	}
	// At most 65 535 pages: wazero (v1.12) reports a memory of 65 536
	// pages (4 GiB) as 0 bytes, and every access to it fails as out of
	// bounds, so limits.memory = "4GiB" gets 64 KiB less.
	pages := uint32(min(lim.Memory/pageSize, maxMemoryPages))
	if pages == 0 {
		return nil, fmt.Errorf("memory limit %d bytes is less than one 64 KiB page", lim.Memory)
	}
	if !lazy {
		if err := checkMagic(wasm); err != nil {
			return nil, err
		}
	}
	// The module is rewritten: its memory maximum becomes the plugin's
	// cap, and (unless the operator turned it off) loops and calls get the
	// interruption checks of package instrument.
	engine := spec.Engine
	if engine == nil {
		engine = NewEngine(spec.Cache, "")
		p.own = engine
	}
	p.engine = engine
	defer func() {
		if err != nil && p.own != nil {
			p.own.Close(context.Background())
		}
	}()
	var code []byte
	var key string
	// seen: the rewritten module was on disk, so this module was very
	// likely compiled before and wazero's cache has its machine code.
	seen := false
	if !lim.NoInterrupt && !spec.forceWazero {
		opts := instrument.Options{Interrupt: true, MaxMemoryPages: pages, MaxTableEntries: MaxTableEntries, DataImage: true}
		out, st, err := engine.rewriteWith(p.log, original, sum, opts)
		if srcErr != nil {
			return nil, srcErr
		}
		err = hideMemoryCap(err, lim.MemorySecret)
		if errors.Is(err, instrument.ErrMalformed) || errors.Is(err, instrument.ErrOverLimit) || errors.Is(err, instrument.ErrReserved) || errors.Is(err, instrument.ErrUnsupported) {
			return nil, err // refused with or without the checks
		}
		if err != nil {
			// No fallback: wazero's close-on-context-done checks at loop
			// headers only, and a loop-free tree of calls (f calls g twice,
			// g calls h twice, ...) runs for hours without passing one,
			// ignoring the timeout and stalling the server's garbage
			// collection (docs/sandbox.md).
			return nil, fmt.Errorf("cannot instrument the module for interruption at its deadline: %w (limits.interruptible = false runs it without interruption, for a plugin the operator has vetted)", err)
		}
		p.mode, code, key, seen = InterruptFlag, out, rewriteKey(sum, opts), st.Cached
		if !lim.NoInterruptSecret {
			p.log.WithFields(logrus.Fields{"functions": st.Functions, "loops": st.Loops, "skipped": st.Skipped, "data_segments": st.DataSegments, "merged_segments": st.MergedSegments}).Debug("instrumented for interruption")
		}
	}
	if code == nil {
		p.mode = InterruptWazero
		if lim.NoInterrupt {
			p.mode = InterruptOff
		}
		opts := instrument.Options{MaxMemoryPages: pages, MaxTableEntries: MaxTableEntries, DataImage: true}
		var st instrument.Stats
		if code, st, err = engine.rewriteWith(p.log, original, sum, opts); err != nil {
			return nil, hideMemoryCap(err, lim.MemorySecret)
		}
		seen = st.Cached
		key = rewriteKey(sum, opts)
	}
	// The module's bytes are not needed once compiled (the decoded module
	// keeps what it uses); a plugin does not hold them for its lifetime.
	p.spec.Wasm, p.spec.ReadWasm = nil, nil
	cstart := time.Now()
	if p.rt, err = engine.runtime(ctx, p.mode == InterruptWazero); err != nil {
		return nil, err
	}
	p.cm, p.info, p.alloc, p.release, err = engine.compileWith(ctx, p.log, p.mode == InterruptWazero, key, code, !seen)
	p.CompileTime = time.Since(cstart)
	p.info.SHA256, p.info.Size = sum, size
	if err != nil {
		return nil, err
	}
	p.gc = gcTuning(*lim, p.info.MemoryMinPages)
	p.pool = newPool(p, p.spec.Tokens, lim.Instances, lim.QueueTimeout)
	if err := p.pool.warm(ctx, lim.Warm); err != nil {
		p.pool.close(context.Background())
		p.release()
		var ce *CallError
		if errors.As(err, &ce) {
			err = ce.Err
		}
		return nil, &ModuleError{Info: p.info, Err: err}
	}
	p.LoadTime = time.Since(start)
	return p, nil
}

// overRetireMemory says what is wrong when an instance, just
// initialized, already uses more memory than limits.retire_memory: every
// instance of the module will be retired after its first call, and each
// request will wait for the initializer to run again on a new instance.
// An instance of a module is the same after every start (a Go guest's init
// runs the same code), so the load says it once, as a warning: the plugin
// still serves, slowly, as the operator configured it (a retire size set
// low on purpose retires every instance after each call), where it used to
// do so without a word (an audit's module, declaring 26 MiB at start under
// a retire size of 24 MiB, made 7 instances for 5 requests).
func (p *Plugin) overRetireMemory(in *instance) error {
	lim := p.spec.Limits
	size := in.memorySize()
	if lim.RetireMemory == 0 || size <= lim.RetireMemory {
		return nil
	}
	return fmt.Errorf("an instance uses %s of memory once initialized (its module declares %s at start), over limits.retire_memory (%s): every instance will be retired after its first call, and each request will wait for a new one to initialize; raise limits.retire_memory (at most limits.memory, %s) or limits.memory",
		config.Size(size), config.Size(uint64(p.info.MemoryMinPages)*pageSize), toldSize(lim.RetireMemory, lim.RetireMemorySecret), toldSize(lim.Memory, lim.MemorySecret))
}

// toldDuration is a duration limit (or one computed from limits) as a
// message tells it: config.Redacted when it is a secret or computed from
// one ("2s" for "2000ms" is not matched by the redaction of the latter).
func toldDuration(d time.Duration, secret bool) string {
	if secret {
		return config.Redacted
	}
	return d.String()
}

// toldSize is a size limit as a message tells it: config.Redacted when it
// is a secret (the log's redaction matches the secret as written, "32MiB",
// not as told here, "33554432" written so).
func toldSize(n uint64, secret bool) string {
	if secret {
		return config.Redacted
	}
	return config.Size(n).String()
}

// ID returns the plugin's id.
func (p *Plugin) ID() string { return p.id }

// Info describes the plugin's module.
func (p *Plugin) Info() Info { return p.info }

// Interruption says how the plugin's guest code is stopped at deadlines.
func (p *Plugin) Interruption() Interruption { return p.mode }

// GC returns what the plugin's guests are told about garbage collection.
func (p *Plugin) GC() hostfuncs.GCTuning { return p.gc }

// Limits returns the limits the plugin runs under.
func (p *Plugin) Limits() Limits { return p.spec.Limits }

// Stats returns the pool's figures.
func (p *Plugin) Stats() Stats { return p.pool.stats() }

// Handle serves one HTTP request on a pooled instance. respond is called
// with the guest's response while the instance is still held, so the
// response's slices are valid only during respond. Errors are *CallError, or
// ErrReadmit (WithAdmission).
func (p *Plugin) Handle(ctx context.Context, req *hostfuncs.Request, respond func(hostfuncs.Response) error) error {
	var headers [][2][]byte
	return p.Invoke(ctx, Call{
		Export:    hostfuncs.ExportHandle,
		RequestID: req.RequestID,
		Encode: func(dst []byte, deadline int64) []byte {
			req.Deadline = deadline
			return hostfuncs.AppendRequest(dst, req)
		},
	}, func(in *instance, code uint32, out []byte) error {
		// An answer the guest finished after the call's deadline (a
		// handler that answered when r.Context() ended, at that very
		// deadline) is a timeout, as when the runtime interrupted it
		// first: which of the two comes first is a race, and the client
		// got 504 or the late answer at random.
		if req.Deadline > 0 && time.Now().UnixNano() > req.Deadline {
			return &CallError{Plugin: p.id, Kind: FailTimeout, Err: errAnsweredLate}
		}
		if code != hostfuncs.HandleOK {
			return &CallError{Plugin: p.id, Kind: FailTrap, Err: fmt.Errorf("%s returned %d", hostfuncs.ExportHandle, code)}
		}
		resp, err := hostfuncs.DecodeResponse(out, in.respHeaders)
		if err != nil {
			return &CallError{Plugin: p.id, Kind: FailBadResponse, Err: err}
		}
		headers = resp.Headers
		err = respond(resp)
		in.respHeaders = headers[:0]
		return err
	})
}

// errAnsweredLate is the error of a request whose guest answered after the
// call's deadline.
var errAnsweredLate = errors.New("the plugin answered after its limits.timeout had passed")

// errReturnedLate is the error of a call (a task's run) whose guest
// returned after the call's deadline.
var errReturnedLate = errors.New("the guest returned after the call's deadline had passed")

// Call describes one call into a guest export that takes the length of an
// input envelope, which the guest reads with request_read.
type Call struct {
	Export    string
	RequestID string
	Task      string
	// Timeout bounds the call; 0 means the plugin's limits.timeout.
	Timeout time.Duration
	// Encode appends the input envelope to dst; deadline is the call's
	// deadline in Unix nanoseconds.
	Encode func(dst []byte, deadline int64) []byte
	// Cancel, when not nil, lets the caller ask the guest to stop on its
	// own (cancel_requested answers 1 once it is requested); the call
	// still ends only when the guest returns or ctx ends. A call whose
	// cancellation was requested before it began is not made
	// (FailCanceled).
	Cancel *hostfuncs.CancelRequest
}

// ErrNotBegun is the error of a FailCanceled call whose cancellation was
// requested (Call.Cancel) before it began: the guest was not called.
var ErrNotBegun = errors.New("canceled before the call began")

// Invoke runs c on a pooled instance. When the guest returns normally,
// done gets its return code and what it wrote with response_write, while
// the instance is still held; an error from done that is a *CallError
// discards the instance. Return codes HandlePanicked and HandleBadInput
// discard the instance without calling done. Errors are *CallError, or
// ErrReadmit (WithAdmission).
func (p *Plugin) Invoke(ctx context.Context, c Call, done func(in *instance, code uint32, out []byte) error) error {
	err := p.invoke(ctx, c, done)
	if err != nil {
		p.spec.Counters.fail(KindOf(err))
	}
	return err
}

// maxKeptRequest is the largest request envelope buffer an instance keeps
// for its next call; a larger one (a large body) is let go when its call
// ends, so that idle instances do not hold the bodies they were sent.
const maxKeptRequest = 1 << 20

func (p *Plugin) invoke(ctx context.Context, c Call, done func(in *instance, code uint32, out []byte) error) error {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = p.spec.Limits.Timeout
	}
	in, deadline, err := p.pool.acquire(ctx, timeout)
	if err != nil {
		return err
	}
	if c.Cancel.Requested() {
		p.pool.release(in)
		return &CallError{Plugin: p.id, Kind: FailCanceled, Err: ErrNotBegun}
	}
	// A reload while the call waited may have revoked its credential or
	// closed its route: it is let in again before any guest code runs,
	// its instance held meanwhile.
	if readmit(ctx) != nil {
		p.pool.release(in)
		return ErrReadmit
	}
	// A call into the guest: attempts refused before one (busy, closed)
	// count as failures only.
	p.spec.Counters.Calls.Add(1)
	in.state.Reset()
	in.reqBuf = c.Encode(in.reqBuf[:0], deadline.UnixNano())
	in.state.Request = in.reqBuf
	in.state.RequestID, in.state.Task = c.RequestID, c.Task
	in.state.Cancel = c.Cancel

	fn := in.handle
	if c.Export != hostfuncs.ExportHandle {
		if fn = in.mod.ExportedFunction(c.Export); fn == nil {
			p.pool.release(in)
			return &CallError{Plugin: p.id, Kind: FailTrap, Err: fmt.Errorf("module does not export %s", c.Export)}
		}
	}
	code, kind, tainted, err := in.run(ctx, deadline, fn, uint64(len(in.reqBuf))) // ends what the call left open
	in.state.Request = nil
	if cap(in.reqBuf) > maxKeptRequest {
		in.reqBuf = nil // one large request body does not stay with the instance
	}
	if err != nil {
		p.pool.discard(in)
		return &CallError{Plugin: p.id, Kind: kind, Err: err}
	}
	switch uint32(code) {
	case hostfuncs.HandlePanicked:
		p.pool.discard(in)
		return &CallError{Plugin: p.id, Kind: FailPanic, Err: errors.New("guest panicked (its value and stack are in the plugin's log)")}
	case hostfuncs.HandleBadInput:
		p.pool.discard(in)
		return &CallError{Plugin: p.id, Kind: FailTrap, Err: fmt.Errorf("guest could not decode the %s input envelope", c.Export)}
	}
	if in.state.ResponseOverflow {
		p.pool.discard(in)
		limit := strconv.Itoa(p.spec.Limits.MaxResponse) + " bytes"
		if p.spec.Limits.MaxResponseSecret {
			limit = config.Redacted
		}
		return &CallError{Plugin: p.id, Kind: FailBadResponse, Err: fmt.Errorf("the response envelope (status, headers and body) is over limits.max_response of %s", limit)}
	}
	err = done(in, uint32(code), in.state.Response)
	in.state.Reset()
	var ce *CallError
	if errors.As(err, &ce) || tainted {
		// tainted: the deadline fired as the call ended, so the interrupt
		// flag may be set; the instance must not serve again.
		p.pool.discard(in)
		return err
	}
	p.pool.release(in)
	return err
}

// Close stops taking calls, lets the calls in flight finish until ctx ends,
// then interrupts the ones still running, closes every instance and
// releases the compiled module. It returns an error naming what was cut
// off when ctx ended first.
func (p *Plugin) Close(ctx context.Context) error {
	var err error
	if busy := p.pool.close(ctx); busy > 0 {
		err = fmt.Errorf("plugin %s: %d calls still running when the drain deadline passed; interrupted", p.id, busy)
		if stuck := p.pool.interrupt(); stuck > 0 {
			// Only a guest that cannot be interrupted (limits.interruptible
			// = false) stays: its instance is left running rather than
			// unmapped under it.
			p.log.WithField("instances", stuck).Error("plugin instances did not stop when interrupted; leaving them")
			// Their memory stays mapped under them: the engine is
			// not closed while they may run.
			p.engine.leftRunning.Add(int64(stuck))
		}
	}
	p.release()
	if p.own != nil {
		p.own.Close(context.Background())
	}
	if f := p.spec.OnClose; f != nil {
		p.closed.Do(f)
	}
	return err
}

// Run is Invoke for callers outside this package: it returns the guest's
// return code, HandleOK or HandleError, and a copy of its output. Any other
// return code discards the instance and is a FailTrap *CallError; a
// return after the call's deadline is a FailTimeout one.
func (p *Plugin) Run(ctx context.Context, c Call) (code uint32, out []byte, err error) {
	var deadline int64
	if encode := c.Encode; encode != nil {
		c.Encode = func(dst []byte, d int64) []byte {
			deadline = d
			return encode(dst, d)
		}
	}
	err = p.Invoke(ctx, c, func(_ *instance, rc uint32, b []byte) error {
		// As for a request (Handle): a call that returned after its
		// deadline, from a host call that outlasted it, timed out, as
		// one the runtime interrupted did (TestRunReturningPastItsDeadline).
		if deadline > 0 && time.Now().UnixNano() > deadline {
			return &CallError{Plugin: p.id, Kind: FailTimeout, Err: errReturnedLate}
		}
		if rc != hostfuncs.HandleOK && rc != hostfuncs.HandleError {
			return &CallError{Plugin: p.id, Kind: FailTrap, Err: fmt.Errorf("%s returned unknown code %d", c.Export, rc)}
		}
		code, out = rc, append([]byte(nil), b...)
		return nil
	})
	return code, out, err
}
