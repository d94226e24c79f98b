package scheduler_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// On embedded SQLite, a single node: the trigger endpoint runs a task now
// and a second trigger while it runs gets 409, global and local tasks
// alike, as on PostgreSQL (TestPGTriggerConflict); once the run ended a
// trigger runs it again, and the history has both manual runs.
func TestTriggerConflictOnSQLite(t *testing.T) {
	t.Parallel()
	in := start(t, "one", sqliteConf(t), plugin("sched", true,
		def{ID: "yearly", Cron: "0 0 1 1 *", Action: "sleep", MS: 6000},
		def{ID: "here", Cron: "0 0 1 1 *", Scope: "local", Action: "sleep", MS: 6000}))
	for _, task := range []string{"yearly", "here"} {
		if status, body := trigger(t, in, "sched", task); status != http.StatusOK || !strings.Contains(body, `"run_id"`) {
			t.Fatalf("trigger %s: %d %s", task, status, body)
		}
		if status, body := trigger(t, in, "sched", task); status != http.StatusConflict || !strings.Contains(body, "task_running") {
			t.Errorf("second trigger of %s while it runs: %d %s, want 409 task_running", task, status, body)
		}
	}
	for _, task := range []string{"yearly", "here"} {
		waitFor(t, 20*time.Second, "the triggered run of "+task+" to end", func() bool {
			st := find(list(t, in, ""), "sched", task)
			return st != nil && !st.Running && st.LastOutcome == "succeeded"
		})
		if status, body := trigger(t, in, "sched", task); status != http.StatusOK {
			t.Errorf("trigger of %s after its run ended: %d %s", task, status, body)
		}
		waitFor(t, 20*time.Second, "the second run of "+task+" to end", func() bool {
			runs := ended(history(t, in, "sched", task), "succeeded")
			return len(runs) == 2
		})
		for _, r := range history(t, in, "sched", task) {
			if r.Trigger != "manual" {
				t.Errorf("%s run %+v, want only the manual runs", task, r)
			}
		}
	}
}
