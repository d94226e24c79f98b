package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/auth"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/logging"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

var reqPool = sync.Pool{New: func() any { return &hostfuncs.Request{} }}

// splitPluginPath splits the path as the client sent it, /api/<id>/<rest>,
// into the plugin id and /<rest>. Fiber's /api/* route also matches "/api"
// itself (with or without a query, in that case only: routing is
// case-sensitive), which names no plugin (id ""): it is answered like an
// unknown plugin.
func splitPluginPath(raw []byte) (id string, sub []byte) {
	const prefix = "/api/"
	if !bytes.HasPrefix(raw, []byte(prefix)) {
		return "", []byte("/")
	}
	rest := raw[len(prefix):]
	if i := bytes.IndexByte(rest, '/'); i >= 0 {
		return string(rest[:i]), rest[i:]
	}
	return string(rest), []byte("/")
}

// handlePlugin serves /api/<id>/<rest> with plugin id, passing /<rest> on.
func (s *Server) handlePlugin(c *fiber.Ctx) error {
	rs := stateOf(c)
	id, sub := splitPluginPath(c.Request().URI().PathOriginal())
	// Only configured (so valid) ids have a slot. A refused request to one
	// is still counted and logged under its plugin (the metrics and the
	// access log are the operator's); the client is told nothing.
	known := s.rt.Slot(id) != nil
	if known {
		rs.plugin = id
	}
	// Access is decided before anything else, so that a caller without a
	// credential learns nothing, not even which plugins exist.
	under := s.rt.Config()
	principal, err := s.authorizePlugin(c, rs, id, sub)
	if err != nil {
		return err
	}
	if !known {
		return unknownPlugin(id)
	}
	// Named so in the line of a request a shutdown cuts off (LogCutOff).
	rs.letPlugin, rs.letSubject, rs.letCredential = id, rs.subject, rs.credential
	rs.letIn.Store(true)
	// A path net/http would refuse (a "%" not followed by two hex digits)
	// never reaches a handler: Go's would see it undecoded.
	if bytes.IndexByte(sub, '%') >= 0 {
		if _, err := url.PathUnescape(string(sub)); err != nil {
			return apiErr(fiber.StatusBadRequest, "bad_request", "the request path has a malformed percent-escape (want %XX with two hex digits)")
		}
	}

	req := reqPool.Get().(*hostfuncs.Request)
	defer func() {
		clear(req.Headers)
		*req = hostfuncs.Request{Headers: req.Headers[:0]}
		reqPool.Put(req)
	}()
	fr := c.Request()
	req.Method = fr.Header.Method()
	req.Path = sub
	req.RawQuery = fr.URI().QueryString()
	req.RequestID = rs.id
	if rs.viaProxy {
		req.RemoteAddr = rs.fwd.client.String()
	} else {
		req.RemoteAddr = c.Context().RemoteAddr().String()
	}
	req.Principal = envelopePrincipal(principal)
	// Headers the client named in Connection are hop-by-hop too (RFC
	// 9110, 7.6.1): not the guest's.
	// Collected once (lower-cased, deduplicated): checking every header
	// against every token of every Connection list took time quadratic
	// in the request head (a 256 KiB head: 17 s of CPU).
	connection := connectionNames(fr.Header.PeekAll(fiber.HeaderConnection)) // every Connection header
	var lower []byte
	fr.Header.VisitAll(func(k, v []byte) {
		if !forwardRequestHeader(k) {
			return
		}
		// A client's word for where it came from reaches the guest only
		// as a trusted proxy passed it on (proxy.go); the header the
		// client's address was read from, only as its trusted part
		// (below).
		if fwd, dashed := forwardingHeader(k); fwd && !(dashed && rs.viaProxy) || fromProxyRead(k, rs.fwd.header) {
			return
		}
		// fasthttp gives a body-less POST (PUT, ...) a "Content-Length:
		// 0" of its own; the guest sees only what the client sent.
		if len(v) == 1 && v[0] == '0' && bytes.EqualFold(k, []byte(fiber.HeaderContentLength)) && !containsFold(fr.Header.RawHeaders(), "content-length") {
			return
		}
		if len(connection) > 0 {
			lower = appendLower(lower[:0], k)
			if connection[string(lower)] {
				return
			}
		}
		req.Headers = append(req.Headers, [2][]byte{hostfuncs.CanonicalHeaderName(k), v})
	})
	if h := rs.fwd.header; len(rs.fwd.chain) > 0 && !connection[strings.ToLower(h)] {
		req.Headers = append(req.Headers, [2][]byte{[]byte(h), rs.fwd.chain})
	}
	if host := fr.Host(); len(host) > 0 {
		req.Headers = append(req.Headers, [2][]byte{[]byte("Host"), host})
	}
	req.Headers = append(req.Headers, [2][]byte{[]byte("X-Request-Id"), []byte(rs.id)})
	// fasthttp streams every body (a request without one has none).
	if c.Request().IsBodyStream() {
		// A caller let in without a credential (a public route) draws
		// on a quarter of the budget at most, so that anonymous bodies
		// cannot starve authenticated callers; an authenticated one on a
		// quarter of its own (see sharedBudget).
		body := &requestBody{claim: s.claim(&s.requests, principal)}
		defer body.release()
		err = s.readBody(c, id, body)
		req.Body = body.b
		if err != nil {
			return err
		}
	}
	// A reload that began since the request was let in (a body arrives
	// for up to server.read_timeout) applies to it as to a request
	// arriving now: it is let in again, under the credentials and config
	// in force. Let in by the old decision, it was run by the version
	// the reload swapped in: a token the reload revoked, or an anonymous
	// call to a route it closed, was served.
	for s.authn.Load() != rs.authn || s.rt.Config() != under {
		under = s.rt.Config()
		if principal, err = s.admitAgain(c, rs, id, sub); err != nil {
			return err
		}
		req.Principal = envelopePrincipal(principal)
	}

	// A reload while the call waits for an instance (that revokes its
	// token, closes its route, or swaps nothing of its plugin) lets it in
	// again before it runs, its instance held meanwhile: it was served as
	// it had been let in. A refusal (401, 403, 404) is the answer.
	adm := &admission{s: s, c: c, rs: rs, id: id, sub: sub, req: req, under: under, principal: principal}
	respond := func(resp hostfuncs.Response) error {
		// A 2xx answer to CONNECT switches the connection to a tunnel
		// (RFC 9110, 9.3.6: its client ignores the Content-Length and
		// takes the bytes after the head for the tunnel's), which
		// greenroom never opens: the client and the server would part
		// on where every later answer begins, as with a 1xx.
		if resp.Status/100 == 2 && fr.Header.IsConnect() {
			if s.log.IsLevelEnabled(logrus.WarnLevel) && s.rt.PluginLogAllow(id) {
				s.log.WithFields(logrus.Fields{"plugin": id, "request_id": string(rs.id), "status": resp.Status}).Warn("plugin answered CONNECT with a 2xx, which would open a tunnel; refused")
			}
			return &APIError{Status: fiber.StatusBadGateway, Code: "plugin_bad_response", Plugin: id,
				Message: fmt.Sprintf("plugin %s wrote an invalid response: status %d to CONNECT, which would open a tunnel (RFC 9110, 9.3.6); greenroom opens none: answer CONNECT with a 4xx or 5xx", id, resp.Status)}
		}
		w := c.Response()
		w.SetStatusCode(resp.Status)
		// The guest decides: its SDK sniffs a type as net/http does, and
		// a handler that suppressed it (a nil Content-Type) gets none.
		w.Header.SetNoDefaultContentType(true)
		headLength := -1 // the guest's Content-Length, kept for a HEAD
		held := int64(len(resp.Body))
		// A Location into greenroom is rewritten into the mount: decided
		// (and refused if it could never be requested) before anything is
		// written, and counted in what the answer holds.
		var mounted map[int][]byte
		for i, h := range resp.Headers {
			held += int64(len(h[0]) + len(h[1]) + 4)
			if rs.route == "" && string(h[0]) == routeHeader {
				rs.route = s.routeLabels.label(id, h[1], logging.RedactorOf(s.log))
			}
			if !isLocation(h[0]) || !forwardResponseHeader(h[0], h[1]) {
				continue
			}
			v, ok, err := mountLocation(id, sub, h[0], h[1], int(s.rt.Config().Server.HeaderLimit))
			if err != nil {
				if tl, isLong := err.(*locationTooLong); isLong {
					tl.secret = s.rt.Config().IsSecretPath("server.header_limit")
				}
				// As often as the plugin likes: from its log rate limit.
				if s.log.IsLevelEnabled(logrus.WarnLevel) && s.rt.PluginLogAllow(id) {
					s.log.WithFields(logrus.Fields{"plugin": id, "request_id": string(rs.id)}).WithError(err).Warn("plugin wrote a bad response")
				}
				return &APIError{Status: fiber.StatusBadGateway, Code: "plugin_bad_response", Plugin: id,
					Message: fmt.Sprintf("plugin %s wrote an invalid response: %v", id, err)}
			}
			if ok {
				if mounted == nil {
					mounted = make(map[int][]byte, 1)
				}
				mounted[i] = v
				held += int64(len(v))
			}
		}
		// The answer outlives the instance: it is held until the client
		// has read it, under the process's response budget, from the
		// caller's share of it (as a request body is): one principal's
		// unread answers, or anonymous callers', could otherwise take
		// the whole budget and have every other caller's refused.
		claim := s.claim(&s.responses, adm.principal)
		if !claim.take(held) {
			err := s.budgetSpent(id, "server.response_budget", held, &claim)
			claim.release()
			return err
		}
		sniffSet := false
		for i, h := range resp.Headers {
			if !forwardResponseHeader(h[0], h[1]) {
				if n, ok := contentLength(h[0], h[1]); ok {
					headLength = n
				}
				continue
			}
			if v, ok := mounted[i]; ok {
				w.Header.AddBytesV(fiber.HeaderLocation, v)
				continue
			}
			sniffSet = sniffSet || len(h[0]) == len(noSniffHeader) && headerFold(h[0], "x-content-type-options")
			w.Header.AddBytesKV(h[0], h[1])
		}
		// Every plugin answers from the one origin: a browser must not
		// take one's JSON or text (an echo of a query) for a script or a
		// stylesheet of another's page. The guest's own, when it set one.
		if !sniffSet {
			w.Header.Set(noSniffHeader, "nosniff")
		}
		if len(resp.Body) == 0 && fr.Header.IsHead() {
			// A HEAD answer has no body. Its Content-Length is that of
			// the GET where the handler set it (http.ServeContent,
			// http.FileServer do), as net/http sends it; otherwise there
			// is none, as with net/http: a handler that writes its body
			// only for a GET (http.Redirect) must not be announced as
			// empty (RFC 9110, 8.6).
			// Its head is held under the budget until it is written,
			// as a body is (which holds it with the head, below): a
			// head may be as large as limits.max_response.
			if lc, ok := c.Context().Conn().(*lingerConn); ok {
				lc.holdHead(claim)
			} else {
				claim.release()
			}
			w.SkipBody = true
			if headLength >= 0 && resp.Status/100 == 2 && resp.Status != fiber.StatusNoContent {
				w.Header.SetContentLength(headLength)
			}
			return nil
		}
		w.SetBodyStream(newBodyStream(resp.Body, claim), len(resp.Body))
		return nil
	}
	began := time.Now()
	base := plugin.WithAdmission(s.base, adm)
	// Its place in line is its arrival, on the version it finds and on
	// any a reload moves it to.
	err = s.rt.Handle(plugin.WithArrival(base, began), id, req, respond)
	for moves := 1; errors.Is(err, runtime.ErrMoved); moves++ {
		// A reload moved the call, while it waited for an instance, to
		// the plugin's new version (or removed the plugin): it is let in
		// again under the config now in force, as a request arriving now
		// with the same credential — which the reload may have revoked or
		// restricted to other plugins, on a route it may have closed.
		// Reloads back to back move a waiting call once each: it goes on
		// waiting as long as its plugin's queue_timeout allows in all.
		if moves > maxMoves && time.Since(began) >= s.queueTimeout(id) {
			// Waited its whole queue timeout, as a call the pool refuses
			// busy has: answered and counted as one.
			if sl := s.rt.Slot(id); sl != nil {
				sl.Counters().Reject()
			}
			return &APIError{Status: fiber.StatusServiceUnavailable, Code: "plugin_busy", Plugin: id, RetryAfter: 1,
				Message: fmt.Sprintf("plugin %s is busy: the call waited its whole queue timeout while reloads moved it to new versions", id)}
		}
		adm.under = s.rt.Config()
		if adm.principal, err = s.admitAgain(c, rs, id, sub); err != nil {
			return err
		}
		req.Principal = envelopePrincipal(adm.principal)
		// It keeps its place in line: ahead of the calls that arrived
		// after it, which the new version may already have queued.
		err = s.rt.Handle(plugin.WithArrival(base, began), id, req, respond)
	}
	if errors.Is(err, plugin.ErrReadmit) && adm.refused != nil {
		return adm.refused
	}
	if err != nil {
		return s.callError(id, string(rs.id), err)
	}
	return nil
}

