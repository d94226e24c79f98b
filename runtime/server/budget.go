package server

import (
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"sync"
	"sync/atomic"
	"time"
)

// responseBudget bounds the bytes of plugin responses the server holds at
// once (server.response_budget): a response is held from the moment its
// plugin's answer is taken until the HTTP server has written it to the
// client, or given up on the connection (server.write_timeout). Without a
// bound, clients that never read their answers could make the host hold
// limits.max_response for each of them, after the plugin's instance has
// long gone back to its pool.
type responseBudget struct {
	limit   atomic.Int64
	used    atomic.Int64
	refused atomic.Int64

	// lastWarn throttles the log line about refusals to one a second.
	lastWarn atomic.Int64
}

// take reserves n bytes; false when that would pass the limit.
func (b *responseBudget) take(n int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.limit.Load() {
			b.refused.Add(1)
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// give returns n bytes taken before.
func (b *responseBudget) give(n int64) { b.used.Add(-n) }

// collectors are the budget's metrics.
func (b *responseBudget) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "greenroom", Subsystem: "http", Name: "response_buffered_bytes",
			Help: "Bytes of plugin responses (bodies and headers) held until their clients have read them.",
		}, func() float64 { return float64(b.used.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "greenroom", Subsystem: "http", Name: "response_budget_bytes",
			Help: "server.response_budget: the most response bytes held at once.",
		}, func() float64 { return float64(b.limit.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "greenroom", Subsystem: "http", Name: "responses_refused_total",
			Help: "Plugin responses dropped (503 server_busy) because server.response_budget was spent.",
		}, func() float64 { return float64(b.refused.Load()) }),
	}
}

// warnDue reports whether a refusal may be logged now (at most one line a
// second; the refusals between are counted in the metrics).
func (b *responseBudget) warnDue() bool {
	now := time.Now().UnixNano()
	last := b.lastWarn.Load()
	return now-last >= int64(time.Second) && b.lastWarn.CompareAndSwap(last, now)
}

// bodyStream is a response body detached from the plugin instance that
// produced it: the HTTP server reads it while writing the response
// (fasthttp's SetBodyStream) and closes it once written or abandoned,
// which gives the bytes back to the budget. Streams and their small
// buffers are reused.
type bodyStream struct {
	b      []byte
	off    int
	held   int64
	budget *responseBudget
}

// maxPooledBody is the largest body buffer kept for reuse.
const maxPooledBody = 64 << 10

var bodyStreams = sync.Pool{New: func() any { return new(bodyStream) }}

// newBodyStream copies body into a stream that holds held bytes of budget
// (taken by the caller) until it is closed.
func newBodyStream(body []byte, held int64, budget *responseBudget) *bodyStream {
	s := bodyStreams.Get().(*bodyStream)
	if cap(s.b) < len(body) {
		s.b = make([]byte, len(body))
	}
	s.b = s.b[:len(body)]
	copy(s.b, body)
	s.off, s.held, s.budget = 0, held, budget
	return s
}

func (s *bodyStream) Read(p []byte) (int, error) {
	if s.off >= len(s.b) {
		return 0, io.EOF
	}
	n := copy(p, s.b[s.off:])
	s.off += n
	return n, nil
}

// WriteTo writes the rest of the body in one call: a large body goes to
// the connection straight from this buffer.
func (s *bodyStream) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(s.b[s.off:])
	s.off += n
	return int64(n), err
}

// SupportsBodyWriteTo tells fasthttp to use WriteTo.
func (s *bodyStream) SupportsBodyWriteTo() bool { return true }

// Close gives the held bytes back and puts the stream up for reuse. The
// HTTP server calls it once: after writing the body, when the write
// failed, or when the response is reset without being written.
func (s *bodyStream) Close() error {
	s.budget.give(s.held)
	s.held, s.budget, s.off = 0, nil, 0
	if cap(s.b) > maxPooledBody {
		s.b = nil
	}
	s.b = s.b[:0]
	bodyStreams.Put(s)
	return nil
}
