package instrument

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
)

// huge is the LEB128 encoding of 4 294 967 295.
var huge = []byte{0xff, 0xff, 0xff, 0xff, 0x0f}

func TestCheckSizesAcceptsModules(t *testing.T) {
	guest := guesttest.Read(t, "runtime/plugin/testdata/guests/hostile")
	rewritten, _, err := Interruptible(guest)
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string][]byte{
		"loop": loopModule(), "fib": fibModule(), "grow": growModule(1, 1, 100),
		"Go guest": guest, "Go guest, rewritten": rewritten,
		"locals at the limit":           localsModule(MaxLocals),
		"tables at the limit":           module(section(4, many(MaxTables, 0x70, 0, 0)...)),
		"element segments at the limit": module(section(9, many(MaxElementSegments, 1, 0, 0)...)),
		"data segments at the limit":    module(section(12, appendU32(nil, MaxDataSegments)...), section(11, many(MaxDataSegments, 1, 0)...)),
		"names at the limit":            nameSection(1, many(MaxFunctions+MaxImports, 0, 0)),
		"local names at the limit":      nameSection(2, append([]byte{2, 0}, append(many(MaxModuleLocals/2, 0, 0), append([]byte{1}, many(MaxModuleLocals/2, 0, 0)...)...)...)),
		"imports at the limit":          module(section(1, 1, 0x60, 1, 0x7f, 1, 0x7f), section(2, many(MaxImports, logEnabledImport...)...)),
	} {
		if err := CheckSizes(m); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Each module declares far more than it holds; wazero would allocate
// what it declares (for the import section: hundreds of GiB, which ends
// the process) before finding out.
func TestCheckSizesRefusesOverstatedCounts(t *testing.T) {
	vec := func(id byte, rest ...byte) []byte {
		return module(section(id, append(append([]byte{}, huge...), rest...)...))
	}
	for name, tc := range map[string]struct {
		wasm []byte
		want string
	}{
		"types":     {vec(1), "type section"},
		"imports":   {vec(2, 0), "4294967295 imports"},
		"functions": {vec(3), "function section"},
		"tables":    {vec(4), "table section"},
		"memories":  {vec(5), "memory section"},
		"globals":   {vec(6, 0x7f, 0, 0x41, 0, 0x0b), "global section"},
		"exports":   {vec(7), "export section"},
		"elements":  {vec(9), "element section"},
		"code":      {vec(10), "code section"},
		"data":      {vec(11), "data section"},
		"tags":      {vec(13), "tag section"},
		"params": {module(section(1, append([]byte{1, 0x60}, huge...)...)),
			"value types declared"},
		"import name": {module(section(2, append([]byte{1}, huge...)...)),
			"import section at byte 8: truncated"},
		"element indices": {module(section(9, append([]byte{1, 1, 0}, huge...)...)),
			"function indices declared"},
		"element expressions": {module(section(9, append([]byte{1, 5, 0x70}, huge...)...)),
			"element expressions declared"},
		"data segment bytes": {module(section(11, append([]byte{1, 1}, huge...)...)),
			"data section at byte 8: 4294967295 bytes declared"},
		"locals": {localsModule(MaxLocals + 1), "50001 locals, more than 50000"},
		"parameters": {module(section(1, append(append([]byte{1, 0x60, 0xe9, 0x07}, make([]byte, 1001)...), 0)...)),
			"type 0 has 1001 parameters, more than 1000"},
		"results": {module(section(1, append([]byte{1, 0x60, 0, 0xe9, 0x07}, make([]byte, 1001)...)...)),
			"type 0 has 1001 results, more than 1000"},
		"locals in the module": {manyLocals(MaxModuleLocals/MaxLocals + 1),
			"functions 0 to 83 declare 4200000 locals together, more than 4194304"},
		"locals in one group": {module(section(10, append(append([]byte{1, 7, 1}, huge...), 0x7f)...)),
			"4294967295 locals"},
		"function names": {module(section(0, append([]byte{4, 'n', 'a', 'm', 'e', 1, 5}, huge...)...)),
			"name subsection 1"},
		"local names": {module(section(0, append([]byte{4, 'n', 'a', 'm', 'e', 2, 7, 1, 0}, huge...)...)),
			"name subsection 2"},
		"section size": {append([]byte{0, 'a', 's', 'm', 1, 0, 0, 0, 11}, huge...), "section at byte 8 declares 4294967295 bytes, 0 remain"},
		"not wasm":     {[]byte("\x7fELF"), "not a WebAssembly"},
		"element entries": {module(section(9, passiveSegments(2, MaxElementEntries/2+1)...)),
			"segments 0 to 1 hold 262146 entries together, more than 262144"},
		"too many globals": {module(section(6, manyGlobals(MaxGlobals+1)...)), "65537 globals, more than 65536"},
		"too many functions": {module(section(3, many(MaxFunctions+1, 0)...)),
			"function section at byte 8: 262145 functions, more than 262144"},
		"too many bodies": {module(section(10, many(MaxFunctions+1, 2, 0, 0x0b)...)),
			"code section at byte 8: 262145 function bodies, more than 262144"},
		// One host function imported again and again: wazero keeps
		// each import on the heap, once per module and once per
		// instance (1 048 576 of them held 641 MB).
		"too many imports": {module(section(2, many(MaxImports+1, logEnabledImport...)...)),
			"import section at byte 8: 1025 imports, more than 1024"},
		// Empty tables and segments: nothing in them for the bounds on
		// entries to count, but wazero keeps each one, per module and
		// per instance (1 048 576 empty tables held 116 MB per instance).
		"too many tables": {module(section(4, many(MaxTables+1, 0x70, 0, 0)...)),
			"table section at byte 8: 1025 tables, more than 1024"},
		"too many element segments": {module(section(9, many(MaxElementSegments+1, 1, 0, 0)...)),
			"element section at byte 8: 65537 element segments, more than 65536"},
		"too many data segments": {module(section(11, many(MaxDataSegments+1, 1, 0)...)),
			"data section at byte 8: 100001 data segments, more than 100000"},
		// Names wazero keeps while the module is loaded, 24 bytes or
		// more for two of module (16 MB of them held 177 MB).
		"too many function names": {nameSection(1, many(MaxFunctions+MaxImports+1, 0, 0)),
			"name subsection 1: 263169 function names, more than the 263168 functions a module may have"},
		"local names of too many functions": {nameSection(2, many(MaxFunctions+MaxImports+1, 0, 0)),
			"name subsection 2: local names of 263169 functions, more than the 263168 functions a module may have"},
		"too many local names": {nameSection(2, append([]byte{2, 0}, append(many(MaxModuleLocals/2, 0, 0), append([]byte{1}, many(MaxModuleLocals/2+1, 0, 0)...)...)...)),
			"name subsection 2: 4194305 local names, more than the 4194304 locals a module may declare"},
		"too many types": {module(section(1, many(MaxTypes+1, 0x60, 0, 0)...)),
			"type section at byte 8: 65537 types, more than 65536"},
		"too many exports": {module(section(7, manyExports(MaxExports+1)...)),
			"export section at byte 8: 65537 exports, more than 65536"},
	} {
		err := CheckSizes(tc.wasm)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
		}
	}
}

