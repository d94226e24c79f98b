//go:build linux

package plugin

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/greenroom-dev/greenroom/runtime/plugin/instrument"
)

func TestMmapMemory(t *testing.T) {
	m := memoryAllocator.Allocate(0, 1<<20)
	b := m.Reallocate(65536)
	if len(b) != 65536 {
		t.Fatalf("len %d", len(b))
	}
	for _, c := range b {
		if c != 0 {
			t.Fatal("fresh memory not zeroed")
		}
	}
	b[100] = 7
	grown := m.Reallocate(3 * 65536)
	if len(grown) != 3*65536 || &grown[0] != &b[0] || grown[100] != 7 {
		t.Fatal("growing moved or lost the memory")
	}
	if m.Reallocate(2<<20) != nil {
		t.Error("grew past the reserved maximum")
	}
	m.Free()
	m.Free() // twice is harmless
}

func TestImageAllocator(t *testing.T) {
	segs := []instrument.Segment{{Offset: 3, Data: []byte("abc")}, {Offset: 70000, Data: []byte("xyz")}}
	a, ok := newImageAllocator(segs).(*imageAllocator)
	if !ok {
		t.Fatal("no memory file on Linux")
	}
	segs[0].Data[0] = 'Z' // the file holds its own copy
	t.Run("mapped", func(t *testing.T) { checkImageMemory(t, a, 2<<16, 4<<16) })
	// A maximum that cannot be reserved falls back to the heap, filled
	// from the file.
	t.Run("heap", func(t *testing.T) { checkImageMemory(t, a, 2<<16, 1<<33) })
	// The file cannot change under the instances mapping it.
	if err := unix.Ftruncate(a.fd, 0); err == nil {
		t.Error("the image file could be shrunk")
	}
	if _, err := unix.Pwrite(a.fd, []byte("!"), 3); err == nil {
		t.Error("the image file could be written")
	}
}
