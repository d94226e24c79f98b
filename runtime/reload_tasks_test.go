package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
	"github.com/greenroom-dev/greenroom/runtime/scheduler"
)

// taskPlugin is a [plugins.<id>] table running the scheduler's tasks
// guest, granted the scheduler, with one global task "long" every hour.
func taskPlugin(t *testing.T, id string) string {
	wasm := guesttest.Build(t, "runtime/scheduler/testdata/guests/tasks")
	return fmt.Sprintf("[plugins.%s]\npath = %q\n[plugins.%s.capabilities]\nscheduler = true\n[[plugins.%s.config.tasks]]\nid = \"long\"\nevery = \"1h\"\n", id, wasm, id, id)
}

// taskStatus returns the status of task id of plugin, and whether this
// replica registers it.
func taskStatus(t *testing.T, rt *runtime.Runtime, plugin, id string) (scheduler.TaskStatus, bool) {
	t.Helper()
	all, err := rt.Scheduler().Tasks(context.Background(), false)
	if err != nil {
		t.Fatalf("tasks: %v", err)
	}
	for _, st := range all {
		if st.Plugin == plugin && st.ID == id {
			return st, true
		}
	}
	return scheduler.TaskStatus{}, false
}

// A plugin that a reload adds runs its first task when it is due, not a
// period later: its tasks are scheduled only once the plugin table holds
// it, and a run that looks for the plugin while the reload is still
// installing it waits for it. Before, the task was scheduled as soon as
// the plugin loaded, while the reload went on with the next plugins; its
// first run found no plugin ("unknown plugin"), was recorded as failed,
// and the next was an hour later.
func TestReloadAddedPluginRunsItsFirstTask(t *testing.T) {
	ver := guesttest.Build(t, "runtime/server/testdata/guests/ver1")
	db := fmt.Sprintf("[database]\nclient = \"sqlite\"\nconnection = \"file:%s\"\n", t.TempDir())
	base := fmt.Sprintf("[plugins.p]\npath = %q\n", ver)
	in := servertest.Start(t, db+base, testOptions())
	rt := in.RT

	// Inside the reload, once a1 has loaded and while the reload would go
	// on loading the plugins after it: a run of a1's task comes (as the
	// scheduler's would, were the task already scheduled), and the
	// scheduler gets the time to run the task if it holds it.
	manual := make(chan error, 1)
	runtime.SetReloadStep(t, func(step string) {
		if step != "loaded a1" {
			return
		}
		go func() {
			code, out, err := rt.RunTask(context.Background(), "a1", "long")
			if err == nil && code != hostfuncs.HandleOK {
				err = fmt.Errorf("task returned %d: %s", code, out)
			}
			manual <- err
		}()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if st, ok := taskStatus(t, rt, "a1", "long"); !ok || st.LastOutcome != "" {
				break
			}
		}
	})
	in.SetConfig(db + base + taskPlugin(t, "a1"))
	if res := in.Reload(t); res.Plugins["a1"].Outcome != runtime.OutcomeAdded {
		t.Fatalf("reload: %+v", res)
	}
	if err := <-manual; err != nil {
		t.Errorf("a run of a1's task during the reload that added a1: %v, want it run once a1 serves", err)
	}
	var st scheduler.TaskStatus
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var ok bool
		if st, ok = taskStatus(t, rt, "a1", "long"); ok && st.LastOutcome != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a1/long never ran: %+v", st)
		}
	}
	if st.LastOutcome != "succeeded" {
		t.Errorf("first scheduled run of a1/long: %s (%s) %s, want succeeded", st.LastOutcome, st.LastFailure, st.LastError)
	}
	if st.NextRun == nil || st.LastStart == nil || st.NextRun.Sub(*st.LastStart) > time.Hour || st.NextRun.Sub(*st.LastStart) < 59*time.Minute {
		t.Errorf("a1/long: last start %v, next run %v, want the next run an hour after the first", st.LastStart, st.NextRun)
	}
}

// A plugin that a reload removes has its tasks dropped before the plugin
// table stops holding it: no run of its tasks can start then and find no
// plugin.
func TestReloadRemovedPluginDropsTasksFirst(t *testing.T) {
	ver := guesttest.Build(t, "runtime/server/testdata/guests/ver1")
	db := fmt.Sprintf("[database]\nclient = \"sqlite\"\nconnection = \"file:%s\"\n", t.TempDir())
	base := fmt.Sprintf("[plugins.p]\npath = %q\n", ver)
	in := servertest.Start(t, db+base+taskPlugin(t, "a1"), testOptions())
	rt := in.RT
	if _, ok := taskStatus(t, rt, "a1", "long"); !ok {
		t.Fatal("a1/long is not scheduled")
	}
	scheduled := make(chan bool, 1)
	runtime.SetReloadStep(t, func(step string) {
		if step == "published" {
			_, ok := taskStatus(t, rt, "a1", "long")
			scheduled <- ok
		}
	})
	in.SetConfig(db + base)
	if res := in.Reload(t); res.Plugins["a1"].Outcome != runtime.OutcomeRemoved {
		t.Fatalf("reload: %+v", res)
	}
	if <-scheduled {
		t.Error("a1/long was still scheduled when the plugin table without a1 was published")
	}
	if rt.Slot("a1") != nil {
		t.Error("a1 still has a slot")
	}
	if _, _, err := rt.RunTask(context.Background(), "a1", "long"); !errors.Is(err, runtime.ErrUnknownPlugin) {
		t.Errorf("run of a removed plugin's task: %v, want ErrUnknownPlugin", err)
	}
}