// admission lets a call in again, with its instance held, when a reload
// came while it waited for one (plugin.WithAdmission): under is the config
// it was let in under, principal the caller it let in (nil: none, a
// public route or the authentication off), refused the refusal it got.
type admission struct {
	s         *Server
	c         *fiber.Ctx
	rs        *reqState
	id        string
	sub       []byte
	req       *hostfuncs.Request
	under     *config.Config
	principal *auth.Principal
	refused   error
}

// Admit implements plugin.Admission.
func (a *admission) Admit() error {
	for a.s.authn.Load() != a.rs.authn || a.s.rt.Config() != a.under {
		a.under = a.s.rt.Config()
		principal, err := a.s.admitAgain(a.c, a.rs, a.id, a.sub)
		if err != nil {
			a.refused = err
			return err
		}
		a.principal = principal
		a.req.Principal = envelopePrincipal(principal)
	}
	return nil
}

// admitAgain decides again, under the credentials and config in force
// now, whether a request let in before a reload may call plugin id at
// sub, as handlePlugin decided when it arrived: its credential verified
// anew, then authorizePlugin, then the plugin looked up.
func (s *Server) admitAgain(c *fiber.Ctx, rs *reqState, id string, sub []byte) (*auth.Principal, error) {
	s.authenticate(c, rs)
	principal, err := s.authorizePlugin(c, rs, id, sub)
	if err != nil {
		return nil, err
	}
	if s.rt.Slot(id) == nil {
		return nil, unknownPlugin(id)
	}
	return principal, nil
}

