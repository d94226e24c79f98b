package scheduler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	rtplugin "github.com/greenroom-dev/greenroom/runtime/plugin"
)

// plugins/todo's purge-done task, run through the admin API on both
// databases: done items go, the others stay, and the run is in the
// history.
func TestTodoPurgeDone(t *testing.T) {
	for _, b := range []struct {
		name string
		conf func(testing.TB) string
	}{{"sqlite", sqliteConf}, {"pg", pgConf}} {
		t.Run(b.name, func(t *testing.T) {
			in := start(t, "one", b.conf(t), fmt.Sprintf(`
[plugins.todo]
path = %q
[plugins.todo.capabilities]
database = true
scheduler = true
[plugins.todo.config]
done_retention = "0s"
`, todoWasm))
			st := find(list(t, in, ""), "todo", "purge-done")
			if st == nil || st.Scope != "global" || st.Every != "10m0s" || st.Timeout != "1m0s" {
				t.Fatalf("purge-done: %+v", st)
			}
			// The first run happens at load; wait for it so the trigger
			// below does not meet it.
			waitFor(t, 20*time.Second, "the first run", func() bool {
				return len(ended(history(t, in, "todo", "purge-done"), "succeeded")) == 1
			})
			ids := map[string]string{}
			for _, title := range []string{"done", "open"} {
				status, h, body := in.Do(t, "POST", "/api/todo/items", strings.NewReader(`{"title":"`+title+`"}`))
				if status != 201 {
					t.Fatalf("create: %d %s", status, body)
				}
				ids[title] = h.Get("Location")
			}
			if status, _, body := in.Do(t, "PATCH", ids["done"], strings.NewReader(`{"done":true}`)); status != 200 || !strings.Contains(body, `"done_at":"`) {
				t.Fatalf("mark done: %d %s", status, body)
			}
			if status, body := trigger(t, in, "todo", "purge-done"); status != 200 {
				t.Fatalf("trigger: %d %s", status, body)
			}
			waitFor(t, 20*time.Second, "the triggered run", func() bool {
				return len(ended(history(t, in, "todo", "purge-done"), "succeeded")) == 2
			})
			_, _, body := in.Get(t, "/api/todo/items")
			var items struct{ Items []struct{ Title string } }
			json.Unmarshal([]byte(body), &items)
			if len(items.Items) != 1 || items.Items[0].Title != "open" {
				t.Errorf("items after the purge: %s", body)
			}
			if !strings.Contains(in.Log.String(), "purged 1 items done more than 0s ago") {
				t.Error("the task's output is not in the log")
			}
		})
	}
}

var inspectCache, _ = wazero.NewCompilationCacheWithDir(filepath.Join(guesttest.CacheDir(), "wazero"))

// Only a plugin that calls Schedule imports task_register: plugin inspect
// shows the scheduler capability for todo, not for hello.
func TestCapabilityImports(t *testing.T) {
	for path, want := range map[string]string{todoWasm: "[database scheduler]", tasksWasm: "[database scheduler]"} {
		wasm, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		info, err := rtplugin.Inspect(context.Background(), wasm, inspectCache)
		if err != nil {
			t.Fatal(err)
		}
		if got := "[" + strings.Join(info.Capabilities, " ") + "]"; got != want {
			t.Errorf("%s: capabilities %s, want %s", path, got, want)
		}
	}
}

// plugins/todo's purge settings are checked as it loads, and a bad one
// fails the load naming its key: purge_every = "0s" or "500ms" failed it
// naming only the task ("set Cron or Every", "Every is 500ms"), and a
// done_retention that is not a duration loaded, then failed every run.
func TestTodoBadPurgeConfig(t *testing.T) {
	cases := []struct{ key, value, want string }{
		{"purge_every", "0s", `purge_every = "0s"`},
		{"purge_every", "500ms", `purge_every = "500ms"`},
		{"purge_every", "9000h", `purge_every = "9000h"`},
		{"purge_every", "1 day", `purge_every = "1 day"`},
		{"done_retention", "1 day", `done_retention = "1 day"`},
		{"done_retention", "-1h", `done_retention = "-1h"`},
	}
	conf := []string{sqliteConf(t)}
	for i, tc := range cases {
		conf = append(conf, fmt.Sprintf("[plugins.todo%d]\npath = %q\n[plugins.todo%d.capabilities]\ndatabase = true\nscheduler = true\n[plugins.todo%d.config]\n%s = %q\n", i, todoWasm, i, i, tc.key, tc.value))
	}
	in := start(t, "one", conf...)
	for i, tc := range cases {
		state, reason := in.RT.Slot(fmt.Sprintf("todo%d", i)).Status()
		if state != "failed" || !strings.Contains(reason, tc.want) {
			t.Errorf("%s = %q: state %s, reason %q; want failed naming %s", tc.key, tc.value, state, reason, tc.want)
		}
	}
}
