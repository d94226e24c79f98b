package runtime

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/logging"
	"github.com/greenroom-dev/greenroom/runtime/scheduler"
	"github.com/greenroom-dev/greenroom/runtime/urlreader"
)

// host gives one plugin (one loaded version of it) its host services. It
// sees only that plugin's config table and grants.
type host struct {
	id     string
	config map[string]string
	log    *logrus.Entry

	// listed are the operator's public_routes for the plugin.
	listed map[string]bool
	mu     sync.Mutex
	asked  map[string]bool // every route the plugin asked to open
	// settled is set once the version's first instance has initialized:
	// its public routes are fixed from then on (see PublicRoute).
	settled bool
	// public is asked ∩ listed, read on every unauthenticated request.
	public atomic.Pointer[map[string]struct{}]

	// db is the plugin's database; nil unless the plugin was granted the
	// database capability.
	db *database.PluginDB

	// The tasks the plugin registers (greenroom.Schedule), when it was
	// granted the scheduler.
	scheduler  bool
	defTimeout time.Duration
	// defTimeoutSecret: defTimeout (limits.timeout) came from the
	// environment.
	defTimeoutSecret bool
	tmu              sync.Mutex
	tasks            []scheduler.Task
	taskIndex        map[string]int
	// tasksFixed is set once the version's first instance has
	// initialized (settle): its registrations are the plugin's tasks,
	// later instances only repeat them, those Load warms after it too.
	tasksFixed bool
	// taskErr is the first task the runtime refused while loading; it
	// fails the load.
	taskErr error
	denied  bool
	// ignoredWarned: a later instance's registrations were ignored and
	// that was logged (once per version).
	ignoredWarned bool
	// plog writes what the plugin logs. It belongs to the plugin id, not
	// to this version, so that its rate limit survives reloads.
	plog *logging.PluginLogger
	// urls reads URLs for the plugin; nil unless it was granted urlreader.
	urls *urlreader.PluginReader
	// caps is what the operator granted the version (see revoked).
	caps config.Capabilities
	// secrets redacts the plugin's own secrets from an error message too
	// long for the guest, before it is cut (RedactMessage); nil when the
	// plugin has none.
	secrets *logging.Redactor
}

var (
	_ hostfuncs.Host            = (*host)(nil)
	_ hostfuncs.MessageRedactor = (*host)(nil)
)

func newHost(id string, pc *config.Plugin, log *logrus.Entry, plog *logging.PluginLogger, urls *urlreader.PluginReader) *host {
	h := &host{id: id, config: pc.FlatConfig(), log: log, listed: map[string]bool{}, asked: map[string]bool{}, plog: plog, urls: urls,
		scheduler: pc.Capabilities.Scheduler, defTimeout: pc.Limits.Timeout.D(), defTimeoutSecret: pc.LimitSecret("timeout"), taskIndex: map[string]int{}}
	h.caps = pc.Capabilities
	h.caps.URLReader = slices.Clone(pc.Capabilities.URLReader)
	for _, r := range pc.PublicRoutes {
		h.listed[r] = true
	}
	return h
}

// setSecrets gives the host the plugin's own secrets (config's
// PluginSecrets), for RedactMessage.
func (h *host) setSecrets(secrets []string) {
	r := new(logging.Redactor)
	r.AddSecrets(secrets)
	if r.Longest() == 0 {
		r = nil // none long enough to redact
	}
	h.secrets = r
}

// RedactMessage replaces the plugin's own secrets in an error message
// hostfuncs is about to cut to its bound. Only the plugin's: the message
// goes to the plugin, and redacting the operator's other secrets would
// tell it that its text holds one.
func (h *host) RedactMessage(b []byte) []byte {
	if h.secrets == nil {
		return b
	}
	return h.secrets.Redact(b)
}

func (h *host) Config(key string) (string, bool) {
	v, ok := h.config[key]
	return v, ok
}

// MaxPublicRoutes is how many distinct routes one plugin version may ask
// to make public.
const MaxPublicRoutes = 100

