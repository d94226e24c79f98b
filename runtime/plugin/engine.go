package plugin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/plugin/instrument"
)

// Engine is what the plugins of one process share: the wazero runtimes
// that compile and run their modules, with WASI and the greenroom host
// module defined once, and the compilation cache. Plugins whose modules are
// identical (after their memory cap is written in) share their machine
// code; each plugin's memory is bounded by its module's declared maximum,
// which Load rewrites to limits.memory, not by the runtime.
//
// There are two runtimes because wazero's close-on-context-done is a
// runtime setting: one without it for instrumented modules (and
// limits.interruptible = false), one with it for the modules that cannot be
// instrumented.
type Engine struct {
	cache wazero.CompilationCache
	// dir keeps rewritten modules (see rewrite); "" keeps none.
	dir string
	// cacheDir is where cache keeps its entries (see
	// compilationCacheDir); "" when it keeps none or they cannot be
	// found.
	cacheDir string

	// purging serializes discardDamaged; purges counts the times it
	// removed entries.
	purging sync.Mutex
	purges  atomic.Uint64
	// checked holds, by name, the identity of each entry of wazero's cache
	// that precheckCache found sound (under purging).
	checked map[string]entryIdentity
	// swept: the cache's stale temporary files were removed (sweepTemp).
	swept sync.Once
	// writeWarned: a failed write of wazero's cache was logged.
	writeWarned atomic.Bool
	// storeWarned: the log said that rewritten modules cannot be kept.
	storeWarned atomic.Bool

	// compiling admits one compilation from scratch at a time (see
	// compile).
	compiling chan struct{}

	// leftRunning counts the instances closed plugins left running
	// (limits.interruptible = false, a guest that did not come back when
	// interrupted): Close leaves the runtimes open while there are any,
	// since closing a runtime frees the memory of every instance in it.
	leftRunning atomic.Int64

	mu       sync.Mutex
	runtimes map[bool]wazero.Runtime // by close-on-context-done
	modules  map[moduleKey]*sharedModule
	closed   bool
}

// moduleKey identifies a compiled module: the bytes compiled (named by
// rewriteKey, since the rewrite is deterministic) and the runtime they were
// compiled in.
type moduleKey struct {
	code        string
	closeOnDone bool
}

// sharedModule is a compiled module with the plugins that use it. cm,
// info, alloc and err are set once done is closed.
type sharedModule struct {
	done chan struct{}
	cm   wazero.CompiledModule
	info Info
	// alloc makes its instances' memories (allocatorFor).
	alloc experimental.MemoryAllocator
	err   error
	refs  int // guarded by Engine.mu
}

// NewEngine returns an engine compiling through cache (nil: no disk cache)
// and keeping rewritten modules in dir ("": nowhere).
func NewEngine(cache wazero.CompilationCache, dir string) *Engine {
	return &Engine{cache: cache, dir: dir, cacheDir: compilationCacheDir(cache), compiling: make(chan struct{}, 1), runtimes: map[bool]wazero.Runtime{}, modules: map[moduleKey]*sharedModule{}}
}

// logOrStd is log, or the standard logger's when nil.
func logOrStd(log *logrus.Entry) *logrus.Entry {
	if log == nil {
		return logrus.NewEntry(logrus.StandardLogger())
	}
	return log
}

// rewrite is rewriteWith, warning on the standard logger.
func (e *Engine) rewrite(original func() ([]byte, error), sum string, opts instrument.Options) ([]byte, instrument.Stats, error) {
	return e.rewriteWith(nil, original, sum, opts)
}

