package instrument

import (
	"reflect"
	"strings"
	"testing"
)

// ReadOutline reads imported functions with their types, exported
// functions and memories from the sections, and names what it cannot.
func TestReadOutline(t *testing.T) {
	name := func(b []byte, s string) []byte { return append(appendU32(b, uint32(len(s))), s...) }
	// types: 0 (i32) -> (i32), 1 () -> (), 2 (i64 f64) -> ()
	types := section(1, 3, 0x60, 1, 0x7f, 1, 0x7f, 0x60, 0, 0, 0x60, 2, 0x7e, 0x7c, 0)
	imps := []byte{3}
	imps = append(name(name(imps, "greenroom"), "log_write"), 0x00, 0)
	imps = append(name(name(imps, "env"), "mem"), 0x02, 0x01, 3, 9) // memory 0: min 3
	imps = append(name(name(imps, "wasi_snapshot_preview1"), "sched_yield"), 0x00, 1)
	funcs := section(3, 2, 2, 0)                  // functions 2 and 3: types 2 and 0
	mems := section(5, 1, 0x04, 0x80, 0x80, 0x10) // memory 1: 64-bit, min 2^18, capped
	exps := []byte{4}
	exps = append(name(exps, "greenroom_handle"), 0x00, 3)
	exps = append(name(exps, "wide"), 0x00, 2)
	exps = append(name(exps, "memory"), 0x02, 0)
	exps = append(name(exps, "big"), 0x02, 1)
	code := section(10, 2, 2, 0, 0x0b, 2, 0, 0x0b)

	got, err := ReadOutline(module(types, section(2, imps...), funcs, mems, section(7, exps...), code))
	if err != nil {
		t.Fatal(err)
	}
	i32 := []byte{0x7f}
	want := Outline{
		Imports: []FuncImport{
			{"greenroom", "log_write", FuncType{i32, i32}},
			{"wasi_snapshot_preview1", "sched_yield", FuncType{[]byte{}, []byte{}}},
		},
		Exports:  map[string]FuncType{"greenroom_handle": {i32, i32}, "wide": {[]byte{0x7e, 0x7c}, []byte{}}},
		Memories: map[string]uint32{"memory": 3, "big": 65536},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadOutline =\n%+v\nwant\n%+v", got, want)
	}

	for what, tc := range map[string]struct {
		wasm []byte
		want string
	}{
		"not wasm":              {[]byte("\x7fELF...."), "not a WebAssembly"},
		"section past the end":  {module(section(1, 1, 0x60, 0, 0)[:3]), "section at byte 8 declares 4 bytes, 1 remain"},
		"not a function type":   {module(section(1, 1, 0x5f, 0, 0)), "type section at byte 8: a type of form 0x5f"},
		"unknown value type":    {module(section(1, 1, 0x60, 1, 0x42, 0)), "type section at byte 8: unknown value type 0x42"},
		"import with no type":   {module(section(2, append(name(name([]byte{1}, "env"), "f"), 0x00, 5)...)), "import section at byte 8: import env.f has no type 5"},
		"export of no function": {module(types, section(7, append(name([]byte{1}, "f"), 0x00, 7)...)), `export section at byte 24: export "f" names no function`},
		"export of no memory":   {module(section(7, append(name([]byte{1}, "memory"), 0x02, 0)...)), `export "memory" names no memory`},
		"bytes after entries":   {module(section(3, 0, 0)), "function section at byte 8: 1 bytes after its entries"},
		"overstated count":      {module(section(3, 0xff, 0xff, 0x03)), "65535 functions declared in 0 bytes"},
	} {
		if _, err := ReadOutline(tc.wasm); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", what, err, tc.want)
		}
	}
}
