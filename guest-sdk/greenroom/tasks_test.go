//go:build !wasip1

package greenroom

import (
	"context"
	"encoding/binary"
	"errors"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func nop(context.Context) error { return nil }

// freshTasks empties the task registry for one test (and after it), so
// that the tests also pass with -count above 1.
func freshTasks(t *testing.T) {
	reset := func() {
		tasksMu.Lock()
		clear(tasks)
		tasksMu.Unlock()
	}
	reset()
	t.Cleanup(reset)
}

func TestScheduleChecks(t *testing.T) {
	freshTasks(t)
	if err := Schedule(Task{ID: "sdk-ok", Every: time.Minute, Run: nop}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		task Task
		want string
	}{
		{Task{ID: "sdk-ok", Every: time.Minute, Run: nop}, "registered twice"},
		{Task{ID: "norun", Every: time.Minute}, "no Run function"},
		{Task{ID: "scope", Every: time.Minute, Scope: 9, Run: nop}, "unknown scope"},
		{Task{ID: "bad id", Every: time.Minute, Run: nop}, "invalid id"},
		{Task{ID: "both", Every: time.Minute, Cron: "@hourly", Run: nop}, "not both"},
		{Task{ID: "neither", Run: nop}, "set Cron or Every"},
		{Task{ID: "fast", Every: time.Millisecond, Run: nop}, "between 1s"},
		{Task{ID: "timeout", Every: time.Minute, Timeout: -time.Second, Run: nop}, "Timeout"},
		{Task{ID: "delay", Every: time.Minute, InitialDelay: 48 * time.Hour, Run: nop}, "InitialDelay"},
		{Task{ID: "secs", Cron: "0 * * * * *", Run: nop}, "6 fields"},
		{Task{ID: "atevery", Cron: "@every 1m", Run: nop}, "set Every instead"},
	} {
		err := Schedule(tc.task)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want ErrInvalid with %q", tc.task.ID, err, tc.want)
		}
	}
	ids := map[string]bool{}
	for _, task := range ScheduledTasks() {
		ids[task.ID] = true
	}
	if !ids["sdk-ok"] || ids["norun"] || ids["fast"] {
		t.Errorf("scheduled: %v; want sdk-ok and none of the refused tasks", ids)
	}
}

// Natively, Schedule refuses what the runtime refuses without a cron
// parser: a cron over 200 bytes, with surrounding space, control
// characters or invalid UTF-8, a CRON_TZ= prefix without a zone or
// naming the host's, and a task past the 1000th. They passed a plugin's
// unit tests, then failed its load.
func TestScheduleChecksNativelyWhatTheRuntimeRefuses(t *testing.T) {
	freshTasks(t)
	for _, tc := range []struct {
		cron, want string
	}{
		{"0 0 * * " + strings.Repeat("1,", 100) + "1", "longer than 200 bytes"},
		{" 0 * * * *", "leading or trailing space"},
		{"0 * * * *\n", "leading or trailing space"},
		{"0 *\x00 * * *", "control characters"},
		{"0 * * * \xff", "not valid UTF-8"},
		{"CRON_TZ=Europe/Paris", "followed by a space"},
		{"CRON_TZ= 0 9 * * *", "names no zone"},
		{"CRON_TZ=Local 0 9 * * *", "not accepted"},
		{"TZ=localtime 0 9 * * *", "not accepted"},
	} {
		err := Schedule(Task{ID: "c", Cron: tc.cron, Run: nop})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("cron %q: %v, want ErrInvalid with %q", tc.cron, err, tc.want)
		}
	}
	for _, ok := range []string{"CRON_TZ=Europe/Paris 0 9 * * *", "@daily", "0\t9 * * *"} {
		if err := Schedule(Task{ID: "ok" + string(rune('a'+len(ok)%26)) + strings.Repeat("x", len(ok)%7), Cron: ok, Run: nop}); err != nil {
			t.Errorf("cron %q: %v", ok, err)
		}
	}
	freshTasks(t)
	for i := range 1000 {
		if err := Schedule(Task{ID: "t" + strings.Repeat("0", 4-len(itoa(i))) + itoa(i), Every: time.Minute, Run: nop}); err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
	}
	if err := Schedule(Task{ID: "t1000", Every: time.Minute, Run: nop}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "more than 1000 tasks") {
		t.Errorf("the 1001st task: %v", err)
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func TestRunTaskNatively(t *testing.T) {
	freshTasks(t)
	var saw TaskRun
	var deadline time.Time
	if err := Schedule(Task{ID: "sdk-run", Cron: "CRON_TZ=UTC @daily", Timeout: time.Minute, Scope: Local, Run: func(ctx context.Context) error {
		saw, _ = TaskRunFrom(ctx)
		deadline, _ = ctx.Deadline()
		return errors.New("nope")
	}}); err != nil {
		t.Fatal(err)
	}
	if err := RunTask(context.Background(), "sdk-run"); err == nil || err.Error() != "nope" {
		t.Errorf("RunTask: %v", err)
	}
	if saw.Task != "sdk-run" || !saw.Manual || time.Until(deadline) < 50*time.Second {
		t.Errorf("run %+v, deadline in %s", saw, time.Until(deadline))
	}
	if err := Schedule(Task{ID: "sdk-panic", Every: time.Hour, Run: func(context.Context) error { panic("boom") }}); err != nil {
		t.Fatal(err)
	}
	if err := RunTask(context.Background(), "sdk-panic"); err == nil || !strings.Contains(err.Error(), "panicked: boom") {
		t.Errorf("RunTask of a panicking task: %v", err)
	}
	if err := RunTask(context.Background(), "sdk-none"); err == nil {
		t.Error("RunTask of an unknown task succeeded")
	}
}

// taskEnvelope encodes a task envelope as the runtime does (docs/abi.md).
func taskEnvelope(id, run string, deadline, due int64, manual bool) string {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(id)))
	b = append(b, id...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(run)))
	b = append(b, run...)
	b = binary.LittleEndian.AppendUint64(b, uint64(deadline))
	b = binary.LittleEndian.AppendUint64(b, uint64(due))
	flags := byte(0)
	if manual {
		flags = 1
	}
	return string(append(b, flags))
}

