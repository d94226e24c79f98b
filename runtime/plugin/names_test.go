package plugin

import (
	"encoding/binary"
	"runtime"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/plugin/instrument"
)

// longNameModule is a loadable module whose greenroom_handle calls
// function 2 with 40, which calls itself with one less down to 0 and
// then traps (unreachable); its name section names the module modName
// and function 2 fnName. It has filler more functions that do nothing.
func longNameModule(modName, fnName string, filler int) []byte {
	uleb := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	section := func(id byte, body []byte) []byte { return append(uleb([]byte{id}, len(body)), body...) }
	name := func(b []byte, s string) []byte { return append(uleb(b, len(s)), s...) }
	// (func (param i32) (if (local.get 0) (then (call 2 (i32.sub (local.get 0) (i32.const 1)))) (else unreachable)))
	f := []byte{0, 0x20, 0, 0x04, 0x40, 0x20, 0, 0x41, 1, 0x6b, 0x10, 2, 0x05, 0x00, 0x0b, 0x0b}
	handle := []byte{0, 0x41, 40, 0x10, 2, 0x41, 0, 0x0b}
	bodies := [][]byte{{0, 0x0b}, handle, f}
	funcs := uleb(nil, 3+filler)
	funcs = append(funcs, 0, 1, 2)
	for range filler {
		bodies = append(bodies, []byte{0, 0x0b})
		funcs = append(funcs, 0)
	}
	exports := name(uleb(nil, 3), "memory")
	exports = append(exports, 0x02, 0)
	exports = append(name(exports, "greenroom_abi_v1"), 0x00, 0)
	exports = append(name(exports, "greenroom_handle"), 0x00, 1)
	code := uleb(nil, len(bodies))
	for _, b := range bodies {
		code = append(uleb(code, len(b)), b...)
	}
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	wasm = append(wasm, section(1, []byte{3, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7f, 0x60, 1, 0x7f, 0})...)
	wasm = append(wasm, section(3, funcs)...)
	wasm = append(wasm, section(5, []byte{1, 0, 1})...)
	wasm = append(wasm, section(7, exports)...)
	wasm = append(wasm, section(10, code)...)
	subsection := func(b []byte, id byte, body []byte) []byte { return append(uleb(append(b, id), len(body)), body...) }
	names := name(nil, "name")
	names = subsection(names, 0, name(nil, modName))
	names = subsection(names, 1, name(uleb(uleb(nil, 1), 2), fnName))
	return append(wasm, section(0, names)...)
}

// A trap's error does not grow with the names a module gives itself:
// wazero writes the module's name and each frame's function name into
// the wasm stack trace of every trap (30 frames), and an audit's module
// naming itself and a recursing function with 1 MiB each made every
// trap a 63 MB error, some 250 MB of the host's heap, logged whole at
// each request. And at a module's first trap wazero gives each of its
// functions a name that begins with the module's: 1 MiB for each of
// 262 144 functions would be 256 GiB. The rewrite cuts function names to
// instrument.MaxName bytes, the module's to instrument.MaxModuleName;
// shorter ones (Go's) stay whole.
func TestLongNamesCutInTraps(t *testing.T) {
	p := load(t, longNameModule(strings.Repeat("m", 1<<20), strings.Repeat("é", 1<<19), 20000), testLimits())
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := get(p, "/")
	runtime.ReadMemStats(&after)
	if KindOf(err) != FailTrap {
		t.Fatalf("call: %v, want a trap", err)
	}
	msg := err.Error()
	if len(msg) > 100<<10 {
		t.Errorf("the trap's error is %d bytes", len(msg))
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20 {
		t.Errorf("the trap took %d bytes of the host's heap", n)
	}
	cut := strings.Repeat("m", instrument.MaxModuleName) + "." + strings.Repeat("é", instrument.MaxName/2) + "("
	if !strings.Contains(msg, cut) {
		t.Errorf("the trace does not name the function by its first %d bytes: %.300q", instrument.MaxName, msg)
	}

	p = load(t, longNameModule("short", "f", 0), testLimits())
	if _, _, err := get(p, "/"); !strings.Contains(err.Error(), "short.f(i32)") {
		t.Errorf("short names: %.300q, want them whole", err)
	}
}
