// Package runtime assembles greenroom: it turns a Config into loaded
// plugins, each behind a Slot that routes calls to the plugin's current
// version, and gives the plugins their host services.
//
// Lifecycle: New (nothing runs yet) → Load (compile, pre-warm; failures are
// recorded per plugin and never stop the others) → Handle → Close.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/uptrace/bun"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/build"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/logging"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
	"github.com/greenroom-dev/greenroom/runtime/scheduler"
	"github.com/greenroom-dev/greenroom/runtime/urlreader"
)

// Options change how a Runtime treats its config.
type Options struct {
	// BuildSources lets a plugin's path name a Go source directory, which
	// is built (when its sources changed) into the cache. greenroom dev
	// sets it; serve refuses source directories.
	BuildSources bool
	// Replica names this process in the scheduler's leases and history;
	// empty means host name, process id and a random suffix. Tests
	// running several replicas in one process set distinct ones.
	Replica string
	// URLReader tunes the URL reader's connections. greenroom's commands
	// leave it zero; tests inject a resolver and make local test servers
	// reachable (urlreader.Options.TestOnlyReachable, refused outside
	// tests).
	URLReader urlreader.Options
	// LogDropReport is the interval of the dropped-log-lines summary
	// (logging.DefaultDropReport when 0).
	LogDropReport time.Duration
}

// Runtime holds every configured plugin.
type Runtime struct {
	cfg    atomic.Pointer[config.Config]
	log    *logrus.Logger
	opts   Options
	cache  wazero.CompilationCache
	engine *plugin.Engine
	sums   sumIndex
	table  atomic.Pointer[slotTable]
	db     *database.Service
	sched  *scheduler.Scheduler

	// reloadMu serialises Load, Reload and Close: one changes the plugin
	// set at a time. Requests never take it.
	reloadMu sync.Mutex
	// drains tracks replaced versions finishing their calls in flight.
	drains sync.WaitGroup
	// shutdown is closed by BeginShutdown, cut when Close's context ends:
	// from the first, a drain ends with the shutdown, not on its own timer
	// (retire). drainErrs are the drains cut since the shutdown began.
	shutdownOnce, cutOnce sync.Once
	shutdown, cut         chan struct{}
	drainMu               sync.Mutex
	drainErrs             []error
	// reloading is closed once the reload in progress has published its
	// plugin table; nil while no reload runs.
	reloading atomic.Pointer[chan struct{}]
	// onReload are called by Reload with the config it moves to (OnReload).
	onReloadMu sync.Mutex
	onReload   []func(context.Context, *config.Config) []string

	// plogs hold each plugin id's logger (rate limit, drop count) across
	// its versions; reader is the URL reader every plugin reads through
	// ([reading] and [[integrations]] change only with a restart).
	plogMu sync.Mutex
	plogs  map[string]*logging.PluginLogger
	// counters hold each plugin id's figures across its slots.
	countersMu sync.Mutex
	counters   map[string]*idCounters
	reader     *urlreader.Reader
	loaded     atomic.Bool

	// retries are the loads retrying in the background (retry.go), by
	// slot; retriesDone once Close stopped them.
	retryMu     sync.Mutex
	retries     map[*Slot]*loadRetry
	retryWG     sync.WaitGroup
	retriesDone bool
}

// slotTable is the set of plugins at one moment; a reload publishes a new
// one. Requests read it without locks.
type slotTable struct {
	slots map[string]*Slot
	ids   []string
}

// State is where a plugin is in its life.
type State string

const (
	StateLoading State = "loading"
	StateReady   State = "ready"
	StateFailed  State = "failed"
	StateClosed  State = "closed"
	// StateRetrying: its load failed on a database error that may pass
	// (database.Transient) and is tried again in the background (retry.go).
	// Not ready: readiness answers 503 while a plugin is retrying.
	StateRetrying State = "retrying"
)

// Slot is the stable place of one plugin id: calls go to its current
// version, which a reload may replace.
type Slot struct {
	ID  string
	cur atomic.Pointer[plugin.Plugin]
	// host is the host of the version in cur (its public routes).
	host atomic.Pointer[host]

	mu      sync.Mutex
	state   State
	lastErr string
	// loadErr is the error lastErr is the text of, which a caller of the
	// plugin is told without what it names of the infrastructure
	// (callerReason).
	loadErr error
	// callerText is callerReason(loadErr) under callerCfg, kept: a failed
	// plugin's callers may call often.
	callerText string
	callerGen  uint64 // of loadGen
	callerCfg  *config.Config
	loadGen    uint64 // counts the changes of loadErr
	// retryAt is when a retrying load tries next (StateRetrying).
	retryAt time.Time
	// retryWhy says why a retrying load is retried (database.RetryWhy).
	retryWhy string
	// changed, when not nil, is closed at the next state change (calls
	// waiting for the plugin to load).
	changed chan struct{}

	// Counters accumulate over every version of the plugin id (metrics),
	// also across its removal and return (Runtime.counters keeps them).
	counters     *plugin.Counters
	hostCounters *hostfuncs.Counters
	// tokens bound the calls its versions run at once, together: a
	// reload's new version serves beside the old one's calls in flight
	// within limits.instances, not that many more.
	tokens *plugin.Tokens

	// failedModule describes the module of the last load that failed
	// after reading and compiling it (nil when the last load succeeded,
	// or failed before): the admin view's module fields for a plugin that
	// has no version serving.
	failedModule atomic.Pointer[plugin.Info]

	// What the version in cur was loaded from; written under
	// Runtime.reloadMu and mu, with cur, so that a reader holding either
	// sees them paired with the version they describe (Serving).
	path string
	pc   *config.Plugin
	sum  string // sha256 of the wasm it runs
}

// Counters returns the plugin's cumulative call, failure and pool figures.
func (s *Slot) Counters() *plugin.Counters { return s.counters }

// Tokens are the rights to an instance that the plugin's versions share
// (limits.instances of them), its calls waiting in line for one.
func (s *Slot) Tokens() *plugin.Tokens { return s.tokens }

