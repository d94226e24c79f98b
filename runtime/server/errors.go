package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"
	"github.com/valyala/fasthttp"

	"github.com/greenroom-dev/greenroom/runtime/logging"
)

// APIError is the JSON body of every error greenroom itself answers with,
// on plugin routes and on the admin API alike.
type APIError struct {
	Status    int    `json:"-"`
	Message   string `json:"error"`
	Code      string `json:"code"`
	Plugin    string `json:"plugin,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// RetryAfter, in seconds, is sent as the Retry-After header when set.
	RetryAfter int `json:"-"`
	// Headers are extra response headers (WWW-Authenticate, ...).
	Headers map[string]string `json:"-"`
}

func (e *APIError) Error() string { return e.Message }

func apiErr(status int, code, msg string) *APIError {
	return &APIError{Status: status, Code: code, Message: msg}
}

// errorHandler is Fiber's error handler: every error becomes an APIError
// response.
// next runs the rest of the request's handlers and turns a panic in
// greenroom's own handling into a 500 with the stack in the log, so that
// one request cannot take the server down (fasthttp does not recover) and
// the request is still counted and access-logged. A plugin's own crash
// never gets here: it is a trap inside its sandbox, answered by the call
// path. It is a last resort, not a way to carry on: what the panicking
// code held without a deferred release (a lock, a pooled instance) stays
// held, so a panic logged here is a bug to fix.
func (s *Server) next(c *fiber.Ctx, rs *reqState) (err error) {
	defer func() {
		if v := recover(); v != nil {
			s.log.WithFields(logrus.Fields{
				"method":     rs.method,
				"path":       s.loggedPath(c.Request()),
				"request_id": rs.id,
				"stack":      string(debug.Stack()),
			}).Errorf("panic serving a request: %v", v)
			err = apiErr(fiber.StatusInternalServerError, "internal", "internal server error")
		}
	}()
	return c.Next()
}

// redactAnswer removes the config's secrets from an admin API answer, as
// the log does from its lines: a plugin's load error, a task's last error
// or a module's pinned sum may quote one. (Error pages are redacted by
// errorHandler.)
func (s *Server) redactAnswer(c *fiber.Ctx) error {
	err := c.Next()
	if red := logging.RedactorOf(s.log); red != nil && err == nil {
		if b := c.Response().Body(); len(b) > 0 {
			if r := red.RedactJSON(b); !bytes.Equal(r, b) {
				c.Response().SetBodyRaw(r)
			}
		}
	}
	return err
}

func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	var ae *APIError
	if !errors.As(err, &ae) {
		var fe *fiber.Error
		if errors.As(err, &fe) {
			ae = apiErr(fe.Code, codeForStatus(fe.Code), parseErrorMessage(fe.Message))
		} else {
			s.log.WithError(err).WithField("path", s.loggedPath(c.Request())).Error("internal error")
			ae = apiErr(fiber.StatusInternalServerError, "internal", "internal server error")
		}
	}
	rs := stateOf(c)
	if ae.RequestID == "" && rs != nil {
		ae.RequestID = rs.id
	}
	if rs == nil && ae.RequestID == "" {
		// fasthttp refused the request before any handler ran (headers
		// over server.header_limit, a malformed or too slow request): it
		// gets its id, its count and its access log line here. fasthttp
		// leaves the request at its defaults (GET /, no headers), which
		// must not be logged as what the client sent.
		ae.RequestID = requestIDFrom("")
		c.Set(fiber.HeaderXRequestID, ae.RequestID)
		defer s.refusedEarly(c, ae.RequestID)
	}
	// An error page never shows a config secret, whatever its message
	// quotes (a load error naming a path or a pin that holds one).
	if red := logging.RedactorOf(s.log); red != nil {
		if m := red.Redact([]byte(ae.Message)); string(m) != ae.Message {
			redacted := *ae
			redacted.Message = string(m)
			ae = &redacted
		}
	}
	if ae.RetryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(ae.RetryAfter))
	}
	for k, v := range ae.Headers {
		c.Set(k, v)
	}
	return c.Status(ae.Status).JSON(ae)
}

// connErrors wraps fasthttp's handler of the errors it meets reading a
// request, next (Fiber's: it maps the error to a status and calls
// errorHandler), for the errors that are the connection's rather than a
// request's:
//   - a connection that sent no byte before it closed, was reset or
//     reached read_timeout (or a shutdown ended its reads) made no
//     request: it is closed without an answer, an access log line or a
//     count (a load balancer's TCP check, a client's spare connection).
//     It was answered 408, or 502 when reset, and counted so. fasthttp
//     closes a kept-alive connection that sends no next request the same
//     way.
//   - a connection reset partway through a request's head sent a
//     malformed request: 400. Fiber answers any network error 502 Bad
//     Gateway, a proxy's status about its upstream.
func (s *Server) connErrors(next func(*fasthttp.RequestCtx, error)) func(*fasthttp.RequestCtx, error) {
	return func(ctx *fasthttp.RequestCtx, err error) {
		if lc, ok := ctx.Conn().(*lingerConn); ok && !lc.got.Load() {
			// fasthttp writes what the handler leaves (a bare 200),
			// then closes the connection.
			lc.mute.Store(true)
			return
		}
		var ne net.Error
		if errors.As(err, &ne) && !ne.Timeout() {
			err = errConnFailed
		}
		next(ctx, err)
	}
}

// errConnFailed stands for the network error of a connection that failed
// while a request was read (see connErrors).
var errConnFailed = errors.New("the connection failed while the request was read")

// refusedEarly counts and access-logs a request fasthttp refused before
// greenroom's handlers (errorHandler), once its answer is written.
func (s *Server) refusedEarly(c *fiber.Ctx, id string) {
	// fasthttp has not stamped the request's start yet: for a
	// connection's first request its duration runs from the connection's
	// start; a later request's start is unknown (Time still holds the
	// previous one's, idle time included), so it is logged as 0.
	var took time.Duration
	if fc := c.Context(); fc.ConnRequestNum() == 0 && !fc.ConnTime().IsZero() {
		took = time.Since(fc.ConnTime())
	}
	// The head was not read: the peer's address.
	s.record(c.Context(), "", id, peerAddr(c.Context()), "", "", "", "", took)
}

// parseErrorMessage keeps the reason of an HTTP parse error and drops the
// request bytes fasthttp quotes after it ("...: buffer size=148, contents:
// \"POST ... Authorization: Bearer ...\""): the answer should not repeat a
// credential, not even to the client that sent it.
//
// Its request-line errors quote the whole head instead (`invalid request
// uri "/x" in "GET /x HTTP/1.1\r\nAuthorization: ..."`), so every quoted
// part is left out too: `invalid request uri "…" in "…"`.
func parseErrorMessage(msg string) string {
	if i := strings.Index(msg, ": buffer size="); i >= 0 {
		msg = msg[:i]
	}
	if !strings.Contains(msg, `"`) {
		return msg
	}
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		if msg[i] != '"' {
			b.WriteByte(msg[i])
			continue
		}
		// Skip to the closing quote (%q escapes quotes inside).
		for i++; i < len(msg) && msg[i] != '"'; i++ {
			if msg[i] == '\\' {
				i++
			}
		}
		b.WriteString(`"…"`)
	}
	return b.String()
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusRequestEntityTooLarge:
		return "body_too_large"
	case http.StatusRequestHeaderFieldsTooLarge:
		return "headers_too_large"
	case http.StatusRequestTimeout:
		return "request_timeout"
	case http.StatusTooManyRequests:
		return "rate_limited"
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusForbidden:
		return "forbidden"
	}
	if status >= 500 {
		return "internal"
	}
	return "error"
}

