package runtime

import (
	"context"
	"testing"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

// SetReloadStep makes f see every step of the reloads of this test (see
// testReloadStep).
func SetReloadStep(t *testing.T, f func(step string)) {
	testReloadStep = f
	t.Cleanup(func() { testReloadStep = nil })
}

// RunTask runs task of plugin id as the scheduler does (a manual run).
func (r *Runtime) RunTask(ctx context.Context, id, task string) (uint32, []byte, error) {
	return r.runTask(ctx, id, plugin.Call{
		Export: hostfuncs.ExportTaskRun,
		Task:   task,
		Encode: func(dst []byte, deadline int64) []byte {
			return hostfuncs.AppendTaskRun(dst, hostfuncs.TaskRun{ID: task, RunID: "test", Deadline: deadline, Manual: true})
		},
	})
}
