// Command greenbench is greenroom's benchmark harness (issue 8): it
// measures what a WebAssembly plugin route costs against the same handler
// written natively, and records it in docs/benchmarks.md.
//
//	go run ./bench/... [flags]      (or: just bench [flags])
//
// It builds the greenroom binary and the plugins (plugins/hello,
// plugins/todo, plugins/docs, bench/plugins/logline, bench/plugins/readurl),
// starts greenroom and a native Fiber server with the same handlers as
// separate processes on 127.0.0.1, and drives both from a load generator
// in a third process — wrk when installed, else vegeta as a library in a
// child process — alternating greenroom, native, greenroom, native over
// several rounds, so that a drift in the machine's speed shows in both.
// Each round is bounded in time (-duration) and in requests
// (-max-requests).
//
// It also times start-up with five plugins, cold and warm, and reads the
// servers' memory from /proc. It prints a Markdown report, writes it
// between the <!-- bench:begin --> and <!-- bench:end --> markers of
// docs/benchmarks.md, and exits 1 when any request failed (unless
// -allow-errors).
//
// The same binary is also the native server (`greenbench native`) and the
// vegeta load generator (`greenbench load`); the harness runs itself for
// both.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		var err error
		switch os.Args[1] {
		case "native":
			err = runNative(os.Args[2:])
		case "load":
			err = runLoad(os.Args[2:])
		default:
			os.Exit(run(os.Args[1:]))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "greenbench "+os.Args[1]+":", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run(nil))
}

// scenarioNames are what -scenarios matches against.
var scenarioNames = []string{"ping", "ping-uninterruptible", "echo", "todo-sqlite", "todo-pg", "log", "read", "startup", "idle-rss", "floor"}

func run(args []string) int {
	fs := flag.NewFlagSet("greenbench", flag.ContinueOnError)
	var o options
	var filter string
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of one round on one server (whole seconds with wrk)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unrecorded load on each server before a scenario's rounds (0: none)")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds per server and scenario, alternating greenroom and native")
	fs.IntVar(&o.conns, "connections", 64, "concurrent connections of the load generator")
	fs.Int64Var(&o.maxRequests, "max-requests", 5_000_000, "a round also stops after this many requests")
	fs.StringVar(&filter, "scenarios", "", "regular expression: run only matching sections of "+strings.Join(scenarioNames, ", ")+" (default all)")
	fs.IntVar(&o.startupRuns, "startup-runs", 3, "runs of each start-up measurement (cold, warm, idle RSS); the median is reported")
	fs.StringVar(&o.out, "out", "docs/benchmarks.md", "Markdown file whose generated section is replaced, relative to the module root (\"\": print only)")
	fs.BoolVar(&o.allowErrors, "allow-errors", false, "exit 0 even when requests failed (the report still says so)")
	fs.StringVar(&o.loadgen, "loadgen", "auto", "load generator: wrk, vegeta, or auto (wrk when installed)")
	fs.StringVar(&o.databaseURL, "database-url", "", "PostgreSQL server for the todo-pg scenario (default $DATABASE_URL, else "+defaultDatabaseURL+"); a fresh database is created and dropped")
	fs.IntVar(&o.instances, "instances", 8, "limits.instances of each plugin under load")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (binaries, configs, server logs)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench/... [flags]\n\nMeasures greenroom's plugin routes against the same handlers served natively (see docs/benchmarks.md).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "greenbench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	re, err := regexp.Compile(filter)
	if err != nil {
		fmt.Fprintln(os.Stderr, "greenbench: -scenarios:", err)
		return 2
	}
	o.scenarios = re
	if o.rounds < 1 || o.conns < 1 || o.duration < time.Second || o.instances < 1 {
		fmt.Fprintln(os.Stderr, "greenbench: -rounds, -connections and -instances must be at least 1, -duration at least 1s")
		return 2
	}
	if o.databaseURL == "" {
		o.databaseURL = os.Getenv("DATABASE_URL")
	}
	if o.databaseURL == "" {
		o.databaseURL = defaultDatabaseURL
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := benchmark(ctx, o, args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "greenbench:", err)
		return 1
	}
	md := rep.Markdown()
	fmt.Println(md)
	code := verdictCode(os.Stderr, rep, o.allowErrors, filter != "")
	if o.out != "" {
		path := reportPath(o.out)
		if err := writeReport(path, md); err != nil {
			fmt.Fprintln(os.Stderr, "greenbench:", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "greenbench: wrote the generated section of %s\n", path)
	}
	return code
}

// verdictCode says on w, loudly, when requests failed or measurements
// could not be made, and returns the exit code: 1 for either, except that
// -allow-errors lets failed requests pass. A scenario skipped for want of
// what it needs (PostgreSQL) is said too; it fails the run only when the
// scenarios were chosen (selected), so that a full run on a machine
// without PostgreSQL still passes.
func verdictCode(w io.Writer, rep *Report, allowErrors, selected bool) int {
	code := 0
	if n, lines := rep.RequestErrors(); n > 0 {
		banner := strings.Repeat("!", 72)
		fmt.Fprintf(w, "\n%s\n!!! REQUEST ERRORS: %d requests failed; these numbers are not valid.\n", banner, n)
		for _, l := range lines {
			fmt.Fprintln(w, "!!!   "+l)
		}
		fmt.Fprintln(w, banner)
		if !allowErrors {
			code = 1
		}
	}
	if f := rep.Failures(); len(f) > 0 {
		fmt.Fprintf(w, "greenbench: FAILED: %s\n", strings.Join(f, "; "))
		code = 1
	}
	if sk := rep.Skipped(); len(sk) > 0 {
		fmt.Fprintf(w, "greenbench: SKIPPED: %s\n", strings.Join(sk, "; "))
		if selected {
			code = 1
		}
	}
	return code
}

func writeReport(path, md string) error {
	doc, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	out, err := replaceGenerated(string(doc), md)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, []byte(out), 0o644)
}

