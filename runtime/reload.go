package runtime

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	goruntime "runtime"
	"slices"
	"strings"

	"github.com/tetratelabs/wazero/experimental"

	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

// Outcomes of a plugin in a reload.
const (
	OutcomeUnchanged = "unchanged" // same config, same wasm: left as it was
	OutcomeReloaded  = "reloaded"  // a new version serves
	OutcomeAdded     = "added"     // new in the config, now serving
	OutcomeRemoved   = "removed"   // gone from the config, closed
	OutcomeFailed    = "failed"    // the new version did not load
	// OutcomeCanceled: the reload's context ended (the server shutting
	// down, or a newer reload superseding it) before the new version
	// loaded; what served before serves on. A plugin the reload was
	// adding is not added (not serving, its routes unknown).
	OutcomeCanceled = "canceled"
)

// ErrSuperseded is the cause of a reload's context canceled because a newer
// reload was asked for.
var ErrSuperseded = errors.New("the reload was superseded by a newer one")

// ErrShuttingDown is the error of a reload asked for once the shutdown has
// begun (BeginShutdown): nothing is changed.
var ErrShuttingDown = errors.New("the server is shutting down: the reload was not applied")

// ReloadResult says what a reload did.
type ReloadResult struct {
	Plugins map[string]PluginReload `json:"plugins"`
	// RestartNeeded lists changed settings that only take effect when the
	// process restarts (the listener, the database, ...).
	RestartNeeded []string `json:"restart_needed,omitempty"`
	// Warnings say what the reload applied but cannot work yet: a new
	// [auth.jwt] jwks_url whose JWKS could not be fetched, so that every
	// JWT is refused until a fetch succeeds (OnReload's hooks).
	Warnings []string `json:"warnings,omitempty"`
	// Superseded: a newer reload was asked for while this one loaded
	// plugins; it loads those this one did not (outcome canceled).
	Superseded bool `json:"superseded,omitempty"`
}

// PluginReload is one plugin's part in a reload.
type PluginReload struct {
	Outcome string `json:"outcome"`
	// Error says why the new version failed to load; when the plugin was
	// serving before, its previous version keeps serving.
	Error string `json:"error,omitempty"`
	// Serving reports whether the plugin serves after the reload.
	Serving bool `json:"serving"`
}

// Canceled reports whether the reload was cut short (the server shutting
// down) before every plugin loaded.
func (r *ReloadResult) Canceled() bool {
	for _, p := range r.Plugins {
		if p.Outcome == OutcomeCanceled {
			return true
		}
	}
	return false
}

// Failed reports whether any plugin failed to load.
func (r *ReloadResult) Failed() bool {
	for _, p := range r.Plugins {
		if p.Outcome == OutcomeFailed {
			return true
		}
	}
	return false
}

