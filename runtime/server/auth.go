package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/cors"
	"github.com/gofiber/fiber/v2/middleware/limiter"
	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/auth"
	"github.com/greenroom-dev/greenroom/runtime/config"
)

// This file is the server's access control (docs/auth.md): who the caller
// is (identify), whether they may call a plugin route (authorizePlugin)
// or the admin API (requireAdmin), the per-principal rate limit, CORS and
// the audit log.

// realm is the realm of every WWW-Authenticate challenge.
const realm = `Bearer realm="greenroom"`

// newAuthenticator builds the authenticator and says loudly at every start
// when the server is open or closed to everybody.
func newAuthenticator(cfg *config.Config, log *logrus.Logger) *auth.Authenticator {
	a, _ := renewAuthenticator(nil, nil, cfg, log)
	return a
}

// renewAuthenticator builds the authenticator that replaces old (nil at
// start), keeping old's JWT keys when [auth.jwt] did not change. It
// reports false, having built nothing, when wait (a reload's context; nil
// at start) ended before a new JWKS URL's first fetch answered.
func renewAuthenticator(wait context.Context, old *auth.Authenticator, cfg *config.Config, log *logrus.Logger) (*auth.Authenticator, bool) {
	a, err := old.Renew(&cfg.Auth, auth.Options{Log: log, Wait: wait})
	if errors.Is(err, auth.ErrAbandoned) {
		log.WithError(err).Info("reload: stopped waiting for the new jwks_url's first fetch; JWTs are checked with the keys held before it until the next reload")
		return nil, false
	}
	if err != nil {
		// Only a JWKS URL the fetcher cannot use gets here; fail closed
		// for JWTs and keep the static tokens.
		log.WithError(err).Error("JWT authentication is unavailable: every JWT is refused")
		a, _ = auth.New(&config.Auth{Tokens: cfg.Auth.Tokens}, auth.Options{Log: log})
	}
	switch {
	case cfg.Auth.DangerouslyDisable:
		log.Warn("auth.dangerously_disable = true: AUTHENTICATION IS OFF. Every plugin route and the admin API answer anybody who can reach " + cfg.Server.Listen + "; never run this way outside a sandboxed development machine")
	case !a.Configured():
		log.Warn("NO CREDENTIALS ARE CONFIGURED ([auth.tokens.<name>] or [auth.jwt]): every plugin route except the public routes answers 401 and the admin API is unreachable. Configure a credential, or use `greenroom dev` for a development token")
	}
	for _, w := range cfg.Warnings() {
		log.Warn("config: " + w)
	}
	return a, true
}

// healthPrefix is where the health endpoints live; routing is
// case-sensitive, and so is this check: /.greenroom/HEALTH/ is the admin
// API's, asks for its credential and is rate-limited.
const healthPrefix = "/.greenroom/health/"

func isHealth(c *fiber.Ctx) bool {
	return strings.HasPrefix(c.Path(), healthPrefix)
}

// hasCredential reports whether the request carries an Authorization
// header (even an empty one).
func hasCredential(c *fiber.Ctx) bool {
	return len(c.Request().Header.PeekAll(fiber.HeaderAuthorization)) > 0
}

// unlimited says which requests the rate limiter does not count: health
// probes without a credential.
func unlimited(c *fiber.Ctx) bool {
	return isHealth(c) && !hasCredential(c)
}

// identify verifies the request's credential, if it carries one, and
// records the result on the request: the decision is made where the
// route is known (authorizePlugin, requireAdmin), after the rate limiter
// has counted the request against the caller.
//
// A health request is identified only when it carries a credential
// (readiness names plugins to an admin one); it is then rate-limited and
// audited like any other request, so that readiness cannot serve as an
// unlimited oracle for guessing credentials. A probe sends none.
func (s *Server) identify(c *fiber.Ctx) error {
	health := isHealth(c)
	if health && !hasCredential(c) {
		return c.Next()
	}
	rs := stateOf(c)
	s.authenticate(c, rs)
	var ae *auth.Error
	if health && errors.As(rs.authErr, &ae) {
		// Answered all the same (health is unauthenticated), but a
		// failed credential is recorded as anywhere else.
		s.audit(c, rs, "denied", fiber.StatusUnauthorized, "", ae.Reason+"; the health endpoint answers without a credential")
	}
	return c.Next()
}

