package greenroom

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// This file is the plugin's side of the scheduler capability (docs/abi.md,
// "Scheduler"; docs/scheduler.md): Schedule registers a task with the
// runtime, and the runtime's calls of greenroom_task_run come to runTask.
// It is plain Go, tested natively; the wasip1 build plugs in the host
// function and the export.

// Scope says where a scheduled task runs.
type Scope int

const (
	// Global (the default): one replica at a time runs the task, and
	// each due time runs once across all replicas. Replicas coordinate
	// through the runtime's database.
	Global Scope = iota
	// Local: every replica runs the task, on its own clock.
	Local
)

func (s Scope) String() string {
	switch s {
	case Global:
		return "global"
	case Local:
		return "local"
	}
	return fmt.Sprintf("Scope(%d)", int(s))
}

// Task is a piece of background work the runtime runs on a schedule.
type Task struct {
	// ID names the task within the plugin: 1-128 letters, digits, '.',
	// '_' or '-', starting with a letter or digit. It appears in the
	// admin API's paths and in logs.
	ID string
	// Exactly one of Cron and Every is set. Cron is a standard cron
	// expression of five fields (minute hour day-of-month month
	// day-of-week) or a descriptor such as @hourly, in UTC unless it
	// starts with CRON_TZ=<zone>; Every is a period from 1s to 366 days
	// (8784h).
	Cron  string
	Every time.Duration
	// Timeout bounds each run: ctx is cancelled and the run interrupted
	// when it passes. Zero means the plugin's limits.timeout; otherwise
	// from 1ms to 24h.
	Timeout time.Duration
	// InitialDelay delays the first run after the plugin loads, from 0 to
	// 24h.
	InitialDelay time.Duration
	// Scope is Global (the default) or Local.
	Scope Scope
	// Run does the work. It has the plugin's capabilities, as a request
	// handler does (DB, Config, ...). An error or a panic marks the run
	// failed; the next due time runs anyway.
	//
	// ctx ends at the timeout (DeadlineExceeded), and is cancelled
	// (Canceled) when the runtime asks the run to stop because the
	// replica shuts down: Run then has until the shutdown's deadline
	// (less a tenth, at most a second; docs/scheduler.md) to clean up and
	// return before it is interrupted; or because an operator cancels the
	// run (POST .../cancel): then 5 s. The SDK learns of
	// the request while Run's goroutine waits (a select, a channel, a
	// sleep): Go on WebAssembly runs one goroutine at a time, so a Run
	// that only computes sees ctx cancelled only when it next blocks, and
	// its timeout's timer fires only then too: a loop that only computes
	// and checks ctx.Err() calls runtime.Gosched() in it, or compares
	// time.Now() with ctx.Deadline(), or it runs on to the run's
	// interruption.
	Run func(ctx context.Context) error
}

// TaskRun describes the run in progress, for a task's Run function.
type TaskRun struct {
	// Task is the task's ID; RunID identifies this run in the history.
	Task  string
	RunID string
	// Due is the due time this run is for; zero for a run triggered by an
	// operator (Manual).
	Due    time.Time
	Manual bool
}

type taskRunKey struct{}

// TaskRunFrom returns the run that ctx belongs to, inside a task's Run.
func TaskRunFrom(ctx context.Context) (TaskRun, bool) {
	r, ok := ctx.Value(taskRunKey{}).(TaskRun)
	return r, ok
}

var (
	tasksMu sync.Mutex
	tasks   = map[string]Task{}
)

// Schedule registers a task with the runtime. Call it from init: the
// runtime accepts registrations only while the plugin initializes.
//
// The operator must grant the capability (scheduler = true under
// [plugins.<id>.capabilities]); otherwise Schedule returns an error naming
// it (ErrDenied) and nothing is registered. A task the runtime refuses — an
// invalid id, cron expression or duration, or an id registered twice —
// makes Schedule return an error (ErrInvalid) and also fails the plugin's
// load, with the reason, so that a mistake cannot go unnoticed. The two
// mistakes the SDK catches itself, a Task without Run or with an unknown
// Scope, fail the load by panicking in the plugin's init (compiled to
// WebAssembly; natively Schedule returns them as ErrInvalid).
//
// Natively (unit tests) the runtime's checks are approximated, every
// registration is accepted, and RunTask runs a registered task.
func Schedule(t Task) error {
	if t.Run == nil {
		return refuseTask(&Error{Op: "task_register", Code: ErrInvalid.Code, Message: fmt.Sprintf("task %q has no Run function", t.ID)})
	}
	if t.Scope != Global && t.Scope != Local {
		return refuseTask(&Error{Op: "task_register", Code: ErrInvalid.Code, Message: fmt.Sprintf("task %q: unknown scope %d", t.ID, int(t.Scope))})
	}
	if err := registerTask(appendTaskSpec(nil, t), t); err != nil {
		return err
	}
	tasksMu.Lock()
	tasks[t.ID] = t
	tasksMu.Unlock()
	return nil
}

