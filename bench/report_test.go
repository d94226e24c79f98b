package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func round(rps float64, p50, p99 time.Duration) Round {
	return Round{Requests: int64(rps * 5), Elapsed: 5 * time.Second, RPS: rps, P50: p50, P99: p99}
}

func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

func TestSideAggregates(t *testing.T) {
	s := Side{Rounds: []Round{round(100, ms(1), ms(9)), round(300, ms(3), ms(4)), round(200, ms(2), ms(100))}}
	if got := s.Throughput(); got != 200 {
		t.Errorf("throughput %v, want 200 (all requests over all time)", got)
	}
	if s.P50() != ms(2) || s.P99() != ms(9) {
		t.Errorf("p50 %v p99 %v, want the medians 2ms and 9ms", s.P50(), s.P99())
	}
	if got := median([]int64{4, 1, 3, 2}); got != 2 {
		t.Errorf("median of an even count: %d", got)
	}
	if (Side{}).Throughput() != 0 || (Side{}).P99() != 0 {
		t.Error("an empty side measures nothing")
	}
	s.Rounds[0].CPU, s.Rounds[1].CPU = 4*time.Millisecond, 8*time.Millisecond
	if got := s.CPUPerRequest(); got != 0 {
		t.Errorf("CPU per request %v with a round's CPU unknown, want 0", got)
	}
	s.Rounds[2].CPU = 6 * time.Millisecond // 18 ms over 3000 requests
	if got := s.CPUPerRequest(); got != 6*time.Microsecond {
		t.Errorf("CPU per request %v, want 6µs", got)
	}
}

func TestRatios(t *testing.T) {
	s := ScenarioResult{
		Name:      "ping",
		Greenroom: Side{Rounds: []Round{round(60, ms(1), ms(2)), round(40, ms(1), ms(2))}},
		Native:    Side{Rounds: []Round{round(100, ms(1), ms(2)), round(100, ms(1), ms(2))}},
	}
	if got := s.Ratio(); math.Abs(got-0.5) > 1e-9 {
		t.Errorf("ratio %v, want 0.5", got)
	}
	rr := s.RoundRatios()
	if len(rr) != 2 || math.Abs(rr[0]-0.6) > 1e-9 || math.Abs(rr[1]-0.4) > 1e-9 {
		t.Errorf("round ratios %v", rr)
	}
	s.Failed = "boom"
	if s.Ratio() != 0 {
		t.Error("a failed scenario has no ratio")
	}
}

// report builds a run with the given ratios (plugin / native throughput)
// and latencies.
func report(pingRatio, todoRatio float64, grP99, natP99 time.Duration) *Report {
	sc := func(name string, ratio float64, gp99, np99 time.Duration) ScenarioResult {
		return ScenarioResult{Name: name, Title: name,
			Greenroom: Side{Rounds: []Round{round(1000*ratio, ms(1), gp99)}},
			Native:    Side{Rounds: []Round{round(1000, ms(1), np99)}},
		}
	}
	return &Report{
		Date: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), Command: "go run ./bench/...", Cores: 2, Connections: 64, Rounds: 1, Duration: 5 * time.Second,
		Scenarios: []ScenarioResult{
			sc("ping", pingRatio, grP99, natP99),
			sc("todo-sqlite", todoRatio, ms(10), ms(5)),
			{Name: "todo-pg", Title: "todo-pg", Skipped: "PostgreSQL unreachable"},
		},
		Startup: &StartupResult{Cold: []time.Duration{ms(9000), ms(8000), ms(10000)}, Warm: []time.Duration{ms(250), ms(900), ms(280)}, ColdRSS: []int64{1, 2, 3}, WarmRSS: []int64{1, 2, 3}},
		Idle:    &IdleResult{One: []int64{80 * 1024}, Five: []int64{90 * 1024}, Distinct: []int64{120 * 1024}},
	}
}

func verdicts(r *Report) map[string]Verdict {
	out := map[string]Verdict{}
	for _, t := range r.Targets() {
		out[t.Target] = t.Verdict
	}
	return out
}

