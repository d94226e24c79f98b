package plugin

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/tetratelabs/wazero"
)

// cacheStart is one start of a process on the cache directory dir: a
// fresh compilation cache and engine on it load wasm as the runtime does
// after a restart (the module's sum known, its bytes read only if needed)
// and serve one request. The engine and cache are closed before it
// returns.
type cacheStart struct {
	err   error // from Load, or from GET /ok
	reads int   // how many times the module's bytes were read
	hook  *logtest.Hook
}

func startOnCache(t *testing.T, dir string, wasm []byte) *cacheStart {
	t.Helper()
	run, err := startOnCacheErr(dir, wasm)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// startOnCacheErr is startOnCache, with the error of opening the cache
// returned rather than failing a test.
func startOnCacheErr(dir string, wasm []byte) (*cacheStart, error) {
	ctx := context.Background()
	cache, err := wazero.NewCompilationCacheWithDir(filepath.Join(dir, "wazero"))
	if err != nil {
		return nil, err
	}
	defer cache.Close(ctx)
	eng := NewEngine(cache, filepath.Join(dir, "rewritten"))
	defer eng.Close(ctx)
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	entry := log.WithField("plugin", "hostile")
	run := &cacheStart{hook: hook}
	p, err := Load(ctx, Spec{
		ID:       "hostile",
		ReadWasm: func() ([]byte, error) { run.reads++; return wasm, nil },
		Sum:      SHA256(wasm),
		Size:     len(wasm),
		Limits:   testLimits(),
		Host:     testHost{config: map[string]string{"greeting": "hi"}, log: entry},
		Log:      entry,
		Engine:   eng,
	})
	if err != nil {
		run.err = err
		return run, nil
	}
	defer p.Close(ctx)
	if status, body, err := get(p, "/ok"); err != nil || status != 200 {
		run.err = fmt.Errorf("GET /ok: %d %q %v", status, body, err)
	}
	return run, nil
}

// warmCacheOnce is a cache directory (wazero's entries and the rewritten
// modules) that one start on an empty directory filled for hostileWasm:
// compiling it takes seconds, and tests that begin with a warm cache
// start from a copy (warmCache) rather than compiling it again.
var warmCacheOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "plugin-warm-cache-")
	if err != nil {
		return "", err
	}
	warmCacheDir = dir
	run, err := startOnCacheErr(dir, hostileWasm)
	if err != nil {
		return "", err
	}
	if run.err != nil || run.reads != 1 {
		return "", fmt.Errorf("first start, on an empty cache: read the module %d times, %v", run.reads, run.err)
	}
	return dir, nil
})

// warmCacheDir is warmCacheOnce's directory, removed by TestMain.
var warmCacheDir string

// warmCache makes dir what one start of hostileWasm on an empty cache
// directory leaves there (a copy of warmCacheOnce's), failing the test
// when that start failed or read the module other than once.
func warmCache(t *testing.T, dir string) {
	t.Helper()
	src, err := warmCacheOnce()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// warnings returns the messages (with their fields) logged at warning
// level or above.
func (s *cacheStart) warnings() []string {
	var out []string
	for _, e := range s.hook.AllEntries() {
		if e.Level <= logrus.WarnLevel {
			out = append(out, fmt.Sprintf("%s %v", e.Message, e.Data))
		}
	}
	return out
}

// cacheFiles returns the files matching pattern under dir, failing the
// test when there are none.
func cacheFiles(t *testing.T, dir, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("no cache files %s under %s (%v)", pattern, dir, err)
	}
	return files
}

