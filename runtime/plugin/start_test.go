package plugin

import (
	"bytes"
	"context"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/plugin/instrument"
)

// treeModule is a loadable module (memory, ABI v1) whose work is a tree
// of calls 60 deep with no loop in it (each call makes two), which runs
// for hours and passes no loop header (where wazero's
// close-on-context-done checks). With slowStart a start section runs it;
// with slowHandle greenroom_handle does (and otherwise returns 0).
// extraExport, when set, is one more exported function name.
func treeModule(slowStart, slowHandle bool, extraExport string) []byte {
	handle := []byte{0, 0x41, 0, 0x0b}
	if slowHandle {
		handle = []byte{0, 0x41, 60, 0x10, 2, 0x41, 0, 0x0b} // (call $tree (i32.const 60)) (i32.const 0)
	}
	return rawModule(slowStart, handle, extraExport)
}

// rawModule is treeModule with handle as greenroom_handle's body (locals
// and code), which may call the tree, function 2.
func rawModule(slowStart bool, handle []byte, extraExport string) []byte {
	uleb := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	section := func(id byte, body []byte) []byte { return append(uleb([]byte{id}, len(body)), body...) }
	name := func(b []byte, s string) []byte { return append(uleb(b, len(s)), s...) }
	// (func $tree (param i32) (if (local.get 0) (then (call $tree (n-1)) (call $tree (n-1)))))
	tree := []byte{0, 0x20, 0, 0x04, 0x40,
		0x20, 0, 0x41, 1, 0x6b, 0x10, 2,
		0x20, 0, 0x41, 1, 0x6b, 0x10, 2,
		0x0b, 0x0b}
	slow := []byte{0, 0x41, 60, 0x10, 2, 0x0b} // (call $tree (i32.const 60))
	bodies := [][]byte{{0, 0x0b}, handle, tree, slow}
	n := 3
	if extraExport != "" {
		n++
	}
	exports := name(uleb(nil, n), "memory")
	exports = append(exports, 0x02, 0)
	exports = append(name(exports, "greenroom_abi_v1"), 0x00, 0)
	exports = append(name(exports, "greenroom_handle"), 0x00, 1)
	if extraExport != "" {
		exports = append(name(exports, extraExport), 0x00, 0)
	}
	code := uleb(nil, len(bodies))
	for _, b := range bodies {
		code = append(uleb(code, len(b)), b...)
	}
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	wasm = append(wasm, section(1, []byte{3, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7f, 0x60, 1, 0x7f, 0})...)
	wasm = append(wasm, section(3, []byte{4, 0, 1, 2, 0})...)
	wasm = append(wasm, section(5, []byte{1, 0, 1})...)
	wasm = append(wasm, section(7, exports)...)
	if slowStart {
		wasm = append(wasm, section(8, []byte{3})...)
	}
	return append(wasm, section(10, code)...)
}

// A loop-free tree of calls is interrupted at the call's timeout. Under
// wazero's close-on-context-done, the fallback this runtime once used for
// modules it could not instrument, such a call ran past a 1 s timeout for
// 32 s and held up the server's garbage collection (an audit).
func TestLoopFreeCallTreeInterrupted(t *testing.T) {
	p := load(t, treeModule(false, true, ""), testLimits())
	if p.Interruption() != InterruptFlag {
		t.Fatalf("interruption = %s, want %s", p.Interruption(), InterruptFlag)
	}
	start := time.Now()
	_, _, err := get(p, "/")
	if took := time.Since(start); KindOf(err) != FailTimeout || took > 2*p.Limits().Timeout {
		t.Fatalf("call = %v after %v, want a timeout within %v", err, took, 2*p.Limits().Timeout)
	}
}

// A start section is run under the interruption checks too (one that ends
// is TestStartSectionInitializes'): it was the case the rewrite left to
// wazero, which ran a loop-free start section past the init timeout for
// as long as it took.
func TestStartSectionInterruptedAtInitTimeout(t *testing.T) {
	lim := testLimits()
	lim.InitTimeout = 300 * time.Millisecond
	wasm := treeModule(true, false, "")
	start := time.Now()
	err := loadErrWith(t, wasm, lim)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "start function ran past the init timeout of 300ms") {
		t.Fatalf("Load = %v, want the start function interrupted at the init timeout", err)
	}
	if took > 5*time.Second {
		t.Errorf("load failed after %v, want about the init timeout", took)
	}
	t.Logf("refused after %v: %v", took, err)
}

// A module exporting a name the checks reserve is refused, with or
// without them (so that inspect, which knows no config, says what load
// does); a refused module is never run under wazero's interruption.
func TestReservedExportsRefused(t *testing.T) {
	for _, name := range []string{instrument.FlagName, instrument.FuelName, instrument.StartName} {
		wasm := treeModule(false, false, name)
		err := loadErrWith(t, wasm, testLimits())
		if err == nil || !strings.Contains(err.Error(), "a name this runtime reserves") {
			t.Errorf("export %s: Load = %v, want the refusal", name, err)
		}
		if _, err := Inspect(context.Background(), wasm, nil); err == nil || !strings.Contains(err.Error(), "a name this runtime reserves") {
			t.Errorf("export %s: Inspect = %v, want the refusal", name, err)
		}
		lim := testLimits()
		lim.NoInterrupt = true
		if err := loadErrWith(t, wasm, lim); err == nil || !strings.Contains(err.Error(), "a name this runtime reserves") {
			t.Errorf("export %s, limits.interruptible = false: Load = %v, want the refusal", name, err)
		}
	}
}

// A start section the rewrite takes out is checked as wazero would have:
// one, before the element, code and data sections (a review: the rewrite
// ran a module with two, and one after its data).
func TestStartSectionsMalformed(t *testing.T) {
	ok := treeModule(true, false, "")
	i := bytes.Index(ok, []byte{8, 1, 3}) // the start section: id, size, function 3
	if i < 0 {
		t.Fatal("no start section in the test module")
	}
	for name, wasm := range map[string][]byte{
		"two start sections": append(append(slices.Clone(ok[:i+3]), 8, 1, 0), ok[i+3:]...),
		"start after code":   append(append(slices.Clone(ok[:i]), ok[i+3:]...), 8, 1, 3),
	} {
		for _, off := range []bool{false, true} {
			lim := testLimits()
			lim.NoInterrupt = off
			if err := loadErrWith(t, wasm, lim); err == nil {
				t.Errorf("%s (interruptible = %t): loaded", name, !off)
			}
		}
		if _, err := Inspect(context.Background(), wasm, nil); err == nil {
			t.Errorf("%s: Inspect accepted it", name)
		}
	}
}