// runTask is what greenroom_task_run does with the envelope.
func TestRunTaskEnvelope(t *testing.T) {
	freshTasks(t)
	var saw TaskRun
	var left time.Duration
	Schedule(Task{ID: "env-ok", Every: time.Hour, Run: func(ctx context.Context) error {
		saw, _ = TaskRunFrom(ctx)
		dl, _ := ctx.Deadline()
		left = time.Until(dl)
		return nil
	}})
	Schedule(Task{ID: "env-err", Every: time.Hour, Run: func(context.Context) error { return errors.New("it broke") }})
	Schedule(Task{ID: "env-panic", Every: time.Hour, Run: func(context.Context) error { panic("boom") }})
	// A nil *ptrError in an error: its Error method would dereference nil.
	Schedule(Task{ID: "env-nilerr", Every: time.Hour, Run: func(context.Context) error { var e *ptrError; return e }})
	due := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	deadline := time.Now().Add(30 * time.Second).UnixNano()
	if code, msg := runTask(taskEnvelope("env-ok", "r1", deadline, due.UnixNano(), false)); code != handleOK || msg != "" {
		t.Errorf("ok: %d %q", code, msg)
	}
	if saw.Task != "env-ok" || saw.RunID != "r1" || !saw.Due.Equal(due) || saw.Manual || left < 25*time.Second || left > 30*time.Second {
		t.Errorf("run %+v, %s left", saw, left)
	}
	if code, msg := runTask(taskEnvelope("env-err", "r2", deadline, 0, true)); code != handleError || msg != "it broke" {
		t.Errorf("error: %d %q", code, msg)
	}
	if code, _ := runTask(taskEnvelope("env-panic", "r3", deadline, 0, true)); code != handlePanicked {
		t.Errorf("panic: %d", code)
	}
	if code, msg := runTask(taskEnvelope("env-nilerr", "r3b", deadline, 0, true)); code != handleError || msg != "<nil>" {
		t.Errorf("nil error pointer: %d %q, want an error run with <nil>", code, msg)
	}
	if code, msg := runTask(taskEnvelope("env-nope", "r4", deadline, 0, true)); code != handleError || !strings.Contains(msg, "not registered") {
		t.Errorf("unknown: %d %q", code, msg)
	}
	env := taskEnvelope("env-ok", "r5", deadline, 0, false)
	for n := 0; n < len(env); n++ {
		if code, _ := runTask(env[:n]); code != handleBadInput {
			t.Fatalf("truncated envelope of %d bytes: %d", n, code)
		}
	}
	if code, _ := runTask(env + "x"); code != handleBadInput {
		t.Errorf("trailing bytes: %d", code)
	}
}

