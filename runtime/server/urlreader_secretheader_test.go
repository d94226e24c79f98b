package server_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
	"github.com/greenroom-dev/greenroom/runtime/urlreader"
)

// The runtime gives the URL reader the plugin's secrets: a header the
// plugin sends holding its config's secret (api_key, listed in secrets)
// reaches the host it addressed, not another one a redirect names.
func TestURLReaderPluginSecretHeaderStaysWithItsOrigin(t *testing.T) {
	const key = "logurl-api-key-0123456789abcdef"
	var mu sync.Mutex
	var seen []string // X-Api-Key as each server got it
	record := func(who string, r *http.Request) {
		mu.Lock()
		seen = append(seen, who+":"+r.Header.Get("X-Api-Key"))
		mu.Unlock()
	}
	other := newTarget(t, true, func(w http.ResponseWriter, r *http.Request) {
		record("other", r)
		fmt.Fprint(w, "other")
	})
	api := newTarget(t, true, func(w http.ResponseWriter, r *http.Request) {
		record("api", r)
		http.Redirect(w, r, fmt.Sprintf("https://127.0.0.1:%d/x", other.port()), http.StatusFound)
	})
	cfg := fmt.Sprintf(`
[reading]
allow = [{ host = "example.com" }, { host = "127.0.0.1" }]
[plugins.logurl]
path = %q
capabilities = { urlreader = ["example.com", "127.0.0.1"] }
secrets = ["api_key"]
[plugins.logurl.config]
api_key = %q
`, logurlWasm, key)
	in := servertest.Start(t, cfg, servertest.Options{
		CacheDir: cacheDir,
		Runtime: runtime.Options{URLReader: urlreader.Options{
			Resolver:          testResolver{"example.com": "127.0.0.1"},
			TestOnlyReachable: []netip.AddrPort{api.addr(), other.addr()},
			TLSConfig:         &tls.Config{RootCAs: api.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs},
		}},
	})
	r := guestRead(t, in, "logurl", "/read", "url", fmt.Sprintf("https://example.com:%d/away", api.port()), "header", "X-Api-Key", "value", key)
	if r.Body != "other" {
		t.Fatalf("read: %+v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != "api:"+key || seen[1] != "other:" {
		t.Errorf("X-Api-Key as the servers got it: %q, want the key at api only", seen)
	}
}
