//go:build !wasip1

package greenroom

import "sync"

// On the host platform there is no runtime to ask; native tests set values.

var (
	nativeMu     sync.RWMutex
	nativeConfig map[string]string
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
