package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/build"
)

// waitBody polls url until it answers 200 with body want.
func waitBody(t *testing.T, url, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
			if resp.StatusCode == 200 && string(b) == want {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer %q within %v; last: %s", url, want, within, last)
}

// run starts the greenroom binary with args and waits for readiness.
func runGreenroom(t *testing.T, dir, addr string, args ...string) {
	t.Helper()
	cmd := exec.Command(greenroomBinary(t), args...)
	cmd.Dir = dir
	stderr := lockedBuffer{mu: &sync.Mutex{}, b: &bytes.Buffer{}}
	cmd.Stderr, cmd.Stdout = stderr, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			stderr.mu.Lock()
			t.Logf("greenroom stderr:\n%s", stderr.b.String())
			stderr.mu.Unlock()
		}
	})
	waitReady(t, addr)
}

func waitReady(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/.greenroom/health/v1/readiness"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("not ready within 120s")
}

func watchConfig(addr, cache, path string) string {
	return fmt.Sprintf(`
[server]
listen = %q
[runtime]
cache_dir = %q
[auth.tokens.test]
token = %q
subject = "service:test"
[plugins.ver]
path = %q
`, addr, cache, testToken, path)
}

// verGuests builds the test guests ver1 and ver2 (each answers GET /v
// with its name) into the shared guest cache, and returns it and their
// paths.
func verGuests(t *testing.T) (cache, v1, v2 string) {
	t.Helper()
	cache = filepath.Join(os.TempDir(), "greenroom-test-guests")
	guests := filepath.Join("..", "..", "runtime", "server", "testdata", "guests")
	var err error
	if v1, _, err = build.Cached(context.Background(), filepath.Join(guests, "ver1"), cache); err != nil {
		t.Fatal(err)
	}
	if v2, _, err = build.Cached(context.Background(), filepath.Join(guests, "ver2"), cache); err != nil {
		t.Fatal(err)
	}
	return cache, v1, v2
}

// serve --watch reloads a plugin when its .wasm file changes.
func TestServeWatchReloadsChangedModule(t *testing.T) { watchModuleChange(t) }

// A config file that was empty already when the config in force was read
// (an overlay kept for local settings) does not stop serve --watch from
// applying a plugin's new .wasm (an audit's: it did).
func TestServeWatchWithAnEmptyOverlay(t *testing.T) { watchModuleChange(t, "local.toml") }

// watchModuleChange runs serve --watch on config.toml and the (empty)
// overlays, and replaces the plugin's .wasm.
func watchModuleChange(t *testing.T, emptyOverlays ...string) {
	cache, v1, v2 := verGuests(t)
	dir := t.TempDir()
	wasm := filepath.Join(dir, "ver.wasm")
	copyWasm(t, v1, wasm)
	addr := freeAddr(t)
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte(watchConfig(addr, filepath.Join(cache, "cmd-test-cache"), wasm)), 0o644)
	args := []string{"serve", "--watch"}
	if len(emptyOverlays) > 0 {
		args = append(args, "--config", "config.toml")
	}
	for _, o := range emptyOverlays {
		os.WriteFile(filepath.Join(dir, o), nil, 0o644)
		args = append(args, "--config", o)
	}
	runGreenroom(t, dir, addr, args...)
	waitBody(t, "http://"+addr+"/api/ver/v", "v1", 10*time.Second)
	copyWasm(t, v2, wasm)
	waitBody(t, "http://"+addr+"/api/ver/v", "v2", 60*time.Second)
}

// serve --watch does not apply a config file caught while it is being
// written: emptied first (an editor, "cmd > config.toml" whose cmd is
// slow or failed), it would remove every plugin and credential, and the
// admin API with them (an audit's). Written whole, it is applied.
func TestServeWatchSkipsEmptiedConfig(t *testing.T) {
	t.Parallel()
	cache, v1, v2 := verGuests(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(watchConfig(addr, filepath.Join(cache, "cmd-test-cache"), v1)), 0o644)
	runGreenroom(t, dir, addr, "serve", "--watch")
	waitBody(t, "http://"+addr+"/api/ver/v", "v1", 10*time.Second)
	if err := os.WriteFile(cfg, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // past the watcher's settle time
	waitBody(t, "http://"+addr+"/api/ver/v", "v1", time.Second)
	os.WriteFile(cfg, []byte(watchConfig(addr, filepath.Join(cache, "cmd-test-cache"), v2)), 0o644)
	waitBody(t, "http://"+addr+"/api/ver/v", "v2", 60*time.Second)
}

// greenroom dev rebuilds a plugin when its Go sources change and reloads it.
func TestDevRebuildsChangedSources(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "ver")
	os.MkdirAll(src, 0o755)
	// A module of its own that uses this checkout's SDK, so the test
	// writes nothing into the source tree and needs no network.
	writeGoMod(t, src, "example.com/ver")
	orig := writeVer1(t, src)
	goModTidy(t, src)
	addr := freeAddr(t)
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte(watchConfig(addr, filepath.Join(dir, "cache"), src)), 0o644)
	runGreenroom(t, dir, addr, "dev")
	waitBody(t, "http://"+addr+"/api/ver/v", "v1", 10*time.Second)
	changed := strings.Replace(string(orig), `const version = "v1"`, `const version = "v1-edited"`, 1)
	if changed == string(orig) {
		t.Fatal("test guest changed shape: no version constant to edit")
	}
	os.WriteFile(filepath.Join(src, "main.go"), []byte(changed), 0o644)
	waitBody(t, "http://"+addr+"/api/ver/v", "v1-edited", 120*time.Second)

	// The directory deleted and made again (git checkout, git stash):
	// its new sources load, and later edits are still seen.
	saved := map[string][]byte{}
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		saved[f], _ = os.ReadFile(filepath.Join(src, f))
	}
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // a reload that finds it missing
	os.MkdirAll(src, 0o755)
	saved["main.go"] = []byte(strings.Replace(changed, `"v1-edited"`, `"v1-again"`, 1))
	for f, b := range saved {
		os.WriteFile(filepath.Join(src, f), b, 0o644)
	}
	waitBody(t, "http://"+addr+"/api/ver/v", "v1-again", 120*time.Second)
	os.WriteFile(filepath.Join(src, "main.go"), []byte(strings.Replace(changed, `"v1-edited"`, `"v1-third"`, 1)), 0o644)
	waitBody(t, "http://"+addr+"/api/ver/v", "v1-third", 60*time.Second)
}

