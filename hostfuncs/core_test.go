package hostfuncs

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tetratelabs/wazero/api"
)

// request_read checks the whole buffer the guest names, not only the part
// the envelope fills: a buffer past the end of memory traps, however short
// the envelope.
func TestRequestReadChecksTheWholeBuffer(t *testing.T) {
	in := &Instance{Request: []byte("envelope")}
	mem := module{mem: memory{b: make([]byte, 64<<10)}}
	call := bufferCall(requestRead, in, mem)
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

// result_read traps on a buffer that is not entirely inside memory, however
// short the result slot is (an empty slot included), as request_read does.
func TestResultReadChecksTheWholeBuffer(t *testing.T) {
	in := &Instance{}
	mem := module{mem: memory{b: make([]byte, 64<<10)}}
	call := bufferCall(resultRead, in, mem)
	var te *TrapError
	for _, slot := range []string{"", "ok"} {
		in.result = []byte(slot)
		if code, trap := call(0, 2); int(code) != len(slot) || trap != nil || string(mem.mem.b[:len(slot)]) != slot {
			t.Errorf("slot %q, a buffer inside memory: %d %v", slot, code, trap)
		}
		if code, trap := call(0xffffffff, 0); code != 0 || trap != nil {
			t.Errorf("slot %q, an empty buffer anywhere: %d %v, want 0 and no trap", slot, code, trap)
		}
		for _, b := range [][2]uint32{{0xffffffff, 2}, {64<<10 - 1, 512}, {0, 0xffffffff}} {
			if _, trap := call(b[0], b[1]); !errors.As(trap, &te) {
				t.Errorf("slot %q, buffer [%d, +%d) in 64 KiB of memory: %v, want a trap", slot, b[0], b[1], trap)
			}
		}
	}
}

// response_write's refusal of a response over limits.max_response tells
// the guest the limit in bytes, or, when it came from the environment (a
// config secret), not at all: "response exceeds 65536 bytes" for "64KiB"
// is not matched by the redaction of the secret as written.
func TestResponseWriteOverASecretLimitNotTold(t *testing.T) {
	for _, secret := range []bool{false, true} {
		in := &Instance{MaxResponse: 4, MaxResponseSecret: secret}
		mem := module{mem: memory{b: make([]byte, 64<<10)}}
		if code, trap := bufferCall(responseWrite, in, mem)(0, 8); code >= 0 || trap != nil || !in.ResponseOverflow {
			t.Fatalf("secret %t: 8 bytes over a limit of 4: %d %v", secret, code, trap)
		}
		want := "response exceeds 4 bytes"
		if secret {
			want = "response exceeds limits.max_response ([REDACTED])"
		}
		if got := string(in.result); got != want {
			t.Errorf("secret %t: %q, want %q", secret, got, want)
		}
	}
}

// bufferCall calls a host function taking (buf_ptr, buf_len) for in and
// returns its result, or the trap it panicked with.
func bufferCall(fn func(context.Context, api.Module, []uint64), in *Instance, mem api.Module) func(ptr, n uint32) (int32, error) {
	return func(ptr, n uint32) (code int32, trap error) {
		defer func() {
			if r := recover(); r != nil {
				trap, _ = r.(error)
			}
		}()
		stack := []uint64{api.EncodeU32(ptr), api.EncodeU32(n)}
		fn(WithInstance(context.Background(), in), mem, stack)
		return api.DecodeI32(stack[0]), nil
	}
}

// redactHost is a Host that redacts one secret from the messages Fail
// hands it, counting them.
type redactHost struct {
	Host
	secret string
	calls  int
}

func (h *redactHost) RedactMessage(b []byte) []byte {
	h.calls++
	return bytes.ReplaceAll(b, []byte(h.secret), []byte("[REDACTED]"))
}

// A message over MaxMessage has the plugin's secrets redacted before it
// is cut, so that the cut cannot leave the first part of one (a database
// error echoing a long value); a message within the bound is not looked
// at.
func TestFailRedactsBeforeItCuts(t *testing.T) {
	const secret = "PluginSecret_9q8w7e"
	h := &redactHost{secret: secret}
	in := &Instance{Host: h}
	// The cut keeps MaxMessage-17 bytes and the SQLSTATE: the secret
	// starts 8 bytes before it.
	in.Fail(ErrFailed, "syntax error at or near \"'%s%s\" (SQLSTATE 42601)", strings.Repeat("a", MaxMessage-17-8-26), secret)
	if got := string(in.result); strings.Contains(got, secret[:4]) || len(got) > MaxMessage || !strings.HasSuffix(got, "aaa[REDACTE (SQLSTATE 42601)") {
		t.Errorf("message ends %q", got[max(0, len(got)-60):])
	}
	in.Fail(ErrFailed, "short %s", secret)
	if h.calls != 1 || string(in.result) != "short "+secret {
		t.Errorf("a short message: %d calls, %q", h.calls, in.result)
	}
}

// A message cut to MaxMessage keeps the SQLSTATE a database error ends
// with, which the guest reads there.
func TestFailKeepsSQLState(t *testing.T) {
	in := &Instance{}
	long := strings.Repeat("é", MaxMessage) + " (SQLSTATE 23505)"
	in.Fail(ErrFailed, "%s", long)
	if len(in.result) > MaxMessage || !utf8.Valid(in.result) || !strings.HasSuffix(string(in.result), "é (SQLSTATE 23505)") {
		t.Errorf("cut message: %d bytes, ends %q", len(in.result), in.result[max(0, len(in.result)-30):])
	}
	in.Fail(ErrFailed, "%s", strings.Repeat("x", MaxMessage+10))
	if len(in.result) != MaxMessage {
		t.Errorf("a message without one: %d bytes", len(in.result))
	}
}

// Every host function that takes a buffer traps, naming itself, when any
// of the buffer lies outside memory: past its end, wrapping past 2^32, or
// 4 GiB long; before it looks at the plugin's grants or at the bytes. A
// buffer of no bytes is nobody's and never traps, wherever it points.
func TestEveryBufferCheckedWhole(t *testing.T) {
	mem := module{mem: memory{b: make([]byte, 64<<10)}}
	n := 0
	for _, f := range Functions() {
		if len(f.Params) != 2 || !strings.HasSuffix(f.Params[0], "_ptr") || !strings.HasSuffix(f.Params[1], "_len") {
			continue
		}
		n++
		call := bufferCall(f.fn.Call, &Instance{Initializing: true}, mem)
		for _, b := range [][2]uint32{{64<<10 - 1, 2}, {64 << 10, 1}, {0xfffffff0, 0x100}, {0xffffffff, 1}, {0, 0xffffffff}, {0x80000000, 0x80000000}} {
			var te *TrapError
			if code, trap := call(b[0], b[1]); !errors.As(trap, &te) || te.Func != f.Name {
				t.Errorf("%s(%#x, %#x) in 64 KiB of memory: %d, %v; want a trap naming %s", f.Name, b[0], b[1], code, trap, f.Name)
			}
		}
	}
	if n < 10 {
		t.Errorf("%d host functions take a buffer, want every one of them checked", n)
	}
	if b := guestBytes(mem, "x", 0xffffffff, 0); b != nil {
		t.Errorf("an empty buffer at 0xffffffff: %v", b)
	}
}

// routeHost records the routes public_route passes on.
type routeHost struct {
	Host
	routes []string
}

func (h *routeHost) PublicRoute(path string) error {
	h.routes = append(h.routes, path)
	return nil
}

// public_route refuses a path longer than any route before it copies it
// out of the guest's memory: a path of the whole memory was copied onto
// the host's heap (up to 4 GiB at each call of an initializer) for the
// host to refuse it.
func TestPublicRouteTooLongNotCopied(t *testing.T) {
	h := &routeHost{}
	in := &Instance{Host: h, Initializing: true}
	mem := module{mem: memory{b: make([]byte, 64<<20)}}
	copy(mem.mem.b, "/ping")
	call := bufferCall(publicRoute, in, mem)
	if code, trap := call(0, 5); code != 0 || trap != nil || len(h.routes) != 1 || h.routes[0] != "/ping" {
		t.Fatalf("/ping: %d %v %q", code, trap, h.routes)
	}
	if code, trap := call(0, MaxPublicRoute); code != 0 || trap != nil || len(h.routes) != 2 {
		t.Fatalf("a route of %d bytes: %d %v, want it passed on", MaxPublicRoute, code, trap)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	code, trap := call(0, 64<<20)
	runtime.ReadMemStats(&after)
	if code != ErrInvalid || trap != nil || len(h.routes) != 2 {
		t.Fatalf("a route of 64 MiB: %d %v (%d routes passed on), want ErrInvalid", code, trap, len(h.routes))
	}
	if msg := string(in.result); !strings.Contains(msg, "route of 67108864 bytes is longer than 1024") {
		t.Errorf("message %q, want it to name the length and the bound", msg)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("refusing a route of 64 MiB allocated %d bytes", n)
	}
}
