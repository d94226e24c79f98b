package instrument

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
)

// module assembles a binary module from sections.
func module(sections ...[]byte) []byte {
	out := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	for _, s := range sections {
		out = append(out, s...)
	}
	return out
}

func section(id byte, body ...byte) []byte {
	return append(appendU32([]byte{id}, uint32(len(body))), body...)
}

// loopModule exports "spin": (func (loop (br 0))) and "count": a function
// that loops n times with a local counter.
func loopModule() []byte {
	types := section(1, 2, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7f)
	funcs := section(3, 2, 0, 1)
	memory := section(5, 1, 0, 1)
	exports := section(7, 2,
		4, 's', 'p', 'i', 'n', 0, 0,
		5, 'c', 'o', 'u', 'n', 't', 0, 1)
	spin := []byte{0, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b}
	// (local i32) (loop (local.set 1 (i32.add (local.get 1) (i32.const 1))) (br_if 0 (i32.lt_u (local.get 1) (local.get 0)))) (local.get 1)
	count := []byte{1, 1, 0x7f,
		0x03, 0x40,
		0x20, 1, 0x41, 1, 0x6a, 0x21, 1,
		0x20, 1, 0x20, 0, 0x49, 0x0d, 0,
		0x0b,
		0x20, 1, 0x0b}
	code := []byte{2}
	code = appendU32(code, uint32(len(spin)))
	code = append(code, spin...)
	code = appendU32(code, uint32(len(count)))
	code = append(code, count...)
	return module(types, funcs, memory, exports, section(10, code...))
}

