package runtime

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
)

// Once Close returns, nothing the runtime started still runs: no task
// run, lease release or history write, no pool, LISTEN connection,
// reaper, ticker or retry. serve logs "shut down cleanly" right after
// Close and exits, so work still running then would be cut off
// unreported, and the line would not be true. A task run is in progress
// (a global one, holding its lease) when the shutdown begins, beside a
// local task writing to the plugin's database. The goroutines are found
// by a profiler label the runtime's are started under (a goroutine
// inherits its creator's labels); one still there 2 s after Close
// returned (a generous bound: a goroutine that is ending takes
// microseconds) is named with its stack.
func TestNothingRunsAfterClose(t *testing.T) {
	wasm := guesttest.Build(t, "runtime/scheduler/testdata/guests/tasks")
	cache := filepath.Join(guesttest.CacheDir(), "runtime-test-cache")
	for _, tc := range []struct {
		name     string
		database func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string {
			return fmt.Sprintf("client = \"sqlite\"\nconnection = %q\n", "file:"+t.TempDir())
		}},
		{"pg", func(t *testing.T) string { return fmt.Sprintf("client = \"pg\"\nconnection = %q\n", pgtest.URL(t)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := fmt.Sprintf(`[runtime]
cache_dir = %q
[database]
%s[plugins.sched]
path = %q
[plugins.sched.capabilities]
scheduler = true
database = true
[[plugins.sched.config.tasks]]
id = "slow"
every = "1s"
timeout = "1m"
scope = "global"
action = "sleep"
ms = 60000
[[plugins.sched.config.tasks]]
id = "mark"
every = "1s"
scope = "local"
action = "db"
`, cache, tc.database(t), wasm)
			cfg, err := config.Read([]config.Source{{Name: "config.toml", Data: []byte(text)}}, func(string) (string, bool) { return "", false })
			if err != nil {
				t.Fatal(err)
			}
			log, _ := logtest.NewNullLogger()
			label := "TestNothingRunsAfterClose/" + tc.name
			pprof.Do(context.Background(), pprof.Labels("test", label), func(ctx context.Context) {
				rt, err := New(cfg, log, Options{})
				if err != nil {
					t.Fatal(err)
				}
				if err := rt.Prepare(ctx); err != nil {
					rt.Close(ctx)
					t.Fatal(err)
				}
				rt.StartScheduler()
				rt.Load(ctx)
				for deadline := time.Now().Add(30 * time.Second); !taskRunning(ctx, rt, "slow"); time.Sleep(20 * time.Millisecond) {
					if time.Now().After(deadline) {
						rt.Close(ctx)
						t.Fatal("task slow did not start within 30s")
					}
				}
				// As serve shuts down: the scheduler first, then Close,
				// under one deadline.
				sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				rt.BeginShutdown()
				if err := rt.StopScheduler(sctx); err != nil {
					t.Errorf("StopScheduler: %v", err)
				}
				if err := rt.Close(sctx); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			var left []string
			for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if left = labelled(label); len(left) == 0 || time.Now().After(deadline) {
					break
				}
			}
			if len(left) > 0 {
				t.Errorf("%d goroutines of the runtime still run 2s after Close returned:\n%s", len(left), strings.Join(left, "\n\n"))
			}
		})
	}
}

// taskRunning reports whether plugin sched's task id has a run in
// progress.
func taskRunning(ctx context.Context, rt *Runtime, id string) bool {
	tasks, err := rt.Scheduler().Tasks(ctx, false)
	if err != nil {
		return false
	}
	for _, st := range tasks {
		if st.Plugin == "sched" && st.ID == id && st.Running {
			return true
		}
	}
	return false
}

// labelled returns the goroutine profile's records (stacks, with how many
// goroutines share each) of the goroutines carrying profiler label test
// = label.
func labelled(label string) []string {
	var b bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&b, 1)
	want := fmt.Sprintf("%q:%q", "test", label)
	var out []string
	for _, rec := range strings.Split(b.String(), "\n\n") {
		if strings.Contains(rec, "# labels: ") && strings.Contains(rec, want) {
			out = append(out, rec)
		}
	}
	return out
}
