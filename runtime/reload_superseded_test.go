package runtime_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// A reload superseded by a newer one before a plugin it adds has loaded
// does not publish that plugin: its routes stay unknown (404), as they
// were before the reload and are under the newer config, which does not
// have it. Before, the superseded reload published it failed, and its
// routes answered 503 "failed to load: ... superseded" until a later
// reload removed it. The plugin serving before serves on throughout.
func TestSupersededReloadDoesNotPublishAPluginItDidNotAdd(t *testing.T) {
	v1 := guesttest.Build(t, "runtime/server/testdata/guests/ver1")
	cfgA := fmt.Sprintf("[plugins.ver]\npath = %q\n", v1)
	// B adds a plugin whose initialization takes 30 s ("zadded" loads
	// after "ver": the reload's "loaded ver" step comes before its load).
	cfgB := cfgA + fmt.Sprintf("[plugins.zadded]\npath = %q\nlimits = { timeout = \"60s\" }\n[plugins.zadded.config]\ninit_sleep_ms = \"30000\"\n", v1)
	// C, the newer reload, changes the serving plugin and drops the added one.
	cfgC := cfgA + "[plugins.ver.config]\nc = \"1\"\n"
	in := servertest.Start(t, cfgA, testOptions())

	// A client of the plugin serving before, all along.
	defer callAlong(t, in, "/api/ver/v")()

	adding := make(chan struct{}, 1)
	runtime.SetReloadStep(t, func(step string) {
		if step == "loaded ver" {
			select {
			case adding <- struct{}{}:
			default:
			}
		}
	})
	supersede := reloadInBackground(t, in, cfgB)
	select {
	case <-adding:
	case <-time.After(20 * time.Second):
		t.Fatal("reload B did not get to the plugin it adds")
	}
	time.Sleep(300 * time.Millisecond) // into zadded's initialization
	if s, _, b := in.Get(t, "/api/zadded/v"); s != 404 {
		t.Errorf("while reload B loads it: GET /api/zadded/v: %d %s, want 404", s, b)
	}
	b := supersede(cfgC)
	if pr := b.Plugins["zadded"]; !b.Superseded || pr.Outcome != runtime.OutcomeCanceled || pr.Serving {
		t.Errorf("reload B: superseded %v, zadded %+v; want superseded, zadded canceled and not serving", b.Superseded, pr)
	}
	if s, _, body := in.Get(t, "/api/zadded/v"); s != 404 {
		t.Errorf("after the superseded reload B: GET /api/zadded/v: %d %s, want 404", s, body)
	}
	if in.RT.Slot("zadded") != nil {
		t.Error("the superseded reload B published zadded")
	}

	// The newer reload, C: zadded stays unknown while it loads and after.
	runtime.SetReloadStep(t, func(step string) {
		if step == "loaded ver" {
			if s, _, body := in.Get(t, "/api/zadded/v"); s != 404 {
				t.Errorf("while reload C loads: GET /api/zadded/v: %d %s, want 404", s, body)
			}
		}
	})
	if res := in.Reload(t); res.Plugins["ver"].Outcome != runtime.OutcomeReloaded || res.Superseded {
		t.Errorf("reload C: %+v", res)
	}
	if s, _, body := in.Get(t, "/api/zadded/v"); s != 404 {
		t.Errorf("after reload C: GET /api/zadded/v: %d %s, want 404", s, body)
	}
}