// HostCounters returns the plugin's cumulative host-function calls.
func (s *Slot) HostCounters() *hostfuncs.Counters { return s.hostCounters }

// idCounters are one plugin id's cumulative figures.
type idCounters struct {
	calls plugin.Counters
	host  *hostfuncs.Counters
}

// newSlot makes the slot of plugin id with the id's counters, which
// outlive a slot: Prometheus counters must only grow, also when a reload
// removes a plugin and a later one adds it back.
func (r *Runtime) newSlot(id string) *Slot {
	r.countersMu.Lock()
	defer r.countersMu.Unlock()
	c := r.counters[id]
	if c == nil {
		c = &idCounters{host: hostfuncs.NewCounters()}
		r.counters[id] = c
	}
	// No calls until a version serves (install sets the max).
	return &Slot{ID: id, state: StateLoading, counters: &c.calls, hostCounters: c.host, tokens: plugin.NewTokens(0)}
}

// Config returns the config of the version serving calls, or nil.
func (s *Slot) Config() *config.Plugin {
	_, pc := s.Serving()
	return pc
}

// Serving returns the version serving calls and the plugin config it was
// loaded with, read together (nil, nil when none serves): a reload
// installing a new version does not pair it with the previous one's
// config (its grants, its limits).
func (s *Slot) Serving() (*plugin.Plugin, *config.Plugin) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.cur.Load()
	if p == nil {
		return nil, nil
	}
	return p, s.pc
}

// Plugin returns the version serving calls, or nil.
func (s *Slot) Plugin() *plugin.Plugin { return s.cur.Load() }

// FailedModule describes the module of the plugin's last load when that
// load failed after the module was read and compiled (a guest initializer
// that failed, a task or migration refused); else nil.
func (s *Slot) FailedModule() *plugin.Info { return s.failedModule.Load() }

// liveInstances is how many instances the version serving now has (0
// when none serves): a reload pre-warms its successor with as many, so
// that calls moved to it and arriving meanwhile find the capacity they
// had, rather than waiting for instances to start one by one on demand
// (under load, reloads back to back then made waits pass queue_timeout).
func (s *Slot) liveInstances() int {
	if p := s.cur.Load(); p != nil {
		return p.Stats().Live
	}
	return 0
}

// Status returns the slot's state and its last load error.
func (s *Slot) Status() (State, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, s.lastErr
}

func (s *Slot) set(state State, err error) { s.setAt(state, err, time.Time{}) }

// setRetrying records that the load failed with err and is tried again at
// at.
func (s *Slot) setRetrying(err error, at time.Time) { s.setAt(StateRetrying, err, at) }

// RetryWhy says why a retrying plugin's load is retried ("after a
// database error", "while its migrations are pending ..."), without the
// error itself; "" when it is not retrying.
func (s *Slot) RetryWhy() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != StateRetrying {
		return ""
	}
	return s.retryWhy
}

func (s *Slot) setAt(state State, err error, retryAt time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = state
	s.retryAt = retryAt
	if state == StateRetrying {
		s.retryWhy = database.RetryWhy(err) // with the state, under one lock
	}
	if err != nil {
		s.lastErr, s.loadErr = err.Error(), err
		s.loadGen++
	} else if state == StateReady {
		s.lastErr, s.loadErr = "", nil
		s.loadGen++
	}
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// slotCallerReason is callerReason of s's load error, under the config in
// force; s.mu is held.
func (r *Runtime) slotCallerReason(s *Slot) string {
	cfg := r.cfg.Load()
	if s.callerGen != s.loadGen || s.callerCfg != cfg {
		s.callerText, s.callerGen, s.callerCfg = r.callerReason(s.loadErr), s.loadGen, cfg
	}
	return s.callerText
}

// unavailable is the error of a call that finds no version serving.
func (r *Runtime) unavailable(s *Slot) *UnavailableError {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := &UnavailableError{ID: s.ID, State: s.state, Reason: s.lastErr, CallerReason: r.slotCallerReason(s)}
	if s.state == StateRetrying {
		e.RetryIn = max(time.Until(s.retryAt), 0)
		e.Why = s.retryWhy
	}
	return e
}

// loading returns a channel closed when the slot's state next changes,
// or nil when it is not loading.
func (s *Slot) loading() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != StateLoading {
		return nil
	}
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

// New prepares a runtime for cfg. Nothing is loaded until Load.
func New(cfg *config.Config, log *logrus.Logger, opts Options) (*Runtime, error) {
	cacheDir := resolve(cfg, "runtime.cache_dir", cfg.Runtime.CacheDir)
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		where := "runtime.cache_dir"
		if o := cfg.Origin("runtime.cache_dir"); o != "" {
			where = o + ": " + where
		}
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	cache, err := wazero.NewCompilationCacheWithDir(filepath.Join(cacheDir, "wazero"))
	if err != nil {
		return nil, fmt.Errorf("runtime.cache_dir: compilation cache: %w", err)
	}
	reader, err := urlreader.New(cfg, opts.URLReader)
	if err != nil {
		cache.Close(context.Background())
		return nil, err
	}
	r := &Runtime{log: log, opts: opts, cache: cache, engine: plugin.NewEngine(cache, filepath.Join(cacheDir, "rewritten")), sums: sumIndex{dir: filepath.Join(cacheDir, "sums"), log: log}, plogs: map[string]*logging.PluginLogger{}, counters: map[string]*idCounters{}, reader: reader,
		shutdown: make(chan struct{}), cut: make(chan struct{})}
	// A write of a sums/ entry that a killed process left behind.
	plugin.SweepTemp(r.sums.dir, func(name string) bool { return strings.HasPrefix(name, ".sum-") })
	r.cfg.Store(cfg)
	r.db = database.New(DatabaseConfig(cfg), log)
	r.db.SetLineAllowed(r.PluginLogAllow)
	r.sched = scheduler.New(scheduler.Config{
		Enabled:     cfg.Scheduler.Enabled,
		Lease:       cfg.Scheduler.Lease.D(),
		LeaseSecret: cfg.IsSecretPath("scheduler.lease"),
		Replica:     opts.Replica,
		Log:         logrus.NewEntry(log),
		DB: func(context.Context) (*bun.DB, error) {
			if db := r.db.DB(); db != nil {
				return db, nil
			}
			return nil, scheduler.ErrNoDatabase
		},
		Run:       r.runTask,
		PluginLog: r.existingPluginLogger,
	})
	t := &slotTable{slots: map[string]*Slot{}}
	for id := range cfg.Plugins {
		t.ids = append(t.ids, id)
		t.slots[id] = r.newSlot(id)
	}
	slices.Sort(t.ids)
	r.table.Store(t)
	return r, nil
}

// resolve makes a relative path from the config relative to the directory
// of the file that set it (config.Config.Resolve).
func resolve(cfg *config.Config, key, path string) string { return cfg.Resolve(key, path) }

// DatabaseConfig returns the [database] table of cfg with its SQLite
// directory resolved like other paths: relative to the config file that set
// it.
func DatabaseConfig(cfg *config.Config) database.Config {
	d := cfg.Database
	conn := d.Connection
	if d.Client == database.ClientSQLite {
		conn = resolve(cfg, "database.connection", database.SQLiteDir(conn))
	}
	return database.Config{Client: d.Client, Connection: conn, Isolation: d.Isolation, SkipMigrations: d.SkipMigrations, SQLiteMemory: int64(d.SQLiteMemory),
		SQLiteMemorySecret: cfg.IsSecretPath("database.sqlite_memory")}
}

// Database returns the database service: the runtime's own database
// (Database().DB() once opened) for greenroom's services, and the plugins'.
func (r *Runtime) Database() *database.Service { return r.db }

// Scheduler returns the scheduler of the plugins' tasks. It lists tasks
// whether or not it runs them.
func (r *Runtime) Scheduler() *scheduler.Scheduler { return r.sched }

// StartScheduler starts running the plugins' tasks (unless [scheduler]
// enabled = false). Tasks registered by plugins loaded before or after
// are scheduled.
func (r *Runtime) StartScheduler() { r.sched.Start() }

// StopScheduler stops running tasks: runs in progress are cancelled,
// recorded and their leases released, waiting at most until ctx ends.
// Close calls it too.
func (r *Runtime) StopScheduler(ctx context.Context) error { return r.sched.Stop(ctx) }

// Prepare opens what the plugins share before any is loaded: the database,
// when a plugin is granted it or the scheduler (connect, provision, apply
// the runtime's migrations). An error here should stop startup. Load calls it too; a
// failure there keeps every plugin that needs the database out of service
// with the reason.
func (r *Runtime) Prepare(ctx context.Context) error {
	if !needsDatabase(r.cfg.Load()) {
		return nil
	}
	log := r.log.WithField("client", r.db.Client())
	log.Info("opening the database")
	// Not silent while it waits: connecting is bounded (connect_timeout),
	// the runtime's migrations and another replica's lock on them are not.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		start := time.Now()
		t := time.NewTicker(prepareReport)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				log.WithField("waited", time.Since(start).Round(time.Second).String()).Warn("still opening the database (connecting, or applying the runtime's migrations, or waiting for another replica applying them)")
			}
		}
	}()
	if err := r.db.Open(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	return nil
}