// A damaged entry in the cache directory is thrown away and rebuilt from
// the original module: the plugin loads and serves, a warning names the
// entry, and the next start uses the rebuilt entry. Each case is one of
// the damages an audit reproduced against a real server (start, stop,
// damage, start again): before, the plugin failed for good with the
// damage reported as the module's fault.
func TestDamagedCacheEntriesAreRebuilt(t *testing.T) {
	randomBytes := func(t *testing.T, path string) {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, max(fi.Size(), 64))
		r := rand.NewChaCha8([32]byte{1})
		r.Read(b)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	truncateHalf := func(t *testing.T, path string) {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, fi.Size()/2); err != nil {
			t.Fatal(err)
		}
	}
	flipCodeByte := func(t *testing.T, path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// In the machine code, past the header and function offsets.
		b[len(b)-len(b)/3] ^= 0xff
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fifo := func(t *testing.T, path string) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(path, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// patchOffsets changes an entry's bytes from its function count on
	// (wazero checksums only the machine code after them).
	patchOffsets := func(patch func(b []byte)) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			start := len(wazevoMagic) + 1 + int(b[len(wazevoMagic)]) // the count
			patch(b[start:])
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name    string
		pattern string // the entries damaged, under the cache directory
		damage  func(t *testing.T, path string)
		// rereads: the rewritten module is rebuilt from the original,
		// which is read again.
		rereads bool
	}{
		// truncate -s 1000 rewritten/*: was "malformed module: section at
		// byte 223 declares 955 bytes, 774 remain".
		{"rewritten truncated", "rewritten/*.wasm", func(t *testing.T, path string) {
			if err := os.Truncate(path, 1000); err != nil {
				t.Fatal(err)
			}
		}, true},
		// Emptied (what a crash between write and rename could leave):
		// was "not a WebAssembly module (the file does not start with
		// \0asm)".
		{"rewritten emptied", "rewritten/*.wasm", func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"rewritten random bytes", "rewritten/*.wasm", randomBytes, true},
		// Emptied: was "compile: compilationcache: error reading header:
		// EOF".
		{"wazero emptied", "wazero/*/*", func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}, false},
		// Random bytes: was "compilationcache: invalid magic number".
		{"wazero random bytes", "wazero/*/*", randomBytes, false},
		{"wazero truncated", "wazero/*/*", truncateHalf, false},
		{"wazero machine code changed", "wazero/*/*", flipCodeByte, false},
		// What wazero does not check (an audit's): a count of functions
		// made it allocate until the process died; a changed offset made
		// it call into the wrong place (SIGSEGV, or another function's
		// answer).
		{"wazero function count", "wazero/*/*", patchOffsets(func(b []byte) { copy(b, []byte{0xff, 0xff, 0xff, 0xff}) }), false},
		{"wazero offset bit", "wazero/*/*", patchOffsets(func(b []byte) { b[4+8*2] ^= 1 }), false},
		{"wazero offsets swapped", "wazero/*/*", patchOffsets(func(b []byte) {
			var tmp [8]byte
			copy(tmp[:], b[4+8*1:])
			copy(b[4+8*1:4+8*2], b[4+8*2:4+8*3])
			copy(b[4+8*2:], tmp[:])
		}), false},
		{"wazero offsets zeroed", "wazero/*/*", patchOffsets(func(b []byte) { clear(b[4+8 : 4+8+4096]) }), false},
		// A FIFO in an entry's place: opened, it waited for a writer for
		// ever, and the plugin stayed loading (an audit's).
		{"rewritten a FIFO", "rewritten/*.wasm", fifo, true},
		{"wazero a FIFO", "wazero/*/*", fifo, false},
		{"wazero catch-clause count", "wazero/*/*", func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			copy(b[len(b)-4:], []byte{0xff, 0xff, 0xff, 0xff})
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			warmCache(t, dir) // the first start, on an empty cache
			if run := startOnCache(t, dir, hostileWasm); run.err != nil || run.reads != 0 {
				t.Fatalf("second start, intact cache: read the module %d times, %v", run.reads, run.err)
			}
			damaged := cacheFiles(t, dir, tc.pattern)
			for _, path := range damaged {
				tc.damage(t, path)
			}

			run := startOnCache(t, dir, hostileWasm)
			if run.err != nil {
				t.Fatalf("start on the damaged cache: %v", run.err)
			}
			if want := map[bool]int{true: 1, false: 0}[tc.rereads]; run.reads != want {
				t.Errorf("start on the damaged cache read the module %d times, want %d", run.reads, want)
			}
			warnings := run.warnings()
			t.Logf("warnings:\n%s", strings.Join(warnings, "\n"))
			if strings.Contains(strings.Join(warnings, "\n"), "none of the cache's entries looks damaged") {
				t.Error("the damaged entry was not told from sound ones")
			}
			for _, path := range damaged {
				name := filepath.Base(path)
				if !strings.Contains(strings.Join(warnings, "\n"), name) {
					t.Errorf("no warning names the damaged entry %s; warnings:\n%s", name, strings.Join(warnings, "\n"))
				}
			}

			// The entry was rebuilt: the next start finds everything again,
			// without a warning or a read of the module.
			run = startOnCache(t, dir, hostileWasm)
			if run.err != nil || run.reads != 0 || len(run.warnings()) != 0 {
				t.Errorf("start after the rebuild: read the module %d times, warnings %q, %v", run.reads, run.warnings(), run.err)
			}
		})
	}
}

