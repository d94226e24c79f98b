package plugin

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime/plugin/instrument"
)

// wasmImport is one entry of a hand-assembled import section: desc is the
// import's kind byte followed by its type (docs: WebAssembly 1.0, 5.5.5).
type wasmImport struct {
	module, name string
	desc         []byte
}

// Type indices of importsModule's type section.
const (
	typeVoid    = 0 // () -> ()
	typeHandle  = 1 // (i32) -> i32
	typeFdWrite = 2 // (i32 i32 i32 i32) -> i32, WASI fd_write's
	typeI32Void = 3 // (i32) -> ()
)

func funcImport(module, name string, typ byte) wasmImport {
	return wasmImport{module, name, []byte{0x00, typ}}
}

func globalImport(module, name string) wasmImport {
	return wasmImport{module, name, []byte{0x03, 0x7f, 0x01}} // (mut i32)
}

func tableImport(module, name string) wasmImport {
	return wasmImport{module, name, []byte{0x01, 0x70, 0x00, 0x01}} // funcref, min 1
}

func memoryImport(module, name string) wasmImport {
	return wasmImport{module, name, []byte{0x02, 0x00, 0x01}} // min 1 page
}

// importsModule assembles a module that is a valid ABI v1 reactor but for
// its imports: it exports memory (its own, unless it imports one),
// greenroom_abi_v1 and greenroom_handle.
func importsModule(imports ...wasmImport) []byte {
	uleb := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	section := func(id byte, body []byte) []byte { return append(uleb([]byte{id}, len(body)), body...) }
	str := func(b []byte, s string) []byte { return append(uleb(b, len(s)), s...) }
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	wasm = append(wasm, section(1, []byte{4,
		0x60, 0, 0,
		0x60, 1, 0x7f, 1, 0x7f,
		0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f,
		0x60, 1, 0x7f, 0,
	})...)
	funcs, ownMemory := 0, true
	imps := uleb(nil, len(imports))
	for _, imp := range imports {
		imps = append(str(str(imps, imp.module), imp.name), imp.desc...)
		switch imp.desc[0] {
		case 0x00:
			funcs++
		case 0x02:
			ownMemory = false
		}
	}
	wasm = append(wasm, section(2, imps)...)
	wasm = append(wasm, section(3, []byte{2, typeVoid, typeHandle})...)
	if ownMemory {
		wasm = append(wasm, section(5, []byte{1, 0, 1})...)
	}
	exports := []byte{3}
	exports = append(str(exports, "memory"), 0x02, 0)
	exports = append(str(exports, "greenroom_abi_v1"), 0x00, byte(funcs))
	exports = append(str(exports, "greenroom_handle"), 0x00, byte(funcs+1))
	wasm = append(wasm, section(7, exports)...)
	// bodies: nop; i32.const 0
	return append(wasm, section(10, []byte{2, 2, 0, 0x0b, 4, 0, 0x41, 0, 0x0b})...)
}

// loadErr loads wasm as serve does (rewritten, compiled, an instance
// created) and returns why it failed.
func loadErr(t *testing.T, wasm []byte) error {
	t.Helper()
	return loadErrWith(t, wasm, testLimits())
}

// loadErrWith is loadErr under lim.
func loadErrWith(t *testing.T, wasm []byte, lim Limits) error {
	t.Helper()
	ctx := context.Background()
	eng := NewEngine(nil, "")
	defer eng.Close(ctx)
	log := logrus.New()
	log.SetLevel(logrus.ErrorLevel)
	spec := Spec{ID: "imports", Wasm: wasm, Sum: SHA256(wasm), Size: len(wasm), Limits: lim, Log: logrus.NewEntry(log), Host: testHost{log: logrus.NewEntry(log)}, Engine: eng}
	p, err := Load(ctx, spec)
	if err == nil {
		p.Close(ctx)
	}
	return err
}

