package hostfuncs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/tetratelabs/wazero/api"
)

// The scheduler capability (docs/abi.md, "Scheduler"; docs/scheduler.md).
// The guest registers its tasks while it initializes (task_register); the
// runtime later calls the guest's greenroom_task_run export with a task
// envelope for each run. The code here only decodes and encodes; the
// runtime validates schedules and runs tasks.

// CapabilityScheduler is the grant the scheduler functions belong to.
const CapabilityScheduler = "scheduler"

// Task scopes as encoded in a task registration.
const (
	ScopeGlobal uint8 = 0 // one replica at a time, each due time once
	ScopeLocal  uint8 = 1 // every replica, on its own clock
)

// TaskSpec is a task as the guest registers it, decoded but not validated:
// the runtime checks the id, parses Cron and bounds the durations.
type TaskSpec struct {
	ID           string
	Cron         string        // "" when Every is set
	Every        time.Duration // 0 when Cron is set
	Timeout      time.Duration // 0: the plugin's limits.timeout
	InitialDelay time.Duration
	Scope        uint8
}

// AppendTaskSpec encodes t as a task_register request:
//
//	bytes id, bytes cron, u64 every_ns, u64 timeout_ns, u64 initial_delay_ns, u8 scope
func AppendTaskSpec(dst []byte, t TaskSpec) []byte {
	dst = appendString(dst, t.ID)
	dst = appendString(dst, t.Cron)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(t.Every))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(t.Timeout))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(t.InitialDelay))
	return append(dst, t.Scope)
}

// MaxTaskID and MaxTaskCron are the longest task id and cron expression
// a task may have (the scheduler's bounds, runtime/scheduler).
const (
	MaxTaskID   = 128
	MaxTaskCron = 200
)

// errTaskTooLong is DecodeTaskSpec's error for an id or cron over its
// bound.
var errTaskTooLong = errors.New("longer than any task takes")

// DecodeTaskSpec parses a task_register request (see AppendTaskSpec). It
// refuses truncated or trailing bytes, text that is not UTF-8, and an id
// or cron longer than MaxTaskID or MaxTaskCron (returning the spec with
// it cut to one byte over the bound, errTaskTooLong); durations are two's
// complement, so a negative one decodes as such. Everything else (ids,
// schedules, ranges, scopes) is for the runtime to judge.
func DecodeTaskSpec(b []byte) (TaskSpec, error) {
	var t TaskSpec
	d := decoder{b: b, base: errMalformed}
	id, cron := d.bytes(), d.bytes()
	every, timeout, delay := d.u64(), d.u64(), d.u64()
	scope := d.u8()
	if d.err != nil {
		return t, d.err
	}
	if d.off != len(b) {
		return t, fmt.Errorf("%w: %d trailing bytes", errMalformed, len(b)-d.off)
	}
	// Longer than any the scheduler takes: not copied out of the guest's
	// memory, nor scanned (an id or cron of the whole memory, up to 4 GiB,
	// was copied onto the host's heap at each call, for the scheduler to
	// refuse it). The spec returned has it cut to one byte over the
	// bound, for the runtime to refuse as it refuses any invalid task
	// (the refusal fails the plugin's load).
	if len(id) > MaxTaskID || len(cron) > MaxTaskCron {
		err := fmt.Errorf("%w: a task id of %d bytes (at most %d), a cron of %d bytes (at most %d)", errTaskTooLong, len(id), MaxTaskID, len(cron), MaxTaskCron)
		return TaskSpec{
			ID: string(id[:min(len(id), MaxTaskID+1)]), Cron: string(cron[:min(len(cron), MaxTaskCron+1)]),
			Every: time.Duration(int64(every)), Timeout: time.Duration(int64(timeout)), InitialDelay: time.Duration(int64(delay)),
			Scope: scope,
		}, err
	}
	if !utf8.Valid(id) || !utf8.Valid(cron) {
		return t, fmt.Errorf("%w: task id or cron is not UTF-8", errMalformed)
	}
	return TaskSpec{
		ID: string(id), Cron: string(cron),
		Every: time.Duration(int64(every)), Timeout: time.Duration(int64(timeout)), InitialDelay: time.Duration(int64(delay)),
		Scope: scope,
	}, nil
}

// TaskRun is what the runtime sends a guest for one run of a task: the
// input envelope of greenroom_task_run.
type TaskRun struct {
	ID       string
	RunID    string
	Deadline int64 // Unix nanoseconds after which the host interrupts the call
	Due      int64 // Unix nanoseconds of the due time; 0 for a manual trigger
	Manual   bool  // started by POST .../trigger rather than the schedule
}

// AppendTaskRun encodes r as a task envelope:
//
//	bytes id, bytes run_id, u64 deadline_ns, u64 due_ns, u8 flags (bit 0: manual)
func AppendTaskRun(dst []byte, r TaskRun) []byte {
	dst = appendString(dst, r.ID)
	dst = appendString(dst, r.RunID)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Deadline))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Due))
	var flags byte
	if r.Manual {
		flags |= 1
	}
	return append(dst, flags)
}

// task_register(buf_ptr, buf_len i32) -> i32
//
// Registers one task (the encoding of AppendTaskSpec). Accepted only while
// the guest initializes. Returns 0, ErrDenied when the plugin was not
// granted the scheduler (for every call: nothing is registered), or
// ErrInvalid for a
// malformed request, a call after initialization, or a task the runtime
// refuses (a bad id or schedule, a duplicate id, a duration out of range,
// more tasks than one plugin may register; such a task also fails the
// plugin's load). Traps if the buffer is outside guest memory.
func taskRegister(ctx context.Context, mod api.Module, stack []uint64) {
	const fn = "task_register"
	in := instanceFrom(ctx, fn)
	buf := guestBytes(mod, fn, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	if err := in.Host.Scheduler(); err != nil {
		stack[0] = api.EncodeI32(in.Fail(ErrDenied, "%s", err.Error()))
		return
	}
	if !in.Initializing {
		stack[0] = api.EncodeI32(in.Fail(ErrInvalid, "%s: tasks can only be registered while the plugin initializes (call greenroom.Schedule from init)", fn))
		return
	}
	spec, err := DecodeTaskSpec(buf)
	if err != nil && !errors.Is(err, errTaskTooLong) {
		stack[0] = api.EncodeI32(in.Fail(ErrInvalid, "%s: %v", fn, err))
		return
	}
	if err := in.Host.RegisterTask(in, spec); err != nil {
		stack[0] = api.EncodeI32(in.failWith(err))
		return
	}
	if err != nil { // (the runtime refuses such a task)
		stack[0] = api.EncodeI32(in.Fail(ErrInvalid, "%s: %v", fn, err))
		return
	}
	stack[0] = 0
}
