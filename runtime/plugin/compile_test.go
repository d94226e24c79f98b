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