// Likewise a reload that a shutdown cancels: a plugin it was adding is
// not added (its routes stay unknown), the one serving serves on.
func TestCanceledReloadDoesNotPublishAPluginItDidNotAdd(t *testing.T) {
	v1 := guesttest.Build(t, "runtime/server/testdata/guests/ver1")
	cfgA := fmt.Sprintf("[plugins.ver]\npath = %q\n", v1)
	in := servertest.Start(t, cfgA, testOptions())
	in.SetConfig(cfgA + fmt.Sprintf("[plugins.zadded]\npath = %q\n", v1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := in.ReloadContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pr := res.Plugins["zadded"]; pr.Outcome != runtime.OutcomeCanceled || pr.Serving || !res.Canceled() || res.Superseded {
		t.Errorf("canceled reload: %+v, zadded %+v; want zadded canceled and not serving", res, pr)
	}
	if s, _, body := in.Get(t, "/api/zadded/v"); s != 404 {
		t.Errorf("after the canceled reload: GET /api/zadded/v: %d %s, want 404", s, body)
	}
	if s, _, body := in.Get(t, "/api/ver/v"); s != 200 {
		t.Errorf("after the canceled reload: GET /api/ver/v: %d %s, want 200", s, body)
	}
}

// A reload superseded by a newer one removes no plugin: it stops where it
// is, before the end where it would remove the plugins its config lacks,
// and the newer reload decides (it removes them if its config lacks them
// too). Before, the superseded reload went on to remove them, and a
// plugin that the newer config, like the one before, still has answered
// 404 unknown_plugin until the newer reload had loaded it again: a config
// that dropped a plugin by mistake, fixed at once, took the plugin away
// from its clients all the same.
func TestSupersededReloadRemovesNoPlugin(t *testing.T) {
	v1 := guesttest.Build(t, "runtime/server/testdata/guests/ver1")
	kept := fmt.Sprintf("[plugins.kept]\npath = %q\n", v1)
	cfgA := kept + fmt.Sprintf("[plugins.ver]\npath = %q\n", v1)
	// B drops kept and changes ver, whose new version initializes for 30 s.
	cfgB := fmt.Sprintf("[plugins.ver]\npath = %q\nlimits = { timeout = \"60s\" }\n[plugins.ver.config]\ninit_sleep_ms = \"30000\"\n", v1)
	in := servertest.Start(t, cfgA, testOptions())

	stop := callAlong(t, in, "/api/kept/v")

	supersede := reloadInBackground(t, in, cfgB)
	time.Sleep(time.Second) // into ver's new initialization
	b := supersede(cfgA)
	if pr := b.Plugins["kept"]; !b.Superseded || pr.Outcome != runtime.OutcomeCanceled || !pr.Serving {
		t.Errorf("reload B: superseded %v, kept %+v; want superseded, kept canceled and serving", b.Superseded, pr)
	}
	if s, _, body := in.Get(t, "/api/kept/v"); s != 200 {
		t.Errorf("after the superseded reload B: GET /api/kept/v: %d %s, want 200", s, body)
	}
	if res := in.Reload(t); res.Plugins["kept"].Outcome != runtime.OutcomeUnchanged || res.Superseded {
		t.Errorf("reload A again: %+v", res)
	}
	stop()
}

// reloadInBackground starts reload B of in to cfg and returns what
// supersedes it: a newer config, cfg, is written and B is told it is
// superseded, as greenroom serve tells it; B's result is returned once B
// has ended (the test fails if it has not within 10 s, or failed).
func reloadInBackground(t *testing.T, in *servertest.Instance, cfg string) (supersede func(newer string) *runtime.ReloadResult) {
	ctx, cancel := context.WithCancelCause(context.Background())
	t.Cleanup(func() { cancel(nil) })
	type result struct {
		res *runtime.ReloadResult
		err error
	}
	done := make(chan result, 1)
	in.SetConfig(cfg)
	go func() {
		res, err := in.ReloadContext(ctx)
		done <- result{res, err}
	}()
	return func(newer string) *runtime.ReloadResult {
		in.SetConfig(newer)
		cancel(runtime.ErrSuperseded)
		select {
		case b := <-done:
			if b.err != nil {
				t.Fatalf("reload B: %v", b.err)
			}
			return b.res
		case <-time.After(10 * time.Second):
			t.Fatal("reload B did not end when superseded")
			return nil
		}
	}
}

// callAlong calls GET path on in, one call after another, until the
// function it returns is called, which fails the test unless there were
// calls and every one answered 200.
func callAlong(t *testing.T, in *servertest.Instance, path string) (stop func()) {
	var calls, bad atomic.Int64
	var lastBad atomic.Value
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			calls.Add(1)
			resp, err := in.Client.Get(in.URL + path)
			if err != nil {
				bad.Add(1)
				lastBad.Store(err.Error())
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				bad.Add(1)
				lastBad.Store(fmt.Sprintf("%d %s", resp.StatusCode, b))
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		if calls.Load() == 0 || bad.Load() != 0 {
			t.Errorf("GET %s across the reloads: %d of %d calls not 200 (the last: %v)", path, bad.Load(), calls.Load(), lastBad.Load())
		}
	}
}