// A module is refused by validation, which inspect runs too, for every
// import the runtime cannot satisfy: globals, tables and memories (a plugin
// defines its own) from any module, and WASI functions wazero does not
// export or exports with other types. inspect said "valid: yes" for all of
// these, and serve refused them only when creating an instance
// ("module[env] not instantiated", "\"no_such_wasi\" is not exported").
func TestImportsRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		imp    wasmImport
		reason string
		listed string // the import's entry in Info.Imports, as JSON
		// loadReason, when set, is Load's reason instead: the rewrite
		// refuses a module without a memory of its own before validation.
		loadReason string
	}{
		{"env global", globalImport("env", "g"), "module imports global env.g; a plugin must define its own",
			`{"module":"env","name":"g","kind":"global"}`, ""},
		{"greenroom global", globalImport("greenroom", "fuel"), "module imports global greenroom.fuel; a plugin must define its own",
			`{"module":"greenroom","name":"fuel","kind":"global"}`, ""},
		{"greenroom table", tableImport("greenroom", "table"), "module imports table greenroom.table; a plugin must define its own",
			`{"module":"greenroom","name":"table","kind":"table"}`, ""},
		{"WASI function as a global", globalImport("wasi_snapshot_preview1", "fd_write"), "module imports global wasi_snapshot_preview1.fd_write; a plugin must define its own",
			`{"module":"wasi_snapshot_preview1","name":"fd_write","kind":"global"}`, ""},
		{"memory", memoryImport("env", "mem"), "module imports memory env.mem; a plugin must define its own",
			`{"module":"env","name":"mem","kind":"memory"}`, "module defines no memory of its own"},
		{"unknown WASI function", funcImport("wasi_snapshot_preview1", "no_such_wasi", typeVoid), "module imports wasi_snapshot_preview1.no_such_wasi, which this runtime does not provide",
			`{"module":"wasi_snapshot_preview1","name":"no_such_wasi"}`, ""},
		{"WASI function of another type", funcImport("wasi_snapshot_preview1", "fd_write", typeI32Void), "module imports wasi_snapshot_preview1.fd_write with signature [i32] -> []; want [i32 i32 i32 i32] -> [i32]",
			`{"module":"wasi_snapshot_preview1","name":"fd_write"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wasm := importsModule(funcImport("wasi_snapshot_preview1", "proc_exit", typeI32Void), tc.imp)
			info, err := Inspect(context.Background(), wasm, nil)
			if err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("Inspect = %v, want a refusal with %q", err, tc.reason)
			}
			listed, _ := json.Marshal(info.Imports)
			if !strings.Contains(string(listed), tc.listed) {
				t.Errorf("Info.Imports = %s, want it to list %s", listed, tc.listed)
			}
			reason := tc.reason
			if tc.loadReason != "" {
				reason = tc.loadReason
			}
			if err := loadErr(t, wasm); err == nil || !strings.Contains(err.Error(), reason) {
				t.Errorf("Load = %v, want a refusal with %q", err, reason)
			}
		})
	}
}

// Several bad imports are all named, within maxModuleErrors.
func TestImportsRefusedTogether(t *testing.T) {
	wasm := importsModule(globalImport("env", "g"), tableImport("greenroom", "table"), funcImport("wasi_snapshot_preview1", "no_such_wasi", typeVoid))
	_, err := Inspect(context.Background(), wasm, nil)
	for _, want := range []string{"global env.g", "table greenroom.table", "wasi_snapshot_preview1.no_such_wasi"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Inspect = %v, want it to name %s", err, want)
		}
	}
}

// What a plugin may import still passes: WASI functions with their types
// (hand-assembled), and a Go plugin built with the guest SDK.
func TestImportsAccepted(t *testing.T) {
	wasm := importsModule(funcImport("wasi_snapshot_preview1", "fd_write", typeFdWrite), funcImport("wasi_snapshot_preview1", "proc_exit", typeI32Void))
	info, err := Inspect(context.Background(), wasm, nil)
	if err != nil {
		t.Fatalf("Inspect = %v, want the module accepted", err)
	}
	if len(info.Imports) != 2 || info.Imports[0].Name != "fd_write" || info.Imports[1].Name != "proc_exit" {
		t.Errorf("Info.Imports = %+v", info.Imports)
	}
	if err := loadErr(t, wasm); err != nil {
		t.Errorf("Load = %v, want the module loaded", err)
	}
	info, err = Inspect(context.Background(), hostileWasm, testCache)
	if err != nil {
		t.Fatalf("Inspect of the Go test guest = %v", err)
	}
	modules := map[string]int{}
	seen := map[Import]bool{}
	for _, imp := range info.Imports {
		modules[imp.Module]++
		if seen[imp] {
			t.Errorf("%s.%s listed twice (Go imports fd_write and random_get under two names)", imp.Module, imp.Name)
		}
		seen[imp] = true
	}
	if len(modules) != 2 || modules["wasi_snapshot_preview1"] == 0 || modules["greenroom"] == 0 {
		t.Errorf("Go guest imports %+v: want WASI and greenroom functions", info.Imports)
	}
	listed, _ := json.Marshal(info.Imports)
	if strings.Contains(string(listed), `"kind"`) {
		t.Errorf("a function import's JSON has a kind: %s", listed)
	}
}

// Refusals of non-function imports count against maxModuleErrors like the
// others: a module of thousands of global imports gets a short reason.
func TestImportsRefusalBounded(t *testing.T) {
	var imps []wasmImport
	for i := range 30 {
		imps = append(imps, globalImport("env", fmt.Sprintf("g%02d", i)))
	}
	info, err := Inspect(context.Background(), importsModule(imps...), nil)
	if err == nil {
		t.Fatal("a module importing 30 globals was accepted")
	}
	msg := err.Error()
	if n := strings.Count(msg, "module imports global env."); n != maxModuleErrors || !strings.Contains(msg, fmt.Sprintf("and %d more", 30-maxModuleErrors)) {
		t.Errorf("%d import errors listed, want the first %d and a count of the rest:\n%s", n, maxModuleErrors, msg)
	}
	if len(info.Imports) != 30 {
		t.Errorf("Info.Imports lists %d imports, want 30", len(info.Imports))
	}
}

// A module's names reach its refusal clipped and escaped: an import named
// with 1 MiB made a refusal of 1 MiB in every 503, log line and admin
// answer (an audit's, of 100 MB, held a gigabyte), and one with a newline
// and terminal escapes forged lines of plugin inspect's output.
func TestModuleNamesShownBounded(t *testing.T) {
	long := strings.Repeat("A", 1<<20)
	forged := "x\n\x1b[2Jvalid:         yes"
	for _, wasm := range [][]byte{
		importsModule(funcImport("greenroom", long, typeVoid), funcImport(forged, "f", typeVoid), globalImport("env", forged)),
	} {
		_, err := Inspect(context.Background(), wasm, nil)
		if err == nil {
			t.Fatal("accepted")
		}
		msg := err.Error()
		if len(msg) > 4096 || !strings.Contains(msg, "...(1048576 bytes)") {
			t.Errorf("refusal of %d bytes, want the long name clipped:\n%.600s", len(msg), msg)
		}
		if strings.ContainsAny(msg, "\n\x1b") || !strings.Contains(msg, `"x\n\x1b[2Jvalid:         yes"`) {
			t.Errorf("a name with control characters not escaped:\n%.600s", msg)
		}
	}
	for in, want := range map[string]string{
		"fd_write":               "fd_write",
		"a b":                    `"a b"`,
		"é":                      `"é"`,
		strings.Repeat("é", 100): `"` + strings.Repeat("é", 64) + `"...(200 bytes)`,
		strings.Repeat("b", 129): strings.Repeat("b", 128) + "...(129 bytes)",
		"\xff":                   `"\xff"`,
	} {
		if got := ShownName(in); got != want {
			t.Errorf("ShownName(%q) = %q, want %q", in, got, want)
		}
	}
}

// Inspect applies the table budget a load applies (MaxTableEntries): a
// module whose table starts larger is refused by both.
func TestInspectRefusesOversizedTable(t *testing.T) {
	wasm := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00,
		0x04, 0x06, 0x01, 0x70, 0x00, 0x81, 0x80, 0x40} // one funcref table, min 1<<20 + 1
	_, err := Inspect(context.Background(), wasm, nil)
	if err == nil || !strings.Contains(err.Error(), "over the limit of 1048576") {
		t.Errorf("Inspect = %v, want the table budget's refusal", err)
	}
}

// A module whose code names a global it does not have is refused at load
// as malformed. The interruption checks' fuel and flag are appended as
// globals, so such an index named one of them once the module was
// rewritten: it validated, and its loop reset both and was never
// interrupted, stopping the Go runtime's next stop-the-world with it.
func TestLoadRefusesCodeNamingTheChecksGlobals(t *testing.T) {
	// Exports memory, greenroom_abi_v1 and greenroom_handle, whose body is
	// (loop (global.set 1 (i32.const 0)) (global.set 0 (i32.const 1000)) (br 0)).
	wasm, _ := hex.DecodeString("0061736d0100000001090260000060017f017f03030200010503010001073003066d656d6f7279020010677265656e726f6f6d5f6162695f7631000010677265656e726f6f6d5f68616e646c6500010a170202000b120003404100240141e80724000c000b41000b")
	_, err := Load(context.Background(), Spec{ID: "reset", Wasm: wasm, Limits: testLimits(), Host: testHost{log: logrus.NewEntry(logrus.New())}})
	if !errors.Is(err, instrument.ErrMalformed) || !strings.Contains(err.Error(), "global index 1, but the module has 0 globals") {
		t.Errorf("Load = %v, want it refused as malformed", err)
	}
}

type routeHost struct {
	testHost
	routes *[]string
}

func (h routeHost) PublicRoute(p string) error { *h.routes = append(*h.routes, p); return nil }

// A module's start section is its initialization, as _initialize is: the
// host functions apply their init rules to it, and its failure reads as
// an initializer's does (one line, no wasm stack trace), naming the init
// timeout when it ran past it.
func TestStartSectionInitializes(t *testing.T) {
	log := logrus.NewEntry(logrus.New())
	// (start $s) where $s calls public_route("/x"), keeping the result for
	// greenroom_handle.
	ok, _ := hex.DecodeString("0061736d01000000010f0360027f7f017f60000060017f017f021a0109677265656e726f6f6d0c7075626c69635f726f757465000003040301010205030100010607017f0141e3000b073003066d656d6f7279020010677265656e726f6f6d5f6162695f7631000210677265656e726f6f6d5f68616e646c6500030801010a14030a0041104102100024000b02000b040023000b0b08010041100b022f78")
	var routes []string
	p, err := Load(context.Background(), Spec{ID: "start", Wasm: ok, Limits: testLimits(), Host: routeHost{testHost{log: log}, &routes}})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	p.Close(context.Background())
	if !slices.Contains(routes, "/x") {
		t.Errorf("public_route from the start section was refused (routes %q)", routes)
	}

	// (start $s) where $s is unreachable.
	trap, _ := hex.DecodeString("0061736d0100000001090260000060017f017f0304030000010503010001073003066d656d6f7279020010677265656e726f6f6d5f6162695f7631000110677265656e726f6f6d5f68616e646c6500020801000a0d030300000b02000b040041000b")
	_, err = Load(context.Background(), Spec{ID: "start", Wasm: trap, Limits: testLimits(), Host: testHost{log: log}})
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "start function (trap)") || !strings.Contains(ErrorDetail(err), "wasm stack trace") {
		t.Errorf("Load = %q (detail %q), want one line with the stack trace in its detail", err, ErrorDetail(err))
	}

	// (start $s) where $s is (loop (br 0)).
	loop, _ := hex.DecodeString("0061736d0100000001090260000060017f017f0304030000010503010001073003066d656d6f7279020010677265656e726f6f6d5f6162695f7631000110677265656e726f6f6d5f68616e646c6500020801000a1103070003400c000b0b02000b040041000b")
	lim := testLimits()
	lim.InitTimeout = 200 * time.Millisecond
	_, err = Load(context.Background(), Spec{ID: "start", Wasm: loop, Limits: lim, Host: testHost{log: log}})
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "start function ran past the init timeout of 200ms (limits.timeout, at least 10s)") {
		t.Errorf("Load = %q, want the init timeout named, on one line", err)
	}
}

// exportsModule assembles a valid ABI v1 reactor (memory, greenroom_abi_v1
// and greenroom_handle exported) with one i32 global, exporting also name
// as kind (0x03: the global); with name "memory" the memory is not
// exported under that name.
func exportsModule(name string, kind byte) []byte {
	uleb := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	section := func(id byte, body []byte) []byte { return append(uleb([]byte{id}, len(body)), body...) }
	str := func(b []byte, s string) []byte { return append(uleb(b, len(s)), s...) }
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	wasm = append(wasm, section(1, []byte{2, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7f})...)
	wasm = append(wasm, section(3, []byte{2, 0, 1})...)
	wasm = append(wasm, section(5, []byte{1, 0, 1})...)
	wasm = append(wasm, section(6, []byte{1, 0x7f, 0, 0x41, 0, 0x0b})...)
	exports := []byte{4}
	memName := "memory"
	if name == memName {
		memName = "mem"
	}
	exports = append(str(exports, memName), 0x02, 0)
	exports = append(str(exports, "greenroom_abi_v1"), 0x00, 0)
	exports = append(str(exports, "greenroom_handle"), 0x00, 1)
	exports = append(str(exports, name), kind, 0)
	wasm = append(wasm, section(7, exports)...)
	return append(wasm, section(10, []byte{2, 2, 0, 0x0b, 4, 0, 0x41, 0, 0x0b})...)
}

// A name the host calls, exported as something else, is refused: wazero's
// view lists functions and memories only, and an "_initialize" global let
// the module load with its runtime never initialised.
func TestReservedExportOfAnotherKind(t *testing.T) {
	for _, tc := range []struct{ name, reason string }{
		{"_initialize", `module exports "_initialize" as a global; the runtime uses it as a function`},
		{"greenroom_task_run", `module exports "greenroom_task_run" as a global; the runtime uses it as a function`},
		{"greenroom_abi_v2", `module exports "greenroom_abi_v2" as a global; the runtime uses it as a function`},
		{"memory", `module exports "memory" as a global; the runtime uses it as a memory`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wasm := exportsModule(tc.name, 0x03)
			if _, err := Inspect(context.Background(), wasm, nil); err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("Inspect = %v, want a refusal with %q", err, tc.reason)
			}
			if err := loadErr(t, wasm); err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("Load = %v, want a refusal with %q", err, tc.reason)
			}
		})
	}
	// Other names may be exported as anything.
	if err := loadErr(t, exportsModule("counter", 0x03)); err != nil {
		t.Errorf("Load of a module exporting a global \"counter\" = %v", err)
	}
}
