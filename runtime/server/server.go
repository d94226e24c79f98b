// Package server is greenroom's HTTP front: Fiber serving plugin routes at
// /api/<plugin>/..., health and admin endpoints under /.greenroom/, with
// consistent JSON errors, request ids and an access log.
package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"github.com/valyala/fasthttp"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/auth"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/logging"
	"github.com/greenroom-dev/greenroom/runtime/metrics"
)

// Server serves one Runtime over HTTP.
type Server struct {
	rt  *runtime.Runtime
	cfg *config.Config
	log *logrus.Logger
	app *fiber.App
	// authn verifies credentials; a reload swaps it, one at a time
	// (authnMu).
	authn   atomic.Pointer[auth.Authenticator]
	authnMu sync.Mutex
	// authnFor is the config authn was built from (under authnMu).
	authnFor *config.Config
	// keysOwner, when set, owns the JWKS keys authn borrows (stored
	// under authnMu): authn is a reload's interim (auth.Authenticator.
	// Interim) left in force when a newer reload superseded that reload
	// before the new jwks_url's first fetch answered. The next reload
	// starts from it, and closes it; so does Shutdown, which does not
	// wait for authnMu (a reload may hold it while it fetches).
	keysOwner atomic.Pointer[auth.Authenticator]
	// access is the config whose [auth] and public_routes decide access
	// (authConfig): authnFor, stored before authn at a reload. During
	// the start-up load it is newer than the runtime's config, which a
	// reload changes only once that load has ended.
	access atomic.Pointer[config.Config]
	// proxies is server.trusted_proxies of the config in force (nil when
	// empty): a reload stores it with access.
	proxies atomic.Pointer[proxySet]
	// reloader re-reads the config and reloads; set by the command that
	// knows the config files.
	reloader atomic.Pointer[Reloader]
	metrics  *metrics.Metrics
	// routeLabels turns the routes plugins' responses name into labels.
	routeLabels routeLabels

	// base is the parent context of every plugin call; cancelling it
	// interrupts them all (hard shutdown).
	base     context.Context
	cancel   context.CancelFunc
	draining atomic.Bool
	// refusing is set when Shutdown begins: requests other than the
	// health endpoints get 503 while those admitted before finish.
	refusing atomic.Bool
	// admitted counts the requests being served that were not refused.
	admitted atomic.Int64
	// conns is the main listener's open connections (Serve).
	conns connSet

	// responses bounds the plugin responses held until their clients
	// have read them (server.response_budget), requests the plugins'
	// request bodies held until their calls end (server.request_budget),
	// each with its callers' shares (see sharedBudget).
	responses, requests sharedBudget

	// inflight holds the requests being served, so that a shutdown cut
	// short can say which ones it cut off.
	inflightMu sync.Mutex
	inflight   map[*reqState]struct{}
}

// New builds the HTTP app for rt. It serves nothing until Serve. Extra
// Prometheus collectors (other services' figures) are exported with
// greenroom's own at /metrics.
func New(rt *runtime.Runtime, log *logrus.Logger, collectors ...prometheus.Collector) *Server {
	cfg := rt.Config()
	s := &Server{rt: rt, cfg: cfg, log: log, inflight: map[*reqState]struct{}{}}
	budgets := append(s.responses.all.collectors("response", "responses_refused", "server.response_budget"),
		s.requests.all.collectors("request", "request_bodies_refused", "server.request_budget")...)
	s.metrics = metrics.New(rt, append(budgets, collectors...)...)
	s.access.Store(cfg)
	s.proxies.Store(newProxySet(cfg))
	s.authn.Store(newAuthenticator(cfg, log))
	s.authnFor = cfg
	s.setBudgets(cfg)
	// A reload's credentials apply before any plugin moves to its new
	// version: the calls it moves are let in again under them.
	rt.OnReload(s.Reload)
	s.base, s.cancel = context.WithCancel(context.Background())
	s.app = fiber.New(fiber.Config{
		AppName:               "greenroom",
		BodyLimit:             int(min(cfg.Server.BodyLimit, 1<<31-1)),
		ReadBufferSize:        int(cfg.Server.HeaderLimit),
		Concurrency:           cfg.Server.MaxConnections,
		ReadTimeout:           cfg.Server.ReadTimeout.D(),
		WriteTimeout:          cfg.Server.WriteTimeout.D(),
		IdleTimeout:           cfg.Server.IdleTimeout.D(),
		DisableStartupMessage: true,
		ErrorHandler:          s.errorHandler,
		// Plugins see the path as the client sent it; routing below uses
		// the raw path too, so /api/<id> is decided on what was sent.
		UnescapePath: false,
		// Routes match in the case they are written: /api/, /.greenroom/
		// and /metrics, not /API/ (Fiber's default matches any case,
		// which served a public route under spellings public_routes does
		// not list, and the admin API under /.GREENROOM/). Trailing
		// slashes are still ignored by the routes (StrictRouting off:
		// /metrics/ is /metrics, behind the same check); a plugin's
		// route is decided on the path as sent, slash included.
		CaseSensitive: true,
		// A multipart body reaches the plugin as sent: parsed first,
		// fasthttp hands on its own re-encoding of the form (parts
		// reordered), and writes large file parts to temporary files
		// before anyone is authenticated.
		DisablePreParseMultipartForm: true,
		// Bodies are read by the handler that needs one (a plugin's
		// route, after authentication), not by fasthttp before any
		// handler: 300 unauthenticated connections each sending most
		// of a 4 MiB body held 1.3 GB. fasthttp reads at most 8 KiB of
		// a body ahead; server.body_limit is enforced by greenroom
		// (requestState, readBody).
		StreamRequestBody: true,
	})
	// Keep-alive clients are told to close when the server shuts down, so
	// that they reconnect (to another replica) instead of reusing a
	// connection that is about to go away.
	s.app.Server().CloseOnShutdown = true
	s.app.Server().Logger = httpLogger{log, cfg.Server.MaxConnections}
	s.app.Server().SecureErrorLogMessage = true // and they are dropped (httpLogger)
	s.app.Server().ErrorHandler = s.connErrors(s.app.Server().ErrorHandler)
	s.app.Server().ConnState = connState
	s.app.Server().HeaderReceived = bodyCheck(int(min(cfg.Server.BodyLimit, 1<<31-1)))
	s.app.Server().Handler = s.guard(s.app.Server().Handler)
	s.routes()
	return s
}

