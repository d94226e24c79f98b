package runtime_test

import (
	"fmt"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// A reload that removes a route from public_routes must close it,
// also when the plugin's new version fails to load and the old version
// keeps serving: the operator no longer lists it (an audit; docs/auth.md, issue 6:
// "the runtime makes a route public only if the operator also lists it").
func TestPublicRouteClosedByFailedReload(t *testing.T) {
	wasm := guesttest.Build(t, "plugins/hello")
	const admin = "public-admin-token-0123456789abcdef0123456789"
	cfg := func(public, memory string) string {
		return fmt.Sprintf(`[auth.tokens.admin]
token = %q
subject = "service:admin"
admin = true
[plugins.hello]
path = %q
public_routes = [%s]
limits = { memory = %q }
`, admin, wasm, public, memory)
	}
	in := servertest.Start(t, cfg(`"/ping"`, "64MiB"), testOptions())
	if s, _, b := in.DoAnon(t, "GET", "/api/hello/ping", nil); s != 200 {
		t.Fatalf("before: GET /ping without a credential: %d %s, want 200", s, b)
	}
	// The operator closes /ping; the new version fails to load (here for
	// its memory limit), so the old version serves on.
	in.SetConfig(cfg("", "1MiB"))
	res := in.Reload(t)
	if pr := res.Plugins["hello"]; pr.Outcome != "failed" || !pr.Serving {
		t.Fatalf("reload: %+v, want failed and still serving", pr)
	}
	if s, _, b := in.DoAnon(t, "GET", "/api/hello/ping", nil); s != 401 {
		t.Errorf("after a reload that removed /ping from public_routes: GET /ping without a credential: %d %s, want 401", s, b)
	}
}