// Reload moves the runtime to cfg without downtime. Each plugin whose
// config or wasm changed is loaded and pre-warmed beside the version
// serving now; once every plugin is loaded the new versions are swapped in
// together with the new plugin set; calls in flight finish on the old
// versions, which are closed after them. A plugin whose new version fails
// to load keeps its old one serving, and the result says why. Plugins
// added to the config are loaded; removed ones are closed after their calls
// in flight. Settings that cannot change while running are reported in
// RestartNeeded and keep their old values. A reload that a shutdown cuts
// short (its context ended, not by a newer reload, or BeginShutdown) is
// abandoned whole: the plugins serve on as they were, and its result says
// canceled. One that a newer reload supersedes installs the versions it
// loaded and removes no plugin (canceled): the newer one decides.
func (r *Runtime) Reload(ctx context.Context, cfg *config.Config) (*ReloadResult, error) {
	// The reload decides anew about plugins retrying their load: an
	// attempt in progress holds reloadMu, and may hold it long (a connect
	// waiting its connect_timeout, a wait for the plugin's migration lock),
	// so it is stopped before the reload waits for the lock, whose new
	// credentials would otherwise wait as long. Again under reloadMu, so
	// that a retry Load began while this reload waited for the lock is
	// stopped too (a retry attempt checks under the lock).
	r.stopRetries(false)
	if err := r.lockForReload(ctx); err != nil {
		return nil, err
	}
	defer r.reloadMu.Unlock()
	r.stopRetries(false)
	select {
	case <-r.shutdown:
		// The replica is draining (readiness 503, still serving during
		// server.shutdown_delay): what it serves then is what it served
		// at the signal. A reload applied now removed the plugins its
		// config no longer had (404s to the calls a load balancer still
		// sent), and put its credentials in force, while it loaded no
		// changed plugin (its context is canceled), as a SIGHUP then is
		// ignored.
		return nil, ErrShuttingDown
	default:
	}
	if !r.loaded.Load() {
		return nil, errors.New("reload: plugins are still loading")
	}
	ctx = experimental.WithCompilationWorkers(ctx, goruntime.NumCPU())
	// A task run that looks for a plugin meanwhile waits for the new table
	// (taskSlot).
	published := make(chan struct{})
	r.reloading.Store(&published)
	defer func() {
		r.reloading.Store(nil)
		close(published)
	}()
	// A database that failed to open (when a reload first granted it) is
	// tried again.
	r.db.RetryOpen()
	oldCfg, old := r.cfg.Load(), r.table.Load()
	res := &ReloadResult{Plugins: map[string]PluginReload{}, RestartNeeded: restartNeeded(oldCfg, cfg)}
	// Settings that need a restart keep their running values.
	cfg = withRunning(cfg, oldCfg, res.RestartNeeded)
	// The new config is in force before any plugin moves to its new
	// version: a call that waited for an old version is let in again
	// under it (Handle, ErrMoved), with the credentials the hooks apply.
	r.cfg.Store(cfg)
	r.onReloadMu.Lock()
	hooks := slices.Clone(r.onReload)
	r.onReloadMu.Unlock()
	for _, f := range hooks {
		res.Warnings = append(res.Warnings, f(ctx, cfg)...)
	}

	// The plugins' new versions are loaded one after another, and what
	// the reload decides for each (a new version to install, a state to
	// set, a serving version to stop) is applied together once every
	// plugin is loaded, with the new plugin set: a shutdown that cuts the
	// reload short abandons it whole (below), and what served at the
	// signal serves on and drains.
	next := &slotTable{slots: map[string]*Slot{}}
	var loaded []*staged
	var apply []func()
	var ids []string
	for id := range cfg.Plugins {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		s, existed := old.slots[id]
		if !existed {
			s = r.newSlot(id)
		}
		st, err := r.stageSlot(ctx, cfg, s)
		if err != nil && !existed && ctx.Err() != nil {
			// A plugin this reload adds, cut short before it loaded
			// (superseded, or the server shutting down): it is not
			// published, as it was never part of a configuration that
			// loaded. Its routes stay unknown (404), rather than answer
			// 503 "failed to load" until the newer reload loads it.
			log := r.log.WithField("plugin", id)
			if errors.Is(context.Cause(ctx), ErrSuperseded) {
				err = fmt.Errorf("plugin %s: %w before it was added", id, ErrSuperseded)
				log.Warn("reload superseded by a newer one before this plugin it adds loaded: not added")
				res.Superseded = true
			} else {
				err = fmt.Errorf("plugin %s: the reload was canceled before it was added (%w)", id, ctx.Err())
				log.Warn("reload canceled (the server is shutting down) before this plugin it adds loaded: not added")
			}
			res.Plugins[id] = PluginReload{Outcome: OutcomeCanceled, Error: err.Error()}
			reloadStep("loaded " + id)
			continue
		}
		next.ids = append(next.ids, id)
		next.slots[id] = s
		serving := s.cur.Load() != nil
		pr := PluginReload{Outcome: OutcomeReloaded}
		switch {
		case err == nil:
			loaded = append(loaded, st)
			serving = true
			if !existed {
				pr.Outcome = OutcomeAdded
			}
		case errors.Is(err, errUnchanged):
			// The running version is what the config asks for: an earlier
			// failed reload no longer applies.
			pr.Outcome = OutcomeUnchanged
			apply = append(apply, func() { s.set(StateReady, nil) })
		case errors.Is(context.Cause(ctx), ErrSuperseded):
			// A newer reload was asked for: it loads this plugin anew.
			err = fmt.Errorf("plugin %s: %w before its new version loaded", id, ErrSuperseded)
			pr = PluginReload{Outcome: OutcomeCanceled, Error: err.Error()}
			if !serving {
				apply = append(apply, func() { s.set(StateFailed, err) })
			}
			r.log.WithField("plugin", id).Warn("reload superseded by a newer one; what served before serves on until it loads")
			res.Superseded = true
		case ctx.Err() != nil:
			// Not the plugin's failure: the reload was cut short.
			err = fmt.Errorf("plugin %s: the reload was canceled before its new version loaded (%w)", id, ctx.Err())
			pr = PluginReload{Outcome: OutcomeCanceled, Error: err.Error()}
			if !serving {
				apply = append(apply, func() { s.set(StateFailed, err) })
			}
			r.log.WithField("plugin", id).Warn("reload canceled (the server is shutting down); what served before serves on until the process exits")
		default:
			err = fmt.Errorf("plugin %s: %w", id, err)
			pr = PluginReload{Outcome: OutcomeFailed, Error: err.Error()}
			log := r.log.WithField("plugin", id).WithError(err)
			if d := plugin.ErrorDetail(err); d != "" {
				log = log.WithField("detail", d)
			}
			revoked := ""
			if h := s.host.Load(); h != nil && serving {
				revoked = h.revoked(cfg.Plugins[id].Capabilities)
			}
			if serving && (!pinMatches(cfg.Plugins[id], s.sum) || revoked != "") {
				// The operator pinned another module than the one
				// serving, or took back a capability it was granted:
				// it stops, as the pin refuses it, or it would keep
				// what the operator revoked.
				serving = false
				apply = append(apply, func() {
					r.unserve(s, oldCfg)
					if database.Transient(err) {
						r.retryLoad(s, err) // as for a plugin with no version serving
					} else {
						s.set(StateFailed, err)
					}
					if revoked != "" {
						log.WithField("revoked", revoked).Errorf("reload: new version failed to load, and the serving version was granted the %s, which the reload takes back: it stops serving; its routes answer 503", revoked)
					} else {
						log.WithField("serving_sha256", s.sum).Errorf("reload: new version failed to load, and the serving version does not match plugins.%s.sha256 either: it stops serving; its routes answer 503", id)
					}
				})
			} else if serving {
				apply = append(apply, func() {
					s.set(StateReady, err) // serving, with its last load error
					log.Error("reload: new version failed to load; the previous version keeps serving")
				})
			} else if database.Transient(err) {
				apply = append(apply, func() { r.retryLoad(s, err) })
			} else {
				apply = append(apply, func() {
					s.set(StateFailed, err)
					log.Error("reload: plugin failed to load; its routes answer 503")
				})
			}
		}
		pr.Serving = serving
		res.Plugins[id] = pr
		reloadStep("loaded " + id)
	}
	var removed []string
	superseded := ctx.Err() != nil && errors.Is(context.Cause(ctx), ErrSuperseded)
	for _, id := range old.ids {
		if _, kept := next.slots[id]; kept {
			continue
		}
		if superseded {
			// A newer reload was asked for before this one got to
			// removing the plugins its config lacks: it removes none,
			// and the newer one decides (it removes the plugin if its
			// config lacks it too). Removed here, a plugin the newer
			// config keeps answered 404 until the newer reload had
			// loaded it again.
			s := old.slots[id]
			next.ids = append(next.ids, id)
			next.slots[id] = s
			res.Plugins[id] = PluginReload{
				Outcome: OutcomeCanceled,
				Error:   fmt.Sprintf("plugin %s: %v before it removed the plugin", id, ErrSuperseded),
				Serving: s.cur.Load() != nil,
			}
			res.Superseded = true
			r.log.WithField("plugin", id).Warn("reload superseded by a newer one before it removed this plugin: not removed; the newer reload decides")
			continue
		}
		removed = append(removed, id)
	}
	slices.Sort(next.ids)
	if r.abandoned(ctx) {
		// The shutdown began before the reload could publish what it
		// loaded: it is abandoned whole, as one asked for after the
		// signal is refused. What served at the signal serves on and
		// drains with the shutdown: the new versions loaded are closed
		// unused, no serving version is stopped, no plugin is removed,
		// no plugin it was adding is added. (The config's own settings,
		// the credentials first, were in force from its start, and
		// stay.)
		for _, st := range loaded {
			r.discard(st)
			pr := res.Plugins[st.s.ID]
			res.Plugins[st.s.ID] = PluginReload{
				Outcome: OutcomeCanceled,
				Error:   fmt.Sprintf("plugin %s: the reload was canceled (the server is shutting down) before its new version, loaded, was installed", st.s.ID),
				Serving: pr.Outcome != OutcomeAdded && st.s.cur.Load() != nil,
			}
		}
		for id, pr := range res.Plugins {
			if pr.Outcome == OutcomeFailed {
				// Its new version failed to load; what served before
				// serves on, not stopped (a pin, a capability taken
				// back) by a reload that is not applied.
				s := old.slots[id]
				pr.Serving = s != nil && s.cur.Load() != nil
				res.Plugins[id] = pr
				r.log.WithField("plugin", id).WithField("error", pr.Error).Warn("reload abandoned: this plugin's new version had failed to load; nothing is recorded for it")
			}
		}
		for _, id := range removed {
			res.Plugins[id] = PluginReload{
				Outcome: OutcomeCanceled,
				Error:   fmt.Sprintf("plugin %s: the reload was canceled (the server is shutting down) before it removed the plugin", id),
				Serving: old.slots[id].cur.Load() != nil,
			}
		}
		r.log.Warn("reload abandoned: the server is shutting down before it installed what it loaded; the plugins that served at the signal serve on and drain")
		reloadStep("abandoned")
		return res, nil
	}
	// The new versions are installed (the old ones finish their calls in
	// flight, then close), then the plugin set changes with the table. A
	// removed plugin's tasks stop before: a run starting after could not
	// find the plugin. An added plugin's tasks start after: a run
	// starting before could not find it (install leaves them to this).
	for _, st := range loaded {
		r.commit(cfg, st)
	}
	for _, f := range apply {
		f()
	}
	for _, id := range removed {
		r.sched.RemovePlugin(id)
	}
	r.table.Store(next)
	reloadStep("published")
	for _, id := range next.ids {
		s := next.slots[id]
		if _, existed := old.slots[id]; !existed {
			if h := s.host.Load(); h != nil && s.cur.Load() != nil {
				r.sched.SetTasks(id, h.tasks)
			}
		}
	}
	for _, id := range removed {
		s := old.slots[id]
		s.host.Store(nil)
		if p := s.cur.Swap(nil); p != nil {
			r.retire(p, drainTime(oldCfg, p))
		}
		s.set(StateClosed, nil)
		res.Plugins[id] = PluginReload{Outcome: OutcomeRemoved}
	}
	for _, k := range res.RestartNeeded {
		r.log.WithField("setting", k).Warn("reload: this setting changed but only takes effect after a restart; the running value stays")
	}
	return res, nil
}