// App exposes the Fiber app, for tests.
func (s *Server) App() *fiber.App { return s.app }

func (s *Server) routes() {
	s.app.Use(s.requestState)
	if len(s.cfg.Server.CORS.Origins) > 0 {
		s.app.Use(s.corsHandler())
	}
	s.app.Use(s.identify)
	if s.cfg.Server.RateLimit.PerSecond() > 0 {
		s.app.Use(s.rateLimiter())
	}
	health := s.app.Group("/.greenroom/health/v1")
	health.Get("/liveness", s.liveness)
	health.Get("/readiness", s.readiness)
	// Anything else under the health prefix is answered here, without a
	// credential like the endpoints themselves (it would otherwise reach
	// the admin API's check and get 401 for a credential it never read).
	s.app.Use(healthPrefix, func(c *fiber.Ctx) error {
		if !isHealth(c) { // Fiber's prefix match also takes /.greenroom/healthz
			return c.Next()
		}
		// Routed as the endpoints are: in their case, trailing slashes
		// ignored.
		if p := strings.TrimRight(c.Path(), "/"); p == "/.greenroom/health/v1/liveness" || p == "/.greenroom/health/v1/readiness" {
			return methodNotAllowed(fiber.MethodGet)(c)
		}
		return apiErr(fiber.StatusNotFound, "not_found", "no route for "+c.Method()+" "+c.Path())
	})
	admin := s.app.Group("/.greenroom", s.requireAdmin, s.redactAnswer)
	admin.Get("/plugins/v1/", s.listPlugins)
	admin.All("/plugins/v1/", methodNotAllowed(fiber.MethodGet))
	admin.Post("/plugins/v1/reload", s.reload)
	admin.All("/plugins/v1/reload", methodNotAllowed(fiber.MethodPost))
	s.schedulerRoutes(admin)
	metrics := adaptor.HTTPHandler(s.metricsHandler())
	s.app.Get("/metrics", s.requireAdmin, func(c *fiber.Ctx) error {
		// The adaptor would read a body whole, unbounded; none is used.
		c.Request().ResetBody()
		return metrics(c)
	})
	s.app.All("/metrics", s.requireAdmin, methodNotAllowed(fiber.MethodGet))
	s.app.All("/api/*", s.handlePlugin)
	s.app.Use(func(c *fiber.Ctx) error {
		return apiErr(fiber.StatusNotFound, "not_found", "no route for "+c.Method()+" "+c.Path())
	})
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.app.Listener(lingerListener{Listener: ln, conns: &s.conns, bufSize: s.app.Server().ReadBufferSize})
}

// Drain turns readiness to 503 while the server keeps serving: the first
// step of a graceful shutdown.
func (s *Server) Drain() { s.draining.Store(true) }

// Shutdown stops taking requests and waits for those in flight until ctx
// ends; then it interrupts the plugin calls still running. When ctx ended
// first, the error names the requests it cut off.
//
// A request whose head had arrived when the shutdown began is in flight,
// also while its body is still arriving.
//
// While requests are in flight the listener stays open: a new request gets
// 503 shutting_down (the health endpoints answer, readiness 503), so that
// what a client or a probe sees during the drain is an answer rather than
// a refused connection. Once none is left, or ctx ends, the listener
// closes, idle connections are closed and open ones finish; once none is
// left, a connection sending the head of a request, which will not be
// served, is closed (connSet.expireReads) rather than waited for.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	// A request whose head has arrived, its body still arriving, is in
	// flight too: it is served, and waited for.
	s.conns.receiving()
	s.refusing.Store(true)
	for (s.admitted.Load() > 0 || s.conns.early()) && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	if ctx.Err() == nil {
		// Nothing admitted is left: a connection still sending a
		// request's head has no request to wait for.
		stop := make(chan struct{})
		defer close(stop)
		var graceEnd time.Time
		if d, ok := ctx.Deadline(); ok {
			// fasthttp looks for the connections' end every 100 ms.
			graceEnd = d.Add(-300 * time.Millisecond)
		}
		go s.conns.expireReads(stop, graceEnd)
	}
	err := s.app.ShutdownWithContext(ctx)
	if err != nil {
		if cut := append(s.inFlight(), s.conns.stillReceiving()...); len(cut) > 0 {
			err = fmt.Errorf("%w; cut off: %s", err, strings.Join(cut, ", "))
			// A request whose body was still arriving never reached
			// the handler: its read is ended, so that it is answered
			// 408 and logged (the process exited with its read
			// pending, and it had no line).
			s.conns.endReceiving(200 * time.Millisecond)
		} else if ctx.Err() != nil {
			// The deadline passed with no request in flight, none
			// arriving and no answer being sent: what was left were
			// connections closing (the HTTP server looks for their end
			// every 100 ms), no work cut off. A short shutdown_timeout
			// with nothing to finish exited 1.
			err = nil
		}
	}
	s.cancel()
	if o := s.keysOwner.Load(); o != nil {
		o.Close()
	}
	s.authn.Load().Close()
	return err
}