// methodNotAllowed answers a known path asked with another method: 405
// with Allow. A GET route also answers HEAD.
func methodNotAllowed(method string) fiber.Handler {
	allow := method
	if method == fiber.MethodGet {
		allow = "GET, HEAD"
	}
	return func(c *fiber.Ctx) error {
		e := apiErr(fiber.StatusMethodNotAllowed, "method_not_allowed", c.Method()+" is not allowed here: use "+method)
		e.Headers = map[string]string{fiber.HeaderAllow: allow}
		return e
	}
}

// knownMethod reports whether Fiber routes method; it answers any other
// with a plain-text 400 before any handler or middleware runs.
func knownMethod(method []byte) bool {
	for _, m := range fiber.DefaultMethods {
		if string(method) == m {
			return true
		}
	}
	return false
}

// guard wraps Fiber's request handler, for what must be answered before
// Fiber sees a request:
//   - a method Fiber does not route (PROPFIND, BREW, ...), which it would
//     answer with a plain-text 400 before any handler: greenroom's JSON
//     error, 501 as RFC 9110 asks of a server that does not implement a
//     method;
//   - an HTTP version other than 1.1 and 1.0 (fasthttp serves HTTP/9.9 as
//     1.1): 505, and the connection is closed;
//   - a request with both Transfer-Encoding and Content-Length, a header
//     line ended by a bare LF, a folded header line or a header name that
//     is not a token (framingProblem), whose headers and body a proxy in
//     front may have read differently (request smuggling): 400, and the
//     connection is closed. Checked first, whatever the method and
//     version: a 501 kept the connection open, its next request read
//     where fasthttp's framing put it.
//
// Each gets a request id, a count in the metrics and an access log line.
// No credential is asked for: the answer says nothing about any plugin.
func (s *Server) guard(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if lc, ok := ctx.Conn().(*lingerConn); ok {
			lc.handling()
		}
		framing := framingProblem(ctx.Request.Header.RawHeaders())
		switch {
		case framing != "":
			// First: any other answer keeps the connection, whose next
			// request would begin where fasthttp's framing says.
			ctx.SetConnectionClose()
			s.refuseRaw(ctx, apiErr(fiber.StatusBadRequest, "bad_request", framing), shownMethod(ctx.Method()))
		case !knownMethod(ctx.Method()):
			method := shownMethod(ctx.Method())
			s.refuseRaw(ctx, notImplemented(method), method)
		case !supportedProtocol(ctx.Request.Header.Protocol()):
			ctx.SetConnectionClose()
			s.refuseRaw(ctx, apiErr(fiber.StatusHTTPVersionNotSupported, "http_version_not_supported",
				"HTTP version "+strconv.Quote(string(ctx.Request.Header.Protocol()))+" is not supported; greenroom serves HTTP/1.1 and HTTP/1.0"), string(ctx.Method()))
		default:
			next(ctx)
		}
	}
}

