package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/greenroom-dev/greenroom/bench/floor"
	"github.com/greenroom-dev/greenroom/runtime/build"
)

// options are the harness's flags.
type options struct {
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	conns       int
	maxRequests int64
	scenarios   *regexp.Regexp
	startupRuns int
	out         string
	allowErrors bool
	loadgen     string
	databaseURL string
	instances   int
	keep        bool
}

// harness runs one benchmark: it builds greenroom, the plugins and the
// native server, starts them as separate processes on 127.0.0.1 and drives
// them from a separate load-generator process.
type harness struct {
	opt       options
	root      string // the module's directory
	work      string // a temporary directory for binaries, configs, data and logs
	greenroom string // the built greenroom binary
	self      string // this executable, which is also the native server
	wasm      map[string]string
	token     string
	doc       []byte // what the local test server serves to the read route
	docURL    string
	gen       loadGen
	cacheDir  string // a filled compilation cache, once there is one
	log       io.Writer
	// interruption is how greenroom interrupts each plugin's guest code,
	// as its admin API said (the cost differs a lot between modes).
	interruption map[string]string
}

// The plugins of the benchmark: module name → source directory.
var pluginSources = map[string]string{
	"hello":   "plugins/hello",
	"todo":    "plugins/todo",
	"docs":    "plugins/docs",
	"logline": "bench/plugins/logline",
	"readurl": "bench/plugins/readurl",
}

// fivePlugins is what the greenroom under load serves, and what start-up
// is timed with.
var fivePlugins = []string{"hello", "todo", "docs", "logline", "readurl"}

func (h *harness) progress(format string, args ...any) {
	fmt.Fprintf(h.log, "greenbench: "+format+"\n", args...)
}

func (h *harness) want(name string) bool { return h.opt.scenarios.MatchString(name) }

// build compiles greenroom and every plugin into the work directory.
func (h *harness) build(ctx context.Context) error {
	h.greenroom = filepath.Join(h.work, "greenroom")
	h.progress("building greenroom")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", h.greenroom, "./cmd/greenroom")
	cmd.Dir = h.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/greenroom: %v\n%s", err, out)
	}
	h.wasm = map[string]string{}
	names := make([]string, 0, len(pluginSources))
	for name := range pluginSources {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		out := filepath.Join(h.work, "plugins", name+".wasm")
		h.progress("building %s (%s)", name, pluginSources[name])
		cmd := exec.CommandContext(ctx, h.greenroom, "plugin", "build", pluginSources[name], "-o", out)
		cmd.Dir = h.root
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("greenroom plugin build %s: %v\n%s", pluginSources[name], err, b)
		}
		h.wasm[name] = out
	}
	return nil
}

// serveDoc starts the local test server the read route reads from: 4 KiB
// of text at /doc, in this process.
func (h *harness) serveDoc() (stop func(), err error) {
	line := []byte("greenroom benchmark document: 64 bytes a line, 64 lines........\n")
	h.doc = bytes.Repeat(line, 4096/len(line))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write(h.doc)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln)
	h.docURL = "http://" + ln.Addr().String() + "/doc"
	return func() { srv.Close() }, nil
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// plugin is one [plugins.<id>] of a greenroom config: a module under an id.
type plugin struct{ id, module string }

func modules(names ...string) []plugin {
	out := make([]plugin, len(names))
	for i, n := range names {
		out[i] = plugin{n, n}
	}
	return out
}

// grConfig is what changes between the greenroom configs of a run.
type grConfig struct {
	listen   string
	cacheDir string
	dataDir  string // SQLite directory; "" with pg
	pg       bool   // PostgreSQL from $GREENBENCH_DATABASE_URL
	plugins  []plugin
	tuned    bool // the pool settings of the load scenarios, not the defaults
	// uninterruptible sets limits.interruptible = false on every plugin.
	uninterruptible bool
}

