package hostfuncs

import (
	"context"
	"errors"
	"testing"

	"github.com/tetratelabs/wazero/api"
)

// request_read checks the whole buffer the guest names, not only the part
// the envelope fills: a buffer past the end of memory traps, however short
// the envelope.
func TestRequestReadChecksTheWholeBuffer(t *testing.T) {
	in := &Instance{Request: []byte("envelope")}
	mem := module{mem: memory{b: make([]byte, 64<<10)}}
	call := func(ptr, n uint32) (code int32, trap error) {
		defer func() {
			if r := recover(); r != nil {
				trap, _ = r.(error)
			}
		}()
		stack := []uint64{api.EncodeU32(ptr), api.EncodeU32(n)}
		requestRead(WithInstance(context.Background(), in), mem, stack)
		return api.DecodeI32(stack[0]), nil
	}
	if code, trap := call(0, 8); code != 8 || trap != nil || string(mem.mem.b[:8]) != "envelope" {
		t.Fatalf("exact buffer: %d %v", code, trap)
	}
	var te *TrapError
	if _, trap := call(0, 0x7fffffff); !errors.As(trap, &te) {
		t.Errorf("a buffer of 2 GiB in 64 KiB of memory: %v, want a trap", trap)
	}
	if _, trap := call(64<<10-4, 8); !errors.As(trap, &te) {
		t.Errorf("a buffer over the end of memory: %v, want a trap", trap)
	}
	if code, trap := call(0, 4); trap != nil || code >= 0 {
		t.Errorf("a short buffer: %d %v, want an error code", code, trap)
	}
}
