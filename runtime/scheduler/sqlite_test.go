package scheduler_test

import (
	"strings"
	"testing"
	"time"
)

// A single node on SQLite: a global task runs on its schedule and its
// history and state show through the admin API.
func TestSQLiteSingleNode(t *testing.T) {
	in := start(t, "one", sqliteConf(t), plugin("sched", true,
		def{ID: "tick", Every: "1s"},
		def{ID: "fail", Every: "1s", Action: "error"},
	))
	waitFor(t, 15*time.Second, "two runs of each task", func() bool {
		return len(ended(history(t, in, "sched", "tick"), "succeeded")) >= 2 && len(ended(history(t, in, "sched", "fail"), "failed")) >= 2
	})
	l := list(t, in, "")
	tick := find(l, "sched", "tick")
	if tick == nil || tick.Scope != "global" || tick.Schedule != "every 1s" || tick.NextRun == nil || tick.LastOutcome != "succeeded" || tick.LastStart == nil || tick.LastDurationMS == nil {
		t.Fatalf("tick: %+v", tick)
	}
	fail := find(l, "sched", "fail")
	if fail == nil || fail.LastOutcome != "failed" || fail.LastFailure != "error" || !strings.Contains(fail.LastError, "task failed on purpose") {
		t.Fatalf("fail: %+v", fail)
	}
	if l.Replica != "one" || !l.Enabled {
		t.Errorf("list: %+v", l)
	}
}