// While a task's Run runs, the SDK asks the runtime whether it asked the
// run to stop (cancel_requested, here a fake) and cancels Run's ctx when
// it did; it stops asking when Run returns.
func TestRunTaskCancelRequested(t *testing.T) {
	freshTasks(t)
	var requested atomic.Bool
	var asked atomic.Int32
	oldPoll, oldEvery := cancelRequested, cancelPollEvery
	cancelRequested = func() bool { asked.Add(1); return requested.Load() }
	cancelPollEvery = 5 * time.Millisecond
	t.Cleanup(func() { cancelRequested, cancelPollEvery = oldPoll, oldEvery })

	started := make(chan struct{}, 1)
	var sawErr error
	Schedule(Task{ID: "wait", Every: time.Hour, Run: func(ctx context.Context) error {
		started <- struct{}{}
		select {
		case <-ctx.Done():
			sawErr = ctx.Err()
			return ctx.Err()
		case <-time.After(20 * time.Second):
			return errors.New("ctx was not cancelled")
		}
	}})
	Schedule(Task{ID: "short", Every: time.Hour, Run: func(ctx context.Context) error {
		time.Sleep(30 * time.Millisecond) // the SDK asks a few times meanwhile
		return ctx.Err()
	}})
	deadline := time.Now().Add(time.Minute).UnixNano()

	// Not requested: the run goes on to its end, ctx alive.
	if code, msg := runTask(taskEnvelope("short", "r1", deadline, 0, true)); code != handleOK {
		t.Fatalf("short run: %d %q", code, msg)
	}
	if asked.Load() == 0 {
		t.Error("the SDK never asked whether the run was to stop")
	}
	// It stops asking once Run has returned.
	n := asked.Load()
	time.Sleep(50 * time.Millisecond)
	if m := asked.Load(); m != n {
		t.Errorf("asked %d more times after Run returned", m-n)
	}

	// Requested: ctx is cancelled.
	go func() {
		<-started
		time.Sleep(20 * time.Millisecond)
		requested.Store(true)
	}()
	code, msg := runTask(taskEnvelope("wait", "r2", deadline, 0, true))
	if code != handleError || msg != context.Canceled.Error() || !errors.Is(sawErr, context.Canceled) {
		t.Errorf("run asked to stop: %d %q, ctx.Err() %v; want handleError, context canceled", code, msg, sawErr)
	}
}

// TestValidTaskID holds validTaskID to the runtime's pattern.
func TestValidTaskID(t *testing.T) {
	pattern := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	ids := []string{"", "a", "A", "0", "-a", ".a", "_a", "a-b.c_d", "a b", "a/b", "é", "a\n", "a\x00",
		strings.Repeat("a", 128), strings.Repeat("a", 129), "z9.-_", "ok\u00e9"}
	for _, id := range ids {
		if got, want := validTaskID(id), pattern.MatchString(id); got != want {
			t.Errorf("validTaskID(%q) = %v, the runtime's pattern says %v", id, got, want)
		}
	}
}

// A Timeout under a millisecond (1ns) was accepted and made every run fail
// at its deadline: refused, naming the task, as the runtime refuses it
// (runtime/scheduler's TestSubMillisecondTaskTimeout). 0 (the plugin's
// limits.timeout) and 1ms are accepted, and so is any InitialDelay from
// 0 to 24h (1ns is "at once": harmless).
func TestSubMillisecondTaskTimeout(t *testing.T) {
	freshTasks(t)
	for _, d := range []time.Duration{time.Nanosecond, 999 * time.Microsecond} {
		err := Schedule(Task{ID: "tiny", Every: time.Minute, Timeout: d, Run: nop})
		want := `task "tiny": Timeout is ` + d.String() + `; it must be 0 (the plugin's limits.timeout) or from 1ms to 24h0m0s`
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("Timeout %s: %v, want ErrInvalid with %q", d, err, want)
		}
	}
	for i, task := range []Task{
		{ID: "zero", Every: time.Minute, Run: nop},
		{ID: "ms", Every: time.Minute, Timeout: time.Millisecond, Run: nop},
		{ID: "delay", Every: time.Minute, Timeout: time.Second, InitialDelay: time.Nanosecond, Run: nop},
	} {
		if err := Schedule(task); err != nil {
			t.Errorf("%d %s: %v", i, task.ID, err)
		}
	}
}