// command is how this run was invoked, as a user would type it.
func command(args []string) string {
	cmd := "go run ./bench/..."
	if exe, err := os.Executable(); err == nil && !strings.Contains(exe, "go-build") {
		cmd = filepath.Base(exe)
	}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"|&;()<>$`\\*?[]") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		cmd += " " + a
	}
	return cmd
}

// reportPath is where the generated section goes: out, relative to the
// module root unless absolute; "" for none.
func reportPath(out string) string {
	if out == "" || filepath.IsAbs(out) {
		return out
	}
	root, _ := moduleRoot()
	return filepath.Join(root, out)
}

// revision is the commit of the working tree, marked when it has
// uncommitted changes, or "" outside a git checkout. Changes to report,
// the file the harness itself rewrites (o.out, may be ""), do not count:
// the previous run's output left uncommitted is not a change to the code
// measured.
func revision(report string) string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	ignore := ""
	if report != "" {
		top, err1 := exec.Command("git", "rev-parse", "--show-toplevel").Output()
		abs, err2 := filepath.Abs(report)
		if err1 == nil && err2 == nil {
			if rel, err := filepath.Rel(strings.TrimSpace(string(top)), abs); err == nil {
				ignore = filepath.ToSlash(rel)
			}
		}
	}
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && changedBesides(string(st), ignore) {
		rev += " with uncommitted changes"
	}
	return rev
}

// changedBesides reports whether `git status --porcelain` output lists a
// changed path other than ignore (relative to the repository's top, with
// slashes; "" ignores nothing). A rename counts by both its paths.
func changedBesides(porcelain, ignore string) bool {
	for _, line := range strings.Split(porcelain, "\n") {
		if len(line) < 4 {
			continue
		}
		for _, path := range strings.Split(line[3:], " -> ") {
			if strings.Trim(path, `"`) != ignore || ignore == "" {
				return true
			}
		}
	}
	return false
}

