package plugin

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
)

// A refused module's reason lists its first problems, not all of them: a
// module with 100 000 unknown imports made a 9 MB reason, repeated in
// every 503 and log line.
func TestModuleErrorsBounded(t *testing.T) {
	const imports = 40
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0, 1, 4, 1, 0x60, 0, 0} // type 0: func () -> ()
	var sec []byte
	sec = append(sec, imports)
	for i := range imports {
		name := fmt.Sprintf("f%02d", i)
		sec = append(sec, 3, 'e', 'n', 'v', byte(len(name)))
		sec = append(sec, name...)
		sec = append(sec, 0, 0) // a function of type 0
	}
	wasm = append(wasm, 2)
	for n := len(sec); ; n >>= 7 { // the section's size, LEB128
		if n < 0x80 {
			wasm = append(wasm, byte(n))
			break
		}
		wasm = append(wasm, byte(n&0x7f|0x80))
	}
	wasm = append(wasm, sec...)
	_, err := Inspect(context.Background(), wasm, nil)
	if err == nil {
		t.Fatal("a module importing env.* was accepted")
	}
	msg := err.Error()
	if n := strings.Count(msg, "module imports env."); n != maxModuleErrors-3 || !strings.Contains(msg, fmt.Sprintf("and %d more", imports+3-maxModuleErrors)) {
		t.Errorf("%d import errors listed, want the first %d and a count of the rest:\n%s", n, maxModuleErrors-3, msg)
	}
}

// A WASI command (a Go plugin built without -buildmode=c-shared) exports
// _start; its other exports fail when called before it ran, so it is
// refused at load with how to build it, not served with every call a 500.
func TestCommandModuleRefused(t *testing.T) {
	uleb := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	section := func(id byte, body []byte) []byte { return append(uleb([]byte{id}, len(body)), body...) }
	export := func(b []byte, name string, kind, idx byte) []byte {
		return append(append(uleb(b, len(name)), name...), kind, idx)
	}
	build := func(withStart bool) []byte {
		wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
		// types: 0 () -> (), 1 (i32) -> i32
		wasm = append(wasm, section(1, []byte{2, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7f})...)
		wasm = append(wasm, section(3, []byte{2, 0, 1})...)
		wasm = append(wasm, section(5, []byte{1, 0, 1})...)
		exports := []byte{4}
		if !withStart {
			exports[0] = 3
		}
		exports = export(exports, "memory", 2, 0)
		exports = export(exports, "greenroom_abi_v1", 0, 0)
		exports = export(exports, "greenroom_handle", 0, 1)
		if withStart {
			exports = export(exports, "_start", 0, 0)
		}
		wasm = append(wasm, section(7, exports)...)
		// bodies: nop; i32.const 0
		return append(wasm, section(10, []byte{2, 2, 0, 0x0b, 4, 0, 0x41, 0, 0x0b})...)
	}
	if _, err := Inspect(context.Background(), build(false), nil); err != nil {
		t.Fatalf("the reactor was refused: %v", err)
	}
	_, err := Inspect(context.Background(), build(true), nil)
	if err == nil || !strings.Contains(err.Error(), "module is a WASI command (it exports _start)") || !strings.Contains(err.Error(), "-buildmode=c-shared") {
		t.Errorf("command module: %v, want a refusal saying to build with -buildmode=c-shared", err)
	}
}
