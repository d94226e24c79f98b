package plugin

import (
	"context"
	"crypto/sha256"
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

	mu       sync.Mutex
	runtimes map[bool]wazero.Runtime // by close-on-context-done
	modules  map[moduleKey]*sharedModule
	closed   bool
}

// moduleKey identifies a compiled module: the bytes compiled (after
// rewriting) and the runtime they were compiled in.
type moduleKey struct {
	sum         [32]byte
	closeOnDone bool
}

// sharedModule is a compiled module with the plugins that use it.
type sharedModule struct {
	cm   wazero.CompiledModule
	info Info
	refs int
}

// NewEngine returns an engine compiling through cache (nil: no disk cache)
// and keeping rewritten modules in dir ("": nowhere).
func NewEngine(cache wazero.CompilationCache, dir string) *Engine {
	return &Engine{cache: cache, dir: dir, runtimes: map[bool]wazero.Runtime{}, modules: map[moduleKey]*sharedModule{}}
}

// rewrite is instrument.Rewrite, remembered on disk: the output depends
// only on the input, the options and the rewriter's version, and reading
// it back costs a few milliseconds where rewriting a Go module costs tens.
func (e *Engine) rewrite(wasm []byte, sum string, opts instrument.Options) ([]byte, instrument.Stats, error) {
	if e == nil || e.dir == "" {
		return instrument.Rewrite(wasm, opts)
	}
	path := filepath.Join(e.dir, fmt.Sprintf("%s-v%d-i%t-m%d.wasm", sum, instrument.Version, opts.Interrupt, opts.MaxMemoryPages))
	if b, err := os.ReadFile(path); err == nil {
		return b, instrument.Stats{Cached: true}, nil
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

// compile returns the compiled module of code in the runtime for
// closeOnDone, compiling and validating it unless a plugin already did:
// plugins running the same module share it (its machine code and the
// module wazero keeps decoded, together about three times the size of the
// module). release gives the module back; the last release closes it.
func (e *Engine) compile(ctx context.Context, closeOnDone bool, code []byte) (cm wazero.CompiledModule, info Info, release func(), err error) {
	r, err := e.runtime(ctx, closeOnDone)
	if err != nil {
		return nil, info, nil, err
	}
	key := moduleKey{sum: sha256.Sum256(code), closeOnDone: closeOnDone}
	e.mu.Lock()
	defer e.mu.Unlock()
	sm := e.modules[key]
	if sm == nil {
		cm, info, err := Compile(ctx, r, code)
		if err != nil {
			return nil, info, nil, err
		}
		sm = &sharedModule{cm: cm, info: info}
		e.modules[key] = sm
	}
	sm.refs++
	var once sync.Once
	release = func() {
		once.Do(func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			if sm.refs--; sm.refs == 0 {
				delete(e.modules, key)
				sm.cm.Close(context.Background())
			}
		})
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
