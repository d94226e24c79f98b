package runtime

import (
	"fmt"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/database"
)

// host gives one plugin its host services. It sees only that plugin's
// config table and grants.
type host struct {
	id     string
	config map[string]string
	// db is the plugin's database; nil unless the plugin was granted the
	// database capability.
	db *database.PluginDB
}

var _ hostfuncs.Host = (*host)(nil)

func newHost(id string, pc *config.Plugin, db *database.PluginDB) *host {
	return &host{id: id, config: pc.FlatConfig(), db: db}
}

func (h *host) Config(key string) (string, bool) {
	v, ok := h.config[key]
	return v, ok
}

func (h *host) Database() (hostfuncs.Database, error) {
	if h.db == nil {
		return nil, fmt.Errorf("capability %q not granted to plugin %s (set database = true under [plugins.%s.capabilities])", hostfuncs.CapabilityDatabase, h.id, h.id)
	}
	return h.db, nil
}
