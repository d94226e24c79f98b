package plugin

import (
	"bytes"
	"context"
	goruntime "runtime"
	"testing"

	"github.com/tetratelabs/wazero/experimental"

	"github.com/greenroom-dev/greenroom/runtime/plugin/instrument"
)

// TestInstancesShareNoWrites: instances start from their module's data
// image (instrument.Options.DataImage), which on Linux is one memory file
// mapped under every instance; what one instance writes into its data is
// seen by no other instance, live or created after, in every interruption
// mode (each goes through the rewrite). wazero keeps no copy of the image.
func TestInstancesShareNoWrites(t *testing.T) {
	for _, tc := range []struct {
		mode Interruption
		spec Spec
	}{
		{InterruptFlag, Spec{Wasm: hostileWasm, Limits: testLimits()}},
		{InterruptWazero, Spec{Wasm: hostileWasm, Limits: testLimits(), forceWazero: true}},
		{InterruptOff, Spec{Wasm: hostileWasm, Limits: func() Limits { l := testLimits(); l.NoInterrupt = true; return l }()}},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			p := loadSpec(t, tc.spec)
			if p.Interruption() != tc.mode {
				t.Fatalf("interruption %s, want %s", p.Interruption(), tc.mode)
			}
			if _, ok := p.alloc.(*imageAllocator); !ok && goruntime.GOOS == "linux" {
				t.Fatalf("instances are made by %T, not from a mapped image", p.alloc)
			}
			// The image is the runtime's: wazero, which keeps a copy of
			// every custom section it is given, is not given it.
			for _, cs := range p.cm.CustomSections() {
				if cs.Name() == instrument.ImageSection {
					t.Fatalf("wazero keeps the %d-byte data image", len(cs.Data()))
				}
			}
			ctx := context.Background()
			a, err := p.newInstance(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer a.close()
			b, err := p.newInstance(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer b.close()
			// A string of the guest's data: runtime/plugin's hostile guest
			// links the Go runtime, which holds this message.
			marker := []byte("runtime: out of memory")
			memA, _ := a.mod.Memory().Read(0, a.mod.Memory().Size())
			off := bytes.Index(memA, marker)
			if off < 0 {
				t.Fatal("marker not in the guest's memory")
			}
			if !a.mod.Memory().Write(uint32(off), []byte("XXXXXXX")) {
				t.Fatal("write failed")
			}
			read := func(in *instance) string {
				got, _ := in.mod.Memory().Read(uint32(off), uint32(len(marker)))
				return string(got)
			}
			if got := read(a); got != "XXXXXXX"+string(marker[7:]) {
				t.Fatalf("the writer reads %q back", got)
			}
			if got := read(b); got != string(marker) {
				t.Fatalf("another live instance reads %q: the write went through", got)
			}
			c, err := p.newInstance(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			if got := read(c); got != string(marker) {
				t.Fatalf("a new instance reads %q: the write went through", got)
			}
			// And the guest runs on it.
			if status, body, err := get(p, "/ok"); err != nil || status != 200 {
				t.Fatalf("GET /ok: %d %q %v", status, body, err)
			}
		})
	}
}

// TestCopyAllocator is the image laid out by copying, where it cannot be
// mapped (not Linux, or no memory file).
func TestCopyAllocator(t *testing.T) {
	segs := []instrument.Segment{{Offset: 3, Data: []byte("abc")}, {Offset: 70000, Data: []byte("xyz")}}
	a := newCopyAllocator(nil, segs)
	segs[0].Data[0] = 'Z' // the allocator keeps its own copy
	checkImageMemory(t, a, 2<<16, 4<<16)
}

// checkImageMemory allocates two memories from a (made for TestCopyAllocator's
// segments), checks that each starts as the image says, and that a write to
// one is not seen by the other.
// min and max are the memories' initial size and maximum (2*min at
// least).
func checkImageMemory(t *testing.T, a experimental.MemoryAllocator, min, max uint64) {
	t.Helper()
	want := make([]byte, min)
	copy(want[3:], "abc")
	copy(want[70000:], "xyz")
	m1, m2 := a.Allocate(min, max), a.Allocate(min, max)
	defer m1.Free()
	defer m2.Free()
	b1, b2 := m1.Reallocate(min), m2.Reallocate(min)
	if !bytes.Equal(b1, want) || !bytes.Equal(b2, want) {
		t.Fatal("memory does not start as the image")
	}
	b1[4] = '!'
	b1[70001] = '!'
	if b2[4] != 'b' || b2[70001] != 'y' {
		t.Fatal("a write to one memory shows in the other")
	}
	grown := m1.Reallocate(2 * min)
	if len(grown) != int(2*min) || grown[4] != '!' || grown[70001] != '!' {
		t.Fatal("growing lost the memory")
	}
}