// prepareReport is how often Prepare says it is still waiting.
var prepareReport = 10 * time.Second

// needsDatabase: a plugin is granted its database, or the scheduler (whose
// tasks, leases and history live in the runtime's tables).
func needsDatabase(cfg *config.Config) bool {
	for _, pc := range cfg.Plugins {
		if pc.Capabilities.Database || pc.Capabilities.Scheduler {
			return true
		}
	}
	return false
}

// CacheDir is the resolved runtime.cache_dir.
func (r *Runtime) CacheDir() string {
	cfg := r.cfg.Load()
	return resolve(cfg, "runtime.cache_dir", cfg.Runtime.CacheDir)
}

// Config returns the config the runtime runs: the latest reload's, from
// the moment that reload begins (its plugins are swapped in as they load).
func (r *Runtime) Config() *config.Config { return r.cfg.Load() }

// Effective is cfg as a reload would run it: the settings that need a
// restart (server.listen, server.body_limit, ...) keep their running
// values.
func (r *Runtime) Effective(cfg *config.Config) *config.Config {
	running := r.cfg.Load()
	return withRunning(cfg, running, restartNeeded(running, cfg))
}

// OnReload registers f, which every Reload calls with the config it moves
// to, once that config is the runtime's (Config) and before any plugin
// of it is installed. What decides who may call a plugin (the server's
// credentials) is applied there: a call that a reload moves from an old
// version to a new one is let in again (ErrMoved) under the new config, so
// it must be in force by then — and requests arriving meanwhile are
// decided under it too.
//
// f gets the reload's context, which ends when a newer reload supersedes
// it or the shutdown cuts it short: what f waits for (a new JWKS's first
// fetch) it stops waiting for then. What f returns is added to the
// reload's Warnings.
func (r *Runtime) OnReload(f func(context.Context, *config.Config) []string) {
	r.onReloadMu.Lock()
	defer r.onReloadMu.Unlock()
	r.onReload = append(r.onReload, f)
}

// IDs returns the configured plugin ids, sorted.
func (r *Runtime) IDs() []string { return r.table.Load().ids }

// Slot returns the slot of plugin id, or nil.
func (r *Runtime) Slot(id string) *Slot { return r.table.Load().slots[id] }

// Loaded reports whether Load has finished (every plugin ready, failed or
// retrying).
func (r *Runtime) Loaded() bool { return r.loaded.Load() }

// parallelLoads is how many plugins Load loads at once. More than the
// cores: a warm load is one goroutine of CPU per plugin (wazero validates a
// module on one core), so with five plugins on two cores two workers would
// leave one core idle while the last plugin loads; loading them all at
// once ends together. The cap bounds the memory a load holds at its peak.
const parallelLoads = 8