// PublicRoute records a route the plugin asks to open (greenroom.Public).
// Every instance's init asks again; each route is considered and logged
// once. What the version's first instance asked is what it gets: a route
// a later instance asks for first stays protected (the operator was told
// at load which listed routes stay protected; an audit's plugin opened
// one of them later, from the init of an instance the pool added).
func (h *host) PublicRoute(path string) error {
	if err := config.CheckPublicRoute(path); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.asked[path] {
		return nil
	}
	// Every instance's init asks again, and a hostile one could ask for a
	// new route each time: the routes remembered (and logged) are bounded.
	if len(h.asked) >= MaxPublicRoutes {
		return fmt.Errorf("a plugin may ask for at most %d public routes", MaxPublicRoutes)
	}
	h.asked[path] = true
	if h.settled {
		h.log.WithField("route", path).Warnf("plugin asks to make %s public from a later instance's init, not its first: a version's public routes are fixed when it loads, so it stays protected", path)
		return nil
	}
	if !h.listed[path] {
		h.log.WithField("route", path).Infof("plugin asks to make %s public, but plugins.%s.public_routes does not list it: it stays protected", path, h.id)
		return nil
	}
	next := map[string]struct{}{path: {}}
	if cur := h.public.Load(); cur != nil {
		maps.Copy(next, *cur)
	}
	h.public.Store(&next)
	h.log.WithField("route", path).Info("public route: served without a credential")
	return nil
}

// isPublic reports whether path (relative to the mount, as sent) is a
// public route: exact match, any method.
func (h *host) isPublic(path []byte) bool {
	m := h.public.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[string(path)]
	return ok
}

// settle fixes the public routes as the version's first instance asked
// for them (see PublicRoute), and its tasks and migrations as it
// registered them (see RegisterTask, database.PluginDB.FixMigrations):
// the instances a reload's Load warms after it (as many
// as the old version had live) register as later instances do. Fixed
// only when Load returned, their tasks were added to the version, up to
// scheduler.MaxTasks more for each (TestTasksFixedByFirstInstance).
func (h *host) settle() {
	h.mu.Lock()
	h.settled = true
	h.mu.Unlock()
	h.tmu.Lock()
	h.tasksFixed = true
	h.tmu.Unlock()
	if h.db != nil {
		h.db.FixMigrations()
	}
}

