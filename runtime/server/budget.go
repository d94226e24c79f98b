package server

import (
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/greenroom-dev/greenroom/runtime/auth"
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
//
// Each budget has its callers' shares (sharedBudget), which are
// byteBudgets too.
type byteBudget struct {
	limit   atomic.Int64
	used    atomic.Int64
	refused atomic.Int64
	// secret: limit is a config secret (from the environment, or raised
	// to a server.body_limit from there), which the metrics leave out.
	secret atomic.Bool

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

// takeShare is take for a caller's share, which always has room for one
// claim: holding nothing, it takes n whatever its limit (the whole
// budget, which the caller's bytes are taken from too, still bounds
// them).
func (b *byteBudget) takeShare(n int64) bool {
	for {
		used := b.used.Load()
		if used > 0 && used+n > b.limit.Load() {
			b.refused.Add(1)
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// sharedBudget is a byteBudget (all) with its callers' shares: the
// callers let in without a credential (public routes) hold anonymous
// together, and each authenticated principal a share of its own
// (principals). A share is a quarter of the budget at most, but with
// room for one body of the largest size (one), and a share holding
// nothing takes one claim whatever its size (takeShare), so that no one caller
// holding bodies it sends slowly, or answers it never reads, can take
// the whole budget and have every other caller's refused (an audit).
// A caller's bytes are taken from its share and from all.
type sharedBudget struct {
	all, anonymous byteBudget
	principals     principalShares
}

// setLimit sets the budget, and its shares' limit: a quarter, but room
// for one body of one bytes. secret says the limit is a config secret,
// oneSecret that one is (or may be) one: then so is the shares' limit.
func (sb *sharedBudget) setLimit(limit, one int64, secret, oneSecret bool) {
	sb.all.limit.Store(limit)
	sb.all.secret.Store(secret)
	sb.anonymous.secret.Store(secret || oneSecret) // the principals' shares too
	sb.anonymous.limit.Store(min(max(limit/4, one), limit))
}

// claim is a caller's claim on the budget: on principal's share, on the
// anonymous callers' share (anonymous, with no principal), or else (the
// authentication is off) on the whole budget. The caller gives it back
// with release.
func (sb *sharedBudget) claim(principal *auth.Principal, anonymous bool) budgetClaim {
	c := budgetClaim{budget: sb, share: &sb.all}
	switch {
	case principal != nil:
		// Kept by its Key, as its rate limit is: by the subject alone,
		// a JWT of a static token's subject held the token's share.
		c.lent = sb.principals.get(principal.Key(), sb.anonymous.limit.Load())
		c.share = &c.lent.byteBudget
	case anonymous:
		c.share = &sb.anonymous
	}
	return c
}

// budgetClaim is what a request body, or an answer, holds of a
// sharedBudget: held bytes, from share (when not the whole budget) and
// from the whole budget. The zero claim holds nothing.
type budgetClaim struct {
	budget *sharedBudget
	share  *byteBudget
	// lent, when not nil, is the principal's share that share is, which
	// release gives back to budget.principals.
	lent *principalShare
	held int64
	// shareFull is set when take was refused by the share, not by the
	// whole budget.
	shareFull bool
}

// take takes n more bytes from the share and the whole budget; false
// (and nothing taken) when either would pass its limit. A share that
// holds nothing takes n whatever its size (takeShare): what an answer
// holds is not bounded by limits.max_response alone (a Location into
// greenroom is held rewritten too), and one answer within it was refused
// by an empty share on every try, the budget empty.
func (c *budgetClaim) take(n int64) bool {
	all := &c.budget.all
	if c.share != all && !c.share.takeShare(n) {
		all.refused.Add(1)
		c.shareFull = true
		return false
	}
	if !all.take(n) {
		if c.share != all {
			c.share.give(n)
		}
		return false
	}
	c.held += n
	return true
}

// release gives the held bytes back, and the principal's share.
func (c *budgetClaim) release() {
	if c.budget == nil {
		return
	}
	all := &c.budget.all
	all.give(c.held)
	if c.share != all {
		c.share.give(c.held)
	}
	if c.lent != nil {
		c.budget.principals.put(c.lent)
	}
	*c = budgetClaim{}
}

// principalShares are the shares of a budget that authenticated callers
// hold, one per principal (by auth.Principal.Key: the kind of
// credential, a JWT's issuer, and the subject): a principal's share
// exists while one of its requests or answers holds it.
type principalShares struct {
	mu sync.Mutex
	m  map[string]*principalShare
	// free are shares no one holds, kept for reuse (maxFreeShares at
	// most): a principal's calls one after another would otherwise
	// allocate a share each.
	free []*principalShare
}

// maxFreeShares is the most shares principalShares keeps for reuse.
const maxFreeShares = 64

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
		if n := len(ps.free); n > 0 {
			sh, ps.free[n-1] = ps.free[n-1], nil
			ps.free = ps.free[:n-1]
			sh.key = key
		} else {
			sh = &principalShare{key: key}
		}
		ps.m[key] = sh
	}
	sh.limit.Store(limit)
	sh.refs++
	return sh
}

// put gives back a share get returned, holding nothing now; it is
// forgotten when no request holds it.
func (ps *principalShares) put(sh *principalShare) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if sh.refs--; sh.refs == 0 {
		delete(ps.m, sh.key)
		if len(ps.free) < maxFreeShares {
			sh.key = ""
			ps.free = append(ps.free, sh)
		}
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
		&budgetGauge{b: b, desc: prometheus.NewDesc("greenroom_http_"+what+"_budget_bytes",
			key+": the most "+what+" bytes held at once (left out while it comes from the environment).", nil, nil)},
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "greenroom", Subsystem: "http", Name: refused + "_total",
			Help: "Requests answered 503 server_busy because " + key + ", or the caller's share of it, was spent.",
		}, func() float64 { return float64(b.refused.Load()) }),
	}
}

// budgetGauge is the gauge of a budget's limit: none while the limit is
// a config secret (a gauge cannot show [REDACTED], and metrics_listen
// serves the metrics without a credential).
type budgetGauge struct {
	b    *byteBudget
	desc *prometheus.Desc
}

func (g *budgetGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *budgetGauge) Collect(ch chan<- prometheus.Metric) {
	if !g.b.secret.Load() {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(g.b.limit.Load()))
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
	b   []byte
	off int
	// claim holds the answer's bytes (body and head) of
	// server.response_budget until Close.
	claim budgetClaim
	// ending, when set, is the request the answer ends (requestState):
	// Close takes it out of server's in-flight set.
	ending *reqState
	server *Server
}

// maxPooledBody is the largest body buffer kept for reuse.
const maxPooledBody = 64 << 10

var bodyStreams = sync.Pool{New: func() any { return new(bodyStream) }}

// newBodyStream copies body into a stream that holds claim (taken by the
// caller) until it is closed.
func newBodyStream(body []byte, claim budgetClaim) *bodyStream {
	s := bodyStreams.Get().(*bodyStream)
	if cap(s.b) < len(body) {
		s.b = make([]byte, len(body))
	}
	s.b = s.b[:len(body)]
	copy(s.b, body)
	s.off, s.claim = 0, claim
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
	s.claim.release()
	if s.ending != nil {
		s.server.forget(s.ending)
	}
	s.off, s.ending, s.server = 0, nil, nil
	if cap(s.b) > maxPooledBody {
		s.b = nil
	}
	s.b = s.b[:0]
	bodyStreams.Put(s)
	return nil
}
