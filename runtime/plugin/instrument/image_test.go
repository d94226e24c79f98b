package instrument

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
)

// customSection encodes a custom section named name holding body.
func customSection(name string, body ...byte) []byte {
	b := appendU32(nil, uint32(len(name)))
	b = append(b, name...)
	return section(0, append(b, body...)...)
}

// hasSection says whether module wasm has a section of id.
func hasSection(t *testing.T, wasm []byte, id byte) bool {
	t.Helper()
	r := &reader{b: wasm, off: 8}
	for r.off < len(r.b) {
		sid := r.byte()
		r.bytes(int(r.u32()))
		if r.err != nil {
			t.Fatal(r.err)
		}
		if sid == id {
			return true
		}
	}
	return false
}

// TestDataImageGoGuest moves a Go guest's data out of its module, and an
// instance of the result with the image written in starts with the same
// memory as one of the module rewritten without DataImage.
func TestDataImageGoGuest(t *testing.T) {
	b := guesttest.Read(t, "runtime/plugin/testdata/guests/hostile")
	plain, _, err := Rewrite(b, Options{MaxMemoryPages: 16384})
	if err != nil {
		t.Fatal(err)
	}
	out, st, err := Rewrite(b, Options{MaxMemoryPages: 16384, DataImage: true})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Image || hasSection(t, out, secData) {
		t.Fatalf("image %t, data section still there %t", st.Image, hasSection(t, out, secData))
	}
	segs, ok, err := DataImage(out, 16384)
	if err != nil || !ok {
		t.Fatalf("DataImage: %v, %t", err, ok)
	}
	n := 0
	for _, s := range segs {
		n += len(s.Data)
	}
	t.Logf("%d segments, %d bytes; module %d -> %d bytes", len(segs), n, len(plain), len(out))
	if n < 1<<20 {
		t.Errorf("the image holds %d bytes; a Go guest's data is over 1 MiB", n)
	}
	sameMemoryWith(t, plain, out, segs)
}

// sameMemoryWith is sameMemory with segs written into b's instance, as the
// runtime's allocator does; on a difference it names the first byte.
func sameMemoryWith(t *testing.T, a, b []byte, segs []Segment) {
	t.Helper()
	ctx := context.Background()
	var mems [2][]byte
	for i, wasm := range [][]byte{a, b} {
		r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
		defer r.Close(ctx)
		cm, err := r.CompileModule(ctx, wasm)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range cm.ImportedFunctions() {
			mod, _, _ := imp.Import()
			if r.Module(mod) == nil {
				stubImports(t, r, cm, mod)
			}
		}
		m, err := r.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithStartFunctions())
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			for _, s := range segs {
				if !m.Memory().Write(s.Offset, s.Data) {
					t.Fatalf("segment at %d (%d bytes) outside memory", s.Offset, len(s.Data))
				}
			}
		}
		mems[i], _ = m.Memory().Read(0, m.Memory().Size())
	}
	if !bytes.Equal(mems[0], mems[1]) {
		for i := range min(len(mems[0]), len(mems[1])) {
			if mems[0][i] != mems[1][i] {
				t.Fatalf("memories differ first at byte %d: %d != %d (sizes %d, %d)", i, mems[0][i], mems[1][i], len(mems[0]), len(mems[1]))
			}
		}
		t.Fatalf("memory sizes differ: %d != %d", len(mems[0]), len(mems[1]))
	}
}

func TestDataImageSmall(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    []byte
		image bool // the data moves to the image
	}{
		{"merged", dataModule(dataSection(seg(10, "ab"), seg(20, "cd"))), true},
		{"no segments", dataModule(dataSection()), true},
		// Instantiation must fail as before: the engine keeps checking.
		{"past the initial memory", dataModule(dataSection(seg(65535, "ab"))), false},
		{"overlapping", dataModule(dataSection(seg(10, "abcd"), seg(12, "xy"))), false},
		{"passive", dataModule([]byte{1, 1, 2, 'a', 'b'}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plain, _, err := Rewrite(tc.in, Options{MaxMemoryPages: 2})
			if err != nil {
				t.Fatal(err)
			}
			out, st, err := Rewrite(tc.in, Options{MaxMemoryPages: 2, DataImage: true})
			if err != nil {
				t.Fatal(err)
			}
			segs, ok, err := DataImage(out, 1)
			if err != nil {
				t.Fatal(err)
			}
			if st.Image != tc.image || ok != tc.image || hasSection(t, out, secData) == tc.image {
				t.Fatalf("Stats.Image %t, DataImage ok %t, data section kept %t; want the image %t", st.Image, ok, hasSection(t, out, secData), tc.image)
			}
			if !tc.image {
				if !bytes.Equal(out, plain) {
					t.Error("a module whose data stays changed with DataImage")
				}
				return
			}
			sameMemoryWith(t, plain, out, segs)
		})
	}
}

