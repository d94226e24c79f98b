//go:build !linux

package plugin

import (
	"github.com/tetratelabs/wazero/experimental"

	"github.com/greenroom-dev/greenroom/runtime/plugin/instrument"
)

// Elsewhere wazero's own allocator backs linear memory.
var memoryAllocator experimental.MemoryAllocator

// newImageAllocator copies the image into each instance's memory.
func newImageAllocator(segs []instrument.Segment) experimental.MemoryAllocator {
	return newCopyAllocator(nil, segs)
}
