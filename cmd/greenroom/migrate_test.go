package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/migrations"
	"github.com/greenroom-dev/greenroom/runtime/build"
	"github.com/greenroom-dev/greenroom/runtime/database"
)

// migrate up applies the runtime's and the plugins' migrations with
// skip_migrations set; migrate status then lists them as applied.
func TestMigrateUpAndStatus(t *testing.T) {
	cache, todo := todoWasm(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
[log]
level = "warn"
[runtime]
cache_dir = %q
[database]
connection = "file:data"
skip_migrations = true
[plugins.todo]
path = %q
[plugins.todo.capabilities]
database = true
[plugins.hello]
path = "missing.wasm"
`, filepath.Join(cache, "cmd-test-cache"), todo)), 0o644)

	run := runInProcess
	out, err := run("migrate", "status", "-c", cfgPath)
	if err != nil || !strings.Contains(out, "runtime") || !strings.Contains(out, "pending") {
		t.Fatalf("status before: %v\n%s", err, out)
	}
	// A status creates nothing (it created the database it then found
	// empty).
	if _, err := os.Stat(filepath.Join(dir, "data")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("migrate status created the database's directory: %v", err)
	}
	// Two at once (two deploy jobs, or a job and a replica): each says
	// what it applied itself, so that between them every migration is
	// reported once. Counting the rows before and after, each counted
	// the other's too.
	outs := make([]string, 2)
	var wg sync.WaitGroup
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], _ = run("migrate", "up", "-c", cfgPath)
		}()
	}
	wg.Wait()
	applied := regexp.MustCompile(`(?m)^(runtime|plugin todo): (\d+) migrations? applied`)
	total := map[string]int{}
	for _, o := range outs {
		for _, m := range applied.FindAllStringSubmatch(o, -1) {
			n, _ := strconv.Atoi(m[2])
			total[m[1]] += n
		}
	}
	own, err := fs.Glob(migrations.SQLite(), "*.up.sql")
	if err != nil || len(own) < 3 {
		t.Fatalf("the runtime's migrations: %v %v", own, err)
	}
	todoFiles, err := filepath.Glob(filepath.Join("..", "..", "plugins", "todo", "migrations", "*.up.sql"))
	if err != nil || len(todoFiles) < 3 {
		t.Fatalf("plugins/todo's migrations: %v %v", todoFiles, err)
	}
	if total["runtime"] != len(own) || total["plugin todo"] != len(todoFiles) {
		t.Fatalf("two migrate up at once reported %v applied in all, want runtime %d and todo %d:\n%s\n---\n%s", total, len(own), len(todoFiles), outs[0], outs[1])
	}
	out, err = run("migrate", "up", "-c", cfgPath)
	if err != nil || !strings.HasPrefix(out, "runtime: migrations up to date (none to apply)\nplugin todo: migrations up to date (none to apply)") {
		t.Fatalf("up again: %v\n%s", err, out)
	}
	out, err = run("migrate", "status", "-c", cfgPath)
	if err != nil || strings.Contains(out, "pending") || !strings.Contains(out, "plugin todo  001_items.up.sql") {
		t.Fatalf("status after: %v\n%s", err, out)
	}
	// The SQLite directory is relative to the config file.
	if _, err := os.Stat(filepath.Join(dir, "data", "plugins", "todo.db")); err != nil {
		t.Error(err)
	}
}

// A plugin's migration names stored before names were checked are printed
// quoted when they are not plain text: one cannot add a row to the
// listing, clear the screen or turn a line around.
func TestMigrateStatusQuotesNames(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	st := []database.MigrationStatus{
		{Name: "001_init.sql", AppliedAt: at},
		{Plugin: "todo", Name: "001 items.up.sql", AppliedAt: at},
		{Plugin: "todo", Name: "002_x.up.sql  2025-01-02T03:04:05Z\nplugin other  003_y.up.sql", AppliedAt: at},
		{Plugin: "todo", Name: "004\x1b[2J.up.sql", AppliedAt: at},
		{Plugin: "todo", Name: "005_\u202elqs.pu.sql", AppliedAt: at},
		{Plugin: "todo", Name: `"006.up.sql"`, AppliedAt: at},
		{Plugin: "todo", Name: "007.up.sql", AppliedAt: at, Unconfirmed: true},
	}
	var out bytes.Buffer
	if err := writeStatus(&out, st); err != nil {
		t.Fatal(err)
	}
	want := `OWNER        MIGRATION                                                         APPLIED
runtime      001_init.sql                                                      2025-01-02T03:04:05Z
plugin todo  001 items.up.sql                                                  2025-01-02T03:04:05Z
plugin todo  "002_x.up.sql  2025-01-02T03:04:05Z\nplugin other  003_y.up.sql"  2025-01-02T03:04:05Z
plugin todo  "004\x1b[2J.up.sql"                                               2025-01-02T03:04:05Z
plugin todo  "005_\u202elqs.pu.sql"                                            2025-01-02T03:04:05Z
plugin todo  "\"006.up.sql\""                                                  2025-01-02T03:04:05Z
plugin todo  007.up.sql                                                        2025-01-02T03:04:05Z (commit unconfirmed: settled at the plugin's next load)
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

// migrate up prints each plugin it could not migrate with its load error,
// redacted as the log is: a path or a pin from ${VAR} is a secret (an
// audit found the log line redacted and the printed one not).
func TestMigrateUpRedactsLoadErrors(t *testing.T) {
	dir := t.TempDir()
	secretPath := filepath.Join(dir, "exports-s3cr3t-name.wasm")
	t.Setenv("GR_TEST_PLUGIN_FILE", secretPath)
	cfgPath := filepath.Join(dir, "config.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
[log]
level = "warn"
[runtime]
cache_dir = %q
[database]
connection = "file:data"
[plugins.secretive]
path = "${GR_TEST_PLUGIN_FILE}"
[plugins.secretive.capabilities]
database = true
`, filepath.Join(dir, "cache"))), 0o644)
	out, err := runInProcess("migrate", "up", "-c", cfgPath)
	if err == nil || !strings.Contains(out, "plugin secretive: ") {
		t.Fatalf("migrate up with a missing plugin file: %v\n%s", err, out)
	}
	if strings.Contains(out, "s3cr3t") {
		t.Errorf("migrate up printed the plugin's secret path:\n%s", out)
	}
}

// runInProcess runs the greenroom command with args in this process (runCLI
// runs the built binary) and returns
// what it printed (standard output and error together).
func runInProcess(args ...string) (string, error) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// A start-up whose plugin is retrying its load (here: its migrations
// pending under skip_migrations) does not log "ready" while readiness
// says 503; it names the plugins it waits for (an audit's).
func TestServeDoesNotLogReadyWhileAPluginRetries(t *testing.T) {
	cache, todo := todoWasm(t)
	data := t.TempDir()
	db := fmt.Sprintf("[database]\nconnection = %q\n", "file:"+data)
	// The runtime's own migrations applied, todo's not.
	runtimeOnly := filepath.Join(t.TempDir(), "runtime.toml")
	os.WriteFile(runtimeOnly, []byte(fmt.Sprintf("[runtime]\ncache_dir = %q\n%s", filepath.Join(cache, "cmd-test-cache"), db)), 0o644)
	if out, err := runInProcess("migrate", "up", "-c", runtimeOnly); err != nil {
		t.Fatalf("migrate up: %v\n%s", err, out)
	}
	p := startProcess(t, "", db+fmt.Sprintf("skip_migrations = true\n[plugins.todo]\npath = %q\n[plugins.todo.capabilities]\ndatabase = true\n", todo))
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.log(), "plugins loaded") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	log := p.log()
	if !strings.Contains(log, `"msg":"plugins loaded but for those retrying their load; not ready until they load","retrying":["todo"]`) || strings.Contains(log, "plugins loaded; ready") {
		t.Errorf("start-up with todo retrying its load logged:\n%s", log)
	}
	if status, body, err := p.get("/.greenroom/health/v1/readiness"); err != nil || status != 503 {
		t.Errorf("readiness: %d %s %v", status, body, err)
	}
}

// todoWasm builds plugins/todo into the guest cache the runtime's tests
// share (runtime/internal/guesttest), and returns that cache and the
// module's path.
func todoWasm(t *testing.T) (cache, path string) {
	t.Helper()
	cache = filepath.Join(os.TempDir(), "greenroom-test-guests")
	path, _, err := build.Cached(context.Background(), filepath.Join("..", "..", "plugins", "todo"), cache)
	if err != nil {
		t.Fatal(err)
	}
	return cache, path
}