// unasked returns the routes the operator lists that the plugin did not
// ask for; they stay protected.
func (h *host) unasked() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for r := range h.listed {
		if !h.asked[r] {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

func (h *host) Database() (hostfuncs.Database, error) {
	if h.db == nil {
		return nil, fmt.Errorf("capability %q not granted to plugin %s (set database = true under [plugins.%s.capabilities])", hostfuncs.CapabilityDatabase, h.id, h.id)
	}
	return h.db, nil
}

// taskSeenKey keys the set of task ids one instance registered.
type taskSeenKey struct{}

// taskIgnoredKey keys the ids of the registrations of one instance that
// the loaded version ignores.
type taskIgnoredKey struct{}

// Scheduler refuses a plugin not granted the scheduler, naming the
// capability; the first refusal while the version loads is logged.
func (h *host) Scheduler() error {
	if h.scheduler {
		return nil
	}
	h.tmu.Lock()
	first := !h.denied && !h.tasksFixed
	h.denied = true
	h.tmu.Unlock()
	if first {
		h.log.Warnf("plugin schedules tasks but is not granted the scheduler (set scheduler = true under [plugins.%s.capabilities]); none will run", h.id)
	}
	return fmt.Errorf("capability %q not granted to plugin %s (set scheduler = true under [plugins.%s.capabilities])", hostfuncs.CapabilityScheduler, h.id, h.id)
}

// RegisterTask records a task the plugin registers while an instance
// initializes (the wire checked the grant with Scheduler). While the
// version's first instance initializes, a task the scheduler refuses (bad
// id, schedule, timeout, a duplicate id, one past scheduler.MaxTasks)
// fails the load as well as the call. Once it has (settle), later
// instances repeat the same registrations, which change nothing; other
// ones are ignored (ignoreTask).
func (h *host) RegisterTask(in *hostfuncs.Instance, spec hostfuncs.TaskSpec) error {
	if err := h.Scheduler(); err != nil {
		return hostfuncs.Failf(hostfuncs.ErrDenied, "%v", err)
	}
	t, err := scheduler.NewTask(h.id, spec, h.defTimeout)
	t.TimeoutSecret = spec.Timeout == 0 && h.defTimeoutSecret
	seen, _ := in.Value(taskSeenKey{}).(map[string]bool)
	if seen == nil {
		seen = map[string]bool{}
		in.SetValue(taskSeenKey{}, seen)
	}
	switch {
	case err != nil:
	case seen[t.ID]:
		err = fmt.Errorf("task %q is registered twice", t.ID)
	case len(seen) >= scheduler.MaxTasks:
		err = fmt.Errorf("task %q: the plugin registers more than %d tasks, the most one plugin may register", t.ID, scheduler.MaxTasks)
	}
	h.tmu.Lock()
	defer h.tmu.Unlock()
	if err != nil {
		if !h.tasksFixed && h.taskErr == nil {
			h.taskErr = err
		}
		return hostfuncs.Failf(hostfuncs.ErrInvalid, "%v", err)
	}
	seen[t.ID] = true
	if i, ok := h.taskIndex[t.ID]; ok {
		if !h.tasks[i].Equal(&t) {
			h.ignoreTask(in, t.ID) // the first registration stays
		}
		return nil
	}
	if h.tasksFixed {
		h.ignoreTask(in, t.ID)
		return nil
	}
	h.taskIndex[t.ID] = len(h.tasks)
	h.tasks = append(h.tasks, t)
	return nil
}

// ignoreTask notes a registration of in that the loaded version ignores: a
// task it did not register, or registered differently. The first instance
// of the version that makes any is logged once its initializer ends, with
// how many it made; later ones are not, since instances are recreated
// after panics and max_requests and a line each time would flood the log
// past the plugin's log_rate. h.tmu is held.
func (h *host) ignoreTask(in *hostfuncs.Instance, id string) {
	if h.ignoredWarned {
		return
	}
	ids, _ := in.Value(taskIgnoredKey{}).(*[]string)
	if ids == nil {
		ids = new([]string)
		in.SetValue(taskIgnoredKey{}, ids)
		in.OnCallEnd(func() {
			in.SetValue(taskIgnoredKey{}, nil)
			h.warnIgnored(*ids)
		})
	}
	*ids = append(*ids, id)
}

// warnIgnored logs the registrations an instance made that were ignored,
// unless an earlier instance of the version was logged.
func (h *host) warnIgnored(ids []string) {
	h.tmu.Lock()
	first := !h.ignoredWarned
	h.ignoredWarned = true
	h.tmu.Unlock()
	if !first {
		return
	}
	h.log.WithFields(logrus.Fields{"ignored": len(ids), "tasks": ids[:min(len(ids), 10)]}).Warnf(
		"an instance registered %d task(s) the plugin did not register, or registered differently, when it loaded; "+
			"they are ignored until the plugin reloads (logged once per plugin version)", len(ids))
}

// fixTasks ends the registration of the version's tasks and returns them,
// or the error of the first task refused.
func (h *host) fixTasks() ([]scheduler.Task, error) {
	h.tmu.Lock()
	defer h.tmu.Unlock()
	h.tasksFixed = true
	if h.taskErr != nil {
		return nil, h.taskErr
	}
	return slices.Clone(h.tasks), nil
}

// taskError returns the first task refused so far.
func (h *host) taskError() error {
	h.tmu.Lock()
	defer h.tmu.Unlock()
	return h.taskErr
}

func (h *host) LogEnabled(level int32) bool { return h.plog.Enabled(level) }

func (h *host) Log(in *hostfuncs.Instance, rec *hostfuncs.LogRecord) int32 {
	return h.plog.Write(logging.CallOf(in), rec)
}

// urlCodes maps the URL reader's failures to ABI error codes.
var urlCodes = map[urlreader.Kind]int32{
	urlreader.Invalid:     hostfuncs.ErrInvalid,
	urlreader.Denied:      hostfuncs.ErrDenied,
	urlreader.NotModified: hostfuncs.ErrNotModified,
	urlreader.TooLarge:    hostfuncs.ErrTooLarge,
	urlreader.Timeout:     hostfuncs.ErrTimeout,
	urlreader.Failed:      hostfuncs.ErrFailed,
}

func (h *host) ReadURL(ctx context.Context, in *hostfuncs.Instance, req *hostfuncs.URLRequest) (*hostfuncs.URLResponse, error) {
	if h.urls == nil {
		return nil, hostfuncs.Failf(hostfuncs.ErrDenied,
			"capability urlreader is not granted to plugin %s: the operator grants it with [plugins.%s.capabilities] urlreader = [\"host/path-prefix\", ...]", h.id, h.id)
	}
	if req == nil {
		return nil, nil // only the grant was asked for
	}
	r := urlreader.Request{URL: req.URL, Method: req.Method, Header: req.Header, Hop: req.Hop, Via: req.Via, NotModifiedResponse: req.Flags}
	if req.Deadline > 0 {
		r.Deadline = time.Unix(0, req.Deadline)
	}
	start := time.Now()
	resp, err := h.urls.Read(ctx, r)
	// The plugin makes as many of these lines as it reads: they pass its
	// level floor, count against its log rate limit (only when written,
	// so that lines its floor drops do not spend what its own warnings
	// need), and its URL is cut short.
	if h.log.Logger.IsLevelEnabled(logrus.DebugLevel) && h.plog.Enabled(hostfuncs.LevelDebug) && h.plog.Allow() {
		f := logrus.Fields{"url": h.cutForLog(req.URL), "method": h.cutForLog(req.Method), "took_ms": time.Since(start).Milliseconds()}
		if in.RequestID != "" {
			f["request_id"] = in.RequestID
		}
		if in.Task != "" {
			f["task"] = in.Task
		}
		if err != nil {
			f["error"] = h.cutForLog(err.Error())
		} else {
			f["status"], f["bytes"] = resp.Status, len(resp.Body)
		}
		h.log.WithFields(f).Debug("url read")
	}
	if err != nil {
		var ue *urlreader.Error
		if errors.As(err, &ue) {
			return nil, &hostfuncs.Failure{Code: urlCodes[ue.Kind], Msg: ue.Msg}
		}
		return nil, err
	}
	return &hostfuncs.URLResponse{
		Status:       resp.Status,
		URL:          resp.URL,
		ETag:         resp.ETag,
		LastModified: resp.LastModified,
		Header:       resp.Header,
		Body:         resp.Body,
		Decoded:      resp.Decoded,
	}, nil
}

// maxLoggedText bounds a text a plugin chose (a URL it read) in a line of
// the runtime's log.
const maxLoggedText = 1024

// cutForLog returns s, or, when it is longer than maxLoggedText bytes, s
// with the log's secrets replaced, cut to its first maxLoggedText bytes
// and a marker. It redacts before it cuts, as the scheduler does with a
// run's error and the printed-line writer with a line: the redactor,
// which runs again on the finished line, matches whole secrets only, and
// a cut through one would leave its first part in the line.
func (h *host) cutForLog(s string) string {
	if len(s) <= maxLoggedText {
		return s
	}
	if r := logging.RedactorOf(h.log.Logger); r != nil {
		s = string(r.Redact([]byte(s)))
		if len(s) <= maxLoggedText {
			return s
		}
	}
	return strings.ToValidUTF8(s[:maxLoggedText], "") + fmt.Sprintf("...(%d bytes cut)", len(s)-maxLoggedText)
}

// revoked names what of the version's grants next no longer gives
// ("database", "scheduler", "urlreader grant \"host/path\""), or "".
func (h *host) revoked(next config.Capabilities) string {
	switch {
	case h.caps.Database && !next.Database:
		return "database"
	case h.caps.Scheduler && !next.Scheduler:
		return "scheduler"
	}
	for _, g := range h.caps.URLReader {
		if !urlreader.GrantCovered(g, next.URLReader) {
			return fmt.Sprintf("urlreader grant %q", g)
		}
	}
	return ""
}