// rewriteWith is instrument.Rewrite of the module original returns (whose
// sha256 is sum), remembered on disk: the output depends only on the
// input, the options and the rewriter's version, and reading it back costs
// a few milliseconds where rewriting a Go module costs tens. original is
// only called when the output is not on disk.
//
// The cache directory is only a cache: an entry that is not what was
// written (a truncated, emptied or overwritten file; see decodeRewritten)
// is removed, with a warning on log naming it, and the module is rewritten
// from the original, as if the entry had never been there.
func (e *Engine) rewriteWith(log *logrus.Entry, original func() ([]byte, error), sum string, opts instrument.Options) ([]byte, instrument.Stats, error) {
	if e == nil || e.dir == "" {
		wasm, err := original()
		if err != nil {
			return nil, instrument.Stats{}, err
		}
		return instrument.Rewrite(wasm, opts)
	}
	path := filepath.Join(e.dir, rewriteKey(sum, opts)+".wasm")
	if b, err := ReadRegular(path); err == nil {
		out, derr := decodeRewritten(b)
		if derr == nil {
			return out, instrument.Stats{Cached: true}, nil
		}
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			derr = fmt.Errorf("%w (and removing it: %v)", derr, rerr)
		}
		if errors.Is(derr, errOldRewritten) {
			logOrStd(log).WithField("entry", path).Debug("replacing a rewritten module cached by an earlier greenroom")
		} else {
			logOrStd(log).WithField("entry", path).WithError(derr).Warn("discarded a damaged rewritten module from the cache (runtime.cache_dir); rewriting the module from its file")
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		logOrStd(log).WithField("entry", path).WithError(err).Warn("cannot read a rewritten module from the cache (runtime.cache_dir); rewriting the module from its file")
	}
	wasm, err := original()
	if err != nil {
		return nil, instrument.Stats{}, err
	}
	out, st, err := instrument.Rewrite(wasm, opts)
	if err != nil {
		return nil, st, err
	}
	// Failing to keep it is only a missed saving, but one every start
	// pays again (seconds for a few plugins): said once per engine.
	if err := e.storeRewritten(path, out); err != nil && e.storeWarned.CompareAndSwap(false, true) {
		logOrStd(log).WithField("dir", e.dir).WithError(err).Warn("cannot keep rewritten modules in the cache (runtime.cache_dir): every start rewrites every plugin's module again; make the directory writable (logged once)")
	}
	return out, st, nil
}

// A rewritten module's cache entry is rewrittenMagic, the module's length
// (8 bytes) and its CRC-32C (Castagnoli, 4 bytes), both little-endian,
// then the module. The checksum is what tells a damaged entry from the
// module: CRC-32C catches the damage a disk, a crash or a careless hand
// does (any truncation, zeroing or overwrite, short of one chance in 2^32)
// at a tenth of a millisecond for a Go module, where hashing it again
// with SHA-256 would cost several milliseconds at every start. (It is not
// a defence against someone who can write to the cache directory: they
// could as well write wazero's machine code next to it.)
const rewrittenMagic = "greenroom rewritten module v1\n"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errOldRewritten is an entry written by an earlier greenroom: the bare
// module, without a checksum to check it by.
var errOldRewritten = errors.New("a rewritten module cached without a checksum, by an earlier greenroom")

// decodeRewritten returns the module of cache entry b, or what is wrong
// with the entry. An entry of an earlier format (the bare module) has no
// header and is refused (errOldRewritten): it is rewritten once more.
func decodeRewritten(b []byte) ([]byte, error) {
	const header = len(rewrittenMagic) + 8 + 4
	if bytes.HasPrefix(b, wasmMagic) {
		return nil, errOldRewritten
	}
	if len(b) < header || string(b[:len(rewrittenMagic)]) != rewrittenMagic {
		return nil, fmt.Errorf("not a rewritten module's cache entry (%d bytes, without its header)", len(b))
	}
	n := binary.LittleEndian.Uint64(b[len(rewrittenMagic):])
	sum := binary.LittleEndian.Uint32(b[len(rewrittenMagic)+8:])
	out := b[header:]
	if uint64(len(out)) != n {
		return nil, fmt.Errorf("the cache entry holds %d bytes of module, its header says %d", len(out), n)
	}
	if got := crc32.Checksum(out, castagnoli); got != sum {
		return nil, fmt.Errorf("the cache entry's module does not match its checksum (CRC-32C %08x, header says %08x)", got, sum)
	}
	return out, nil
}

