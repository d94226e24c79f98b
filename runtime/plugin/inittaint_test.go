package plugin

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// blockingHost's config_get holds the guest's thread for delay, as a
// host call the deadline cuts short only once it comes back (a URL read
// ended at the deadline, a log write held up by the log's output) does.
type blockingHost struct {
	testHost
	delay time.Duration
}

func (h blockingHost) Config(string) (string, bool) {
	time.Sleep(h.delay)
	return "", false
}

// hostCallInitModule is an ABI v1 reactor whose _initialize makes one
// host call (config_get of 0 bytes) and returns at once, passing no
// interruption check after it; greenroom_handle passes one (a loop) and
// returns 0 having written nothing.
func hostCallInitModule() []byte {
	// (drop (call $config_get (i32.const 0) (i32.const 0)))
	return hostCallModule("_initialize", 0, []byte{0, 0x41, 0, 0x41, 0, 0x10, 0, 0x1a, 0x0b})
}

// hostCallModule is an ABI v1 reactor with greenroom_handle as in
// hostCallInitModule, and function 3, of type typ (0 () -> (), 1 (i32) ->
// i32, 2 (i32 i32) -> i32) and with body, exported as export; function 0
// is the import greenroom.config_get.
func hostCallModule(export string, typ byte, body []byte) []byte {
	uleb := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	section := func(id byte, body []byte) []byte { return append(uleb([]byte{id}, len(body)), body...) }
	name := func(b []byte, s string) []byte { return append(uleb(b, len(s)), s...) }
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	wasm = append(wasm, section(1, []byte{3, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7f, 0x60, 2, 0x7f, 0x7f, 1, 0x7f})...)
	imports := name(name([]byte{1}, "greenroom"), "config_get") // function 0
	wasm = append(wasm, section(2, append(imports, 0x00, 2))...)
	// Functions: 1 greenroom_abi_v1, 2 greenroom_handle, 3 export.
	wasm = append(wasm, section(3, []byte{3, 0, 1, typ})...)
	wasm = append(wasm, section(5, []byte{1, 0, 1})...)
	exports := append(name([]byte{4}, "memory"), 0x02, 0)
	exports = append(name(exports, "greenroom_abi_v1"), 0x00, 1)
	exports = append(name(exports, "greenroom_handle"), 0x00, 2)
	exports = append(name(exports, export), 0x00, 3)
	wasm = append(wasm, section(7, exports)...)
	bodies := [][]byte{
		{0, 0x0b},                            // greenroom_abi_v1
		{0, 0x03, 0x40, 0x0b, 0x41, 0, 0x0b}, // (loop) (i32.const 0)
		body,
	}
	code := uleb(nil, len(bodies))
	for _, b := range bodies {
		code = append(uleb(code, len(b)), b...)
	}
	return append(wasm, section(10, code)...)
}

// An initializer that returns after its deadline fired, from a host call
// that outlasted it, ran past the init timeout like one the checks
// interrupted: the load fails. The instance was kept before, with the
// interrupt flag the deadline had set, and its first request trapped at
// its first check (500 plugin_trap, "unreachable", for a request that did
// nothing wrong; an audit).
func TestInitializerReturningPastItsDeadline(t *testing.T) {
	lim := testLimits()
	lim.InitTimeout = 100 * time.Millisecond
	log := logrus.NewEntry(logrus.New())
	p, err := Load(context.Background(), Spec{ID: "late", Wasm: hostCallInitModule(), Limits: lim, Cache: testCache,
		Host: blockingHost{testHost{log: log}, 300 * time.Millisecond}, Log: log})
	if err == nil {
		_, _, cerr := get(p, "/")
		p.Close(context.Background())
		t.Fatalf("Load succeeded (its first request: %v), want the init timeout", cerr)
	}
	if !strings.Contains(err.Error(), "guest initializer ran past the init timeout of 100ms") {
		t.Errorf("Load = %v, want the init timeout named", err)
	}

	// Within its deadline, the same initializer loads and the instance
	// serves.
	lim.InitTimeout = 5 * time.Second
	p, err = Load(context.Background(), Spec{ID: "late", Wasm: hostCallInitModule(), Limits: lim, Cache: testCache,
		Host: blockingHost{testHost{log: log}, 10 * time.Millisecond}, Log: log})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	defer p.Close(context.Background())
	if _, _, err := get(p, "/"); KindOf(err) != FailBadResponse {
		t.Errorf("call = %v, want the guest's empty answer refused (bad_response), not a trap", err)
	}
}

// failingInitHost's config_get fails the call (a host function's panic
// traps the guest) while fail is set: the initializer of hostCallInitModule
// then fails.
type failingInitHost struct {
	testHost
	fail *atomic.Bool
}

func (h failingInitHost) Config(string) (string, bool) {
	if h.fail.Load() {
		panic(errors.New("the initializer's dependency is down"))
	}
	return "", false
}

// A call that needs a new instance, whose initializer fails (a URL the
// plugin reads as it starts is down), fails as FailInstantiate (500
// plugin_instantiate, docs/sandbox.md "Failures"); once initializers
// succeed again, calls get instances again.
func TestReplacementInitializerFails(t *testing.T) {
	var fail atomic.Bool
	lim := testLimits()
	lim.Instances = 1
	log := logrus.NewEntry(logrus.New())
	log.Logger.SetLevel(logrus.ErrorLevel)
	p, err := Load(context.Background(), Spec{ID: "flaky", Wasm: hostCallInitModule(), Limits: lim, Cache: testCache,
		Host: failingInitHost{testHost{log: log}, &fail}, Log: log})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	defer p.Close(context.Background())
	fail.Store(true)
	// The guest answers nothing: a bad response, and its instance is
	// discarded; its successor cannot start.
	if _, _, err := get(p, "/"); KindOf(err) != FailBadResponse {
		t.Fatalf("first call = %v, want bad_response", err)
	}
	if _, _, err := get(p, "/"); KindOf(err) != FailInstantiate || !strings.Contains(err.Error(), "guest initializer (trap)") {
		t.Errorf("call with no instance to be had = %v, want instantiate naming the initializer's trap", err)
	}
	fail.Store(false)
	if _, _, err := get(p, "/"); KindOf(err) != FailBadResponse {
		t.Errorf("call once initializers succeed = %v, want the guest's own bad_response", err)
	}
}
