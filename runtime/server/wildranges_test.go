package server_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
)

// Every host function that takes a guest buffer (pointer, length) traps
// when any byte of it lies outside guest memory, whatever the plugin was
// granted, with a log line naming the function and the range: past the
// end, at the top of the 32-bit space, a length that wraps the address
// space, a length of 2 GiB and more. The call answers 500 plugin_trap,
// the instance is discarded, and the plugin and the others keep serving.
// A length of 0 reads nothing, wherever it points: no trap, the
// function's ordinary answer (a refusal of a capability not granted
// names it).
func TestWildRangesTrapInEveryHostFunction(t *testing.T) {
	wasm := guesttest.Build(t, "runtime/server/testdata/guests/wildranges")
	in := start(t, fmt.Sprintf(`
[database]
client = "sqlite"
connection = "file:%s"
[plugins.wild]
path = %q
[plugins.wild.capabilities]
database = true
scheduler = true
urlreader = ["example.com"]
[plugins.bare]
path = %q
[plugins.hello]
path = %q
`, t.TempDir(), wasm, wasm, helloWasm))
	fns := []string{"request_read", "response_write", "result_read", "config_get", "public_route", "log_write",
		"db_exec", "db_query", "db_migrations", "urlreader_call", "task_register"}
	wild := [][2]uint32{{0xffffffff, 1}, {0xfffffff0, 100}, {1, 0xffffffff}, {0x7fffffff, 0x7fffffff}, {0x10, 0x80000000}}
	capability := map[string]string{"db_exec": `"database"`, "db_query": `"database"`, "db_migrations": `"database"`,
		"urlreader_call": "urlreader", "task_register": `"scheduler"`}
	for _, id := range []string{"wild", "bare"} {
		for _, fn := range fns {
			for _, r := range wild {
				status, _, body := in.Get(t, fmt.Sprintf("/api/%s/call?fn=%s&ptr=%d&len=%d", id, fn, r[0], r[1]))
				if status != 500 || !strings.Contains(body, `"code":"plugin_trap"`) {
					t.Errorf("%s: %s(%#x, %#x): %d %s, want 500 plugin_trap", id, fn, r[0], r[1], status, body)
				}
				reason := fmt.Sprintf("greenroom.%s: range [%d, %d) is outside guest memory", fn, r[0], uint64(r[0])+uint64(r[1]))
				if !strings.Contains(in.Log.String(), reason) {
					t.Errorf("%s: %s(%#x, %#x): no log line saying %q", id, fn, r[0], r[1], reason)
				}
			}
			status, _, body := in.Get(t, fmt.Sprintf("/api/%s/call?fn=%s&ptr=%d&len=0", id, fn, uint32(0xffffffff)))
			code, msg, _ := strings.Cut(body, " ")
			if n, err := strconv.Atoi(code); status != 200 || err != nil || n > 0 {
				t.Errorf("%s: %s(0xffffffff, 0): %d %q, want 200 and the function's answer", id, fn, status, body)
			}
			if c := capability[fn]; id == "bare" && c != "" && (code != "-2" || !strings.Contains(msg, c) || !strings.Contains(msg, "not granted to plugin bare")) {
				t.Errorf("bare: %s without the capability: %q, want ERR_DENIED naming %s", fn, body, c)
			}
		}
	}
	for _, p := range []string{"/api/hello/ping", "/api/wild/ok", "/api/bare/ok"} {
		if status, _, body := in.Get(t, p); status != 200 {
			t.Errorf("%s after the traps: %d %s", p, status, body)
		}
	}
}