// notImplemented is the answer to a request with method (as shownMethod
// shows it), which greenroom does not implement: 501, as RFC 9110 asks.
func notImplemented(method string) *APIError {
	return apiErr(fiber.StatusNotImplemented, "not_implemented",
		"HTTP method "+strconv.Quote(method)+" is not implemented; greenroom serves "+strings.Join(fiber.DefaultMethods, ", "))
}

// shownMethod is a request's method as an answer and the log show it: at
// most 64 bytes, a longer one cut, with "...".
func shownMethod(m []byte) string {
	if len(m) > 64 {
		return string(m[:64]) + "..."
	}
	return string(m)
}

// supportedProtocol reports whether proto, a request line's version, is
// one greenroom speaks.
func supportedProtocol(proto []byte) bool {
	return string(proto) == "HTTP/1.1" || string(proto) == "HTTP/1.0"
}

// refuseRaw answers ae on a request Fiber has not seen, with its request
// id (X-Request-Id when valid), and counts and access-logs it.
func (s *Server) refuseRaw(ctx *fasthttp.RequestCtx, ae *APIError, method string) {
	start := time.Now()
	ae.RequestID = requestIDFrom(string(ctx.Request.Header.Peek(fiber.HeaderXRequestID)))
	body, _ := json.Marshal(ae)
	ctx.Response.Header.Set(fiber.HeaderXRequestID, ae.RequestID)
	ctx.SetStatusCode(ae.Status)
	ctx.SetContentType(fiber.MIMEApplicationJSON)
	ctx.SetBody(body)
	if s.draining.Load() {
		ctx.SetConnectionClose()
	}
	o, _ := s.proxies.Load().client(ctx)
	s.record(ctx, method, ae.RequestID, o.client, "", "", "", "", time.Since(start))
}

// framingProblem says what in raw, a request's header lines as received,
// servers may read differently, or "" when nothing:
//   - both a Transfer-Encoding (any coding) and a Content-Length header.
//     The parsed header cannot tell: fasthttp drops Content-Length for a
//     chunked body, and sets it to 0 once an empty one is read.
//   - a header line ended by a bare LF, which fasthttp takes for a line's
//     end: a proxy in front that does not reads the next line as part of
//     the header's value ("X: a\nTransfer-Encoding: chunked" is one header
//     to it, and the request has no body), and passes greenroom a body it
//     never framed. (A head ended by an empty line that is not a CRLF
//     after a CRLF is not read at all by fasthttp: on a connection's
//     first request, a later one whose head begins a read, or one
//     pipelined behind a request with a body or without, lingerConn.Read
//     refuses it, 400.)
//   - a folded header line (obs-fold: one that begins with a space or a
//     tab), which fasthttp joins to the line before: a proxy in front
//     that does not may read it as a header of its own (" Transfer-
//     Encoding: chunked" after "X: a" is X's value to fasthttp, which
//     then reads the body as the next request). RFC 9112 lets a server
//     refuse it.
//   - a header name that is not a token ("X A"), which fasthttp passed
//     on to the plugin and net/http refuses.
//   - a Transfer-Encoding other than chunked alone: fasthttp refuses
//     most (gzip, "chunked, chunked") but read identity as no body and
//     the body as the connection's next request, which a proxy in front
//     may have passed on as a body; RFC 9112 has a server answer 400
//     when chunked is not the last coding.
func framingProblem(raw []byte) string {
	te, cl := false, false
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
			if len(line) == 0 || line[len(line)-1] != '\r' {
				return "a header line of the request ends with a bare LF, which servers may read differently; end each line with CRLF"
			}
		} else {
			raw = nil
		}
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			return "a header line of the request is folded (begins with a space or tab), which servers may read differently; send each header on one line"
		}
		k, _, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		if !isToken(k) {
			return "a header name of the request has a character a header name may not have (a space, a quote, a separator); send names made of letters, digits and !#$%&'*+-.^_`|~"
		}
		k = bytes.TrimSpace(k)
		if bytes.EqualFold(k, []byte("transfer-encoding")) {
			_, v, _ := bytes.Cut(line, []byte(":"))
			if !bytes.EqualFold(bytes.Trim(v, " \t\r"), []byte("chunked")) {
				return "the request has a Transfer-Encoding other than chunked, whose body servers may read differently; send a chunked body or a Content-Length"
			}
			te = true
		}
		cl = cl || bytes.EqualFold(k, []byte("content-length"))
	}
	if te && cl {
		return "the request has both Transfer-Encoding and Content-Length, which servers may read differently; send one"
	}
	return ""
}

// isToken reports whether name is an RFC 9110 token: a header name.
func isToken(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
