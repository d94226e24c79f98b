package runtime

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/database"
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
	// public is asked ∩ listed, read on every unauthenticated request.
	public atomic.Pointer[map[string]struct{}]

	// db is the plugin's database; nil unless the plugin was granted the
	// database capability.
	db *database.PluginDB
}

var _ hostfuncs.Host = (*host)(nil)

func newHost(id string, pc *config.Plugin, log *logrus.Entry) *host {
	h := &host{id: id, config: pc.FlatConfig(), log: log, listed: map[string]bool{}, asked: map[string]bool{}}
	for _, r := range pc.PublicRoutes {
		h.listed[r] = true
	}
	return h
}

func (h *host) Config(key string) (string, bool) {
	v, ok := h.config[key]
	return v, ok
}

// PublicRoute records a route the plugin asks to open (greenroom.Public).
// Every instance's init asks again; each route is considered and logged
// once.
func (h *host) PublicRoute(path string) error {
	if err := config.CheckPublicRoute(path); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.asked[path] {
		return nil
	}
	h.asked[path] = true
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