// Load loads every plugin, several at a time. A plugin that fails is
// recorded as failed with its reason and logged; the others load anyway.
// One that failed on a database error that may pass is retrying instead,
// loaded again in the background (retryLoad).
func (r *Runtime) Load(ctx context.Context) {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	ctx = experimental.WithCompilationWorkers(ctx, goruntime.NumCPU())
	cfg, t := r.cfg.Load(), r.table.Load()
	sem := make(chan struct{}, parallelLoads)
	var wg sync.WaitGroup
	for _, id := range t.ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s := t.slots[id]
			if err := r.loadSlot(ctx, cfg, s); err != nil {
				err = fmt.Errorf("plugin %s: %w", id, err)
				if ctx.Err() != nil {
					// Cut short by a shutdown: not the plugin's failure,
					// and nothing to retry.
					s.set(StateFailed, err)
					r.log.WithField("plugin", id).WithError(err).Info("plugin load canceled: the server is shutting down")
					return
				}
				if database.Transient(err) {
					r.retryLoad(s, err)
					return
				}
				s.set(StateFailed, err)
				log := r.log.WithField("plugin", id).WithError(err)
				if d := plugin.ErrorDetail(err); d != "" {
					log = log.WithField("detail", d)
				}
				log.Error("plugin failed to load; its routes answer 503")
			}
		}()
	}
	wg.Wait()
	r.loaded.Store(true)
	// Loading allocates tens of MiB per plugin that are garbage once it
	// is done (module bytes, rewritten copies, decode buffers); hand them
	// back to the operating system now rather than keeping the process at
	// its start-up peak until the scavenger gets to it. Off the readiness
	// path: the process is already ready.
	go debug.FreeOSMemory()
}

// loadSlot loads the version of s that cfg describes and installs it,
// unless s already runs exactly that (same config, same wasm), which it
// reports with errUnchanged. On error the slot keeps what it had.
func (r *Runtime) loadSlot(ctx context.Context, cfg *config.Config, s *Slot) error {
	st, err := r.stageSlot(ctx, cfg, s)
	if err != nil {
		return err
	}
	r.commit(cfg, st)
	return nil
}

// staged is a version of a plugin loaded (compiled, pre-warmed, its
// migrations applied) but not serving yet: a reload installs the versions
// it loaded together when it ends (commit), or closes them unused when a
// shutdown abandons it (discard).
type staged struct {
	s       *Slot
	p       *plugin.Plugin
	h       *host
	pc      *config.Plugin
	path    string
	plog    *logging.PluginLogger
	logOpts logging.PluginOptions
}

// commit makes st's version the one its slot serves.
func (r *Runtime) commit(cfg *config.Config, st *staged) {
	r.install(cfg, st.s, st.p, st.h, st.pc, st.path, st.p.Info().SHA256)
	// The new version's log settings apply from now on, not while it
	// loaded: a version that fails to load leaves the serving one's.
	st.plog.Update(st.logOpts)
}

// discard closes st's version, which never served.
func (r *Runtime) discard(st *staged) {
	st.p.Close(context.Background())
}