// authenticate verifies the request's credential, if it carries one, with
// the credentials in force now, and records the result on rs.
func (s *Server) authenticate(c *fiber.Ctx, rs *reqState) {
	rs.principal, rs.authErr, rs.subject, rs.credential = nil, nil, "", ""
	rs.authn = s.authn.Load()
	all := c.Request().Header.PeekAll(fiber.HeaderAuthorization)
	switch {
	case len(all) > 1:
		// Two credentials are ambiguous (which one would a proxy in front,
		// or a log, attribute the request to?): neither counts, also when
		// one of them is empty.
		rs.authErr = &auth.Error{Public: "send one Authorization header, not several", Reason: "more than one Authorization header"}
	case len(all) == 1 && len(all[0]) > 0:
		// s.base, not the fasthttp context: deriving a timeout from a
		// context the standard library does not know costs a goroutine.
		rs.principal, rs.authErr = rs.authn.Authenticate(s.base, all[0])
		if rs.principal != nil {
			rs.subject, rs.credential = rs.principal.Subject, rs.principal.Credential
		}
	}
}

// authorizePlugin decides whether the request may call plugin id at path
// sub (relative to the mount, as sent). It returns the principal the
// plugin sees (nil: none), or the 401/403 error.
//
//   - A credential valid for the plugin: allowed, with its principal.
//   - Otherwise, a public route (asked by the plugin and listed by the
//     operator): allowed, as no principal. A credential that is invalid or
//     restricted to other plugins is ignored there, not rejected.
//   - Otherwise: 403 for a valid credential restricted to other plugins,
//     401 for none or an invalid one.
func (s *Server) authorizePlugin(c *fiber.Ctx, rs *reqState, id string, sub []byte) (*auth.Principal, error) {
	p := rs.principal
	if p != nil && p.AllowsPlugin(id) {
		return p, nil
	}
	if s.authConfig().Auth.DangerouslyDisable {
		return nil, nil
	}
	public, cut := false, false
	if s.listedPublic(id, sub) {
		public, cut = s.rt.PublicAfterLoad(s.base, id, sub)
	}
	if public {
		return nil, nil
	}
	if cut && p == nil {
		// A public route's request that waited for its plugin's load at
		// start-up, which shutdown cut short: it could not have been
		// served, and was not refused for want of a credential.
		e := apiErr(fiber.StatusServiceUnavailable, "shutting_down", "the server is shutting down; retry (on another replica)")
		e.RetryAfter = 1
		return nil, e
	}
	if p != nil {
		reason := fmt.Sprintf("%s is restricted to plugins %s", p.Credential, strings.Join(p.Plugins(), ", "))
		return nil, s.deny(c, rs, fiber.StatusForbidden, id, reason,
			fmt.Sprintf("%s may not call plugin %s", p.Subject, id))
	}
	return nil, s.unauthenticated(c, rs, id)
}

// authConfig is the config whose [auth] is in force: the one the server's
// credentials were built from. A reload asked for during the start-up
// load puts it in force at once (greenroom serve hands it to Reload),
// while the runtime's config changes only once the runtime's reload can
// begin, after that load: read from the runtime's, a dangerously_disable
// the reload turned off still let everybody in meanwhile.
func (s *Server) authConfig() *config.Config { return s.access.Load() }

// listedPublic reports whether the config in force (authConfig) lists
// sub in plugin id's public_routes: a route a reload closed during the
// start-up load is closed at once, as its credentials apply at once
// (the runtime's Public checks its own config too).
func (s *Server) listedPublic(id string, sub []byte) bool {
	pc := s.authConfig().Plugins[id]
	return pc != nil && slices.Contains(pc.PublicRoutes, string(sub))
}

