//go:build linux

package plugin

import (
	"io"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"

	"github.com/greenroom-dev/greenroom/runtime/plugin/instrument"
)

// mmapAllocator backs each instance's linear memory with its own anonymous
// mapping, reserved up to the module's maximum (its limits.memory cap) and
// made resident page by page as the guest touches it. Growing never moves
// or copies the memory, and closing an instance unmaps it at once: a
// retired or discarded instance's memory goes back to the operating system
// rather than waiting in the Go heap for a garbage collection, which kept
// the process's RSS at its peak under instance churn.
type mmapAllocator struct{}

func (mmapAllocator) Allocate(cap, max uint64) experimental.LinearMemory {
	b, ok := reserve(max)
	if !ok {
		return fallbackMemory(max)
	}
	return &mmapMemory{buf: b}
}

// reserve maps max bytes of address space, zero-filled and made resident
// only as touched. ok is false when max is not a 32-bit memory's or the
// mapping failed.
func reserve(max uint64) ([]byte, bool) {
	if max == 0 || max > 1<<32 {
		return nil, false
	}
	b, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
	if err != nil {
		return nil, false
	}
	return b, true
}

type mmapMemory struct{ buf []byte }

func (m *mmapMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(m.buf)) {
		return nil
	}
	return m.buf[:size]
}

func (m *mmapMemory) Free() {
	if m.buf != nil {
		syscall.Munmap(m.buf)
		m.buf = nil
	}
}

var memoryAllocator experimental.MemoryAllocator = mmapAllocator{}

// imageAllocator lays a module's data image (instrument.DataImage) out
// once, in a sealed memory file, and maps that file copy-on-write over the
// start of each new instance's reservation: an instance starts without
// copying its data, pages the guest only reads stay shared between the
// module's instances (and with the file), and a page is copied on the
// guest's first write to it. The file is the process's own (memfd, closed
// on exec); its seals forbid changing it, shrinking it (which would leave
// instances' pages unbacked) or growing it.
//
// The descriptor stays open while the allocator is reachable (the plugins
// of the module hold it) and is closed by a cleanup after: mappings keep
// the file alive on their own.
type imageAllocator struct {
	fd   int
	size int // the file's size: the image's end, rounded up to a page
}

// newImageAllocator returns an imageAllocator for segs, or, where a
// memory file cannot be made, a copyAllocator.
func newImageAllocator(segs []instrument.Segment) experimental.MemoryAllocator {
	if len(segs) == 0 {
		return memoryAllocator
	}
	last := segs[len(segs)-1]
	page := os.Getpagesize()
	size := (int(last.Offset) + len(last.Data) + page - 1) / page * page
	fd, err := unix.MemfdCreate("greenroom-data", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return newCopyAllocator(memoryAllocator, segs)
	}
	err = unix.Ftruncate(fd, int64(size))
	for _, s := range segs {
		for b, off := s.Data, int64(s.Offset); err == nil && len(b) > 0; {
			var n int
			if n, err = unix.Pwrite(fd, b, off); err == nil && n <= 0 {
				err = io.ErrShortWrite
			}
			if err == nil {
				b, off = b[n:], off+int64(n)
			}
		}
	}
	if err == nil {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL)
	}
	if err != nil {
		unix.Close(fd)
		return newCopyAllocator(memoryAllocator, segs)
	}
	a := &imageAllocator{fd: fd, size: size}
	runtime.AddCleanup(a, func(fd int) { unix.Close(fd) }, fd)
	return a
}

func (a *imageAllocator) Allocate(cap, max uint64) experimental.LinearMemory {
	defer runtime.KeepAlive(a) // the descriptor stays open until done
	b, ok := reserve(max)
	if !ok || uint64(a.size) > max {
		if ok {
			syscall.Munmap(b)
		}
		return &filledMemory{LinearMemory: fallbackMemory(max), fill: a.read}
	}
	if _, err := unix.MmapPtr(a.fd, 0, unsafe.Pointer(unsafe.SliceData(b)), uintptr(a.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED); err != nil {
		// The reservation is still whole and zero-filled: copy instead.
		a.read(b[:a.size])
	}
	return &mmapMemory{buf: b}
}

// read copies the image into b (at most len(b) bytes of it), as the
// engine would have copied the data segments. (Reading a memory file
// fails only with a bad buffer or descriptor, which this one is not.)
func (a *imageAllocator) read(b []byte) {
	defer runtime.KeepAlive(a)
	b = b[:min(len(b), a.size)]
	for off := 0; off < len(b); {
		n, err := unix.Pread(a.fd, b[off:], int64(off))
		if err != nil || n == 0 {
			return
		}
		off += n
	}
}
