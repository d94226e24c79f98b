package server_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"regexp"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
	"github.com/greenroom-dev/greenroom/runtime/logging"
)

// logLines parses the JSON log of in.
func logLines(t *testing.T, in *servertest.Instance) []map[string]any { return in.LogLines(t) }

// linesWith returns the log lines whose message contains text.
func linesWith(t *testing.T, in *servertest.Instance, text string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range logLines(t, in) {
		if m, _ := l["msg"].(string); strings.Contains(m, text) {
			out = append(out, l)
		}
	}
	return out
}

func logurlConfig(extra string) string {
	return fmt.Sprintf("[plugins.logurl]\npath = %q\n%s", logurlWasm, extra)
}

func TestPluginLogFields(t *testing.T) {
	in := start(t, logurlConfig(""))
	if status, _, body := in.Get(t, "/api/logurl/structured", "X-Request-Id", "req-structured-1"); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	lines := linesWith(t, in, "fetched")
	if len(lines) != 1 {
		t.Fatalf("%d lines for one record:\n%s", len(lines), in.Log)
	}
	want := map[string]any{
		"plugin": "logurl", "request_id": "req-structured-1", "level": "warning", "msg": "fetched",
		"svc": "docs", "req.method": "GET", "req.status": 200.0, "req.took": 1.5e9, "req.ok": true,
		"req.ratio": 0.5, "req.user.id": 7.0,
	}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("field %s = %#v, want %#v", k, lines[0][k], v)
		}
	}
	// Lines from the plugin's init functions carry phase=init.
	for _, l := range linesWith(t, in, "logurl starting") {
		if l["phase"] != "init" || l["plugin"] != "logurl" || l["request_id"] != nil {
			t.Errorf("init line = %v", l)
		}
	}
	if len(linesWith(t, in, "logurl starting")) == 0 {
		t.Error("no init line")
	}
	forged := linesWith(t, in, "forging")
	if len(forged) != 1 {
		t.Fatalf("forging lines: %v", forged)
	}
	f := forged[0]
	if f["plugin"] != "logurl" || f["request_id"] != "req-structured-1" || f["fields.plugin"] != "forged" ||
		f["fields.request_id"] != "forged" || f["fields.stream"] != "forged" || f["fields.level"] != "forged" || f["stream"] != nil {
		t.Errorf("a plugin forged the runtime's fields: %v", f)
	}
}

func TestPluginLogLevelFloor(t *testing.T) {
	in := start(t, logurlConfig("log_level = \"warn\"\n")+fmt.Sprintf("[plugins.open]\npath = %q\n", logurlWasm))
	in.Get(t, "/api/logurl/levels")
	in.Get(t, "/api/open/levels")
	got := map[string][]string{}
	for _, l := range logLines(t, in) {
		if m, _ := l["msg"].(string); strings.HasPrefix(m, "level ") {
			got[l["plugin"].(string)] = append(got[l["plugin"].(string)], m)
		}
	}
	if strings.Join(got["logurl"], ",") != "level warn,level error" {
		t.Errorf("log_level warn let through %q", got["logurl"])
	}
	if strings.Join(got["open"], ",") != "level debug,level info,level warn,level error,level stdout" {
		t.Errorf("no floor: %q", got["open"])
	}
}

