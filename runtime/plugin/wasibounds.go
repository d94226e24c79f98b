package plugin

import (
	"context"
	"fmt"
	"strings"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// maxWASIVectors is the most buffers (iovecs) a WASI read or write and the
// most subscriptions a poll_oneoff may name: Linux's IOV_MAX. A Go guest
// names one or two.
const maxWASIVectors = 1024

// maxWASIPath is the longest path a WASI path function (path_open,
// path_unlink_file, path_rename, ...) may name: Linux's PATH_MAX. wazero
// copies the whole path out of the guest's memory and cleans it (a second
// copy) before it looks at the directory descriptor, which a plugin, with
// no preopened directories, never has: an audit's guest named its whole
// 1 GiB memory as a path and held its call 25 s past a 200 ms timeout,
// the host allocating 2 GiB for it. A Go guest calls none of them (its
// os.Open fails before, finding no preopen).
const maxWASIPath = 4096

// wasiBounds is a listener on wazero's WASI functions that loop over a
// count the guest chooses (fd_read, fd_write and their p-variants over
// their buffers, poll_oneoff over its subscriptions) without looking at
// the call's deadline: a guest that named hundreds of millions of empty
// buffers of its zeroed memory held a core for seconds past its timeout
// (22 s with limits.timeout = "1s" and a 4 GiB memory, an audit). A call
// naming more than maxWASIVectors traps before wazero's loop runs.
type wasiBounds struct {
	name string
	arg  int // the count's parameter, or -1
	// paths are the parameters that are the length of a path the
	// function reads from the guest's memory (maxWASIPath).
	paths []int
}

// wasiBoundsFactory puts wasiBounds on the functions it names and no
// listener on the others (no cost on their calls).
type wasiBoundsFactory struct{}

func (wasiBoundsFactory) NewFunctionListener(def api.FunctionDefinition) experimental.FunctionListener {
	switch name := def.Name(); name {
	case "fd_read", "fd_write", "fd_pread", "fd_pwrite", "poll_oneoff":
		return wasiBounds{name: name, arg: 2}
	}
	// Every path the guest passes in (path, old_path, new_path: not
	// fd_prestat_dir_name's result.path, which wazero writes only for a
	// preopen).
	var paths []int
	for i, p := range def.ParamNames() {
		if strings.HasSuffix(p, "path_len") && !strings.HasPrefix(p, "result.") {
			paths = append(paths, i)
		}
	}
	if len(paths) > 0 {
		return wasiBounds{name: def.Name(), arg: -1, paths: paths}
	}
	return nil
}

func (l wasiBounds) Before(_ context.Context, _ api.Module, _ api.FunctionDefinition, params []uint64, _ experimental.StackIterator) {
	if l.arg >= 0 && len(params) > l.arg {
		if n := uint32(params[l.arg]); n > maxWASIVectors {
			panic(fmt.Errorf("wasi_snapshot_preview1.%s: %d %s, more than the %d this runtime takes", l.name, n, l.what(), maxWASIVectors))
		}
	}
	for _, i := range l.paths {
		if i < len(params) {
			if n := uint32(params[i]); n > maxWASIPath {
				panic(fmt.Errorf("wasi_snapshot_preview1.%s: a path of %d bytes, more than the %d this runtime takes", l.name, n, maxWASIPath))
			}
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
