package logging

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/syncbuf"
)

type syncBuffer struct{ syncbuf.Buffer }

func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		out = append(out, m)
	}
	return out
}

func newPlugin(t *testing.T, format, level string, secrets []string, o PluginOptions) (*PluginLogger, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	log, _, err := New(buf, format, level, secrets)
	if err != nil {
		t.Fatal(err)
	}
	if o.Rate == 0 {
		o.Rate, o.Burst = 1000, 1000
	}
	pl, err := NewPluginLogger(log, "docs", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pl.Close)
	return pl, buf
}

func TestPluginRecordFields(t *testing.T) {
	pl, buf := newPlugin(t, "json", "debug", nil, PluginOptions{})
	rec := &hostfuncs.LogRecord{Level: hostfuncs.LevelWarn, Message: "fetched", Attrs: []hostfuncs.LogAttr{
		attr("url", "https://x/y"), attr("req.status", int64(200)), attr("took", 1500*time.Millisecond),
		attr("plugin", "forged"), attr("request_id", "forged"), attr("level", "forged"), attr("msg", "forged"),
		attr("audit", "denied"), attr("principal", "anonymous"), attr("status", int64(401)), attr("method", "GET"),
		attr("bad key=\"x\"\nlevel=error", "v"), attr("ratio", math.NaN()), attr("inf", math.Inf(1)), attr("ok", true),
	}}
	if got := pl.Write(Call{RequestID: "req-1"}, rec); got != hostfuncs.LogWritten {
		t.Fatalf("Write = %d", got)
	}
	pl.Write(Call{Task: "nightly-sync"}, &hostfuncs.LogRecord{Level: hostfuncs.LevelInfo, Message: "from a task"})
	pl.Write(Call{RequestID: "req-2"}, &hostfuncs.LogRecord{Level: hostfuncs.LevelInfo, Message: "printed", Stream: "stdout"})
	pl.Write(Call{Init: true}, &hostfuncs.LogRecord{Level: hostfuncs.LevelInfo, Message: "starting"})
	lines := buf.lines(t)
	if len(lines) != 4 {
		t.Fatalf("got %d lines:\n%s", len(lines), buf)
	}
	l := lines[0]
	want := map[string]any{
		"plugin": "docs", "request_id": "req-1", "level": "warning", "msg": "fetched", "url": "https://x/y",
		"req.status": 200.0, "took": 1.5e9, "fields.plugin": "forged", "fields.request_id": "forged",
		"fields.level": "forged", "fields.msg": "forged", "bad_key__x__level_error": "v", "ratio": "NaN", "inf": "+Inf", "ok": true,
		"fields.audit": "denied", "audit": nil,
		// The plugin's own, though the runtime's lines use them too.
		"principal": "anonymous", "status": 401.0, "method": "GET",
	}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("field %q = %#v, want %#v", k, l[k], v)
		}
	}
	if _, ok := l["task"]; ok {
		t.Error("request line has a task field")
	}
	if lines[1]["task"] != "nightly-sync" || lines[1]["request_id"] != nil {
		t.Errorf("task line = %v", lines[1])
	}
	if lines[2]["stream"] != "stdout" || lines[2]["level"] != "info" {
		t.Errorf("stdout line = %v", lines[2])
	}
	if lines[3]["phase"] != "init" || lines[3]["request_id"] != nil {
		t.Errorf("init line = %v", lines[3])
	}
}

