package runtime

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
)

// Once a shutdown has begun, a version that a reload replaced ends its
// calls in flight with the shutdown (Close's context), not at its own
// drain deadline; and what Close cuts off there, it reports. Before, the
// drain's own timer (shutdown_timeout from the reload) cut the call a
// moment before the shutdown's deadline, which never counted it.
func TestShutdownEndsReplacedVersionsDrain(t *testing.T) {
	read := verConfig(t, "[server]\nshutdown_timeout = \"1s\"\n", "timeout = \"30s\", ")
	log, _ := logtest.NewNullLogger()
	rt, err := New(read(2), log, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt.Load(ctx)
	slow := make(chan error, 1)
	go func() {
		req := &hostfuncs.Request{Method: []byte("GET"), Path: []byte("/slow"), RawQuery: []byte("ms=20000"), RequestID: "slow"}
		slow <- rt.Handle(ctx, "ver", req, func(hostfuncs.Response) error { return nil })
	}()
	for deadline := time.Now().Add(10 * time.Second); rt.Slot("ver").Plugin().Stats().Busy < 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow call never started")
		}
	}
	if res, err := rt.Reload(ctx, read(3)); err != nil || res.Plugins["ver"].Outcome != OutcomeReloaded {
		t.Fatalf("reload: %+v %v", res, err)
	}
	rt.BeginShutdown()
	// Well past the replaced version's drain deadline (1s): the call runs
	// on, for the shutdown to end.
	select {
	case err := <-slow:
		t.Fatalf("the call in flight ended at the replaced version's drain deadline: %v", err)
	case <-time.After(2500 * time.Millisecond):
	}
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err = rt.Close(cctx)
	if err == nil || !strings.Contains(err.Error(), "plugin ver: 1 calls still running") {
		t.Errorf("Close: %v, want it to report the call it cut off on the replaced version", err)
	}
	if err := <-slow; err == nil {
		t.Error("the call cut off by Close succeeded")
	}
}

// A reload that a shutdown cuts short (its context ends) reports the
// plugin canceled, not failed: the old version serves on.
func TestReloadCanceledByShutdown(t *testing.T) {
	read := verConfig(t, "", "")
	log, hook := logtest.NewNullLogger()
	rt, err := New(read(1), log, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	rt.Load(context.Background())
	old := rt.Slot("ver").Plugin()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := rt.Reload(ctx, read(2))
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Plugins["ver"]; got.Outcome != OutcomeCanceled || !got.Serving || !res.Canceled() || res.Failed() {
		t.Errorf("reload with its context ended: %+v", got)
	}
	if rt.Slot("ver").Plugin() != old {
		t.Error("the old version no longer serves")
	}
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.ErrorLevel {
			t.Errorf("logged at %s: %s", e.Level, e.Message)
		}
	}
}

