package server

import (
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// byteBudget bounds the bytes of HTTP bodies the server holds at once.
//
// Responses (server.response_budget): an answer is held from the moment
// its plugin's answer is taken until the HTTP server has written it to
// the client, or given up on the connection (server.write_timeout).
// Without a bound, clients that never read their answers could make the
// host hold limits.max_response for each of them, after the plugin's
// instance has long gone back to its pool.
//
// Requests (server.request_budget): a plugin's request body is held from
// its first byte read until the plugin's call ends, also while the call
// waits for an instance. Without a bound, authenticated clients sending
// bodies slowly could make the host hold server.body_limit for each
// connection.
type byteBudget struct {
	limit   atomic.Int64
	used    atomic.Int64
	refused atomic.Int64

	// lastWarn throttles the log line about refusals to one a second.
	lastWarn atomic.Int64
}

// take reserves n bytes; false when that would pass the limit.
func (b *byteBudget) take(n int64) bool {
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

// principalShares are the shares of the request budget that
// authenticated callers hold, one per principal (by auth.Principal.Key:
// the kind of credential, a JWT's issuer, and the subject), each a
// quarter of the budget at most, as the anonymous callers' share: a
// principal's share exists while one of its requests holds it.
type principalShares struct {
	mu sync.Mutex
	m  map[string]*principalShare
}

type principalShare struct {
	byteBudget
	key  string
	refs int
}

// get returns the share of the principal whose Key is key, with limit as
// its limit, for a request that gives it back with put.
func (ps *principalShares) get(key string, limit int64) *principalShare {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.m == nil {
		ps.m = map[string]*principalShare{}
	}
	sh := ps.m[key]
	if sh == nil {
		sh = &principalShare{key: key}
		ps.m[key] = sh
	}
	sh.limit.Store(limit)
	sh.refs++
	return sh
}

// put gives back a share get returned; it is forgotten when no request
// holds it.
func (ps *principalShares) put(sh *principalShare) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if sh.refs--; sh.refs == 0 {
		delete(ps.m, sh.key)
	}
}

// give returns n bytes taken before.
func (b *byteBudget) give(n int64) { b.used.Add(-n) }

// collectors are the budget's metrics: greenroom_http_<what>_buffered_bytes,
// greenroom_http_<what>_budget_bytes and greenroom_http_<refused>_total.
func (b *byteBudget) collectors(what, refused, key string) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "greenroom", Subsystem: "http", Name: what + "_buffered_bytes",
			Help: "Bytes of " + what + " bodies (with a response's headers) held now, under " + key + ".",
		}, func() float64 { return float64(b.used.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "greenroom", Subsystem: "http", Name: what + "_budget_bytes",
			Help: key + ": the most " + what + " bytes held at once.",
		}, func() float64 { return float64(b.limit.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "greenroom", Subsystem: "http", Name: refused + "_total",
			Help: "Requests answered 503 server_busy because " + key + " was spent.",
		}, func() float64 { return float64(b.refused.Load()) }),
	}
}

// warnDue reports whether a refusal may be logged now (at most one line a
// second; the refusals between are counted in the metrics).
func (b *byteBudget) warnDue() bool {
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
	budget *byteBudget
	// ending, when set, is the request the answer ends (requestState):
	// Close takes it out of server's in-flight set.
	ending *reqState
	server *Server
}

// maxPooledBody is the largest body buffer kept for reuse.
const maxPooledBody = 64 << 10

var bodyStreams = sync.Pool{New: func() any { return new(bodyStream) }}

// newBodyStream copies body into a stream that holds held bytes of budget
// (taken by the caller) until it is closed.
func newBodyStream(body []byte, held int64, budget *byteBudget) *bodyStream {
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
	if s.ending != nil {
		s.server.forget(s.ending)
	}
	s.held, s.budget, s.off, s.ending, s.server = 0, nil, 0, nil, nil
	if cap(s.b) > maxPooledBody {
		s.b = nil
	}
	s.b = s.b[:0]
	bodyStreams.Put(s)
	return nil
}
