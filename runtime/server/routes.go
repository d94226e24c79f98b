package server

import (
	"bytes"
	"sync"
	"unicode/utf8"

	"github.com/greenroom-dev/greenroom/runtime/logging"
)

// routeHeader is the response envelope's pseudo-header in which a guest
// names the route its handler matched (docs/abi.md): the pattern of Go's
// http.ServeMux, as "GET /items/{id}". It is not an HTTP token, so it is
// never forwarded to the client.
const routeHeader = ":route"

// Route labels of requests that named none (answered before the plugin:
// refused, unknown, busy; or by a handler that is not a ServeMux, or
// unmatched by the plugin's mux), which the metrics show as "-" and the
// access log leaves out; and of a plugin's patterns past maxRoutes.
const (
	noRoute    = ""
	otherRoute = "other"
)

// maxRoutes bounds the distinct patterns a plugin's requests may name in
// the metrics and the access log, so that a plugin (the pattern is its to
// write) cannot grow the metrics without bound.
const maxRoutes = 100

// routeLabels turns the patterns plugins name into the route label of
// the request metrics and the access log: the pattern's path (its method
// and host left out: "GET /items/{id}" is "/items/{id}"), interned per
// plugin, at most maxRoutes patterns per plugin id (across its reloads,
// as its counters), "other" after that.
type routeLabels struct {
	mu      sync.RWMutex
	plugins map[string]map[string]string // plugin id → pattern → label
}

// label returns the route label of a response of plugin that named
// pattern, with the secrets red knows redacted from it (a plugin may build
// a route from its config: "POST /hooks/"+secret, a webhook's secret path;
// the metrics, on metrics_listen without a credential, showed it as it
// was, an audit). red may be nil.
func (l *routeLabels) label(plugin string, pattern []byte, red *logging.Redactor) string {
	l.mu.RLock()
	lb, ok := l.plugins[plugin][string(pattern)]
	l.mu.RUnlock()
	if ok {
		return lb
	}
	lb = routeLabel(pattern)
	if lb == noRoute {
		return noRoute // not worth a place
	}
	if red != nil {
		lb = string(red.Redact([]byte(lb)))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.plugins == nil {
		l.plugins = make(map[string]map[string]string)
	}
	routes := l.plugins[plugin]
	if routes == nil {
		routes = make(map[string]string)
		l.plugins[plugin] = routes
	}
	if got, ok := routes[string(pattern)]; ok {
		return got
	}
	if len(routes) >= maxRoutes {
		return otherRoute
	}
	routes[string(pattern)] = lb
	return lb
}

// routeLabel is the path of a ServeMux pattern ("[METHOD ][HOST]/[PATH]"),
// or noRoute when pattern is not one: no path, longer than 256 bytes, not
// UTF-8, or holding control characters or spaces after the method.
func routeLabel(pattern []byte) string {
	i := bytes.IndexByte(pattern, '/')
	if i < 0 || len(pattern) > 256 || !utf8.Valid(pattern) {
		return noRoute
	}
	path := pattern[i:]
	for _, ch := range path {
		if ch <= ' ' || ch == 0x7f {
			return noRoute
		}
	}
	return string(path)
}