// slog writes a repeated key each time, and "!BADKEY" for every odd
// argument: each value is kept, the repeats with "#2", "#3", ... And a
// plugin repeating one key cannot make the host work quadratically.
func TestPluginRepeatedKeysKeepEveryValue(t *testing.T) {
	pl, buf := newPlugin(t, "json", "debug", nil, PluginOptions{})
	pl.Write(Call{}, &hostfuncs.LogRecord{Level: hostfuncs.LevelInfo, Message: "m", Attrs: []hostfuncs.LogAttr{
		attr("id", "1"), attr("id#2", "taken"), attr("id", "2"), attr("id", "3"), attr("!BADKEY", "x"), attr("!BADKEY", "y"),
		attr("plugin", "p1"), attr("fields.plugin", "p2"), attr("n", nil), attr("n", "after nil"),
	}})
	l := buf.lines(t)[0]
	want := map[string]any{"id": "1", "id#2": "taken", "id#3": "2", "id#4": "3", "!BADKEY": "x", "!BADKEY#2": "y",
		"fields.plugin": "p1", "fields.plugin#2": "p2", "n": nil, "n#2": "after nil", "plugin": "docs"}
	for k, v := range want {
		if got, ok := l[k]; !ok || got != v {
			t.Errorf("field %q = %#v (%v), want %#v", k, got, ok, v)
		}
	}
	attrs := make([]hostfuncs.LogAttr, 20000)
	for i := range attrs {
		attrs[i] = attr("k", int64(i))
	}
	pl.Write(Call{}, &hostfuncs.LogRecord{Level: hostfuncs.LevelInfo, Message: "many", Attrs: attrs})
	if l := buf.lines(t)[1]; l["k"] != 0.0 || l["k#20000"] != 19999.0 {
		t.Errorf("20000 repeats: k=%v k#20000=%v", l["k"], l["k#20000"])
	}
}

// The text format writes keys unquoted: a plugin must not be able to
// start a new line or forge a field through a key.
func TestPluginKeysCannotForgeText(t *testing.T) {
	pl, buf := newPlugin(t, "text", "debug", nil, PluginOptions{})
	pl.Write(Call{RequestID: "r"}, &hostfuncs.LogRecord{Level: 0, Message: "m\nlevel=error msg=forged", Attrs: []hostfuncs.LogAttr{
		attr("a\nlevel=error msg=forged x", "v\nlevel=error"),
	}})
	out := buf.String()
	if strings.Count(out, "\n") != 1 {
		t.Errorf("one record wrote several lines:\n%s", out)
	}
}

func TestPluginLevels(t *testing.T) {
	for _, tc := range []struct {
		level int32
		want  logrus.Level
	}{{-8, logrus.DebugLevel}, {-4, logrus.DebugLevel}, {-1, logrus.DebugLevel}, {0, logrus.InfoLevel}, {3, logrus.InfoLevel},
		{4, logrus.WarnLevel}, {7, logrus.WarnLevel}, {8, logrus.ErrorLevel}, {math.MaxInt32, logrus.ErrorLevel}} {
		if got := LogrusLevel(tc.level); got != tc.want {
			t.Errorf("LogrusLevel(%d) = %v, want %v", tc.level, got, tc.want)
		}
	}
	// The floor raises the runtime's level, never lowers it.
	pl, buf := newPlugin(t, "json", "info", nil, PluginOptions{Level: "warn"})
	for _, lv := range []int32{-4, 0, 2, 4, 8} {
		pl.Write(Call{RequestID: "r"}, &hostfuncs.LogRecord{Level: lv, Message: "m"})
	}
	if n := len(buf.lines(t)); n != 2 {
		t.Errorf("floor warn wrote %d of debug/info/info/warn/error, want 2", n)
	}
	if pl.Enabled(0) || !pl.Enabled(4) {
		t.Error("Enabled disagrees with the floor")
	}
	low, buf2 := newPlugin(t, "json", "warn", nil, PluginOptions{Level: "debug"})
	low.Write(Call{RequestID: "r"}, &hostfuncs.LogRecord{Level: -4, Message: "m"})
	if buf2.String() != "" || low.Enabled(-4) {
		t.Error("a plugin floor below log.level let a debug line through")
	}
	if _, err := NewPluginLogger(logrus.New(), "x", PluginOptions{Level: "loud", Rate: 1, Burst: 1}); err == nil {
		t.Error("unknown level accepted")
	}
	if _, err := NewPluginLogger(logrus.New(), "x", PluginOptions{Rate: 0, Burst: 1}); err == nil {
		t.Error("zero rate accepted")
	}
}