// nameSection is a module of one "name" section whose one subsection
// (id sub) is body.
func nameSection(sub byte, body []byte) []byte {
	b := append([]byte{4, 'n', 'a', 'm', 'e', sub}, appendU32(nil, uint32(len(body)))...)
	return module(section(0, append(b, body...)...))
}

// logEnabledImport imports greenroom.log_enabled with type 0.
var logEnabledImport = append(append([]byte{9}, "greenroom\x0blog_enabled"...), 0x00, 0)

// many is a vector of n copies of entry.
func many(n int, entry ...byte) []byte {
	return append(appendU32(nil, uint32(n)), bytes.Repeat(entry, n)...)
}

// manyExports is an export section of n functions exported under
// distinct names.
func manyExports(n int) []byte {
	b := appendU32(nil, uint32(n))
	for i := range n {
		name := strconv.Itoa(i)
		b = appendU32(b, uint32(len(name)))
		b = append(append(b, name...), 0, 0)
	}
	return b
}

// localsModule has one function declaring n i32 locals.
func localsModule(n uint32) []byte {
	types := section(1, 1, 0x60, 0, 0)
	funcs := section(3, 1, 0)
	body := appendU32([]byte{1}, n)
	body = append(body, 0x7f, 0x0b)
	code := appendU32([]byte{1}, uint32(len(body)))
	return module(types, funcs, section(10, append(code, body...)...))
}

