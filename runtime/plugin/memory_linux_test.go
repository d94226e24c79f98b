//go:build linux

package plugin

import "testing"

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