// verConfig returns a function that reads a config of plugin ver (the
// ver1 test guest) with head before its tables and limits (ending in
// ", ") before its instances.
func verConfig(t *testing.T, head, limits string) func(instances int) *config.Config {
	ver := guesttest.Build(t, "runtime/server/testdata/guests/ver1")
	cache := filepath.Join(guesttest.CacheDir(), "runtime-test-cache")
	return func(instances int) *config.Config {
		text := fmt.Sprintf("%s[runtime]\ncache_dir = %q\n[plugins.ver]\npath = %q\nlimits = { %sinstances = %d }\n", head, cache, ver, limits, instances)
		cfg, err := config.Read([]config.Source{{Name: "config.toml", Data: []byte(text)}}, func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
}

// A reload never cuts a call its own timeout allows: a replaced version
// drains for server.shutdown_timeout or its limits.timeout, the longer.
// A call of 3s under a timeout of 10s was cut at a shutdown_timeout of
// 1s (503 to its client).
func TestReloadDrainsForThePluginsTimeout(t *testing.T) {
	read := verConfig(t, "[server]\nshutdown_timeout = \"1s\"\n", "timeout = \"10s\", ")
	log, _ := logtest.NewNullLogger()
	rt, err := New(read(2), log, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	ctx := context.Background()
	rt.Load(ctx)
	slow := make(chan error, 1)
	go func() {
		req := &hostfuncs.Request{Method: []byte("GET"), Path: []byte("/slow"), RawQuery: []byte("ms=3000"), RequestID: "slow"}
		slow <- rt.Handle(ctx, "ver", req, func(hostfuncs.Response) error { return nil })
	}()
	for deadline := time.Now().Add(10 * time.Second); rt.Slot("ver").Plugin().Stats().Busy < 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow call never started")
		}
	}
	if res, err := rt.Reload(ctx, read(3)); err != nil || res.Plugins["ver"].Outcome != OutcomeReloaded {
		t.Fatalf("reload: %+v %v", res, err)
	}
	if err := <-slow; err != nil {
		t.Errorf("the call in flight on the replaced version: %v", err)
	}
}

// A reload whose context has ended begins no further plugin loads: they
// rewrote and compiled each module left to them (looking at no context)
// before failing, which a shutdown waited for (0.5 s for three plugins,
// one compiled afresh). A plugin already as the config asks is still
// reported unchanged.
func TestCanceledReloadBeginsNoFurtherLoads(t *testing.T) {
	read := verConfig(t, "", "")
	hello := guesttest.Build(t, "plugins/hello")
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	rt, err := New(read(1), log, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	rt.Load(context.Background())
	cfg := read(1)
	for _, id := range []string{"w1", "w2"} {
		cfg.Plugins[id] = &config.Plugin{Path: hello, Limits: cfg.Plugins["ver"].Limits}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	hook.Reset()
	res, err := rt.Reload(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Plugins["ver"].Outcome; got != OutcomeUnchanged {
		t.Errorf("ver: %s, want unchanged", got)
	}
	for _, id := range []string{"w1", "w2"} {
		if got := res.Plugins[id].Outcome; got != OutcomeCanceled {
			t.Errorf("%s: %s, want canceled", id, got)
		}
	}
	for _, e := range hook.AllEntries() {
		if e.Message == "instrumented for interruption" {
			t.Errorf("plugin %v was loaded (instrumented) by a reload whose context had ended", e.Data["plugin"])
		}
	}
}

// A reload asked for once the shutdown has begun (the admin API's, during
// server.shutdown_delay, when the server still serves) changes nothing:
// it was applied, removing the plugins its config no longer had (their
// calls answered 404 for the rest of the drain) and putting its
// credentials in force, though it loaded no changed plugin.
func TestReloadAfterShutdownBeganChangesNothing(t *testing.T) {
	read := verConfig(t, "", "")
	log, _ := logtest.NewNullLogger()
	rt, err := New(read(1), log, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	rt.Load(context.Background())
	old, oldCfg := rt.Slot("ver").Plugin(), rt.Config()
	rt.BeginShutdown()
	removed := read(1)
	removed.Plugins = map[string]*config.Plugin{}
	res, err := rt.Reload(context.Background(), removed)
	if !errors.Is(err, ErrShuttingDown) {
		t.Errorf("reload after the shutdown began: %+v %v, want ErrShuttingDown", res, err)
	}
	if s := rt.Slot("ver"); s == nil || s.Plugin() != old {
		t.Error("the reload removed or replaced the plugin during the shutdown")
	}
	if rt.Config() != oldCfg {
		t.Error("the reload put its config in force during the shutdown")
	}
}

// A reload that a shutdown cuts short is abandoned whole: the plugins it
// had already loaded keep the version they served at the signal (their
// new versions are closed unused), and the plugins its config dropped are
// not removed: the shutdown drains the plugin set that served at the
// signal. Before, the new versions loaded before the signal were swapped
// in one by one, and the plugins the new config no longer had were
// removed (404 to the calls a load balancer still sent during the drain).
func TestReloadCutShortByShutdownIsAbandonedWhole(t *testing.T) {
	v1 := guesttest.Build(t, "runtime/server/testdata/guests/ver1")
	v2 := guesttest.Build(t, "runtime/server/testdata/guests/ver2")
	cache := filepath.Join(guesttest.CacheDir(), "runtime-test-cache")
	read := func(text string) *config.Config {
		cfg, err := config.Read([]config.Source{{Name: "config.toml", Data: []byte(fmt.Sprintf("[runtime]\ncache_dir = %q\n", cache) + text)}}, func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	log, _ := logtest.NewNullLogger()
	rt, err := New(read(fmt.Sprintf("[plugins.afail]\npath = %q\n[plugins.aver]\npath = %q\n[plugins.zgone]\npath = %q\n", v1, v1, v1)), log, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	rt.Load(context.Background())
	pinned, old, gone := rt.Slot("afail").Plugin(), rt.Slot("aver").Plugin(), rt.Slot("zgone").Plugin()
	if pinned == nil || old == nil || gone == nil {
		t.Fatal("the plugins did not load")
	}
	// afail is pinned to another module (its new version fails, and the
	// pin would stop the serving one), aver moves to ver2, zgone is
	// dropped, and the signal comes once aver's new version has loaded.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	SetReloadStep(t, func(step string) {
		if step == "loaded aver" {
			cancel()
			rt.BeginShutdown()
		}
	})
	res, err := rt.Reload(ctx, read(fmt.Sprintf("[plugins.afail]\npath = %q\nsha256 = %q\n[plugins.aver]\npath = %q\n", v2, strings.Repeat("0", 64), v2)))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Canceled() || res.Superseded {
		t.Errorf("result: %+v, want canceled", res)
	}
	if pr := res.Plugins["afail"]; pr.Outcome != OutcomeFailed || !pr.Serving {
		t.Errorf("afail: %+v, want failed and serving", pr)
	}
	if s := rt.Slot("afail"); s == nil || s.Plugin() != pinned {
		t.Error("afail's serving version was stopped by a reload the shutdown abandoned")
	} else if st, lastErr := s.Status(); st != StateReady || lastErr != "" {
		t.Errorf("afail: %s %q, want ready without an error", st, lastErr)
	}
	for _, id := range []string{"aver", "zgone"} {
		if pr := res.Plugins[id]; pr.Outcome != OutcomeCanceled || !pr.Serving {
			t.Errorf("%s: %+v, want canceled and serving", id, pr)
		}
	}
	if s := rt.Slot("aver"); s == nil || s.Plugin() != old {
		t.Error("aver's new version was swapped in by a reload the shutdown abandoned")
	}
	if s := rt.Slot("zgone"); s == nil || s.Plugin() != gone {
		t.Error("zgone was removed by a reload the shutdown abandoned")
	}
	for _, id := range []string{"aver", "zgone"} {
		if rt.Slot(id) == nil {
			continue
		}
		var body string
		req := &hostfuncs.Request{Method: []byte("GET"), Path: []byte("/v"), RequestID: "after"}
		if err := rt.Handle(context.Background(), id, req, func(r hostfuncs.Response) error { body = string(r.Body); return nil }); err != nil || body != "v1" {
			t.Errorf("GET /api/%s/v during the drain: %q %v, want v1", id, body, err)
		}
		if st, _ := rt.Slot(id).Status(); st != StateReady {
			t.Errorf("%s: state %s, want ready", id, st)
		}
	}
}