// stageSlot is loadSlot up to the install: it returns the version loaded.
func (r *Runtime) stageSlot(ctx context.Context, cfg *config.Config, s *Slot) (st *staged, err error) {
	defer func() {
		var me *plugin.ModuleError
		switch {
		case errors.As(err, &me):
			info := me.Info
			s.failedModule.Store(&info)
		case !errors.Is(err, errUnchanged):
			s.failedModule.Store(nil)
		}
	}()
	// A load whose context has ended (a shutdown, a newer reload) does
	// not begin: reading, rewriting and compiling a module look at no
	// context, and a reload cut short went on through every plugin left
	// to it (0.5 s for three plugins, one compiled afresh), which the
	// shutdown waits for. A plugin serving is read first: it may be
	// unchanged.
	if err := ctx.Err(); err != nil && s.cur.Load() == nil {
		return nil, err
	}
	pc := cfg.Plugins[s.ID]
	path := resolve(cfg, "plugins."+s.ID+".path", pc.Path)
	src, err := r.readWasm(ctx, s.ID, path)
	if err != nil {
		return nil, err
	}
	sum := src.sum
	if s.cur.Load() != nil && s.sum == sum && s.path == path && s.pc.Equal(pc) {
		return nil, errUnchanged
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	log := r.log.WithField("plugin", s.ID)
	logOpts := r.pluginLogOptions(pc)
	plog, err := r.pluginLogger(s.ID, logOpts)
	if err != nil {
		return nil, err
	}
	h := newHost(s.ID, pc, log, plog, r.reader.For(s.ID, pc.Capabilities.URLReader))
	secrets := cfg.PluginSecrets(s.ID)
	h.setSecrets(secrets)
	h.urls.SetSecrets(secrets)
	p, err := r.loadPlugin(ctx, cfg, s, pc, h, src)
	if err != nil {
		return nil, err
	}
	if un := h.unasked(); len(un) > 0 {
		log.WithField("routes", un).Warnf("plugins.%s.public_routes lists routes the plugin does not ask to open (greenroom.Public); they stay protected", s.ID)
	}
	info := p.Info()
	if slices.Contains(info.Capabilities, hostfuncs.CapabilityURLReader) && len(pc.Capabilities.URLReader) == 0 {
		log.Warnf("plugin imports the URL reader but is not granted it; its reads will be denied (grant with [plugins.%s.capabilities] urlreader = [\"host/path-prefix\"])", s.ID)
	}
	interruption := string(p.Interruption())
	if pc.LimitSecret("interruptible") {
		interruption = config.Redacted // it tells limits.interruptible
	}
	log.WithFields(logrus.Fields{
		"sha256":       info.SHA256,
		"size":         info.Size,
		"abi":          info.ABIVersion,
		"interruption": interruption,
		"compile":      p.CompileTime.Round(time.Millisecond).String(),
		"load":         p.LoadTime.Round(time.Millisecond).String(),
	}).Info("plugin loaded")
	// Installed with the plugin's own sum (commit): when a remembered one
	// was wrong, Load read the file and went on with its true sum.
	return &staged{s: s, p: p, h: h, pc: pc, path: path, plog: plog, logOpts: logOpts}, nil
}

// pluginLogOptions are the log settings pc gives its plugin.
func (r *Runtime) pluginLogOptions(pc *config.Plugin) logging.PluginOptions {
	return logging.PluginOptions{
		Level:       pc.LogLevel,
		Rate:        pc.Limits.LogRate,
		Burst:       pc.Limits.LogBurst,
		RateSecret:  pc.LimitSecret("log_rate"),
		BurstSecret: pc.LimitSecret("log_burst"),
		ReportEvery: r.opts.LogDropReport,
	}
}

// pluginLogger returns the logger of plugin id: the one the id already
// has, unchanged (its bucket and drop count carry over to a new version,
// which applies its settings with Update once it serves), after checking
// that opts are valid; or a new one with opts.
func (r *Runtime) pluginLogger(id string, opts logging.PluginOptions) (*logging.PluginLogger, error) {
	r.plogMu.Lock()
	defer r.plogMu.Unlock()
	if pl := r.plogs[id]; pl != nil {
		return pl, pl.Check(opts)
	}
	pl, err := logging.NewPluginLogger(r.log, id, opts)
	if err != nil {
		return nil, err
	}
	r.plogs[id] = pl
	return pl, nil
}

// existingPluginLogger returns plugin id's logger if it has one.
func (r *Runtime) existingPluginLogger(id string) *logging.PluginLogger {
	r.plogMu.Lock()
	defer r.plogMu.Unlock()
	return r.plogs[id]
}

// PluginLogAllow takes one line from plugin id's log rate limit, for a
// line of the runtime's about the plugin that the plugin can multiply (a
// failure it causes per request). Over the limit it counts a dropped line
// and returns false.
func (r *Runtime) PluginLogAllow(id string) bool {
	pl := r.existingPluginLogger(id)
	return pl == nil || pl.Allow()
}

// DroppedLogLines returns how many log lines plugin id ever had dropped by
// its rate limit.
func (r *Runtime) DroppedLogLines(id string) int64 {
	r.plogMu.Lock()
	defer r.plogMu.Unlock()
	if pl := r.plogs[id]; pl != nil {
		return pl.DroppedTotal()
	}
	return 0
}

// errUnchanged: the slot already runs what the config describes.
var errUnchanged = errors.New("unchanged")

// install makes p the version of s that serves calls. The version it
// replaces finishes its calls in flight (up to server.shutdown_timeout)
// and is closed in the background.
func (r *Runtime) install(cfg *config.Config, s *Slot, p *plugin.Plugin, h *host, pc *config.Plugin, path, sum string) {
	if h.db != nil {
		h.db.Activate()
	}
	s.host.Store(h)
	s.tokens.SetMax(pc.Limits.Instances)
	s.mu.Lock()
	old := s.cur.Swap(p)
	s.pc, s.path, s.sum = pc, path, sum
	s.mu.Unlock()
	s.set(StateReady, nil)
	// The tasks this version registered replace the previous version's;
	// those of a plugin a reload adds are scheduled only once the plugin
	// table holds it (Reload), so that no run can look for it before.
	if r.Slot(s.ID) == s {
		r.sched.SetTasks(s.ID, h.tasks)
	}
	if old != nil {
		r.retire(old, drainTime(cfg, old))
	}
}

// drainTime is how long a replaced version old has to finish its calls in
// flight: server.shutdown_timeout, or its limits.timeout when that is
// longer, so that a reload never cuts a request its own timeout allows.
// (A task run with a longer timeout of its own is cut at that bound.)
func drainTime(cfg *config.Config, old *plugin.Plugin) time.Duration {
	return max(cfg.Server.ShutdownTimeout.D(), old.Limits().Timeout)
}

// retire closes a version that no longer takes calls once its calls in
// flight finish, or after drain — unless a shutdown begins first: then its
// calls are in flight for the shutdown like any other, and end with it
// (Close's context), so that what the shutdown cuts off is reported as
// such whichever version it ran on.
func (r *Runtime) retire(old *plugin.Plugin, drain time.Duration) {
	r.drains.Add(1)
	go func() {
		defer r.drains.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		closed := make(chan error, 1)
		go func() { closed <- old.Close(ctx) }()
		t := time.NewTimer(drain)
		defer t.Stop()
		var err error
		select {
		case err = <-closed:
		case <-t.C:
			if r.shuttingDown() {
				err = r.drainUntilCut(closed, cancel)
			} else {
				cancel()
				err = <-closed
			}
		case <-r.shutdown:
			err = r.drainUntilCut(closed, cancel)
		}
		if err != nil {
			r.log.WithField("plugin", old.ID()).WithError(err).Warn("replaced plugin version cut off")
		}
	}()
}

// drainUntilCut waits, once a shutdown has begun, for a replaced version's
// drain to end: its calls finish, or Close's context ends and cuts them
// (cancel). A cut is one of the shutdown's: Close returns it.
func (r *Runtime) drainUntilCut(closed <-chan error, cancel context.CancelFunc) error {
	select {
	case err := <-closed:
		return err
	case <-r.cut:
	}
	cancel()
	err := <-closed
	if err != nil {
		r.drainMu.Lock()
		r.drainErrs = append(r.drainErrs, err)
		r.drainMu.Unlock()
	}
	return err
}

func (r *Runtime) shuttingDown() bool {
	select {
	case <-r.shutdown:
		return true
	default:
		return false
	}
}

// BeginShutdown marks the start of a graceful shutdown, before the server
// stops taking requests and Close: a version that a reload replaced and
// that still has calls in flight no longer ends them at its own drain
// deadline (server.shutdown_timeout from the reload) but with the
// shutdown's (Close's context), like the calls of every other version. So
// a call in flight when the shutdown began finishes if it can within the
// shutdown's deadline, and when it cannot, it is still in flight when that
// deadline passes and is reported as cut off — it is not cut a moment
// earlier by a timer the shutdown does not account for.
func (r *Runtime) BeginShutdown() {
	r.shutdownOnce.Do(func() { close(r.shutdown) })
}

// readWasm returns the module of plugin id at path (see sumIndex: its
// bytes may be read only later, if needed), building it first when path is
// a source directory and the runtime may build.
func (r *Runtime) readWasm(ctx context.Context, id, path string) (wasmSource, error) {
	wasmPath, err := r.wasmPath(ctx, id, path)
	if err != nil {
		return wasmSource{}, err
	}
	return r.sums.load(wasmPath)
}

// interruptibleSecretWarning is logged at every load of a plugin whose
// limits.interruptible comes from the environment, whatever its value.
const interruptibleSecretWarning = "limits.interruptible comes from the environment, a secret, so the log does not say whether this plugin's loops are interrupted at its timeout (this warning is logged at every load either way): if they are not, a loop that does not end stalls the whole server (Go's garbage collector waits for it; only SIGKILL ends the process then); turn interruption off only for vetted plugins"

func (r *Runtime) loadPlugin(ctx context.Context, cfg *config.Config, s *Slot, pc *config.Plugin, h *host, src wasmSource) (*plugin.Plugin, error) {
	id := s.ID
	lim := pc.Limits
	switch {
	case pc.LimitSecret("interruptible"):
		// A secret: the warning that it is off would tell its value
		// (whatever the redaction of "false" hides), and so would its
		// absence. Logged at every load whatever the value, in words
		// that name neither value (each is a secret, redacted from
		// every line), so that the operator is still warned.
		r.log.WithField("plugin", id).Warn(interruptibleSecretWarning)
	case !lim.Interruptible:
		r.log.WithField("plugin", id).Warn("limits.interruptible = false: this plugin's loops are NOT interrupted at its timeout, and a loop that does not end stalls the whole server (Go's garbage collector waits for it; only SIGKILL ends the process then); only do this for vetted plugins")
	}
	// The scheduler keeps its tasks' leases and history in the runtime's
	// database.
	if pc.Capabilities.Scheduler {
		if err := r.db.Open(ctx); err != nil {
			return nil, fmt.Errorf("database (for the scheduler): %w", err)
		}
	}
	// A plugin without the database capability gets nothing opened.
	var pdb *database.PluginDB
	if pc.Capabilities.Database {
		// Config validation refuses this, but a reload keeps the running
		// [database] (it needs a restart), so its client decides.
		if lim.DBMaxSize > 0 && cfg.Database.Client != database.ClientSQLite {
			return nil, fmt.Errorf("limits.db_max_size is enforced on SQLite only, and this process runs on %s (changing database.client needs a restart)", cfg.Database.Client)
		}
		if err := r.db.Open(ctx); err != nil {
			return nil, fmt.Errorf("database: %w", err)
		}
		var err error
		pdb, err = r.db.Plugin(ctx, id, database.Limits{
			MaxConns:               lim.DBMaxConns,
			StatementTimeout:       lim.DBStatementTimeout.D(),
			MaxResult:              int(lim.DBMaxResult),
			MaxSize:                int64(min(lim.DBMaxSize, 1<<62)),
			MigrationTimeout:       lim.MigrationTimeout.D(),
			MaxSizeSecret:          cfg.IsSecretPath("plugins." + id + ".limits.db_max_size"),
			MigrationTimeoutSecret: cfg.IsSecretPath("plugins." + id + ".limits.migration_timeout"),
			StatementTimeoutSecret: pc.LimitSecret("db_statement_timeout"),
			MaxConnsSecret:         pc.LimitSecret("db_max_conns"),
			MaxResultSecret:        pc.LimitSecret("db_max_result"),
		})
		if err != nil {
			return nil, err
		}
	}
	h.db = pdb
	p, err := plugin.Load(ctx, plugin.Spec{
		ID:       id,
		Wasm:     src.wasm,
		ReadWasm: src.read,
		Size:     src.size,
		SHA256:   pc.SHA256,
		Sum:      src.sum,
		Limits: plugin.Limits{
			Memory:             uint64(lim.Memory),
			MemorySecret:       pc.LimitSecret("memory"),
			RetireMemorySecret: pc.LimitSecret("retire_memory"),
			Timeout:            lim.Timeout.D(),
			TimeoutSecret:      pc.LimitSecret("timeout"),
			Instances:          lim.Instances,
			QueueTimeout:       lim.QueueTimeout.D(),
			QueueTimeoutSecret: pc.LimitSecret("queue_timeout"),
			MaxRequests:        lim.MaxRequests,
			RetireMemory:       lim.EffectiveRetireMemory(),
			MaxResponse:        int(lim.MaxResponse),
			MaxResponseSecret:  cfg.IsSecretPath("plugins." + id + ".limits.max_response"),
			NoInterrupt:        !lim.Interruptible,
			NoInterruptSecret:  pc.LimitSecret("interruptible"),
			GCPercent:          lim.GCPercent,
			Warm:               s.liveInstances(),
		},
		Host:         h,
		Log:          r.log.WithField("plugin", id),
		Engine:       r.engine,
		Counters:     s.counters,
		Tokens:       s.tokens,
		HostCounters: s.hostCounters,
		// The version's use of the plugin's database pool ends with it:
		// the pool closes with the last version of a removed plugin.
		OnClose: func() {
			if pdb != nil {
				pdb.Release()
			}
		},
		// The public routes and the tasks are those the first instance
		// asked for: the others Load warms start together after it
		// (PublicRoute, RegisterTask).
		FirstInstance: h.settle,
	})
	if err != nil {
		if pdb != nil {
			pdb.Release()
		}
		// A task the runtime refused says more than the guest's reaction
		// to the refusal (a Go plugin typically panics).
		if terr := h.taskError(); terr != nil {
			var me *plugin.ModuleError
			if errors.As(err, &me) {
				return nil, &plugin.ModuleError{Info: me.Info, Err: terr}
			}
			return nil, terr
		}
		return nil, err
	}
	// The first instance's init registered the plugin's tasks.
	tasks, err := h.fixTasks()
	if err == nil && len(tasks) > 0 && !slices.Contains(p.Info().Exports, hostfuncs.ExportTaskRun) {
		err = fmt.Errorf("plugin registers tasks but does not export %s", hostfuncs.ExportTaskRun)
	}
	if err != nil {
		p.Close(context.Background())
		return nil, &plugin.ModuleError{Info: p.Info(), Err: err}
	}
	// The plugin's init registered its migrations (greenroom.Migrations);
	// it serves only once they are applied.
	if pdb != nil {
		if err := pdb.ApplyMigrations(ctx); err != nil {
			p.Close(context.Background())
			return nil, &plugin.ModuleError{Info: p.Info(), Err: fmt.Errorf("database: %w", err)}
		}
	}
	return p, nil
}

// wasmPath returns the .wasm file of plugin id at path, building it first
// when path is a source directory and the runtime may build.
func (r *Runtime) wasmPath(ctx context.Context, id, path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("path: %w", err)
	}
	if !st.IsDir() {
		return path, nil
	}
	if !r.opts.BuildSources {
		return "", fmt.Errorf("path %s is a source directory; greenroom serve runs built modules: build it with `greenroom plugin build %s -o %s.wasm` and set path to the .wasm file, or run `greenroom dev`",
			path, path, filepath.Join(path, id))
	}
	start := time.Now()
	out, rebuilt, err := build.Cached(ctx, path, r.CacheDir())
	if err != nil {
		return "", err
	}
	if rebuilt {
		r.log.WithFields(logrus.Fields{"plugin": id, "took": time.Since(start).Round(time.Millisecond).String()}).Info("built plugin from source")
	}
	return out, nil
}