// budgetSpent is the answer to a call whose response, or request body,
// (bytes) would pass its budget (key) or the caller's share of it
// (claim.shareFull).
func (s *Server) budgetSpent(id, key string, bytes int64, claim *budgetClaim) error {
	b := &s.responses.all
	var msg string
	switch {
	case key == "server.request_budget":
		b = &s.requests.all
		if claim.shareFull {
			msg = fmt.Sprintf("this caller's request bodies fill its share of server.request_budget (a quarter of it; the callers without a credential share one); this one was not read past its first %d bytes; retry", bytes)
		} else {
			msg = fmt.Sprintf("the server holds as many request bodies as server.request_budget allows; this one was not read past its first %d bytes; retry", bytes)
		}
	case claim.shareFull:
		msg = fmt.Sprintf("this caller's unread responses fill its share of server.response_budget (a quarter of it; the callers without a credential share one); plugin %s's answer of %d bytes was dropped; retry once they are read", id, bytes)
	default:
		msg = fmt.Sprintf("the server holds as many unsent responses as server.response_budget allows; plugin %s's answer of %d bytes was dropped; retry", id, bytes)
	}
	if b.warnDue() {
		held, limit, what, secret := b.used.Load(), b.limit.Load(), "the bodies held fill "+key, b.secret.Load()
		if claim.shareFull {
			held, limit, what, secret = claim.share.used.Load(), claim.share.limit.Load(), "the caller's bodies held fill its share of "+key, claim.budget.anonymous.secret.Load()
		}
		var budget any = limit
		if secret {
			budget = config.Redacted // a budget from the environment, or computed from one
		}
		s.log.WithFields(logrus.Fields{"plugin": id, "bytes": bytes, "held": held, "budget": budget}).
			Warn("request refused: " + what)
	}
	return &APIError{Status: fiber.StatusServiceUnavailable, Code: "server_busy", Plugin: id, RetryAfter: 1, Message: msg}
}

// claim is the caller's claim on budget (see sharedBudget): principal's
// share, the anonymous callers' share when it has no credential, or the
// whole budget when the authentication is off.
func (s *Server) claim(budget *sharedBudget, principal *auth.Principal) budgetClaim {
	return budget.claim(principal, principal == nil && !s.authConfig().Auth.DangerouslyDisable)
}

// queueTimeout is the queue_timeout of plugin id's version serving now
// (0 when none serves).
func (s *Server) queueTimeout(id string) time.Duration {
	if slot := s.rt.Slot(id); slot != nil {
		if p := slot.Plugin(); p != nil {
			return p.Limits().QueueTimeout
		}
	}
	return 0
}

// maxMoves is how many times one call may be moved to a plugin's new
// version by reloads coming one after another while it waits, whatever
// the time it waited (past it, the call's queue_timeout bounds the moves).
const maxMoves = 3

// unknownPlugin is the answer for a plugin id the config does not have.
func unknownPlugin(id string) error {
	msg := fmt.Sprintf("no plugin %q", id)
	if id == "" {
		msg = "the path names no plugin: want /api/<plugin>/..."
	}
	return &APIError{Status: fiber.StatusNotFound, Code: "unknown_plugin", Message: msg}
}

// envelopePrincipal is p as the plugin sees it; nil is no principal.
func envelopePrincipal(p *auth.Principal) hostfuncs.Principal {
	if p == nil {
		return hostfuncs.Principal{}
	}
	return hostfuncs.Principal{Type: envelopeType(p.Type), Subject: p.Subject, Claims: p.Claims}
}

// pluginLines logs a line about a plugin's call when its log rate limit
// allowed it.
type pluginLines struct {
	e     *logrus.Entry
	allow func() bool
}

// A line the log level hides is not written, so it takes nothing from
// the plugin's rate limit (and is never counted as dropped), as a record
// of the plugin's own below the level is filtered before the limit.
func (l pluginLines) Warn(msg string) {
	if l.e.Logger.IsLevelEnabled(logrus.WarnLevel) && l.allow() {
		l.e.Warn(msg)
	}
}

func (l pluginLines) Error(msg string) {
	if l.e.Logger.IsLevelEnabled(logrus.ErrorLevel) && l.allow() {
		l.e.Error(msg)
	}
}