// Reloader re-reads the configuration and applies it; POST
// /.greenroom/plugins/v1/reload calls it.
type Reloader func(context.Context) (*runtime.ReloadResult, error)

// SetReloader installs the function behind the reload endpoint.
func (s *Server) SetReloader(f Reloader) { s.reloader.Store(&f) }

// Reload applies what of cfg the server can change while running: the
// credentials (static tokens, JWT settings, dangerously_disable, and the
// public_routes a route must be listed in to be public) and
// server.response_budget and
// request_budget. The rest of cfg is applied by
// the runtime's Reload; listener settings need a restart. The runtime's
// Reload calls it (Runtime.OnReload) before it swaps any plugin; calling it
// again with the config already applied does nothing.
//
// A cfg whose [auth.jwt] names another JWKS URL waits for that URL's first
// fetch (up to 10 s), its interim deciding meanwhile; when ctx (the
// reload's) ends first, the fetch is abandoned and the interim stays in
// force until the next reload, which a newer reload superseding this one
// is: its credentials apply at its start, not once this fetch answered.
//
// It returns warnings for the reload's result: cfg's [auth.jwt] names a
// JWKS no fetch of which has succeeded (every JWT refused until one does,
// which the reload's answer says rather than the log alone).
func (s *Server) Reload(ctx context.Context, cfg *config.Config) (warnings []string) {
	s.authnMu.Lock()
	defer s.authnMu.Unlock()
	defer func() {
		if cfg.Auth.JWT != nil && !s.authn.Load().JWKSFetched() {
			warnings = []string{"auth.jwt.jwks_url: no fetch of the JWKS has succeeded yet (the log says why): every JWT is refused until one does; static tokens are not affected"}
		}
	}()
	if cfg == s.authnFor {
		return nil
	}
	s.authnFor = cfg
	s.setBudgets(cfg)
	s.access.Store(cfg)
	s.proxies.Store(newProxySet(cfg))
	// The keys' owner, when authn borrows them from it, is what the
	// new credentials are built from (its keys kept, or borrowed again).
	old := s.authn.Load()
	if o := s.keysOwner.Load(); o != nil {
		old = o
	}
	if interim := old.Interim(&cfg.Auth, auth.Options{Log: s.log}); interim != nil {
		s.authn.Store(interim)
	}
	n, ok := renewAuthenticator(ctx, old, cfg, s.log)
	if !ok {
		// Abandoned: the interim decides, with old's keys.
		s.keysOwner.Store(old)
		return nil
	}
	s.authn.Store(n)
	s.keysOwner.Store(nil)
	old.Close()
	return nil
}

// MetricsHandler serves the Prometheus exposition of the server's metrics
// for [server] metrics_listen, without authentication (bind that address
// to a network only Prometheus reaches), as the main listener serves
// requests: X-Request-Id honoured when valid, generated otherwise, and
// returned; one access log line per request (field listener =
// "metrics_listen"). The main listener serves the same at /metrics behind
// admin authentication.
func (s *Server) MetricsHandler() http.Handler {
	h := s.metricsHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestIDFrom(r.Header.Get("X-Request-Id"))
		w.Header().Set("X-Request-Id", id)
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		// Only /metrics, by GET or HEAD, as on the main listener; the
		// rest answers as the main listener's errors do, logged too (a
		// method greenroom does not implement 501, whatever the path).
		fail := func(status int, code, msg string) {
			sw.Header().Set("Content-Type", "application/json")
			sw.WriteHeader(status)
			json.NewEncoder(sw).Encode(map[string]string{"error": msg, "code": code, "request_id": id})
		}
		switch {
		case !knownMethod([]byte(r.Method)):
			e := notImplemented(shownMethod([]byte(r.Method)))
			fail(e.Status, e.Code, e.Message)
		case r.URL.EscapedPath() != "/metrics":
			// The path as sent, as the main listener routes it:
			// /%6detrics decodes to /metrics but is no route there.
			fail(http.StatusNotFound, "not_found", "no route for "+r.Method+" "+r.URL.EscapedPath()+" (metrics_listen serves GET /metrics)")
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			sw.Header().Set("Allow", "GET, HEAD")
			fail(http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on /metrics: use GET")
		default:
			h.ServeHTTP(sw, r)
		}
		if !s.rt.Config().Log.AccessLog {
			return
		}
		took := time.Since(start)
		s.log.WithFields(logrus.Fields{
			"listener":    "metrics_listen",
			"method":      r.Method,
			"path":        s.loggedHTTPPath(r),
			"status":      sw.status,
			"bytes":       sw.bytes,
			"duration":    took.Round(time.Microsecond).String(),
			"duration_ms": float64(took.Microseconds()) / 1000,
			"request_id":  id,
			// The peer's: trusted_proxies is the main listener's
			// (Prometheus scrapes this one directly).
			"ip": remoteIP(r.RemoteAddr),
		}).Info("request")
	})
}