// storeRewritten writes out as the cache entry at path: to a temporary
// file, flushed to the disk, then renamed, so that the entry is either
// absent or whole, even after a crash (a rename can reach the disk before
// the data it names).
func (e *Engine) storeRewritten(path string, out []byte) error {
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(e.dir, ".rewrite-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails once renamed
	header := make([]byte, 0, len(rewrittenMagic)+12)
	header = append(header, rewrittenMagic...)
	header = binary.LittleEndian.AppendUint64(header, uint64(len(out)))
	header = binary.LittleEndian.AppendUint32(header, crc32.Checksum(out, castagnoli))
	_, err = f.Write(header)
	if err == nil {
		_, err = f.Write(out)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// rewriteKey names what rewrite returns for a module whose sha256 is sum:
// the output depends only on the input, the options and the rewriter's
// version. Hashing the rewritten bytes instead would cost as much again as
// hashing the module (several milliseconds per Go module) at each start.
func rewriteKey(sum string, opts instrument.Options) string {
	key := fmt.Sprintf("%s-v%d-i%t-m%d-t%d", sum, instrument.Version, opts.Interrupt, opts.MaxMemoryPages, opts.MaxTableEntries)
	if opts.DataImage {
		key += "-d"
	}
	return key
}

// compile is compileWith, warning on the standard logger.
func (e *Engine) compile(ctx context.Context, closeOnDone bool, key string, code []byte, fresh bool) (cm wazero.CompiledModule, info Info, release func(), err error) {
	cm, info, _, release, err = e.compileWith(ctx, nil, closeOnDone, key, code, fresh)
	return cm, info, release, err
}

// compileWith returns the compiled module of code (which key names, see
// rewriteKey) in the runtime for closeOnDone, compiling and validating it
// unless a plugin already did:
// plugins running the same module share it (its machine code and the
// module wazero keeps decoded, together about three times the size of the
// module), and the memory allocator its instances are made with
// (allocatorFor: the module's data image, laid out once). release gives the
// module back; the last release closes it.
//
// fresh says that code is likely not in the compilation cache. Such
// compilations run one at a time, each on every core (the caller's
// experimental.WithCompilationWorkers): five at once only competed for
// the same cores (a cold start took as long, within noise) and held more
// memory at their peak. The others (decoding, validating and reading
// machine code from the cache: one core each) run in parallel.
//
// A damaged entry of wazero's compilation cache is discarded and the
// module compiled again (see build); the warning goes to log.
func (e *Engine) compileWith(ctx context.Context, log *logrus.Entry, closeOnDone bool, key string, code []byte, fresh bool) (cm wazero.CompiledModule, info Info, alloc experimental.MemoryAllocator, release func(), err error) {
	r, err := e.runtime(ctx, closeOnDone)
	if err != nil {
		return nil, info, nil, nil, err
	}
	mk := moduleKey{code: key, closeOnDone: closeOnDone}
	e.mu.Lock()
	sm := e.modules[mk]
	first := sm == nil
	if first {
		sm = &sharedModule{done: make(chan struct{})}
		e.modules[mk] = sm
	}
	sm.refs++
	e.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			if sm.refs--; sm.refs == 0 && sm.cm != nil {
				if e.modules[mk] == sm {
					delete(e.modules, mk)
				}
				sm.cm.Close(context.Background())
			}
		})
	}
	// Compiling is outside the lock, so that plugins with different
	// modules compile (or, warm, validate) in parallel; a plugin whose
	// module is being compiled waits for that compilation.
	if first {
		sm.cm, sm.info, sm.err = e.build(ctx, logOrStd(log), r, code, fresh)
		if sm.err == nil {
			if sm.alloc, sm.err = allocatorFor(code, sm.info.MemoryMinPages); sm.err != nil {
				sm.err = fmt.Errorf("the rewritten module's data: %w", sm.err)
			}
		}
		if sm.err != nil {
			e.mu.Lock()
			delete(e.modules, mk)
			e.mu.Unlock()
		}
		close(sm.done)
	} else {
		select {
		case <-sm.done:
		case <-ctx.Done():
			release()
			return nil, info, nil, nil, ctx.Err()
		}
	}
	if sm.err != nil {
		release()
		return nil, sm.info, nil, nil, sm.err
	}
	return sm.cm, sm.info, sm.alloc, release, nil
}