// appendTaskSpec encodes a task_register request:
//
//	bytes id, bytes cron, u64 every_ns, u64 timeout_ns, u64 initial_delay_ns, u8 scope
func appendTaskSpec(dst []byte, t Task) []byte {
	dst = appendStr(dst, t.ID)
	dst = appendStr(dst, t.Cron)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(t.Every))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(t.Timeout))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(t.InitialDelay))
	return append(dst, byte(t.Scope))
}

// decodeTaskRun reads a task envelope:
//
//	bytes id, bytes run_id, u64 deadline_ns, u64 due_ns, u8 flags (bit 0: manual)
func decodeTaskRun(env string) (run TaskRun, deadline time.Time, err error) {
	r := envReader{s: env}
	run.Task = r.str()
	run.RunID = r.str()
	dl := int64(r.u64())
	due := int64(r.u64())
	flags := r.u8()
	if r.err != nil {
		return run, deadline, r.err
	}
	if r.off != len(env) {
		return run, deadline, errors.New("greenroom: trailing bytes after the task envelope")
	}
	if dl > 0 {
		deadline = time.Unix(0, dl)
	}
	if due > 0 {
		run.Due = time.Unix(0, due).UTC()
	}
	run.Manual = flags&1 != 0
	return run, deadline, nil
}

// runTask runs the task an envelope names and returns the export's code:
// handleOK, handleError with msg the error's text, handlePanicked (the
// stack goes to stderr), or handleBadInput.
func runTask(env string) (code uint32, msg string) {
	info, deadline, err := decodeTaskRun(env)
	if err != nil {
		fmt.Fprintf(os.Stderr, "greenroom: %v\n", err)
		return handleBadInput, ""
	}
	tasksMu.Lock()
	t, ok := tasks[info.Task]
	tasksMu.Unlock()
	if !ok {
		return handleError, fmt.Sprintf("task %q is not registered in this plugin instance", info.Task)
	}
	ctx := context.Background()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	if requested := cancelRequested; requested != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		defer watchCancel(ctx, cancel, requested)()
	}
	ctx = context.WithValue(ctx, taskRunKey{}, info)
	err, panicked := callTask(ctx, t)
	switch {
	case panicked:
		return handlePanicked, ""
	case err != nil:
		msg = fmt.Sprint(err) // "<nil>" for a nil pointer, not a panic
		if msg == "" {
			msg = "task returned an error with no message"
		}
		return handleError, msg
	}
	return handleOK, ""
}

// cancelRequested asks the runtime whether it asked the task run in
// progress to stop (cancel_requested). The wasip1 build sets it when a
// task is registered, so that a plugin that schedules nothing does not
// import the function; natively it is nil unless a test sets it.
var cancelRequested func() bool

// cancelPollEvery is how often a task run asks cancelRequested (a
// variable for tests). It bounds how long after the request a waiting Run
// sees ctx cancelled; each ask is one host call of well under a
// microsecond.
var cancelPollEvery = 100 * time.Millisecond

// watchCancel asks requested every cancelPollEvery, from a goroutine of
// its own, and calls cancel when it answers true; it stops then, when ctx
// ends, or when the returned function is called (Run returned).
func watchCancel(ctx context.Context, cancel context.CancelFunc, requested func() bool) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(cancelPollEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			// Run may have returned meanwhile, and the next call into the
			// instance be running: its host call would ask about that one.
			select {
			case <-done:
				return
			default:
			}
			if requested() {
				cancel()
				return
			}
		}
	}()
	return func() { close(done) }
}

// callTask calls t.Run, turning a panic into panicked (logged as a
// handler's is: one error record with the stack).
func callTask(ctx context.Context, t Task) (err error, panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			reportPanic("in task "+t.ID, v, debug.Stack())
			err, panicked = fmt.Errorf("task %s panicked: %v", t.ID, v), true
		}
	}()
	return t.Run(ctx), false
}

