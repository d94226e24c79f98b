package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

const logsplitSecret = "s3cr3t-value-0123456789"

// startLogsplit starts the logsplit guest with its secret and returns a
// function that GETs one of its paths and returns the log so far. Its
// log_burst is well above what its lines cost (one token per 4 KiB: the
// 1 MiB line of TestPrintedLongLineSplit costs 256), so that the rate
// limit drops none of what these tests look for.
func startLogsplit(t *testing.T) (*servertest.Instance, func(path string) string) {
	t.Helper()
	wasm := guesttest.Build(t, "runtime/server/testdata/guests/logsplit")
	in := start(t, fmt.Sprintf(`[plugins.logsplit]
path = %q
secrets = ["api_key"]
limits = { log_burst = 1000 }
[plugins.logsplit.config]
api_key = %q
`, wasm, logsplitSecret))
	return in, func(path string) string {
		t.Helper()
		if status, _, body := in.Get(t, "/api/logsplit"+path); status != 200 {
			t.Fatalf("%s: %d %s", path, status, body)
		}
		return in.Log.String()
	}
}

// checkNoPartialSecret fails when the log holds any piece of the secret
// (its first or last 6 bytes) outside a whole, redacted secret.
func checkNoPartialSecret(t *testing.T, log string) {
	t.Helper()
	for _, part := range []string{logsplitSecret[:6], logsplitSecret[len(logsplitSecret)-6:]} {
		if i := strings.Index(log, part); i >= 0 {
			t.Errorf("log holds part of the secret, %q: ...%s...", part, log[max(i-60, 0):min(i+60, len(log))])
		}
	}
}

// A printed secret that straddles the 16 KiB cut of a long line is not
// split between two lines (it used to be, half in each, and the redactor,
// which matches whole secrets, missed both halves).
func TestPrintedSecretAcrossLineCut(t *testing.T) {
	_, get := startLogsplit(t)
	var log string
	for _, pad := range []int{16374, 16384 - 8, 16384 - 1, 16384, 3*16384 - 12} {
		log = get(fmt.Sprintf("/straddle?pad=%d", pad))
	}
	checkNoPartialSecret(t, log)
	if n := strings.Count(log, "[REDACTED]"); n != 5 {
		t.Errorf("%d redactions for 5 secrets:\n%.2000s", n, log)
	}
}

// A printed line is bounded by 16 KiB with its newline too: a 1 MiB line
// becomes 64 lines, each counted by the rate limit, not one line of 1 MiB.
func TestPrintedLongLineSplit(t *testing.T) {
	in, get := startLogsplit(t)
	get(fmt.Sprintf("/long?n=%d", 1<<20))
	var n, total int
	for _, l := range logLines(t, in) {
		msg, _ := l["msg"].(string)
		if l["stream"] != "stdout" || !strings.HasPrefix(msg, "y") {
			continue
		}
		if len(msg) > 16<<10 {
			t.Errorf("a line of %d bytes", len(msg))
		}
		n++
		total += len(msg)
	}
	if n != 64 || total != 1<<20 {
		t.Errorf("%d lines of %d bytes in all, want 64 of %d", n, total, 1<<20)
	}
}

// A record over 64 KiB whose secret straddles where the SDK used to cut
// its strings (1 KiB for a value, 8 KiB for the message) leaves no part of
// the secret in the log.
func TestOversizedRecordSecret(t *testing.T) {
	_, get := startLogsplit(t)
	log := get("/record")
	checkNoPartialSecret(t, log)
	for _, want := range []string{"bytes dropped: record over 64 KiB]", "[REDACTED]", "big value", "big message"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// A handler's superfluous WriteHeader (a second call, whose status is not
// sent) reaches the plugin's log as a warning, once per response, with the
// request's id, the caller, the status sent and the one ignored, as
// net/http's server logs it.
func TestSuperfluousWriteHeaderLogged(t *testing.T) {
	in, _ := startLogsplit(t)
	if status, _, body := in.Get(t, "/api/logsplit/superfluous", "X-Request-Id", "req-superfluous-1"); status != 201 || body != "ok" {
		t.Fatalf("%d %s, want the first status, 201", status, body)
	}
	lines := linesWith(t, in, "superfluous response.WriteHeader call")
	if len(lines) != 1 {
		t.Fatalf("%d warnings for one response, want 1:\n%s", len(lines), in.Log)
	}
	l := lines[0]
	for k, v := range map[string]any{"plugin": "logsplit", "request_id": "req-superfluous-1", "level": "warning", "status": 201.0, "ignored_status": 500.0} {
		if l[k] != v {
			t.Errorf("field %s = %#v, want %#v", k, l[k], v)
		}
	}
	if msg, _ := l["msg"].(string); !strings.HasPrefix(msg, "http: superfluous response.WriteHeader call from main.init.") || !strings.Contains(msg, "main.go:") {
		t.Errorf("msg %q does not name the handler", msg)
	}
}