// badOperandsModule is a module that the rewriter accepts and wazero's
// validation refuses: its one function adds two values it does not have.
func badOperandsModule() []byte {
	section := func(id byte, body []byte) []byte {
		return append(binary.AppendUvarint([]byte{id}, uint64(len(body))), body...)
	}
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	wasm = append(wasm, section(1, []byte{1, 0x60, 0, 0})...)              // type () -> ()
	wasm = append(wasm, section(3, []byte{1, 0})...)                       // one function
	wasm = append(wasm, section(5, []byte{1, 0, 1})...)                    // memory, min 1
	wasm = append(wasm, section(10, []byte{1, 4, 0, 0x6a, 0x1a, 0x0b})...) // i32.add; drop; end
	return wasm
}

// A module that is really malformed, or invalid, still fails with its own
// error when it is loaded on a cache directory, the second time too (when
// its rewritten module comes from the cache): nothing of the cache is
// blamed or thrown away, and the load is not retried in a loop.
func TestMalformedModuleKeepsItsError(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		wasm []byte
		want string
	}{
		{"truncated", hostileWasm[:len(hostileWasm)/2], "malformed module"},
		{"invalid", badOperandsModule(), "compile: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Without any cache, the error the module deserves.
			eng := NewEngine(nil, "")
			_, want := Load(ctx, Spec{ID: "bad", Wasm: tc.wasm, Limits: testLimits(), Host: testHost{log: logrus.NewEntry(logrus.New())}, Engine: eng})
			eng.Close(ctx)
			if want == nil || !strings.Contains(want.Error(), tc.want) {
				t.Fatalf("without a cache: %v, want an error with %q", want, tc.want)
			}
			dir := t.TempDir()
			for start := 1; start <= 2; start++ {
				run := startOnCache(t, dir, tc.wasm)
				if run.err == nil || run.err.Error() != want.Error() {
					t.Fatalf("start %d on a cache directory: %v\nwant the module's own error: %v", start, run.err, want)
				}
				if strings.Contains(run.err.Error(), "compilationcache") || len(run.warnings()) != 0 {
					t.Errorf("start %d blamed the cache: %v, warnings %q", start, run.err, run.warnings())
				}
				// The invalid module's rewritten module is sound: the second
				// start takes it from the cache, and it is kept.
				if tc.name == "invalid" && start == 2 && run.reads != 0 {
					t.Errorf("start %d read the module %d times; want its rewritten module from the cache", start, run.reads)
				}
			}
			if tc.name == "invalid" {
				cacheFiles(t, dir, "rewritten/*.wasm")
			}
		})
	}
}