// remoteIP is the address of a net/http request's RemoteAddr ("ip:port"),
// IPv4 unmapped, as the main listener's lines give it; "0.0.0.0" when it
// is not one.
func remoteIP(remote string) string {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return "0.0.0.0"
	}
	return addrIP(netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()))
}

// MetricsServer is the HTTP server of [server] metrics_listen, serving
// MetricsHandler with the main listener's bounds: a request's head and
// body within server.read_timeout (its head within 10 s at most), its
// answer within write_timeout, a kept-alive connection closed after
// idle_timeout (read_timeout's when 0), headers within header_limit, and
// at most server.max_connections connections open at once (one past
// them is closed at once). Without them an idle connection, or one that
// never read its answer, stayed open for ever: anyone who could reach
// the address could hold open connections until the process ran out of
// file descriptors, and the main listener with it.
func (s *Server) MetricsServer(ln net.Listener) (*http.Server, net.Listener) {
	c := s.cfg.Server
	idle := c.IdleTimeout.D()
	if idle <= 0 {
		idle = c.ReadTimeout.D()
	}
	srv := &http.Server{
		Handler:           s.MetricsHandler(),
		ReadHeaderTimeout: min(10*time.Second, c.ReadTimeout.D()),
		ReadTimeout:       c.ReadTimeout.D(),
		WriteTimeout:      c.WriteTimeout.D(),
		IdleTimeout:       idle,
		MaxHeaderBytes:    int(c.HeaderLimit),
		// "OPTIONS *" is answered as the main listener answers it (404,
		// logged), not by net/http itself.
		DisableGeneralOptionsHandler: true,
	}
	return srv, &capListener{Listener: ln, max: int64(max(c.MaxConnections, 1))}
}

// capListener closes each connection it accepts while max are open.
type capListener struct {
	net.Listener
	max  int64
	open atomic.Int64
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			conn.Close()
			continue
		}
		return &cappedConn{Conn: conn, l: l}, nil
	}
}

// cappedConn gives its place back to its capListener once closed.
type cappedConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

func (c *cappedConn) Close() error {
	// Given back first: a client that saw the close may connect again
	// at once.
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// metricsHandler is the Prometheus exposition of the metrics.
func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{ErrorLog: s.log})
}

// statusWriter remembers the status and counts the body bytes of a
// net/http answer, for its access log line.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// inFlight describes the requests being served, oldest first. It reads
// them under the lock: a request's strings point into its buffers, which
// are reused once it leaves the set.
func (s *Server) inFlight() []string {
	s.inflightMu.Lock()
	defer s.inflightMu.Unlock()
	all := make([]*reqState, 0, len(s.inflight))
	for rs := range s.inflight {
		all = append(all, rs)
	}
	slices.SortFunc(all, func(a, b *reqState) int { return a.start.Compare(b.start) })
	out := make([]string, len(all))
	for i, rs := range all {
		sending := ""
		if rs.sending {
			sending = ", sending its answer"
		}
		out[i] = fmt.Sprintf("%s %s (request %s, running %s%s)", rs.method, s.inFlightPath(rs.path), rs.id, time.Since(rs.start).Round(time.Millisecond), sending)
	}
	return out
}

// inFlightPath is the path of a request in flight as a shutdown names it,
// which the log then shows: as in the access log (loggedPath: a config
// secret or a JWT a needless percent-encoding hides, decoded and
// [REDACTED]). The request's own Authorization header is not at hand any
// more, but a request admitted this far carried a valid credential, a
// JWT or a configured token, which the log's redaction takes out.
//
// A decoded path has its control characters escaped again (%1B, %0A):
// the shutdown's error is printed to stderr as it is, where they wrote
// terminal escapes or forged lines.
func (s *Server) inFlightPath(p string) string {
	return escapeControls(redactJWTs(s.pathForLog([]byte(p), nil)))
}

