package plugin

import (
	"context"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

// hostCallTaskModule is hostCallModule whose greenroom_task_run makes one
// host call (config_get of 0 bytes) and returns 0 (HandleOK) at once,
// passing no interruption check after it.
func hostCallTaskModule() []byte {
	// (drop (call $config_get (i32.const 0) (i32.const 0))) (i32.const 0)
	return hostCallModule(hostfuncs.ExportTaskRun, 1, []byte{0, 0x41, 0, 0x41, 0, 0x10, 0, 0x1a, 0x41, 0, 0x0b})
}

// A task run that returns success after its call's deadline fired, from a
// host call that outlasted it, timed out, as a request that answers late
// does (errAnsweredLate): it was recorded as succeeded (an audit), though
// the runtime had interrupted it and discarded its instance. Within the
// deadline the same run succeeds.
func TestRunReturningPastItsDeadline(t *testing.T) {
	log := logrus.NewEntry(logrus.New())
	for _, tc := range []struct {
		delay, timeout time.Duration
		late           bool
	}{
		{300 * time.Millisecond, 100 * time.Millisecond, true},
		{10 * time.Millisecond, 5 * time.Second, false},
	} {
		p, err := Load(context.Background(), Spec{ID: "late", Wasm: hostCallTaskModule(), Limits: testLimits(), Cache: testCache,
			Host: blockingHost{testHost{log: log}, tc.delay}, Log: log})
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		code, _, err := p.Run(context.Background(), Call{Export: hostfuncs.ExportTaskRun, Timeout: tc.timeout,
			Encode: func(dst []byte, _ int64) []byte { return dst }})
		p.Close(context.Background())
		if tc.late && KindOf(err) != FailTimeout {
			t.Errorf("run returning %s past a %s deadline = code %d, %v; want a timeout", tc.delay-tc.timeout, tc.timeout, code, err)
		}
		if !tc.late && (err != nil || code != hostfuncs.HandleOK) {
			t.Errorf("run within its deadline = code %d, %v; want it to succeed", code, err)
		}
	}
}
