//go:build !linux

package plugin

import "github.com/tetratelabs/wazero/experimental"

// Elsewhere wazero's own allocator backs linear memory.
var memoryAllocator experimental.MemoryAllocator
