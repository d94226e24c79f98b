package runtime_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// testOptions start an instance with the compilation cache this package's
// tests share, so that a reload does not compile a module afresh.
func testOptions() servertest.Options {
	return servertest.Options{CacheDir: filepath.Join(guesttest.CacheDir(), "runtime-test-cache")}
}

// A call waiting for an instance when a reload moves it to the plugin's
// new version is let in again under the new config, as a request arriving
// now with the same credential: a token the reload revoked gets 401, one
// it restricted to other plugins 403, one it kept is served by the new
// version. Before, only a call without a principal was decided again, and
// a revoked token's call was served with its old principal.
//
// The reload is held just after the plugin's swap (once it publishes what
// it loaded) until the moved call is answered: the new credentials must be
// in force by then, not only once the reload is over.
func TestCredentialChangedWhileWaiting(t *testing.T) {
	v1 := guesttest.Build(t, "runtime/server/testdata/guests/ver1")
	v2 := guesttest.Build(t, "runtime/server/testdata/guests/ver2")
	const admin, ci = "readmit-admin-token-0123456789abcdef", "readmit-ci-token-0123456789abcdef"
	cfg := func(path, ciToken string) string {
		return fmt.Sprintf("[auth.tokens.admin]\ntoken = %q\nsubject = \"service:admin\"\nadmin = true\n%s"+
			"[plugins.ver]\npath = %q\nlimits = { instances = 1, queue_timeout = \"10s\", timeout = \"30s\" }\n", admin, ciToken, path)
	}
	ciTable := func(extra string) string {
		return fmt.Sprintf("[auth.tokens.ci]\ntoken = %q\nsubject = \"service:ci\"\n%s", ci, extra)
	}
	type result struct {
		status int
		auth   string
		body   string
	}
	// Both versions compiled, so that the swap comes while the slow call
	// still runs.
	servertest.Start(t, cfg(v2, ""), testOptions())
	for _, tc := range []struct {
		name      string
		ciAfter   string // the [auth.tokens.ci] table after the reload
		status    int
		challenge string // in WWW-Authenticate
		body      string // of a 200
	}{
		{"revoked", "", 401, `error="invalid_token"`, ""},
		{"restricted to other plugins", ciTable("plugins = [\"other\"]\n"), 403, `error="insufficient_scope"`, ""},
		{"kept", ciTable(""), 200, "", "v2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := servertest.Start(t, cfg(v1, ciTable("")), testOptions())
			running, waiting := make(chan result, 1), make(chan result, 1)
			go func() {
				s, _, b := in.DoAnon(t, "GET", "/api/ver/slow?ms=1500", nil, "Authorization", "Bearer "+admin)
				running <- result{s, "", b}
			}()
			in.WaitBusy(t, "ver")
			go func() {
				s, h, b := in.DoAnon(t, "GET", "/api/ver/v", nil, "Authorization", "Bearer "+ci)
				waiting <- result{s, h.Get("WWW-Authenticate"), b}
			}()
			time.Sleep(200 * time.Millisecond) // queued behind the slow call
			answered := make(chan result, 1)
			runtime.SetReloadStep(t, func(step string) {
				if step != "published" {
					return
				}
				select {
				case r := <-waiting:
					answered <- r
				case <-time.After(20 * time.Second):
				}
			})
			in.SetConfig(cfg(v2, tc.ciAfter))
			if res := in.Reload(t); res.Plugins["ver"].Outcome != runtime.OutcomeReloaded {
				t.Fatalf("result = %+v", res)
			}
			var r result
			select {
			case r = <-answered:
			default:
				t.Error("the waiting call was not answered while the reload held after the swap")
				r = <-waiting
			}
			if r.status != tc.status || !strings.Contains(r.auth, tc.challenge) || tc.status == 200 && r.body != tc.body {
				t.Errorf("call waiting across the reload: %d %q %s, want %d with %q", r.status, r.auth, r.body, tc.status, tc.challenge+tc.body)
			}
			// What a request arriving now gets.
			s, h, b := in.DoAnon(t, "GET", "/api/ver/v", nil, "Authorization", "Bearer "+ci)
			if s != tc.status || !strings.Contains(h.Get("WWW-Authenticate"), tc.challenge) {
				t.Errorf("call after the reload: %d %q %s, want %d", s, h.Get("WWW-Authenticate"), b, tc.status)
			}
			if r := <-running; r.status != 200 || r.body != "v1" {
				t.Errorf("call in flight: %d %s, want 200 v1", r.status, r.body)
			}
		})
	}
}