// callError maps a failed plugin call to the response its caller gets.
func (s *Server) callError(id, requestID string, err error) error {
	var refused *APIError
	if errors.As(err, &refused) {
		return refused // from respond: the plugin answered, the server could not take it
	}
	var ua *runtime.UnavailableError
	if errors.As(err, &ua) {
		retry := 5
		if ua.State == runtime.StateRetrying {
			// When its load is tried next.
			retry = max(int((ua.RetryIn+time.Second-1)/time.Second), 1)
		}
		return &APIError{Status: fiber.StatusServiceUnavailable, Code: "plugin_unavailable", Plugin: id, Message: ua.CallerMessage(), RetryAfter: retry}
	}
	if errors.Is(err, runtime.ErrUnknownPlugin) {
		return &APIError{Status: fiber.StatusNotFound, Code: "unknown_plugin", Message: fmt.Sprintf("no plugin %q", id)}
	}
	// These lines come as often as the plugin fails: they take from its
	// log rate limit, as its own lines do (a drop is counted).
	entry := s.log.WithFields(logrus.Fields{"plugin": id, "request_id": requestID}).WithError(err)
	log := pluginLines{entry, func() bool { return s.rt.PluginLogAllow(id) }}
	switch plugin.KindOf(err) {
	case plugin.FailBusy:
		return &APIError{Status: fiber.StatusServiceUnavailable, Code: "plugin_busy", Plugin: id, RetryAfter: 1,
			Message: fmt.Sprintf("plugin %s is busy: every instance stayed busy for its whole queue timeout", id)}
	case plugin.FailTimeout:
		if errors.Is(err, plugin.ErrStarting) {
			log.Warn("no plugin instance was ready within the call's timeout: a new one is still starting")
			return &APIError{Status: fiber.StatusGatewayTimeout, Code: "plugin_timeout", Plugin: id,
				Message: fmt.Sprintf("plugin %s had no instance ready within its timeout (plugins.%s.limits.timeout): a new one is still starting", id, id)}
		}
		log.Warn("plugin call interrupted at its timeout; instance discarded")
		return &APIError{Status: fiber.StatusGatewayTimeout, Code: "plugin_timeout", Plugin: id,
			Message: fmt.Sprintf("plugin %s did not answer within its timeout (plugins.%s.limits.timeout)", id, id)}
	case plugin.FailCanceled, plugin.FailClosed:
		return &APIError{Status: fiber.StatusServiceUnavailable, Code: "plugin_unavailable", Plugin: id, RetryAfter: 1,
			Message: fmt.Sprintf("plugin %s call was canceled (server shutting down or plugin reloading)", id)}
	case plugin.FailBadResponse:
		log.Warn("plugin wrote a bad response")
		return &APIError{Status: fiber.StatusBadGateway, Code: "plugin_bad_response", Plugin: id,
			Message: fmt.Sprintf("plugin %s wrote an invalid response: %v", id, errors.Unwrap(err))}
	case plugin.FailMemory:
		log.Warn("plugin hit its memory limit; instance discarded")
		return &APIError{Status: fiber.StatusInternalServerError, Code: "plugin_memory_limit", Plugin: id,
			Message: fmt.Sprintf("plugin %s exceeded its memory limit (plugins.%s.limits.memory); the instance was discarded", id, id)}
	case plugin.FailPanic:
		log.Warn("plugin panicked; instance discarded")
		return &APIError{Status: fiber.StatusInternalServerError, Code: "plugin_panic", Plugin: id,
			Message: fmt.Sprintf("plugin %s panicked; the instance was discarded", id)}
	case plugin.FailExit:
		log.Warn("plugin exited; instance discarded")
		return &APIError{Status: fiber.StatusInternalServerError, Code: "plugin_exit", Plugin: id,
			Message: fmt.Sprintf("plugin %s exited; the instance was discarded", id)}
	case plugin.FailInstantiate:
		log.Error("could not create a plugin instance")
		return &APIError{Status: fiber.StatusInternalServerError, Code: "plugin_instantiate", Plugin: id,
			Message: fmt.Sprintf("plugin %s could not start an instance", id)}
	case plugin.FailTrap:
		log.Warn("plugin trapped; instance discarded")
		return &APIError{Status: fiber.StatusInternalServerError, Code: "plugin_trap", Plugin: id,
			Message: fmt.Sprintf("plugin %s crashed (trap); the instance was discarded", id)}
	}
	log.Error("plugin call failed")
	return &APIError{Status: fiber.StatusInternalServerError, Code: "internal", Plugin: id, Message: "internal error"}
}

// connectionNames is the set of header names the Connection lists name,
// lower-cased; nil when there are none.
func connectionNames(lists [][]byte) map[string]bool {
	var names map[string]bool
	for _, list := range lists {
		for len(list) > 0 {
			var tok []byte
			tok, list, _ = bytes.Cut(list, []byte(","))
			if tok = bytes.TrimSpace(tok); len(tok) > 0 {
				if names == nil {
					names = make(map[string]bool)
				}
				names[string(appendLower(nil, tok))] = true
			}
		}
	}
	return names
}

// appendLower appends b to dst with its ASCII letters lower-cased.
func appendLower(dst, b []byte) []byte {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// Hop-by-hop and credential headers never reach a guest: the guest learns
// who calls from the principal, not from credentials. Nor do the headers
// authenticating proxies use to name the user they let in (Apache's
// Remote-User, oauth2-proxy's X-Forwarded-* and X-Auth-Request-*,
// Grafana's X-WEBAUTH-USER, cloud proxies' own), whatever a caller sends: behind greenroom
// no proxy vouches for them, and a plugin ported from behind one that
// trusted them would take any caller's word for who it is. Names are
// matched with '_' read as '-'.
var droppedRequestHeaders = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "transfer-encoding": true,
	"upgrade": true, "te": true, "trailer": true, "proxy-authorization": true, "proxy-authenticate": true,
	"authorization": true, "cookie": true, "host": true,

	"remote-user": true, "x-remote-user": true, "x-remote-group": true, "x-webauth-user": true,
	"x-forwarded-user": true, "x-forwarded-email": true, "x-forwarded-groups": true,
	"x-forwarded-preferred-username": true, "x-forwarded-access-token": true,
	"x-auth-request-user": true, "x-auth-request-email": true, "x-auth-request-groups": true,
	"x-auth-request-preferred-username": true, "x-auth-request-access-token": true,
	"cookie2": true,
	// The request's id is greenroom's: the client's, when valid, comes
	// back below; an invalid one must not reach a plugin that passes
	// X-Request-Id on, as an id that matches nothing in the logs.
	"x-request-id": true,
	// The identity headers of cloud proxies: AWS ALB, Google IAP,
	// Cloudflare Access, Azure App Service authentication.
	"x-amzn-oidc-data": true, "x-amzn-oidc-identity": true, "x-amzn-oidc-accesstoken": true,
	"x-goog-iap-jwt-assertion": true, "x-goog-authenticated-user-email": true, "x-goog-authenticated-user-id": true,
	"cf-access-jwt-assertion": true, "cf-access-authenticated-user-email": true,
	"x-ms-client-principal": true, "x-ms-client-principal-name": true, "x-ms-client-principal-id": true,
	"x-ms-client-principal-idp": true, "x-ms-token-aad-id-token": true, "x-ms-token-aad-access-token": true,
	// Remote-User's siblings, which Authelia's forward auth (and proxies
	// copying its answer) set with it: the groups a plugin would
	// authorize by.
	"remote-groups": true, "remote-email": true, "remote-name": true,
	// The client certificate a proxy that terminated mutual TLS vouches
	// for (Envoy and Istio, Traefik): the calling service's identity.
	"x-forwarded-client-cert": true, "x-forwarded-tls-client-cert": true, "x-forwarded-tls-client-cert-info": true,
	// Pomerium's and authentik's identity headers.
	"x-pomerium-jwt-assertion": true, "x-authentik-username": true, "x-authentik-groups": true,
	"x-authentik-email": true, "x-authentik-name": true, "x-authentik-uid": true, "x-authentik-jwt": true,
	// Google Cloud Endpoints (ESP) and API Gateway name the user they
	// verified, and pass the client's own Authorization on when they
	// replace it; AWS API Gateway does the same. Kong names the consumer
	// its authentication plugins let in.
	"x-endpoint-api-userinfo": true, "x-apigateway-api-userinfo": true,
	"x-forwarded-authorization": true, "x-amzn-remapped-authorization": true,
	"x-consumer-id": true, "x-consumer-custom-id": true, "x-consumer-username": true, "x-consumer-groups": true,
	"x-credential-identifier": true, "x-authenticated-userid": true, "x-authenticated-scope": true,
	"x-authenticated-groups": true, "x-anonymous-consumer": true,
	// Tailscale Serve names the tailnet user; Teleport's application
	// access passes a JWT it signed naming the user, roles and traits.
	"tailscale-user-login": true, "tailscale-user-name": true, "tailscale-user-profile-pic": true,
	"teleport-jwt-assertion": true,
	// Keycloak Gatekeeper (louketo-proxy, gogatekeeper) names the user it
	// let in, its roles and groups, and passes its access token on.
	"x-auth-username": true, "x-auth-email": true, "x-auth-userid": true, "x-auth-subject": true,
	"x-auth-roles": true, "x-auth-groups": true, "x-auth-token": true, "x-auth-audience": true,
	"x-auth-expiresin": true,
	// The client certificate ingress-nginx (auth-tls-*) and Kong's
	// tls-metadata-headers verified, and Grafana's auth proxy headers
	// beside X-Webauth-User.
	"ssl-client-cert": true, "ssl-client-verify": true, "ssl-client-subject-dn": true, "ssl-client-issuer-dn": true,
	"x-client-cert": true, "x-client-cert-subject-dn": true, "x-client-cert-issuer-dn": true,
	"x-client-cert-fingerprint": true, "x-client-cert-serial": true,
	"x-webauth-email": true, "x-webauth-name": true,
}