// configText is greenroom's config for c. Both servers log warn and above
// as JSON, without an access log.
func (h *harness) configText(c grConfig) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Written by the benchmark harness (bench/harness.go).\n")
	p("[server]\nlisten = %q\n\n", c.listen)
	p("[log]\nlevel = \"warn\"\nformat = \"json\"\naccess_log = false\n\n")
	p("[runtime]\ncache_dir = %q\n\n", c.cacheDir)
	switch {
	case c.pg:
		p("[database]\nclient = \"pg\"\nconnection = \"${GREENBENCH_DATABASE_URL}\"\n\n")
	case c.dataDir != "":
		p("[database]\nclient = \"sqlite\"\nconnection = %q\n\n", "file:"+c.dataDir)
	}
	p("[auth.tokens.bench]\ntoken = %q\nsubject = \"service:greenbench\"\nadmin = true\n\n", h.token)
	// The local test server only: an exact host, plain http, allowed to be
	// internal (loopback) for the benchmark.
	p("[reading]\nallow = [\n  { host = \"127.0.0.1\", scheme = \"http\", internal = true },\n  { host = \"raw.githubusercontent.com\", paths = [\"/backstage/\"] },\n]\n\n")
	for _, pl := range c.plugins {
		p("[plugins.%s]\npath = %q\n", pl.id, h.wasm[pl.module])
		var limits []string
		if c.tuned {
			limits = append(limits, fmt.Sprintf("instances = %d", h.opt.instances), `queue_timeout = "10s"`)
		}
		if c.uninterruptible {
			limits = append(limits, "interruptible = false")
		}
		switch pl.module {
		case "todo":
			p("[plugins.%s.capabilities]\ndatabase = true\n", pl.id)
		case "logline":
			// Every line written: the native side has no rate limit either.
			limits = append(limits, "log_rate = 1000000", "log_burst = 100000")
		case "readurl":
			p("[plugins.%s.capabilities]\nurlreader = [\"127.0.0.1\"]\n", pl.id)
		case "docs":
			// Only loaded (start-up, memory), never called. Granted its
			// database, where it keeps its copy and fetch history.
			p("[plugins.%s.capabilities]\nurlreader = [\"raw.githubusercontent.com/backstage/\"]\ndatabase = true\n", pl.id)
			p("[plugins.%s.config]\nurl = \"https://raw.githubusercontent.com/backstage/backstage/master/README.md\"\n", pl.id)
		}
		if len(limits) > 0 {
			p("[plugins.%s.limits]\n%s\n", pl.id, strings.Join(limits, "\n"))
		}
		p("\n")
	}
	return b.String()
}

// server is a running greenroom or native server.
type server struct {
	name string
	base string // http://127.0.0.1:port
	proc *proc
}

// startGreenroom writes c's config under dir and starts greenroom serve,
// and waits for readiness with every plugin loaded.
func (h *harness) startGreenroom(ctx context.Context, name string, c grConfig, env []string) (*server, time.Duration, error) {
	dir := filepath.Join(h.work, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0, err
	}
	addr, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	c.listen = addr
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(h.configText(c)), 0o600); err != nil {
		return nil, 0, err
	}
	p, err := startProc(name, filepath.Join(dir, "greenroom.log"), env, h.greenroom, "serve", "--config", cfgPath)
	if err != nil {
		return nil, 0, err
	}
	s := &server{name: "greenroom", base: "http://" + addr, proc: p}
	took, err := p.waitReady(ctx, s.base+"/.greenroom/health/v1/readiness", 5*time.Minute)
	if err == nil {
		err = h.checkPlugins(ctx, s, c.plugins)
	}
	if err != nil {
		p.stop()
		return nil, 0, err
	}
	return s, took, nil
}

// checkPlugins makes sure every plugin loaded: readiness is 200 also when
// a plugin failed for good, and a failed plugin would make start-up look
// fast.
func (h *harness) checkPlugins(ctx context.Context, s *server, want []plugin) error {
	status, body, err := h.do(ctx, s, "GET", "/.greenroom/plugins/v1/", nil, "")
	if err != nil {
		return err
	}
	var list struct {
		Plugins []struct {
			ID, State, LastError, Interruption string
		}
	}
	if status != 200 {
		return fmt.Errorf("GET /.greenroom/plugins/v1/: %d %s", status, tail(string(body), 300))
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("GET /.greenroom/plugins/v1/: %v", err)
	}
	ready := map[string]bool{}
	for _, p := range list.Plugins {
		if p.State != "ready" {
			return fmt.Errorf("plugin %s is %s: %s", p.ID, p.State, p.LastError)
		}
		ready[p.ID] = true
		if h.interruption == nil {
			h.interruption = map[string]string{}
		}
		h.interruption[p.ID] = p.Interruption
	}
	for _, p := range want {
		if !ready[p.id] {
			return fmt.Errorf("plugin %s is not listed as ready", p.id)
		}
	}
	return nil
}