// A task run that waits for an instance when a reload removes its plugin
// is withdrawn with its task (canceled, not begun), not failed as if the
// plugin were unavailable (an audit's: "plugin p is closed", kind
// unavailable, counted among the task failures).
func TestReloadRemovedPluginWithdrawsWaitingRun(t *testing.T) {
	wasm := guesttest.Build(t, "runtime/scheduler/testdata/guests/tasks")
	db := fmt.Sprintf("[database]\nclient = \"sqlite\"\nconnection = \"file:%s\"\n", t.TempDir())
	conf := fmt.Sprintf(`[plugins.a1]
path = %q
[plugins.a1.limits]
instances = 1
queue_timeout = "20s"
[plugins.a1.capabilities]
scheduler = true
[[plugins.a1.config.tasks]]
id = "hold"
every = "1h"
initial_delay = "1h"
action = "sleep"
ms = 3000
[[plugins.a1.config.tasks]]
id = "waits"
every = "1h"
initial_delay = "1h"
`, wasm)
	in := servertest.Start(t, db+conf, testOptions())
	rt := in.RT
	held := make(chan error, 1)
	go func() {
		_, _, err := rt.RunTask(context.Background(), "a1", "hold")
		held <- err
	}()
	time.Sleep(300 * time.Millisecond) // hold takes the one instance
	waited := make(chan error, 1)
	go func() {
		_, _, err := rt.RunTask(context.Background(), "a1", "waits")
		waited <- err
	}()
	time.Sleep(300 * time.Millisecond)
	in.SetConfig(db)
	if res := in.Reload(t); res.Plugins["a1"].Outcome != runtime.OutcomeRemoved {
		t.Fatalf("reload: %+v", res)
	}
	err := <-waited
	if plugin.KindOf(err) != plugin.FailCanceled || !errors.Is(err, plugin.ErrNotBegun) || !strings.Contains(err.Error(), "a reload removed plugin a1 before the run began") {
		t.Errorf("the waiting run: %v (kind %v), want it canceled before it began, saying the plugin was removed", err, plugin.KindOf(err))
	}
	if err := <-held; err != nil {
		t.Errorf("the run holding the instance: %v, want it to finish on its version", err)
	}
}

// A plugin that a reload removes while its local task runs, and that the
// next reload adds back at once, does not run the task again beside the
// run still finishing on its old version: a run never overlaps the
// previous run of the same task on the same replica (scheduler.md). The
// new registration's first run waits for that run to end. Before, the
// re-registered task had no run of its own in progress, and its first run
// started at once, overlapping the old one by 2.5 s (a task every second
// that takes three), a trigger started one too, and the task was listed
// as not running.
func TestReloadRemovedAndAddedBackDoesNotOverlapItsRun(t *testing.T) {
	wasm := guesttest.Build(t, "runtime/scheduler/testdata/guests/tasks")
	ver := guesttest.Build(t, "runtime/server/testdata/guests/ver1")
	db := fmt.Sprintf("[database]\nclient = \"sqlite\"\nconnection = \"file:%s\"\n", t.TempDir())
	base := fmt.Sprintf("[plugins.p]\npath = %q\n", ver)
	tp := fmt.Sprintf("[plugins.t]\npath = %q\n[plugins.t.capabilities]\nscheduler = true\n"+
		"[[plugins.t.config.tasks]]\nid = \"slow\"\nevery = \"1s\"\nscope = \"local\"\naction = \"sleep\"\nms = 3000\ntimeout = \"10s\"\n", wasm)
	in := servertest.Start(t, db+base+tp, testOptions())
	rt := in.RT
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, ok := taskStatus(t, rt, "t", "slow"); ok && st.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the task did not start within 20 s")
		}
	}
	in.SetConfig(db + base)
	if res := in.Reload(t); res.Plugins["t"].Outcome != runtime.OutcomeRemoved {
		t.Fatalf("reload removing t: %+v", res)
	}
	in.SetConfig(db + base + tp)
	if res := in.Reload(t); res.Plugins["t"].Outcome != runtime.OutcomeAdded {
		t.Fatalf("reload adding t back: %+v", res)
	}
	if st, _ := taskStatus(t, rt, "t", "slow"); !st.Running {
		t.Errorf("status while the old version's run goes on: %+v, want running", st)
	}
	// Nor does a manual run start beside it: the task is running.
	if run, err := rt.Scheduler().Trigger(context.Background(), "t", "slow"); !errors.Is(err, scheduler.ErrRunning) {
		t.Errorf("trigger while the old version's run goes on: %+v, %v; want %v", run, err, scheduler.ErrRunning)
	}
	time.Sleep(4 * time.Second) // the old run ends, and the new one starts after it
	_, runs, err := rt.Scheduler().Task(context.Background(), "t", "slow", 50)
	if err != nil {
		t.Fatal(err)
	}
	end := func(r scheduler.Run) time.Time {
		if r.Ended == nil {
			return time.Now()
		}
		return *r.Ended
	}
	for i, a := range runs {
		for _, b := range runs[i+1:] {
			if a.Started.Before(end(b)) && b.Started.Before(end(a)) {
				t.Errorf("run %s (%s to %v) overlaps run %s (%s to %v)", a.RunID, a.Started, a.Ended, b.RunID, b.Started, b.Ended)
			}
		}
	}
	if len(runs) < 2 {
		t.Fatalf("%d runs, want the one the reload found running and the next: %+v", len(runs), runs)
	}
}
