package main

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/greenroom-dev/greenroom/bench/floor"
)

// Side is what one server did in a scenario: its measured rounds, in the
// order they ran, and the errors of its unrecorded warm-up.
type Side struct {
	Rounds       []Round
	WarmupErrors int64
}

// Throughput is every completed request of every round over their time.
func (s Side) Throughput() float64 {
	var n int64
	var d time.Duration
	for _, r := range s.Rounds {
		n += r.Requests
		d += r.Elapsed
	}
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// P50 and P99 are the medians over the rounds of each round's percentile
// (percentiles of separate runs cannot be merged exactly).
func (s Side) P50() time.Duration {
	return medianDur(s.Rounds, func(r Round) time.Duration { return r.P50 })
}
func (s Side) P99() time.Duration {
	return medianDur(s.Rounds, func(r Round) time.Duration { return r.P99 })
}

// Non2xx and SocketErrors add up the rounds'.
func (s Side) Non2xx() (n int64) {
	for _, r := range s.Rounds {
		n += r.Non2xx
	}
	return n
}

func (s Side) SocketErrors() (n int64) {
	for _, r := range s.Rounds {
		n += r.SocketErrors
	}
	return n
}

// CPUPerRequest is the server's CPU time over the rounds divided by their
// requests, or 0 when a round's CPU time is unknown.
func (s Side) CPUPerRequest() time.Duration {
	var cpu time.Duration
	var n int64
	for _, r := range s.Rounds {
		if r.CPU <= 0 {
			return 0
		}
		cpu += r.CPU
		n += r.Requests
	}
	if n == 0 {
		return 0
	}
	return cpu / time.Duration(n)
}

// Errors is every failed request, warm-up included.
func (s Side) Errors() int64 { return s.Non2xx() + s.SocketErrors() + s.WarmupErrors }

func (s Side) capped() bool {
	for _, r := range s.Rounds {
		if r.Capped {
			return true
		}
	}
	return false
}

func medianDur(rs []Round, f func(Round) time.Duration) time.Duration {
	if len(rs) == 0 {
		return 0
	}
	v := make([]time.Duration, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return median(v)
}

// median of v (the mean of the middle two for an even count); v is not
// changed.
func median[T ~int64 | ~float64](v []T) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ScenarioResult is one route served by greenroom (the plugin) and by the
// native server, measured in alternating rounds.
type ScenarioResult struct {
	Name      string // the -scenarios name: ping, echo, todo-sqlite, todo-pg, log, read
	Title     string
	What      string
	Greenroom Side
	Native    Side
	// Skipped says why the scenario was not measured (e.g. no PostgreSQL).
	Skipped string
	// Failed says why a measurement could not be made or finished: a
	// response that was not the expected one, a load generator failure.
	Failed string
}

// cpuNotIncluded names what else did the work of a request, besides the
// load generator, whose CPU time the servers' figures leave out.
func (s ScenarioResult) cpuNotIncluded() string {
	if strings.HasSuffix(s.Name, "-pg") {
		return " and PostgreSQL's"
	}
	return ""
}

func (s ScenarioResult) measured() bool {
	return s.Skipped == "" && s.Failed == "" && len(s.Greenroom.Rounds) > 0 && len(s.Native.Rounds) > 0
}

// Ratio is greenroom's throughput over native's (0 when not measured).
func (s ScenarioResult) Ratio() float64 {
	n := s.Native.Throughput()
	if !s.measured() || n == 0 {
		return 0
	}
	return s.Greenroom.Throughput() / n
}

// RoundRatios pairs the rounds as they ran (greenroom's i-th with
// native's i-th) and gives each pair's ratio.
func (s ScenarioResult) RoundRatios() []float64 {
	var out []float64
	for i := 0; i < len(s.Greenroom.Rounds) && i < len(s.Native.Rounds); i++ {
		if n := s.Native.Rounds[i].RPS; n > 0 {
			out = append(out, s.Greenroom.Rounds[i].RPS/n)
		}
	}
	return out
}

// Errors is every failed request on either side.
func (s ScenarioResult) Errors() int64 { return s.Greenroom.Errors() + s.Native.Errors() }

// StartupResult is the time to readiness of greenroom with five plugins,
// from starting the process to the first 200 from the readiness endpoint.
type StartupResult struct {
	Plugins []string
	Cold    []time.Duration // empty compilation cache
	Warm    []time.Duration // cache filled
	ColdRSS []int64         // VmRSS in KiB right after readiness
	WarmRSS []int64
	Skipped string
	Failed  string
}

// IdleResult is the RSS of greenroom with one idle plugin, with five
// plugins of one module (under different ids: its machine code shared)
// and with five plugins of five distinct modules, each plugin with the one
// warm instance it gets at load.
type IdleResult struct {
	One, Five []int64 // VmRSS in KiB, settled after readiness
	Distinct  []int64
	Skipped   string
	Failed    string
}

// PerPluginKiB is what each plugin beyond the first adds, from the
// medians: a plugin of its own module, its machine code included, which
// is what the target is about.
func (r IdleResult) PerPluginKiB() float64 {
	if len(r.One) == 0 || len(r.Distinct) == 0 {
		return 0
	}
	return float64(median(r.Distinct)-median(r.One)) / 4
}

// SharedPerPluginKiB is what each plugin beyond the first adds when all
// use one module: its instance and bookkeeping, not machine code.
func (r IdleResult) SharedPerPluginKiB() float64 {
	if len(r.One) == 0 || len(r.Five) == 0 {
		return 0
	}
	return float64(median(r.Five)-median(r.One)) / 4
}

// FloorResult is the Go-in-wasm floor (package floor): the time of one
// listing of the todo route's own Go work natively and in a wasm guest under
// a plain wazero runtime, per round in the order run.
type FloorResult struct {
	Native, Wasm []time.Duration
	Failed       string
}

func (f *FloorResult) measured() bool {
	return f != nil && f.Failed == "" && len(f.Native) > 0 && len(f.Wasm) > 0
}

// Ratio is the median wasm listing's time over the median native one's.
func (f *FloorResult) Ratio() float64 {
	if !f.measured() || median(f.Native) <= 0 {
		return 0
	}
	return float64(median(f.Wasm)) / float64(median(f.Native))
}

// CPUFloor is the least CPU per request, as a multiple of native's, that a
// route whose native server uses nativeCPU per request could need when its
// listing runs in wasm: everything else as native, plus the listing's
// extra time in wasm. 0 when either is unknown.
func (f *FloorResult) CPUFloor(nativeCPU time.Duration) float64 {
	if !f.measured() || nativeCPU <= 0 {
		return 0
	}
	extra := median(f.Wasm) - median(f.Native)
	return float64(nativeCPU+extra) / float64(nativeCPU)
}

// MemoryResult is one server process's memory, from /proc/<pid>/status.
type MemoryResult struct {
	Process       string
	AfterStart    int64 // VmRSS, KiB, after readiness
	PeakAtStart   int64 // VmHWM then
	AfterLoad     int64 // VmRSS after the last load round
	PeakUnderLoad int64 // VmHWM then: the peak since after start when PeakReset, else the most it ever held
	// PeakReset: VmHWM was set back to VmRSS after start (resetPeak), so
	// PeakUnderLoad is the load's peak, not start-up's.
	PeakReset bool
}

// Report is one run of the harness.
type Report struct {
	Date        time.Time
	Command     string
	Revision    string // greenroom's commit
	Cores       int
	CPU         string
	GoVersion   string
	Platform    string
	LoadStart   float64 // 1-minute load average when the run began
	LoadEnd     float64
	LoadGen     string
	Connections int
	Rounds      int
	Duration    time.Duration
	Warmup      time.Duration
	MaxRequests int64
	Notes       []string
	Scenarios   []ScenarioResult
	Startup     *StartupResult
	Idle        *IdleResult
	Floor       *FloorResult
	Memory      []MemoryResult
}

// Verdict says how a measurement compares with its target.
type Verdict string

const (
	Met         Verdict = "met"
	Missed      Verdict = "missed"
	Reported    Verdict = "reported (no target)"
	NotMeasured Verdict = "not measured"
	Invalid     Verdict = "invalid: request errors"
)

// TargetResult is one target of issue 8 next to what was measured.
type TargetResult struct {
	Target   string
	Measured string
	Verdict  Verdict
}

// The targets of issue 8.
const (
	targetHelloRatio = 0.6
	targetHelloP99   = 2.0 // greenroom's p99 at most this many times native's
	targetTodoRatio  = 0.7
	targetWarmStart  = 300 * time.Millisecond
	targetIdleMiB    = 12.0
	targetConns      = 64
)

func (r *Report) scenario(name string) *ScenarioResult {
	for i := range r.Scenarios {
		if r.Scenarios[i].Name == name {
			return &r.Scenarios[i]
		}
	}
	return nil
}

// Targets compares the run with each target of issue 8.
func (r *Report) Targets() []TargetResult {
	var out []TargetResult
	ratio := func(name, target string, min float64, needConns bool) TargetResult {
		t := TargetResult{Target: target, Verdict: NotMeasured}
		s := r.scenario(name)
		switch {
		case s == nil:
			t.Measured = "scenario not run"
		case s.Skipped != "":
			t.Measured = "skipped: " + s.Skipped
		case s.Failed != "":
			t.Measured = "failed: " + s.Failed
		case !s.measured():
			t.Measured = "no rounds"
		case s.Greenroom.capped() || s.Native.capped():
			// The load generator stopped sending at the bound but the round
			// ran its whole time: both rates are the bound over the time.
			t.Measured = fmt.Sprintf("%.2f×, but rounds stopped at their request bound (-max-requests), so both rates understate the servers'", s.Ratio())
		case needConns && r.Connections != targetConns:
			t.Measured = fmt.Sprintf("%.2f× at %d connections (the target is at %d)", s.Ratio(), r.Connections, targetConns)
		default:
			t.Measured = fmt.Sprintf("%.2f× (%s vs %s req/s)", s.Ratio(), fmtRate(s.Greenroom.Throughput()), fmtRate(s.Native.Throughput()))
			if g, n := s.Greenroom.CPUPerRequest(), s.Native.CPUPerRequest(); g > 0 && n > 0 {
				t.Measured += fmt.Sprintf("; server CPU per request %.1f× native's", float64(g)/float64(n))
				if f := r.Floor.CPUFloor(n); strings.HasPrefix(name, "todo") && f > 0 {
					t.Measured += fmt.Sprintf("; with only its listing in wasm (the Go-in-wasm floor, below) it would be %.1f×", f)
				}
			}
			if strings.HasPrefix(r.LoadGen, "vegeta") {
				t.Measured += "; with vegeta, which takes more of the shared cores than wrk and so gives a higher ratio"
			}
			t.Verdict = verdict(s.Ratio() >= min)
			if s.Errors() > 0 {
				t.Verdict = Invalid
			}
		}
		return t
	}
	out = append(out, ratio("ping", fmt.Sprintf("hello `GET /ping`: throughput ≥ %.1f× native at %d connections", targetHelloRatio, targetConns), targetHelloRatio, true))
	p99 := TargetResult{Target: fmt.Sprintf("hello `GET /ping`: p99 ≤ %.0f× native's", targetHelloP99), Verdict: NotMeasured, Measured: "scenario not run"}
	if s := r.scenario("ping"); s != nil {
		p99.Measured = out[0].Measured
		if s.measured() && s.Native.P99() > 0 {
			f := float64(s.Greenroom.P99()) / float64(s.Native.P99())
			p99.Measured = fmt.Sprintf("%.2f× (%s vs %s)", f, fmtDur(s.Greenroom.P99()), fmtDur(s.Native.P99()))
			p99.Verdict = verdict(f <= targetHelloP99)
			if r.Connections != targetConns {
				p99.Measured += fmt.Sprintf(" at %d connections (the target is at %d)", r.Connections, targetConns)
				p99.Verdict = NotMeasured
			} else if s.Errors() > 0 {
				p99.Verdict = Invalid
			}
		}
	}
	out = append(out, p99)
	out = append(out, ratio("todo-sqlite", fmt.Sprintf("todo `GET /items` (100 rows), SQLite: ≥ %.1f× native", targetTodoRatio), targetTodoRatio, false))
	out = append(out, ratio("todo-pg", fmt.Sprintf("todo `GET /items` (100 rows), PostgreSQL: ≥ %.1f× native", targetTodoRatio), targetTodoRatio, false))

	warm := TargetResult{Target: fmt.Sprintf("warm start-up, five plugins: ready in < %d ms", targetWarmStart.Milliseconds()), Verdict: NotMeasured}
	cold := TargetResult{Target: "cold start-up (empty compilation cache), five plugins", Verdict: NotMeasured}
	switch st := r.Startup; {
	case st == nil:
		warm.Measured, cold.Measured = "not run", "not run"
	case st.Skipped != "" || st.Failed != "":
		why := st.Skipped + st.Failed
		warm.Measured, cold.Measured = why, why
	default:
		if len(st.Warm) > 0 {
			m := median(st.Warm)
			warm.Measured = fmt.Sprintf("%s (median of %d)", fmtDur(m), len(st.Warm))
			warm.Verdict = verdict(m < targetWarmStart)
		}
		if len(st.Cold) > 0 {
			cold.Measured = fmt.Sprintf("%s (median of %d)", fmtDur(median(st.Cold)), len(st.Cold))
			cold.Verdict = Reported
		}
	}
	out = append(out, warm, cold)

	idle := TargetResult{Target: fmt.Sprintf("an idle plugin with one warm instance: < %.0f MiB RSS", targetIdleMiB), Verdict: NotMeasured, Measured: "not run"}
	if id := r.Idle; id != nil {
		switch {
		case id.Skipped != "" || id.Failed != "":
			idle.Measured = id.Skipped + id.Failed
		case len(id.One) > 0 && len(id.Distinct) > 0:
			mib := id.PerPluginKiB() / 1024
			idle.Measured = fmt.Sprintf("%.1f MiB per plugin of its own module (%.1f MiB per plugin sharing another's module)", mib, id.SharedPerPluginKiB()/1024)
			idle.Verdict = verdict(mib < targetIdleMiB)
		}
	}
	out = append(out, idle)
	return out
}

func verdict(ok bool) Verdict {
	if ok {
		return Met
	}
	return Missed
}

// RequestErrors is every failed request of the run, and a line per
// scenario that had some (or whose measurement failed).
func (r *Report) RequestErrors() (int64, []string) {
	var n int64
	var lines []string
	for _, s := range r.Scenarios {
		e := s.Errors()
		n += e
		if e > 0 {
			lines = append(lines, fmt.Sprintf("%s: greenroom %d non-2xx, %d socket errors, %d in warm-up; native %d non-2xx, %d socket errors, %d in warm-up",
				s.Name, s.Greenroom.Non2xx(), s.Greenroom.SocketErrors(), s.Greenroom.WarmupErrors, s.Native.Non2xx(), s.Native.SocketErrors(), s.Native.WarmupErrors))
		}
	}
	return n, lines
}

// Failures lists what could not be measured because something went wrong
// (not skips, which are by choice or for a missing service).
// Skipped lists the scenarios that were not measured, and why.
func (r *Report) Skipped() []string {
	var out []string
	for _, s := range r.Scenarios {
		if s.Skipped != "" {
			out = append(out, s.Name+": "+s.Skipped)
		}
	}
	return out
}

func (r *Report) Failures() []string {
	var out []string
	for _, s := range r.Scenarios {
		if s.Failed != "" {
			out = append(out, s.Name+": "+s.Failed)
		}
	}
	if r.Startup != nil && r.Startup.Failed != "" {
		out = append(out, "startup: "+r.Startup.Failed)
	}
	if r.Idle != nil && r.Idle.Failed != "" {
		out = append(out, "idle-rss: "+r.Idle.Failed)
	}
	if r.Floor != nil && r.Floor.Failed != "" {
		out = append(out, "floor: "+r.Floor.Failed)
	}
	return out
}

// Markdown renders the report; it goes between the markers in
// docs/benchmarks.md and to standard output.
func (r *Report) Markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("### Run of %s\n\n", r.Date.UTC().Format("2006-01-02 15:04 MST"))
	if n, lines := r.RequestErrors(); n > 0 {
		p("> **⚠ REQUEST ERRORS: %d requests failed in this run. The numbers below are not valid measurements.**\n", n)
		for _, l := range lines {
			p("> - %s\n", l)
		}
		p("\n")
	}
	if f := r.Failures(); len(f) > 0 {
		p("> **⚠ FAILED MEASUREMENTS:**\n")
		for _, l := range f {
			p("> - %s\n", oneLine(l))
		}
		p("\n")
	}
	for _, s := range r.Scenarios {
		if s.Skipped != "" {
			p("> **⚠ SKIPPED %s: %s**\n\n", s.Name, s.Skipped)
		}
	}
	p("- Command: `%s`\n", r.Command)
	if r.Revision != "" {
		p("- greenroom at commit %s\n", r.Revision)
	}
	p("- Machine: %d cores (%s), %s, %s\n", r.Cores, r.CPU, r.Platform, r.GoVersion)
	p("- 1-minute load average: %.2f at start, %.2f at the end\n", r.LoadStart, r.LoadEnd)
	p("- Load generator: %s, in its own process\n", r.LoadGen)
	warmup := "no warm-up"
	if r.Warmup > 0 {
		warmup = fmt.Sprintf("%s of warm-up per server (not recorded)", r.Warmup)
	}
	rounds := fmt.Sprintf("%d rounds", r.Rounds)
	if r.Rounds == 1 {
		rounds = "1 round"
	}
	p("- Each scenario: %s, then %s of %s per server alternating greenroom, native, greenroom, native, ...; each round also stops after %d requests\n",
		warmup, rounds, r.Duration, r.MaxRequests)
	for _, n := range r.Notes {
		p("- %s\n", n)
	}
	p("\n#### Targets (issue 8)\n\n| target | measured | verdict |\n|---|---|---|\n")
	for _, t := range r.Targets() {
		v := string(t.Verdict)
		if t.Verdict == Met || t.Verdict == Missed || t.Verdict == Invalid {
			v = "**" + v + "**"
		}
		p("| %s | %s | %s |\n", t.Target, oneLine(t.Measured), v)
	}
	for _, s := range r.Scenarios {
		p("\n#### %s\n\n%s\n\n", s.Title, s.What)
		switch {
		case s.Skipped != "":
			p("Skipped: %s\n", s.Skipped)
			continue
		case s.Failed != "":
			p("**Failed:** %s\n", oneLine(s.Failed))
			if len(s.Greenroom.Rounds) == 0 && len(s.Native.Rounds) == 0 {
				continue
			}
			p("\n")
		}
		p("| server | req/s | plugin / native | p50 | p99 | non-2xx | socket errors |\n|---|---:|---:|---:|---:|---:|---:|\n")
		ratio := "—"
		if s.measured() {
			ratio = fmt.Sprintf("**%.2f×**", s.Ratio())
		}
		for _, side := range []struct {
			name, ratio string
			s           Side
		}{{"greenroom", ratio, s.Greenroom}, {"native", "1.00×", s.Native}} {
			p("| %s | %s | %s | %s | %s | %d | %d |\n", side.name, fmtRate(side.s.Throughput()), side.ratio,
				fmtDur(side.s.P50()), fmtDur(side.s.P99()), side.s.Non2xx(), side.s.SocketErrors())
		}
		var rounds []string
		for i := 0; i < max(len(s.Greenroom.Rounds), len(s.Native.Rounds)); i++ {
			g, n := "—", "—"
			if i < len(s.Greenroom.Rounds) {
				g = fmtRate(s.Greenroom.Rounds[i].RPS)
			}
			if i < len(s.Native.Rounds) {
				n = fmtRate(s.Native.Rounds[i].RPS)
			}
			rounds = append(rounds, g+" / "+n)
		}
		p("\nRounds in the order run (req/s, greenroom / native): %s", strings.Join(rounds, " · "))
		if rr := s.RoundRatios(); len(rr) > 0 {
			p("; per-round ratio %.2f–%.2f", slices.Min(rr), slices.Max(rr))
		}
		p(".")
		if g, n := s.Greenroom.CPUPerRequest(), s.Native.CPUPerRequest(); g > 0 && n > 0 {
			p(" Server CPU per request (user + system from /proc; the load generator's%s not included): greenroom %s, native %s (%.1f×).",
				s.cpuNotIncluded(), fmtCPU(g), fmtCPU(n), float64(g)/float64(n))
		}
		if w := s.Greenroom.WarmupErrors + s.Native.WarmupErrors; w > 0 {
			p(" **Warm-up errors: greenroom %d, native %d.**", s.Greenroom.WarmupErrors, s.Native.WarmupErrors)
		}
		if s.Greenroom.capped() || s.Native.capped() {
			p(" **A round stopped at its request bound: its req/s understates the rate (raise -max-requests).**")
		}
		p("\n")
	}
	if st := r.Startup; st != nil {
		p("\n#### Start-up: time to readiness, five plugins\n\n")
		p("From starting `greenroom serve` to the first 200 from `GET /.greenroom/health/v1/readiness` (polled every 5 ms), with %s on SQLite, each run with a fresh data directory.\n\n", strings.Join(st.Plugins, ", "))
		switch {
		case st.Skipped != "":
			p("Skipped: %s\n", st.Skipped)
		case st.Failed != "":
			p("**Failed:** %s\n", oneLine(st.Failed))
		}
		if len(st.Cold)+len(st.Warm) > 0 {
			p("| compilation cache | runs | median | min | max | RSS right after ready (median) |\n|---|---:|---:|---:|---:|---:|\n")
			row := func(name string, d []time.Duration, rss []int64) {
				if len(d) == 0 {
					return
				}
				p("| %s | %d | %s | %s | %s | %s |\n", name, len(d), fmtDur(median(d)), fmtDur(slices.Min(d)), fmtDur(slices.Max(d)), fmtKiB(median(rss)))
			}
			row("cold (empty)", st.Cold, st.ColdRSS)
			row("warm (filled)", st.Warm, st.WarmRSS)
		}
	}
	if id := r.Idle; id != nil {
		p("\n#### RSS per additional idle plugin\n\n")
		p("greenroom started with one plugin (plugins/hello), then with five plugins of one module (plugins/hello under five ids: plugins whose modules are identical share their machine code), then with five plugins of five distinct modules (plugins/hello and four copies each with a custom section of its own: the same code, compiled and kept apart, as a distinct plugin's is), warm compilation cache; each plugin holds the one warm instance it gets at load. VmRSS read from /proc one second after readiness. The target is about a plugin of its own module.\n\n")
		switch {
		case id.Skipped != "":
			p("Skipped: %s\n", id.Skipped)
		case id.Failed != "":
			p("**Failed:** %s\n", oneLine(id.Failed))
		}
		if len(id.One) > 0 && len(id.Five) > 0 && len(id.Distinct) > 0 {
			p("| greenroom with | runs | VmRSS (median) | min–max |\n|---|---:|---:|---:|\n")
			p("| 1 plugin | %d | %s | %s–%s |\n", len(id.One), fmtKiB(median(id.One)), fmtKiB(slices.Min(id.One)), fmtKiB(slices.Max(id.One)))
			p("| 5 plugins, one module | %d | %s | %s–%s |\n", len(id.Five), fmtKiB(median(id.Five)), fmtKiB(slices.Min(id.Five)), fmtKiB(slices.Max(id.Five)))
			p("| 5 plugins, five modules | %d | %s | %s–%s |\n", len(id.Distinct), fmtKiB(median(id.Distinct)), fmtKiB(slices.Min(id.Distinct)), fmtKiB(slices.Max(id.Distinct)))
			p("| each plugin beyond the first, sharing the module | | %.1f MiB | |\n", id.SharedPerPluginKiB()/1024)
			p("| **each plugin beyond the first, of its own module** | | **%.1f MiB** | |\n", id.PerPluginKiB()/1024)
		}
	}
	if f := r.Floor; f != nil {
		p("\n#### The Go-in-wasm floor: the todo listing's own Go code, natively and in wasm\n\n")
		p("The todo route's own work without HTTP, greenroom or a database (package bench/floor: %d rows through `database/sql` from a driver that holds them, scanned into plugins/todo's item type and encoded with `encoding/json` as plugins/todo answers), run in the harness's process and as a wasip1 module built like a plugin under a plain wazero runtime (no interruption checks, no memory limit, no host calls), in alternating rounds of at least %s each while no server runs; the time is the process's CPU time (all threads, so native Go's collector on the other core counts). What wasm costs this code by itself is a floor under any Go plugin's route that does the same work.\n\n", floor.Rows, floorRound)
		if f.Failed != "" {
			p("**Failed:** %s\n", oneLine(f.Failed))
		}
		if f.measured() {
			var rounds []string
			for i := range f.Native {
				rounds = append(rounds, fmtCPU(f.Native[i])+" / "+fmtCPU(f.Wasm[i]))
			}
			p("| run as | one listing (median) | wasm / native |\n|---|---:|---:|\n")
			p("| native Go | %s | 1.00× |\n", fmtCPU(median(f.Native)))
			p("| Go compiled to wasm, wazero | %s | **%.1f×** |\n", fmtCPU(median(f.Wasm)), f.Ratio())
			p("\nRounds in the order run (native / wasm): %s.", strings.Join(rounds, " · "))
			for _, name := range []string{"todo-sqlite", "todo-pg"} {
				s := r.scenario(name)
				if s == nil || !s.measured() {
					continue
				}
				if g, n := s.Greenroom.CPUPerRequest(), s.Native.CPUPerRequest(); g > 0 && n > 0 {
					p(" On %s the native server used %s of CPU per request; the same request with only this listing's extra time in wasm would need %.1f× that, against greenroom's measured %.1f×.", name, fmtCPU(n), f.CPUFloor(n), float64(g)/float64(n))
				}
			}
			p("\n")
		}
	}
	if len(r.Memory) > 0 {
		p("\n#### Memory of the servers measured above\n\n")
		p("| process | VmRSS after start | VmHWM after start (start-up's peak) | VmRSS after the load rounds | peak under load (VmHWM since after start) |\n|---|---:|---:|---:|---:|\n")
		for _, m := range r.Memory {
			peak := fmtKiB(m.PeakUnderLoad)
			if !m.PeakReset {
				peak += " (VmHWM could not be reset after start: the most it ever held)"
			}
			p("| %s | %s | %s | %s | %s |\n", m.Process, fmtKiB(m.AfterStart), fmtKiB(m.PeakAtStart), fmtKiB(m.AfterLoad), peak)
		}
	}
	return b.String()
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", "\\|")
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

// fmtRate writes a rate with spaces between thousands: 12 345.
func fmtRate(f float64) string {
	if f <= 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return "—"
	}
	s := fmt.Sprintf("%.0f", f)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ' ')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// fmtDur writes a latency or a start-up time with three significant
// figures: 850 µs, 1.23 ms, 45.6 ms, 1.23 s.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

// fmtCPU shows a CPU time per request, with a decimal below 100 µs.
func fmtCPU(d time.Duration) string {
	if d > 0 && d < 100*time.Microsecond {
		return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
	}
	return fmtDur(d)
}

func fmtKiB(k int64) string {
	if k <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f MiB", float64(k)/1024)
}

// The markers around the generated part of docs/benchmarks.md.
const (
	beginMarker = "<!-- bench:begin -->"
	endMarker   = "<!-- bench:end -->"
)

// replaceGenerated puts gen between the markers of doc, keeping everything
// outside them. A document without markers gets them, with gen, appended;
// one with a single marker, or with them out of order or repeated, is an
// error rather than a guess.
func replaceGenerated(doc, gen string) (string, error) {
	bi, ei := strings.Index(doc, beginMarker), strings.Index(doc, endMarker)
	nb, ne := strings.Count(doc, beginMarker), strings.Count(doc, endMarker)
	block := beginMarker + "\n<!-- Generated by the benchmark harness (go run ./bench/...): everything up to the end marker is replaced by its next run. -->\n\n" +
		strings.TrimSpace(gen) + "\n\n" + endMarker
	switch {
	case nb == 0 && ne == 0:
		return strings.TrimRight(doc, "\n") + "\n\n" + block + "\n", nil
	case nb != 1 || ne != 1:
		return "", fmt.Errorf("want exactly one %s and one %s, found %d and %d", beginMarker, endMarker, nb, ne)
	case ei < bi:
		return "", errors.New(endMarker + " comes before " + beginMarker)
	}
	return doc[:bi] + block + doc[ei+len(endMarker):], nil
}
