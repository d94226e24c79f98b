package plugin

import (
	"github.com/tetratelabs/wazero/experimental"

	"github.com/greenroom-dev/greenroom/runtime/plugin/instrument"
)

// heapMemory is the fallback when the address space for an instance cannot
// be reserved: a Go slice that grows by copying, as wazero's own allocator
// does.
type heapMemory struct {
	buf []byte
	max uint64
}

func (m *heapMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if size > uint64(cap(m.buf)) {
		nb := make([]byte, size, min(max(size, 2*uint64(cap(m.buf))), m.max))
		copy(nb, m.buf)
		m.buf = nb
	}
	m.buf = m.buf[:size]
	return m.buf
}

func (m *heapMemory) Free() { m.buf = nil }

// fallbackMemory is the heap memory for a memory of at most max bytes
// (0, or more than 4 GiB: 4 GiB).
func fallbackMemory(max uint64) *heapMemory {
	if max == 0 || max > 1<<32 {
		return &heapMemory{max: 1 << 32}
	}
	return &heapMemory{max: max}
}

// filledMemory is a memory whose first Reallocate (wazero's, for the
// module's initial size, before anything runs) writes the module's data
// image into it: what the engine would have copied from the data
// segments that instrument.Rewrite moved out of the module
// (instrument.Options.DataImage).
type filledMemory struct {
	experimental.LinearMemory
	fill func([]byte)
}

func (m *filledMemory) Reallocate(size uint64) []byte {
	b := m.LinearMemory.Reallocate(size)
	if b != nil && m.fill != nil {
		m.fill(b)
		m.fill = nil
	}
	return b
}

// copyAllocator gives each instance memory from base (nil: a heapMemory)
// with the data image copied in: the way wazero applies data segments,
// for where an image cannot be mapped (see imageAllocator).
type copyAllocator struct {
	base experimental.MemoryAllocator
	segs []instrument.Segment
}

// newCopyAllocator keeps a copy of segs (whose bytes are usually slices of
// a module the caller drops) in one buffer.
func newCopyAllocator(base experimental.MemoryAllocator, segs []instrument.Segment) *copyAllocator {
	n := 0
	for _, s := range segs {
		n += len(s.Data)
	}
	buf := make([]byte, 0, n)
	own := make([]instrument.Segment, len(segs))
	for i, s := range segs {
		buf = append(buf, s.Data...)
		own[i] = instrument.Segment{Offset: s.Offset, Data: buf[len(buf)-len(s.Data):]}
	}
	return &copyAllocator{base: base, segs: own}
}

func (a *copyAllocator) Allocate(cap, max uint64) experimental.LinearMemory {
	var m experimental.LinearMemory
	if a.base != nil {
		m = a.base.Allocate(cap, max)
	} else {
		m = fallbackMemory(max)
	}
	return &filledMemory{LinearMemory: m, fill: func(b []byte) {
		for _, s := range a.segs {
			copy(b[s.Offset:], s.Data) // within the initial memory (instrument.DataImage)
		}
	}}
}

// allocatorFor returns the memory allocator for instances of module code
// (rewritten by instrument.Rewrite), whose initial memory is minPages
// pages: memoryAllocator when the module keeps its data segments, one that
// lays out its data image otherwise.
func allocatorFor(code []byte, minPages uint32) (experimental.MemoryAllocator, error) {
	segs, ok, err := instrument.DataImage(code, minPages)
	if err != nil || !ok {
		return memoryAllocator, err
	}
	return newImageAllocator(segs), nil
}

// instanceAllocator is the allocator of one instantiation: it remembers
// the memory it gave, so that a failed instantiation can free it. wazero
// does not close a module whose instantiation fails after its memory was
// made (a data segment out of bounds, with the segments before it already
// written; a start section that traps, with interruption off): the
// memory, reserved up to limits.memory and with the pages written before
// the failure, stayed mapped for the life of the process, at every load
// of such a plugin (TestFailedInstantiationFreesMemory).
type instanceAllocator struct {
	experimental.MemoryAllocator
	mem experimental.LinearMemory
}

func (a *instanceAllocator) Allocate(cap, max uint64) experimental.LinearMemory {
	a.mem = a.MemoryAllocator.Allocate(cap, max)
	return a.mem
}

// free frees the memory a gave (which wazero left unclosed), if any. The
// memories here are safe to free twice.
func (a *instanceAllocator) free() {
	if a != nil && a.mem != nil {
		a.mem.Free()
		a.mem = nil
	}
}