func TestPluginRateLimitReportsDrops(t *testing.T) {
	// The summary timer is driven by hand (report) so that the test does
	// not depend on how fast a loaded machine runs the loop.
	pl, buf := newPlugin(t, "json", "debug", nil, PluginOptions{Rate: 0.001, Burst: 3, ReportEvery: time.Hour})
	results := map[int32]int{}
	for i := 0; i < 10; i++ {
		results[pl.Write(Call{RequestID: "r"}, &hostfuncs.LogRecord{Level: 0, Message: "flood"})]++
	}
	if results[hostfuncs.LogWritten] != 3 || results[hostfuncs.LogDropped] != 7 {
		t.Fatalf("results = %v, want 3 written and 7 dropped", results)
	}
	if strings.Contains(buf.String(), "dropped") {
		t.Fatal("summary written before its interval ended")
	}
	pl.report() // the interval ends
	summary := waitFor(t, buf, "dropped 7 log lines")
	if summary["dropped"] != 7.0 || summary["plugin"] != "docs" || summary["level"] != "warning" || !strings.Contains(summary["msg"].(string), "log_rate 0.001/s, log_burst 3") {
		t.Errorf("summary = %v", summary)
	}
	// The next drops arm the next summary.
	for i := 0; i < 4; i++ {
		pl.Write(Call{RequestID: "r"}, &hostfuncs.LogRecord{Level: 0, Message: "flood"})
	}
	if !pl.pending.Load() {
		t.Fatal("drops after a summary did not schedule the next one")
	}
	pl.report()
	waitFor(t, buf, "dropped 4 log lines")
	if n := strings.Count(buf.String(), `"msg":"dropped`); n != 2 {
		t.Errorf("%d summary lines for 2 intervals with drops", n)
	}
	pl.report() // an interval without drops writes nothing
	if n := strings.Count(buf.String(), `"msg":"dropped`); n != 2 {
		t.Errorf("an interval without drops wrote a summary")
	}
}