// abandoned reports whether a reload whose context is ctx was cut short by
// a shutdown: the shutdown has begun, or ctx ended other than by a newer
// reload superseding it (serve cancels every reload's context as the
// shutdown begins). A superseded reload is not abandoned: it installs what
// it loaded, and the newer one decides the rest.
func (r *Runtime) abandoned(ctx context.Context) bool {
	if r.shuttingDown() {
		return true
	}
	return ctx.Err() != nil && !errors.Is(context.Cause(ctx), ErrSuperseded)
}

// lockForReload takes reloadMu for a reload, or gives up when ctx ends (a
// newer reload superseding it: ErrSuperseded; the server shutting down:
// ErrShuttingDown) or the shutdown begins. The start-up load holds
// reloadMu until every plugin has loaded, and is stopped only once the
// shutdown's drain has ended: a reload asked for meanwhile (the admin
// API's, a request in flight the drain waits for) waited for it, so the
// shutdown waited its whole deadline, and exited 1 naming the reload as
// cut off; a reload superseded while it waited held the newer one (its
// credentials) behind the start-up load.
func (r *Runtime) lockForReload(ctx context.Context) error {
	if r.reloadMu.TryLock() {
		return nil
	}
	got := make(chan struct{})
	go func() {
		r.reloadMu.Lock()
		close(got)
	}()
	giveUp := func() {
		// Taken later all the same: given back at once.
		go func() {
			<-got
			r.reloadMu.Unlock()
		}()
	}
	select {
	case <-got:
		return nil
	case <-r.shutdown:
		giveUp()
		return ErrShuttingDown
	case <-ctx.Done():
		giveUp()
		if errors.Is(context.Cause(ctx), ErrSuperseded) {
			return ErrSuperseded
		}
		return ErrShuttingDown
	}
}