// The engine finds where wazero keeps its compilation cache's entries
// (wazero does not export it): a wazero upgrade that moves it fails here,
// not in production, where a damaged entry could then not be removed.
func TestCompilationCacheDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cache, err := wazero.NewCompilationCacheWithDir(filepath.Join(dir, "wazero"))
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close(ctx)
	got := compilationCacheDir(cache)
	subdirs, _ := filepath.Glob(filepath.Join(dir, "wazero", "wazero-*-"+goruntime.GOARCH+"-"+goruntime.GOOS))
	if len(subdirs) != 1 || got != subdirs[0] {
		t.Fatalf("compilationCacheDir = %q, want the one directory wazero made: %q", got, subdirs)
	}
	if _, ok := cacheVersion(got); !ok {
		t.Errorf("no wazero version in %s", got)
	}
	if got := compilationCacheDir(wazero.NewCompilationCache()); got != "" {
		t.Errorf("in-memory cache: %q", got)
	}
	if got := compilationCacheDir(nil); got != "" {
		t.Errorf("nil cache: %q", got)
	}

	// An entry wazero wrote passes checkCacheEntry.
	eng := NewEngine(cache, "")
	defer eng.Close(ctx)
	if eng.cacheDir != got {
		t.Fatalf("engine's cacheDir %q", eng.cacheDir)
	}
	// Those of a start on an empty directory (warmCache's), in a
	// directory of the same name: the same wazero wrote them.
	warm := t.TempDir()
	warmCache(t, warm)
	version, _ := cacheVersion(got)
	for _, f := range cacheFiles(t, filepath.Join(warm, "wazero", filepath.Base(got)), "*") {
		if !isCacheEntryName(filepath.Base(f)) {
			t.Errorf("unexpected file %s", f)
		} else if err := checkCacheEntry(f, version, true); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// An entry that cannot be removed (here a directory in its place, with
// something in it) fails the load once, with wazero's error and what
// could not be removed, instead of retrying.
func TestUnremovableCacheEntry(t *testing.T) {
	dir := t.TempDir()
	warmCache(t, dir)
	for _, f := range cacheFiles(t, dir, "wazero/*/*") {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(f, "x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := startOnCache(t, dir, hostileWasm)
	if run.err == nil || !strings.Contains(run.err.Error(), "compilationcache") || !strings.Contains(run.err.Error(), "directory not empty") {
		t.Fatalf("load: %v; want wazero's error and the failed removal", run.err)
	}
	t.Logf("load: %v", run.err)
}

// When no entry looks damaged to checkCacheEntry (a format it does not
// know), every entry goes, temporary files of compilations in progress
// excepted; an entry that is sound is kept when another is damaged.
func TestDiscardDamagedEntries(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	entry := logrus.NewEntry(log)
	names := []string{strings.Repeat("a", 64), strings.Repeat("b", 64)}
	tmp := names[0] + ".123.tmp"
	for _, tc := range []struct {
		dir  string // the cache's directory, by which its wazero version is known
		left []string
	}{
		{"wazero-nosuchformat", []string{tmp}},                                   // no version: every entry goes
		{"wazero-dev-" + goruntime.GOARCH + "-" + goruntime.GOOS, []string{tmp}}, // both damaged
	} {
		dir := filepath.Join(t.TempDir(), tc.dir)
		os.Mkdir(dir, 0o755)
		for _, n := range append(names, tmp) {
			os.WriteFile(filepath.Join(dir, n), []byte("junk"), 0o644)
		}
		e := &Engine{cacheDir: dir}
		if err := e.discardDamaged(entry, fmt.Errorf("compilationcache: invalid magic number"), 0); err != nil {
			t.Fatal(err)
		}
		var left []string
		des, _ := os.ReadDir(dir)
		for _, de := range des {
			left = append(left, de.Name())
		}
		if fmt.Sprint(left) != fmt.Sprint(tc.left) {
			t.Errorf("%s: left %v, want %v", tc.dir, left, tc.left)
		}
		if e.purges.Load() != 1 {
			t.Errorf("%s: purges %d", tc.dir, e.purges.Load())
		}
		// Another compilation that started before this purge does not
		// purge again: it only tries again.
		os.WriteFile(filepath.Join(dir, names[0]), []byte("junk"), 0o644)
		if err := e.discardDamaged(entry, fmt.Errorf("compilationcache: invalid magic number"), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, names[0])); err != nil {
			t.Errorf("%s: a stale purge removed an entry", tc.dir)
		}
	}
	if len(hook.AllEntries()) != 4 {
		t.Errorf("%d log entries, want one per entry removed", len(hook.AllEntries()))
	}
}

// Plugins loading at once on a cache whose entries are all damaged each
// load: one removes the damaged entries, and the others, whose entries it
// removed too, compile again without removing anything more.
func TestConcurrentLoadsOnDamagedCache(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	limits := func(i int) Limits {
		lim := testLimits()
		lim.Memory = uint64(32+i) << 20 // another cap: another module
		return lim
	}
	const n = 3
	loadAll := func() (errs []error, warnings []string) {
		cache, err := wazero.NewCompilationCacheWithDir(filepath.Join(dir, "wazero"))
		if err != nil {
			t.Fatal(err)
		}
		defer cache.Close(ctx)
		eng := NewEngine(cache, filepath.Join(dir, "rewritten"))
		defer eng.Close(ctx)
		log, hook := logtest.NewNullLogger()
		entry := log.WithField("plugin", "hostile")
		errs = make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				p, err := Load(ctx, Spec{ID: fmt.Sprint("hostile", i), Wasm: hostileWasm, Limits: limits(i), Host: testHost{log: entry}, Log: entry, Engine: eng})
				if err == nil {
					if status, _, herr := get(p, "/ok"); herr != nil || status != 200 {
						err = fmt.Errorf("GET /ok: %d %v", status, herr)
					}
					p.Close(ctx)
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for _, e := range hook.AllEntries() {
			warnings = append(warnings, e.Message+" "+fmt.Sprint(e.Data["entry"]))
		}
		return errs, warnings
	}
	if errs, _ := loadAll(); errors.Join(errs...) != nil {
		t.Fatal(errs)
	}
	files := cacheFiles(t, dir, "wazero/*/*")
	if len(files) != n {
		t.Fatalf("%d cache entries, want %d", len(files), n)
	}
	for _, f := range files {
		os.Truncate(f, 0)
	}
	errs, warnings := loadAll()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("loads on the damaged cache: %v\nwarnings:\n%s", err, strings.Join(warnings, "\n"))
	}
	if len(warnings) != n {
		t.Errorf("warnings:\n%s\nwant one per damaged entry", strings.Join(warnings, "\n"))
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("%s not rebuilt: %v", f, err)
		}
	}
}

// A rewritten module cached by an earlier greenroom (the bare module,
// without a checksum) is replaced quietly: an upgrade is not damage.
func TestOldRewrittenEntryReplaced(t *testing.T) {
	dir := t.TempDir()
	warmCache(t, dir)
	for _, f := range cacheFiles(t, dir, "rewritten/*.wasm") {
		b, _ := os.ReadFile(f)
		out, err := decodeRewritten(b)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(f, out, 0o644)
	}
	run := startOnCache(t, dir, hostileWasm)
	if run.err != nil || run.reads != 1 || len(run.warnings()) != 0 {
		t.Fatalf("start on an earlier greenroom's cache: read the module %d times, warnings %q, %v", run.reads, run.warnings(), run.err)
	}
	if run := startOnCache(t, dir, hostileWasm); run.err != nil || run.reads != 0 {
		t.Fatalf("next start: read the module %d times, %v", run.reads, run.err)
	}
}

// A module refused by validation whose error names "compilationcache"
// (here, an import of that name) is not taken for cache damage: the cache
// keeps every entry, and nothing is discarded.
func TestValidationErrorIsNotCacheDamage(t *testing.T) {
	dir := t.TempDir()
	warmCache(t, dir)
	entries := func() int { return len(cacheFiles(t, dir, "wazero/*/*")) }
	before := entries()
	run := startOnCache(t, dir, importsModule(funcImport("env", "compilationcache", typeVoid)))
	if run.err == nil || !strings.Contains(run.err.Error(), "env.compilationcache") {
		t.Fatalf("load = %v, want the import refused", run.err)
	}
	if after := entries(); after < before { // the refused module's own may be added
		t.Errorf("the cache went from %d entries to %d", before, after)
	}
	if w := run.warnings(); len(w) > 0 {
		t.Errorf("warnings: %v", w)
	}
}

// Temporary files that a process killed while writing a cache entry left
// behind (an audit's: 87 MB after five kills) are removed by the next
// start once they are old enough; younger ones, which may be a write in
// progress, and entries stay.
func TestStaleTemporaryFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	warmCache(t, dir)
	entry := cacheFiles(t, dir, "wazero/*/*")[0]
	old := time.Now().Add(-2 * StaleTempAge)
	stale := []string{
		filepath.Join(dir, "rewritten", ".rewrite-123456"),
		entry + ".987654321.tmp",
	}
	fresh := []string{filepath.Join(dir, "rewritten", ".rewrite-777"), entry + ".111.tmp"}
	for _, f := range append(stale, fresh...) {
		if err := os.WriteFile(f, []byte("half written"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range stale {
		os.Chtimes(f, old, old)
	}
	if run := startOnCache(t, dir, hostileWasm); run.err != nil || run.reads != 0 {
		t.Fatalf("start: read the module %d times, %v", run.reads, run.err)
	}
	for _, f := range stale {
		if _, err := os.Stat(f); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stale %s: %v, want it removed", f, err)
		}
	}
	for _, f := range append(fresh, entry) {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s: %v, want it kept", f, err)
		}
	}
}

// A cache volume that cannot take wazero's entry (full: here a file size
// limit; read-only) does not fail the load: the module is used without
// its entry, with one warning (it failed the plugin: an audit's, with a
// 40 MB tmpfs).
func TestCacheWriteFailureDoesNotFailTheLoad(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skip(err)
	}
	small := lim
	small.Cur = 1 << 20 // far below a Go guest's machine code
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &small); err != nil {
		t.Skip(err)
	}
	run := startOnCache(t, t.TempDir(), hostileWasm)
	syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim)
	if run.err != nil {
		t.Fatalf("load with a cache that cannot be written: %v", run.err)
	}
	if w := strings.Join(run.warnings(), "\n"); !strings.Contains(w, "cannot write wazero's compilation cache") {
		t.Errorf("no warning about the cache; warnings:\n%s", w)
	}
}
