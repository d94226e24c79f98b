package hostfuncs

import (
	"context"

	"github.com/tetratelabs/wazero/api"
)

// GCTuning is what the runtime tells a Go guest's garbage collector
// (docs/abi.md, "Garbage collector"). A guest has no environment
// variables, so GOMEMLIMIT and GOGC reach it this way, and the guest SDK
// applies them with runtime/debug while it initializes.
type GCTuning struct {
	// MemoryLimit is the soft limit, in bytes, for the memory the guest's
	// Go runtime manages (debug.SetMemoryLimit); 0 for none.
	MemoryLimit uint64
	// Percent is GOGC (debug.SetGCPercent): 0 leaves the Go default (100),
	// -1 turns the proportional collector off, so that only MemoryLimit
	// starts a collection.
	Percent int32
}

// gc_memory_limit() -> i32
//
// Returns the soft memory limit for the guest's garbage collector in KiB
// (rounded down), 0 for none. Never fails.
func gcMemoryLimit(ctx context.Context, _ api.Module, stack []uint64) {
	in := instanceFrom(ctx, "gc_memory_limit")
	stack[0] = api.EncodeI32(int32(min(in.GC.MemoryLimit>>10, 1<<31-1)))
}

// gc_percent() -> i32
//
// Returns the GOGC value for the guest's garbage collector: 0 to keep the
// default, -1 for off, else a percentage. Never fails.
func gcPercent(ctx context.Context, _ api.Module, stack []uint64) {
	in := instanceFrom(ctx, "gc_percent")
	stack[0] = api.EncodeI32(in.GC.Percent)
}