// build compiles and validates code in r (see compile), admitted by
// e.compiling when fresh.
//
// A compilation that fails on wazero's compilation cache (cacheDamage) is
// not the module's fault: the damaged entries are removed (discardDamaged)
// and the module compiled once more, which, the entry gone, compiles it
// from scratch and writes the entry again. What that second compilation
// returns is returned as it is: an error then is the module's, reported
// as any other. There is no third attempt.
func (e *Engine) build(ctx context.Context, log *logrus.Entry, r wazero.Runtime, code []byte, fresh bool) (wazero.CompiledModule, Info, error) {
	held := false
	defer func() {
		if held {
			<-e.compiling
		}
	}()
	admit := func() error {
		if held {
			return nil
		}
		select {
		case e.compiling <- struct{}{}:
			held = true
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fresh {
		if err := admit(); err != nil {
			return nil, Info{Size: len(code)}, err
		}
	}
	e.swept.Do(func() { e.sweepTemp(log) })
	e.precheckCache(log)
	purges := e.purges.Load()
	cm, info, err := compile(ctx, r, code, Info{Size: len(code)}, true)
	if err != nil && e.cacheWriteFailed(err) {
		// wazero keeps the compiled module in memory before it writes
		// its entry: compiled again, it is found there. The cache is
		// only a cache; a full or read-only volume costs the next start
		// a compilation, not this load.
		if e.writeWarned.CompareAndSwap(false, true) {
			log.WithError(err).Warn("cannot write wazero's compilation cache (runtime.cache_dir): the module is used without it, and compiled again at the next start; free or fix the volume (logged once)")
		}
		return compile(ctx, r, code, Info{Size: len(code)}, true)
	}
	if err == nil || !e.cacheDamage(err) {
		return cm, info, err
	}
	if derr := e.discardDamaged(log, err, purges); derr != nil {
		return nil, info, fmt.Errorf("%w (%v)", err, derr)
	}
	// From scratch, now: one at a time.
	if err := admit(); err != nil {
		return nil, info, err
	}
	return compile(ctx, r, code, Info{Size: len(code)}, true)
}

// cacheWriteFailed says whether err, from compiling a module, is wazero
// failing to write its cache entry (a temporary file in its directory,
// renamed into place): a full, read-only or immutable volume.
func (e *Engine) cacheWriteFailed(err error) bool {
	if e.cacheDir == "" {
		return false
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && filepath.Dir(filepath.Clean(pe.Path)) == e.cacheDir && strings.HasSuffix(pe.Path, ".tmp") {
		return true
	}
	var le *os.LinkError
	return errors.As(err, &le) && filepath.Dir(filepath.Clean(le.Old)) == e.cacheDir && strings.HasSuffix(le.Old, ".tmp")
}

// cacheDamage says whether err, from compiling a module, comes from
// reading wazero's compilation cache rather than from the module: wazero
// says "compilationcache: ..." when an entry cannot be read back (an empty
// or truncated file, another file's bytes, a checksum mismatch), and an
// entry it cannot open is named by a *fs.PathError (see cacheEntryError).
func (e *Engine) cacheDamage(err error) bool {
	// Only wazero's own error: a validation error quotes the module's
	// names, which may say anything.
	var ce *compileError
	if !errors.As(err, &ce) {
		return false
	}
	return strings.Contains(ce.Error(), "compilationcache") || e.cacheEntryError(ce) != nil
}

// cacheEntryError returns the *fs.PathError in err about an entry of
// wazero's cache, if any. A temporary file that wazero failed to write is
// not an entry.
func (e *Engine) cacheEntryError(err error) *fs.PathError {
	var pe *fs.PathError
	if e.cacheDir == "" || !errors.As(err, &pe) {
		return nil
	}
	path := filepath.Clean(pe.Path)
	if filepath.Dir(path) != e.cacheDir || !isCacheEntryName(filepath.Base(path)) {
		return nil
	}
	return pe
}

// discardDamaged removes the entries of wazero's compilation cache that
// cause (a compilation error, see cacheDamage) comes from, logging a
// warning on log for each, so that the next compilation of the module
// writes it anew. purges is e.purges when that compilation started: if
// another compilation removed entries since, this one may have read one
// of them, and is only tried again.
//
// wazero does not say which entry it failed to read (its file name is a
// hash of the module and of the CPU's features), so each entry is checked
// the way wazero reads it back (checkCacheEntry) and those it would refuse
// are removed. Should none look damaged (say, a new wazero wrote a format
// this check does not know), every entry is removed: the cache is only a
// cache, and its entries are written again as their modules are compiled.
// It returns an error when nothing could be removed; the compilation is
// then not tried again.
func (e *Engine) discardDamaged(log *logrus.Entry, cause error, purges uint64) error {
	e.purging.Lock()
	defer e.purging.Unlock()
	if e.purges.Load() != purges {
		return nil
	}
	dir := e.cacheDir
	if dir == "" {
		return errors.New("a damaged entry of the compilation cache; greenroom does not know where wazero keeps its entries: delete runtime.cache_dir's wazero directory while greenroom is stopped")
	}
	type entry struct {
		name string
		err  error
	}
	var entries, damaged []entry
	if pe := e.cacheEntryError(cause); pe != nil {
		// The entry wazero could not open.
		damaged = []entry{{filepath.Base(pe.Path), pe.Err}}
	} else {
		names, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("listing the compilation cache: %w", err)
		}
		version, known := cacheVersion(dir)
		for _, de := range names {
			if !isCacheEntryName(de.Name()) {
				continue // a temporary file of a compilation in progress
			}
			en := entry{name: de.Name()}
			if known {
				en.err = checkCacheEntry(filepath.Join(dir, en.name), version, true)
			}
			if entries = append(entries, en); en.err != nil {
				damaged = append(damaged, en)
			}
		}
		if len(damaged) == 0 {
			for _, en := range entries {
				damaged = append(damaged, entry{en.name, errors.New("none of the cache's entries looks damaged; discarding them all")})
			}
		}
	}
	removed := 0
	var errs []error
	for _, en := range damaged {
		path := filepath.Join(dir, en.name)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.WithField("entry", path).WithError(err).Error("cannot remove a damaged entry of the compilation cache (runtime.cache_dir); delete it while greenroom is stopped")
			errs = append(errs, err)
			continue
		}
		removed++
		log.WithFields(logrus.Fields{"entry": path, "damage": en.err.Error()}).WithError(cause).Warn("discarded a damaged entry of the compilation cache (runtime.cache_dir); compiling the module again")
	}
	if removed == 0 {
		if len(errs) == 0 {
			errs = append(errs, fmt.Errorf("no entry of the compilation cache in %s to remove", dir))
		}
		return errors.Join(errs...)
	}
	e.purges.Add(1)
	return nil
}

// sweepTemp removes the temporary files of cache entries that a process
// killed while writing them left behind, once they are old enough
// (SweepTemp): rewritten modules' and wazero's.
func (e *Engine) sweepTemp(log *logrus.Entry) {
	n := 0
	if e.dir != "" {
		n += SweepTemp(e.dir, func(name string) bool { return strings.HasPrefix(name, ".rewrite-") })
	}
	if e.cacheDir != "" {
		n += SweepTemp(e.cacheDir, func(name string) bool {
			// wazero's: <entry>.<random digits>.tmp
			entry, rest, ok := strings.Cut(name, ".")
			return ok && isCacheEntryName(entry) && strings.HasSuffix(rest, ".tmp")
		})
	}
	if n > 0 {
		logOrStd(log).WithField("files", n).Info("removed temporary files a stopped process left in the compilation cache (runtime.cache_dir)")
	}
}

// entryIdentity is what precheckCache remembers of an entry it checked:
// one that changes is checked again.
type entryIdentity struct {
	size  int64
	mtime int64
}

func identityOf(fi fs.FileInfo) entryIdentity {
	return entryIdentity{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}

// precheckCache checks, before a compilation reads them, the parts of the
// entries of wazero's cache that wazero itself does not check: the number
// of functions and their offsets (wazero checksums only the machine code),
// the source map's and catch-clause table's sizes. A damaged count made
// wazero allocate until the process died; a damaged offset made it call
// into the wrong place of the machine code: a SIGSEGV that took the
// server down, or another function's answer (an audit's). An entry that
// fails is removed with a warning, and its module compiled again. Each
// entry is checked once per process unless it changes (its size or
// time); the machine code's checksum is left to wazero, which reads it
// anyway. An entry of another module put in this one's place by hand is
// not detected.
func (e *Engine) precheckCache(log *logrus.Entry) {
	dir := e.cacheDir
	if dir == "" {
		return
	}
	version, known := cacheVersion(dir)
	if !known {
		return
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		return // compiling reports what is wrong with the directory
	}
	e.purging.Lock()
	defer e.purging.Unlock()
	if e.checked == nil {
		e.checked = map[string]entryIdentity{}
	}
	for _, de := range names {
		name := de.Name()
		if !isCacheEntryName(name) {
			continue
		}
		path := filepath.Join(dir, name)
		fi, err := os.Lstat(path)
		if err != nil {
			continue
		}
		id := identityOf(fi)
		if prev, ok := e.checked[name]; ok && prev == id {
			continue
		}
		damage := checkCacheEntry(path, version, false)
		if damage == nil {
			e.checked[name] = id
			continue
		}
		delete(e.checked, name)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.WithField("entry", path).WithError(err).Error("cannot remove a damaged entry of the compilation cache (runtime.cache_dir); delete it while greenroom is stopped")
			continue
		}
		e.purges.Add(1)
		log.WithFields(logrus.Fields{"entry": path, "damage": damage.Error()}).Warn("discarded a damaged entry of the compilation cache (runtime.cache_dir); its module is compiled again")
	}
}

// compilationCacheDir returns the directory in which cache, made by
// wazero.NewCompilationCacheWithDir, keeps its entries: a directory of the
// one given to it, named for wazero's version, GOARCH and GOOS. wazero
// does not export it; it is read from the cache's unexported fields
// (TestCompilationCacheDir checks it against the wazero greenroom is built
// with). "" when there is none (nil, or an in-memory cache) or the fields
// are not where they were.
func compilationCacheDir(cache wazero.CompilationCache) (dir string) {
	defer func() {
		if recover() != nil {
			dir = ""
		}
	}()
	v := reflect.ValueOf(cache)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return ""
	}
	fc := v.Elem().FieldByName("fileCache")
	if fc.Kind() != reflect.Interface || fc.IsNil() {
		return ""
	}
	if fc = fc.Elem(); fc.Kind() != reflect.Pointer || fc.IsNil() || fc.Elem().Kind() != reflect.Struct {
		return ""
	}
	path := fc.Elem().FieldByName("dirPath")
	if path.Kind() != reflect.String || path.String() == "" {
		return ""
	}
	return filepath.Clean(path.String())
}

