package scheduler

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Stats are a scheduler's figures since it started, for metrics.
type Stats struct {
	Replica string `json:"replica"`
	Enabled bool   `json:"enabled"`
	// Tasks is how many tasks are registered; Running how many runs are in
	// progress on this replica.
	Tasks   int   `json:"tasks"`
	Running int64 `json:"running"`
	// Runs counts the runs this replica ran, by outcome ("succeeded",
	// "failed"); Failures counts failed runs by kind ("error", "timeout",
	// "panic", "trap", "canceled", "lost", ...).
	Runs     map[string]int64 `json:"runs"`
	Failures map[string]int64 `json:"failures"`
	// Claims counts global due times this replica claimed; Contended
	// counts claims it did not get (another replica ran that due time,
	// or a run held the lease).
	Claims    int64 `json:"claims"`
	Contended int64 `json:"contended"`
	// Lateness is how long after its due time each scheduled run started
	// (its guest call began), as a histogram.
	Lateness Histogram `json:"lateness"`
}

// Histogram counts durations in buckets: Counts[i] is how many were at
// most Bounds[i] (and more than Bounds[i-1]); the last count is for those
// above every bound.
type Histogram struct {
	Bounds []time.Duration `json:"bounds_ns"`
	Counts []uint64        `json:"counts"`
	Sum    time.Duration   `json:"sum_ns"`
	Count  uint64          `json:"count"`
}

// LatenessBounds are the lateness histogram's buckets.
var LatenessBounds = []time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute,
}

// sampleSize is how many recent lateness samples Lateness keeps for exact
// quantiles.
const sampleSize = 1 << 16

type stats struct {
	running atomic.Int64

	mu        sync.Mutex
	runs      map[string]int64
	failures  map[string]int64
	claims    int64
	contended int64
	hist      Histogram
	samples   []time.Duration // ring of the last sampleSize latenesses
	next      int
}

func newStats() stats {
	return stats{
		runs:     map[string]int64{},
		failures: map[string]int64{},
		hist:     Histogram{Bounds: LatenessBounds, Counts: make([]uint64, len(LatenessBounds)+1)},
	}
}

func (st *stats) late(d time.Duration) {
	d = max(d, 0)
	st.mu.Lock()
	defer st.mu.Unlock()
	i, _ := slices.BinarySearch(st.hist.Bounds, d)
	st.hist.Counts[i]++
	st.hist.Sum += d
	st.hist.Count++
	if len(st.samples) < sampleSize {
		st.samples = append(st.samples, d)
	} else {
		st.samples[st.next] = d
		st.next = (st.next + 1) % sampleSize
	}
}

func (st *stats) ran(outcome, failure string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.runs[outcome]++
	if failure != "" {
		st.failures[failure]++
	}
}

func (st *stats) claimed(won, lost int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.claims += won
	st.contended += lost
}

// Stats returns the scheduler's figures.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	n := len(s.tasks)
	s.mu.Unlock()
	st := &s.stats
	st.mu.Lock()
	defer st.mu.Unlock()
	h := st.hist
	h.Counts = slices.Clone(h.Counts)
	return Stats{
		Replica: s.cfg.Replica, Enabled: s.cfg.Enabled,
		Tasks: n, Running: st.running.Load(),
		Runs: maps.Clone(st.runs), Failures: maps.Clone(st.failures),
		Claims: st.claims, Contended: st.contended,
		Lateness: h,
	}
}

// LatenessSamples returns how late the last (up to 65536) scheduled runs
// of this replica started, in no particular order, for exact quantiles.
func (s *Scheduler) LatenessSamples() []time.Duration {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	return slices.Clone(s.stats.samples)
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of ds, or 0 for none.
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s)-1) + 0.5)
	return s[min(max(i, 0), len(s)-1)]
}
