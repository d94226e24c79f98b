package server_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// scrape fetches /metrics with the admin token and parses it.
func scrape(t *testing.T, get func(string) (int, string)) map[string]*dto.MetricFamily {
	t.Helper()
	status, body := get("/metrics")
	if status != 200 {
		t.Fatalf("/metrics: %d %s", status, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value returns the value of the sample of family name whose labels
// include every pair in labels.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	for _, m := range f.Metric {
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func TestMetricsMoveWithTraffic(t *testing.T) {
	t.Parallel()
	todo := guesttest.Build(t, "plugins/todo")
	in := start(t, hostileConfig("1s", 2)+fmt.Sprintf("[plugins.todo]\npath = %q\n", todo))
	get := func(path string) (int, string) {
		status, _, body := in.Get(t, path)
		return status, body
	}
	if resp, err := in.Anon.Get(in.URL + "/metrics"); err != nil || resp.StatusCode != 401 {
		t.Errorf("/metrics without a credential: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	before := scrape(t, get)
	for i := 0; i < 5; i++ {
		get("/api/hello/echo?x=1")
	}
	// Refused requests count under their plugin when it exists.
	in.DoAnon(t, "GET", "/api/hello/echo", nil)
	in.DoAnon(t, "GET", "/api/hello/echo", nil, "Authorization", "Bearer nope")
	get("/api/hostile/loop")
	get("/api/hostile/panic")
	get("/api/hostile/alloc")
	get("/api/hostile/badptr")
	// Both instances sleep until the 1s timeout; a third call waits the
	// 200ms queue timeout and is refused.
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); get("/api/hostile/sleep") }()
	}
	for deadline := time.Now().Add(10 * time.Second); in.RT.Slot("hostile").Plugin().Stats().Busy < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the two sleeping calls never held both instances")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if status, _ := get("/api/hostile/ok"); status != 503 {
		t.Errorf("third call with both instances busy: %d, want 503", status)
	}
	wg.Wait()
	after := scrape(t, get)

	checks := []struct {
		name   string
		labels []string
		delta  float64
	}{
		{"greenroom_http_requests_total", []string{"plugin", "hello", "route", "/echo", "status", "200"}, 5},
		{"greenroom_http_request_duration_seconds", []string{"plugin", "hello", "route", "/echo"}, 5},
		{"greenroom_http_requests_total", []string{"plugin", "hostile", "status", "504"}, 1},
		// Refused before the plugin: no route.
		{"greenroom_http_requests_total", []string{"plugin", "hello", "route", "-", "status", "401"}, 2},
		{"greenroom_plugin_failures_total", []string{"plugin", "hostile", "kind", "timeout"}, 1},
		{"greenroom_plugin_failures_total", []string{"plugin", "hostile", "kind", "panic"}, 1},
		{"greenroom_plugin_failures_total", []string{"plugin", "hostile", "kind", "memory_limit"}, 1},
		{"greenroom_plugin_failures_total", []string{"plugin", "hostile", "kind", "trap"}, 1},
		{"greenroom_plugin_failures_total", []string{"plugin", "hostile", "kind", "busy"}, 1},
		{"greenroom_pool_queue_waits_total", []string{"plugin", "hostile"}, 1},
		{"greenroom_pool_rejected_total", []string{"plugin", "hostile"}, 1},
		{"greenroom_pool_instances_discarded_total", []string{"plugin", "hostile"}, 6},
		{"greenroom_hostfunc_calls_total", []string{"plugin", "hello", "function", "config_get"}, 5},
	}
	for _, c := range checks {
		b, a := value(before, c.name, c.labels...), value(after, c.name, c.labels...)
		if b < 0 {
			b = 0
		}
		if a-b < c.delta {
			t.Errorf("%s%v moved %v -> %v, want +%v", c.name, c.labels, b, a, c.delta)
		}
	}
	for _, name := range []string{"greenroom_pool_instances", "greenroom_plugin_load_seconds", "greenroom_plugin_compile_seconds", "greenroom_pool_instances_created_total", "go_goroutines"} {
		if value(after, name, "") < 0 && value(after, name) < 0 {
			t.Errorf("%s missing", name)
		}
	}
	if v := value(after, "greenroom_plugin_up", "plugin", "hello"); v != 1 {
		t.Errorf("plugin_up{hello} = %v", v)
	}
	// todo lacks the database grant here: its init's migrations call was
	// denied (and its init failed, so it is down).
	if v := value(after, "greenroom_capability_denials_total", "plugin", "todo", "capability", "database"); v < 1 {
		t.Errorf("capability_denials_total{todo,database} = %v, want >= 1", v)
	}
	if v := value(after, "greenroom_plugin_up", "plugin", "todo"); v != 0 {
		t.Errorf("plugin_up{todo} = %v, want 0", v)
	}
}

// A plugin may build a route from its config ("POST /hooks/"+secret, a
// webhook's secret path): the route label of the request metrics, which
// metrics_listen serves without a credential, shows the config's secrets
// redacted as the log does (an audit found one there as it was). Here the
// secret happens to be the name of one of hello's routes.
func TestRouteLabelRedactsSecrets(t *testing.T) {
	cfg := fmt.Sprintf("[plugins.hello]\npath = %q\n[plugins.hello.config]\nhook = \"${GR_TEST_ROUTE_SECRET}\"\n", helloWasm)
	in := servertest.Start(t, cfg, servertest.Options{CacheDir: cacheDir, Env: map[string]string{"GR_TEST_ROUTE_SECRET": "whoami"}})
	if s, _, b := in.Get(t, "/api/hello/whoami"); s != 200 {
		t.Fatalf("whoami: %d %s", s, b)
	}
	_, _, body := in.Get(t, "/metrics")
	if strings.Contains(body, `route="/whoami"`) || !strings.Contains(body, `route="/[REDACTED]"`) {
		t.Errorf("the request metrics' route labels:\n%s", grepLines(body, "greenroom_http_requests_total{"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A limit from the environment is a secret, and the metrics, which
// metrics_listen serves without a credential, showed it:
// greenroom_pool_max_instances{plugin} a limits.instances, and
// greenroom_http_{response,request}_budget_bytes the server's budgets.
// A gauge cannot show [REDACTED]: the series is left out. Limits written
// in the file are exported as before.
func TestMetricsLeaveOutLimitsFromTheEnvironment(t *testing.T) {
	cfg := fmt.Sprintf("[server]\nresponse_budget = \"${GR_RB}\"\nrequest_budget = \"${GR_QB}\"\n[plugins.secret]\npath = %[1]q\nlimits = { instances = \"${GR_I}\" }\n[plugins.plain]\npath = %[1]q\nlimits = { instances = 13 }\n", helloWasm)
	in := servertest.Start(t, cfg, servertest.Options{CacheDir: cacheDir, Env: map[string]string{"GR_RB": "300MiB", "GR_QB": "310MiB", "GR_I": "13"}})
	fams := scrape(t, func(path string) (int, string) {
		status, _, body := in.Get(t, path)
		return status, body
	})
	if v := value(fams, "greenroom_pool_max_instances", "plugin", "plain"); v != 13 {
		t.Errorf("pool_max_instances{plain} = %v, want 13", v)
	}
	if f := fams["greenroom_pool_max_instances"]; f != nil && len(f.Metric) != 1 {
		t.Errorf("pool_max_instances has %d series, want plain's alone: %v", len(f.Metric), f)
	}
	if value(fams, "greenroom_pool_instances", "plugin", "secret", "state", "idle") < 0 || value(fams, "greenroom_plugin_up", "plugin", "secret") != 1 {
		t.Error("secret's other figures are missing")
	}
	for _, name := range []string{"greenroom_http_response_budget_bytes", "greenroom_http_request_budget_bytes"} {
		if f := fams[name]; f != nil {
			t.Errorf("%s shown for a budget from the environment: %v", name, f)
		}
	}
	if value(fams, "greenroom_http_response_buffered_bytes") < 0 || value(fams, "greenroom_http_responses_refused_total") < 0 {
		t.Error("the response budget's other figures are missing")
	}
	// Written in the file, the budgets are shown.
	plain := servertest.Start(t, fmt.Sprintf("[server]\nresponse_budget = \"300MiB\"\n[plugins.plain]\npath = %q\n", helloWasm), servertest.Options{CacheDir: cacheDir})
	fams = scrape(t, func(path string) (int, string) {
		status, _, body := plain.Get(t, path)
		return status, body
	})
	if v := value(fams, "greenroom_http_response_budget_bytes"); v != 300<<20 {
		t.Errorf("response_budget_bytes of a budget in the file = %v", v)
	}
}