// benchmark is one whole run; the error is for what stops it from
// producing a report at all (the build, the work directory).
func benchmark(ctx context.Context, o options, args []string) (*Report, error) {
	rep := &Report{
		Date:        time.Now(),
		Command:     command(args),
		Cores:       goruntime.NumCPU(),
		CPU:         cpuModel(),
		GoVersion:   goruntime.Version(),
		Platform:    goruntime.GOOS + "/" + goruntime.GOARCH,
		Revision:    revision(reportPath(o.out)),
		LoadStart:   loadAverage(),
		Connections: o.conns,
		Rounds:      o.rounds,
		Duration:    o.duration,
		Warmup:      o.warmup,
		MaxRequests: o.maxRequests,
	}
	h := &harness{opt: o, log: os.Stderr, token: "greenbench-" + randomHex(24)}
	var err error
	if h.root, err = moduleRoot(); err != nil {
		return nil, err
	}
	if h.self, err = os.Executable(); err != nil {
		return nil, err
	}
	switch wrk, lookErr := exec.LookPath("wrk"); {
	case o.loadgen == "wrk" && lookErr != nil:
		return nil, errNoWrk
	case o.loadgen == "vegeta":
		h.gen = &vegetaGen{self: h.self, why: "chosen with -loadgen vegeta"}
	case o.loadgen == "auto" && lookErr != nil:
		h.gen = &vegetaGen{self: h.self, why: "wrk is not installed"}
	case o.loadgen == "wrk", o.loadgen == "auto":
		h.gen = newWrk(wrk, "")
	default:
		return nil, fmt.Errorf("-loadgen %q: want wrk, vegeta or auto", o.loadgen)
	}
	if h.work, err = os.MkdirTemp("", "greenbench-"); err != nil {
		return nil, err
	}
	if o.keep {
		h.progress("keeping %s", h.work)
	} else {
		defer os.RemoveAll(h.work)
	}
	switch g := h.gen.(type) {
	case *wrkGen:
		g.dir = h.work
	case *vegetaGen:
		g.dir = h.work
	}
	rep.LoadGen = h.gen.Describe(o.conns)
	if rep.LoadStart > 1.0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("**Noisy machine: the 1-minute load average was %.2f at start (above 1.0), so other work shared the CPU; absolute numbers are low and vary, ratios less so. Rerun on a quiet machine.**", rep.LoadStart))
	}
	rep.Notes = append(rep.Notes,
		"The servers, the load generator and the read route's test server share the machine's cores; nothing is pinned.",
		"Both servers: access log off, log level warn, log format JSON; every request carries `Authorization: Bearer <a static token from [auth.tokens]>`, which greenroom checks and the native server ignores.",
		fmt.Sprintf("greenroom under load: each plugin's `limits.instances = %d` and `queue_timeout = \"10s\"` (so that queueing shows as latency, not as 503s); every other limit at its default (e.g. `max_requests = 10000`, after which an instance is replaced). Instances are created during the warm-up.", o.instances),
		"Latency columns are the median over the rounds of each round's percentile; req/s is all rounds' requests over their time, and the ratio is greenroom's req/s over native's.",
	)

	if err := h.build(ctx); err != nil {
		return nil, err
	}
	stopDoc, err := h.serveDoc()
	if err != nil {
		return nil, err
	}
	defer stopDoc()

	if h.want("floor") && o.rounds > 0 {
		h.progress("the Go-in-wasm floor: the todo listing's own Go code, natively and in wasm")
		rep.Floor = h.measureFloor(ctx)
	}
	if h.want("startup") && o.startupRuns > 0 {
		h.progress("start-up: %d cold and %d warm runs with five plugins", o.startupRuns, o.startupRuns)
		rep.Startup = h.measureStartup(ctx)
	}
	if err := h.fillCache(ctx); err != nil {
		return nil, err
	}
	if h.want("idle-rss") && o.startupRuns > 0 {
		h.progress("RSS with one and five idle plugins")
		rep.Idle = h.measureIdle(ctx)
	}
	byName := map[string]ScenarioResult{}
	var sqlite []scenario
	var pg *scenario
	var variants []scenario
	all := h.scenarios()
	for i, sc := range all {
		switch {
		case !h.want(sc.name):
		case sc.db == "pg":
			pg = &all[i]
		case sc.variant != "":
			variants = append(variants, sc)
		default:
			sqlite = append(sqlite, sc)
		}
	}
	if len(sqlite) > 0 && ctx.Err() == nil {
		for _, r := range h.runSQLite(ctx, sqlite, rep) {
			byName[r.Name] = r
		}
	}
	for _, sc := range variants {
		if ctx.Err() == nil {
			byName[sc.name] = h.runVariant(ctx, sc)
		}
	}
	if pg != nil && ctx.Err() == nil {
		byName[pg.name] = h.runPG(ctx, *pg)
	}
	for _, sc := range all {
		if r, ok := byName[sc.name]; ok {
			rep.Scenarios = append(rep.Scenarios, r)
		}
	}
	if ctx.Err() != nil {
		return nil, errInterrupted
	}
	if len(h.interruption) > 0 {
		var modes []string
		for _, id := range append(fivePlugins[:len(fivePlugins):len(fivePlugins)], "hello-off") {
			if m, ok := h.interruption[id]; ok {
				modes = append(modes, fmt.Sprintf("%s: %s", id, m))
			}
		}
		rep.Notes = append(rep.Notes, "How greenroom interrupts each plugin's code (admin API): "+strings.Join(modes, ", ")+".")
	}
	rep.LoadEnd = loadAverage()
	return rep, nil
}
