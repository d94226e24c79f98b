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
	uleb := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	sleb := func(b []byte, v int32) []byte {
		for {
			c := byte(v & 0x7f)
			v >>= 7
			if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
				return append(b, c)
			}
			b = append(b, c|0x80)
		}
	}
	section := func(id byte, body []byte) []byte { return append(uleb([]byte{id}, len(body)), body...) }
	name := func(b []byte, s string) []byte { return append(uleb(b, len(s)), s...) }
	types := []byte{3, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7f, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f}
	imports := append(name(name([]byte{1}, "wasi_snapshot_preview1"), fn), 0x00, 2)
	exports := name(uleb(nil, 3), "memory")
	exports = append(exports, 0x02, 0)
	exports = append(name(exports, "greenroom_abi_v1"), 0x00, 1)
	exports = append(name(exports, "greenroom_handle"), 0x00, 2)
	handle := []byte{0, 0x41}
	handle = sleb(handle, fd)
	handle = append(handle, 0x41, 0, 0x41)
	handle = sleb(handle, count)
	handle = append(handle, 0x41)
	handle = sleb(handle, 131000)
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