// PluginPath returns plugin id's path as cfg sets it, resolved against
// the directory of the config file that set it.
func PluginPath(cfg *config.Config, id string) string {
	return resolve(cfg, "plugins."+id+".path", cfg.Plugins[id].Path)
}

// Paths returns each plugin's resolved path: a .wasm file, or (for
// greenroom dev) a Go source directory. Watchers use it.
func (r *Runtime) Paths() map[string]string {
	cfg := r.cfg.Load()
	out := map[string]string{}
	for id := range cfg.Plugins {
		out[id] = PluginPath(cfg, id)
	}
	return out
}

// Public reports whether path, relative to plugin id's mount and as the
// client sent it, is a public route: the plugin asked to open it
// (greenroom.Public) and the operator lists it in public_routes. The match
// is exact and method-agnostic; a plugin that is not loaded has none.
func (r *Runtime) Public(id string, path []byte) bool {
	s := r.Slot(id)
	if s == nil {
		return false
	}
	h := s.host.Load()
	if h == nil || !h.isPublic(path) {
		return false
	}
	// The operator's list in force decides too: a reload that removes a
	// route closes it from its start, also when the plugin's new version
	// fails to load and the old one (which asked for it) serves on.
	pc := r.Config().Plugins[id]
	if pc == nil {
		return false
	}
	for _, p := range pc.PublicRoutes {
		if p == string(path) {
			return true
		}
	}
	return false
}