// startNative starts the native server (this binary, `native`).
func (h *harness) startNative(ctx context.Context, name string, args []string, env []string) (*server, error) {
	dir := filepath.Join(h.work, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	args = append([]string{"native", "-listen", addr, "-log", filepath.Join(dir, "route.log")}, args...)
	p, err := startProc(name, filepath.Join(dir, "native.log"), env, h.self, args...)
	if err != nil {
		return nil, err
	}
	s := &server{name: "native", base: "http://" + addr, proc: p}
	if _, err := p.waitReady(ctx, s.base+"/.native/ready", time.Minute); err != nil {
		p.stop()
		return nil, err
	}
	return s, nil
}

// do sends one request with the benchmark's credential.
func (h *harness) do(ctx context.Context, s *server, method, path string, body []byte, contentType string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// seedTodo creates the 100 items the list scenario returns, through
// greenroom's API (so through the plugin, as a user would).
func (h *harness) seedTodo(ctx context.Context, s *server) error {
	for i := 1; i <= 100; i++ {
		status, body, err := h.do(ctx, s, "POST", "/api/todo/items", []byte(fmt.Sprintf(`{"title":"benchmark item %03d"}`, i)), "application/json")
		if err != nil {
			return fmt.Errorf("seed todo: %w", err)
		}
		if status != http.StatusCreated {
			return fmt.Errorf("seed todo: %d %s", status, tail(string(body), 300))
		}
	}
	return nil
}

// scenario is one route measured on both servers.
type scenario struct {
	name, title, what string
	db                string // "", "sqlite" or "pg": which servers serve it
	method, path      string
	// grPath is greenroom's path when it is not path (a variant serving
	// the plugin under another id).
	grPath string
	// variant names the greenroom setup of a variant scenario (see
	// runVariant); "" is the common one.
	variant     string
	body        []byte
	contentType string
	check       func(body []byte) error
}

func wantBody(want []byte) func([]byte) error {
	return func(got []byte) error {
		if !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(want)) {
			return fmt.Errorf("body %q, want %q", tail(string(got), 100), tail(string(want), 100))
		}
		return nil
	}
}

func hundredItems(body []byte) error {
	var list struct{ Items []map[string]json.RawMessage }
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("not a todo list: %v", err)
	}
	if len(list.Items) != 100 {
		return fmt.Errorf("%d items, want 100", len(list.Items))
	}
	return sameItemFields(list.Items)
}

// todoItemFields are the JSON fields of plugins/todo's Item: the native
// handler must answer with the same ones, or the two sides would not do
// the same work.
var todoItemFields = []string{"created_at", "done", "done_at", "id", "title", "updated_at"}

func sameItemFields(items []map[string]json.RawMessage) error {
	for i, it := range items {
		keys := slices.Sorted(maps.Keys(it))
		if !slices.Equal(keys, todoItemFields) {
			return fmt.Errorf("item %d has the fields %v, want plugins/todo's %v", i, keys, todoItemFields)
		}
	}
	return nil
}