// maxDroppedHeader is the length of the longest name in
// droppedRequestHeaders.
const maxDroppedHeader = len("cf-access-authenticated-user-email")

// droppedRequestPrefixes are families of identity headers, dropped
// whatever follows the prefix: the Kubernetes API server's front proxy
// passes the user's extra attributes as X-Remote-Extra-<key>, and
// Vouch Proxy names the user and passes the identity provider's tokens
// and claims as X-Vouch-User, X-Vouch-Idp-Idtoken, X-Vouch-Idp-Claims-<claim>.
var droppedRequestPrefixes = []string{"x-remote-extra-", "x-vouch-"}

func forwardRequestHeader(k []byte) bool {
	for _, p := range droppedRequestPrefixes {
		if len(k) >= len(p) && headerFold(k[:len(p)], p) {
			return false
		}
	}
	if len(k) > maxDroppedHeader {
		return true
	}
	var lower [maxDroppedHeader]byte
	for i, ch := range k {
		switch {
		case ch >= 'A' && ch <= 'Z':
			ch += 'a' - 'A'
		case ch == '_':
			ch = '-'
		}
		lower[i] = ch
	}
	return !droppedRequestHeaders[string(lower[:len(k)])]
}

// headerFold reports whether b is the header name lower, a lower-case
// ASCII string, in any letter case and with '_' read as '-'.
func headerFold(b []byte, lower string) bool {
	for i, ch := range b {
		switch {
		case ch >= 'A' && ch <= 'Z':
			ch += 'a' - 'A'
		case ch == '_':
			ch = '-'
		}
		if ch != lower[i] {
			return false
		}
	}
	return len(b) == len(lower)
}

// containsFold reports whether b contains lower, a lower-case ASCII
// string, in any letter case.
func containsFold(b []byte, lower string) bool {
	for i := 0; i+len(lower) <= len(b); i++ {
		j := 0
		for ; j < len(lower); j++ {
			ch := b[i+j]
			if ch >= 'A' && ch <= 'Z' {
				ch += 'a' - 'A'
			}
			if ch != lower[j] {
				break
			}
		}
		if j == len(lower) {
			return true
		}
	}
	return false
}

// noSniffHeader is set to "nosniff" on a plugin's answer that has none
// (sandbox.md, "One origin for every plugin").
const noSniffHeader = "X-Content-Type-Options"

// Headers a guest may not set: framing is the server's business.
var droppedResponseHeaders = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "transfer-encoding": true,
	"upgrade": true, "te": true, "trailer": true, "content-length": true,
	"proxy-authenticate": true, // hop-by-hop
	"x-request-id":       true, // greenroom's own, already set
	"www-authenticate":   true, // authentication is greenroom's
	// State a browser keeps for the whole origin, every plugin's routes
	// and greenroom's own: one plugin may not set it for all. (A plugin
	// never sees cookies, so it has no use for setting them; a cookie
	// flood would make every request of that browser too large.)
	"set-cookie": true, "clear-site-data": true, "service-worker-allowed": true,
	"strict-transport-security": true, "alt-svc": true,
	// Network Error Logging: a policy the browser keeps for the origin
	// (max_age), reporting its requests, to any plugin's routes and the
	// admin API, URLs and queries included (every one, with
	// success_fraction 1), to the endpoint a Report-To names.
	"nel": true, "report-to": true,
	// Client hints: Chromium keeps a response's Accept-CH for the origin
	// and sends the hints it names (the full browser version, the
	// platform's version, device memory: a fingerprint) with every later
	// request to it, every plugin's and the admin API's; Critical-CH
	// makes it retry a request to send them.
	"accept-ch": true, "critical-ch": true,
}

// locationTooLong is mountLocation's error for a Location longer than
// server.header_limit; secret (set by its caller) leaves the limit out: one
// from the environment, told in bytes, is not matched by the redaction of
// the secret as written ("16KiB").
type locationTooLong struct {
	n, limit int
	secret   bool
}

func (e *locationTooLong) Error() string {
	limit := strconv.Itoa(e.limit) + " bytes"
	if e.secret {
		limit = config.Redacted
	}
	return fmt.Sprintf("a Location path of %d bytes is longer than server.header_limit (%s): no client could request it", e.n, limit)
}

