package scheduler_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
	"github.com/greenroom-dev/greenroom/runtime/internal/testflags"
	"github.com/greenroom-dev/greenroom/runtime/scheduler"
)

var (
	tasksWasm string
	todoWasm  string
	cacheDir  string
)

func TestMain(m *testing.M) {
	var err error
	if tasksWasm, err = guesttest.BuildErr("runtime/scheduler/testdata/guests/tasks"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if todoWasm, err = guesttest.BuildErr("plugins/todo"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cacheDir = filepath.Join(guesttest.CacheDir(), "scheduler-test-cache")
	// Most tests are parallel and wait for due times, leases and
	// timeouts: four at a time (98-115 s for the package on a two-core
	// machine under other load, against 179-198 s two at a time).
	testflags.Parallel(4)
	os.Exit(pgtest.Main(m))
}

// def is one task of the tasks guest (its config's tasks array).
type def struct {
	ID, Cron, Every, Timeout, InitialDelay, Scope, Action string
	MS                                                    int
}

func (d def) toml(plugin string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[[plugins.%s.config.tasks]]\nid = %q\n", plugin, d.ID)
	for _, kv := range [][2]string{{"cron", d.Cron}, {"every", d.Every}, {"timeout", d.Timeout}, {"initial_delay", d.InitialDelay}, {"scope", d.Scope}, {"action", d.Action}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, "%s = %q\n", kv[0], kv[1])
		}
	}
	if d.MS > 0 {
		fmt.Fprintf(&b, "ms = %d\n", d.MS)
	}
	return b.String()
}

// plugin is a [plugins.<id>] table running the tasks guest with defs.
func plugin(id string, granted bool, defs ...def) string {
	s := fmt.Sprintf("[plugins.%s]\npath = %q\n[plugins.%s.limits]\ntimeout = \"10s\"\n", id, tasksWasm, id)
	if granted {
		s += fmt.Sprintf("[plugins.%s.capabilities]\nscheduler = true\n", id)
	}
	for _, d := range defs {
		s += d.toml(id)
	}
	return s
}

func sqliteConf(t testing.TB) string {
	return fmt.Sprintf("[database]\nclient = \"sqlite\"\nconnection = \"file:%s\"\n", t.TempDir())
}

func pgConf(t testing.TB) string {
	return fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", pgtest.URL(t))
}

func schedConf(lease string) string {
	return fmt.Sprintf("[scheduler]\nlease = %q\n", lease)
}

// start runs one replica of the config.
func start(t testing.TB, replica string, conf ...string) *servertest.Instance {
	t.Helper()
	return servertest.Start(t, strings.Join(conf, "\n"), servertest.Options{CacheDir: cacheDir, Runtime: runtime.Options{Replica: replica}})
}

type taskList struct {
	Replica string                 `json:"replica"`
	Enabled bool                   `json:"enabled"`
	Tasks   []scheduler.TaskStatus `json:"tasks"`
}

func list(t testing.TB, in *servertest.Instance, query string) taskList {
	t.Helper()
	status, _, body := in.Get(t, "/.greenroom/scheduler/v1/tasks"+query)
	if status != 200 {
		t.Fatalf("GET tasks: %d %s", status, body)
	}
	var l taskList
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		t.Fatalf("GET tasks: %v: %s", err, body)
	}
	return l
}

func find(l taskList, plugin, id string) *scheduler.TaskStatus {
	for i := range l.Tasks {
		if l.Tasks[i].Plugin == plugin && l.Tasks[i].ID == id {
			return &l.Tasks[i]
		}
	}
	return nil
}

// history returns a task's last runs, newest first, through the admin API.
func history(t testing.TB, in *servertest.Instance, plugin, id string) []scheduler.Run {
	t.Helper()
	status, _, body := in.Get(t, "/.greenroom/scheduler/v1/tasks/"+plugin+"/"+id+"?runs=100")
	if status != 200 {
		t.Fatalf("GET task %s/%s: %d %s", plugin, id, status, body)
	}
	var out struct {
		Task scheduler.TaskStatus `json:"task"`
		Runs []scheduler.Run      `json:"runs"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("GET task: %v: %s", err, body)
	}
	return out.Runs
}

func trigger(t testing.TB, in *servertest.Instance, plugin, id string) (int, string) {
	t.Helper()
	status, _, body := in.Do(t, "POST", "/.greenroom/scheduler/v1/tasks/"+plugin+"/"+id+"/trigger", nil)
	return status, body
}

// waitFor polls cond every 100ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ended returns the runs that ended, with the given outcome if not "".
func ended(runs []scheduler.Run, outcome string) []scheduler.Run {
	var out []scheduler.Run
	for _, r := range runs {
		if r.Outcome != "running" && (outcome == "" || r.Outcome == outcome) {
			out = append(out, r)
		}
	}
	return out
}