func (h *harness) scenarios() []scenario {
	echo := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	todo := func(db, name string) scenario {
		return scenario{
			name: "todo-" + db, db: db, method: "GET", path: "/api/todo/items", check: hundredItems,
			title: fmt.Sprintf("`GET /api/todo/items`, 100 rows, %s: plugins/todo vs Fiber + bun", name),
			what: fmt.Sprintf("The plugin lists the items through the SDK's `database/sql` driver and `encoding/json`; the native handler runs the same query with bun on the same %s database (as a pool of 4 connections, the plugin's `db_max_conns`) and answers with Fiber's `c.JSON`. Both see the same 100 rows, created through the plugin's API before the run.",
				map[string]string{"sqlite": "SQLite file", "pg": "PostgreSQL"}[db]),
		}
	}
	return []scenario{
		{name: "ping", method: "GET", path: "/api/hello/ping", check: wantBody([]byte(`{"ok":true}`)),
			title: "`GET /api/hello/ping`: plugins/hello vs Fiber",
			what:  "`{\"ok\":true}` with the credential checked (greenroom) or ignored (native)."},
		{name: "ping-uninterruptible", method: "GET", path: "/api/hello/ping", grPath: "/api/hello-off/ping", variant: "uninterruptible", check: wantBody([]byte(`{"ok":true}`)),
			title: "`GET /api/hello/ping` with `limits.interruptible = false`: plugins/hello vs Fiber",
			what:  "The ping scenario with the plugin's interruption checks off (the operator's opt-out for vetted plugins, docs/sandbox.md), so that the two tables side by side show what interrupting guests costs under load. greenroom runs only this plugin, under the id `hello-off`, in a process of its own; a native server of its own too."},
		{name: "echo", method: "POST", path: "/api/hello/echo", body: echo, contentType: "application/octet-stream", check: wantBody(echo),
			title: "`POST /api/hello/echo`, 16 KiB body: plugins/hello vs Fiber",
			what:  "The body back, as sent."},
		todo("sqlite", "SQLite"),
		todo("pg", "PostgreSQL"),
		{name: "log", method: "GET", path: "/api/logline/log", check: wantBody([]byte(`{"ok":true}`)),
			title: "`GET /api/logline/log`, one log line: bench/plugins/logline vs Fiber + logrus",
			what:  "One warn line with two attributes, as JSON through logrus to a file in the run's temporary directory on both sides (greenroom's log: its standard error redirected to that file; native: logrus writing to it). greenroom adds the plugin and request id fields, redacts secrets and applies the plugin's rate limit (set high enough that nothing is dropped); the native line carries the same fields."},
		{name: "read", method: "GET", path: "/api/readurl/read?url=" + url.QueryEscape(h.docURL), check: wantBody(h.doc),
			title: "`GET /api/readurl/read`, a 4 KiB URL read: bench/plugins/readurl vs Fiber + net/http",
			what:  "Both read a 4 KiB document from a local test server (in the harness's process) and answer with it: the plugin with `greenroom.ReadURL`, allowed by an allow rule for exactly `127.0.0.1` with `internal = true` (this benchmark's config only); the native handler with a `net/http` client keeping 32 idle connections per host, as greenroom's reader does."},
	}
}

// measure runs one scenario: a check that both servers answer what they
// should, a warm-up of each, then the rounds, alternating.
func (h *harness) measure(ctx context.Context, sc scenario, gr, nat *server) ScenarioResult {
	res := ScenarioResult{Name: sc.name, Title: sc.title, What: sc.what}
	sides := []struct {
		s    *server
		side *Side
	}{{gr, &res.Greenroom}, {nat, &res.Native}}
	path := func(s *server) string {
		if s == gr && sc.grPath != "" {
			return sc.grPath
		}
		return sc.path
	}
	check := func() error {
		for _, x := range sides {
			status, body, err := h.do(ctx, x.s, sc.method, path(x.s), sc.body, sc.contentType)
			if err != nil {
				return fmt.Errorf("%s: %w", x.s.name, err)
			}
			if status != http.StatusOK {
				return fmt.Errorf("%s answered %d: %s", x.s.name, status, tail(string(body), 300))
			}
			if err := sc.check(body); err != nil {
				return fmt.Errorf("%s: %w", x.s.name, err)
			}
		}
		return nil
	}
	if err := check(); err != nil {
		res.Failed = "check before the load: " + err.Error()
		return res
	}
	target := func(s *server) loadTarget {
		t := loadTarget{Method: sc.method, URL: s.base + path(s), Body: sc.body, Header: [][2]string{{"Authorization", "Bearer " + h.token}}}
		if sc.contentType != "" {
			t.Header = append(t.Header, [2]string{"Content-Type", sc.contentType})
		}
		return t
	}
	if h.opt.warmup > 0 {
		for _, x := range sides {
			r, err := h.gen.Run(ctx, target(x.s), h.opt.warmup, h.opt.conns, h.opt.maxRequests)
			if err != nil {
				res.Failed = fmt.Sprintf("warm-up of %s: %v", x.s.name, err)
				return res
			}
			x.side.WarmupErrors = r.Errors()
		}
	}
	for i := 0; i < h.opt.rounds; i++ {
		for _, x := range sides {
			cpu0, cpuErr := x.s.proc.cpu()
			r, err := h.gen.Run(ctx, target(x.s), h.opt.duration, h.opt.conns, h.opt.maxRequests)
			if err != nil {
				res.Failed = fmt.Sprintf("round %d of %s: %v", i+1, x.s.name, err)
				return res
			}
			if cpu1, err := x.s.proc.cpu(); err == nil && cpuErr == nil {
				r.CPU = cpu1 - cpu0
			}
			x.side.Rounds = append(x.side.Rounds, r)
		}
		g, n := res.Greenroom.Rounds[i], res.Native.Rounds[i]
		h.progress("  %s round %d: greenroom %s req/s (p99 %s, %d errors), native %s req/s (p99 %s, %d errors)",
			sc.name, i+1, fmtRate(g.RPS), fmtDur(g.P99), g.Errors(), fmtRate(n.RPS), fmtDur(n.P99), n.Errors())
	}
	if err := check(); err != nil {
		res.Failed = "check after the load: " + err.Error()
	}
	return res
}

