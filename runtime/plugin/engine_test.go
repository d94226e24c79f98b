package plugin

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/tetratelabs/wazero"

	"github.com/greenroom-dev/greenroom/runtime/plugin/instrument"
)

// Plugins running the same module share its compiled module; it is closed
// when the last of them closes, and each keeps serving meanwhile.
func TestEngineSharesIdenticalModules(t *testing.T) {
	eng := NewEngine(testCache, t.TempDir())
	defer eng.Close(context.Background())
	p1 := loadSpec(t, Spec{Wasm: hostileWasm, Limits: testLimits(), Engine: eng})
	p2 := loadSpec(t, Spec{Wasm: hostileWasm, Limits: testLimits(), Engine: eng})
	if p1.cm != p2.cm {
		t.Fatal("identical modules compiled twice")
	}
	other := testLimits()
	other.Memory = 40 << 20 // another cap: other bytes, another module
	p3 := loadSpec(t, Spec{Wasm: hostileWasm, Limits: other, Engine: eng})
	if p3.cm == p1.cm {
		t.Fatal("modules with different memory caps share a compiled module")
	}
	p1.Close(context.Background())
	if status, _, err := get(p2, "/ok"); err != nil || status != 200 {
		t.Fatalf("after the other plugin closed: %d %v", status, err)
	}
	p2.Close(context.Background())
	p3.Close(context.Background())
	eng.mu.Lock()
	left := len(eng.modules)
	eng.mu.Unlock()
	if left != 0 {
		t.Errorf("%d compiled modules left after every plugin closed", left)
	}
}

// Rewritten modules are kept on disk and reused, without reading the
// original module again.
func TestEngineRewriteCache(t *testing.T) {
	dir := t.TempDir()
	eng := NewEngine(nil, dir)
	opts := instrument.Options{Interrupt: true, MaxMemoryPages: 512}
	sum := SHA256(hostileWasm)
	reads := 0
	original := func() ([]byte, error) { reads++; return hostileWasm, nil }
	first, st, err := eng.rewrite(original, sum, opts)
	if err != nil || st.Cached || reads != 1 {
		t.Fatalf("first rewrite: cached=%v reads=%d %v", st.Cached, reads, err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.wasm"))
	if len(files) != 1 {
		t.Fatalf("cache files: %v", files)
	}
	second, st, err := eng.rewrite(original, sum, opts)
	if err != nil || !st.Cached || string(second) != string(first) || reads != 1 {
		t.Fatalf("second rewrite: cached=%v same=%v reads=%d %v", st.Cached, string(second) == string(first), reads, err)
	}
	// Other options are another entry.
	if _, st, _ := eng.rewrite(original, sum, instrument.Options{MaxMemoryPages: 512}); st.Cached || reads != 2 {
		t.Errorf("different options: cached=%v reads=%d; want another entry, rewritten from the original", st.Cached, reads)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("cache holds %d entries, want 2", len(entries))
	}
	// A failure to read the original is returned as such.
	failing := func() ([]byte, error) { return nil, errors.New("gone") }
	if _, _, err := eng.rewrite(failing, SHA256([]byte("other")), opts); err == nil || err.Error() != "gone" {
		t.Errorf("unreadable original: %v", err)
	}
}

// A cache directory where rewritten modules cannot be kept costs every
// start a rewrite of every module: the log says so, once.
func TestEngineRewriteCacheUnwritable(t *testing.T) {
	// A link to nowhere: entries are not found there, and it cannot be
	// made a directory (chmod would not stop root).
	dir := filepath.Join(t.TempDir(), "rewritten")
	if err := os.Symlink(filepath.Join(t.TempDir(), "gone", "nowhere"), dir); err != nil {
		t.Skip(err)
	}
	eng := NewEngine(nil, dir)
	log, hook := logtest.NewNullLogger()
	original := func() ([]byte, error) { return hostileWasm, nil }
	for _, opts := range []instrument.Options{{Interrupt: true, MaxMemoryPages: 512}, {MaxMemoryPages: 512}} {
		if _, st, err := eng.rewriteWith(logrus.NewEntry(log), original, SHA256(hostileWasm), opts); err != nil || st.Cached {
			t.Fatalf("rewrite: cached=%v %v", st.Cached, err)
		}
	}
	var warned []string
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			warned = append(warned, e.Message)
		}
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "cannot keep rewritten modules in the cache (runtime.cache_dir)") {
		t.Errorf("warnings = %q, want one saying the cache cannot keep rewritten modules", warned)
	}
}

// Plugins loading the same module at the same time wait for one
// compilation and share it; a failed compilation is not kept, so a later
// load tries again.
func TestEngineConcurrentCompiles(t *testing.T) {
	ctx := context.Background()
	eng := NewEngine(testCache, "")
	defer eng.Close(ctx)
	code, _, err := instrument.Rewrite(hostileWasm, instrument.Options{Interrupt: true, MaxMemoryPages: 512})
	if err != nil {
		t.Fatal(err)
	}
	const n = 4
	type result struct {
		cm      any
		release func()
		err     error
	}
	compileAll := func(key string, code []byte) []result {
		res := make([]result, n)
		var wg sync.WaitGroup
		for i := range res {
			wg.Go(func() {
				cm, _, release, err := eng.compile(ctx, false, key, code, true)
				res[i] = result{cm, release, err}
			})
		}
		wg.Wait()
		return res
	}
	res := compileAll("good", code)
	for i, r := range res {
		if r.err != nil || r.cm != res[0].cm {
			t.Fatalf("load %d: err %v, shares the module: %v", i, r.err, r.cm == res[0].cm)
		}
	}
	for _, r := range res {
		r.release()
	}

	bad := append([]byte(nil), code[:len(code)/2]...) // truncated
	for round := range 2 {
		for i, r := range compileAll("bad", bad) {
			if r.err == nil {
				t.Fatalf("round %d, load %d: a truncated module compiled", round, i)
			}
		}
	}
	eng.mu.Lock()
	left := len(eng.modules)
	eng.mu.Unlock()
	if left != 0 {
		t.Errorf("%d modules kept after every release and failure", left)
	}
}

// A restart with the same cache directory compiles nothing: the second
// engine finds the rewritten module and wazero's machine code on disk, and
// writes no new cache file (the rewrite is deterministic, so the module
// wazero is given has the same key).
func TestCompilationCacheSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	files := func() map[string]string {
		out := map[string]string{}
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				fi, _ := d.Info()
				out[path] = fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
			}
			return nil
		})
		return out
	}
	var first map[string]string
	for run := 1; run <= 2; run++ {
		cache, err := wazero.NewCompilationCacheWithDir(filepath.Join(dir, "wazero"))
		if err != nil {
			t.Fatal(err)
		}
		eng := NewEngine(cache, filepath.Join(dir, "rewritten"))
		p, err := Load(ctx, Spec{ID: "hostile", Wasm: hostileWasm, Limits: testLimits(), Host: testHost{log: logrus.NewEntry(logrus.New())}, Engine: eng})
		if err != nil {
			t.Fatal(err)
		}
		p.Close(ctx)
		eng.Close(ctx)
		cache.Close(ctx)
		if run == 1 {
			first = files()
			continue
		}
		if second := files(); !maps.Equal(first, second) || len(first) < 2 {
			t.Errorf("cache files after the first start:\n%v\nafter the second:\n%v", first, second)
		}
	}
}
