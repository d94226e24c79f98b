package plugin

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// retireStartModule is a loadable module (memory, ABI v1) that answers 200
// with an empty body and, once initialized, has pages pages of memory:
// declared at start, or, with grow, one page declared and the rest grown
// by its start function.
func retireStartModule(pages int, grow bool) []byte {
	uleb := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	sleb := func(b []byte, v int) []byte { // v < 1<<13: two bytes at most
		if v < 64 {
			return append(b, byte(v))
		}
		return append(b, byte(v&0x7f)|0x80, byte(v>>7))
	}
	section := func(id byte, body []byte) []byte { return append(uleb([]byte{id}, len(body)), body...) }
	name := func(b []byte, s string) []byte { return append(uleb(b, len(s)), s...) }
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	// types: () -> (), (i32) -> i32, (i32 i32) -> i32
	wasm = append(wasm, section(1, []byte{3, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7f, 0x60, 2, 0x7f, 0x7f, 1, 0x7f})...)
	imps := name(name([]byte{1}, "greenroom"), "response_write")
	wasm = append(wasm, section(2, append(imps, 0x00, 2))...)
	wasm = append(wasm, section(3, []byte{3, 0, 1, 0})...) // abi_v1, handle, start
	min := pages
	if grow {
		min = 1
	}
	wasm = append(wasm, section(5, uleb([]byte{1, 0}, min))...)
	exports := name([]byte{3}, "memory")
	exports = append(exports, 0x02, 0)
	exports = append(name(exports, "greenroom_abi_v1"), 0x00, 1)
	exports = append(name(exports, "greenroom_handle"), 0x00, 2)
	wasm = append(wasm, section(7, exports)...)
	wasm = append(wasm, section(8, []byte{3})...)
	// handle: store 200 at 0 (memory is zero: no headers, empty body),
	// response_write(0, 12), return 0.
	handle := []byte{0, 0x41, 0, 0x41, 0xc8, 0x01, 0x36, 2, 0, 0x41, 0, 0x41, 12, 0x10, 0, 0x1a, 0x41, 0, 0x0b}
	start := []byte{0, 0x0b}
	if grow {
		start = append(sleb([]byte{0, 0x41}, pages-1), 0x40, 0, 0x1a, 0x0b) // (drop (memory.grow (pages-1)))
	}
	code := []byte{3}
	for _, b := range [][]byte{{0, 0x0b}, handle, start} {
		code = append(uleb(code, len(b)), b...)
	}
	return append(wasm, section(10, code)...)
}

// A module whose instance, once initialized, is already over
// limits.retire_memory loads, serves, and is said to the operator once, at
// load, naming both sizes: every instance is retired after its first call
// and replaced, so each request runs the initializer again, which it did
// without a word in the log (an audit: 5 requests, 7 instances created, 5
// retired). Whether the memory was declared at start or grown by the
// initializer. At the retire size it is neither retired nor warned about.
func TestInstanceOverRetireMemoryAtStartWarned(t *testing.T) {
	lim := testLimits() // memory 32MiB, retire_memory 24MiB
	lim.Warm = 2        // said once per load, not per instance
	for _, grow := range []bool{false, true} {
		for _, c := range []struct {
			pages   int
			warned  bool
			retired bool
		}{{416, true, true}, {384, false, false}} { // 26 MiB, 24 MiB
			logger, hook := logtest.NewNullLogger()
			p := loadSpec(t, Spec{Wasm: retireStartModule(c.pages, grow), Limits: lim, Log: logrus.NewEntry(logger)})
			var warnings []string
			for _, e := range hook.AllEntries() {
				if strings.Contains(e.Message, "once initialized") {
					warnings = append(warnings, e.Message)
				}
			}
			want := 0
			if c.warned {
				want = 1
			}
			if len(warnings) != want || want == 1 && (!strings.Contains(warnings[0], "an instance uses 26MiB of memory once initialized") || !strings.Contains(warnings[0], "over limits.retire_memory (24MiB)")) {
				t.Errorf("grown by start = %t, %d pages: warnings %q, want %d naming 26MiB and the retire size", grow, c.pages, warnings, want)
			}
			for range 3 {
				if status, _, err := get(p, "/"); err != nil || status != 200 {
					t.Fatalf("grown by start = %t, %d pages: call = %d, %v; want 200", grow, c.pages, status, err)
				}
			}
			if retired := p.spec.Counters.Retired.Load(); (retired > 0) != c.retired {
				t.Errorf("grown by start = %t, %d pages: %d instances retired after 3 calls, want retired: %t", grow, c.pages, retired, c.retired)
			}
		}
	}
}

// The warning names neither limit when it is a secret (from the
// environment, or retire_memory left at 3/4 of such a memory): it
// said "over limits.retire_memory (24MiB)", which the log's redaction of
// the secret as written ("32MiB", or "33554432") does not match.
func TestInstanceOverRetireMemoryWarningHidesSecretLimits(t *testing.T) {
	for _, secret := range []struct{ memory, retire bool }{{true, true}, {false, true}, {true, false}} {
		lim := testLimits() // memory 32MiB, retire_memory 24MiB
		lim.MemorySecret, lim.RetireMemorySecret = secret.memory, secret.retire
		logger, hook := logtest.NewNullLogger()
		loadSpec(t, Spec{Wasm: retireStartModule(416, false), Limits: lim, Log: logrus.NewEntry(logger)})
		var warning string
		for _, e := range hook.AllEntries() {
			if strings.Contains(e.Message, "once initialized") {
				warning = e.Message
			}
		}
		retire, memory := "over limits.retire_memory (24MiB)", "at most limits.memory, 32MiB"
		if secret.retire {
			retire = "over limits.retire_memory ([REDACTED])"
		}
		if secret.memory {
			memory = "at most limits.memory, [REDACTED]"
		}
		if !strings.Contains(warning, "an instance uses 26MiB of memory once initialized") || !strings.Contains(warning, retire) || !strings.Contains(warning, memory) {
			t.Errorf("secret %+v: warning %q, want it to say %q and %q", secret, warning, retire, memory)
		}
	}
}