func copyWasm(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// greenroom dev rebuilds a plugin when a package of its module that it
// imports changes, outside the plugin's own directory.
func TestDevRebuildsOnImportedPackageChange(t *testing.T) {
	mod := t.TempDir()
	writeGoMod(t, mod, "example.com/multi")
	shared := filepath.Join(mod, "internal", "shared")
	os.MkdirAll(shared, 0o755)
	writeShared := func(v string) {
		os.WriteFile(filepath.Join(shared, "shared.go"), []byte("package shared\n\nconst Version = \""+v+"\"\n"), 0o644)
	}
	writeShared("s1")
	src := filepath.Join(mod, "plugins", "ver")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "main.go"), []byte(`package main

import (
	"net/http"

	"example.com/multi/internal/shared"
	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

func init() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(shared.Version)) })
	greenroom.Handle(mux)
}

func main() {}
`), 0o644)
	goModTidy(t, mod)
	dir := t.TempDir()
	addr := freeAddr(t)
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte(watchConfig(addr, filepath.Join(dir, "cache"), src)), 0o644)
	runGreenroom(t, dir, addr, "dev")
	waitBody(t, "http://"+addr+"/api/ver/v", "s1", 10*time.Second)
	writeShared("s2")
	waitBody(t, "http://"+addr+"/api/ver/v", "s2", 120*time.Second)
}

// greenroom dev follows a plugin path that is a symbolic link to its
// source directory inside a module elsewhere: it builds there, and an
// edit in the directory the link points to is rebuilt.
func TestDevFollowsLinkedSourceDir(t *testing.T) {
	dir := t.TempDir()
	mod := filepath.Join(dir, "repo")
	src := filepath.Join(mod, "plugins", "ver")
	os.MkdirAll(src, 0o755)
	writeGoMod(t, mod, "example.com/repo")
	orig := writeVer1(t, src)
	goModTidy(t, mod)
	link := filepath.Join(dir, "ver")
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte(watchConfig(addr, filepath.Join(dir, "cache"), link)), 0o644)
	runGreenroom(t, dir, addr, "dev")
	waitBody(t, "http://"+addr+"/api/ver/v", "v1", 10*time.Second)
	os.WriteFile(filepath.Join(src, "main.go"), []byte(strings.Replace(string(orig), `const version = "v1"`, `const version = "v1-linked"`, 1)), 0o644)
	waitBody(t, "http://"+addr+"/api/ver/v", "v1-linked", 120*time.Second)
}

// checkout is the greenroom checkout the tests run in.
func checkout(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// writeVer1 writes the ver1 test guest's main.go into src and returns it.
func writeVer1(t *testing.T, src string) []byte {
	t.Helper()
	orig, err := os.ReadFile(filepath.Join(checkout(t), "runtime", "server", "testdata", "guests", "ver1", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), orig, 0o644); err != nil {
		t.Fatal(err)
	}
	return orig
}

// writeGoMod writes dir/go.mod for module name, using this greenroom
// checkout (so the test needs no network).
func writeGoMod(t *testing.T, dir, name string) {
	t.Helper()
	root := checkout(t)
	text := fmt.Sprintf("module %s\n\ngo 1.26\n\nrequire github.com/greenroom-dev/greenroom v0.0.0\n\nreplace github.com/greenroom-dev/greenroom => %s\n", name, root)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// goModTidy runs go mod tidy in dir, offline.
func goModTidy(t *testing.T, dir string) {
	t.Helper()
	tidy := exec.Command("go", "mod", "tidy")
	tidy.Dir = dir
	tidy.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off")
	if out, err := tidy.CombinedOutput(); err != nil {
		t.Fatalf("go mod tidy in %s: %v\n%s", dir, err, out)
	}
}
