package plugin

import (
	"encoding/binary"
	"strings"
	"testing"
)

// i32Const is the instruction i32.const v (signed LEB128).
func i32Const(v int32) []byte {
	b := []byte{0x41}
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// handleModule is a module of one page of memory (ABI v1) whose
// greenroom_handle runs code (instructions, without its end) after
// importing greenroom.response_write as function 0 and WASI proc_exit as
// function 1. With export set, greenroom_handle is that imported function
// instead (0 or 1 would not have its type: it is imported as a third
// function, greenroom.<export>, of type (i32) -> i32).
func handleModule(code []byte, export string) []byte {
	uleb := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	section := func(id byte, body []byte) []byte { return append(uleb([]byte{id}, len(body)), body...) }
	name := func(b []byte, s string) []byte { return append(uleb(b, len(s)), s...) }
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	// types: () -> (), (i32) -> i32, (i32 i32) -> i32, (i32) -> ()
	wasm = append(wasm, section(1, []byte{4, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7f, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 1, 0x7f, 0})...)
	imps, n := []byte{2}, 2
	imps = append(name(name(imps, "greenroom"), "response_write"), 0x00, 2)
	imps = append(name(name(imps, "wasi_snapshot_preview1"), "proc_exit"), 0x00, 3)
	if export != "" {
		imps[0], n = 3, 3
		imps = append(name(name(imps, "greenroom"), export), 0x00, 1)
	}
	wasm = append(wasm, section(2, imps)...)
	wasm = append(wasm, section(3, []byte{2, 0, 1})...) // abi_v1, handle
	wasm = append(wasm, section(5, []byte{1, 0, 1})...)
	handle := n + 1
	if export != "" {
		handle = 2
	}
	exports := name([]byte{3}, "memory")
	exports = append(exports, 0x02, 0)
	exports = append(name(exports, "greenroom_abi_v1"), 0x00, byte(n))
	exports = append(name(exports, "greenroom_handle"), 0x00, byte(handle))
	wasm = append(wasm, section(7, exports)...)
	body := append(append([]byte{0}, code...), 0x0b)
	return append(wasm, section(10, append(uleb(append(uleb([]byte{2}, 2), 0, 0x0b), len(body)), body...))...)
}

// writeOK is the code that writes the response envelope of a 200 with no
// headers and no body (status 200 stored at 0; the rest of memory is
// zero) and returns 0.
var writeOK = []byte{0x41, 0, 0x41, 0xc8, 0x01, 0x36, 2, 0, 0x41, 0, 0x41, 12, 0x10, 0, 0x1a, 0x41, 0}

// responseWriteAt is the code that calls response_write(ptr, n) and
// drops its result.
func responseWriteAt(ptr, n int32) []byte {
	return append(append(i32Const(ptr), i32Const(n)...), 0x10, 0, 0x1a)
}

// Modules written by hand that misuse the ABI at its edges get a clean
// error for the request, with what was wrong, and never a crash: pointers
// and lengths at the end of memory or past it (ptr + len overflowing 32
// bits, a length of -1 read as 4 GiB), a zero length at the end of
// memory (allowed: nothing is read), proc_exit(0) in a handler, a trap
// after a complete response (which is not sent), and a host function
// exported as greenroom_handle, which the runtime then calls directly.
func TestHostileRawModules(t *testing.T) {
	for _, tc := range []struct {
		name   string
		wasm   []byte
		kind   Failure // 0: the call answers 200
		reason string
	}{
		{"zero length at the end of memory", handleModule(append(responseWriteAt(65536, 0), writeOK...), ""), 0, ""},
		{"zero length at -1", handleModule(append(responseWriteAt(-1, 0), writeOK...), ""), 0, ""},
		{"last byte and one past", handleModule(append(responseWriteAt(65535, 2), writeOK...), ""), FailTrap,
			"greenroom.response_write: range [65535, 65537) is outside guest memory of 65536 bytes"},
		{"pointer -1", handleModule(append(responseWriteAt(-1, 2), writeOK...), ""), FailTrap,
			"range [4294967295, 4294967297) is outside guest memory"},
		{"length -1", handleModule(append(responseWriteAt(1, -1), writeOK...), ""), FailTrap,
			"range [1, 4294967296) is outside guest memory"},
		{"proc_exit(0)", handleModule(append(append(writeOK, 0x1a), append(i32Const(0), 0x10, 1, 0x41, 0)...), ""), FailExit,
			"module closed with exit_code(0)"},
		{"trap after a whole response", handleModule(append(append(writeOK, 0x1a), 0x00), ""), FailTrap, "unreachable"},
		{"log_enabled as greenroom_handle", handleModule(i32Const(0), "log_enabled"), FailPanic, ""},
		{"db_begin as greenroom_handle", handleModule(i32Const(0), "db_begin"), FailTrap, "greenroom_handle returned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := load(t, tc.wasm, testLimits())
			for range 2 { // and again, on the instance that replaced it
				status, _, err := get(p, "/")
				switch {
				case tc.kind == 0 && (err != nil || status != 200):
					t.Fatalf("call = %d, %v; want 200", status, err)
				case tc.kind != 0 && (KindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.reason)):
					t.Fatalf("call = %d, %v; want a %s failure saying %q", status, err, tc.kind, tc.reason)
				}
			}
			if created, discarded := p.spec.Counters.Created.Load(), p.spec.Counters.Discarded.Load(); tc.kind != 0 && discarded < 2 {
				t.Errorf("%d instances created, %d discarded; want each failed one discarded", created, discarded)
			}
		})
	}
}