// measureStartup times readiness with five plugins, cold (a fresh, empty
// compilation cache each run) then warm (the last cold run's cache). It
// leaves h.cacheDir filled for what follows.
func (h *harness) measureStartup(ctx context.Context) *StartupResult {
	res := &StartupResult{Plugins: fivePlugins}
	once := func(name, cache string) (time.Duration, int64, error) {
		c := grConfig{cacheDir: cache, dataDir: filepath.Join(h.work, name, "data"), plugins: modules(fivePlugins...), tuned: true}
		s, took, err := h.startGreenroom(ctx, name, c, nil)
		if err != nil {
			return 0, 0, err
		}
		defer s.proc.stop()
		rss, _, err := s.proc.memory()
		return took, rss, err
	}
	for i := 0; i < h.opt.startupRuns; i++ {
		cache := filepath.Join(h.work, fmt.Sprintf("cache-cold-%d", i+1))
		took, rss, err := once(fmt.Sprintf("start-cold-%d", i+1), cache)
		if err != nil {
			res.Failed = err.Error()
			return res
		}
		h.progress("start-up, cold, run %d: ready in %s", i+1, fmtDur(took))
		res.Cold, res.ColdRSS = append(res.Cold, took), append(res.ColdRSS, rss)
		h.cacheDir = cache
	}
	for i := 0; i < h.opt.startupRuns; i++ {
		took, rss, err := once(fmt.Sprintf("start-warm-%d", i+1), h.cacheDir)
		if err != nil {
			res.Failed = err.Error()
			return res
		}
		h.progress("start-up, warm, run %d: ready in %s", i+1, fmtDur(took))
		res.Warm, res.WarmRSS = append(res.Warm, took), append(res.WarmRSS, rss)
	}
	return res
}

// measureIdle reads greenroom's RSS with one plugin, with five copies of
// hello under different ids (one module: its machine code shared), and
// with five plugins of five distinct modules (hello and four variants of
// it: each compiled on its own, as a distinct plugin is), alternating, on
// the warm cache.
func (h *harness) measureIdle(ctx context.Context) *IdleResult {
	res := &IdleResult{}
	shared := []plugin{{"hello", "hello"}, {"hello-2", "hello"}, {"hello-3", "hello"}, {"hello-4", "hello"}, {"hello-5", "hello"}}
	distinct := []plugin{{"hello", "hello"}}
	for n := 2; n <= 5; n++ {
		name, err := h.variant("hello", n)
		if err != nil {
			res.Failed = err.Error()
			return res
		}
		distinct = append(distinct, plugin{fmt.Sprintf("hello-%d", n), name})
	}
	once := func(name string, plugins []plugin, wait time.Duration) (int64, error) {
		s, _, err := h.startGreenroom(ctx, name, grConfig{cacheDir: h.cacheDir, plugins: plugins}, nil)
		if err != nil {
			return 0, err
		}
		defer s.proc.stop()
		// Let the loads' garbage be collected and the first instances
		// settle, as an idle server would.
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		rss, _, err := s.proc.memory()
		return rss, err
	}
	// The variants compiled into the cache first, not measured.
	h.progress("idle RSS: compiling four variants of hello")
	if _, err := once("idle-fill", distinct, 0); err != nil {
		res.Failed = err.Error()
		return res
	}
	for i := 0; i < max(h.opt.startupRuns, 1); i++ {
		one, err := once(fmt.Sprintf("idle-one-%d", i+1), shared[:1], time.Second)
		if err != nil {
			res.Failed = err.Error()
			return res
		}
		five, err := once(fmt.Sprintf("idle-five-%d", i+1), shared, time.Second)
		if err != nil {
			res.Failed = err.Error()
			return res
		}
		dist, err := once(fmt.Sprintf("idle-distinct-%d", i+1), distinct, time.Second)
		if err != nil {
			res.Failed = err.Error()
			return res
		}
		h.progress("idle RSS, run %d: one plugin %s, five of one module %s, five distinct modules %s", i+1, fmtKiB(one), fmtKiB(five), fmtKiB(dist))
		res.One, res.Five, res.Distinct = append(res.One, one), append(res.Five, five), append(res.Distinct, dist)
	}
	return res
}