// A record at a level slog has no name for (slog.Level(2), which slog
// writes "INFO+2"; LevelDebug-4, "DEBUG-4") is written at the host level
// its name is relative to, and keeps that name in slog_level: the
// operator sees which of the plugin's levels it was. Lines at the four
// named levels carry no slog_level, and a plugin's own attribute of that
// name cannot pass for the runtime's.
func TestPluginCustomLevelsKeepTheirName(t *testing.T) {
	in := start(t, logurlConfig(""))
	if status, _, body := in.Get(t, "/api/logurl/customlevels"); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	for _, tc := range []struct{ msg, level, name string }{
		{"custom info+2", "info", "INFO+2"},
		{"custom debug-4", "debug", "DEBUG-4"},
		{"custom info+3", "info", "INFO+3"},
		{"custom error+4", "error", "ERROR+4"},
		{"custom warn", "warning", ""},
	} {
		lines := linesWith(t, in, tc.msg)
		if len(lines) != 1 {
			t.Fatalf("%q: %d lines:\n%s", tc.msg, len(lines), in.Log)
		}
		l := lines[0]
		if l["level"] != tc.level || l["plugin"] != "logurl" {
			t.Errorf("%q: level %v, want %s", tc.msg, l["level"], tc.level)
		}
		if got, _ := l["slog_level"].(string); got != tc.name {
			t.Errorf("%q: slog_level %q, want %q (line %v)", tc.msg, got, tc.name, l)
		}
	}
	if l := linesWith(t, in, "custom warn")[0]; l["fields.slog_level"] != "forged" {
		t.Errorf("a plugin's slog_level attribute: %v, want it as fields.slog_level", l)
	}
}

// A plugin's log_rate and log_burst, and scheduler.lease, from the
// environment are secrets: the dropped-lines summary said "log_rate
// 0.01/s, log_burst 5" for them, and "scheduler started" "lease":"45s"
// for "45000ms" (a short value such as "5" is too short for the log's
// redaction, and a decoded one is not the text it matches).
func TestLogLinesHideLimitsFromTheEnvironment(t *testing.T) {
	in := servertest.Start(t, "[scheduler]\nlease = \"${GR_LEASE}\"\n"+logurlConfig("limits = { log_rate = \"${GR_LR}\", log_burst = \"${GR_LB}\" }\n"), servertest.Options{
		CacheDir: cacheDir,
		Runtime:  runtime.Options{LogDropReport: 50 * time.Millisecond},
		Env:      map[string]string{"GR_LEASE": "45000ms", "GR_LR": "0.01", "GR_LB": "5"},
	})
	if status, _, body := in.Get(t, "/api/logurl/flood?n=20"); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	for deadline := time.Now().Add(10 * time.Second); len(linesWith(t, in, "log lines over the plugin's rate limit")) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no dropped-lines summary")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, s := range linesWith(t, in, "log lines over the plugin's rate limit") {
		if msg := s["msg"].(string); !strings.Contains(msg, "(log_rate [REDACTED], log_burst [REDACTED])") {
			t.Errorf("summary: %s", msg)
		}
	}
	started := linesWith(t, in, "scheduler started")
	if len(started) != 1 || started[0]["lease"] != "[REDACTED]" {
		t.Errorf("scheduler started: %v", started)
	}
}

