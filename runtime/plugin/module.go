// Package plugin loads one greenroom plugin (a WebAssembly module speaking
// ABI v1) with wazero and runs calls into it on a bounded pool of sandboxed
// instances.
//
// Lifecycle: Load compiles and validates the module and pre-warms an
// instance; Handle serves calls; Close drains in-flight calls and releases
// everything. A Plugin never outlives its Close, and a failed call never
// affects another call: the instance it ran on is discarded.
package plugin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/plugin/instrument"
)

const wasiModule = "wasi_snapshot_preview1"

// Info describes a module as read from its bytes, without running it.
type Info struct {
	SHA256     string   `json:"sha256"`
	Size       int      `json:"size"`
	ABIVersion int      `json:"abi_version"`
	Imports    []Import `json:"imports"`
	Exports    []string `json:"exports"`
	// Capabilities lists the grants the module's imports need, sorted.
	Capabilities   []string `json:"capabilities"`
	MemoryMinPages uint32   `json:"memory_min_pages"`
}

// Import is one import of a module: a function, or (in a module that is
// refused for it) a table, memory, global or tag.
type Import struct {
	Module     string `json:"module"`
	Name       string `json:"name"`
	Capability string `json:"capability,omitempty"`
	// Kind is empty for a function, else "table", "memory", "global" or
	// "tag": imports a plugin may not have.
	Kind string `json:"kind,omitempty"`
}

var wasmMagic = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// SHA256 returns the hex sha256 of b, as used for pins.
func SHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// checkMagic refuses bytes that are not a WebAssembly 1.0 binary module.
func checkMagic(wasm []byte) error {
	if !bytes.HasPrefix(wasm, wasmMagic) {
		if bytes.HasPrefix(wasm, wasmMagic[:4]) && len(wasm) >= 8 {
			return fmt.Errorf("unsupported WebAssembly binary version %v (want 1)", wasm[4:8])
		}
		return fmt.Errorf("not a WebAssembly module (the file does not start with \\0asm)")
	}
	return nil
}

// Compile checks that wasm is a WebAssembly module, compiles it in r and
// validates it against ABI v1. The caller closes the returned module.
func Compile(ctx context.Context, r wazero.Runtime, wasm []byte) (wazero.CompiledModule, Info, error) {
	return compile(ctx, r, wasm, Info{SHA256: SHA256(wasm), Size: len(wasm)}, false)
}

// compileTimeout bounds one module's compilation. wazero stops between
// functions once its context ends, and instrument's per-function limits
// keep each function's share short, so a module made to be slow to
// compile (many functions full of loops: tens of µs of compiling per byte,
// against a Go module's fraction of a µs) fails after this instead of
// holding its load, and the other plugins' fresh compilations queued
// behind it, for hours. A variable for tests.
var compileTimeout = 2 * time.Minute

// compileError is wazero's refusal to compile a module (or to read it back
// from its cache), as opposed to greenroom's validation of what compiled.
type compileError struct{ err error }

func (e *compileError) Error() string { return e.err.Error() }
func (e *compileError) Unwrap() error { return e.err }

// compile is Compile with the module's description started by the caller.
// It refuses what instrument.CheckSizes refuses before wazero sees it (for
// a module instrument.Rewrite returned, rewritten, what
// instrument.CheckRewrittenSizes refuses: the rewrite's own globals are
// not the module's), and ends the compilation at compileTimeout. A panic
// in wazero's decoder or compiler (in the goroutine that called it) is
// returned as a *panicError, so that a module meeting a bug there fails
// its own load (and a module shared by several plugins releases them)
// instead of ending the process.
func compile(ctx context.Context, r wazero.Runtime, wasm []byte, info Info, rewritten bool) (_ wazero.CompiledModule, _ Info, err error) {
	defer recoverAs("compiling the module", &err)
	if err := checkMagic(wasm); err != nil {
		return nil, info, err
	}
	// wazero allocates what a module declares before reading it; a
	// module declaring more than it holds could end the process.
	check := instrument.CheckSizes
	if rewritten {
		check = instrument.CheckRewrittenSizes
	}
	if err := check(wasm); err != nil {
		return nil, info, err
	}
	cctx, cancel := context.WithTimeout(ctx, compileTimeout)
	defer cancel()
	// wazero looks at the context between functions only when it compiles
	// with several workers.
	cctx = experimental.WithCompilationWorkers(cctx, max(2, experimental.GetCompilationWorkers(ctx)))
	engineView := wasm
	if rewritten {
		// The data image is the runtime's (allocatorFor reads it from
		// wasm); wazero would only copy and keep it.
		engineView = instrument.WithoutImage(wasm)
	}
	cm, err := r.CompileModule(cctx, engineView)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, info, fmt.Errorf("compilation did not finish within %s, a bound no plugin built by a compiler comes near (a 6 MB Go module compiles in about 2 s): %w", compileTimeout, err)
		}
		return nil, info, &compileError{fmt.Errorf("compile: %w", err)}
	}
	// The outline read from the module's sections is the one wazero
	// lists (TestOutlineReadAsWazeroListsIt), but wazero would build and
	// keep a definition of every function to list it.
	o, oerr := instrument.ReadOutline(engineView)
	if oerr != nil {
		o = outlineOf(cm)
	}
	if err := describe(o, wasm, &info); err != nil {
		cm.Close(ctx)
		return nil, info, err
	}
	return cm, info, nil
}