// mountLocation keeps a plugin's redirects inside its mount. A plugin
// sees paths relative to its mount, so its redirects (its own, and
// ServeMux's to a cleaned path or a trailing slash) are too: a Location
// that is a path from the root ("/items", not "//host/..." or "/\host")
// gets /api/<id> in front. Its dot segments are resolved first, as a
// browser would ("%2e" and "\" included), so that "/../x" cannot climb
// out of the mount once prefixed; a path that resolves under /api/<id>
// keeps no second prefix. A relative reference ("next", "../x", and
// "http:../x", which a browser reads as relative too) is resolved against
// base, the request's path within the mount, and sent as the mounted path
// it names: a browser would resolve it against the public URL, where
// enough ".." climb out of /api/<id>. Any other Location (an absolute
// URL, "//host/...", "?query", "#fragment") passes as it is.
//
// A Location that is a path (to be mounted, or already in the mount)
// longer than limit (the server's header_limit) is an error: the request
// it names could never be read, and a guest may not make the host work
// on megabytes of it.
func mountLocation(id string, base, k, v []byte, limit int) ([]byte, bool, error) {
	if !isLocation(k) {
		return nil, false, nil
	}
	// A browser strips leading and trailing spaces and control
	// characters from a URL and drops its tabs (and newlines, refused
	// already) before parsing it, so " /x" is "/x" and ".\t." is ".." to
	// it: they go first.
	if trimmed := bytes.TrimFunc(v, func(r rune) bool { return r <= ' ' }); len(trimmed) != len(v) || bytes.IndexByte(trimmed, '\t') >= 0 {
		clean := bytes.ReplaceAll(trimmed, []byte("\t"), nil)
		mounted, ok, err := mountLocation(id, base, k, clean, limit)
		if ok || err != nil {
			return mounted, ok, err
		}
		return clean, true, nil
	}
	slash := func(i int) bool { return len(v) > i && (v[i] == '/' || v[i] == '\\') }
	ref := v
	if n := schemeLen(v); n > 0 {
		// A special scheme not followed by "//" is a relative
		// reference to a browser ("http:../x" from an http page).
		scheme := strings.ToLower(string(v[:n]))
		if scheme != "http" && scheme != "https" || slash(n+1) && slash(n+2) {
			return nil, false, nil
		}
		ref = v[n+1:]
	}
	if len(ref) == 0 || ref[0] == '?' || ref[0] == '#' || len(ref) > 1 && (ref[0] == '/' || ref[0] == '\\') && (ref[1] == '/' || ref[1] == '\\') {
		return nil, false, nil
	}
	if len(ref) > limit {
		return nil, false, &locationTooLong{n: len(ref), limit: limit}
	}
	end := bytes.IndexAny(ref, "?#")
	if end < 0 {
		end = len(ref)
	}
	rooted := ref[0] == '/' || ref[0] == '\\'
	path := ref[:end]
	if !rooted {
		dir := base[:bytes.LastIndexByte(base, '/')+1]
		dir = bytes.TrimPrefix(dir, []byte("/"))
		path = append(append(append(make([]byte, 0, 1+len(dir)+len(path)), '/'), dir...), path...)
	}
	p, changed := resolveDots(path)
	mount := make([]byte, 0, len("/api/")+len(id)+len(p)+len(ref)-end)
	mount = append(append(mount, "/api/"...), id...)
	if after, ok := bytes.CutPrefix(p, mount); rooted && ok && (len(after) == 0 || after[0] == '/') {
		if !changed && len(ref) == len(v) {
			return nil, false, nil // a plugin that writes its mount itself keeps it once
		}
		return append(p, ref[end:]...), true, nil
	}
	return append(append(mount, p...), ref[end:]...), true, nil
}

// isLocation reports whether k names the Location header, in any case.
func isLocation(k []byte) bool {
	return len(k) == len("Location") && bytes.EqualFold(k, []byte("Location"))
}

// schemeLen returns the length of the scheme v starts with (ALPHA *(
// ALPHA / DIGIT / "+" / "-" / ".") before a ':'), or 0.
func schemeLen(v []byte) int {
	for i, ch := range v {
		switch {
		case ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z':
		case i > 0 && (ch >= '0' && ch <= '9' || ch == '+' || ch == '-' || ch == '.'):
		case i > 0 && ch == ':':
			return i
		default:
			return 0
		}
	}
	return 0
}

// resolveDots removes the dot segments of an absolute path as a browser
// resolves them: "." and ".." also spelled with "%2e", "\" as "/". It
// reports whether the path changed. It works in one pass and one buffer
// the size of p: a guest's Location may be large.
func resolveDots(p []byte) ([]byte, bool) {
	if bytes.IndexByte(p, '.') < 0 && bytes.IndexByte(p, '\\') < 0 && !containsFold(p, "%2e") {
		return p, false
	}
	out := make([]byte, 1, len(p)+1)
	out[0] = '/'
	n := 0 // segments in out, which is "/" and them joined by "/"
	trailing := false
	for rest := p[1:]; ; {
		end := bytes.IndexAny(rest, "/\\")
		seg := rest
		if end >= 0 {
			seg = rest[:end]
		}
		last := end < 0
		switch dotSegment(seg) {
		case 2:
			if n > 0 {
				n--
				out = out[:max(bytes.LastIndexByte(out, '/'), 1)]
			}
			trailing = last
		case 1:
			trailing = last
		default:
			if n > 0 {
				out = append(out, '/')
			}
			out = append(out, seg...)
			n++
			trailing = false
		}
		if last {
			break
		}
		rest = rest[end+1:]
	}
	if trailing && n > 0 {
		out = append(out, '/')
	}
	return out, !bytes.Equal(out, p)
}

// dotSegment reports whether seg is "." (1) or ".." (2), each dot also
// spelled "%2e" in any case, or neither (0).
func dotSegment(seg []byte) int {
	dots := 0
	for len(seg) > 0 && dots < 3 {
		switch {
		case seg[0] == '.':
			seg = seg[1:]
		case len(seg) >= 3 && seg[0] == '%' && seg[1] == '2' && (seg[2] == 'e' || seg[2] == 'E'):
			seg = seg[3:]
		default:
			return 0
		}
		dots++
	}
	if len(seg) > 0 || dots > 2 {
		return 0
	}
	return dots
}

// contentLength parses a guest's Content-Length header: digits only, at
// most 18 of them.
func contentLength(k, v []byte) (int, bool) {
	if len(k) != len("Content-Length") || !bytes.EqualFold(k, []byte("Content-Length")) || len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	n := 0
	for _, ch := range v {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		n = n*10 + int(ch-'0')
	}
	return n, true
}

// forwardResponseHeader refuses framing headers and any name or value that
// could split the response (control characters, non-token names).
func forwardResponseHeader(k, v []byte) bool {
	if len(k) == 0 || len(k) > 256 {
		return false
	}
	var lower [256]byte
	for i, ch := range k {
		if !isTokenChar(ch) {
			return false
		}
		if ch >= 'A' && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		lower[i] = ch
	}
	if name := lower[:len(k)]; droppedResponseHeaders[string(name)] || bytes.HasPrefix(name, []byte("access-control-")) {
		// CORS (every Access-Control-* header, Allow-Private-Network
		// included) is the operator's ([server.cors]), not a plugin's.
		return false
	}
	for _, ch := range v {
		if ch < 0x20 && ch != '\t' || ch == 0x7f {
			return false
		}
	}
	return true
}

func isTokenChar(ch byte) bool {
	switch {
	case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
		return true
	}
	switch ch {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// liveness answers 200 while the process serves.
func (s *Server) liveness(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"status": "ok"})
}