func (s *Server) unauthenticated(c *fiber.Ctx, rs *reqState, plugin string) error {
	// A refused caller keeps no connection: kept alive, each held a
	// connection slot for idle_timeout, and one client sending one
	// refused request per connection took every slot of
	// server.max_connections (an audit). A body still coming is not read
	// (the answer goes at once; the close lingers: see linger.go).
	c.Context().SetConnectionClose()
	var ae *auth.Error
	if errors.As(rs.authErr, &ae) {
		e := s.deny(c, rs, fiber.StatusUnauthorized, plugin, ae.Reason, ae.Public)
		e.Headers = map[string]string{fiber.HeaderWWWAuthenticate: realm + `, error="invalid_token", error_description="` + ae.Public + `"`}
		return e
	}
	e := s.deny(c, rs, fiber.StatusUnauthorized, plugin, "no credential", "authentication required: send the header Authorization: Bearer TOKEN")
	e.Headers = map[string]string{fiber.HeaderWWWAuthenticate: realm}
	return e
}

// deny writes the audit line of a refused request and returns its error.
func (s *Server) deny(c *fiber.Ctx, rs *reqState, status int, plugin, reason, msg string) *APIError {
	s.audit(c, rs, "denied", status, plugin, reason)
	e := &APIError{Status: status, Code: codeForStatus(status), Message: msg, Plugin: plugin}
	if status == fiber.StatusForbidden {
		e.Headers = map[string]string{fiber.HeaderWWWAuthenticate: realm + `, error="insufficient_scope"`}
	}
	return e
}

// requireAdmin is the one place where admin authentication is enforced for
// everything under /.greenroom/ except health: an admin credential, or
// 401 (none or invalid) / 403 (valid, not an admin). Every admin request
// that passes is audited with its outcome.
func (s *Server) requireAdmin(c *fiber.Ctx) error {
	rs := stateOf(c)
	if !s.authConfig().Auth.DangerouslyDisable {
		p := rs.principal
		if p == nil {
			return s.unauthenticated(c, rs, "")
		}
		if !p.Admin {
			return s.deny(c, rs, fiber.StatusForbidden, "", p.Credential+" is not an admin credential",
				p.Subject+" may not use the admin API")
		}
	}
	err := c.Next()
	status := c.Response().StatusCode()
	var ae *APIError
	if errors.As(err, &ae) {
		status = ae.Status
	} else if err != nil {
		status = fiber.StatusInternalServerError
	}
	s.audit(c, rs, "admin", status, "", "")
	return err
}

// audit writes one structured line: who (principal, credential, ip), what
// (method, path, plugin) and the outcome (status, reason). It never holds
// a credential: principals name theirs ("token:ci", "jwt"), refusals say
// why without repeating it, and the query string is left out.
func (s *Server) audit(c *fiber.Ctx, rs *reqState, event string, status int, plugin, reason string) {
	who, cred := "anonymous", "none"
	if p := rs.principal; p != nil {
		who, cred = p.Subject, p.Credential
	} else if rs.authErr != nil && !errors.Is(rs.authErr, auth.ErrNoCredential) {
		cred = "invalid"
	}
	f := logrus.Fields{
		"audit":      event,
		"principal":  who,
		"credential": cred,
		"ip":         rs.ip(),
		"method":     c.Method(),
		"path":       s.loggedPath(c.Request()),
		"status":     status,
		"request_id": rs.id,
	}
	// Only a configured plugin is named: the path's first segment is
	// otherwise the client's text (a JWT put there, say), which the path
	// field shows redacted (loggedPath).
	if plugin != "" && s.rt.Slot(plugin) != nil {
		f["plugin"] = plugin
	}
	if reason != "" {
		f["reason"] = reason
	}
	level, msg := logrus.InfoLevel, "admin action"
	if event == "denied" {
		level, msg = logrus.WarnLevel, "access denied"
	}
	// The audit log is written whatever [log] level says: at the level
	// itself when that is above the line's own. An operator who raised
	// it to warn (to quiet the access log) lost every admin line, and
	// at error every refusal too. (The level is one of debug to error.)
	if !s.log.IsLevelEnabled(level) {
		level = max(s.log.GetLevel(), logrus.ErrorLevel)
	}
	s.log.WithFields(f).Log(level, msg)
}

