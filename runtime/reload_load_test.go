package runtime_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// Under continuous concurrent load on two plugins, reloads that change
// both (and then break one of them) fail no request: while a reload loads
// its plugins, both answer with the version serving before it (the new
// versions are installed together at its end), after it with the new ones;
// a new version that fails to load leaves the old one serving; readiness
// stays 200 throughout; and the request metrics count every request, all
// of them 200, with both plugins up.
func TestReloadUnderLoadInstallsTogether(t *testing.T) {
	v1 := guesttest.Build(t, "runtime/server/testdata/guests/ver1")
	v2 := guesttest.Build(t, "runtime/server/testdata/guests/ver2")
	dir := t.TempDir()
	put := func(id, src string) {
		t.Helper()
		var b []byte
		if src == "" {
			b = []byte("not wasm at all")
		} else {
			var err error
			if b, err = os.ReadFile(src); err != nil {
				t.Fatal(err)
			}
		}
		p := filepath.Join(dir, id+".wasm")
		if err := os.WriteFile(p+".tmp", b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			t.Fatal(err)
		}
	}
	put("a", v1)
	put("b", v1)
	cfg := ""
	for _, id := range []string{"a", "b"} {
		cfg += fmt.Sprintf("[plugins.%s]\npath = %q\nlimits = { instances = 2, queue_timeout = \"10s\" }\n", id, filepath.Join(dir, id+".wasm"))
	}
	in := servertest.Start(t, cfg, testOptions())

	var (
		mu       sync.Mutex
		failures []string
		sent     = map[string]int{}
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	// get asks plugin id for its version, counting the request.
	get := func(id string) string {
		resp, err := in.Client.Get(in.URL + "/api/" + id + "/v")
		mu.Lock()
		sent[id]++
		mu.Unlock()
		if err != nil {
			fail("%s: %v", id, err)
			return ""
		}
		defer resp.Body.Close()
		var b [16]byte
		n, _ := resp.Body.Read(b[:])
		if resp.StatusCode != 200 || (string(b[:n]) != "v1" && string(b[:n]) != "v2") {
			fail("%s: %d %q", id, resp.StatusCode, b[:n])
		}
		return string(b[:n])
	}
	ready := func(when string) {
		resp, err := in.Anon.Get(in.URL + "/.greenroom/health/v1/readiness")
		if err != nil {
			fail("readiness %s: %v", when, err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			fail("readiness %s: %d", when, resp.StatusCode)
		}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				get([2]string{"a", "b"}[i%2])
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			ready("during the reloads")
		}
	}()

	// What each plugin answers while a reload loads (before) and once it
	// is over (after).
	var before, after map[string]string
	runtime.SetReloadStep(t, func(step string) {
		if !strings.HasPrefix(step, "loaded ") {
			return
		}
		for id, want := range before {
			if got := get(id); got != want {
				fail("%s answered %q when the reload had %s, want %q (the version serving before the reload)", id, got, step, want)
			}
		}
		ready("inside the reload, " + step)
	})
	for i := range 2 {
		var outcomes map[string]string
		switch i % 2 {
		case 0: // both change
			before = map[string]string{"a": "v1", "b": "v1"}
			after = map[string]string{"a": "v2", "b": "v2"}
			outcomes = map[string]string{"a": runtime.OutcomeReloaded, "b": runtime.OutcomeReloaded}
			put("a", v2)
			put("b", v2)
		case 1: // a's new module is broken, b changes back
			before = map[string]string{"a": "v2", "b": "v2"}
			after = map[string]string{"a": "v2", "b": "v1"}
			outcomes = map[string]string{"a": runtime.OutcomeFailed, "b": runtime.OutcomeReloaded}
			put("a", "")
			put("b", v1)
		}
		res := in.Reload(t)
		for id, want := range outcomes {
			if p := res.Plugins[id]; p.Outcome != want || !p.Serving {
				t.Fatalf("reload %d: %s %+v, want %s and serving", i, id, p, want)
			}
		}
		for id, want := range after {
			if got := get(id); got != want {
				t.Fatalf("after reload %d: %s answered %q, want %q", i, id, got, want)
			}
		}
		if i%2 == 1 {
			put("a", v1) // the next reload goes from v1 again
			before = map[string]string{"a": "v2", "b": "v1"}
			after = map[string]string{"a": "v1", "b": "v1"}
			if p := in.Reload(t).Plugins["a"]; p.Outcome != runtime.OutcomeReloaded {
				t.Fatalf("reload %d, a fixed: %+v", i, p)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	runtime.SetReloadStep(t, nil)
	if len(failures) > 0 {
		t.Fatalf("%d failures, e.g. %v", len(failures), failures[:min(5, len(failures))])
	}

	// The metrics count every request, all 200, and both plugins are up.
	status, _, body := in.Get(t, "/metrics")
	if status != 200 {
		t.Fatalf("/metrics: %d %s", status, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	label := func(m *dto.Metric, name string) string {
		for _, lp := range m.Label {
			if lp.GetName() == name {
				return lp.GetValue()
			}
		}
		return ""
	}
	counted := map[string]float64{}
	for _, m := range fams["greenroom_http_requests_total"].GetMetric() {
		id := label(m, "plugin")
		if id != "a" && id != "b" {
			continue
		}
		counted[id] += m.GetCounter().GetValue()
		if s := label(m, "status"); s != "200" {
			t.Errorf("greenroom_http_requests_total{plugin=%q,status=%q} = %v: a request failed", id, s, m.GetCounter().GetValue())
		}
	}
	for _, id := range []string{"a", "b"} {
		if counted[id] != float64(sent[id]) {
			t.Errorf("greenroom_http_requests_total{plugin=%q} sums to %v, %d requests were sent", id, counted[id], sent[id])
		}
	}
	// Every request was one call into the plugin, whichever version
	// served it (the pre-warming of new versions is no call).
	for _, m := range fams["greenroom_plugin_calls_total"].GetMetric() {
		if id := label(m, "plugin"); (id == "a" || id == "b") && m.GetCounter().GetValue() != float64(sent[id]) {
			t.Errorf("greenroom_plugin_calls_total{plugin=%q} = %v, %d requests were sent", id, m.GetCounter().GetValue(), sent[id])
		}
	}
	for _, m := range fams["greenroom_plugin_up"].GetMetric() {
		if id := label(m, "plugin"); (id == "a" || id == "b") && m.GetGauge().GetValue() != 1 {
			t.Errorf("greenroom_plugin_up{plugin=%q} = %v, want 1", id, m.GetGauge().GetValue())
		}
	}
	t.Logf("%d requests to a, %d to b across 3 reloads, none failed", sent["a"], sent["b"])
}
