package runtime

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

// serveOnce is one run of greenroom on cacheDir with the plugin at
// wasmPath: load, one request to /ok, close. It returns the plugin's
// state and last error, the request's outcome and the warnings logged.
func serveOnce(t *testing.T, cacheDir, wasmPath string) (State, string, error, []string) {
	t.Helper()
	return serveWith(t, cacheDir, wasmPath, "")
}

// serveWith is serveOnce with more settings (TOML lines) for the plugin.
func serveWith(t *testing.T, cacheDir, wasmPath, settings string) (State, string, error, []string) {
	t.Helper()
	ctx := context.Background()
	text := fmt.Sprintf("[runtime]\ncache_dir = %q\n[plugins.hostile]\npath = %q\n%s", cacheDir, wasmPath, settings)
	cfg, err := config.Read([]config.Source{{Name: "config.toml", Data: []byte(text)}}, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	log, hook := logtest.NewNullLogger()
	rt, err := New(cfg, log, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		rt.Close(cctx)
	}()
	rt.Load(ctx)
	state, reason := rt.Slot("hostile").Status()
	var status int
	herr := rt.Handle(ctx, "hostile", &hostfuncs.Request{Method: []byte("GET"), Path: []byte("/ok"), RequestID: "t"}, func(r hostfuncs.Response) error {
		status = r.Status
		return nil
	})
	if herr == nil && status != 200 {
		herr = fmt.Errorf("status %d", status)
	}
	var warnings []string
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.WarnLevel {
			warnings = append(warnings, fmt.Sprintf("%s %v", e.Message, e.Data))
		}
	}
	return state, reason, herr, warnings
}

