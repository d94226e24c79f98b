package plugin

import (
	"context"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
)

// refusedModule assembles an ABI v1 reactor importing WASI proc_exit,
// with the given memory section and greenroom_abi_v1 body (locals and
// code, without the size).
func refusedModule(memories, abiBody []byte) []byte {
	return refusedModuleWith(nil, nil, memories, abiBody)
}

// refusedModuleWith is refusedModule with more imports (after proc_exit;
// no function) and a table section (none when nil).
func refusedModuleWith(imports, tables, memories, abiBody []byte) []byte {
	uleb := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	section := func(id byte, body []byte) []byte { return append(uleb([]byte{id}, len(body)), body...) }
	str := func(b []byte, s string) []byte { return append(uleb(b, len(s)), s...) }
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	wasm = append(wasm, section(1, []byte{3, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7f, 0x60, 1, 0x7f, 0})...)
	imps := append(str(str([]byte{1}, "wasi_snapshot_preview1"), "proc_exit"), 0x00, 2)
	if imports != nil {
		imps[0]++
		imps = append(imps, imports...)
	}
	wasm = append(wasm, section(2, imps)...)
	wasm = append(wasm, section(3, []byte{2, 0, 1})...)
	if tables != nil {
		wasm = append(wasm, section(4, tables)...)
	}
	wasm = append(wasm, section(5, memories)...)
	exports := str([]byte{3}, "memory")
	exports = append(exports, 0x02, 0)
	exports = append(str(exports, "greenroom_abi_v1"), 0x00, 1)
	exports = append(str(exports, "greenroom_handle"), 0x00, 2)
	wasm = append(wasm, section(7, exports)...)
	code := uleb([]byte{2}, len(abiBody))
	code = append(code, abiBody...)
	code = append(code, 4, 0, 0x41, 0, 0x0b) // i32.const 0
	return append(wasm, section(10, code)...)
}

// A module that fails to compile is described from its sections, with the
// reason it is refused: inspect printed "abi version: none declared",
// "exports: none" and no imports for each of these.
func TestInspectDescribesModulesThatDoNotCompile(t *testing.T) {
	oneMemory := []byte{1, 0x00, 2}
	nop := []byte{0, 0x0b}
	for _, tc := range []struct {
		name          string
		memories, abi []byte
	}{
		{"return_call", oneMemory, []byte{0, 0x12, 1, 0x0b}},
		{"exceptions (try)", oneMemory, []byte{0, 0x06, 0x40, 0x0b, 0x0b}},
		{"memory64", []byte{1, 0x04, 2}, nop},
		{"shared memory", []byte{1, 0x03, 2, 4}, nop},
		{"multi-memory", []byte{2, 0x00, 2, 0x00, 1}, nop},
		{"50 001 locals", oneMemory, append(binary.AppendUvarint([]byte{1}, 50_001), 0x7e, 0x0b)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := Inspect(context.Background(), refusedModule(tc.memories, tc.abi), nil)
			if err == nil {
				t.Fatal("Inspect accepted the module")
			}
			t.Logf("refused: %v", err)
			if info.ABIVersion != 1 || !slices.Equal(info.Exports, []string{"greenroom_abi_v1", "greenroom_handle", "memory"}) ||
				!slices.Equal(info.Imports, []Import{{Module: "wasi_snapshot_preview1", Name: "proc_exit"}}) || info.MemoryMinPages != 2 {
				t.Errorf("info: abi %d, exports %q, imports %+v, memory %d pages", info.ABIVersion, info.Exports, info.Imports, info.MemoryMinPages)
			}
		})
	}
}

// A shared or 64-bit memory is refused whether or not the module is
// instrumented, and the refusal does not suggest limits.interruptible =
// false, which would not run it either (an audit followed the hint).
func TestUnsupportedMemoryRefusalGivesNoInterruptibleHint(t *testing.T) {
	for name, memories := range map[string][]byte{"memory64": {1, 0x04, 2}, "shared memory": {1, 0x03, 2, 4}} {
		err := loadErrWith(t, refusedModule(memories, []byte{0, 0x0b}), testLimits())
		if err == nil || strings.Contains(err.Error(), "interruptible") {
			t.Errorf("%s: Load = %v, want a refusal without the interruptible hint", name, err)
		}
	}
}

// Tables this runtime does not run, and a module without a memory of its
// own, are refused whether or not the module is instrumented, and the
// refusal does not suggest limits.interruptible = false, which would not
// run them either.
func TestTableAndMissingMemoryRefusalsGiveNoInterruptibleHint(t *testing.T) {
	oneMemory := []byte{1, 0x00, 2}
	// (import "env" "memory" (memory 2))
	importedMemory := append(append([]byte{3}, "env"...), 6, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00, 2)
	for _, tc := range []struct {
		name                      string
		imports, tables, memories []byte
		want                      string
	}{
		{"table initializer", nil, []byte{1, 0x40, 0x00, 0x70, 0x00, 1, 0xd0, 0x70, 0x0b}, oneMemory, "table 0 has an initializer expression"},
		{"64-bit table", nil, []byte{1, 0x70, 0x04, 1}, oneMemory, "table 0 has limit flags 0x04"},
		{"shared table", nil, []byte{1, 0x70, 0x03, 1, 2}, oneMemory, "table 0 has limit flags 0x03"},
		{"no memory", nil, nil, []byte{0}, "module has no memory of its own"},
		{"imported memory", importedMemory, nil, []byte{0}, "no memory of its own to cap"},
	} {
		wasm := refusedModuleWith(tc.imports, tc.tables, tc.memories, []byte{0, 0x0b})
		for _, off := range []bool{false, true} {
			lim := testLimits()
			lim.NoInterrupt = off
			err := loadErrWith(t, wasm, lim)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "interruptible") {
				t.Errorf("%s, interruptible %t: Load = %v, want %q without the interruptible hint", tc.name, !off, err, tc.want)
			}
		}
	}
}