// escapeControls percent-encodes the ASCII control characters of p.
func escapeControls(p string) string {
	if !strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// reqState is what the server knows about a request as it passes through.
type reqState struct {
	id      string
	plugin  string
	subject string
	// credential names the credential subject came with, as the audit
	// log does ("token:<name>" or "jwt"): a JWT's subject may be a
	// static token's too.
	credential string
	// route is the route label of the plugin's answer (routeLabels), ""
	// when the plugin wrote none.
	route string
	start time.Time
	// method and path are set before the request is registered in
	// flight and change only under inflightMu, copied when its answer
	// outlives its handler (with sending set), so a shutdown may read them.
	method, path string
	sending      bool
	// logged is set by whoever writes the request's access log line,
	// once: its handler (requestState), or the shutdown for a request
	// whose handler has not returned (LogCutOff). letIn is set once the
	// request was let in to its plugin, which letPlugin, letSubject and
	// letCredential then name for that line (the handler goes on using
	// plugin and subject: a reload may let the call in again).
	logged                               atomic.Bool
	letIn                                atomic.Bool
	letPlugin, letSubject, letCredential string
	// principal is the verified caller, nil when the request carried no
	// valid credential; authErr says why not.
	principal *auth.Principal
	authErr   error
	// authn is the authenticator that decided principal and authErr:
	// the one in force when the request was let in (handlePlugin lets it
	// in again when a reload replaced it before the plugin ran it).
	authn *auth.Authenticator
	// fwd.client is the client's address, as the access and audit logs
	// and the anonymous rate limit take it (ip): the peer's, or the one
	// a trusted proxy's X-Forwarded-For or Forwarded names (viaProxy is
	// then set: it and its port are the guest's RemoteAddr, the
	// forwarding headers reach the guest, and the one it was read from
	// only as fwd's trusted chain). Kept as a value, formatted only where
	// a line or a rate-limit key needs it: with the access log off most
	// requests never do.
	fwd      origin
	viaProxy bool
}

// ip is rs.fwd.client's address as text: "0.0.0.0" when it is not known (a
// connection that is not TCP), as fasthttp's RemoteIP gives it.
func (rs *reqState) ip() string { return addrIP(rs.fwd.client) }

func addrIP(a netip.AddrPort) string {
	if !a.IsValid() {
		return "0.0.0.0"
	}
	return a.Addr().String()
}

const stateKey = "greenroom.request"

func stateOf(c *fiber.Ctx) *reqState {
	rs, _ := c.Locals(stateKey).(*reqState)
	return rs
}

// requestState gives every request an id (X-Request-Id when the client sent
// a valid one), returns it, and writes the access log line.
func (s *Server) requestState(c *fiber.Ctx) error {
	// early: the request's head had arrived when a shutdown began (its
	// body was still arriving): it is served, not refused.
	early := false
	if lc, ok := c.Context().Conn().(*lingerConn); ok {
		lc.busy.Add(1)
		defer lc.busy.Add(-1)
		early = lc.early.Swap(false)
	}
	rs := &reqState{start: time.Now(), id: requestIDFrom(c.Get(fiber.HeaderXRequestID))}
	c.Locals(stateKey, rs)
	c.Set(fiber.HeaderXRequestID, rs.id)
	rs.method, rs.path = c.Method(), c.Path()
	rs.fwd, rs.viaProxy = s.proxies.Load().client(c.Context())
	s.inflightMu.Lock()
	s.inflight[rs] = struct{}{}
	s.inflightMu.Unlock()
	defer func() {
		// A plugin's answer is written after this returns: the request
		// stays in flight, for a shutdown to wait for and name, until
		// its stream is closed (written, or given up). Its strings point
		// into Fiber's context, which the next request reuses once this
		// returns: they are copied.
		if bs, ok := c.Response().BodyStream().(*bodyStream); ok && bs.ending == nil {
			s.inflightMu.Lock()
			rs.method, rs.path, rs.sending = methodName(rs.method), strings.Clone(rs.path), true
			s.inflightMu.Unlock()
			bs.ending, bs.server = rs, s
			return
		}
		s.forget(rs)
	}()
	var err error
	if s.refusing.Load() && !isHealth(c) && !early {
		// Counted and logged under its plugin, as a refused request to
		// one is; the answer, before any credential was checked, does
		// not name it.
		rs.plugin = s.pluginOf(c)
		e := apiErr(fiber.StatusServiceUnavailable, "shutting_down", "the server is shutting down; retry (on another replica)")
		e.RetryAfter = 1
		err = e
	} else if len(c.Request().Header.Peek(bodyTooLargeMark)) > 0 {
		// Answered from the head (see bodyCheck): the body is not read.
		// Counted and logged under its plugin, as above.
		rs.plugin = s.pluginOf(c)
		err = s.bodyTooLarge(c)
	} else {
		s.admitted.Add(1)
		err = s.next(c, rs)
		s.admitted.Add(-1)
	}
	if err != nil {
		if herr := s.errorHandler(c, err); herr != nil {
			return herr
		}
	}
	if s.draining.Load() {
		// Also during shutdown_delay, before the listener closes.
		c.Context().SetConnectionClose()
		s.dropBody(c)
	}
	if rs.logged.CompareAndSwap(false, true) {
		s.record(c.Context(), c.Method(), rs.id, rs.fwd.client, rs.plugin, rs.route, rs.subject, rs.credential, time.Since(rs.start))
	}
	return nil
}

// LogCutOff writes the access log line, and counts in the metrics, each
// request still in flight whose handler has not written its own: one
// whose plugin call the shutdown's deadline cut off and that did not come
// back when interrupted (limits.interruptible = false, a guest looping),
// whose handler never returns; the process exits without it, and the
// request had no line. Its status is 503, as that of a call the deadline
// interrupted (plugin_unavailable), its duration up to now, its path as
// the shutdown names it (inFlightPath). An answer being sent was logged
// when it was handed to the connection. Called once the runtime has
// closed, its calls interrupted and given their second to come back: a
// handler that returns after still writes no second line.
func (s *Server) LogCutOff() {
	type cutReq struct {
		rs           *reqState
		method, path string
	}
	s.inflightMu.Lock()
	cut := make([]cutReq, 0, len(s.inflight))
	for rs := range s.inflight {
		if !rs.sending {
			cut = append(cut, cutReq{rs, rs.method, rs.path})
		}
	}
	s.inflightMu.Unlock()
	slices.SortFunc(cut, func(a, b cutReq) int { return a.rs.start.Compare(b.rs.start) })
	for _, c := range cut {
		rs := c.rs
		if !rs.logged.CompareAndSwap(false, true) {
			continue
		}
		var plugin, principal, credential string
		if rs.letIn.Load() {
			plugin, principal, credential = rs.letPlugin, rs.letSubject, rs.letCredential
		}
		took := time.Since(rs.start)
		s.metrics.ObserveRequest(plugin, "", fiber.StatusServiceUnavailable, took)
		if !s.rt.Config().Log.AccessLog {
			continue
		}
		f := logrus.Fields{
			"method":      c.method,
			"path":        s.inFlightPath(c.path),
			"status":      fiber.StatusServiceUnavailable,
			"bytes":       0,
			"duration":    took.Round(time.Microsecond).String(),
			"duration_ms": float64(took.Microseconds()) / 1000,
			"request_id":  rs.id,
			"ip":          rs.ip(),
		}
		if plugin != "" {
			f["plugin"] = plugin
		}
		if principal != "" {
			f["principal"], f["credential"] = principal, credential
		}
		s.log.WithFields(f).Info("request")
	}
}

// pluginOf returns the id of the plugin c's path names, when there is
// such a plugin, else "".
func (s *Server) pluginOf(c *fiber.Ctx) string {
	if id, _ := splitPluginPath(c.Request().URI().PathOriginal()); s.rt.Slot(id) != nil {
		return id
	}
	return ""
}

// methodName is m as a string of its own: a constant for the common
// methods, else a copy.
func methodName(m string) string {
	for _, known := range []string{fiber.MethodGet, fiber.MethodPost, fiber.MethodPut, fiber.MethodPatch, fiber.MethodDelete, fiber.MethodHead, fiber.MethodOptions} {
		if m == known {
			return known
		}
	}
	return strings.Clone(m)
}

// forget takes a request out of the in-flight set.
func (s *Server) forget(rs *reqState) {
	s.inflightMu.Lock()
	delete(s.inflight, rs)
	s.inflightMu.Unlock()
}

// record counts an answered request in the metrics and writes its access
// log line: every request, also those answered before the middleware
// (guard, errorHandler), whose plugin and principal are "". credential
// names the principal's credential, as the audit log does.
func (s *Server) record(fc *fasthttp.RequestCtx, method, id string, client netip.AddrPort, plugin, route, principal, credential string, took time.Duration) {
	status := fc.Response.StatusCode()
	s.metrics.ObserveRequest(plugin, route, status, took)
	if !s.rt.Config().Log.AccessLog {
		return
	}
	// A plugin's body is a stream (bodyStream), written after this line:
	// Body() would read it up. Its length is the Content-Length.
	var bytes int
	if fc.Response.IsBodyStream() {
		bytes = max(fc.Response.Header.ContentLength(), 0)
	} else {
		bytes = len(fc.Response.Body())
	}
	if fc.IsHead() || fc.Response.SkipBody || fc.Response.StatusCode() == fiber.StatusNoContent || fc.Response.StatusCode() == fiber.StatusNotModified {
		bytes = 0 // kept by fasthttp, never sent
	}
	f := logrus.Fields{
		"status":      status,
		"bytes":       bytes,
		"duration":    took.Round(time.Microsecond).String(),
		"duration_ms": float64(took.Microseconds()) / 1000,
		"request_id":  id,
		"ip":          addrIP(client),
	}
	// "" for a request whose head was not read (see errorHandler).
	if method != "" {
		f["method"] = method
		f["path"] = s.loggedPath(&fc.Request)
	}
	if plugin != "" {
		f["plugin"] = plugin
	}
	if route != "" {
		f["route"] = route
	}
	if principal != "" {
		f["principal"], f["credential"] = principal, credential
	}
	s.log.WithFields(f).Info("request")
}

// requestIDFrom returns sent, a request's X-Request-Id, when it is a valid
// id, else a new one.
func requestIDFrom(sent string) string {
	if validRequestID(sent) {
		return sent
	}
	return newRequestID()
}

var (
	ridPrefix  = newRIDPrefix()
	ridCounter atomic.Uint64
)

func newRIDPrefix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newRequestID() string {
	return ridPrefix + "-" + strconv.FormatUint(ridCounter.Add(1), 36)
}

// validRequestID accepts 1-128 characters of [A-Za-z0-9_.:-].
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		ch := id[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.' || ch == ':') {
			return false
		}
	}
	return true
}

