package runtime

import (
	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/config"
)

// host gives one plugin its host services. It sees only that plugin's
// config table and grants.
type host struct {
	id     string
	config map[string]string
}

var _ hostfuncs.Host = (*host)(nil)

func newHost(id string, pc *config.Plugin) *host {
	return &host{id: id, config: pc.FlatConfig()}
}

func (h *host) Config(key string) (string, bool) {
	v, ok := h.config[key]
	return v, ok
}