// The real timer reports every drop, whatever the intervals turn out to be.
func TestPluginDropTimer(t *testing.T) {
	pl, buf := newPlugin(t, "json", "debug", nil, PluginOptions{Rate: 0.001, Burst: 1, ReportEvery: 10 * time.Millisecond})
	for i := 0; i < 50; i++ {
		pl.Write(Call{RequestID: "r"}, &hostfuncs.LogRecord{Level: 0, Message: "flood"})
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var sum float64
		for _, l := range buf.lines(t) {
			if d, ok := l["dropped"].(float64); ok {
				sum += d
			}
		}
		if sum == 49 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("reported %v of 49 drops:\n%s", sum, buf)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPluginCloseReportsPendingDrops(t *testing.T) {
	pl, buf := newPlugin(t, "json", "error", nil, PluginOptions{Rate: 0.001, Burst: 1, ReportEvery: time.Hour})
	for i := 0; i < 5; i++ {
		pl.Write(Call{RequestID: "r"}, &hostfuncs.LogRecord{Level: 8, Message: "flood"})
	}
	pl.Close()
	// log.level = error hides warn: the summary is written at error.
	l := waitFor(t, buf, "dropped 4 log lines")
	if l["level"] != "error" {
		t.Errorf("summary at %v under log.level error", l["level"])
	}
	if pl.Dropped() != 0 {
		t.Errorf("Dropped = %d after Close", pl.Dropped())
	}
}

// A secret the plugin puts in a key is redacted before the key's unsafe
// characters are replaced, so the replacement cannot hide it.
func TestPluginSecretInKey(t *testing.T) {
	secret := "pa ss=w\"rd\n42"
	pl, buf := newPlugin(t, "text", "debug", []string{secret}, PluginOptions{})
	pl.Write(Call{RequestID: "r"}, &hostfuncs.LogRecord{Level: 0, Message: "m", Attrs: []hostfuncs.LogAttr{attr("k-"+secret, "v")}})
	out := buf.String()
	if strings.Contains(out, "pa ss") || strings.Contains(out, "pa_ss") || !strings.Contains(out, "k-[REDACTED]=v") {
		t.Errorf("secret in key: %s", out)
	}
}

func attr(k string, v any) hostfuncs.LogAttr { return hostfuncs.LogAttr{Key: k, Value: v} }

// A reload applies new settings to the same logger: the floor at once, the
// rate and burst to the same bucket.
func TestPluginUpdate(t *testing.T) {
	pl, buf := newPlugin(t, "json", "debug", nil, PluginOptions{Rate: 0.001, Burst: 2, ReportEvery: time.Hour})
	write := func(level int32) int32 {
		return pl.Write(Call{RequestID: "r"}, &hostfuncs.LogRecord{Level: level, Message: "m"})
	}
	write(0)
	write(0)
	if write(0) != hostfuncs.LogDropped {
		t.Fatal("burst of 2 let a third line through")
	}
	if err := pl.Update(PluginOptions{Level: "warn", Rate: 1e9, Burst: 100}); err != nil {
		t.Fatal(err)
	}
	if write(0) != hostfuncs.LogFiltered || write(4) != hostfuncs.LogWritten {
		t.Error("new floor or rate not applied")
	}
	if err := pl.Update(PluginOptions{Level: "loud", Rate: 1, Burst: 1}); err == nil {
		t.Error("bad level accepted")
	}
	pl.report()
	if l := waitFor(t, buf, "dropped 1 log lines"); !strings.Contains(l["msg"].(string), "log_rate 1e+09/s, log_burst 100") {
		t.Errorf("summary names old limits: %v", l["msg"])
	}
}

func waitFor(t *testing.T, buf *syncBuffer, text string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range buf.lines(t) {
			if m, _ := l["msg"].(string); strings.Contains(m, text) {
				return l
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no line with %q in:\n%s", text, buf)
	return nil
}

// Allow shares the bucket with Write and counts what it refuses like a
// dropped line (log_write asks before it decodes a record; the scheduler
// before it writes the line of a failed run); WriteAllowed writes without
// taking from the bucket again.
func TestPluginAllow(t *testing.T) {
	pl, buf := newPlugin(t, "json", "debug", nil, PluginOptions{Rate: 0.001, Burst: 3, ReportEvery: time.Hour})
	allowed := 0
	for i := 0; i < 2; i++ {
		if pl.Allow() {
			allowed++
			pl.WriteAllowed(Call{Task: "t"}, &hostfuncs.LogRecord{Message: "allowed"}, 0)
		}
	}
	if pl.Write(Call{}, &hostfuncs.LogRecord{Message: "written"}) != hostfuncs.LogWritten || allowed != 2 {
		t.Fatalf("%d of 2 allowed, then the burst's last line not written", allowed)
	}
	if pl.Allow() || pl.Write(Call{}, &hostfuncs.LogRecord{Message: "written"}) != hostfuncs.LogDropped {
		t.Fatal("over the burst, a line was let through")
	}
	if pl.Dropped() != 2 || pl.DroppedTotal() != 2 {
		t.Errorf("dropped %d (total %d), want 2", pl.Dropped(), pl.DroppedTotal())
	}
	if n := strings.Count(buf.String(), `"msg":"allowed"`); n != 2 {
		t.Errorf("%d lines written by WriteAllowed, want 2", n)
	}
	pl.Close()
	waitFor(t, buf, "dropped 2 log lines")
}

// A plugin that reads a secret config table as JSON, decodes it into
// map[string]any and logs each field hands the runtime float64s: the
// text format writes them as fmt's %v does (1.2345678e+07), the JSON
// format as encoding/json does (98765432109876540 for 98765432109876543).
// Neither form leaks, with the secrets the config registers.
func TestPluginFloatSecretsRedacted(t *testing.T) {
	cfg, err := config.Read([]config.Source{{Name: "config.toml", Data: []byte(`
[plugins.probe]
path = "p.wasm"
secrets = ["nested"]
[plugins.probe.config]
nested = { inner = "nestedsecretvalue", n = 0x1F2E3D4C, pin = 12345678, big = 98765432109876543 }
`)}}, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	text, _ := cfg.Plugins["probe"].ConfigValue("nested")
	var fields map[string]any
	if err := json.Unmarshal([]byte(text), &fields); err != nil {
		t.Fatal(err)
	}
	leaks := []string{"nestedsecretvalue", "523124044", "5.23124044", "12345678", "1.2345678", "9876543210987654", "9.876543210987654"}
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			pl, buf := newPlugin(t, format, "info", cfg.Secrets(), PluginOptions{})
			var attrs []hostfuncs.LogAttr
			for k, v := range fields {
				pl.Write(Call{RequestID: "r"}, &hostfuncs.LogRecord{Level: hostfuncs.LevelInfo, Message: "field", Attrs: []hostfuncs.LogAttr{attr(k, v)}})
				attrs = append(attrs, attr("nested."+k, v))
			}
			pl.Write(Call{RequestID: "r"}, &hostfuncs.LogRecord{Level: hostfuncs.LevelWarn, Message: "all", Attrs: attrs})
			out := buf.String()
			for _, leak := range leaks {
				if strings.Contains(out, leak) {
					t.Errorf("%s log leaks %q:\n%s", format, leak, out)
				}
			}
			if n := strings.Count(out, Redacted); n != 8 {
				t.Errorf("%d redactions, want 8:\n%s", n, out)
			}
		})
	}
}

// A line costs one token per 4 KiB started, so that the limit bounds
// bytes too: at one token a line, an audit's plugin wrote 528 MB in 20 s
// of 64 KiB records. A line larger than the whole bucket costs the
// bucket, so that it still passes when the bucket is full.
func TestPluginRateLimitCountsSize(t *testing.T) {
	for _, tc := range []struct {
		size, burst, cost int
	}{
		{0, 100, 1}, {1, 100, 1}, {4096, 100, 1}, {4097, 100, 2}, {8192, 100, 2},
		{16 << 10, 100, 4}, {hostfuncs.MaxLogRecord, 100, 16}, {hostfuncs.MaxLogRecord, 5, 5},
	} {
		if got := LineCost(tc.size, tc.burst); got != tc.cost {
			t.Errorf("LineCost(%d, %d) = %d, want %d", tc.size, tc.burst, got, tc.cost)
		}
	}
	pl, buf := newPlugin(t, "json", "debug", nil, PluginOptions{Rate: 0.001, Burst: 40, ReportEvery: time.Hour})
	written := 0
	for range 10 {
		if pl.AllowBytes(hostfuncs.MaxLogRecord) {
			written++
		}
	}
	// 40 tokens: two records of 64 KiB (16 each), then 8 of 1 KiB.
	if written != 2 {
		t.Errorf("%d records of 64 KiB within a burst of 40, want 2", written)
	}
	big := strings.Repeat("x", 4097)
	for range 3 {
		if pl.Write(Call{}, &hostfuncs.LogRecord{Message: big}) == hostfuncs.LogWritten {
			written++
		}
	}
	for pl.Write(Call{}, &hostfuncs.LogRecord{Message: "small"}) == hostfuncs.LogWritten {
		written++
	}
	// 8 tokens left: three lines of 4097 bytes (2 each), then 2 small.
	if written != 7 {
		t.Errorf("%d lines written in all, want 7", written)
	}
	if n := strings.Count(buf.String(), `"msg":"small"`); n != 2 {
		t.Errorf("%d small lines, want 2", n)
	}
	if pl.Dropped() != 9 {
		t.Errorf("dropped %d, want 9 (8 records and a line)", pl.Dropped())
	}
}