// httpLogger takes the HTTP server's message about its connection limit
// into the log, as a warning naming the config key that sets it. Its
// others are dropped, as Fiber drops them all: one per malformed request
// or broken connection, which any client can cause, quoting the request's
// bytes (credentials included, even with SecureErrorLogMessage); the
// access log and the metrics count those requests already.
type httpLogger struct {
	log            *logrus.Logger
	maxConnections int
}

func (l httpLogger) Printf(format string, args ...any) {
	if strings.Contains(format, "Server.Concurrency") {
		l.log.WithField("max_connections", l.maxConnections).
			Warn("connections refused (503): server.max_connections are open (logged at most once a minute)")
		return
	}
}

// bodyTooLargeMark marks a request whose Content-Length is over
// server.body_limit (bodyCheck); a client's own header of that name is
// dropped first.
const bodyTooLargeMark = "X-Greenroom-Body-Too-Large"

// bodyCheck runs when a request's head has been read, before fasthttp
// reads any of its body (it reads up to 8 KiB ahead). A declared body over
// limit is not read at all: the request goes on without it, marked, to be
// answered 413 from its head (requestState), and its connection closes
// after the answer, with the body unread.
func bodyCheck(limit int) func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
	return func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
		h.Del(bodyTooLargeMark)
		if h.ContentLength() > limit {
			h.SetContentLength(0)
			h.SetConnectionClose()
			// No "100 Continue" invites a client that asked first to
			// send a body that will not be read.
			h.Del(fasthttp.HeaderExpect)
			h.Set(bodyTooLargeMark, "1")
		}
		return fasthttp.RequestConfig{}
	}
}