// PublicAfterLoad is Public, except for a plugin still loading at
// start-up (no version serving yet) whose public_routes list path: which
// routes the plugin asks to open is known only once it is loaded, so the
// request waits for the load as a call does (awaitLoad), and is then
// decided. A client connecting to a public route as soon as the port opens
// is served, not refused as unauthenticated meanwhile. Shutdown ends the
// wait: cut reports a request left undecided by it (the plugin still
// loading), which is then answered as shutting down, not as
// unauthenticated.
func (r *Runtime) PublicAfterLoad(ctx context.Context, id string, path []byte) (public, cut bool) {
	s := r.Slot(id)
	if s == nil {
		return false, false
	}
	if s.cur.Load() == nil && s.host.Load() == nil {
		if pc := r.Config().Plugins[id]; pc != nil && slices.Contains(pc.PublicRoutes, string(path)) {
			r.awaitLoad(ctx, s)
			if s.cur.Load() == nil && s.host.Load() == nil && r.shuttingDown() {
				return false, true
			}
		}
	}
	return r.Public(id, path), false
}

// awaitLoad waits for slot s's load at start-up, if it is loading: at most
// LoadWait, until ctx ends or shutdown starts.
func (r *Runtime) awaitLoad(ctx context.Context, s *Slot) {
	ch := s.loading()
	if ch == nil {
		return
	}
	t := time.NewTimer(LoadWait)
	defer t.Stop()
	select {
	case <-ch:
	case <-ctx.Done():
	case <-r.shutdown:
	case <-t.C:
	}
}

// runTask calls a task export in plugin id's current version (the
// scheduler's Runner). A call that raced with a reload is retried on the
// new version, as Handle does.
func (r *Runtime) runTask(ctx context.Context, id string, c plugin.Call) (uint32, []byte, error) {
	s, err := r.taskSlot(ctx, id)
	if err != nil {
		return 0, nil, err
	}
	for {
		p := s.cur.Load()
		if p == nil && r.Slot(id) != s {
			// A reload removed the plugin while the run waited for an
			// instance: the run is withdrawn with its task, not failed
			// for want of a plugin.
			return 0, nil, &plugin.CallError{Plugin: id, Kind: plugin.FailCanceled,
				Err: fmt.Errorf("a reload removed plugin %s before the run began: %w", id, plugin.ErrNotBegun)}
		}
		if p == nil {
			return 0, nil, r.unavailable(s)
		}
		code, out, err := p.Run(ctx, c)
		// Each retry follows a new version, so only reloads make one
		// (back to back, they may replace several while the run waits).
		if plugin.KindOf(err) == plugin.FailClosed && s.cur.Load() != p {
			continue
		}
		return code, out, err
	}
}

// taskSlot returns the slot of plugin id for a task run. A run that finds
// no plugin while a reload is in progress waits for the reload to publish
// its plugin table, and looks again: the reload may be installing the
// plugin. Failing instead would record the run as failed and move the
// task on to its next due time (an hour later for an hourly task) although
// the plugin serves a moment later. Reload schedules an added plugin's
// tasks only once the table holds it, so this is a safety net.
func (r *Runtime) taskSlot(ctx context.Context, id string) (*Slot, error) {
	for {
		if s := r.Slot(id); s != nil {
			return s, nil
		}
		done := r.reloading.Load()
		if done == nil {
			// A reload that ended since the look above published its
			// table before it cleared r.reloading.
			if s := r.Slot(id); s != nil {
				return s, nil
			}
			return nil, fmt.Errorf("%w %q", ErrUnknownPlugin, id)
		}
		select {
		case <-*done:
		case <-ctx.Done():
			return nil, &plugin.CallError{Plugin: id, Kind: plugin.FailCanceled, Err: ctx.Err()}
		}
	}
}

