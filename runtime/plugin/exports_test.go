package plugin

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"
)

// manyExportsModule is a loadable module of nfuncs+2 functions and
// nexports+3 exports (the extra ones all of function 0) whose
// greenroom_handle traps at once.
func manyExportsModule(nfuncs, nexports int) []byte {
	uleb := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	section := func(id byte, body []byte) []byte { return append(uleb([]byte{id}, len(body)), body...) }
	name := func(b []byte, s string) []byte { return append(uleb(b, len(s)), s...) }
	exports := name(uleb(nil, 3+nexports), "memory")
	exports = append(exports, 0x02, 0)
	exports = append(name(exports, "greenroom_abi_v1"), 0x00, 0)
	exports = append(name(exports, "greenroom_handle"), 0x00, 1)
	for i := 0; i < nexports; i++ {
		exports = append(name(exports, fmt.Sprintf("e%d", i)), 0x00, 0)
	}
	funcs := uleb(nil, nfuncs+2)
	funcs = append(funcs, 0, 1)
	code := uleb(nil, nfuncs+2)
	code = append(code, 2, 0, 0x0b)
	code = append(code, 3, 0, 0x00, 0x0b) // unreachable
	for i := 0; i < nfuncs; i++ {
		funcs = append(funcs, 0)
		code = append(code, 2, 0, 0x0b)
	}
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	wasm = append(wasm, section(1, []byte{2, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7f})...)
	wasm = append(wasm, section(3, funcs)...)
	wasm = append(wasm, section(5, []byte{1, 0, 1})...)
	wasm = append(wasm, section(7, exports)...)
	return append(wasm, section(10, code)...)
}

// A module whose functions times its exports pass
// instrument.MaxFunctionExportPairs is refused at load: once it runs,
// wazero names its functions (for a trap's stack trace) by pairing every
// function with every export, and an audit's 1.3 MB module of 100 000
// functions and 60 000 exports made its first trap take 5.2 s, answered
// as a timeout of 200 ms. At the bound the first trap is quick.
func TestFunctionsTimesExportsBounded(t *testing.T) {
	err := loadErr(t, manyExportsModule(100000, 60000))
	if err == nil || !strings.Contains(err.Error(), "60003 exports in a module of 100002 functions: more than 268435456 pairs") {
		t.Fatalf("load: %v, want refused naming the exports and the functions", err)
	}
	lim := testLimits()
	lim.Timeout = 5 * time.Second
	p := load(t, manyExportsModule(16384-2, 16384-3), lim)
	start := time.Now()
	_, _, err = get(p, "/")
	if took := time.Since(start); KindOf(err) != FailTrap || took > 2*time.Second {
		t.Errorf("first trap: %v after %v, want a trap at once", err, took)
	}
}

// The local names of a module's name section are not kept: at the first
// trap wazero looks up each function's in the whole list of them, and an
// audit's module of 100 000 functions, each given an empty map of local
// names (2 bytes), made that trap take seconds past its timeout.
func TestLocalNamesDropped(t *testing.T) {
	const n = 100000
	uleb := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	locals := uleb(nil, n)
	for i := range n {
		locals = append(uleb(locals, i), 0)
	}
	names := append(uleb(nil, len("name")), "name"...)
	names = append(uleb(append(names, 2), len(locals)), locals...)
	wasm := append(manyExportsModule(n, 0), 0)
	wasm = append(uleb(wasm, len(names)), names...)
	lim := testLimits()
	lim.Timeout = 5 * time.Second
	p := load(t, wasm, lim)
	start := time.Now()
	_, _, err := get(p, "/")
	if took := time.Since(start); KindOf(err) != FailTrap || took > time.Second {
		t.Errorf("first trap: %v after %v, want a trap at once", err, took)
	}
}
