package instrument

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
)

// dataModule is a module with one page of memory and the given data
// section body.
func dataModule(data []byte) []byte {
	return module(section(5, 1, 0, 1), section(11, data...))
}

// dataSection encodes active segments of memory 0 at i32.const offsets.
func dataSection(segs ...dataSegment) []byte {
	b := appendU32(nil, uint32(len(segs)))
	for _, s := range segs {
		b = append(b, 0, 0x41)
		b = appendS32(b, int32(s.off))
		b = append(b, 0x0b)
		b = appendU32(b, uint32(len(s.data)))
		b = append(b, s.data...)
	}
	return b
}

func seg(off uint32, data string) dataSegment { return dataSegment{off, []byte(data)} }

func TestMergeData(t *testing.T) {
	gap := MergeGap
	for _, tc := range []struct {
		name          string
		segs          []dataSegment
		before, after int
	}{
		{"adjacent", []dataSegment{seg(0, "ab"), seg(2, "cd")}, 2, 1},
		{"short gaps", []dataSegment{seg(10, "ab"), seg(20, "cd"), seg(uint32(22+gap), "ef")}, 3, 1},
		{"one gap too long", []dataSegment{seg(10, "ab"), seg(uint32(13+gap), "cd"), seg(uint32(20+gap), "ef")}, 3, 2},
		{"at the end of memory", []dataSegment{seg(65534, "x"), seg(65535, "y")}, 2, 1},
		{"empty segments", []dataSegment{seg(5, ""), seg(7, "a"), seg(8, "")}, 3, 1},
		{"out of order", []dataSegment{seg(30, "cd"), seg(10, "ab"), seg(uint32(40+gap), "ef")}, 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := dataModule(dataSection(tc.segs...))
			out, st, err := Rewrite(in, Options{MaxMemoryPages: 1})
			if err != nil {
				t.Fatal(err)
			}
			if st.DataSegments != tc.before || st.MergedSegments != tc.after {
				t.Errorf("segments %d -> %d, want %d -> %d", st.DataSegments, st.MergedSegments, tc.before, tc.after)
			}
			sameMemory(t, in, out)
		})
	}
}

// Where merging could change memory or segment indices, the data section
// is left as it is.
func TestMergeDataLeavesAlone(t *testing.T) {
	for _, tc := range []struct {
		name      string
		imported  bool
		datacount bool
		data      []byte
	}{
		{"overlapping", false, false, dataSection(seg(0, "abcd"), seg(2, "xy"))},
		{"overlapping out of order", false, false, dataSection(seg(10, "ab"), seg(8, "cde"))},
		{"imported memory", true, false, dataSection(seg(0, "ab"), seg(4, "cd"))},
		{"data count section", false, true, dataSection(seg(0, "ab"), seg(4, "cd"))},
		{"passive segment", false, false, []byte{2, 0, 0x41, 0, 0x0b, 1, 'a', 1, 1, 'b'}},
		{"global offset", false, false, []byte{2, 0, 0x41, 0, 0x0b, 1, 'a', 0, 0x23, 0, 0x0b, 1, 'b'}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, _, before, after, err := mergeData(tc.data, tc.imported, tc.datacount)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, tc.data) || before != 2 || after != 2 {
				t.Errorf("changed: %d -> %d segments", before, after)
			}
		})
	}
	if _, _, _, _, err := mergeData([]byte{1, 0, 0x41, 0, 0x0b, 5, 'a'}, false, false); err == nil {
		t.Error("truncated segment accepted")
	}
}

// A Go guest keeps its memory byte for byte and loses most of its segments.
func TestMergeDataGoGuest(t *testing.T) {
	b := guesttest.Read(t, "runtime/plugin/testdata/guests/hostile")
	out, st, err := Rewrite(b, Options{MaxMemoryPages: 16384})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("data segments %d -> %d, module %d -> %d bytes", st.DataSegments, st.MergedSegments, len(b), len(out))
	if st.MergedSegments == 0 || st.MergedSegments*10 > st.DataSegments {
		t.Errorf("data segments %d -> %d: want at least 10x fewer", st.DataSegments, st.MergedSegments)
	}
	sameMemory(t, b, out)
}

// sameMemory instantiates both modules (a Go reactor runs no code at
// instantiation) and compares their memories.
func sameMemory(t *testing.T, a, b []byte) {
	t.Helper()
	sameMemoryWith(t, a, b, nil)
}

// stubImports defines module mod in r with a function doing nothing for
// each function cm imports from it.
func stubImports(t *testing.T, r wazero.Runtime, cm wazero.CompiledModule, mod string) {
	t.Helper()
	b := r.NewHostModuleBuilder(mod)
	for _, imp := range cm.ImportedFunctions() {
		m, name, _ := imp.Import()
		if m != mod {
			continue
		}
		b.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {}), imp.ParamTypes(), imp.ResultTypes()).
			Export(name)
	}
	if _, err := b.Instantiate(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// The zeros written out to join segments stay within the segments' own
// bytes (or mergeAllowance): empty segments MergeGap bytes apart (the
// shape of a 4.19 MB module that became 129 MB) are mostly left apart, and
// a data section never more than doubles, plus mergeAllowance.
func TestMergeDataBounded(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string // each segment's
		n    int
	}{
		{"empty segments", "", 4096},
		{"one byte each", "x", 4096},
		{"eight bytes each", "abcdefgh", 4096},
		{"64 bytes each", strings.Repeat("a", 64), 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			segs := make([]dataSegment, tc.n)
			for i := range segs {
				segs[i] = seg(uint32(i*MergeGap), tc.data)
			}
			in := module(section(5, 1, 0, 16), section(11, dataSection(segs...)...))
			out, st, err := Rewrite(in, Options{MaxMemoryPages: 16})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d segments -> %d, module %d -> %d bytes", st.DataSegments, st.MergedSegments, len(in), len(out))
			if len(out) > 2*len(in)+mergeAllowance {
				t.Errorf("module grew from %d to %d bytes", len(in), len(out))
			}
			sameMemory(t, in, out)
		})
	}
}
