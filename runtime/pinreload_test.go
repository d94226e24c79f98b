package runtime_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

// A sha256 pin a reload adds refuses the module it does not match: also
// the one serving, which stops (503) rather than serving on as a failed
// reload's previous version does (an audit's operator pinned another
// module and the refused one served on). A pin the serving version
// matches keeps it serving when the file changed under it.
func TestReloadPinStopsTheServingVersion(t *testing.T) {
	v1 := guesttest.Build(t, "runtime/server/testdata/guests/ver1")
	v2 := guesttest.Build(t, "runtime/server/testdata/guests/ver2")
	sum := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return plugin.SHA256(b)
	}
	cfg := func(path, pin string) string {
		return fmt.Sprintf("[plugins.ver]\npath = %q\nsha256 = %q\n", path, pin)
	}
	in := servertest.Start(t, cfg(v1, ""), testOptions())
	get := func(want int, body string) {
		t.Helper()
		if s, _, b := in.Get(t, "/api/ver/v"); s != want || body != "" && b != body {
			t.Errorf("GET /api/ver/v: %d %s, want %d %s", s, b, want, body)
		}
	}
	get(200, "v1")

	// The file changed to v2, pinned to v1: v1 matches and serves on.
	in.SetConfig(cfg(v2, sum(v1)))
	res := in.Reload(t)
	if pr := res.Plugins["ver"]; pr.Outcome != runtime.OutcomeFailed || !pr.Serving || !strings.Contains(pr.Error, "sha256 pin mismatch") {
		t.Errorf("pinned to the serving version: %+v", pr)
	}
	get(200, "v1")

	// Pinned to neither: v1 stops.
	other := strings.Repeat("0", 64)
	in.SetConfig(cfg(v1, other))
	res = in.Reload(t)
	if pr := res.Plugins["ver"]; pr.Outcome != runtime.OutcomeFailed || pr.Serving || !strings.Contains(pr.Error, "sha256 pin mismatch") {
		t.Errorf("pinned to another module: %+v", pr)
	}
	get(503, "")
	if s := in.RT.Slot("ver"); s == nil || s.Plugin() != nil {
		t.Error("the slot still has a serving version after the pin refused it")
	} else if st, why := s.Status(); st != runtime.StateFailed || !strings.Contains(why, "sha256 pin mismatch") {
		t.Errorf("slot after the pin refused the serving version: %v %q", st, why)
	}

	// The right pin serves it again.
	in.SetConfig(cfg(v1, strings.ToUpper(sum(v1))))
	res = in.Reload(t)
	if pr := res.Plugins["ver"]; !pr.Serving || pr.Error != "" {
		t.Errorf("pinned to the file: %+v", pr)
	}
	get(200, "v1")
}

// A reload that takes back a capability the serving version was granted
// (database = true removed) and whose new version fails to load (todo
// needs its database) stops the serving version, as a pin does: it kept
// the database the operator revoked, and wrote to it (an audit).
func TestReloadRevokedCapabilityStopsTheServingVersion(t *testing.T) {
	todo := guesttest.Build(t, "plugins/todo")
	cfg := func(db bool) string {
		return fmt.Sprintf("[database]\nconnection = \"file:%s\"\n[plugins.todo]\npath = %q\n[plugins.todo.capabilities]\ndatabase = %v\n", t.TempDir(), todo, db)
	}
	base := cfg(true)
	in := servertest.Start(t, base, testOptions())
	if s, _, b := in.Get(t, "/api/todo/items"); s != 200 {
		t.Fatalf("before: %d %s", s, b)
	}
	in.SetConfig(strings.Replace(base, "database = true", "database = false", 1))
	res := in.Reload(t)
	if pr := res.Plugins["todo"]; pr.Outcome != runtime.OutcomeFailed || pr.Serving {
		t.Errorf("database revoked: %+v, want failed and not serving", pr)
	}
	if s, _, b := in.Get(t, "/api/todo/items"); s != 503 {
		t.Errorf("after the revocation: %d %s, want 503", s, b)
	}
	if !strings.Contains(in.Log.String(), "which the reload takes back: it stops serving") {
		t.Errorf("no log line saying why it stopped:\n%s", in.Log.String())
	}
	in.SetConfig(base)
	if res := in.Reload(t); !res.Plugins["todo"].Serving {
		t.Errorf("granted again: %+v", res.Plugins["todo"])
	}
	if s, _, b := in.Get(t, "/api/todo/items"); s != 200 {
		t.Errorf("granted again: %d %s", s, b)
	}
}

// Only a grant taken back stops the serving version: one widened, or
// written otherwise (case, a prefix without its slash), whose new version
// failed to load for another reason, leaves it serving, as any failed
// reload does (a review found these stopped it).
func TestReloadWidenedGrantKeepsTheServingVersion(t *testing.T) {
	v1 := guesttest.Build(t, "runtime/server/testdata/guests/ver1")
	junk := filepath.Join(t.TempDir(), "broken.wasm")
	if err := os.WriteFile(junk, []byte("not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := func(path, grant string) string {
		return fmt.Sprintf("[reading]\nallow = [{ host = \"api.example.com\" }]\n[plugins.ver]\npath = %q\n[plugins.ver.capabilities]\nurlreader = [%q]\n", path, grant)
	}
	for _, grant := range []string{"api.example.com/", "API.example.com/repos/org/", "api.example.com/repos/org", "api.example.com/repos/org/"} {
		in := servertest.Start(t, cfg(v1, "api.example.com/repos/org/"), testOptions())
		in.SetConfig(cfg(junk, grant))
		res := in.Reload(t)
		if pr := res.Plugins["ver"]; pr.Outcome != runtime.OutcomeFailed || !pr.Serving {
			t.Errorf("grant api.example.com/repos/org/ -> %q, new version broken: %+v, want failed and serving", grant, pr)
		}
	}
	in := servertest.Start(t, cfg(v1, "api.example.com/repos/org/"), testOptions())
	in.SetConfig(cfg(junk, "api.example.com/repos/other/"))
	if pr := in.Reload(t).Plugins["ver"]; pr.Serving {
		t.Errorf("grant narrowed to another path, new version broken: %+v, want it stopped", pr)
	}
}