// bodyTooLarge is the answer to a request whose body is over
// server.body_limit: one declared so (its connection closes, see
// bodyCheck), or a chunked one once it passed the limit (the HTTP server
// drops up to 256 KiB more of it, then closes).
func (s *Server) bodyTooLarge(c *fiber.Ctx) error {
	limit := strconv.FormatUint(uint64(s.cfg.Server.BodyLimit), 10) + " bytes"
	if s.cfg.IsSecretPath("server.body_limit") {
		limit = config.Redacted // "4194304 bytes" for "4MiB" is not redacted
	}
	return apiErr(fiber.StatusRequestEntityTooLarge, "body_too_large", "request body exceeds server.body_limit of "+limit)
}

// setBudgets applies the config's body budgets. A caller's share has
// room for one answer of the largest limits.max_response, or one body of
// server.body_limit. The request budget is at least server.body_limit: a
// reload keeps the running body_limit (it needs a restart), and may come
// with a budget checked against another.
func (s *Server) setBudgets(cfg *config.Config) {
	var largest config.Size
	largestSecret := false // any max_response from the environment may be it
	for _, p := range cfg.Plugins {
		if p != nil {
			largest = max(largest, p.Limits.MaxResponse)
			largestSecret = largestSecret || p.LimitSecret("max_response")
		}
	}
	s.responses.setLimit(int64(min(cfg.Server.ResponseBudget, 1<<62)), int64(min(largest, 1<<62)), cfg.IsSecretPath("server.response_budget"), largestSecret)
	requests := min(cfg.Server.RequestBudget, 1<<62)
	secret := cfg.IsSecretPath("server.request_budget")
	if limit := cfg.Server.BodyLimit; requests < limit {
		s.log.WithFields(logrus.Fields{"request_budget": shownValue(cfg, "server.request_budget", cfg.Server.RequestBudget), "body_limit": shownValue(cfg, "server.body_limit", limit)}).
			Warn("server.request_budget is below the running server.body_limit, which needs a restart to change: the budget is body_limit until then")
		requests, secret = limit, cfg.IsSecretPath("server.body_limit")
	}
	s.requests.setLimit(int64(requests), int64(min(cfg.Server.BodyLimit, 1<<62)), secret, cfg.IsSecretPath("server.body_limit"))
}

// shownValue is the value v of the config's key path as a log line or an
// answer shows it: config.Redacted when it is a secret (from the
// environment), whose decoded form the redaction of the secret as written
// does not match ("4MiB" for "4194304").
func shownValue(cfg *config.Config, path string, v any) any {
	if cfg.IsSecretPath(path) {
		return config.Redacted
	}
	return v
}

// dropBody reads and drops what is left of a request's body (at most
// server.body_limit) before an answer that closes the connection: a
// connection closed with bytes of the request unread is reset, and the
// client may lose the answer (a 503 shutting_down among them).
func (s *Server) dropBody(c *fiber.Ctx) {
	if fr := c.Request(); fr.IsBodyStream() {
		io.CopyN(io.Discard, fr.BodyStream(), int64(min(s.cfg.Server.BodyLimit, 1<<31-1)))
	}
}

