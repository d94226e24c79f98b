package floor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// GuestDir is the guest's source directory relative to the module root;
// runtime/build's Build makes a module of it as `greenroom plugin build`
// does.
const GuestDir = "bench/floor/guest"

// Guest is the built guest, instantiated once in a wazero runtime of its
// own: wazero's defaults (its optimizing compiler on amd64 and arm64), no
// memory limit, no interruption, no host functions but WASI's.
type Guest struct {
	rt   wazero.Runtime
	work api.Function
}

// LoadGuest compiles and instantiates the guest module in wasm.
func LoadGuest(ctx context.Context, wasm []byte) (*Guest, error) {
	rt := wazero.NewRuntime(ctx)
	g := &Guest{rt: rt}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		g.Close(ctx)
		return nil, fmt.Errorf("floor guest: WASI: %w", err)
	}
	cfg := wazero.NewModuleConfig().WithStartFunctions("_initialize").WithSysWalltime().WithSysNanotime()
	mod, err := rt.InstantiateWithConfig(ctx, wasm, cfg)
	if err != nil {
		g.Close(ctx)
		return nil, fmt.Errorf("floor guest: instantiate: %w", err)
	}
	if g.work = mod.ExportedFunction("work"); g.work == nil {
		g.Close(ctx)
		return nil, errors.New("floor guest: no work export")
	}
	return g, nil
}

// Work runs the listing n times in the guest and returns the bytes encoded
// in all.
func (g *Guest) Work(ctx context.Context, n int) (int64, error) {
	res, err := g.work.Call(ctx, uint64(n))
	if err != nil {
		return 0, fmt.Errorf("floor guest: work: %w", err)
	}
	if total := int64(res[0]); total >= 0 {
		return total, nil
	}
	return 0, errors.New("floor guest: the listing failed inside the guest")
}

// Close frees the guest's runtime.
func (g *Guest) Close(ctx context.Context) error { return g.rt.Close(ctx) }

// NativeWork runs the listing n times in this process and returns the bytes
// encoded in all.
func NativeWork(n int) (int64, error) {
	var total int64
	for range n {
		k, err := Work()
		if err != nil {
			return 0, err
		}
		total += int64(k)
	}
	return total, nil
}

// Result is the time of one listing, natively and in the guest, per round
// in the order run: the process's CPU time (all threads, so a native
// garbage collector working on another core counts) where the platform
// tells it, else wall time.
type Result struct {
	Native, Wasm []time.Duration
}

// Measure alternates rounds of the listing natively and in g, each round
// running batches until it has taken at least roundTime of wall time, and
// gives each round's time per listing. Both sides must encode as many
// bytes per listing as one native listing does, or Measure fails.
func Measure(ctx context.Context, g *Guest, rounds int, roundTime time.Duration) (Result, error) {
	var res Result
	want, err := NativeWork(1)
	if err != nil {
		return res, err
	}
	round := func(run func(n int) (int64, error)) (time.Duration, error) {
		var n int
		start, cpu0 := time.Now(), cpuTime()
		for batch := 1; ; batch = min(batch*2, 1024) {
			total, err := run(batch)
			if err != nil {
				return 0, err
			}
			if total != want*int64(batch) {
				return 0, fmt.Errorf("floor: %d listings encoded %d bytes, want %d", batch, total, want*int64(batch))
			}
			n += batch
			if el := time.Since(start); el >= roundTime || ctx.Err() != nil {
				if cpu := cpuTime() - cpu0; cpu0 > 0 && cpu > 0 {
					el = cpu
				}
				return el / time.Duration(n), ctx.Err()
			}
		}
	}
	wasm := func(n int) (int64, error) { return g.Work(ctx, n) }
	// One unrecorded round each: the guest's heap grows to its working
	// size, both sides' code and data reach the caches.
	for _, run := range []func(int) (int64, error){NativeWork, wasm} {
		if _, err := round(run); err != nil {
			return res, err
		}
	}
	for range rounds {
		d, err := round(NativeWork)
		if err != nil {
			return res, err
		}
		res.Native = append(res.Native, d)
		if d, err = round(wasm); err != nil {
			return res, err
		}
		res.Wasm = append(res.Wasm, d)
	}
	return res, nil
}