// handleError is the greenroom_task_run code of a run whose Run returned
// an error; the output is the error's text.
const handleError = 3

// Native checks, approximating the runtime's (runtime/scheduler.NewTask).

// validTaskID reports whether id matches ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$,
// the runtime's scheduler.TaskIDPattern. It is written out rather than a
// regexp because the regexp package added about 390 KB (190 KB of it code)
// to every plugin's module, which the host decodes, validates and compiles
// at each load, and whose initializer every instance runs
// (docs/benchmarks.md).
func validTaskID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

func checkTask(t Task) error {
	bad := func(format string, args ...any) error {
		return &Error{Op: "task_register", Code: ErrInvalid.Code, Message: fmt.Sprintf("task %q: ", t.ID) + fmt.Sprintf(format, args...)}
	}
	switch {
	case !validTaskID(t.ID):
		return bad("invalid id: want 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
	case t.Cron != "" && t.Every != 0:
		return bad("set either Cron or Every, not both")
	case t.Cron == "" && t.Every == 0:
		return bad("set Cron or Every")
	case t.Every != 0 && (t.Every < time.Second || t.Every > 366*24*time.Hour):
		return bad("Every is %s; it must be between 1s and 8784h0m0s", t.Every)
	case t.Timeout < 0 || t.Timeout > 24*time.Hour || t.Timeout > 0 && t.Timeout < time.Millisecond:
		// Under a millisecond (1ns) every run failed at its deadline.
		return bad("Timeout is %s; it must be 0 (the plugin's limits.timeout) or from 1ms to 24h0m0s", t.Timeout)
	case t.InitialDelay < 0 || t.InitialDelay > 24*time.Hour:
		return bad("InitialDelay is %s; it must be between 0 and 24h0m0s", t.InitialDelay)
	}
	if c := t.Cron; c != "" {
		// What the runtime refuses before it parses (ParseCron in
		// runtime/scheduler): these passed a plugin's unit tests, then
		// failed its load.
		switch {
		case len(c) > maxTaskCron:
			return bad("cron %q: longer than %d bytes", c[:maxTaskCron]+"...", maxTaskCron)
		case strings.TrimSpace(c) != c || strings.ContainsFunc(c, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }):
			return bad("cron %q: has leading or trailing space or control characters", c)
		case !utf8.ValidString(c):
			return bad("cron %q: is not valid UTF-8", c)
		}
		body := c
		if strings.HasPrefix(c, "CRON_TZ=") || strings.HasPrefix(c, "TZ=") {
			i := strings.IndexByte(c, ' ')
			if i < 0 {
				return bad("cron %q: a CRON_TZ= prefix must be followed by a space and the schedule", c)
			}
			prefix, zone, _ := strings.Cut(c[:i], "=")
			switch {
			case zone == "":
				return bad("cron %q: %s= names no zone; name an IANA zone (%s=Europe/Paris), or leave the prefix out for UTC", c, prefix, prefix)
			case strings.EqualFold(zone, "Local"), strings.EqualFold(zone, "localtime"), strings.EqualFold(zone, "posixrules"):
				return bad("cron %q: %s=%s is not accepted: replicas in different zones would compute different due times; name an IANA zone (%s=Europe/Paris)", c, prefix, zone, prefix)
			}
			body = strings.TrimSpace(c[i:])
		}
		switch {
		case strings.HasPrefix(body, "@every"):
			return bad("cron %q: @every is not accepted here; set Every instead", c)
		case strings.HasPrefix(body, "@"):
		case len(strings.Fields(body)) != 5:
			return bad("cron %q has %d fields; want the standard 5 (minute hour day-of-month month day-of-week)", c, len(strings.Fields(body)))
		}
	}
	return nil
}

// maxTaskCron and maxTasks are the runtime's bounds: the longest cron
// expression (hostfuncs.MaxTaskCron) and how many tasks one plugin may
// register (scheduler.MaxTasks).
const (
	maxTaskCron = 200
	maxTasks    = 1000
)

// scheduledTasks returns the registered tasks sorted by id.
func scheduledTasks() []Task {
	tasksMu.Lock()
	defer tasksMu.Unlock()
	out := make([]Task, 0, len(tasks))
	for _, t := range tasks {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b Task) int { return strings.Compare(a.ID, b.ID) })
	return out
}