// readiness answers 200 once every plugin is loaded or has failed for
// good, 503 with reasons before that, while a plugin is retrying its load
// after a database error, and while shutting down. The bodies
// are Backstage's root health service's ({"status":"ok"}, and
// {"status":"error","message":...}), with the reasons listed too.
//
// Readiness answers anyone, and only an admin may learn which plugins
// exist (an unknown plugin's routes answer 401 like a known one's): the
// reasons name the plugins for a caller with an admin credential, and
// count them for anyone else ("2 plugins are loading").
func (s *Server) readiness(c *fiber.Ctx) error {
	var reasons []string
	if s.Draining() {
		reasons = append(reasons, "shutting down")
	}
	var waits notReady
	if !s.rt.Loaded() {
		for _, id := range s.rt.IDs() {
			// A slot may be gone between IDs and Slot (a reload
			// swapped the table), as in the loop below.
			if slot := s.rt.Slot(id); slot != nil {
				if st, _ := slot.Status(); st == runtime.StateLoading {
					waits.add(id, "loading")
				}
			}
		}
		if len(waits.whats) == 0 {
			reasons = append(reasons, "plugins are loading")
		}
	}
	for _, id := range s.rt.IDs() {
		if slot := s.rt.Slot(id); slot != nil {
			// Without the error: readiness answers anyone, and the
			// database's error names its user, database and host (the
			// plugin's routes and the log, for the authenticated, have it).
			if why := slot.RetryWhy(); why != "" {
				waits.add(id, "retrying its load "+why)
			}
		}
	}
	if len(waits.whats) > 0 {
		reasons = append(reasons, waits.reasons(s.readinessNames(c))...)
	}
	if len(reasons) > 0 {
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "error", "message": "not ready: " + strings.Join(reasons, "; "), "reasons": reasons})
	}
	return c.JSON(fiber.Map{"status": "ok"})
}

// readinessNames reports whether readiness may name plugins to the
// caller: an admin credential (or authentication turned off). identify
// verified the credential (and audited it if it failed), and the rate
// limiter counted the request.
func (s *Server) readinessNames(c *fiber.Ctx) bool {
	if s.authConfig().Auth.DangerouslyDisable {
		return true
	}
	rs := stateOf(c)
	return rs.principal != nil && rs.principal.Admin
}

// notReady collects the plugins readiness waits for, by what they are
// doing, in order.
type notReady struct {
	whats []string            // "loading", "retrying its load after ..."
	ids   map[string][]string // by what
}

func (n *notReady) add(id, what string) {
	if n.ids == nil {
		n.ids = map[string][]string{}
	}
	if _, ok := n.ids[what]; !ok {
		n.whats = append(n.whats, what)
	}
	n.ids[what] = append(n.ids[what], id)
}

// reasons says, per plugin ("plugin todo is loading") when named, else
// per kind ("2 plugins are loading").
func (n *notReady) reasons(named bool) []string {
	var out []string
	for _, what := range n.whats {
		ids := n.ids[what]
		switch {
		case named:
			for _, id := range ids {
				out = append(out, "plugin "+id+" is "+what)
			}
		case len(ids) == 1:
			out = append(out, "1 plugin is "+what)
		default:
			out = append(out, strconv.Itoa(len(ids))+" plugins are "+what)
		}
	}
	return out
}

// pluginView is one plugin in the admin API.
type pluginView struct {
	ID        string        `json:"id"`
	State     runtime.State `json:"state"`
	LastError string        `json:"last_error"`
	// SHA256 and ABIVersion repeat the running module's, from Info, at the
	// top level where an operator's script looks first.
	SHA256     string       `json:"sha256,omitempty"`
	ABIVersion int          `json:"abi_version,omitempty"`
	Info       *plugin.Info `json:"module,omitempty"`
	// Granted are the capabilities the operator granted; Ungranted the
	// ones the module imports that were not granted (its calls to them
	// are denied): left out, not empty, while no module is known (the
	// module says what it imports: greenroom plugin inspect FILE --config).
	// SHA256, ABIVersion, Info and Ungranted are the serving version's,
	// or, while none serves, those of the module whose load failed after
	// it was read and compiled (Slot.FailedModule).
	Granted      []string  `json:"granted"`
	Ungranted    *[]string `json:"imported_not_granted,omitempty"`
	Interruption string    `json:"interruption,omitempty"`
	// GCMemoryLimit is the soft memory limit, in bytes, the runtime gives
	// the guest's garbage collector (docs/abi.md, "Garbage collector"):
	// left out when it is computed from a secret (limits.memory or
	// retire_memory from the environment).
	GCMemoryLimit uint64 `json:"gc_memory_limit,omitempty"`
	// Limits shows each limit from the environment as [REDACTED]
	// (config.Plugin.LimitSecret), and so do Interruption (of a secret
	// limits.interruptible) and the pool's max (of a secret
	// limits.instances).
	Limits *config.ShownLimits `json:"limits,omitempty"`
	Pool   any                 `json:"pool,omitempty"` // *plugin.Stats or *secretMaxStats
}

// secretMaxStats is a pool's figures whose max, limits.instances, is a
// secret.
type secretMaxStats struct {
	plugin.Stats
	Max string `json:"max"`
}

// shownPool is st as the admin API shows it under pc.
func shownPool(st plugin.Stats, pc *config.Plugin) any {
	if pc.LimitSecret("instances") {
		return &secretMaxStats{Stats: st, Max: config.Redacted}
	}
	return &st
}

func (s *Server) listPlugins(c *fiber.Ctx) error {
	cfg := s.rt.Config()
	out := []pluginView{}
	for _, id := range s.rt.IDs() {
		slot := s.rt.Slot(id)
		if slot == nil {
			continue
		}
		st, lastErr := slot.Status()
		v := pluginView{ID: id, State: st, LastError: lastErr, Granted: []string{}}
		p, pc := slot.Serving()
		if pc == nil {
			pc = cfg.Plugins[id]
		}
		if pc != nil {
			v.Granted = append(v.Granted, pc.Granted()...)
			v.Limits = pc.ShownLimits()
			// A plugin with no version loaded has an empty pool.
			v.Pool = shownPool(plugin.Stats{Max: pc.Limits.Instances}, pc)
		}
		var info *plugin.Info
		if p != nil {
			in := p.Info()
			info, v.Pool = &in, shownPool(p.Stats(), pc)
			v.Interruption = string(p.Interruption())
			if pc.LimitSecret("interruptible") {
				v.Interruption = config.Redacted
			}
			// The soft limit is computed from retire_memory (or memory).
			if !pc.LimitSecret("memory") && !pc.LimitSecret("retire_memory") {
				v.GCMemoryLimit = p.GC().MemoryLimit
			}
		} else {
			// No version serves: the module of a load that failed once
			// it was read (a guest initializer that failed for want of
			// a grant, say) still says what it imports.
			info = slot.FailedModule()
		}
		if info != nil {
			v.Info = info
			v.SHA256, v.ABIVersion = info.SHA256, info.ABIVersion
			ungranted := []string{}
			for _, c := range info.Capabilities {
				if !slices.Contains(v.Granted, c) {
					ungranted = append(ungranted, c)
				}
			}
			v.Ungranted = &ungranted
		}
		out = append(out, v)
	}
	return c.JSON(fiber.Map{"plugins": out})
}