// rateLimiter is Fiber's limiter keyed by principal: the Key of a valid
// credential's principal (its kind, and a JWT's issuer, with its
// subject), else the client's IP (anonymousKey). rate_limit = "N/unit" with
// rate_burst = B allows B requests per window of B/N units (whole seconds,
// at least one); B defaults to N, so "100/s" is 100 requests per second.
// Health probes without a credential are not limited.
func (s *Server) rateLimiter() fiber.Handler {
	r := s.cfg.Server.RateLimit
	burst := s.cfg.Server.RateBurst
	if burst <= 0 {
		burst = max(1, int(math.Ceil(r.N)))
	}
	window := time.Duration(float64(burst) / r.PerSecond() * float64(time.Second))
	// A rate or burst from the environment is a secret, and so are the
	// window and budget computed from them: the audit line does not quote
	// them, and the X-RateLimit-* headers the limiter adds to every
	// answer (X-RateLimit-Limit is the burst) are taken out again.
	// Retry-After, which a 429 needs, stays.
	secret := s.cfg.IsSecretPath("server.rate_limit") || s.cfg.IsSecretPath("server.rate_burst") || s.cfg.IsSecretPath("server.burst")
	exceeded := fmt.Sprintf("rate limit of %d requests per %s exceeded", burst, max(window, time.Second))
	if secret {
		exceeded = "rate limit of " + config.Redacted + " exceeded"
	}
	h := limiter.New(limiter.Config{
		Next:       unlimited,
		Max:        burst,
		Expiration: max(window, time.Second),
		KeyGenerator: func(c *fiber.Ctx) string {
			if rs := stateOf(c); rs != nil && rs.principal != nil {
				return "principal:" + rs.principal.Key()
			}
			if rs := stateOf(c); rs != nil {
				return anonymousKey(rs.ip())
			}
			return anonymousKey(c.IP())
		},
		LimitReached: func(c *fiber.Ctx) error {
			rs := stateOf(c)
			retry, _ := strconv.Atoi(string(c.Response().Header.Peek(fiber.HeaderRetryAfter)))
			plugin := ""
			if id, _ := splitPluginPath(c.Request().URI().PathOriginal()); s.rt.Slot(id) != nil {
				plugin = id
				rs.plugin = id // counted under it too, as a 401 or 403 is
			}
			s.audit(c, rs, "denied", fiber.StatusTooManyRequests, plugin, exceeded)
			if rs.principal == nil { // as a 401: no connection kept for it
				c.Context().SetConnectionClose()
			}
			return &APIError{Status: fiber.StatusTooManyRequests, Code: "rate_limited", RetryAfter: max(retry, 1),
				Message: "too many requests: rate limit exceeded, retry later"}
		},
	})
	if !secret {
		return h
	}
	return func(c *fiber.Ctx) error {
		err := h(c)
		for _, k := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
			c.Response().Header.Del(k)
		}
		return err
	}
}

// anonymousKey is the rate limiter's key for a caller without a valid
// credential: its IP address, or for IPv6 the /64 it is in. One host is
// given a whole /64 (SLAAC, a cloud VM's prefix) and may use any address
// of it: keyed by address, it had a budget per address, 2^64 of them, and
// grew the limiter's memory with each.
func anonymousKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is6() || a.Is4In6() {
		return "ip:" + ip
	}
	p, _ := a.WithZone("").Prefix(64)
	return "ip:" + p.String()
}

// corsHandler is Fiber's CORS middleware for [server.cors]. It answers
// preflight requests itself, before any credential is asked for.
func (s *Server) corsHandler() fiber.Handler {
	c := s.cfg.Server.CORS
	return cors.New(cors.Config{
		AllowOrigins:     strings.Join(c.Origins, ","),
		AllowMethods:     strings.Join(c.Methods, ","),
		AllowHeaders:     strings.Join(c.Headers, ","),
		AllowCredentials: c.AllowCredentials,
		ExposeHeaders:    "X-Request-Id,Retry-After",
		MaxAge:           c.MaxAge,
	})
}

// envelopeType maps a principal type onto the request envelope's.
func envelopeType(t auth.Type) uint8 {
	switch t {
	case auth.TypeUser:
		return hostfuncs.PrincipalUser
	case auth.TypeService:
		return hostfuncs.PrincipalService
	}
	return hostfuncs.PrincipalNone
}
