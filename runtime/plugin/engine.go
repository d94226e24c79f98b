package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/tetratelabs/wazero"
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

	// compiling admits one compilation from scratch at a time (see
	// compile).
	compiling chan struct{}

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
// info and err are set once done is closed.
type sharedModule struct {
	done chan struct{}
	cm   wazero.CompiledModule
	info Info
	err  error
	refs int // guarded by Engine.mu
}

// NewEngine returns an engine compiling through cache (nil: no disk cache)
// and keeping rewritten modules in dir ("": nowhere).
func NewEngine(cache wazero.CompilationCache, dir string) *Engine {
	return &Engine{cache: cache, dir: dir, compiling: make(chan struct{}, 1), runtimes: map[bool]wazero.Runtime{}, modules: map[moduleKey]*sharedModule{}}
}

// rewrite is instrument.Rewrite of the module original returns (whose
// sha256 is sum), remembered on disk: the output depends only on the
// input, the options and the rewriter's version, and reading it back costs
// a few milliseconds where rewriting a Go module costs tens. original is
// only called when the output is not on disk.
func (e *Engine) rewrite(original func() ([]byte, error), sum string, opts instrument.Options) ([]byte, instrument.Stats, error) {
	if e == nil || e.dir == "" {
		wasm, err := original()
		if err != nil {
			return nil, instrument.Stats{}, err
		}
		return instrument.Rewrite(wasm, opts)
	}
	path := filepath.Join(e.dir, rewriteKey(sum, opts)+".wasm")
	if b, err := os.ReadFile(path); err == nil {
		return b, instrument.Stats{Cached: true}, nil
	}
	wasm, err := original()
	if err != nil {
		return nil, instrument.Stats{}, err
	}
	out, st, err := instrument.Rewrite(wasm, opts)
	if err != nil {
		return nil, st, err
	}
	if err := os.MkdirAll(e.dir, 0o755); err == nil {
		if f, err := os.CreateTemp(e.dir, ".rewrite-*"); err == nil {
			_, werr := f.Write(out)
			if cerr := f.Close(); werr == nil && cerr == nil {
				os.Rename(f.Name(), path)
			}
			os.Remove(f.Name())
		}
	}
	return out, st, nil
}

// rewriteKey names what rewrite returns for a module whose sha256 is sum:
// the output depends only on the input, the options and the rewriter's
// version. Hashing the rewritten bytes instead would cost as much again as
// hashing the module (several milliseconds per Go module) at each start.
func rewriteKey(sum string, opts instrument.Options) string {
	return fmt.Sprintf("%s-v%d-i%t-m%d-t%d", sum, instrument.Version, opts.Interrupt, opts.MaxMemoryPages, opts.MaxTableEntries)
}

// compile returns the compiled module of code (which key names, see
// rewriteKey) in the runtime for closeOnDone, compiling and validating it
// unless a plugin already did:
// plugins running the same module share it (its machine code and the
// module wazero keeps decoded, together about three times the size of the
// module). release gives the module back; the last release closes it.
//
// fresh says that code is likely not in the compilation cache. Such
// compilations run one at a time, each on every core (the caller's
// experimental.WithCompilationWorkers): five at once only competed for
// the same cores (a cold start took as long, within noise) and held more
// memory at their peak. The others (decoding, validating and reading
// machine code from the cache: one core each) run in parallel.
func (e *Engine) compile(ctx context.Context, closeOnDone bool, key string, code []byte, fresh bool) (cm wazero.CompiledModule, info Info, release func(), err error) {
	r, err := e.runtime(ctx, closeOnDone)
	if err != nil {
		return nil, info, nil, err
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
		if fresh {
			select {
			case e.compiling <- struct{}{}:
				defer func() { <-e.compiling }()
			case <-ctx.Done():
				sm.err = ctx.Err()
			}
		}
		if sm.err == nil {
			sm.cm, sm.info, sm.err = compile(ctx, r, code, Info{Size: len(code)})
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
			return nil, info, nil, ctx.Err()
		}
	}
	if sm.err != nil {
		release()
		return nil, sm.info, nil, sm.err
	}
	return sm.cm, sm.info, release, nil
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
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
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
// engine is closed.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	var errs []error
	for _, r := range e.runtimes {
		if err := r.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
