package plugin

import (
	"context"
	"fmt"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// maxWASIVectors is the most buffers (iovecs) a WASI read or write and the
// most subscriptions a poll_oneoff may name: Linux's IOV_MAX. A Go guest
// names one or two.
const maxWASIVectors = 1024

// wasiBounds is a listener on wazero's WASI functions that loop over a
// count the guest chooses (fd_read, fd_write and their p-variants over
// their buffers, poll_oneoff over its subscriptions) without looking at
// the call's deadline: a guest that named hundreds of millions of empty
// buffers of its zeroed memory held a core for seconds past its timeout
// (22 s with limits.timeout = "1s" and a 4 GiB memory, an audit). A call
// naming more than maxWASIVectors traps before wazero's loop runs.
type wasiBounds struct {
	name string
	arg  int // the count's parameter
}

// wasiBoundsFactory puts wasiBounds on the functions it names and no
// listener on the others (no cost on their calls).
type wasiBoundsFactory struct{}

func (wasiBoundsFactory) NewFunctionListener(def api.FunctionDefinition) experimental.FunctionListener {
	switch name := def.Name(); name {
	case "fd_read", "fd_write", "fd_pread", "fd_pwrite", "poll_oneoff":
		return wasiBounds{name: name, arg: 2}
	}
	return nil
}

func (l wasiBounds) Before(_ context.Context, _ api.Module, _ api.FunctionDefinition, params []uint64, _ experimental.StackIterator) {
	if len(params) > l.arg {
		if n := uint32(params[l.arg]); n > maxWASIVectors {
			panic(fmt.Errorf("wasi_snapshot_preview1.%s: %d %s, more than the %d this runtime takes", l.name, n, l.what(), maxWASIVectors))
		}
	}
}

func (l wasiBounds) what() string {
	if l.name == "poll_oneoff" {
		return "subscriptions"
	}
	return "buffers"
}

func (wasiBounds) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {}

func (wasiBounds) Abort(context.Context, api.Module, api.FunctionDefinition, error) {}
