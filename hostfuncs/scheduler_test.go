package hostfuncs

import (
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestTaskSpecRoundTrip(t *testing.T) {
	for _, spec := range []TaskSpec{
		{ID: "refresh", Cron: "*/5 * * * *", Timeout: time.Minute, InitialDelay: 10 * time.Second, Scope: ScopeGlobal},
		{ID: "x", Every: 30 * time.Second, Scope: ScopeLocal},
		{ID: "neg", Every: -time.Second, Timeout: -1, InitialDelay: -time.Hour, Scope: 7}, // the runtime judges these
		{},
	} {
		got, err := DecodeTaskSpec(AppendTaskSpec(nil, spec))
		if err != nil || got != spec {
			t.Errorf("%+v: got %+v, %v", spec, got, err)
		}
	}
}

func TestTaskSpecMalformed(t *testing.T) {
	valid := AppendTaskSpec(nil, TaskSpec{ID: "a", Every: time.Second})
	cases := map[string][]byte{
		"empty":     nil,
		"truncated": valid[:len(valid)-1],
		"trailing":  append(append([]byte(nil), valid...), 0),
		"huge id":   binary.LittleEndian.AppendUint32(nil, 0xffffffff),
		"not utf8":  AppendTaskSpec(nil, TaskSpec{ID: "\xff", Every: time.Second}),
	}
	for name, b := range cases {
		if _, err := DecodeTaskSpec(b); !errors.Is(err, errMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecodeTaskSpec(f *testing.F) {
	f.Add(AppendTaskSpec(nil, TaskSpec{ID: "a", Cron: "@hourly", Timeout: time.Second}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		spec, err := DecodeTaskSpec(b)
		if err == nil {
			if again := AppendTaskSpec(nil, spec); string(again) != string(b) {
				t.Errorf("decoded %+v does not encode back to the input", spec)
			}
		}
	})
}

func TestAppendTaskRun(t *testing.T) {
	b := AppendTaskRun(nil, TaskRun{ID: "t", RunID: "r1", Deadline: 5, Due: 7, Manual: true})
	want := []byte{1, 0, 0, 0, 't', 2, 0, 0, 0, 'r', '1', 5, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1}
	if string(b) != string(want) {
		t.Errorf("got %v, want %v", b, want)
	}
}

// An id or a cron longer than any the scheduler takes is not copied out
// of the guest's memory: one of the whole memory (up to 4 GiB) was
// copied onto the host's heap, and scanned, at each call. The runtime is
// given it cut to one byte over the bound, which it refuses as any
// invalid task (failing the plugin's load).
func TestTaskSpecTooLongNotCopied(t *testing.T) {
	huge := string(make([]byte, 64<<20))
	for _, tc := range []struct {
		spec     TaskSpec
		id, cron int
	}{
		{TaskSpec{ID: huge, Every: time.Second}, MaxTaskID + 1, 0},
		{TaskSpec{ID: "a", Cron: huge}, 1, MaxTaskCron + 1},
	} {
		b := AppendTaskSpec(nil, tc.spec)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		spec, err := DecodeTaskSpec(b)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, errTaskTooLong) || !strings.Contains(err.Error(), "67108864 bytes") {
			t.Errorf("decode: %v, want it too long, naming its length", err)
		}
		if len(spec.ID) != tc.id || len(spec.Cron) != tc.cron || spec.Every != tc.spec.Every {
			t.Errorf("decoded an id of %d bytes and a cron of %d, want %d and %d", len(spec.ID), len(spec.Cron), tc.id, tc.cron)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
			t.Errorf("decoding it allocated %d bytes", n)
		}
	}
	if _, err := DecodeTaskSpec(AppendTaskSpec(nil, TaskSpec{ID: strings.Repeat("a", MaxTaskID), Cron: strings.Repeat("*", MaxTaskCron)})); err != nil {
		t.Errorf("an id and a cron at the bounds: %v", err)
	}
}

// taskHost records the tasks task_register passes on, refusing every one.
type taskHost struct {
	Host
	specs []TaskSpec
}

func (h *taskHost) Scheduler() error { return nil }
func (h *taskHost) RegisterTask(_ *Instance, t TaskSpec) error {
	h.specs = append(h.specs, t)
	return Failf(ErrInvalid, "refused")
}

// task_register hands the runtime a task whose id is too long cut to one
// byte over the bound, so that it is refused as any invalid task is (and
// the plugin's load fails), without the whole id copied.
func TestTaskRegisterTooLongIsRefusedByTheRuntime(t *testing.T) {
	h := &taskHost{}
	in := &Instance{Host: h, Initializing: true}
	mem := module{mem: memory{b: AppendTaskSpec(nil, TaskSpec{ID: strings.Repeat("a", 1<<20), Every: time.Second})}}
	code, trap := bufferCall(taskRegister, in, mem)(0, uint32(len(mem.mem.b)))
	if code != ErrInvalid || trap != nil || len(h.specs) != 1 || len(h.specs[0].ID) != MaxTaskID+1 {
		t.Fatalf("task_register: %d %v, passed on %d tasks, want one with an id of %d bytes, refused", code, trap, len(h.specs), MaxTaskID+1)
	}
}