// describe fills info from a view of a module (whose bytes are wasm:
// compiled, or only decoded) and checks it against ABI v1: a declared,
// supported ABI version, the required exports, and imports that this
// runtime provides: greenroom and WASI functions with their types,
// nothing else.
func describe(cm instrument.Outline, wasm []byte, info *Info) error {
	// Lists are lists in JSON (the plugins API, inspect), empty ones too.
	info.Exports, info.Imports, info.Capabilities = []string{}, []Import{}, []string{}
	var errs []string
	versions := []int{}
	for name := range cm.Exports {
		if name == instrument.StartName {
			continue // the rewrite's, from a start section (see instrument.Rewrite)
		}
		info.Exports = append(info.Exports, name)
		if v, ok := strings.CutPrefix(name, hostfuncs.ExportABIPrefix); ok {
			n, err := strconv.Atoi(v)
			if err != nil || strconv.Itoa(n) != v { // "01" or "+1" names no version
				errs = append(errs, fmt.Sprintf("export %s does not name an ABI version", strconv.Quote(ShownName(name))))
				continue
			}
			versions = append(versions, n)
		}
	}
	for name := range cm.Memories {
		info.Exports = append(info.Exports, name)
	}
	slices.Sort(info.Exports)
	if len(versions) == 1 {
		info.ABIVersion = versions[0] // reported even when unsupported
	}
	switch {
	case len(versions) == 0:
		errs = append(errs, fmt.Sprintf("module declares no greenroom ABI version (it exports no %sN function); build it with the greenroom guest SDK", hostfuncs.ExportABIPrefix))
	case len(versions) > 1:
		slices.Sort(versions)
		errs = append(errs, fmt.Sprintf("module declares several ABI versions %v; it must declare exactly one", versions))
	case versions[0] != hostfuncs.ABIVersion:
		errs = append(errs, fmt.Sprintf("module declares unknown ABI version %d; this runtime supports version %d", versions[0], hostfuncs.ABIVersion))
	}
	if _, ok := cm.Exports[hostfuncs.ExportHandle]; !ok {
		errs = append(errs, fmt.Sprintf("module does not export %s", hostfuncs.ExportHandle))
	}
	// A WASI command expects _start to run before its exports: a Go
	// plugin built without -buildmode=c-shared loads, and then every call
	// fails ("wasmexport function called before runtime initialization").
	if _, ok := cm.Exports[hostfuncs.ExportStart]; ok {
		errs = append(errs, fmt.Sprintf("module is a WASI command (it exports %s), whose exports cannot be called without running it as a program; build the plugin as a reactor: for Go, GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared (greenroom plugin build does)", hostfuncs.ExportStart))
	}
	// The exports the host calls must have the types it calls them with,
	// or every call would fail after a load that looked fine.
	for name, f := range cm.Exports {
		want, ok := exportSignatures[name]
		if !ok && strings.HasPrefix(name, hostfuncs.ExportABIPrefix) {
			want, ok = instrument.FuncType{}, true
		}
		if ok && (!slices.Equal(f.Params, want.Params) || !slices.Equal(f.Results, want.Results)) {
			if name == instrument.StartName {
				errs = append(errs, fmt.Sprintf("module's start function has signature %v -> %v; a start function takes and returns nothing",
					typeNames(f.Params), typeNames(f.Results)))
				continue
			}
			errs = append(errs, fmt.Sprintf("module exports %s with signature %v -> %v; want %v -> %v",
				name, typeNames(f.Params), typeNames(f.Results), typeNames(want.Params), typeNames(want.Results)))
		}
	}
	// wazero's view lists exported functions and memories only: an export
	// of a name the host calls that is a global, a table or a tag would
	// look absent (an "_initialize" global: the guest's runtime never
	// initialised, silently) or be reported as missing.
	exports, err := instrument.Exports(wasm)
	if err != nil {
		errs = append(errs, fmt.Sprintf("cannot read the module's exports: %v", err))
	}
	for _, e := range exports {
		want := instrument.ImportFunction
		if e.Name == hostfuncs.ExportMemory {
			want = instrument.ImportMemory
		} else if _, ok := exportSignatures[e.Name]; !ok && !strings.HasPrefix(e.Name, hostfuncs.ExportABIPrefix) {
			continue
		}
		if e.Kind != want {
			errs = append(errs, fmt.Sprintf("module exports %s as a %s; the runtime uses it as a %s", strconv.Quote(ShownName(e.Name)), e.Kind, want))
		}
	}
	if m, ok := cm.Memories[hostfuncs.ExportMemory]; !ok {
		errs = append(errs, "module does not export its memory as \"memory\"")
	} else {
		info.MemoryMinPages = m
	}

	caps := map[string]bool{}
	for _, f := range cm.Imports {
		imp := Import{Module: f.Module, Name: f.Name}
		// The module's own names, shown in errors: clipped and escaped.
		mod, name := ShownName(f.Module), ShownName(f.Name)
		switch mod {
		case wasiModule:
			// wazero's WASI exports every preview 1 function; a name it
			// lacks or other types would fail every instantiation.
			wasi, err := wasiFunctions()
			if err != nil {
				errs = append(errs, err.Error())
				break
			}
			want, ok := wasi[f.Name]
			if !ok {
				errs = append(errs, fmt.Sprintf("module imports %s.%s, which this runtime does not provide", mod, name))
				break
			}
			if !slices.Equal(f.Type.Params, want.Params) || !slices.Equal(f.Type.Results, want.Results) {
				errs = append(errs, fmt.Sprintf("module imports %s.%s with signature %v -> %v; want %v -> %v",
					mod, name, typeNames(f.Type.Params), typeNames(f.Type.Results), typeNames(want.Params), typeNames(want.Results)))
			}
		case hostfuncs.ModuleName:
			hf, ok := hostfuncs.Lookup(f.Name)
			if !ok {
				errs = append(errs, fmt.Sprintf("module imports %s.%s, which this runtime does not provide", mod, name))
				break
			}
			if err := checkSignature(f.Type, hf); err != nil {
				errs = append(errs, err.Error())
			}
			imp.Capability = hf.Capability
			if hf.Capability != "" {
				caps[hf.Capability] = true
			}
		default:
			errs = append(errs, fmt.Sprintf("module imports %s.%s; only %q and %q can be imported", mod, name, hostfuncs.ModuleName, wasiModule))
		}
		info.Imports = append(info.Imports, imp)
	}
	// wazero lists imported functions and memories, not globals or
	// tables, which compile and fail only when instantiated: the import
	// section tells them all. Nothing but functions can be imported (the
	// host modules export only functions), so each one is refused.
	imports, err := instrument.Imports(wasm)
	if err != nil {
		errs = append(errs, fmt.Sprintf("cannot read the module's imports: %v", err))
	}
	for _, imp := range imports {
		if imp.Kind == instrument.ImportFunction {
			continue
		}
		errs = append(errs, fmt.Sprintf("module imports %s %s.%s; a plugin must define its own", imp.Kind, ShownName(imp.Module), ShownName(imp.Name)))
		info.Imports = append(info.Imports, Import{Module: imp.Module, Name: imp.Name, Kind: imp.Kind.String()})
	}
	slices.SortFunc(info.Imports, func(a, b Import) int {
		if c := strings.Compare(a.Module+"."+a.Name, b.Module+"."+b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Kind, b.Kind)
	})
	// Go's wasip1 port imports fd_write and random_get twice (under two
	// Go names): listed once.
	info.Imports = slices.Compact(info.Imports)
	for c := range caps {
		info.Capabilities = append(info.Capabilities, c)
	}
	slices.Sort(info.Capabilities)
	if len(errs) > maxModuleErrors {
		// 100 000 unknown imports made a 9 MB reason, in every 503 and log line.
		errs = append(errs[:maxModuleErrors], fmt.Sprintf("and %d more", len(errs)-maxModuleErrors))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// ShownName is a name a module declares as errors and inspection show it:
// at most 128 bytes of it, and quoted (control characters escaped) unless
// it is printable ASCII, so that a hostile module's names cannot make a
// refusal of many megabytes or write escape sequences to a terminal.
func ShownName(s string) string {
	const max = 128
	clipped := ""
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		clipped = fmt.Sprintf("...(%d bytes)", len(s))
		s = s[:cut]
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\' {
			return strconv.Quote(s) + clipped
		}
	}
	return s + clipped
}