func TestTargets(t *testing.T) {
	r := report(0.6, 0.69, ms(8), ms(4))
	ts := r.Targets()
	want := []Verdict{Met, Met, Missed, NotMeasured, Met, Reported, Met}
	if len(ts) != len(want) {
		t.Fatalf("%d targets, want %d: %+v", len(ts), len(want), ts)
	}
	for i, tr := range ts {
		if tr.Verdict != want[i] {
			t.Errorf("%s: %s (%s), want %s", tr.Target, tr.Verdict, tr.Measured, want[i])
		}
	}
	if !strings.Contains(ts[4].Measured, "280 ms") {
		t.Errorf("warm start-up is the median: %s", ts[4].Measured)
	}
	if !strings.Contains(ts[6].Measured, "10.0 MiB per plugin of its own module (2.5 MiB per plugin sharing") {
		t.Errorf("idle RSS per plugin is (five distinct - one) / 4, beside (five of one module - one) / 4: %s", ts[6].Measured)
	}
	// The verdict is on plugins of their own modules, not on copies that
	// share one module's machine code.
	r.Idle = &IdleResult{One: []int64{80 * 1024}, Five: []int64{90 * 1024}, Distinct: []int64{200 * 1024}}
	if ts := r.Targets(); ts[6].Verdict != Missed {
		t.Errorf("30 MiB per distinct plugin, 2.5 MiB per shared one: %s (%s)", ts[6].Verdict, ts[6].Measured)
	}
	if !strings.Contains(ts[3].Measured, "PostgreSQL unreachable") {
		t.Errorf("a skipped scenario says why: %s", ts[3].Measured)
	}

	// The server's CPU ratio goes with the throughput ratio, and a run
	// with vegeta says it tends to flatter greenroom.
	for i := range r.Scenarios[0].Greenroom.Rounds {
		r.Scenarios[0].Greenroom.Rounds[i].CPU = 30 * time.Second
		r.Scenarios[0].Native.Rounds[i].CPU = 10 * time.Second
	}
	r.LoadGen = "vegeta v12 as a library"
	if m := r.Targets()[0].Measured; !strings.Contains(m, "server CPU per request") || !strings.Contains(m, "with vegeta") {
		t.Errorf("ping target with CPU times under vegeta: %s", m)
	}

	r = report(0.59, 0.7, ms(8.1), ms(4))
	ts = r.Targets()
	if ts[0].Verdict != Missed || ts[1].Verdict != Missed || ts[2].Verdict != Met {
		t.Errorf("just under the line: %+v", ts[:3])
	}

	// Another connection count is not the target's measurement.
	r = report(0.9, 0.9, ms(1), ms(1))
	r.Connections = 16
	ts = r.Targets()
	if ts[0].Verdict != NotMeasured || ts[1].Verdict != NotMeasured || ts[2].Verdict != Met {
		t.Errorf("at 16 connections: %+v", ts[:3])
	}

	// Failed requests void the target.
	r = report(0.9, 0.9, ms(1), ms(1))
	r.Scenarios[0].Greenroom.Rounds[0].Non2xx = 3
	if v := verdicts(r); v[r.Targets()[0].Target] != Invalid {
		t.Errorf("with errors: %+v", r.Targets()[0])
	}

	// Nothing measured at all.
	empty := &Report{Connections: 64}
	for _, tr := range empty.Targets() {
		if tr.Verdict != NotMeasured {
			t.Errorf("%s: %s", tr.Target, tr.Verdict)
		}
	}
}

func TestMarkdownSaysSo(t *testing.T) {
	r := report(0.5, 0.5, ms(8), ms(4))
	md := r.Markdown()
	for _, want := range []string{
		"go run ./bench/...", "2 cores",
		"| greenroom | 500 | **0.50×** | 1.00 ms | 8.00 ms | 0 | 0 |",
		"| native | 1 000 | 1.00× |",
		"**missed**", "SKIPPED todo-pg: PostgreSQL unreachable",
		"| cold (empty) | 3 | 9.00 s | 8.00 s | 10.00 s |",
		"**each plugin beyond the first, of its own module** | | **10.0 MiB**",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "REQUEST ERRORS") {
		t.Error("an error banner without errors")
	}
	if strings.Contains(md, "Server CPU per request") {
		t.Error("a CPU line without CPU times")
	}
	for i := range r.Scenarios[0].Greenroom.Rounds {
		r.Scenarios[0].Greenroom.Rounds[i].CPU = time.Duration(r.Scenarios[0].Greenroom.Rounds[i].Requests) * 30 * time.Microsecond
	}
	for i := range r.Scenarios[0].Native.Rounds {
		r.Scenarios[0].Native.Rounds[i].CPU = time.Duration(r.Scenarios[0].Native.Rounds[i].Requests) * 7500 * time.Nanosecond
	}
	if want := "greenroom 30.0 µs, native 7.5 µs (4.0×)"; !strings.Contains(r.Markdown(), want) {
		t.Errorf("report lacks %q:\n%s", want, r.Markdown())
	}

	r.Scenarios[1].Native.Rounds[0].SocketErrors = 2
	r.Scenarios[0].Greenroom.WarmupErrors = 1
	n, lines := r.RequestErrors()
	if n != 3 || len(lines) != 2 {
		t.Errorf("errors %d %q", n, lines)
	}
	md = r.Markdown()
	if !strings.Contains(md, "REQUEST ERRORS: 3 requests failed") {
		t.Errorf("no banner:\n%s", md)
	}

	r.Scenarios[0].Failed = "check before the load: greenroom answered 503"
	if f := r.Failures(); len(f) != 1 || !strings.Contains(r.Markdown(), "FAILED MEASUREMENTS") {
		t.Errorf("failures %q", f)
	}
}

func TestFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                      "—",
		850 * time.Microsecond: "850 µs",
		ms(1.234):              "1.23 ms",
		ms(45.61):              "45.6 ms",
		ms(250):                "250 ms",
		ms(16670):              "16.67 s",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
	for f, want := range map[float64]string{0: "—", 7: "7", 999: "999", 1000: "1 000", 1234567.4: "1 234 567"} {
		if got := fmtRate(f); got != want {
			t.Errorf("fmtRate(%v) = %q, want %q", f, got, want)
		}
	}
	if got := oneLine("a |\n b"); got != `a \| b` {
		t.Errorf("oneLine: %q", got)
	}
}

func TestReplaceGenerated(t *testing.T) {
	doc := "# Benchmarks\n\nhand-written\n\n" + beginMarker + "\nold numbers\n" + endMarker + "\n\n## Later section\nkept\n"
	got, err := replaceGenerated(doc, "new numbers\n")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "# Benchmarks\n\nhand-written\n\n"+beginMarker+"\n") ||
		!strings.HasSuffix(got, endMarker+"\n\n## Later section\nkept\n") ||
		!strings.Contains(got, "\nnew numbers\n") || strings.Contains(got, "old numbers") {
		t.Errorf("replaced:\n%s", got)
	}
	again, err := replaceGenerated(got, "new numbers\n")
	if err != nil || again != got {
		t.Errorf("replacing twice is not stable:\n%s", again)
	}

	got, err = replaceGenerated("# Benchmarks\n\nhand-written\n", "numbers")
	if err != nil || !strings.HasPrefix(got, "# Benchmarks\n\nhand-written\n\n"+beginMarker) || !strings.HasSuffix(got, "numbers\n\n"+endMarker+"\n") {
		t.Errorf("appended: %q %v", got, err)
	}
	if got, err := replaceGenerated("", "numbers"); err != nil || !strings.Contains(got, "numbers") {
		t.Errorf("empty document: %q %v", got, err)
	}

	for name, bad := range map[string]string{
		"begin only":   "x\n" + beginMarker + "\ny\n",
		"end only":     "x\n" + endMarker + "\n",
		"out of order": endMarker + "\n" + beginMarker + "\n",
		"two blocks":   beginMarker + endMarker + beginMarker + endMarker,
	} {
		if _, err := replaceGenerated(bad, "numbers"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestCommand(t *testing.T) {
	got := command([]string{"-duration", "2s", "-out", "", "-scenarios", "ping|echo"})
	if !strings.HasSuffix(got, " -duration 2s -out '' -scenarios 'ping|echo'") {
		t.Errorf("command %q", got)
	}
}

func TestVerdictCode(t *testing.T) {
	var out strings.Builder
	r := report(0.5, 0.5, ms(8), ms(4))
	if code := verdictCode(&out, r, false, false); code != 0 || strings.Contains(out.String(), "REQUEST ERRORS") || strings.Contains(out.String(), "FAILED") {
		t.Errorf("clean run: %d %q", code, out.String())
	}
	r.Scenarios[0].Native.Rounds[0].Non2xx = 1
	if code := verdictCode(&out, r, false, false); code != 1 || !strings.Contains(out.String(), "REQUEST ERRORS: 1 requests failed") {
		t.Errorf("with an error: %d %q", code, out.String())
	}
	out.Reset()
	if code := verdictCode(&out, r, true, false); code != 0 || !strings.Contains(out.String(), "REQUEST ERRORS") {
		t.Errorf("-allow-errors still says so and exits 0: %d %q", code, out.String())
	}
	r.Scenarios[1].Failed = "wrk: exit status 1"
	if code := verdictCode(&out, r, true, false); code != 1 {
		t.Errorf("a failed measurement is not allowed away: %d", code)
	}
	// A skipped scenario (the fixture's todo-pg) is said; it fails only a
	// run that chose its scenarios.
	r = report(0.5, 0.5, ms(8), ms(4))
	out.Reset()
	if code := verdictCode(&out, r, false, false); code != 0 || !strings.Contains(out.String(), "SKIPPED: todo-pg: PostgreSQL unreachable") {
		t.Errorf("skipped in a full run: %d %q", code, out.String())
	}
	if code := verdictCode(&out, r, false, true); code != 1 {
		t.Errorf("skipped in a run that chose it: %d", code)
	}
}

// Rounds stopped at their request bound give no throughput verdict: the
// load generator divides the bound by the whole round's time.
func TestTargetsCappedRounds(t *testing.T) {
	r := report(0.5, 0.5, ms(8), ms(4))
	if v := r.Targets()[0]; v.Verdict == NotMeasured {
		t.Fatalf("uncapped: %+v", v)
	}
	r.Scenarios[0].Native.Rounds[0].Capped = true
	if v := r.Targets()[0]; v.Verdict != NotMeasured || !strings.Contains(v.Measured, "request bound") {
		t.Errorf("capped: %+v", v)
	}
}

func TestChangedBesides(t *testing.T) {
	for _, tc := range []struct {
		porcelain, ignore string
		want              bool
	}{
		{"", "docs/benchmarks.md", false},
		{" M docs/benchmarks.md\n", "docs/benchmarks.md", false},
		{" M docs/benchmarks.md\n", "", true},
		{" M docs/benchmarks.md\nM  runtime/plugin/pool.go\n", "docs/benchmarks.md", true},
		{"R  docs/old.md -> docs/benchmarks.md\n", "docs/benchmarks.md", true},
		{` M "docs/bench marks.md"` + "\n", "docs/bench marks.md", false},
	} {
		if got := changedBesides(tc.porcelain, tc.ignore); got != tc.want {
			t.Errorf("changedBesides(%q, %q) = %v, want %v", tc.porcelain, tc.ignore, got, tc.want)
		}
	}
}

func TestFloor(t *testing.T) {
	us := func(f float64) time.Duration { return time.Duration(f * float64(time.Microsecond)) }
	r := report(0.7, 0.2, ms(2), ms(2))
	todo := &r.Scenarios[1]
	// native 1000 req/s at 300 µs of CPU each; greenroom at 1.5 ms.
	todo.Native.Rounds[0].CPU = time.Duration(todo.Native.Rounds[0].Requests) * us(300)
	todo.Greenroom.Rounds[0].CPU = time.Duration(todo.Greenroom.Rounds[0].Requests) * us(1500)

	var none *FloorResult
	if none.Ratio() != 0 || none.CPUFloor(us(300)) != 0 {
		t.Error("no floor measured: no ratio, no CPU floor")
	}
	r.Floor = &FloorResult{Native: []time.Duration{us(90), us(80), us(100)}, Wasm: []time.Duration{us(930), us(1000), us(900)}}
	if got := r.Floor.Ratio(); math.Abs(got-930.0/90) > 1e-9 {
		t.Errorf("floor ratio %v, want the medians' 930/90", got)
	}
	// 300 µs natively, of which the listing 90 µs; in wasm 930: 1140 µs.
	if got := r.Floor.CPUFloor(us(300)); math.Abs(got-1140.0/300) > 1e-9 {
		t.Errorf("CPU floor %v, want 3.8", got)
	}
	if r.Floor.CPUFloor(0) != 0 {
		t.Error("a CPU floor without native's CPU")
	}
	var todoTarget TargetResult
	for _, tr := range r.Targets() {
		if strings.Contains(tr.Target, "SQLite") {
			todoTarget = tr
		}
	}
	if !strings.Contains(todoTarget.Measured, "server CPU per request 5.0× native's; with only its listing in wasm (the Go-in-wasm floor, below) it would be 3.8×") || todoTarget.Verdict != Missed {
		t.Errorf("todo target: %+v", todoTarget)
	}
	md := r.Markdown()
	for _, want := range []string{
		"#### The Go-in-wasm floor",
		"| native Go | 90.0 µs | 1.00× |",
		"| Go compiled to wasm, wazero | 930 µs | **10.3×** |",
		"Rounds in the order run (native / wasm): 90.0 µs / 930 µs · 80.0 µs / 1.00 ms · 100 µs / 900 µs.",
		"On todo-sqlite the native server used 300 µs of CPU per request; the same request with only this listing's extra time in wasm would need 3.8× that, against greenroom's measured 5.0×.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "todo-pg the native") {
		t.Error("the skipped PostgreSQL scenario got a floor line")
	}
	r.Floor = &FloorResult{Failed: "build bench/floor/guest: go build failed: exit status 1"}
	md = r.Markdown()
	if !strings.Contains(md, "- floor: build bench/floor/guest:") || !strings.Contains(md, "**Failed:** build") || strings.Contains(md, "the Go-in-wasm floor, below") {
		t.Errorf("failed floor:\n%s", md)
	}
}