// variant writes a copy of the module built for name with a custom
// section naming variant n, and returns the module name it is registered
// under. Its code is name's, but its bytes differ: wazero compiles it on
// its own and keeps its own machine code, as for a distinct plugin of the
// same size.
func (h *harness) variant(name string, n int) (string, error) {
	wasm, err := os.ReadFile(h.wasm[name])
	if err != nil {
		return "", err
	}
	payload := append(binary.AppendUvarint(nil, uint64(len("greenbench.variant"))), "greenbench.variant"...)
	payload = strconv.AppendInt(payload, int64(n), 10)
	wasm = append(wasm, 0) // a custom section
	wasm = append(binary.AppendUvarint(wasm, uint64(len(payload))), payload...)
	v := fmt.Sprintf("%s-v%d", name, n)
	out := filepath.Join(h.work, "plugins", v+".wasm")
	if err := os.WriteFile(out, wasm, 0o644); err != nil {
		return "", err
	}
	h.wasm[v] = out
	return v, nil
}

// fillCache makes sure h.cacheDir holds compiled modules (when start-up
// was not measured), so the load scenarios start warm.
func (h *harness) fillCache(ctx context.Context) error {
	if h.cacheDir != "" {
		return nil
	}
	h.cacheDir = filepath.Join(h.work, "cache")
	h.progress("compiling the plugins once (filling the compilation cache)")
	s, _, err := h.startGreenroom(ctx, "fill-cache", grConfig{cacheDir: h.cacheDir, dataDir: filepath.Join(h.work, "fill-cache", "data"), plugins: modules(fivePlugins...), tuned: true}, nil)
	if err != nil {
		return err
	}
	s.proc.stop()
	return nil
}

// settle waits a second, then reads a server's memory.
func settle(ctx context.Context, s *server) (rss, hwm int64) {
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	rss, hwm, _ = s.proc.memory()
	return rss, hwm
}

// runSQLite serves the SQLite scenarios: one greenroom with the five
// plugins and one native server, both kept up for every scenario.
func (h *harness) runSQLite(ctx context.Context, scs []scenario, rep *Report) []ScenarioResult {
	fail := func(err error) []ScenarioResult {
		var out []ScenarioResult
		for _, sc := range scs {
			out = append(out, ScenarioResult{Name: sc.name, Title: sc.title, What: sc.what, Failed: "could not start the servers: " + err.Error()})
		}
		return out
	}
	data := filepath.Join(h.work, "sqlite", "data")
	gr, _, err := h.startGreenroom(ctx, "sqlite", grConfig{cacheDir: h.cacheDir, dataDir: data, plugins: modules(fivePlugins...), tuned: true}, nil)
	if err != nil {
		return fail(err)
	}
	defer gr.proc.stop()
	if err := h.seedTodo(ctx, gr); err != nil {
		return fail(err)
	}
	nat, err := h.startNative(ctx, "native-sqlite", []string{"-sqlite", filepath.Join(data, "plugins", "todo.db")}, nil)
	if err != nil {
		return fail(err)
	}
	defer nat.proc.stop()
	gm := MemoryResult{Process: "greenroom (five plugins, SQLite)"}
	nm := MemoryResult{Process: "native (Fiber, bun on SQLite)"}
	gm.AfterStart, gm.PeakAtStart = settle(ctx, gr)
	nm.AfterStart, nm.PeakAtStart = settle(ctx, nat)
	// From here VmHWM is the peak under load, not start-up's.
	gm.PeakReset = resetPeak(gr.proc.pid()) == nil
	nm.PeakReset = resetPeak(nat.proc.pid()) == nil
	var out []ScenarioResult
	for _, sc := range scs {
		h.progress("scenario %s", sc.name)
		out = append(out, h.measure(ctx, sc, gr, nat))
		if ctx.Err() != nil {
			break
		}
	}
	gm.AfterLoad, gm.PeakUnderLoad, _ = gr.proc.memory()
	nm.AfterLoad, nm.PeakUnderLoad, _ = nat.proc.memory()
	rep.Memory = append(rep.Memory, gm, nm)
	return out
}

