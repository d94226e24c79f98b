// Package metrics exports greenroom's figures in Prometheus format with
// github.com/prometheus/client_golang: HTTP requests per plugin, route and
// status with a latency histogram, instance pools, guest failures, host-function
// calls and capability denials, plugin load and compile times, dropped log
// lines, and whatever other services register (task runs).
//
// Request metrics are observed as requests pass; everything else is read
// from the runtime's cumulative counters when Prometheus scrapes, so the
// request path pays for two observations and nothing more.
package metrics

import (
	"maps"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

const namespace = "greenroom"

// Metrics holds the registry and the metrics observed per request.
type Metrics struct {
	Registry *prometheus.Registry

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NonPlugin is the plugin label of requests that reached no plugin (health,
// admin API, unknown routes).
const NonPlugin = "-"

// New registers greenroom's metrics for rt, Go's runtime and process
// metrics, and extra collectors from other services.
func New(rt *runtime.Runtime, extra ...prometheus.Collector) *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "http", Name: "requests_total",
		Help: "HTTP requests by plugin (\"-\" for greenroom's own routes), route (the plugin's ServeMux pattern without its method, \"-\" for none) and status code (its class, such as \"2xx\", for a code HTTP does not name).",
	}, []string{"plugin", "route", "status"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "http", Name: "request_duration_seconds",
		Help:    "HTTP request latency by plugin and route, from the request read to the response handed to the connection (the sending of a large body to a slow client is not included).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"plugin", "route"})
	m.Registry.MustRegister(m.requests, m.duration,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&runtimeCollector{rt: rt},
	)
	for _, c := range extra {
		m.Registry.MustRegister(c)
	}
	return m
}

// ObserveRequest records one HTTP request to route of plugin pluginID
// ("" for none).
func (m *Metrics) ObserveRequest(pluginID, route string, status int, d time.Duration) {
	if pluginID == "" {
		pluginID = NonPlugin
	}
	if route == "" {
		route = NonPlugin
	}
	m.requests.WithLabelValues(pluginID, route, statusLabel(status)).Inc()
	m.duration.WithLabelValues(pluginID, route).Observe(d.Seconds())
}

// statusLabel is the status label of a response: its code when HTTP names
// it ("200", "418"), otherwise its class ("2xx" for 299, "9xx" for 999).
// A plugin chooses its status codes: each of the 400 a response may carry
// made a series of its own on every route (an audit: some 80 000 series,
// a 6 MB scrape).
func statusLabel(status int) string {
	if http.StatusText(status) != "" {
		return strconv.Itoa(status)
	}
	if status < 100 || status > 999 {
		return "other"
	}
	return strconv.Itoa(status/100) + "xx"
}

// runtimeCollector reads the runtime's counters at scrape time.
type runtimeCollector struct {
	rt *runtime.Runtime
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
}

var (
	descInstances    = desc("pool_instances", "Instances of a plugin by state (idle, busy).", "plugin", "state")
	descMaxInstances = desc("pool_max_instances", "The pool's bound (limits.instances); none for one from the environment.", "plugin")
	descCreated      = desc("pool_instances_created_total", "Instances created (pre-warmed, on demand, replacements).", "plugin")
	descDiscarded    = desc("pool_instances_discarded_total", "Instances discarded after a failure (trap, timeout, panic, memory cap).", "plugin")
	descRetired      = desc("pool_instances_retired_total", "Instances retired after limits.max_requests or limits.retire_memory.", "plugin")
	descQueueWaits   = desc("pool_queue_waits_total", "Calls that waited for a free instance.", "plugin")
	descQueueSeconds = desc("pool_queue_wait_seconds_total", "Time calls spent waiting for a free instance.", "plugin")
	descRejected     = desc("pool_rejected_total", "Calls refused after waiting the whole queue timeout (503 plugin_busy).", "plugin")
	descCalls        = desc("plugin_calls_total", "Calls into a plugin (requests and task runs).", "plugin")
	descFailures     = desc("plugin_failures_total", "Failed calls by kind: timeout, trap, panic, memory_limit (memory-cap hits), exit, bad_response, busy, ...", "plugin", "kind")
	descHostCalls    = desc("hostfunc_calls_total", "Host-function calls by plugin, capability (\"core\" for the ungated ones) and function.", "plugin", "capability", "function")
	descDenials      = desc("capability_denials_total", "Host-function calls refused because the plugin lacks the capability or a rule refused.", "plugin", "capability")
	descLoadSeconds  = desc("plugin_load_seconds", "How long the serving version took to load (compile, instantiate, pre-warm).", "plugin")
	descCompile      = desc("plugin_compile_seconds", "How long the serving version took to compile (short when the compilation cache had it).", "plugin")
	descUp           = desc("plugin_up", "1 when the plugin serves, 0 when it failed to load, is loading or is retrying its load.", "plugin")
	descLogDropped   = desc("log_lines_dropped_total", "Plugin log lines dropped by the plugin's rate limit (limits.log_rate, log_burst).", "plugin")

	descTasks        = desc("tasks_registered", "Scheduled tasks registered by the loaded plugins.")
	descTasksRunning = desc("task_runs_running", "Task runs in progress on this replica.")
	descTaskRuns     = desc("task_runs_total", "Task runs on this replica by outcome (succeeded, failed).", "outcome")
	descTaskFailures = desc("task_failures_total", "Failed task runs on this replica by kind (error, timeout, panic, trap, canceled, lost, ...).", "kind")
	descTaskClaims   = desc("task_claims_total", "Due times of global tasks this replica claimed.")
	descTaskContend  = desc("task_claims_contended_total", "Claims of global due times this replica did not get (another replica ran it, or a run held the lease).")
	descTaskLateness = desc("task_lateness_seconds", "How long after its due time each scheduled run started.")
)

func (c *runtimeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInstances, descMaxInstances, descCreated, descDiscarded, descRetired, descQueueWaits,
		descQueueSeconds, descRejected, descCalls, descFailures, descHostCalls, descDenials, descLoadSeconds, descCompile, descUp, descLogDropped,
		descTasks, descTasksRunning, descTaskRuns, descTaskFailures, descTaskClaims, descTaskContend, descTaskLateness} {
		ch <- d
	}
}

func (c *runtimeCollector) Collect(ch chan<- prometheus.Metric) {
	c.collectScheduler(ch)
	fns := hostfuncs.Functions()
	for _, id := range c.rt.IDs() {
		s := c.rt.Slot(id)
		if s == nil {
			continue
		}
		k := s.Counters()
		counter := func(d *prometheus.Desc, v int64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{id}, labels...)...)
		}
		gauge := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{id}, labels...)...)
		}
		counter(descCreated, k.Created.Load())
		counter(descDiscarded, k.Discarded.Load())
		counter(descRetired, k.Retired.Load())
		counter(descQueueWaits, k.QueueWaits.Load())
		ch <- prometheus.MustNewConstMetric(descQueueSeconds, prometheus.CounterValue, time.Duration(k.QueueNanos.Load()).Seconds(), id)
		counter(descRejected, k.Rejected.Load())
		counter(descCalls, k.Calls.Load())
		for _, f := range plugin.Failures() {
			if f == plugin.FailClosed {
				continue // retried on the new version, never seen by a client
			}
			counter(descFailures, k.Failed(f), f.String())
		}
		hc := s.HostCounters()
		denied := map[string]int64{}
		for i, f := range fns {
			capability := f.Capability
			if capability == "" {
				capability = "core"
			}
			calls, d := hc.Calls(i)
			counter(descHostCalls, calls, capability, f.Name)
			denied[capability] += d
		}
		for capability, d := range denied {
			counter(descDenials, d, capability)
		}
		counter(descLogDropped, c.rt.DroppedLogLines(id))
		p, pc := s.Serving()
		if p == nil {
			gauge(descUp, 0)
			continue
		}
		gauge(descUp, 1)
		st := p.Stats()
		gauge(descInstances, float64(st.Idle), "idle")
		gauge(descInstances, float64(st.Busy), "busy")
		// Not a limits.instances from the environment: a gauge cannot
		// show [REDACTED], and metrics_listen serves the metrics without
		// a credential.
		if !pc.LimitSecret("instances") {
			gauge(descMaxInstances, float64(st.Max))
		}
		gauge(descLoadSeconds, p.LoadTime.Seconds())
		gauge(descCompile, p.CompileTime.Seconds())
	}
}