// cacheVersion returns the wazero version of the entries in dir, a
// directory named by wazero "wazero-<version>-<GOARCH>-<GOOS>".
func cacheVersion(dir string) (string, bool) {
	v, ok := strings.CutPrefix(filepath.Base(dir), "wazero-")
	if !ok {
		return "", false
	}
	v, ok = strings.CutSuffix(v, "-"+goruntime.GOARCH+"-"+goruntime.GOOS)
	return v, ok && v != "" && len(v) < 256
}

// isCacheEntryName says whether name is that of an entry of wazero's cache:
// the hex of a sha256 (its temporary files add a suffix).
func isCacheEntryName(name string) bool {
	if len(name) != 64 {
		return false
	}
	_, err := hex.DecodeString(name)
	return err == nil
}

// wazevoMagic starts an entry of wazero's cache.
var wazevoMagic = []byte("WAZEVO")

// checkCacheEntry returns an error when wazero (of the given version)
// would fail to read back the entry at path, as its compiler's
// deserializeCompiledModule (internal/engine/wazevo/engine_cache.go) does:
// header (magic, version, number of functions), function offsets,
// machine code and its CRC-32C (only when crc), source map, catch-clause
// table; and what wazero takes on trust, that the function offsets are
// 16-byte aligned, increasing and inside the machine code. An entry of
// another version, or one without the catch-clause table, is not damaged:
// wazero replaces those itself.
func checkCacheEntry(path, version string, crc bool) error {
	// Not a FIFO or a device, which an open would wait on or read from.
	if fi, err := os.Lstat(path); err != nil {
		return err
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	left := fi.Size()
	r := bufio.NewReaderSize(f, 64<<10)
	var b [8]byte
	read := func(n int64, what string) ([]byte, error) {
		if n > left {
			return nil, fmt.Errorf("%s: %d bytes needed, %d left", what, n, left)
		}
		left -= n
		var buf []byte
		if n <= int64(len(b)) {
			buf = b[:n]
		} else {
			buf = make([]byte, n)
		}
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return buf, nil
	}
	skip := func(n uint64, what string) error {
		if n > uint64(left) {
			return fmt.Errorf("%s: %d bytes needed, %d left", what, n, left)
		}
		left -= int64(n)
		if n <= uint64(r.Buffered()) {
			_, err := r.Discard(int(n))
			return err
		}
		// Past what is buffered: seek, not read (the machine code is
		// tens of megabytes).
		n -= uint64(r.Buffered())
		if _, err := f.Seek(int64(n), io.SeekCurrent); err != nil {
			return err
		}
		r.Reset(f)
		return nil
	}
	header, err := read(int64(len(wazevoMagic)+1+len(version)+4), "header")
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(header, wazevoMagic) {
		return errors.New("invalid magic number")
	}
	if n := int(header[len(wazevoMagic)]); len(wazevoMagic)+1+n >= len(header) || string(header[len(wazevoMagic)+1:][:n]) != version {
		return nil // another version's: stale, which wazero replaces
	}
	functions := binary.LittleEndian.Uint32(header[len(header)-4:])
	if uint64(functions)*8 > uint64(left) {
		return fmt.Errorf("function offsets: %d functions declared, %d bytes left", functions, left)
	}
	var last uint64
	for i := uint32(0); i < functions; i++ {
		b, err := read(8, "function offsets")
		if err != nil {
			return err
		}
		off := binary.LittleEndian.Uint64(b)
		if off%16 != 0 || (i == 0 && off != 0) || (i > 0 && off <= last) {
			return fmt.Errorf("function %d: offset %d is not 16-byte aligned after the previous one's %d", i, off, last)
		}
		last = off
	}
	size, err := read(8, "machine code size")
	if err != nil {
		return err
	}
	n := binary.LittleEndian.Uint64(size)
	if functions > 0 && last >= n {
		return fmt.Errorf("function offsets: the last, %d, is outside the machine code's %d bytes", last, n)
	}
	if n > 0 {
		if n > uint64(left) {
			return fmt.Errorf("machine code: %d bytes declared, %d left", n, left)
		}
		if crc {
			h := crc32.New(castagnoli)
			if _, err := io.CopyN(h, r, int64(n)); err != nil {
				return fmt.Errorf("machine code: %w", err)
			}
			left -= int64(n)
			sum, err := read(4, "machine code checksum")
			if err != nil {
				return err
			}
			if binary.LittleEndian.Uint32(sum) != h.Sum32() {
				return errors.New("machine code checksum mismatch")
			}
		} else if err := skip(n+4, "machine code"); err != nil {
			return err
		}
	}
	hasMap, err := read(1, "source map presence")
	if err != nil {
		return err
	}
	if hasMap[0] == 1 {
		n, err := read(8, "source map length")
		if err != nil {
			return err
		}
		if n := binary.LittleEndian.Uint64(n); n > uint64(left)/16 {
			return fmt.Errorf("source map: %d entries declared, %d bytes left", n, left)
		} else if err := skip(n*16, "source map"); err != nil {
			return err
		}
	}
	if left < 4 {
		return nil // without a catch-clause table: stale, which wazero replaces
	}
	tables, err := read(4, "catch-clause table")
	if err != nil {
		return err
	}
	for i := binary.LittleEndian.Uint32(tables); i > 0; i-- {
		count, err := read(4, "catch clauses")
		if err != nil {
			return err
		}
		if err := skip(uint64(binary.LittleEndian.Uint32(count))*5, "catch clauses"); err != nil {
			return err
		}
	}
	return nil
}

// errEngineClosed is returned by Load on a closed engine.
var errEngineClosed = errors.New("plugin engine closed")

func (e *Engine) runtime(ctx context.Context, closeOnDone bool) (wazero.Runtime, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, errEngineClosed
	}
	if r := e.runtimes[closeOnDone]; r != nil {
		return r, nil
	}
	rc := wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(closeOnDone)
	if e.cache != nil {
		rc = rc.WithCompilationCache(e.cache)
	}
	r := wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(experimental.WithFunctionListenerFactory(ctx, wasiBoundsFactory{}), r); err != nil {
		r.Close(ctx)
		return nil, fmt.Errorf("instantiate WASI: %w", err)
	}
	if err := hostfuncs.Instantiate(ctx, r); err != nil {
		r.Close(ctx)
		return nil, err
	}
	e.runtimes[closeOnDone] = r
	return r, nil
}

// Close closes the runtimes. Call it after every plugin loaded with the
// engine is closed. When a plugin left instances running (see
// Plugin.Close), the runtimes stay open: closing one closes every module
// in it, and the memory of an instance still running was unmapped under
// its guest, whose next access crashed the whole process (SIGSEGV, not a
// panic anything recovers) in its last moments, before the databases and
// logs were closed (TestShutdownKeepsMemoryOfInstancesLeftRunning). The
// process is about to exit: it gives the memory back then.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	if e.leftRunning.Load() > 0 {
		return nil
	}
	var errs []error
	for _, r := range e.runtimes {
		if err := r.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