// runVariant serves a variant scenario with a greenroom of its own running
// only plugins/hello as hello-off, set up as sc.variant says, and a native
// server of its own.
func (h *harness) runVariant(ctx context.Context, sc scenario) ScenarioResult {
	res := ScenarioResult{Name: sc.name, Title: sc.title, What: sc.what}
	c := grConfig{cacheDir: h.cacheDir, plugins: []plugin{{"hello-off", "hello"}}, tuned: true}
	switch sc.variant {
	case "uninterruptible":
		c.uninterruptible = true
	default:
		res.Failed = fmt.Sprintf("unknown variant %q", sc.variant)
		return res
	}
	gr, _, err := h.startGreenroom(ctx, sc.variant, c, nil)
	if err != nil {
		res.Failed = err.Error()
		return res
	}
	defer gr.proc.stop()
	nat, err := h.startNative(ctx, "native-"+sc.variant, nil, nil)
	if err != nil {
		res.Failed = err.Error()
		return res
	}
	defer nat.proc.stop()
	h.progress("scenario %s", sc.name)
	return h.measure(ctx, sc, gr, nat)
}

// runPG serves the PostgreSQL scenario in a fresh database, dropped after
// (with the plugin roles greenroom made for it).
func (h *harness) runPG(ctx context.Context, sc scenario) ScenarioResult {
	res := ScenarioResult{Name: sc.name, Title: sc.title, What: sc.what}
	db, err := createPGDatabase(ctx, h.opt.databaseURL)
	if err != nil {
		res.Skipped = fmt.Sprintf("PostgreSQL unreachable or unusable at %s: %v (set DATABASE_URL or -database-url)", redactURL(h.opt.databaseURL), err)
		return res
	}
	defer func() {
		if err := db.drop(); err != nil {
			h.progress("warning: %v", err)
		}
	}()
	gr, _, err := h.startGreenroom(ctx, "pg", grConfig{cacheDir: h.cacheDir, pg: true, plugins: modules("todo"), tuned: true}, []string{"GREENBENCH_DATABASE_URL=" + db.url})
	if err != nil {
		res.Failed = err.Error()
		return res
	}
	defer gr.proc.stop()
	if err := h.seedTodo(ctx, gr); err != nil {
		res.Failed = err.Error()
		return res
	}
	nat, err := h.startNative(ctx, "native-pg", nil, []string{nativePGEnv + "=" + db.nativeURL()})
	if err != nil {
		res.Failed = err.Error()
		return res
	}
	defer nat.proc.stop()
	h.progress("scenario %s", sc.name)
	return h.measure(ctx, sc, gr, nat)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var errInterrupted = errors.New("interrupted")

// floorRound is how long each round of the floor measurement runs on each
// side: the listing takes under a millisecond natively and about ten times
// that in wasm, so a second is thousands of listings.
const floorRound = time.Second

// measureFloor runs package floor's listing natively (in this process) and
// in a wasm guest under a plain wazero runtime, in alternating rounds,
// while no server runs.
func (h *harness) measureFloor(ctx context.Context) *FloorResult {
	res := &FloorResult{}
	out := filepath.Join(h.work, "floor.wasm")
	if err := build.Build(ctx, filepath.Join(h.root, floor.GuestDir), out); err != nil {
		res.Failed = err.Error()
		return res
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		res.Failed = err.Error()
		return res
	}
	g, err := floor.LoadGuest(ctx, wasm)
	if err != nil {
		res.Failed = err.Error()
		return res
	}
	defer g.Close(ctx)
	m, err := floor.Measure(ctx, g, h.opt.rounds, floorRound)
	if err != nil {
		res.Failed = err.Error()
		return res
	}
	res.Native, res.Wasm = m.Native, m.Wasm
	for i := range m.Native {
		h.progress("  floor round %d: native %s, wasm %s per listing", i+1, fmtCPU(m.Native[i]), fmtCPU(m.Wasm[i]))
	}
	return res
}