// ErrUnknownPlugin is returned by Handle for an id not in the config.
var ErrUnknownPlugin = errors.New("unknown plugin")

// LoadWait is how long a call for a plugin that is still loading, with no
// version serving yet, waits for the load to end before Handle returns an
// UnavailableError. A cold start compiles every plugin (seconds each); a
// client that connects as soon as the port opens is served once its
// plugin is ready, instead of being refused meanwhile.
var LoadWait = 30 * time.Second

// UnavailableError is returned by Handle for a plugin that is not serving.
type UnavailableError struct {
	ID    string
	State State
	// Reason is the load error, as the log and the admin API give it;
	// CallerReason is what a caller of the plugin is told of it: its
	// kind, without the hosts, ports, users, database names and paths it
	// names (callerReason).
	Reason       string
	CallerReason string
	// RetryIn is how long until a retrying load (StateRetrying) tries
	// next, and Why why it is retried (Slot.RetryWhy).
	RetryIn time.Duration
	Why     string
}

func (e *UnavailableError) Error() string { return e.message(e.Reason) }

// CallerMessage is Error told with CallerReason: the message of the 503
// the plugin's callers get.
func (e *UnavailableError) CallerMessage() string { return e.message(e.CallerReason) }

func (e *UnavailableError) message(reason string) string {
	if e.State == StateRetrying {
		why := e.Why
		if why == "" {
			why = "after a database error"
		}
		return fmt.Sprintf("plugin %s is retrying its load %s (next attempt in %s): %s", e.ID, why, e.RetryIn.Round(time.Second), reason)
	}
	if e.State == StateFailed && reason != "" {
		// A load error names the plugin already: said once.
		return fmt.Sprintf("plugin %s failed to load: %s", e.ID, strings.TrimPrefix(reason, "plugin "+e.ID+": "))
	}
	if reason != "" {
		return fmt.Sprintf("plugin %s is %s: %s", e.ID, e.State, reason)
	}
	return fmt.Sprintf("plugin %s is %s", e.ID, e.State)
}

// ErrMoved is returned by Handle for a call that a reload moved while it
// waited for an instance of the plugin's version: to the version that
// replaced it, to a new slot of the plugin, or out (the plugin was
// removed); and for a call that waited for its plugin's start-up load,
// during which a reload may have put new credentials in force (greenroom
// serve applies a reload's credentials at once, while the start-up load
// holds the runtime's reload back). The call did not run. Its caller admits it again under the
// config now in force, as a request arriving now (its credential may have
// been revoked or restricted, its public route closed), and calls Handle
// again: the version serving now takes it, or the plugin is unknown.
var ErrMoved = errors.New("a reload moved the call to the plugin's new version")

// Handle serves one HTTP request with plugin id's current version. A
// request that a reload moves to the new version (it was waiting for an
// instance of the old one) gets ErrMoved, to be let in again under the new
// version's config.
func (r *Runtime) Handle(ctx context.Context, id string, req *hostfuncs.Request, respond func(hostfuncs.Response) error) error {
	s := r.Slot(id)
	if s == nil {
		return ErrUnknownPlugin
	}
	p := s.cur.Load()
	if p == nil {
		// Still loading at start-up: the call waits for the load, at most
		// LoadWait or until shutdown starts, rather than failing while the
		// server is up but the plugin not yet.
		r.awaitLoad(ctx, s)
		if p = s.cur.Load(); p == nil {
			return r.unavailable(s)
		}
		// It was let in before the wait, which may have been long (a
		// slow initializer, migrations), under credentials a reload may
		// have changed since: it is let in again, then served by the
		// version loaded now. (A token revoked meanwhile was served.)
		return ErrMoved
	}
	// A reload (of any part of the config: [auth] alone swaps no
	// version) that puts the decision that let the call in out of date
	// while it waits for an instance has it decided again once it has
	// one (plugin.WithAdmission); refused, it gets plugin.ErrReadmit.
	err := p.Handle(ctx, req, respond)
	// A reload closed the version we picked before it gave us an
	// instance (replaced, or removed with its plugin).
	if plugin.KindOf(err) == plugin.FailClosed && (s.cur.Load() != p || r.Slot(id) != s) {
		return ErrMoved
	}
	return err
}

// Close stops the scheduler (cancelling task runs and releasing their
// leases), then closes every plugin, letting calls in flight finish until
// ctx ends, also those of versions a reload replaced. The error lists what
// was cut off.
func (r *Runtime) Close(ctx context.Context) error {
	var errs []error
	// Replaced versions still draining end with the others: when their
	// calls finish, or are cut when ctx ends (at once if it has).
	r.BeginShutdown()
	stopCut := context.AfterFunc(ctx, func() { r.cutOnce.Do(func() { close(r.cut) }) })
	defer stopCut()
	if err := r.sched.Stop(ctx); err != nil {
		errs = append(errs, err)
	}
	r.stopRetries(true)
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	t := r.table.Load()
	for _, id := range t.ids {
		s := t.slots[id]
		s.host.Store(nil)
		if p := s.cur.Swap(nil); p != nil {
			if err := p.Close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		s.set(StateClosed, nil)
	}
	r.drains.Wait()
	r.drainMu.Lock()
	errs = append(errs, r.drainErrs...)
	r.drainMu.Unlock()
	r.engine.Close(context.Background())
	if err := r.db.Close(); err != nil {
		errs = append(errs, err)
	}
	// After the plugins: what they dropped in their last moments is
	// reported too.
	r.plogMu.Lock()
	for _, pl := range r.plogs {
		pl.Close()
	}
	r.plogMu.Unlock()
	r.reader.Close()
	r.cache.Close(context.Background())
	return errors.Join(errs...)
}