func (c *runtimeCollector) collectScheduler(ch chan<- prometheus.Metric) {
	sched := c.rt.Scheduler()
	if sched == nil {
		return
	}
	st := sched.Stats()
	ch <- prometheus.MustNewConstMetric(descTasks, prometheus.GaugeValue, float64(st.Tasks))
	ch <- prometheus.MustNewConstMetric(descTasksRunning, prometheus.GaugeValue, float64(st.Running))
	for _, outcome := range []string{"succeeded", "failed"} {
		ch <- prometheus.MustNewConstMetric(descTaskRuns, prometheus.CounterValue, float64(st.Runs[outcome]), outcome)
	}
	// Every kind a run can fail with is there from the start, at 0, so
	// that a scrape before any failure lists the metric and a rate over
	// the first failure is right; a kind not known here still shows once
	// it happens.
	failures := map[string]int64{"error": 0, "timeout": 0, "canceled": 0, "lost": 0, "unavailable": 0}
	for _, f := range plugin.Failures() {
		if f != plugin.FailClosed {
			failures[f.String()] = 0
		}
	}
	maps.Copy(failures, st.Failures)
	for kind, n := range failures {
		ch <- prometheus.MustNewConstMetric(descTaskFailures, prometheus.CounterValue, float64(n), kind)
	}
	ch <- prometheus.MustNewConstMetric(descTaskClaims, prometheus.CounterValue, float64(st.Claims))
	ch <- prometheus.MustNewConstMetric(descTaskContend, prometheus.CounterValue, float64(st.Contended))
	h := st.Lateness
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		if i < len(h.Counts) {
			cum += h.Counts[i]
		}
		buckets[b.Seconds()] = cum
	}
	ch <- prometheus.MustNewConstHistogram(descTaskLateness, h.Count, h.Sum.Seconds(), buckets)
}