// TestDataImageFromInput: a module cannot hand the runtime an image of its
// own: Rewrite drops an input section of that name, and writes its own.
func TestDataImageFromInput(t *testing.T) {
	forged := appendU32(nil, 1)
	forged = appendU32(forged, 0)
	forged = appendU32(forged, 4)
	forged = append(forged, "evil"...)
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"without data", module(customSection(ImageSection, forged...), section(5, 1, 0, 1))},
		{"with data", module(customSection(ImageSection, forged...), section(5, 1, 0, 1), section(11, dataSection(seg(3, "ok"))...))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok, err := DataImage(tc.in, 1); err != nil || !ok {
				t.Fatalf("the forged section does not read as an image (%v, %t): the test proves nothing", err, ok)
			}
			for _, image := range []bool{false, true} {
				out, _, err := Rewrite(tc.in, Options{MaxMemoryPages: 1, DataImage: image})
				if err != nil {
					t.Fatal(err)
				}
				segs, _, err := DataImage(out, 1)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range segs {
					if bytes.Contains(s.Data, []byte("evil")) {
						t.Fatalf("DataImage %t: the input's section survived: %+v", image, segs)
					}
				}
			}
		})
	}
}

func TestDataImageRefusesBadSections(t *testing.T) {
	mem := section(5, 1, 0, 1)
	enc := func(segs ...dataSegment) []byte {
		b := appendU32(nil, uint32(len(segs)))
		for _, s := range segs {
			b = appendU32(b, s.off)
			b = appendU32(b, uint32(len(s.data)))
			b = append(b, s.data...)
		}
		return b
	}
	for _, tc := range []struct {
		name, want string
		wasm       []byte
	}{
		{"past memory", "past the module's initial memory", module(mem, customSection(ImageSection, enc(seg(65535, "ab"))...))},
		{"overlapping", "overlaps", module(mem, customSection(ImageSection, enc(seg(10, "abcd"), seg(12, "x"))...))},
		{"out of order", "overlaps", module(mem, customSection(ImageSection, enc(seg(20, "a"), seg(10, "b"))...))},
		{"truncated", "truncated", module(mem, customSection(ImageSection, 1, 0, 9, 'a'))},
		{"trailing", "trailing", module(mem, customSection(ImageSection, append(enc(seg(1, "a")), 0)...))},
		{"huge count", "segments in", module(mem, customSection(ImageSection, 0xff, 0xff, 0xff, 0xff, 0x0f))},
		{"twice", "more than one", module(mem, customSection(ImageSection, enc()...), customSection(ImageSection, enc()...))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := DataImage(tc.wasm, 1)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

// TestWithoutImage: the engine's view of a rewritten module is the module
// cut before its image, no copy; a module whose image is not its last
// section, or that has none, is passed on as it is.
func TestWithoutImage(t *testing.T) {
	out, st, err := Rewrite(guesttest.Read(t, "runtime/plugin/testdata/guests/hostile"), Options{MaxMemoryPages: 16384, DataImage: true})
	if err != nil || !st.Image {
		t.Fatalf("Rewrite: %v, image %t", err, st.Image)
	}
	segs, _, err := DataImage(out, 16384)
	if err != nil {
		t.Fatal(err)
	}
	imageBytes := 0
	for _, s := range segs {
		imageBytes += len(s.Data)
	}
	view := WithoutImage(out)
	if len(view) == 0 || &view[0] != &out[0] || !bytes.Equal(view, out[:len(view)]) {
		t.Fatal("the view is not a prefix of the module")
	}
	if len(out)-len(view) < imageBytes {
		t.Fatalf("the view is %d bytes shorter than the module, the image holds %d", len(out)-len(view), imageBytes)
	}
	if _, ok, err := DataImage(view, 16384); ok || err != nil {
		t.Fatalf("the view still has an image (%t, %v)", ok, err)
	}
	r := wazero.NewRuntime(context.Background())
	defer r.Close(context.Background())
	if _, err := r.CompileModule(context.Background(), view); err != nil {
		t.Fatalf("wazero refuses the view: %v", err)
	}

	mem := section(5, 1, 0, 1)
	image := customSection(ImageSection, 0)
	for _, tc := range []struct {
		name string
		wasm []byte
		want int // length of the view
	}{
		{"last", module(mem, image), len(module(mem))},
		{"followed by another section", module(mem, image, customSection("x")), -1},
		{"none", module(mem, customSection("x")), -1},
		{"another name", module(mem, customSection(ImageSection+"x")), -1},
		{"not a module", []byte("junk"), -1},
		{"truncated", module(mem, image)[:len(module(mem, image))-1], -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want < 0 {
				want = len(tc.wasm)
			}
			if got := WithoutImage(tc.wasm); len(got) != want {
				t.Fatalf("view of %d bytes, want %d", len(got), want)
			}
		})
	}
}

// A module with two data sections is invalid, but the rewrite moved the
// data to the image section by section, and the second replaced the
// first: the module loaded without the first section's bytes (wazero,
// which refuses the order, never saw either). Refused as malformed,
// before the rewrite, whatever the options.
func TestRepeatedDataSectionRefused(t *testing.T) {
	first := section(11, 1, 0, 0x41, 0, 0x0b, 2, 'a', 'b')    // "ab" at 0
	second := section(11, 1, 0, 0x41, 100, 0x0b, 2, 'c', 'd') // "cd" at 100
	wasm := module(section(5, 1, 0, 1), first, second)
	for _, opts := range []Options{
		{Interrupt: true, MaxMemoryPages: 1, DataImage: true},
		{MaxMemoryPages: 1, DataImage: true},
		{MaxMemoryPages: 1},
	} {
		out, st, err := Rewrite(wasm, opts)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "data section at byte 23: a second data section") {
			segs, _, _ := DataImage(out, 1)
			t.Errorf("%+v: %v (image %t: %d segments), want refused as malformed", opts, err, st.Image, len(segs))
		}
	}
}