// reload re-reads the config and every plugin (POST
// /.greenroom/plugins/v1/reload). 200 with what happened to each plugin,
// 422 when a plugin failed to load (its previous version, if any, keeps
// serving), 400 when the config is invalid (nothing changes).
func (s *Server) reload(c *fiber.Ctx) error {
	f := s.reloader.Load()
	if f == nil {
		return apiErr(fiber.StatusNotImplemented, "reload_unavailable", "this server was started without a config to reload")
	}
	res, err := (*f)(c.UserContext())
	if err != nil {
		var cerr config.Errors
		if errors.As(err, &cerr) {
			msgs := make([]string, len(cerr))
			for i, e := range cerr {
				msgs[i] = e.Error()
			}
			body := fiber.Map{"error": "config is invalid; nothing was reloaded", "code": "invalid_config", "config_errors": msgs}
			if rs := stateOf(c); rs != nil {
				body["request_id"] = rs.id
			}
			return c.Status(fiber.StatusBadRequest).JSON(body)
		}
		if errors.Is(err, runtime.ErrShuttingDown) {
			// Asked for during server.shutdown_delay (the server still
			// serves): nothing was changed.
			e := apiErr(fiber.StatusServiceUnavailable, "shutting_down", err.Error())
			e.RetryAfter = 1
			return e
		}
		return apiErr(fiber.StatusConflict, "reload_failed", err.Error())
	}
	status := fiber.StatusOK
	switch {
	case res.Superseded:
		// A newer reload took over: it answers for the config.
		status = fiber.StatusConflict
	case res.Canceled():
		// Cut short by a shutdown: not a plugin's failure.
		status = fiber.StatusServiceUnavailable
	case res.Failed():
		status = fiber.StatusUnprocessableEntity
	}
	return c.Status(status).JSON(res)
}

// requestBody is a request's body and what it holds of
// server.request_budget.
type requestBody struct {
	b     []byte
	claim budgetClaim
	// pooled is the reused buffer b lives in, for a small body.
	pooled *[]byte
}

// smallBodies are buffers for bodies of a declared length of at most
// maxPooledBody: taken whole at once and reused, they cost neither an
// allocation nor the copies of a growing buffer.
var smallBodies = sync.Pool{New: func() any { b := make([]byte, maxPooledBody); return &b }}

// release gives the held bytes back, once the call has ended.
func (rb *requestBody) release() {
	rb.claim.release()
	if rb.pooled != nil {
		smallBodies.Put(rb.pooled)
		rb.pooled, rb.b = nil, nil
	}
}

// readBody reads the request's body, at most server.body_limit bytes (a
// chunked body has no Content-Length to refuse it by ahead), taking its
// buffer from its share of server.request_budget. The buffer grows as the
// body arrives (doubling, never past a declared length or the limit), so
// that a client sending slowly holds what it sent. The body holds its
// bytes until release, also when an error is returned. The request's body
// is a stream (fasthttp streams every body). An error answers without
// reading the rest: the HTTP server then drops up to 256 KiB of it, and
// past that closes the connection (lingering, see linger.go).
func (s *Server) readBody(c *fiber.Ctx, id string, body *requestBody) error {
	fr := c.Request()
	limit := int(min(s.cfg.Server.BodyLimit, 1<<31-1))
	want := fr.Header.ContentLength() // -1 for chunked
	if want > 0 && want <= maxPooledBody {
		// Small and declared: its buffer at once, from the pool (the
		// budget counts the declared length).
		if !body.claim.take(int64(want)) {
			return s.budgetSpent(id, "server.request_budget", 0, &body.claim)
		}
		body.pooled = smallBodies.Get().(*[]byte)
		body.b = (*body.pooled)[:0:want]
	}
	// room makes the buffer able to take n more bytes (fewer when the
	// declared length is nearer).
	room := func(n int) error {
		buf := body.b
		if want >= 0 {
			n = min(n, want-len(buf))
		}
		if cap(buf)-len(buf) >= n {
			return nil
		}
		grow := min(max(n, cap(buf)), limit-len(buf))
		if want >= 0 {
			grow = min(grow, want-len(buf))
		}
		more := len(buf) + grow - cap(buf)
		if !body.claim.take(int64(more)) {
			return s.budgetSpent(id, "server.request_budget", int64(len(buf)), &body.claim)
		}
		grown := make([]byte, len(buf), len(buf)+grow) // cap exactly what was taken
		copy(grown, buf)
		body.b = grown
		return nil
	}
	r := fr.BodyStream()
	for want < 0 || len(body.b) < want {
		var n int
		var err error
		if len(body.b) == limit {
			// Full: the body must end here. One byte more is over.
			var probe [1]byte
			if n, err = r.Read(probe[:]); n > 0 {
				return s.bodyTooLarge(c)
			}
		} else {
			if err := room(min(4096, limit-len(body.b))); err != nil {
				return err
			}
			buf := body.b
			n, err = r.Read(buf[len(buf):cap(buf)])
			body.b = buf[:len(buf)+n]
		}
		if err == io.EOF {
			if want >= 0 && len(body.b) < want {
				c.Context().SetConnectionClose()
				return apiErr(fiber.StatusBadRequest, "bad_request", fmt.Sprintf("the request body ended after %d of the %d bytes its Content-Length declares", len(body.b), want))
			}
			break
		}
		if err != nil {
			c.Context().SetConnectionClose()
			// A trailer section with a line ended by a bare LF, whose
			// bytes from that LF on fasthttp never got (see
			// lingerConn.Read): its error may come as an "unexpected
			// EOF".
			if lc, ok := c.Context().Conn().(*lingerConn); ok && lc.badTrailer.Load() {
				return apiErr(fiber.StatusBadRequest, "bad_request", errUnframedTrailer.Error())
			}
			// fasthttp reports a timeout reading a chunked body's
			// trailer section as its ErrTimeout, which has Timeout but
			// is no net.Error.
			var te interface{ Timeout() bool }
			if errors.As(err, &te) && te.Timeout() {
				return apiErr(fiber.StatusRequestTimeout, "request_timeout", "the request body did not arrive within server.read_timeout")
			}
			// fasthttp's message may quote the request (a malformed
			// chunked trailer), which an answer does not repeat.
			return apiErr(fiber.StatusBadRequest, "bad_request", "reading the request body: "+parseErrorMessage(err.Error()))
		}
	}
	return nil
}