// unescapeValid decodes the %XX escapes of p and keeps any malformed one
// ("%zz", a trailing "%") as it is: one bad escape must not keep the rest
// of a path from being decoded (and a secret in it from being redacted).
func unescapeValid(p string) string {
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			if h, ok := unhex(p[i+1]); ok {
				if l, ok := unhex(p[i+2]); ok {
					b = append(b, h<<4|l)
					i += 2
					continue
				}
			}
		}
		b = append(b, p[i])
	}
	return string(b)
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// loggedPath is a request's path as the access, audit and panic lines show
// it: as the client sent it, unless its percent-decoding holds a secret of
// the config, which the log's redaction finds only in the usual encodings
// (a client may send lower-case hex, or encode a character that needs
// none), or a JWT: then decoded, the secret redacted. The request's own
// credentials and anything shaped like a JWT are redacted from it too.
func (s *Server) loggedPath(req *fasthttp.Request) string {
	return redactJWTs(s.pathForLog(req.URI().PathOriginal(), req.Header.PeekAll(fiber.HeaderAuthorization)))
}

// loggedHTTPPath is loggedPath for a request of metrics_listen's net/http
// server (its path as sent, escaped, and its Authorization headers).
func (s *Server) loggedHTTPPath(r *http.Request) string {
	var auths [][]byte
	for _, v := range r.Header.Values(fiber.HeaderAuthorization) {
		auths = append(auths, []byte(v))
	}
	return redactJWTs(s.pathForLog([]byte(r.URL.EscapedPath()), auths))
}

// pathForLog is raw, a request's path as sent, as loggedPath shows it
// but for the JWTs; auths are the request's Authorization headers.
func (s *Server) pathForLog(raw []byte, auths [][]byte) string {
	p := string(raw)
	// The request's own credentials (a JWT is no configured secret) are
	// not logged either, should the client have put them in the path
	// too: each word of each Authorization header that is long enough
	// (a request with two headers, or a tab after its scheme, is refused,
	// but logged). Each is looked for in the whole path: a head with
	// more of them than a credential has is not looked through, its path
	// is withheld whole.
	var creds []string
	for _, h := range auths {
		for _, w := range bytes.Fields(h) {
			if len(w) >= minLoggedCredential {
				if len(creds) == maxLoggedCredentials {
					return logging.Redacted
				}
				creds = append(creds, string(w))
			}
		}
	}
	if bytes.IndexByte(raw, '%') < 0 {
		for _, c := range creds {
			p = strings.ReplaceAll(p, c, logging.Redacted)
		}
		return p
	}
	red := logging.RedactorOf(s.log)
	dec := unescapeValid(p)
	found := false
	for _, c := range creds {
		if strings.Contains(dec, c) {
			dec, found = strings.ReplaceAll(dec, c, logging.Redacted), true
		}
	}
	// A JWT an encoding hides (%65yJ..., dots as %2E) is shown decoded,
	// for loggedPath to find it.
	found = found || redactJWTs(dec) != dec
	if found {
		if red != nil {
			return string(red.Redact([]byte(dec)))
		}
		return dec
	}
	if red == nil || dec == p {
		return p
	}
	if r := red.Redact([]byte(dec)); string(r) != dec {
		return string(r)
	}
	return p
}

// redactJWTs replaces whatever in a logged path is shaped like a JWT in
// compact form (a header that begins with {", base64url "eyJ", a payload
// and a signature: eyJ….….…): a bearer token someone put in the path
// without sending it as a credential is no configured secret, and
// "tokens never logged" holds for it too. A hand-written scan, linear in
// the path: a regular expression took about a millisecond on a hostile
// 16 KiB path of "eyJ" runs, twice per refused request (a review).
func redactJWTs(p string) string {
	i := strings.Index(p, "eyJ")
	if i < 0 {
		return p
	}
	run := func(j int) int { // the end of the base64url run from j
		for j < len(p) && (p[j] >= 'A' && p[j] <= 'Z' || p[j] >= 'a' && p[j] <= 'z' || p[j] >= '0' && p[j] <= '9' || p[j] == '_' || p[j] == '-') {
			j++
		}
		return j
	}
	var b strings.Builder
	last := 0
	for i >= 0 {
		next := run(i + 3)
		if e1 := next; e1 > i+3 && e1 < len(p) && p[e1] == '.' {
			e2 := run(e1 + 1)
			next = e2
			if e2 > e1+1 && e2 < len(p) && p[e2] == '.' {
				e3 := run(e2 + 1)
				b.WriteString(p[last:i])
				b.WriteString(logging.Redacted)
				last, next = e3, e3
			}
		}
		if next <= i {
			next = i + 1
		}
		k := strings.Index(p[next:], "eyJ")
		if k < 0 {
			break
		}
		i = next + k
	}
	if b.Len() == 0 {
		return p
	}
	b.WriteString(p[last:])
	return b.String()
}

// minLoggedCredential is the shortest bearer credential loggedPath keeps
// out of a logged path: a shorter one is no credential anyone was issued.
const minLoggedCredential = 8

// maxLoggedCredentials is the most such words of a request's
// Authorization headers loggedPath looks for in its path, one scan of the
// path each; a request with more (no credential is that many words) has
// its whole path logged as [REDACTED]. Looking for every one took time
// quadratic in the request head, for a request refused without a
// credential: with server.header_limit = "1MiB", 12 s of CPU for one
// (an audit; TestCredentialWordsInPathAreBounded).
const maxLoggedCredentials = 8
