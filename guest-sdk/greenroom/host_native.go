//go:build !wasip1

package greenroom

import (
	"context"
	"net/http"
	"sync"
)

// On the host platform there is no runtime to ask; native tests set values.

var (
	nativeMu     sync.RWMutex
	nativeConfig map[string]string
	nativePublic []string
)

// SetConfig replaces the values Config returns in a native (non-wasm) build,
// for unit tests of a plugin. It does not exist in the wasip1 build.
func SetConfig(values map[string]string) {
	nativeMu.Lock()
	defer nativeMu.Unlock()
	nativeConfig = make(map[string]string, len(values))
	for k, v := range values {
		nativeConfig[k] = v
	}
}

func hostConfig(key string) (string, bool) {
	nativeMu.RLock()
	defer nativeMu.RUnlock()
	v, ok := nativeConfig[key]
	return v, ok
}

func hostPublic(path string) error {
	nativeMu.Lock()
	defer nativeMu.Unlock()
	nativePublic = append(nativePublic, path)
	return nil
}

// PublicRoutes returns the routes passed to Public so far, in a native
// (non-wasm) build, for unit tests of a plugin. It does not exist in the
// wasip1 build.
func PublicRoutes() []string {
	nativeMu.RLock()
	defer nativeMu.RUnlock()
	return append([]string(nil), nativePublic...)
}

// WithPrincipal returns a copy of r that PrincipalFrom reports as made by
// p, in a native (non-wasm) build, for unit tests of a plugin's handlers.
// It does not exist in the wasip1 build: there the runtime says who calls.
func WithPrincipal(r *http.Request, p Principal) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
}