func instantiate(t *testing.T, wasm []byte) api.Module {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	t.Cleanup(func() { r.Close(ctx) })
	m, err := r.Instantiate(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func globals(t *testing.T, m api.Module) (fuel, flag api.MutableGlobal) {
	t.Helper()
	fuel, ok1 := m.ExportedGlobal(FuelName).(api.MutableGlobal)
	flag, ok2 := m.ExportedGlobal(FlagName).(api.MutableGlobal)
	if !ok1 || !ok2 {
		t.Fatalf("exported globals missing: %v %v", ok1, ok2)
	}
	return fuel, flag
}

func spin(m api.Module) chan error {
	done := make(chan error, 1)
	go func() {
		_, err := m.ExportedFunction("spin").Call(context.Background())
		done <- err
	}()
	return done
}

func waitTrap(t *testing.T, done chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("spin ended with %v, want an unreachable trap", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("spin not interrupted within 10s of setting the flag")
	}
}

func TestInterruptsLoop(t *testing.T) {
	out, st, err := Interruptible(loopModule())
	if err != nil {
		t.Fatal(err)
	}
	// Neither function calls anything: their loops are checked, their
	// entries need not be.
	if st.Functions != 0 || st.Skipped != 2 || st.Loops != 2 {
		t.Errorf("stats = %+v, want 2 loops checked and 2 entries skipped", st)
	}
	m := instantiate(t, out)
	fuel, flag := globals(t, m)
	// Semantics are unchanged while the flag is clear, across refills.
	res, err := m.ExportedFunction("count").Call(context.Background(), 3*Refill+5)
	if err != nil || res[0] != 3*Refill+5 {
		t.Fatalf("count = %v, %v", res, err)
	}
	done := spin(m)
	select {
	case err := <-done:
		t.Fatalf("spin returned before the interrupt: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	flag.Set(1)
	fuel.Set(1)
	waitTrap(t, done)
	// A set flag also stops a function at entry once its fuel runs out.
	fuel.Set(1)
	if _, err := m.ExportedFunction("count").Call(context.Background(), 1); err == nil {
		t.Error("call with the flag set succeeded")
	}
}

// The spinning guest exits to Go regularly, so a stop-the-world (GC) can
// complete while it spins, and the flag alone, without a fuel write, stops
// it within Refill iterations.
func TestSpinningGuestLetsGCRunAndFlagAloneStopsIt(t *testing.T) {
	out, _, err := Interruptible(loopModule())
	if err != nil {
		t.Fatal(err)
	}
	m := instantiate(t, out)
	_, flag := globals(t, m)
	done := spin(m)
	time.Sleep(20 * time.Millisecond)
	gcDone := make(chan struct{})
	go func() {
		for i := 0; i < 5; i++ {
			goruntime.GC()
		}
		close(gcDone)
	}()
	select {
	case <-gcDone:
	case <-time.After(10 * time.Second):
		t.Fatal("GC did not complete while the guest spun: the guest never reaches a safe point")
	}
	flag.Set(1)
	waitTrap(t, done)
}

// fibModule exports "fib": recursion without any loop, exponential in n.
func fibModule() []byte {
	types := section(1, 1, 0x60, 1, 0x7f, 1, 0x7f)
	funcs := section(3, 1, 0)
	memory := section(5, 1, 0, 1)
	exports := section(7, 1, 3, 'f', 'i', 'b', 0, 0)
	body := fibBody(0)
	code := appendU32([]byte{1}, uint32(len(body)))
	return module(types, funcs, memory, exports, section(10, append(code, body...)...))
}

// fibBody is the body of fib (i32) -> i32, function index self.
func fibBody(self byte) []byte {
	return []byte{0,
		0x20, 0, 0x41, 2, 0x49, // n < 2
		0x04, 0x7f, 0x20, 0, // if (result i32) n
		0x05, // else fib(n-1) + fib(n-2)
		0x20, 0, 0x41, 1, 0x6b, 0x10, self,
		0x20, 0, 0x41, 2, 0x6b, 0x10, self,
		0x6a, 0x0b, 0x0b}
}

// Recursion that passes no loop keeps its entry check and is interrupted.
func TestInterruptsRecursion(t *testing.T) {
	out, st, err := Interruptible(fibModule())
	if err != nil {
		t.Fatal(err)
	}
	if st.Functions != 1 || st.Loops != 0 {
		t.Fatalf("stats = %+v, want the recursive function's entry checked", st)
	}
	m := instantiate(t, out)
	if res, err := m.ExportedFunction("fib").Call(context.Background(), 20); err != nil || res[0] != 6765 {
		t.Fatalf("fib(20) = %v, %v", res, err)
	}
	_, flag := globals(t, m)
	done := make(chan error, 1)
	go func() {
		_, err := m.ExportedFunction("fib").Call(context.Background(), 60)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	flag.Set(1)
	waitTrap(t, done)
}

// A start section runs inside instantiation, before the flag can be
// reached: the rewrite takes its function out into the export StartName,
// which does what the section did once called, under the checks.
func TestStartSectionBecomesAnExport(t *testing.T) {
	types := section(1, 2, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7f)
	funcs := section(3, 3, 0, 0, 1)
	memory := section(5, 1, 0, 1)
	store := []byte{0, 0x41, 0, 0x41, 7, 0x36, 2, 0, 0x0b} // (i32.store (i32.const 0) (i32.const 7))
	slow := []byte{0, 0x41, 60, 0x10, 2, 0x1a, 0x0b}       // (drop (call $fib (i32.const 60)))
	fib := fibBody(2)
	code := []byte{3}
	for _, body := range [][]byte{store, slow, fib} {
		code = appendU32(code, uint32(len(body)))
		code = append(code, body...)
	}
	wasm := module(types, funcs, memory, section(8, 0), section(10, code...))
	out, _, err := Interruptible(wasm)
	if err != nil {
		t.Fatal(err)
	}
	m := instantiate(t, out)
	if b, _ := m.Memory().ReadByte(0); b != 0 {
		t.Fatalf("the start function ran inside instantiation (memory[0] = %d)", b)
	}
	start := m.ExportedFunction(StartName)
	if start == nil {
		t.Fatalf("rewritten module does not export %s", StartName)
	}
	if _, err := start.Call(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b, _ := m.Memory().ReadByte(0); b != 7 {
		t.Fatalf("memory[0] = %d after %s, want 7", b, StartName)
	}
	// A start function that never ends is interrupted by the flag.
	wasm = module(types, funcs, memory, section(8, 1), section(10, code...))
	if out, _, err = Interruptible(wasm); err != nil {
		t.Fatal(err)
	}
	m = instantiate(t, out)
	_, flag := globals(t, m)
	done := make(chan error, 1)
	go func() {
		_, err := m.ExportedFunction(StartName).Call(context.Background())
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	flag.Set(1)
	waitTrap(t, done)
	// Without Interrupt the section stays (wazero runs it).
	if out, _, err = Rewrite(wasm, Options{MaxMemoryPages: 1}); err != nil || !bytes.Contains(out, section(8, 1)) {
		t.Errorf("start section not kept without Interrupt: %v", err)
	}
}

// A start section naming a function the module does not have is invalid;
// with Interrupt its index became the export StartName's, which wazero
// refused as "unknown function for export["greenroom_start"]", an export
// the module never declared. Refused as malformed, naming the index and
// the functions there are, with or without Interrupt.
func TestStartSectionOutOfRange(t *testing.T) {
	types := section(1, 1, 0x60, 0, 0)
	memory := section(5, 1, 0, 1)
	code := section(10, 1, 2, 0, 0x0b)
	// (import "env" "f" (func)): function 0, the defined one 1.
	imports := section(2, 1, 3, 'e', 'n', 'v', 1, 'f', 0, 0)
	for _, tc := range []struct {
		name string
		wasm []byte
		want string // "" when accepted
	}{
		{"past the defined", module(types, section(3, 1, 0), memory, section(8, 5), code), "start section names function 5, but the module has 1 functions (0 imported, 1 defined)"},
		{"just past", module(types, imports, section(3, 1, 0), memory, section(8, 2), code), "start section names function 2, but the module has 2 functions (1 imported, 1 defined)"},
		{"no functions", module(types, memory, section(8, 0)), "start section names function 0, but the module has 0 functions"},
		{"the defined one", module(types, imports, section(3, 1, 0), memory, section(8, 1), code), ""},
		{"an imported one", module(types, imports, section(3, 1, 0), memory, section(8, 0), code), ""},
	} {
		for _, opts := range []Options{{Interrupt: true, MaxMemoryPages: 1}, {MaxMemoryPages: 1}} {
			_, _, err := Rewrite(tc.wasm, opts)
			if tc.want == "" && err != nil || tc.want != "" && (!errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("%s, interrupt %t: %v, want %q", tc.name, opts.Interrupt, err, tc.want)
			}
		}
	}
}

// weigh leaves out the entry checks that are needless and weighs each
// check by the code it covers.
func TestWeigh(t *testing.T) {
	u := func(bytes int) int32 { return int32(1 + bytes/costUnit) }
	leaf := bytes.Repeat([]byte{0x41, 1, 0x1a}, 1000) // i32.const 1; drop: 3000 bytes
	calls := []byte{0x03, 0x40}
	for i := 0; i < 40; i++ {
		calls = append(calls, 0x10, 0) // call 0
	}
	calls = append(calls, 0x0b, 0x0b)
	cases := []struct {
		name  string
		body  []byte // instructions after the (empty) locals
		entry bool
		want  weights
	}{
		{"no calls", []byte{0x03, 0x40, 0x0c, 0, 0x0b, 0x0b}, false, weights{entry: 1, loops: []int32{2}}},
		{"loop first, then calls", []byte{0x02, 0x40, 0x03, 0x40, 0x10, 0, 0x0b, 0x0b, 0x0b}, false, weights{entry: 1, loops: []int32{2}}},
		{"call before any loop", []byte{0x10, 0, 0x03, 0x40, 0x0b, 0x0b}, true, weights{entryCheck: true, entry: 1, loops: []int32{1}}},
		{"branch before the loop", []byte{0x41, 1, 0x04, 0x40, 0x0b, 0x03, 0x40, 0x10, 0, 0x0b, 0x0b}, true, weights{entryCheck: true, entry: 1, loops: []int32{1}}},
		{"calls, no loop", []byte{0x10, 0, 0x0b}, true, weights{entryCheck: true, entry: 1}},
		{"small leaf", []byte{0x41, 1, 0x1a, 0x0b}, false, weights{entry: 1}},
		{"large leaf", append(append([]byte{}, leaf...), 0x0b), true, weights{entryCheck: true, entry: u(3001)}},
		{"no calls, branch before the loop", []byte{0x41, 1, 0x04, 0x40, 0x0b, 0x03, 0x40, 0x0b, 0x0b}, true, weights{entryCheck: true, entry: 1, loops: []int32{1}}},
		// 40 calls of 2 bytes each, each charged leafBytes more, and the
		// loop's end; plus the entry's 1 (loop first)
		{"calls in the loop", calls, false, weights{entry: 1, loops: []int32{u(40*(2+leafBytes)+1) + 1}}},
		// the nested loop's body is its own; the outer pays for the rest
		{"nested", append(append([]byte{0x41, 1, 0x04, 0x40, 0x0b, 0x03, 0x40, 0x03, 0x40}, leaf...), 0x0b, 0x0b, 0x0b), true, weights{entryCheck: true, entry: 1, loops: []int32{1, u(3001)}}},
	}
	for _, c := range cases {
		got, err := weigh(append([]byte{0}, c.body...), 1, 0)
		if err != nil || got.entryCheck != c.entry || got.entry != c.want.entry || !slices.Equal(got.loops, c.want.loops) {
			t.Errorf("%s: %+v, %v; want entry check %v, %+v", c.name, got, err, c.entry, c.want)
		}
	}
	if c := u(40*(2+leafBytes) + 1); c < 5 {
		t.Errorf("40 calls weigh %d: the calls are not charged", c)
	}
	// A call sets the callee's locals to zero: a small leaf with 1000 of
	// them gets an entry check weighing them; a loop-first function's
	// first loop takes them.
	if got, _ := weigh([]byte{0, 0x41, 1, 0x1a, 0x0b}, 1, 1000); !got.entryCheck || got.entry != u(8004) {
		t.Errorf("leaf with 1000 locals: %+v, want an entry check of %d", got, u(8004))
	}
	if got, _ := weigh([]byte{0, 0x03, 0x40, 0x0b, 0x0b}, 1, 1000); got.entryCheck || !slices.Equal(got.loops, []int32{1 + u(8003)}) {
		t.Errorf("loop first with 1000 locals: %+v, want the loop to weigh %d", got, 1+u(8003))
	}
}

func TestRefusals(t *testing.T) {
	if _, _, err := Interruptible([]byte("not wasm")); err == nil {
		t.Error("garbage accepted")
	}
	exporting := module(section(5, 1, 0, 1), section(6, 1, 0x7f, 0, 0x41, 0, 0x0b), section(7, append(append([]byte{1, byte(len(FlagName))}, FlagName...), 3, 0)...))
	if _, _, err := Interruptible(exporting); err == nil || !strings.Contains(err.Error(), "a name this runtime reserves") {
		t.Errorf("module exporting %s: %v", FlagName, err)
	}
	if _, _, err := Interruptible(module(section(1, 1, 0x60, 0, 0))); err == nil || !strings.Contains(err.Error(), "no memory") {
		t.Errorf("module without memory: %v", err)
	}
	if _, _, err := Interruptible(module(section(5, 1, 0, 1), section(8, 0, 0))); err == nil || !strings.Contains(err.Error(), "start section is not one function index") {
		t.Errorf("start section with trailing bytes: %v", err)
	}
	// An opcode outside the known set is refused with its name.
	types := section(1, 1, 0x60, 0, 0)
	funcs := section(3, 1, 0)
	code := section(10, 1, 3, 0, 0x27, 0x0b)
	if _, _, err := Interruptible(module(types, funcs, section(5, 1, 0, 1), code)); err == nil || !strings.Contains(err.Error(), "unsupported opcode 0x27") {
		t.Errorf("unknown opcode: %v", err)
	}
	// A module cut inside a section is refused, never read past. (Cut
	// exactly between sections it is a shorter module, which wazero's
	// validation judges.)
	full := loopModule()
	boundaries := map[int]bool{}
	for r := (&reader{b: full, off: 8}); r.off < len(full); {
		boundaries[r.off] = true
		r.byte()
		r.bytes(int(r.u32()))
	}
	for n := 9; n < len(full); n++ {
		if _, _, err := Interruptible(full[:n]); err == nil && !boundaries[n] {
			t.Errorf("module cut inside a section at byte %d accepted", n)
		}
	}
}

// A module naming a global it does not have is invalid as written; once
// the fuel and the flag are appended the index would name one of them, so
// a guest could reset both in its loop and never be interrupted (the
// module validated after the rewrite). Refused as malformed, never made
// valid; as is an export of such a global.
func TestGlobalIndicesOfTheChecksRefused(t *testing.T) {
	types := section(1, 1, 0x60, 0, 0)
	funcs := section(3, 1, 0)
	memory := section(5, 1, 0, 1)
	// (loop (global.set 1 (i32.const 0)) (global.set 0 (i32.const 1000)) (br 0))
	reset := []byte{0, 0x03, 0x40, 0x41, 0, 0x24, 1, 0x41, 0xe8, 0x07, 0x24, 0, 0x0c, 0, 0x0b, 0x0b}
	code := section(10, append([]byte{1, byte(len(reset))}, reset...)...)
	for name, wasm := range map[string][]byte{
		"no globals":       module(types, funcs, memory, code),
		"one global":       module(types, funcs, memory, section(6, 1, 0x7f, 1, 0x41, 0, 0x0b), code),
		"exported global":  module(memory, section(7, 1, 1, 'g', 3, 0)),
		"exported global1": module(memory, section(6, 1, 0x7f, 0, 0x41, 0, 0x0b), section(7, 1, 1, 'g', 3, 1)),
	} {
		if _, _, err := Interruptible(wasm); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	// With two globals of its own, the same code is valid and keeps them.
	two := module(types, funcs, memory, section(6, 2, 0x7f, 1, 0x41, 0, 0x0b, 0x7f, 1, 0x41, 0, 0x0b), code)
	if _, _, err := Interruptible(two); err != nil {
		t.Errorf("module with its own globals 0 and 1: %v", err)
	}
}

// A real Go guest compiles once instrumented; the plugin and server tests
// exercise its interruption.
func TestGoGuestCompiles(t *testing.T) {
	b := guesttest.Read(t, "runtime/plugin/testdata/guests/hostile")
	out, st, err := Interruptible(b)
	if err != nil {
		t.Fatal(err)
	}
	if st.Functions == 0 || st.Loops < st.Functions/2 {
		t.Errorf("suspiciously few checks: %+v", st)
	}
	t.Logf("%d bytes -> %d bytes, %+v", len(b), len(out), st)
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	if _, err := r.CompileModule(ctx, out); err != nil {
		t.Fatal(err)
	}
}

// growModule exports "grow": memory.grow(n), with memory limits given.
func growModule(limits ...byte) []byte {
	types := section(1, 1, 0x60, 1, 0x7f, 1, 0x7f)
	funcs := section(3, 1, 0)
	memory := section(5, append([]byte{1}, limits...)...)
	exports := section(7, 1, 4, 'g', 'r', 'o', 'w', 0, 0)
	body := []byte{0, 0x20, 0, 0x40, 0, 0x0b}
	code := appendU32([]byte{1}, uint32(len(body)))
	return module(types, funcs, memory, exports, section(10, append(code, body...)...))
}

func TestMemoryCap(t *testing.T) {
	for _, interrupt := range []bool{false, true} {
		for name, limits := range map[string][]byte{"no max": {0, 1}, "larger max": {1, 1, 100}} {
			out, _, err := Rewrite(growModule(limits...), Options{Interrupt: interrupt, MaxMemoryPages: 4})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			m := instantiate(t, out)
			grow := m.ExportedFunction("grow")
			if res, err := grow.Call(context.Background(), 3); err != nil || int32(res[0]) != 1 {
				t.Errorf("%s: grow to 4 pages = %v %v", name, res, err)
			}
			if res, err := grow.Call(context.Background(), 1); err != nil || int32(res[0]) != -1 {
				t.Errorf("%s: grow past the cap = %v %v, want -1", name, res, err)
			}
		}
	}
	// A smaller declared maximum stays.
	out, _, err := Rewrite(growModule(1, 1, 2), Options{MaxMemoryPages: 4})
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := instantiate(t, out).ExportedFunction("grow").Call(context.Background(), 2); int32(res[0]) != -1 {
		t.Errorf("declared max of 2 pages raised to the cap: grow(2) = %d", int32(res[0]))
	}
	if _, _, err := Rewrite(growModule(0, 10), Options{MaxMemoryPages: 4}); err == nil || !strings.Contains(err.Error(), "needs 10 pages") {
		t.Errorf("min over the cap: %v", err)
	}
	if _, _, err := Rewrite(growModule(3, 1, 2), Options{MaxMemoryPages: 4}); err == nil || !strings.Contains(err.Error(), "shared or 64-bit") {
		t.Errorf("shared memory: %v", err)
	}
}

// tableModule has a table of min entries (with max, when given) and
// exports "grow": table.grow of 100 null entries, returning the old size
// or -1.
func tableModule(min byte, max ...byte) []byte {
	limits := []byte{0x70, 0, min}
	if len(max) > 0 {
		limits = append([]byte{0x70, 1, min}, max...)
	}
	body := []byte{0, 0xd0, 0x70, 0x41, 0xe4, 0x00, 0xfc, 0x0f, 0x00, 0x0b}
	return module(
		section(1, 1, 0x60, 0, 1, 0x7f),
		section(3, 1, 0),
		section(4, append([]byte{1}, limits...)...),
		section(5, 1, 0, 1),
		section(7, 1, 4, 'g', 'r', 'o', 'w', 0, 0),
		section(10, append([]byte{1, byte(len(body))}, body...)...))
}

// Table entries live in the host's memory, where the linear memory cap
// does not reach: with MaxTableEntries a table cannot grow.
func TestTablesFixed(t *testing.T) {
	grow := func(wasm []byte) int32 {
		t.Helper()
		m := instantiate(t, wasm)
		res, err := m.ExportedFunction("grow").Call(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return int32(res[0])
	}
	for name, wasm := range map[string][]byte{"no maximum": tableModule(2), "maximum 1000": tableModule(2, 0xe8, 0x07)} {
		if got := grow(wasm); got != 2 {
			t.Fatalf("%s, as built: table.grow returned %d, want the old size 2", name, got)
		}
		fixed, _, err := Rewrite(wasm, Options{MaxMemoryPages: 1, MaxTableEntries: 16})
		if err != nil {
			t.Fatal(err)
		}
		if got := grow(fixed); got != -1 {
			t.Errorf("%s, rewritten: table.grow returned %d, want -1", name, got)
		}
	}
	for name, tc := range map[string]struct {
		wasm []byte
		want string
	}{
		"over the budget":     {tableModule(17), "tables need 17 entries at start, over the limit of 16"},
		"maximum below min":   {tableModule(3, 2), "table 0: maximum 2 below its minimum 3"},
		"64-bit table limits": {module(section(4, 1, 0x70, 0x04, 1), section(5, 1, 0, 1)), "limit flags 0x04"},
	} {
		_, _, err := Rewrite(tc.wasm, Options{MaxMemoryPages: 1, MaxTableEntries: 16})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
		if over := errors.Is(err, ErrOverLimit); over != (name == "over the budget") {
			t.Errorf("%s: errors.Is(err, ErrOverLimit) = %t", name, over)
		}
	}
}

// controlModule has one function (with a memory, which the checks need)
// made of n empty structures opened with op (0x02 block, 0x03 loop).
func controlModule(op byte, n int) []byte {
	body := []byte{0}
	for range n {
		body = append(body, op, 0x40, 0x0b)
	}
	body = append(body, 0x0b)
	code := appendU32([]byte{1}, uint32(len(body)))
	return module(section(1, 1, 0x60, 0, 0), section(3, 1, 0), section(5, 1, 0, 1), section(10, append(code, body...)...))
}

// brTableModule has one function with a br_table of n labels (and its
// default), all to the same block.
func brTableModule(n int) []byte {
	body := append([]byte{0, 0x02, 0x40, 0x41, 0x00, 0x0e}, appendU32(nil, uint32(n))...)
	body = append(body, make([]byte, n+1)...)
	body = append(body, 0x0b, 0x0b)
	code := appendU32([]byte{1}, uint32(len(body)))
	return module(section(1, 1, 0x60, 0, 0), section(3, 1, 0), section(5, 1, 0, 1), section(10, append(code, body...)...))
}

// repeatModule has one function (param i32), with a memory, made of n
// copies of body.
func repeatModule(n int, body ...byte) []byte {
	fn := []byte{0}
	for range n {
		fn = append(fn, body...)
	}
	fn = append(fn, 0x0b)
	code := appendU32([]byte{1}, uint32(len(fn)))
	return module(section(1, 1, 0x60, 1, 0x7f, 0), section(3, 1, 0), section(5, 1, 0, 1), section(10, append(code, fn...)...))
}

// Bodies for repeatModule: a memory.fill of 0 bytes; a br_if to the
// function's end; and liveModule's.
var (
	fillBody = []byte{0x41, 0, 0x41, 0, 0x41, 0, 0xfc, 11, 0}
	brIfBody = []byte{0x20, 0, 0x0d, 0}
	// A block left by a br_if or at its end: paths join after it.
	joinBody = []byte{0x02, 0x40, 0x20, 0, 0x0d, 0, 0x0b}
	// An if without else: paths join at its end.
	ifBody = []byte{0x20, 0, 0x04, 0x40, 0x01, 0x0b}
)

// liveModule has one function that pushes n constants, runs m br_if in a
// block, then adds the constants up: n values live across m basic blocks.
func liveModule(n, m int) []byte {
	fn := []byte{0}
	for i := range n {
		fn = appendS32(append(fn, 0x41), int32(i))
	}
	fn = append(fn, 0x02, 0x40)
	for range m {
		fn = append(fn, brIfBody...)
	}
	fn = append(fn, 0x0b)
	for range n - 1 {
		fn = append(fn, 0x6a)
	}
	fn = append(fn, 0x1a, 0x0b)
	code := appendU32([]byte{1}, uint32(len(fn)))
	return module(section(1, 1, 0x60, 1, 0x7f, 0), section(3, 1, 0), section(5, 1, 0, 1), section(10, append(code, fn...)...))
}

// localsJoinModule has one function (param i32) with n i32 locals: m
// blocks where paths join, then a read of each local, which wazero looks
// up through every join, giving each a parameter per local.
func localsJoinModule(n, m int) []byte {
	fn := append(appendU32([]byte{1}, uint32(n)), 0x7f)
	for range m {
		fn = append(fn, joinBody...)
	}
	for i := 1; i <= n; i++ {
		fn = append(appendU32(append(fn, 0x20), uint32(i)), 0x1a)
	}
	fn = append(fn, 0x0b)
	code := appendU32([]byte{1}, uint32(len(fn)))
	return module(section(1, 1, 0x60, 1, 0x7f, 0), section(3, 1, 0), section(5, 1, 0, 1), section(10, append(code, fn...)...))
}

// nestedLoopsModule has one function (param i32) with n i32 locals:
// loops nested d deep, each branching back to its header, around a read
// of each local: every header takes a parameter per local, chained from
// level to level.
func nestedLoopsModule(d, n int) []byte {
	fn := append(appendU32([]byte{1}, uint32(n)), 0x7f)
	for range d {
		fn = append(fn, 0x03, 0x40)
	}
	for i := 1; i <= n; i++ {
		fn = append(appendU32(append(fn, 0x20), uint32(i)), 0x1a)
	}
	for range d {
		fn = append(fn, 0x20, 0, 0x0d, 0, 0x0b)
	}
	fn = append(fn, 0x0b)
	code := appendU32([]byte{1}, uint32(len(fn)))
	return module(section(1, 1, 0x60, 1, 0x7f, 0), section(3, 1, 0), section(5, 1, 0, 1), section(10, append(code, fn...)...))
}

// callsModule has one function () -> () that, in a block, calls itself n
// times and then leaves the block by m br_if; its module also has an
// unused type of nine parameters (as WASI's path_open).
func callsModule(n, m int) []byte {
	fn := []byte{0, 0x02, 0x40}
	for range n {
		fn = append(fn, 0x10, 0)
	}
	for range m {
		fn = append(fn, 0x41, 0, 0x0d, 0)
	}
	fn = append(fn, 0x0b, 0x0b)
	types := []byte{2, 0x60, 0, 0, 0x60, 9, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0}
	code := appendU32([]byte{1}, uint32(len(fn)))
	return module(section(1, types...), section(3, 1, 0), section(5, 1, 0, 1), section(10, append(code, fn...)...))
}

// carryModule has one function (param i32) with a block of n i32 results
// left by a br_table of m targets, all to it, each carrying the n values.
func carryModule(n, m int) []byte {
	fn := []byte{0, 0x02, 1}
	for range n {
		fn = append(fn, 0x41, 0)
	}
	fn = appendU32(append(fn, 0x20, 0, 0x0e), uint32(m))
	fn = append(fn, make([]byte, m+1)...)
	fn = append(fn, 0x0b)
	for range n {
		fn = append(fn, 0x1a)
	}
	fn = append(fn, 0x0b)
	results := append(appendU32([]byte{0x60, 0}, uint32(n)), bytes.Repeat([]byte{0x7f}, n)...)
	types := append([]byte{2, 0x60, 1, 0x7f, 0}, results...)
	code := appendU32([]byte{1}, uint32(len(fn)))
	return module(section(1, types...), section(3, 1, 0), section(5, 1, 0, 1), section(10, append(code, fn...)...))
}

// wazero's compiler slows down faster than linearly with the loops and
// basic blocks of one function, and with the code after them, and cannot
// be stopped inside one: both rewrites refuse functions past the limits.
func TestControlLimits(t *testing.T) {
	for _, opts := range []Options{{Interrupt: true}, {MaxMemoryPages: 1}} {
		for name, tc := range map[string]struct {
			wasm []byte
			want string // "" when accepted
		}{
			"loops at the limit": {controlModule(0x03, MaxFunctionLoops), ""},
			"too many loops":     {controlModule(0x03, MaxFunctionLoops+1), "function 0: more than 1000 loops (memory.fill and table.fill included) in one function"},
			// 6 blocks for the entry check, 1 for the block, n+1 for the targets.
			"br_table at the limit": {brTableModule(MaxFunctionBasicBlocks - 8), ""},
			"br_table over":         {brTableModule(MaxFunctionBasicBlocks - 7), "function 0: more than 25000 basic blocks in one function: 24994 br_table targets, 1 blocks so far, with the interruption checks"},
			// Blocks one after the other: a chain of single-predecessor
			// blocks, one longer at each end.
			"blocks within the limits": {controlModule(0x02, 11000), ""},
			"too many blocks":          {controlModule(0x02, 12000), "function 0: more than 134217728 units of compile work in one function"},
			// Blocks where paths join end the chains: only their number counts.
			"joined blocks at the limit": {repeatModule((MaxFunctionBasicBlocks-6)/2, joinBody...), ""},
			"joined blocks over":         {repeatModule((MaxFunctionBasicBlocks-6)/2+1, joinBody...), "function 0: more than 25000 basic blocks in one function: 12497 br_if, 12498 blocks so far"},
			"ifs at the limit":           {repeatModule((MaxFunctionBasicBlocks-6)/3, ifBody...), ""},
			// Each memory.fill is a loop of its own in the compiled code.
			"memory.fill at the limit": {repeatModule(MaxFunctionLoops, fillBody...), ""},
			"memory.fill over":         {repeatModule(MaxFunctionLoops+1, fillBody...), "function 0: more than 1000 loops (memory.fill and table.fill included) in one function"},
			"auditor's memory.fill":    {repeatModule(20000, fillBody...), "more than 1000 loops"},
			"br_if within the limits":  {repeatModule(9000, brIfBody...), ""},
			"br_if over":               {repeatModule(12000, brIfBody...), "function 0: more than 134217728 units of compile work in one function"},
			"auditor's br_if":          {repeatModule(20000, brIfBody...), "units of compile work"},
			"live values within":       {liveModule(10000, 6000), ""},
			"live values over":         {liveModule(20000, 6000), "units of compile work"},
			// Joins take a parameter per local read after them, and one per
			// value a branch to them carries (an adversarial review: 1 000
			// locals through 12 000 joins took 22 s; a br_table carrying
			// 1 000 values to 24 000 targets, 49 s).
			"locals through joins within": {localsJoinModule(100, 6000), ""},
			"locals through joins over":   {localsJoinModule(1000, 12000), "units of compile work"},
			"many locals, few joins":      {localsJoinModule(49999, 10), "units of compile work"},
			"carried values within":       {carryModule(100, 10000), ""},
			// wazero's pass over join parameters repeats once per level of
			// nested loops (a review: 1 000 levels around 100 locals, 22.5 s).
			"nested loops within": {nestedLoopsModule(100, 75), ""},
			// A call puts its results on the stack, not the parameters of
			// the widest type (a review: an unused 9-parameter type made
			// 3 000 calls count as 27 000 values live across each block).
			"calls, a wide type":  {callsModule(3000, 5000), ""},
			"local beyond any":    {repeatModule(1, 0x20, 0xe0, 0xd4, 0x03, 0x1a), "local.get 60000, past the 51000 locals and parameters a function can have"},
			"nested loops over":   {nestedLoopsModule(1000, 100), "units of compile work"},
			"carried values over": {carryModule(1000, 24000), "units of compile work"},
		} {
			_, _, err := Rewrite(tc.wasm, opts)
			if tc.want == "" && err != nil || tc.want != "" && (!errors.Is(err, ErrOverLimit) && !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("%s, interrupt %t: %v, want %q", name, opts.Interrupt, err, tc.want)
			}
		}
	}
}

// storeBody stores a constant at a constant address: three instructions
// that no limit but MaxFunctionCode counts, and the slowest per
// instruction measured for wazero's compiler.
var storeBody = []byte{0x41, 0, 0x41, 0, 0x36, 2, 0}

// One straight-line function of 1 000 000 stores (no block, no branch)
// took 59 s and 5.3 GB of heap to compile, within every other limit:
// both rewrites refuse a function of more than MaxFunctionCode
// instructions, naming it and its size.
func TestStraightLineFunctionRefused(t *testing.T) {
	atLimit := (MaxFunctionCode - 1) / 3 // each store 3 instructions, and the end
	for _, opts := range []Options{{Interrupt: true}, {MaxMemoryPages: 1}} {
		for _, tc := range []struct {
			name string
			wasm []byte
			want string // "" when accepted
		}{
			{"the audit's", repeatModule(1000000, storeBody...), "code section, function 0: 3000001 instructions in one function (a body of 7000002 bytes), more than 262144"},
			{"at the limit", repeatModule(atLimit, storeBody...), ""},
			{"one over", repeatModule(1, append(bytes.Repeat(storeBody, atLimit), 0x01)...), "function 0: 262145 instructions"},
		} {
			_, _, err := Rewrite(tc.wasm, opts)
			if tc.want == "" && err != nil || tc.want != "" && (!errors.Is(err, ErrOverLimit) || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("%s, interrupt %t: %v, want %q", tc.name, opts.Interrupt, err, tc.want)
			}
		}
	}
}

// The slowest functions within the limits compile in a few seconds (about
// 2 s each on two cores; 20 000 memory.fill took minutes, 20 000 br_if
// 17.6 s before the limits counted them).
func TestControlLimitsCompileQuickly(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles for several seconds")
	}
	ctx := context.Background()
	for name, wasm := range map[string][]byte{
		"memory.fill":          repeatModule(MaxFunctionLoops, fillBody...),
		"loops":                controlModule(0x03, MaxFunctionLoops),
		"br_if":                repeatModule(9400, brIfBody...),
		"sequential blocks":    controlModule(0x02, 11500),
		"live values":          liveModule(10000, 6000),
		"joined blocks":        repeatModule((MaxFunctionBasicBlocks-6)/2, joinBody...),
		"ifs":                  repeatModule((MaxFunctionBasicBlocks-6)/3, ifBody...),
		"br_table":             brTableModule(MaxFunctionBasicBlocks - 8),
		"locals through joins": localsJoinModule(100, 6000),
		"carried values":       carryModule(100, 10000),
		"nested loops":         nestedLoopsModule(100, 75),
		"straight-line stores": repeatModule((MaxFunctionCode-1)/3, storeBody...),
	} {
		out, _, err := Interruptible(wasm)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
		start := time.Now()
		_, err = r.CompileModule(ctx, out)
		took := time.Since(start)
		r.Close(ctx)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %d bytes compiled in %v", name, len(out), took)
		if took > 60*time.Second { // about 2 s here: a bound, not a benchmark
			t.Errorf("%s took %v to compile, want a few seconds", name, took)
		}
	}
}

// Every function of the example Go plugins, the benchmarks' and the
// tests' Go guests is well within the limits, so that a larger Go function
// still loads.
func TestGoGuestsWithinControlLimits(t *testing.T) {
	for _, dir := range []string{"plugins/hello", "plugins/todo", "plugins/docs", "bench/plugins/logline", "bench/plugins/readurl", "runtime/plugin/testdata/guests/hostile",
		"runtime/server/testdata/guests/args", "runtime/server/testdata/guests/logsplit", "runtime/server/testdata/guests/ver1", "runtime/server/testdata/guests/ver2"} {
		b := guesttest.Read(t, dir)
		if _, _, err := Interruptible(b); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		var most controlCount
		mostCode := 0
		results, arity := 0, 0
		r := &reader{b: b, off: 8}
		for r.off < len(r.b) {
			id := r.byte()
			body := r.bytes(int(r.u32()))
			if id == secType {
				results, arity = maxResults(body)
			}
			if id != secCode {
				continue
			}
			cr := &reader{b: body}
			for range cr.u32() {
				fn := &reader{b: cr.bytes(int(cr.u32()))}
				for range fn.u32() {
					fn.u32()
					fn.valtype()
				}
				c := newControlCount(true, results, arity)
				code := 0
				for fn.off < len(fn.b) {
					start := fn.off
					op := fn.byte()
					if err := fn.skipImmediates(op); err != nil {
						t.Fatal(err)
					}
					if err := c.add(op, fn.b[start+1:fn.off]); err != nil {
						t.Fatal(err)
					}
					code++
				}
				mostCode = max(mostCode, code)
				most.loops, most.basic, most.work = max(most.loops, c.loops), max(most.basic, c.basic), max(most.work, c.total())
			}
			if cr.err != nil {
				t.Fatal(cr.err)
			}
		}
		t.Logf("%s: at most %d instructions, %d loops, %d basic blocks, %d work in one function", dir, mostCode, most.loops, most.basic, most.work)
		// Half the limits: a Go function a little larger than these
		// must still load. Go's largest (20 599 instructions, in its
		// runtime) is under a twelfth of MaxFunctionCode.
		if mostCode > MaxFunctionCode/8 || most.loops > MaxFunctionLoops/2 || most.basic > MaxFunctionBasicBlocks/2 || most.work > MaxFunctionBlockWork/2 {
			t.Errorf("%s: a function within a factor of two of the limits (an eighth of MaxFunctionCode)", dir)
		}
	}
}

// A module the rewriter cannot instrument (an instruction it does not
// know) falls back to wazero's interruption, and the rewrite for that
// (MaxMemoryPages only) still accepts it: wazero says whether it is valid.
func TestUnknownInstructionLeftToWazero(t *testing.T) {
	body := []byte{0, 0x27, 0x0b} // 0x27: no instruction
	code := appendU32([]byte{1}, uint32(len(body)))
	wasm := module(section(1, 1, 0x60, 0, 0), section(3, 1, 0), section(5, 1, 0, 1), section(10, append(code, body...)...))
	if _, _, err := Interruptible(wasm); err == nil || !strings.Contains(err.Error(), "0x27") {
		t.Fatalf("instrumenting: %v, want a refusal naming the opcode", err)
	}
	if _, _, err := Rewrite(wasm, Options{MaxMemoryPages: 1}); err != nil {
		t.Fatalf("rewrite without the checks: %v", err)
	}
}

// The rewriter walks SIMD code as wazero runs it: wazero reads the opcode
// after 0xfd as one byte. A padded encoding on which LEB128 and wazero part
// (0xfd 0x8c 0x00: v128.const and 16 bytes of immediate to one,
// i16x8.shr_s, unreachable and then code to the other) hid a loop from the
// rewriter, which was then never interrupted: refused as malformed. The
// canonical encoding (0xfd 0x8c 0x01) is rewritten, its loop checked.
func TestSIMDOpcodesAsWazeroReadsThem(t *testing.T) {
	// greenroom_handle: (block (br 0) 0xfd 0x8c 0x00 [end (loop (br 0)) end nop×10]) (i32.const 0)
	hidden, _ := hex.DecodeString("0061736d0100000001090260000060017f017f03030200010503010001073003066d656d6f7279020010677265656e726f6f6d5f6162695f7631000010677265656e726f6f6d5f68616e646c6500010a200202000b1b0002400c00fd8c000b03400c000b0101010101010101010141000b")
	if _, _, err := Interruptible(hidden); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "SIMD opcode 0xfd 0x8c 0x00 is not encoded canonically") {
		t.Errorf("Rewrite of a padded SIMD opcode = %v, want refused as malformed", err)
	}
	// greenroom_handle: (loop v128.const 0, i32.const 1, i16x8.shr_s (0xfd 0x8c 0x01), drop, (br_if 0 (i32.const 0))) (i32.const 7)
	canonical, _ := hex.DecodeString("0061736d0100000001090260000060017f017f03030200010503010001073003066d656d6f7279020010677265656e726f6f6d5f6162695f7631000010677265656e726f6f6d5f68616e646c6500010a280202000b23000340fd0c000000000000000000000000000000004101fd8c011a41000d000b41070b")
	out, st, err := Interruptible(canonical)
	if err != nil || st.Loops != 1 {
		t.Fatalf("Rewrite = %+v, %v; want its one loop checked", st, err)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer r.Close(ctx)
	m, err := r.Instantiate(ctx, out)
	if err != nil {
		t.Fatalf("the rewritten module: %v", err)
	}
	if res, err := m.ExportedFunction("greenroom_handle").Call(ctx, 0); err != nil || res[0] != 7 {
		t.Errorf("greenroom_handle = %v, %v; want 7", res, err)
	}
}

// A check takes fuel by the work it covers, not one unit per loop
// iteration: a loop that fills 64 KiB each time round spends 257 units on
// the fill alone (1 + 65536/256), so the guest exits to Go (and sees the
// flag) after a bounded amount of work, not after 65 536 iterations of any
// cost (an audit's loop copying 32 MiB a time held two cores, the server's
// timers and SIGTERM for six minutes).
func TestFuelByWork(t *testing.T) {
	types := section(1, 1, 0x60, 1, 0x7f, 1, 0x7f)
	funcs := section(3, 1, 0)
	memory := section(5, 1, 0, 2)
	exports := section(7, 1, 4, 'f', 'i', 'l', 'l', 0, 0)
	// (loop (memory.fill (i32.const 0) (i32.const 0) (i32.const 65536))
	//       (br_if 0 (local.tee 0 (i32.sub (local.get 0) (i32.const 1))))) (i32.const 7)
	body := []byte{0,
		0x03, 0x40,
		0x41, 0, 0x41, 0, 0x41, 0x80, 0x80, 0x04, 0xfc, 0x0b, 0x00,
		0x20, 0, 0x41, 1, 0x6b, 0x22, 0, 0x0d, 0,
		0x0b,
		0x41, 7, 0x0b}
	code := appendU32([]byte{1}, uint32(len(body)))
	out, st, err := Interruptible(module(types, funcs, memory, exports, section(10, append(code, body...)...)))
	if err != nil || st.Loops != 1 {
		t.Fatalf("Rewrite: %+v, %v", st, err)
	}
	m := instantiate(t, out)
	fuel, flag := globals(t, m)
	before := int32(fuel.Get())
	if res, err := m.ExportedFunction("fill").Call(context.Background(), 10); err != nil || res[0] != 7 {
		t.Fatalf("fill(10) = %v, %v", res, err)
	}
	if spent := before - int32(fuel.Get()); spent < 10*257 {
		t.Errorf("ten fills of 64 KiB took %d units of fuel, want at least %d", spent, 10*257)
	}
	// With the flag set and no fuel written, the guest stops within
	// Refill/257 iterations: fill(1000) cannot finish.
	flag.Set(1)
	if _, err := m.ExportedFunction("fill").Call(context.Background(), 1000); err == nil {
		t.Error("fill(1000) finished with the flag set")
	}
}
