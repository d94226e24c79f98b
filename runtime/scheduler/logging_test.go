package scheduler_test

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// jsonLines returns the lines of in's JSON log whose message is msg and
// whose plugin is plugin.
func jsonLines(t *testing.T, in *servertest.Instance, plugin, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range in.LogLines(t) {
		if m["plugin"] == plugin && strings.Contains(fmt.Sprint(m["msg"]), msg) {
			out = append(out, m)
		}
	}
	return out
}

// The lines of failed runs are a plugin's to multiply (its tasks, their
// schedules, their errors): they take from the plugin's log rate limit,
// what is over it is dropped and counted like the plugin's own lines, and
// each error is cut to 512 bytes, after redaction. Without the limit, 100
// tasks failing every second wrote 100 lines of 4 KiB a second past a
// log_rate of 2, none counted as dropped.
func TestFailedRunLinesRateLimited(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-0123456789abcdef"
	const rate, burst = 2, 5
	conf := sqliteConf(t) + fmt.Sprintf(`[plugins.flood]
path = %q
limits = { timeout = "10s", log_rate = %d, log_burst = %d }
[plugins.flood.capabilities]
scheduler = true
[plugins.flood.config]
generate = 100
generate_every = "1s"
generate_action = "long"
generate_scope = "local"
generate_ms = 4000
[plugins.flood.config.secret]
value = "${SCHED_TEST_SECRET}"
`, tasksWasm, rate, burst)
	started := time.Now()
	in := servertest.Start(t, conf, servertest.Options{CacheDir: cacheDir, Env: map[string]string{"SCHED_TEST_SECRET": secret},
		Runtime: runtime.Options{Replica: "one", LogDropReport: 50 * time.Millisecond}})
	// Each of the 100 tasks fails about once a second: after 3 seconds
	// some 300 runs have failed.
	time.Sleep(3 * time.Second)
	elapsed := time.Since(started)
	failed := jsonLines(t, in, "flood", "task run failed")
	if max := burst + int(math.Ceil(rate*elapsed.Seconds())); len(failed) > max {
		t.Errorf("%d lines of failed runs in %v, over log_rate %d, log_burst %d (at most %d)", len(failed), elapsed.Round(time.Millisecond), rate, burst, max)
	}
	if len(failed) == 0 {
		t.Fatalf("no line of a failed run:\n%.4000s", in.Log.String())
	}
	for _, l := range failed {
		e, _ := l["error"].(string)
		// The marker may be cut itself; the secret is gone before the cut.
		if len(e) > 512 || !strings.HasSuffix(e, "...") || !strings.Contains(e, "[REDACTED") || strings.Contains(e, secret[:6]) {
			t.Errorf("error field of %d bytes, want the redacted error cut to 512: %.600q", len(e), e)
			break
		}
	}
	// The history keeps the whole error (up to 4 KiB).
	runs := ended(history(t, in, "flood", "g0000"), "failed")
	if len(runs) == 0 {
		t.Error("no failed run in the history")
	} else if e := runs[0].Error; len(e) != 4000-len(secret)+len("[REDACTED]") || !strings.Contains(e, "[REDACTED]") || strings.Contains(e, secret[:6]) {
		t.Errorf("history keeps an error of %d bytes, want the whole error, redacted: %.600q", len(e), e)
	}
	// The dropped lines are counted and reported like the plugin's own.
	waitFor(t, 5*time.Second, "the dropped lines reported", func() bool {
		var reported float64
		for _, s := range jsonLines(t, in, "flood", "log lines over the plugin's rate limit") {
			reported += s["dropped"].(float64)
		}
		return reported >= 100 && in.RT.DroppedLogLines("flood") >= int64(reported)
	})
}
