package plugin

import (
	"encoding/binary"
	"strings"
	"testing"
)

// wasiCallModule is a loadable module whose greenroom_handle calls the
// WASI function fn (fd_read, fd_write or poll_oneoff: four i32s, one i32
// back) as fn(fd, 0, count, 131000) over its zeroed memory (two pages),
// then returns 0.
func wasiCallModule(fn string, fd, count int32) []byte {
	return wasiArgsModule(fn, []byte{0x7f, 0x7f, 0x7f, 0x7f}, []int64{int64(fd), 0, int64(count), 131000})
}

// WASI calls whose work wazero loops over a count the guest chooses are
// refused past maxWASIVectors: an audit's guest named hundreds of millions
// of empty buffers (or zeroed poll subscriptions) of its memory and held a
// core 22 s past a 1 s timeout. A count a guest uses runs as before.
func TestWASIVectorCountsBounded(t *testing.T) {
	for _, tc := range []struct {
		fn string
		fd int32
	}{{"fd_write", 1}, {"fd_read", 0}, {"poll_oneoff", 0}} {
		for _, count := range []int32{1, maxWASIVectors, maxWASIVectors + 1, 1 << 30} {
			p := load(t, wasiCallModule(tc.fn, tc.fd, count), testLimits())
			_, _, err := get(p, "/")
			refused := err != nil && strings.Contains(err.Error(), "more than the 1024 this runtime takes")
			if want := count > maxWASIVectors; refused != want {
				t.Errorf("%s with a count of %d: %v, want refused %v", tc.fn, count, err, want)
			}
			if refused && KindOf(err) != FailTrap {
				t.Errorf("%s with a count of %d: failure %v, want a trap", tc.fn, count, KindOf(err))
			}
			p.Close(t.Context())
		}
	}
}

// wasiArgsModule is a loadable module (memory of two pages) whose
// greenroom_handle calls the WASI function fn, of the parameter types
// params (i32 0x7f or i64 0x7e) and one i32 result, with the arguments
// args, then returns 0.
func wasiArgsModule(fn string, params []byte, args []int64) []byte {
	uleb := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	section := func(id byte, body []byte) []byte { return append(uleb([]byte{id}, len(body)), body...) }
	name := func(b []byte, s string) []byte { return append(uleb(b, len(s)), s...) }
	types := []byte{3, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7f, 0x60}
	types = append(uleb(types, len(params)), params...)
	types = append(types, 1, 0x7f)
	imports := append(name(name([]byte{1}, "wasi_snapshot_preview1"), fn), 0x00, 2)
	exports := name(uleb(nil, 3), "memory")
	exports = append(exports, 0x02, 0)
	exports = append(name(exports, "greenroom_abi_v1"), 0x00, 1)
	exports = append(name(exports, "greenroom_handle"), 0x00, 2)
	sleb := func(b []byte, v int64) []byte {
		for {
			c := byte(v & 0x7f)
			v >>= 7
			if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
				return append(b, c)
			}
			b = append(b, c|0x80)
		}
	}
	handle := []byte{0}
	for i, a := range args {
		op := byte(0x41) // i32.const
		if params[i] == 0x7e {
			op = 0x42 // i64.const
		}
		handle = sleb(append(handle, op), a)
	}
	handle = append(handle, 0x10, 0, 0x1a, 0x41, 0, 0x0b) // call 0, drop, i32.const 0, end
	code := uleb(nil, 2)
	code = append(uleb(code, 2), 0, 0x0b)
	code = append(uleb(code, len(handle)), handle...)
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	wasm = append(wasm, section(1, types)...)
	wasm = append(wasm, section(2, imports)...)
	wasm = append(wasm, section(3, []byte{2, 0, 1})...)
	wasm = append(wasm, section(5, []byte{1, 0, 2})...)
	wasm = append(wasm, section(7, exports)...)
	return append(wasm, section(10, code)...)
}

// A WASI path function is refused a path longer than maxWASIPath before
// wazero copies it: wazero copies the whole path out of the guest's
// memory, and cleans it into a second copy, before it finds that the
// descriptor is no preopened directory (a plugin has none). An audit's
// guest named its 1 GiB memory as a path to path_unlink_file and held its
// call 25 s past a 200 ms timeout, the host allocating 2 GiB for it.
func TestWASIPathLengthsBounded(t *testing.T) {
	const i32, i64 = 0x7f, 0x7e
	for _, tc := range []struct {
		fn     string
		params []byte
		lens   []int // the path lengths' parameters
	}{
		{"path_unlink_file", []byte{i32, i32, i32}, []int{2}},
		{"path_create_directory", []byte{i32, i32, i32}, []int{2}},
		{"path_remove_directory", []byte{i32, i32, i32}, []int{2}},
		{"path_open", []byte{i32, i32, i32, i32, i32, i64, i64, i32, i32}, []int{3}},
		{"path_filestat_get", []byte{i32, i32, i32, i32, i32}, []int{3}},
		{"path_filestat_set_times", []byte{i32, i32, i32, i32, i64, i64, i32}, []int{3}},
		{"path_readlink", []byte{i32, i32, i32, i32, i32, i32}, []int{2}},
		{"path_link", []byte{i32, i32, i32, i32, i32, i32, i32}, []int{3, 6}},
		{"path_rename", []byte{i32, i32, i32, i32, i32, i32}, []int{2, 5}},
		{"path_symlink", []byte{i32, i32, i32, i32, i32}, []int{1, 4}},
	} {
		for _, at := range tc.lens {
			for _, n := range []int64{maxWASIPath, maxWASIPath + 1, 1 << 17} {
				args := make([]int64, len(tc.params))
				args[0] = 3 // a descriptor (path_symlink's old path here)
				for _, l := range tc.lens {
					args[l] = 8
				}
				args[at] = n
				p := load(t, wasiArgsModule(tc.fn, tc.params, args), testLimits())
				_, _, err := get(p, "/")
				refused := err != nil && strings.Contains(err.Error(), "bytes, more than the 4096 this runtime takes")
				// Not refused, the call returns (and, writing no
				// response, is a bad one).
				if want := n > maxWASIPath; refused != want || !refused && KindOf(err) != FailBadResponse {
					t.Errorf("%s with a path of %d bytes (parameter %d): %v, want refused %v", tc.fn, n, at, err, want)
				}
				if refused && (KindOf(err) != FailTrap || !strings.Contains(err.Error(), tc.fn)) {
					t.Errorf("%s with a path of %d bytes: %v (%v), want a trap naming the function", tc.fn, n, err, KindOf(err))
				}
				p.Close(t.Context())
			}
		}
	}
}