// maxModuleErrors is how many of a module's problems a refusal lists.
const maxModuleErrors = 10

// wasiFunctions returns the functions wazero's WASI module exports, which
// the engine instantiates in every runtime, with their types: read once
// from that module compiled in a throwaway runtime.
var wasiFunctions = sync.OnceValues(func() (map[string]instrument.FuncType, error) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	cm, err := wasi_snapshot_preview1.NewBuilder(r).Compile(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot list the WASI functions: %w", err)
	}
	defer cm.Close(ctx)
	fns := map[string]instrument.FuncType{}
	for name, f := range cm.ExportedFunctions() {
		fns[name] = instrument.FuncType{Params: slices.Clone(f.ParamTypes()), Results: slices.Clone(f.ResultTypes())}
	}
	return fns, nil
})

// exportSignatures are the types of the exports the host calls (docs/abi.md);
// greenroom_abi_vN takes and returns nothing.
var exportSignatures = map[string]instrument.FuncType{
	hostfuncs.ExportHandle:     {Params: []api.ValueType{api.ValueTypeI32}, Results: []api.ValueType{api.ValueTypeI32}},
	hostfuncs.ExportTaskRun:    {Params: []api.ValueType{api.ValueTypeI32}, Results: []api.ValueType{api.ValueTypeI32}},
	hostfuncs.ExportInitialize: {},
	instrument.StartName:       {}, // a start section's function, exported by the rewrite
}