// pinMatches reports whether a module of the given sha256 satisfies pc's
// sha256 pin (no pin: any module does).
func pinMatches(pc *config.Plugin, sum string) bool {
	pin := strings.ToLower(strings.TrimSpace(pc.SHA256))
	return pin == "" || pin == sum
}

// unserve stops s's serving version: its tasks are dropped, and it
// finishes its calls in flight and closes, as a removed plugin's does.
func (r *Runtime) unserve(s *Slot, oldCfg *config.Config) {
	r.sched.RemovePlugin(s.ID)
	s.host.Store(nil)
	if p := s.cur.Swap(nil); p != nil {
		r.retire(p, drainTime(oldCfg, p))
	}
}

// testReloadStep, when set (by tests), is called at each step of a reload:
// "loaded <id>" once plugin id is loaded (or failed to; its new version
// is not installed yet), "published" once the new versions are installed
// and the new plugin table is stored, "abandoned" instead when a shutdown
// abandoned the reload. It lets a test act inside a reload's windows
// deterministically.
var testReloadStep func(step string)

func reloadStep(step string) {
	if f := testReloadStep; f != nil {
		f(step)
	}
}

// Sections of the config that are fixed while the process runs.
var fixedSettings = []struct {
	key string
	get func(*config.Config) any
}{
	{"server.listen", func(c *config.Config) any { return c.Server.Listen }},
	{"server.body_limit", func(c *config.Config) any { return c.Server.BodyLimit }},
	{"server.header_limit", func(c *config.Config) any { return c.Server.HeaderLimit }},
	{"server.max_connections", func(c *config.Config) any { return c.Server.MaxConnections }},
	{"server.read_timeout", func(c *config.Config) any { return c.Server.ReadTimeout }},
	{"server.write_timeout", func(c *config.Config) any { return c.Server.WriteTimeout }},
	{"server.idle_timeout", func(c *config.Config) any { return c.Server.IdleTimeout }},
	{"server.metrics_listen", func(c *config.Config) any { return c.Server.MetricsListen }},
	{"server.rate_limit", func(c *config.Config) any { return c.Server.RateLimit }},
	{"server.rate_burst", func(c *config.Config) any { return c.Server.RateBurst }},
	{"server.cors", func(c *config.Config) any { return c.Server.CORS }},
	{"log.format", func(c *config.Config) any { return c.Log.Format }},
	{"runtime", func(c *config.Config) any { return c.Runtime }},
	{"database", func(c *config.Config) any { return c.Database }},
	{"scheduler", func(c *config.Config) any { return c.Scheduler }},
	{"reading", func(c *config.Config) any { return c.Reading }},
	{"integrations", func(c *config.Config) any { return c.Integrations }},
}