// The audit's reproductions, end to end: greenroom starts once so that
// runtime.cache_dir fills, stops, an entry of the cache is damaged, and
// greenroom starts again. The damaged entry is discarded (a warning names
// it) and rebuilt from the plugin's file, which serves; before, the plugin
// stayed failed (503) across restarts, reloads and touching its file,
// blamed for the damage, until the cache was deleted by hand.
func TestRestartOnDamagedCache(t *testing.T) {
	defer func(s time.Duration) { settle = s }(settle)
	settle = 0 // the sum index vouches for the file: a restart does not read it
	src := guesttest.Build(t, "runtime/plugin/testdata/guests/hostile")
	for _, tc := range []struct {
		name    string
		pattern string
		damage  func(path string) error
	}{
		{"truncate -s 1000 rewritten", "rewritten/*", func(path string) error { return os.Truncate(path, 1000) }},
		{"empty rewritten", "rewritten/*", func(path string) error { return os.Truncate(path, 0) }},
		{"empty wazero", "wazero/*/*", func(path string) error { return os.Truncate(path, 0) }},
		{"random bytes in wazero", "wazero/*/*", func(path string) error {
			fi, err := os.Stat(path)
			if err != nil {
				return err
			}
			b := make([]byte, fi.Size())
			rand.NewChaCha8([32]byte{7}).Read(b)
			return os.WriteFile(path, b, 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// A copy of the module whose file times are settled, as a
			// deployed plugin's are.
			wasm, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			wasmPath := filepath.Join(dir, "hostile.wasm")
			if err := os.WriteFile(wasmPath, wasm, 0o644); err != nil {
				t.Fatal(err)
			}
			cacheDir := filepath.Join(dir, "cache")
			if state, reason, err, _ := serveOnce(t, cacheDir, wasmPath); state != StateReady || err != nil {
				t.Fatalf("first start: %s %s, /ok: %v", state, reason, err)
			}
			files, _ := filepath.Glob(filepath.Join(cacheDir, tc.pattern))
			if len(files) == 0 {
				t.Fatalf("nothing in %s after the first start", tc.pattern)
			}
			for _, f := range files {
				if err := tc.damage(f); err != nil {
					t.Fatal(err)
				}
			}
			state, reason, err, warnings := serveOnce(t, cacheDir, wasmPath)
			if state != StateReady || err != nil {
				t.Fatalf("start on the damaged cache: %s %s, /ok: %v", state, reason, err)
			}
			for _, f := range files {
				if !strings.Contains(strings.Join(warnings, "\n"), filepath.Base(f)) {
					t.Errorf("no warning names %s; warnings:\n%s", f, strings.Join(warnings, "\n"))
				}
			}
			if state, reason, err, warnings := serveOnce(t, cacheDir, wasmPath); state != StateReady || err != nil || len(warnings) != 0 {
				t.Errorf("start after the rebuild: %s %s, /ok: %v, warnings %q", state, reason, err, warnings)
			}
		})
	}
}

// The audit's reproductions for runtime.cache_dir/sums: greenroom starts
// once, the plugin file's sums entry is made wrong, and greenroom starts
// again, with and without a correct sha256 pin. A wrong sum is never
// believed against the file: the plugin serves, a warning names the
// entry, no rewritten module is cached under the wrong sum, and the next
// start is clean. Before, a flipped digit failed the plugin on every
// restart (503 "changed while it was being loaded") or, with a pin, as a
// false "sha256 pin mismatch".
func TestRestartOnWrongSumEntry(t *testing.T) {
	defer func(s time.Duration) { settle = s }(settle)
	settle = 0
	src := guesttest.Build(t, "runtime/plugin/testdata/guests/hostile")
	wasm, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	sum := plugin.SHA256(wasm)
	bogus := plugin.SHA256([]byte("another module"))
	hexSum := regexp.MustCompile(`\b[0-9a-f]{64}\b`)
	for _, tc := range []struct {
		name   string
		damage func(entry, wasmPath string) error
	}{
		{"one hex digit changed", func(entry, _ string) error {
			b, err := os.ReadFile(entry)
			if err != nil {
				return err
			}
			loc := hexSum.FindIndex(b)
			if loc == nil {
				return fmt.Errorf("no sum in %q", b)
			}
			// Some other hex digit ("01"[b&1] once left a '0' or a '1'
			// as it was).
			if b[loc[0]] == '0' {
				b[loc[0]] = '1'
			} else {
				b[loc[0]] = '0'
			}
			return os.WriteFile(entry, b, 0o644)
		}},
		// What a writer of the cache directory can do: a well-formed entry,
		// checksum and all, naming another module.
		{"well-formed entry with another sum", func(entry, wasmPath string) error {
			id, ok := fileIdentity(wasmPath)
			if !ok {
				return fmt.Errorf("no identity for %s", wasmPath)
			}
			old, _ := os.ReadFile(entry)
			sumIndex{dir: filepath.Dir(entry)}.store(wasmPath, id.key, bogus)
			if b, _ := os.ReadFile(entry); string(b) == string(old) || !strings.Contains(string(b), bogus) {
				return fmt.Errorf("entry not replaced: %q", b)
			}
			return nil
		}},
	} {
		for _, pin := range []string{"", fmt.Sprintf("sha256 = %q\n", sum)} {
			t.Run(fmt.Sprintf("%s pin=%t", tc.name, pin != ""), func(t *testing.T) {
				dir := t.TempDir()
				wasmPath := filepath.Join(dir, "hostile.wasm")
				if err := os.WriteFile(wasmPath, wasm, 0o644); err != nil {
					t.Fatal(err)
				}
				cacheDir := filepath.Join(dir, "cache")
				if state, reason, err, _ := serveWith(t, cacheDir, wasmPath, pin); state != StateReady || err != nil {
					t.Fatalf("first start: %s %s, /ok: %v", state, reason, err)
				}
				entries, _ := filepath.Glob(filepath.Join(cacheDir, "sums", "*"))
				if len(entries) != 1 {
					t.Fatalf("sums entries %q, want one", entries)
				}
				// Without the rewritten module, the module is read.
				if err := os.RemoveAll(filepath.Join(cacheDir, "rewritten")); err != nil {
					t.Fatal(err)
				}
				if err := tc.damage(entries[0], wasmPath); err != nil {
					t.Fatal(err)
				}
				state, reason, err, warnings := serveWith(t, cacheDir, wasmPath, pin)
				if state != StateReady || err != nil {
					t.Fatalf("start on the wrong entry: %s %s, /ok: %v", state, reason, err)
				}
				if !strings.Contains(strings.Join(warnings, "\n"), filepath.Base(entries[0])) {
					t.Errorf("no warning names %s; warnings:\n%s", entries[0], strings.Join(warnings, "\n"))
				}
				rewritten, _ := filepath.Glob(filepath.Join(cacheDir, "rewritten", "*"))
				for _, f := range rewritten {
					if !strings.HasPrefix(filepath.Base(f), sum) {
						t.Errorf("rewritten module cached under another sum than the file's: %s", f)
					}
				}
				if state, reason, err, warnings := serveWith(t, cacheDir, wasmPath, pin); state != StateReady || err != nil || len(warnings) != 0 {
					t.Errorf("start after: %s %s, /ok: %v, warnings %q", state, reason, err, warnings)
				}
			})
		}
	}
}