func checkSignature(f instrument.FuncType, hf hostfuncs.Function) error {
	ok := len(f.Params) == len(hf.Params) && len(f.Results) == len(hf.Results)
	for _, t := range append(slices.Clone(f.Params), f.Results...) {
		ok = ok && t == api.ValueTypeI32
	}
	if !ok {
		return fmt.Errorf("module imports %s.%s with signature %v -> %v; want %d i32 params -> %d i32 results",
			hostfuncs.ModuleName, hf.Name, typeNames(f.Params), typeNames(f.Results), len(hf.Params), len(hf.Results))
	}
	return nil
}

func typeNames(ts []api.ValueType) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = api.ValueTypeName(t)
	}
	return out
}

// Inspect compiles wasm in a throwaway runtime and describes it. Unlike
// Compile it returns the description also when validation or compilation
// fails, with the error: what it can read of the module's sections.
func Inspect(ctx context.Context, wasm []byte, cache wazero.CompilationCache) (Info, error) {
	rc := wazero.NewRuntimeConfig()
	if cache != nil {
		rc = rc.WithCompilationCache(cache)
	}
	r := wazero.NewRuntimeWithConfig(ctx, rc)
	defer r.Close(ctx)
	info := Info{SHA256: SHA256(wasm), Size: len(wasm)}
	// A module refused before validation (by the rewrite, or by wazero's
	// compiler: an instruction or feature it does not support, too many
	// locals) is still described from its sections, and its validation
	// problems follow the refusal.
	refused := func(err error) (Info, error) {
		if v, derr := instrument.ReadOutline(wasm); derr == nil {
			if verr := describe(v, wasm, &info); verr != nil {
				err = fmt.Errorf("%w; %v", err, verr)
			}
		}
		return info, err
	}
	// The per-function limits a load applies through the rewrite, so that
	// inspecting a hostile module ends too (compile applies the rest).
	if bytes.HasPrefix(wasm, wasmMagic) {
		if _, _, err := instrument.Rewrite(wasm, instrument.Options{MaxTableEntries: MaxTableEntries}); err != nil {
			return refused(err)
		}
		// What a load refuses in the interruption rewrite (code the
		// rewriter and wazero would read differently, a reserved export
		// name), inspection refuses too.
		if _, _, err := instrument.Interruptible(wasm); err != nil {
			if !errors.Is(err, instrument.ErrMalformed) && !errors.Is(err, instrument.ErrOverLimit) && !errors.Is(err, instrument.ErrReserved) {
				err = fmt.Errorf("cannot instrument the module for interruption at its deadline: %w", err)
			}
			return refused(err)
		}
	}
	ctx = experimental.WithCompilationWorkers(ctx, goruntime.NumCPU())
	cm, out, err := compile(ctx, r, wasm, info, false)
	if cm != nil {
		cm.Close(ctx)
	}
	if err != nil && out.Exports == nil { // refused before describe
		return refused(err)
	}
	return out, err
}