// Lines over the rate limit — structured and printed alike — are counted
// and reported; written plus reported is everything the plugin logged.
func TestPluginLogRateLimit(t *testing.T) {
	in := servertest.Start(t, logurlConfig("limits = { log_rate = 0.01, log_burst = 5 }\n"), servertest.Options{
		CacheDir: cacheDir,
		Runtime:  runtime.Options{LogDropReport: 50 * time.Millisecond},
	})
	const n = 60 // structured, then as many printed
	if status, _, body := in.Get(t, fmt.Sprintf("/api/logurl/flood?n=%d", n)); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		written := len(linesWith(t, in, "flood"))
		var dropped float64
		summaries := linesWith(t, in, "log lines over the plugin's rate limit")
		for _, s := range summaries {
			dropped += s["dropped"].(float64)
			if s["plugin"] != "logurl" || s["level"] != "warning" || !strings.Contains(s["msg"].(string), "log_rate 0.01/s, log_burst 5") {
				t.Fatalf("summary = %v", s)
			}
		}
		if written+int(dropped) == 2*n {
			// The bucket also paid for the init line ("logurl starting").
			initLines := len(linesWith(t, in, "logurl starting"))
			if written+initLines < 5 || written+initLines > 6 {
				t.Errorf("%d lines written (and %d at init) with log_burst 5", written, initLines)
			}
			// The metric counts the same drops.
			fams := scrape(t, func(path string) (int, string) {
				status, _, body := in.Get(t, path)
				return status, body
			})
			if v := value(fams, "greenroom_log_lines_dropped_total", "plugin", "logurl"); v != dropped {
				t.Errorf("greenroom_log_lines_dropped_total = %v, want %v", v, dropped)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("written %d + dropped %.0f != %d:\n%s", written, dropped, 2*n, in.Log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A plugin that reads its secret config and logs it — in the message, an
// attribute value, an attribute key, a group name, stdout, stderr and
// log.Print — leaks nothing, in either log format.
func TestPluginSecretsRedacted(t *testing.T) {
	const key = "sk-live-3f9a7c1e5b"      // from ${LOGURL_KEY}
	const token = "plain-text-token-8d2e" // listed in secrets
	cfgText := logurlConfig(`secrets = ["nested.token"]
[plugins.logurl.config]
api_key = "${LOGURL_KEY}"
nested = { token = "` + token + `" }
`)
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			// Authentication is not under test here: off, so that the
			// request needs no credential (and the log holds no token).
			override := "[server]\nlisten = \"127.0.0.1:0\"\n[runtime]\ncache_dir = \"" + cacheDir + "\"\n[auth]\ndangerously_disable = true\n"
			cfg, err := config.Read([]config.Source{{Name: "config.toml", Data: []byte(cfgText)}, {Name: "o.toml", Data: []byte(override)}},
				func(k string) (string, bool) { return key, k == "LOGURL_KEY" })
			if err != nil {
				t.Fatal(err)
			}
			buf := &servertest.Buffer{}
			log, _, err := logging.New(buf, format, "debug", cfg.Secrets())
			if err != nil {
				t.Fatal(err)
			}
			in := servertest.StartConfig(t, cfg, log, buf, runtime.Options{})
			status, _, body := in.Get(t, "/api/logurl/secret")
			if status != 200 || body != "logged" {
				t.Fatalf("%d %q", status, body)
			}
			out := buf.String()
			for _, leak := range []string{key, token, "sk-live", "plain-text-token", fmt.Sprint([]byte(key))[1:20]} {
				if strings.Contains(out, leak) {
					t.Errorf("log leaks %q:\n%s", leak, out)
				}
			}
			for _, want := range []string{"the key is [REDACTED]", "stdout: [REDACTED]", "stderr: [REDACTED] [REDACTED]", "log.Print: [REDACTED]", "log.Print through slog: [REDACTED]", "login with key [REDACTED]: 401", map[string]string{"json": `"raw":"[REDACTED]"`, "text": `raw=[REDACTED]`}[format]} {
				if !strings.Contains(out, want) {
					t.Errorf("log lacks %q:\n%s", want, out)
				}
			}
			if n := strings.Count(out, "[REDACTED]"); n < 10 {
				t.Errorf("only %d redactions:\n%s", n, out)
			}
		})
	}
}

func TestPluginPanicLogged(t *testing.T) {
	in := start(t, logurlConfig(""))
	status, _, body := in.Get(t, "/api/logurl/panic", "X-Request-Id", "req-panic")
	if status != 500 || errorBody(t, body)["code"] != "plugin_panic" {
		t.Fatalf("%d %s", status, body)
	}
	lines := linesWith(t, in, "panic serving GET /panic: logurl panics on purpose")
	if len(lines) != 1 || lines[0]["level"] != "error" || lines[0]["request_id"] != "req-panic" || !strings.Contains(fmt.Sprint(lines[0]["stack"]), "main.init") {
		t.Errorf("panic lines: %v", lines)
	}
}

// Hostile calls to log_write and urlreader_call get error codes, or trap on
// a bad pointer; the instance, or the next one, keeps serving.
func TestHostileCapabilityCalls(t *testing.T) {
	granted := start(t, "[reading]\nallow = [{ host = \"example.com\" }]\n"+logurlConfig("[plugins.logurl.capabilities]\nurlreader = [\"example.com\"]\n"))
	for path, want := range map[string]string{
		"/raw/url?case=tree":     "-3",
		"/raw/url?case=garbage":  "-3",
		"/raw/url?case=oversize": "-6",
	} {
		if status, _, body := granted.Get(t, "/api/logurl"+path); status != 200 || body != want {
			t.Errorf("granted: %s: %d %q, want %s", path, status, body, want)
		}
	}
	in := start(t, logurlConfig(""))
	for path, want := range map[string]string{
		"/raw/log?case=oversize":   "-6",
		"/raw/log?case=badkind":    "-3",
		"/raw/log?case=unbalanced": "-3",
		"/raw/log?case=short":      "-3",
		// Without the grant every call is denied, whatever it holds.
		"/raw/url?case=tree":     "-2",
		"/raw/url?case=garbage":  "-2",
		"/raw/url?case=oversize": "-2",
	} {
		status, _, body := in.Get(t, "/api/logurl"+path)
		if status != 200 || body != want {
			t.Errorf("%s: %d %q, want %s", path, status, body, want)
		}
	}
	status, _, body := in.Get(t, "/api/logurl/raw/log?case=badptr")
	if status != 500 || errorBody(t, body)["code"] != "plugin_trap" {
		t.Errorf("bad pointer: %d %s", status, body)
	}
	if status, _, _ := in.Get(t, "/api/logurl/structured"); status != 200 {
		t.Errorf("after the trap: %d", status)
	}
}

// A reload that adds a plugin gives it a logger; one that changes
// log_level applies the new floor to the running plugin's next version.
func TestPluginLoggingAcrossReload(t *testing.T) {
	in := start(t, fmt.Sprintf("[plugins.hello]\npath = %q\n", helloWasm))
	in.SetConfig(fmt.Sprintf("[plugins.hello]\npath = %q\n", helloWasm) + logurlConfig("log_level = \"error\"\n"))
	if res := in.Reload(t); res.Plugins["logurl"].Outcome != runtime.OutcomeAdded {
		t.Fatalf("reload: %+v", res)
	}
	in.Get(t, "/api/logurl/levels", "X-Request-Id", "before")
	in.SetConfig(fmt.Sprintf("[plugins.hello]\npath = %q\n", helloWasm) + logurlConfig("log_level = \"warn\"\n"))
	if res := in.Reload(t); res.Plugins["logurl"].Outcome != runtime.OutcomeReloaded {
		t.Fatalf("reload: %+v", res)
	}
	in.Get(t, "/api/logurl/levels", "X-Request-Id", "after")
	got := map[string][]string{}
	for _, l := range logLines(t, in) {
		if m, _ := l["msg"].(string); strings.HasPrefix(m, "level ") {
			rid := l["request_id"].(string)
			got[rid] = append(got[rid], m)
		}
	}
	if strings.Join(got["before"], ",") != "level error" || strings.Join(got["after"], ",") != "level warn,level error" {
		t.Errorf("lines by request: %v", got)
	}
}

// The audit's group bomb — a 64 KiB record of one group named with 63 000
// bytes holding 256 attributes — through the runtime: a record within the
// rate limit becomes one line of about its own size, its keys cut short
// with a marker (it was a 15.4 MiB line), and records over the limit are
// dropped before they are decoded (each cost 32 MiB and 8 ms), counted
// like any dropped line. A 64 KiB record costs 16 tokens (one per 4
// KiB): a burst of 40 lets two through.
func TestPluginLogGroupBomb(t *testing.T) {
	const burst, n = 40, 100
	in := servertest.Start(t, logurlConfig(fmt.Sprintf("limits = { log_rate = 0.001, log_burst = %d }\n", burst)), servertest.Options{
		CacheDir: cacheDir,
		Runtime:  runtime.Options{LogDropReport: 50 * time.Millisecond},
	})
	in.Get(t, "/api/logurl/nolog") // an instance is up
	var before, after goruntime.MemStats
	goruntime.GC()
	goruntime.ReadMemStats(&before)
	status, _, body := in.Get(t, fmt.Sprintf("/api/logurl/raw/log?case=groupbomb&n=%d", n))
	goruntime.ReadMemStats(&after)
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	var results map[string]int
	if err := json.Unmarshal([]byte(body), &results); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	written, dropped := results["0"], results["2"]
	initLines := len(linesWith(t, in, "logurl starting"))
	if written < 1 || written+dropped != n || written+initLines > burst {
		t.Fatalf("results %v (and %d lines at init), want %d written or dropped with log_burst %d", results, initLines, n, burst)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 256<<20 {
		t.Errorf("%d records (%d dropped) made the host allocate %d MiB", n, dropped, grew>>20)
	}
	lines := 0
	for _, l := range strings.Split(in.Log.String(), "\n") {
		if !strings.Contains(l, `"msg":"groupbomb"`) {
			continue
		}
		lines++
		if len(l) > 2*hostfuncs.MaxLogRecord {
			t.Errorf("a line of %d KiB from a record of 64 KiB", len(l)>>10)
		}
		if !strings.Contains(l, `"greenroom.truncated":"255 of 256 attributes dropped`) {
			t.Errorf("the line does not say what was dropped: %.300s", l)
		}
	}
	if lines != written {
		t.Errorf("%d lines for %d records written", lines, written)
	}
	if got := in.RT.DroppedLogLines("logurl"); got != int64(dropped) {
		t.Errorf("DroppedLogLines = %d, want %d", got, dropped)
	}
}

// A reload whose new version fails to load leaves the serving version's
// log settings as they were, and a reload back to the serving config
// (unchanged) finds them so.
func TestFailedReloadKeepsLogSettings(t *testing.T) {
	in := start(t, logurlConfig("log_level = \"warn\"\n"))
	levels := func(rid string) string {
		t.Helper()
		if status, _, body := in.Get(t, "/api/logurl/levels", "X-Request-Id", rid); status != 200 {
			t.Fatalf("%s: %d %s", rid, status, body)
		}
		var got []string
		for _, l := range logLines(t, in) {
			if m, _ := l["msg"].(string); strings.HasPrefix(m, "level ") && l["request_id"] == rid {
				got = append(got, m)
			}
		}
		return strings.Join(got, ",")
	}
	if got := levels("before"); got != "level warn,level error" {
		t.Fatalf("before: %s", got)
	}
	// A Go guest needs more than 1 MiB of memory at start.
	in.SetConfig(logurlConfig("log_level = \"error\"\nlimits = { log_rate = 0.001, log_burst = 1, memory = \"1MiB\" }\n"))
	if status, _, body := in.Do(t, "POST", "/.greenroom/plugins/v1/reload", nil); status != 422 {
		t.Fatalf("reload with too little memory: %d %s", status, body)
	}
	if got := levels("failed"); got != "level warn,level error" {
		t.Errorf("after the failed reload: %q, want the serving version's settings", got)
	}
	in.SetConfig(logurlConfig("log_level = \"warn\"\n"))
	if res := in.Reload(t); res.Plugins["logurl"].Outcome != runtime.OutcomeUnchanged {
		t.Fatalf("reload back: %+v", res)
	}
	if got := levels("reverted"); got != "level warn,level error" {
		t.Errorf("after reverting: %q", got)
	}
}

// The runtime's debug line for each URL read counts against the plugin's
// log rate limit (the plugin makes as many as it reads) and carries at
// most 1 KiB of the URL the plugin passed.
func TestURLReadLinesAreBounded(t *testing.T) {
	in := start(t, "[log]\nlevel = \"debug\"\n"+logurlConfig("limits = { log_rate = 0.001, log_burst = 3 }\n[plugins.logurl.capabilities]\nurlreader = [\"example.com/\"]\n"))
	url := "gopher://x/" + strings.Repeat("A", 10000)
	if status, _, body := in.Get(t, "/api/logurl/read?n=50&url="+url); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	lines := linesWith(t, in, "url read")
	if len(lines) == 0 || len(lines) > 3 {
		t.Errorf("%d url read lines for 50 reads with log_burst 3", len(lines))
	}
	for _, l := range lines {
		if u, _ := l["url"].(string); len(u) > 1100 || !strings.HasPrefix(u, "gopher://x/AAA") {
			t.Errorf("url field of %d bytes: %.80s...", len(u), u)
		}
	}
}

// A plugin's level floor drops the runtime's debug line about each of its
// URL reads too, and a dropped one does not spend the plugin's log rate
// limit: reads the operator filtered out used to push out the plugin's
// own warnings.
func TestURLReadLinesFollowTheFloor(t *testing.T) {
	in := start(t, "[log]\nlevel = \"debug\"\n"+logurlConfig("log_level = \"warn\"\nlimits = { log_rate = 0.001, log_burst = 3 }\n[plugins.logurl.capabilities]\nurlreader = [\"example.com/\"]\n"))
	if status, _, body := in.Get(t, "/api/logurl/read?n=20&url=gopher://x/"); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	if lines := linesWith(t, in, "url read"); len(lines) != 0 {
		t.Errorf("%d url read lines below the plugin's floor", len(lines))
	}
	if status, _, body := in.Get(t, "/api/logurl/levels"); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	for _, msg := range []string{"level warn", "level error"} {
		if len(linesWith(t, in, msg)) != 1 {
			t.Errorf("the plugin's %q line is missing after its URL reads:\n%s", msg, in.Log)
		}
	}
}

// The URL a url read line carries is redacted before it is cut to 1 KiB:
// a listed secret across the cut is replaced whole, not cut in two (the
// redactor, which runs on the finished line, matches whole secrets only).
func TestURLReadLineRedactsBeforeItCuts(t *testing.T) {
	const secret = "PluginApiKeyEnv_9q8w7e"
	in := start(t, "[log]\nlevel = \"debug\"\n"+logurlConfig("secrets = [\"apikey\"]\n[plugins.logurl.config]\napikey = \""+secret+"\"\n"+
		"[plugins.logurl.capabilities]\nurlreader = [\"example.com/\"]\n"))
	// The secret starts 10 bytes before the cut, at 1024 bytes.
	u := "gopher://x/" + strings.Repeat("a", 1024-10-len("gopher://x/")-len("?key=")) + "?key=" + secret
	if status, _, body := in.Get(t, "/api/logurl/read?url="+url.QueryEscape(u)); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	lines := linesWith(t, in, "url read")
	if len(lines) != 1 {
		t.Fatalf("%d url read lines:\n%s", len(lines), in.Log)
	}
	if got, _ := lines[0]["url"].(string); !strings.HasSuffix(got, "?key=[REDACTED]") {
		t.Errorf("url field ends %q", got[max(len(got)-40, 0):])
	}
	if strings.Contains(in.Log.String(), secret[:6]) {
		t.Errorf("part of the secret in the log:\n%s", in.Log)
	}
}

// The runtime's line about each failed call ("plugin panicked; instance
// discarded") comes as often as the plugin fails: it takes from the
// plugin's log rate limit, and a dropped one is counted.
func TestFailureLinesAreRateLimited(t *testing.T) {
	in := start(t, strings.Replace(hostileConfig("2s", 1), "instances = 1\n", "instances = 1\nlog_rate = 0.001\nlog_burst = 3\n", 1))
	for range 10 {
		if status, _, body := in.Get(t, "/api/hostile/panic"); status != 500 {
			t.Fatalf("%d %s", status, body)
		}
	}
	if n := len(linesWith(t, in, "plugin panicked")); n > 3 {
		t.Errorf("%d 'plugin panicked' lines for 10 panics with log_burst 3", n)
	}
	if in.RT.DroppedLogLines("hostile") == 0 {
		t.Error("no dropped line counted")
	}
}

// The access and audit lines show a request's path as sent, and the log
// redacts a secret in it in its usual URL encodings; a client that
// encodes it otherwise (lower-case hex, a character that needs no
// escape) gets it redacted all the same (an audit found it logged).
func TestAccessLogPathRedactsAnyEncoding(t *testing.T) {
	const secret = "q3F+Zm9v/YmFyYmF6=="
	in := start(t, logurlConfig(`secrets = ["hook"]
[plugins.logurl.config]
hook = "`+secret+`"
`))
	paths := []string{
		"/api/logurl/hook/q3F%2bZm9v%2fYmFyYmF6%3d%3d",
		"/api/logurl/hook/q3F+Zm9v%2fYmFyYmF6==",
		"/api/logurl/hook/q3F+Zm9v%2FYmFyYmF6%3D%3D",
		"/api/logurl/hook/q3F%2BZm9v%2F%59mFyYmF6==",
	}
	for _, p := range paths {
		in.Get(t, p)
		in.DoAnon(t, "GET", p, nil) // 401: an audit line too
	}
	// A malformed escape elsewhere must not stop the decoding (Go's
	// client will not send one: raw requests).
	bad := "/api/logurl/hook/%zz/q3F%2bZm9v%2fYmFyYmF6%3d%3d%"
	paths = append(paths, bad)
	for _, token := range []string{in.Token, "wrong"} {
		c := dial(t, in.URL)
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", bad, token)
		io.ReadAll(c)
	}
	var logged int
	for _, l := range in.LogLines(t) {
		p, ok := l["path"].(string)
		if !ok || !strings.HasPrefix(p, "/api/logurl/hook/") {
			continue
		}
		logged++
		dec := regexp.MustCompile(`%[0-9a-fA-F]{2}`).ReplaceAllStringFunc(p, func(e string) string {
			b, _ := hex.DecodeString(e[1:])
			return string(b)
		})
		if strings.Contains(dec, secret) || strings.Contains(dec, "Zm9v/YmFy") {
			t.Errorf("%s line shows the secret: path %q", l["msg"], p)
		}
	}
	if logged < 3*len(paths) {
		t.Errorf("%d lines with the path, want %d (a request and an audit line per anonymous request)", logged, 3*len(paths))
	}
}

// The runtime's line about a failed call carries the request's id, as the
// plugin's own lines and the access line do, so that it can be tied to
// the request that failed (an audit found it without one).
func TestFailureLineCarriesRequestID(t *testing.T) {
	in := start(t, hostileConfig("2s", 1))
	status, h, body := in.Get(t, "/api/hostile/panic")
	if status != 500 {
		t.Fatalf("%d %s", status, body)
	}
	id := h.Get("X-Request-Id")
	if id == "" {
		t.Fatal("no X-Request-Id in the answer")
	}
	lines := linesWith(t, in, "plugin panicked")
	if len(lines) != 1 {
		t.Fatalf("%d 'plugin panicked' lines:\n%s", len(lines), in.Log)
	}
	if got := lines[0]["request_id"]; got != id {
		t.Errorf("request_id = %v, want %q", got, id)
	}
}

// A runtime line about a plugin's failed call that the log level hides
// takes nothing from the plugin's log rate limit: it was taken first, so
// at level error three hidden "plugin call interrupted at its timeout"
// warnings spent a burst of two, were counted as dropped, and would have
// dropped the plugin's own error lines (an audit).
func TestHiddenFailureLinesSpendNoLogBudget(t *testing.T) {
	override := "[server]\nlisten = \"127.0.0.1:0\"\n[runtime]\ncache_dir = \"" + cacheDir + "\"\n[auth]\ndangerously_disable = true\n[log]\nlevel = \"error\"\n"
	cfgText := strings.Replace(hostileConfig("1s", 1), "instances = 1\n", "instances = 1\nlog_rate = 0.001\nlog_burst = 2\n", 1)
	cfg, err := config.Read([]config.Source{{Name: "config.toml", Data: []byte(cfgText)}, {Name: "o.toml", Data: []byte(override)}}, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	buf := &servertest.Buffer{}
	log, _, err := logging.New(buf, "json", cfg.Log.Level, cfg.Secrets())
	if err != nil {
		t.Fatal(err)
	}
	in := servertest.StartConfig(t, cfg, log, buf, runtime.Options{})
	for range 3 {
		if status, _, body := in.Get(t, "/api/hostile/loop"); status != 504 {
			t.Fatalf("%d %s", status, body)
		}
	}
	if n := in.RT.DroppedLogLines("hostile"); n != 0 {
		t.Errorf("%d lines counted as dropped for warnings the level hides", n)
	}
}