// manyLocals has n function bodies each declaring MaxLocals locals (and no
// function section: CheckSizes looks at the code section alone).
func manyLocals(n int) []byte {
	body := appendU32([]byte{1}, MaxLocals)
	body = append(body, 0x7f, 0x0b)
	code := appendU32(nil, uint32(n))
	for range n {
		code = appendU32(code, uint32(len(body)))
		code = append(code, body...)
	}
	return module(section(10, code...))
}

// The limit on locals is one wazero's decoder and compiler live with.
func TestLocalsAtTheLimitCompile(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer r.Close(ctx)
	if _, err := r.CompileModule(ctx, localsModule(MaxLocals)); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkCheckSizes runs the check on a Go guest, as every load does.
//
//	go test -run '^$' -bench CheckSizes ./runtime/plugin/instrument/
func BenchmarkCheckSizes(b *testing.B) {
	guest := guesttest.Read(b, "runtime/plugin/testdata/guests/hostile")
	b.SetBytes(int64(len(guest)))
	for b.Loop() {
		if err := CheckSizes(guest); err != nil {
			b.Fatal(err)
		}
	}
}

// passiveSegments is an element section of n passive segments of k
// function indices each.
func passiveSegments(n, k int) []byte {
	b := appendU32(nil, uint32(n))
	for range n {
		b = appendU32(append(b, 1, 0x00), uint32(k)) // passive, funcref
		b = append(b, make([]byte, k)...)            // function 0, k times
	}
	return b
}

// manyGlobals is a global section of n immutable i32 globals.
func manyGlobals(n int) []byte {
	b := appendU32(nil, uint32(n))
	for range n {
		b = append(b, 0x7f, 0, 0x41, 0, 0x0b)
	}
	return b
}

// Each non-custom section comes at most once, in the specification's
// order (the tag section between memory and global, data count between
// element and code); custom sections anywhere. The rewrite reads the
// sections before wazero does and acts on each it meets (a second data
// section replaced the first's segments), so CheckSizes refuses what
// wazero would.
func TestCheckSizesRefusesSectionOrder(t *testing.T) {
	types := section(1, 1, 0x60, 0, 0)
	funcs := section(3, 1, 0)
	memory := section(5, 1, 0, 1)
	global := section(6, 1, 0x7f, 0, 0x41, 0, 0x0b)
	start := section(8, 0)
	elems := section(9, 0)
	dataCount := section(12, 0)
	code := section(10, 1, 2, 0, 0x0b)
	data := section(11, 0)
	tag := section(13, 0)
	custom := customSection("x")
	for _, tc := range []struct {
		name string
		wasm []byte
		want string // "" when accepted
	}{
		{"in order", module(custom, types, funcs, memory, tag, global, custom, start, elems, dataCount, code, custom, data, custom), ""},
		{"two type sections", module(types, types), "type section at byte 14: a second type section"},
		{"two start sections", module(types, funcs, memory, start, start, code), "start section at byte 26: a second start section"},
		{"two data sections", module(memory, data, data), "data section at byte 16: a second data section"},
		{"memory after global", module(global, memory), "memory section at byte 16: after the global section"},
		{"start after code", module(types, funcs, memory, code, start), "start section at byte 29: after the code section"},
		{"data count after code", module(types, funcs, code, dataCount), "data count section at byte 24: after the code section"},
		{"element after data count", module(dataCount, elems), "element section at byte 11: after the data count section"},
		{"tag after global", module(global, tag), "tag section at byte 16: after the global section"},
		{"unknown section", module(memory, section(14, 0)), "section at byte 13: unknown section id 14"},
	} {
		err := CheckSizes(tc.wasm)
		if tc.want == "" && err != nil || tc.want != "" && (!errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