func restartNeeded(old, cfg *config.Config) []string {
	var out []string
	for _, f := range fixedSettings {
		if !reflect.DeepEqual(f.get(old), f.get(cfg)) {
			out = append(out, f.key)
		}
	}
	return out
}

// withRunning returns cfg with the fixed settings in keys taken from the
// running config.
func withRunning(cfg, running *config.Config, keys []string) *config.Config {
	if len(keys) == 0 {
		return cfg
	}
	c := *cfg
	c.Server.Listen, c.Server.BodyLimit, c.Server.HeaderLimit = running.Server.Listen, running.Server.BodyLimit, running.Server.HeaderLimit
	c.Server.ReadTimeout, c.Server.WriteTimeout, c.Server.IdleTimeout = running.Server.ReadTimeout, running.Server.WriteTimeout, running.Server.IdleTimeout
	c.Server.MetricsListen, c.Server.MaxConnections = running.Server.MetricsListen, running.Server.MaxConnections
	c.Server.RateLimit, c.Server.RateBurst, c.Server.CORS = running.Server.RateLimit, running.Server.RateBurst, running.Server.CORS
	c.Log.Format = running.Log.Format
	c.Runtime, c.Database, c.Scheduler = running.Runtime, running.Database, running.Scheduler
	c.Reading, c.Integrations = running.Reading, running.Integrations
	return &c
}
