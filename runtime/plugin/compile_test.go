package plugin

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime/plugin/instrument"
)

// slowModule has n functions of instrument.MaxFunctionLoops empty loops
// each: within every limit, and about 0.2 s each for wazero to compile
// once instrumented.
func slowModule(n int) []byte {
	uleb := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	section := func(id byte, body []byte) []byte { return append(uleb([]byte{id}, len(body)), body...) }
	body := []byte{0}
	for range instrument.MaxFunctionLoops {
		body = append(body, 0x03, 0x40, 0x0b)
	}
	body = append(body, 0x0b)
	funcs, code := uleb(nil, n), uleb(nil, n)
	for range n {
		funcs = append(funcs, 0)
		code = append(uleb(code, len(body)), body...)
	}
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	wasm = append(wasm, section(1, []byte{1, 0x60, 0, 0})...)
	wasm = append(wasm, section(3, funcs)...)
	wasm = append(wasm, section(5, []byte{1, 0, 1})...)
	return append(wasm, section(10, code)...)
}

// A module made to be slow to compile fails at the compilation deadline
// instead of holding its load (and the fresh compilations queued behind
// it) for as long as wazero needs.
func TestCompileDeadline(t *testing.T) {
	defer func(d time.Duration) { compileTimeout = d }(compileTimeout)
	compileTimeout = 300 * time.Millisecond
	ctx := context.Background()
	eng := NewEngine(nil, "")
	defer eng.Close(ctx)
	wasm := slowModule(40)
	spec := Spec{ID: "slow", Wasm: wasm, Sum: SHA256(wasm), Size: len(wasm), Limits: testLimits(), Host: testHost{log: logrus.NewEntry(logrus.New())}, Engine: eng}
	start := time.Now()
	_, err := Load(ctx, spec)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "compilation did not finish within 300ms") {
		t.Fatalf("Load = %v, want the compilation deadline", err)
	}
	t.Logf("refused after %v: %v", time.Since(start), err)
}

// globalsModule is a loadable module (memory, ABI version, a handler that
// returns 0) defining n globals.
func globalsModule(n int) []byte {
	uleb := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	section := func(id byte, body []byte) []byte { return append(uleb([]byte{id}, len(body)), body...) }
	name := func(b []byte, s string) []byte { return append(uleb(b, len(s)), s...) }
	globals := uleb(nil, n)
	for range n {
		globals = append(globals, 0x7f, 0x00, 0x41, 0x00, 0x0b) // (global i32 (i32.const 0))
	}
	exports := []byte{3}
	exports = append(name(exports, "memory"), 0x02, 0)
	exports = append(name(exports, "greenroom_abi_v1"), 0x00, 0)
	exports = append(name(exports, "greenroom_handle"), 0x00, 1)
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	wasm = append(wasm, section(1, []byte{2, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7f})...)
	wasm = append(wasm, section(3, []byte{2, 0, 1})...)
	wasm = append(wasm, section(5, []byte{1, 0, 1})...)
	wasm = append(wasm, section(6, globals)...)
	wasm = append(wasm, section(7, exports)...)
	return append(wasm, section(10, []byte{2, 2, 0, 0x0b, 4, 0, 0x41, 0, 0x0b})...)
}

// A module may define instrument.MaxGlobals globals, as documented: the
// rewrite's own three are not counted against it (the compilation checked
// the rewritten module's sizes again, and refused 65 534 globals as
// "65537 globals, more than 65536").
func TestGlobalsLimitIsTheModules(t *testing.T) {
	ctx := context.Background()
	for _, noInterrupt := range []bool{false, true} {
		eng := NewEngine(nil, "")
		for _, tc := range []struct {
			n    int
			want string // "" when loaded
		}{
			{instrument.MaxGlobals, ""},
			{instrument.MaxGlobals + 1, "65537 globals, more than 65536"},
		} {
			wasm := globalsModule(tc.n)
			lim := testLimits()
			lim.NoInterrupt = noInterrupt
			spec := Spec{ID: "globals", Wasm: wasm, Sum: SHA256(wasm), Size: len(wasm), Limits: lim, Host: testHost{log: logrus.NewEntry(logrus.New())}, Engine: eng}
			p, err := Load(ctx, spec)
			if err == nil {
				p.Close(ctx)
			}
			if tc.want == "" && err != nil || tc.want != "" && (!errors.Is(err, instrument.ErrMalformed) || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("%d globals, interruptible %t: Load = %v, want %q", tc.n, !noInterrupt, err, tc.want)
			}
		}
		eng.Close(ctx)
	}
}
