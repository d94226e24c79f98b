// Package urlreader is the provider behind greenroom's URL reader
// capability: outbound GET and HEAD requests for plugins, allowed only where
// the operator's [reading] allow list and the plugin's grant both match,
// with every address checked at connect time (SSRF protection), every
// redirect checked again, bodies and time bounded, and integration tokens
// added by the host for their exact host only.
//
// It knows net/http, not wazero: runtime/host.go turns its errors into ABI
// error codes. docs/urlreader.md describes the rules.
package urlreader

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/config"
)

// Limits that are not configurable.
const (
	// MaxRedirects is the most redirects a read follows.
	MaxRedirects = 5
	maxURL       = 8 << 10
	maxHeaders   = 64 << 10
)

// Kind classifies a failed read.
type Kind int

const (
	Invalid     Kind = iota + 1 // malformed request or URL
	Denied                      // a capability, allow rule, grant or address rule refused
	NotModified                 // a conditional read found the resource unchanged
	TooLarge                    // the body is over reading.max_bytes
	Timeout                     // reading.timeout or a deadline passed
	Failed                      // network, DNS or TLS failure, too many redirects
)

var kindNames = map[Kind]string{Invalid: "invalid", Denied: "denied", NotModified: "not_modified", TooLarge: "too_large", Timeout: "timeout", Failed: "failed"}

func (k Kind) String() string { return kindNames[k] }

// Error is a failed read. Msg is safe to show the plugin: it never holds a
// credential.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func errorf(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// KindOf returns the Kind of err, Failed for errors that are not *Error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Failed
}

// Request is one read.
type Request struct {
	URL string
	// Method is GET or HEAD; "" means GET.
	Method string
	// Header holds request headers from the plugin (If-None-Match,
	// Accept, ...). Credentials, hop-by-hop and routing headers are
	// refused: see deniedHeaders.
	Header [][2]string
	// Deadline is the plugin's own deadline for this read, or zero.
	Deadline time.Time
}

// Response is a successful read (any HTTP status but 304, which is the
// NotModified error).
type Response struct {
	Status       int
	URL          string // after redirects
	ETag         string
	LastModified string
	Header       [][2]string
	Body         []byte
}

// Resolver looks up the addresses of a host name; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options change how a Reader connects. Production code sets none of them;
// they exist for tests, and none can be set from config.toml.
type Options struct {
	// Resolver replaces net.DefaultResolver (tests map names to local
	// servers).
	Resolver Resolver
	// TLSConfig replaces the default TLS client config (tests trust the
	// certificate of an httptest.Server).
	TLSConfig *tls.Config
	// TestOnlyReachable makes these exact address:port pairs reachable
	// although they are internal (loopback test servers). New refuses it
	// outside a test binary (testing.Testing()).
	TestOnlyReachable []netip.AddrPort
	// UserAgent is sent when the plugin sets none; default
	// "greenroom-urlreader".
	UserAgent string
}

// Reader reads URLs for every plugin of a runtime. Its rules come from the
// config; each plugin reads through For with its own grants.
type Reader struct {
	rules     []allowRule
	internal  map[string]bool // exact hosts allowed to resolve internally
	maxBytes  int64
	timeout   time.Duration
	tokens    map[string]token  // by config.IntegrationHost
	denyHdr   map[string]string // lowercase header name → why a plugin may not set it
	resolver  Resolver
	reachable map[netip.AddrPort]bool
	dialer    *net.Dialer
	transport *http.Transport
	userAgent string
}

// token is an integration credential: a header added to requests for one
// exact host (on one port when the integration names it), over https, or
// over http where an allow rule says scheme = "http" for the URL.
type token struct {
	src    string // "integrations.github[0]"
	header string
	value  string // the header's value
	secret string // the token itself
}

// New builds the reader of cfg's [reading] and [integrations] tables.
func New(cfg *config.Config, opts Options) (*Reader, error) {
	if len(opts.TestOnlyReachable) > 0 && !testing.Testing() {
		return nil, errors.New("urlreader: TestOnlyReachable is for tests only")
	}
	r := &Reader{
		rules:     parseAllow(cfg.Reading.Allow),
		internal:  map[string]bool{},
		maxBytes:  int64(cfg.Reading.MaxBytes),
		timeout:   cfg.Reading.Timeout.D(),
		tokens:    map[string]token{},
		denyHdr:   map[string]string{},
		resolver:  opts.Resolver,
		reachable: map[netip.AddrPort]bool{},
		userAgent: opts.UserAgent,
	}
	if r.resolver == nil {
		r.resolver = net.DefaultResolver
	}
	if r.userAgent == "" {
		r.userAgent = "greenroom-urlreader"
	}
	for _, ap := range opts.TestOnlyReachable {
		r.reachable[ap] = true
	}
	for _, rule := range r.rules {
		if rule.internal {
			r.internal[rule.host.exact] = true
		}
	}
	for h, why := range deniedHeaders {
		r.denyHdr[h] = why
	}
	for _, kind := range []string{"github", "gitlab", "bitbucket", "generic"} {
		for i, in := range cfg.Integrations.List(kind) {
			if in.Token == "" {
				continue // e.g. token = "${GITHUB_TOKEN:-}" with the variable unset
			}
			t := token{src: fmt.Sprintf("integrations.%s[%d]", kind, i), secret: in.Token}
			switch {
			case kind == "gitlab":
				t.header, t.value = "PRIVATE-TOKEN", in.Token
			case kind == "generic" && in.Header != "":
				t.header, t.value = http.CanonicalHeaderKey(in.Header), in.Token
			default:
				t.header, t.value = "Authorization", "Bearer "+in.Token
			}
			key, err := config.IntegrationHost(in.Host)
			if err != nil {
				return nil, fmt.Errorf("integrations.%s[%d].host: %w", kind, i, err)
			}
			r.tokens[key] = t
			r.denyHdr[strings.ToLower(t.header)] = "it carries integration credentials, which the host adds from [[integrations]]"
		}
	}
	r.dialer = &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, ControlContext: r.control}
	r.transport = &http.Transport{
		Proxy:                  nil, // a proxy would be the only address dialled: never
		DialContext:            r.dial,
		TLSClientConfig:        opts.TLSConfig,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    10 * time.Second,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    32,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: maxHeaders,
		ExpectContinueTimeout:  time.Second,
	}
	return r, nil
}

// Close releases idle connections.
func (r *Reader) Close() { r.transport.CloseIdleConnections() }

// deniedHeaders are request headers a plugin may not set, with the reason.
var deniedHeaders = map[string]string{
	"authorization":       "it carries credentials, which the host adds from [[integrations]]",
	"proxy-authorization": "it carries credentials",
	"cookie":              "it carries credentials",
	"host":                "the host is the URL's",
	"connection":          "it is hop-by-hop",
	"keep-alive":          "it is hop-by-hop",
	"proxy-connection":    "it is hop-by-hop",
	"transfer-encoding":   "it is hop-by-hop",
	"te":                  "it is hop-by-hop",
	"trailer":             "it is hop-by-hop",
	"upgrade":             "it is hop-by-hop",
	"content-length":      "reads have no body",
	// Bodies arrive decoded: the host asks for compression itself and
	// decodes, so that it can find an integration token a server echoes.
	"accept-encoding":   "the host negotiates compression and hands bodies over decoded",
	"expect":            "reads have no body",
	"forwarded":         "it would speak for the runtime's network",
	"x-forwarded-for":   "it would speak for the runtime's network",
	"x-forwarded-host":  "it would speak for the runtime's network",
	"x-forwarded-proto": "it would speak for the runtime's network",
	"x-real-ip":         "it would speak for the runtime's network",
}

// hopHeaders are not passed back to the plugin.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Transfer-Encoding": true,
	"Upgrade": true, "Trailer": true, "Te": true,
}

// For returns the reader of plugin id with its grants (entries of
// [plugins.<id>.capabilities] urlreader), or nil when it has none.
func (r *Reader) For(id string, grants []string) *PluginReader {
	if len(grants) == 0 {
		return nil
	}
	return &PluginReader{r: r, id: id, grants: parseGrants(grants)}
}

// PluginReader reads URLs for one plugin.
type PluginReader struct {
	r      *Reader
	id     string
	grants []grant
}

// check parses raw and applies the allow list and the grant. It returns the
// allow rule that matched.
func (p *PluginReader) check(raw string) (*target, error) {
	t, err := parseTarget(raw)
	if err != nil {
		return nil, err
	}
	var hostRule *allowRule
	var rule *allowRule
	for i := range p.r.rules {
		ar := &p.r.rules[i]
		if !ar.host.match(t.host) {
			continue
		}
		if hostRule == nil {
			hostRule = ar
		}
		if ar.matchPath(t.path) && (t.u.Scheme == "https" || ar.http) {
			rule = ar
			break
		}
	}
	switch {
	case len(p.r.rules) == 0:
		return nil, errorf(Denied, "%s: refused: [reading] allow is empty, so no URL may be read", t.u.Redacted())
	case hostRule == nil:
		return nil, errorf(Denied, "%s: refused: no [reading] allow rule matches host %s (rules allow %s)", t.u.Redacted(), t.host, p.r.ruleHosts())
	case rule == nil:
		// Say what the closest rule would need.
		for i := range p.r.rules {
			ar := &p.r.rules[i]
			if ar.host.match(t.host) && ar.matchPath(t.path) {
				return nil, errorf(Denied, "%s: refused: scheme http is not allowed by %s (host %s); it allows https only unless it says scheme = \"http\"", t.u.Redacted(), ar.name, ar.host)
			}
		}
		return nil, errorf(Denied, "%s: refused: %s allows host %s only under paths %q", t.u.Redacted(), hostRule.name, hostRule.host, hostRule.paths)
	}
	for _, g := range p.grants {
		if g.host.match(t.host) && pathUnder(t.path, g.path) {
			return t, nil
		}
	}
	srcs := make([]string, len(p.grants))
	for i, g := range p.grants {
		srcs[i] = g.src
	}
	return nil, errorf(Denied, "%s: refused: not granted to plugin %s by plugins.%s.capabilities.urlreader %q", t.u.Redacted(), p.id, p.id, srcs)
}

func (r *Reader) ruleHosts() string {
	hosts := make([]string, len(r.rules))
	for i, ar := range r.rules {
		hosts[i] = ar.host.String()
	}
	return strings.Join(hosts, ", ")
}

// Read performs one read under ctx (the call's context): the earliest of
// ctx's deadline, req.Deadline and reading.timeout bounds it.
func (p *PluginReader) Read(ctx context.Context, req Request) (*Response, error) {
	hops := &hopper{r: p.r}
	resp, err := p.read(ctx, req, hops)
	// An integration token sent on this read never goes back to the
	// plugin, wherever the server echoed it: the body, a header, the final
	// URL (a redirect's Location), or an error message that quotes them.
	if len(hops.sent) > 0 {
		if resp != nil {
			hops.scrub(resp, req.Method == http.MethodHead)
		}
		err = hops.scrubErr(err)
	}
	// Bodies are handed over decoded: one still encoded (a coding the
	// transport does not decode, sent unasked) fails the read; with a
	// token sent, it could not have been searched for an echo either.
	if resp != nil && len(resp.Body) > 0 {
		for _, h := range resp.Header {
			if strings.EqualFold(h[0], "Content-Encoding") && !strings.EqualFold(strings.TrimSpace(h[1]), "identity") {
				return nil, errorf(Failed, "%s: refused: the response is encoded (Content-Encoding: %s), which the runtime does not decode; a plugin gets bodies decoded (the runtime asks for gzip itself)", resp.URL, hops.scrubString(h[1]))
			}
		}
	}
	return resp, err
}

func (p *PluginReader) read(ctx context.Context, req Request, hops *hopper) (*Response, error) {
	method := req.Method
	switch method {
	case "":
		method = http.MethodGet
	case http.MethodGet, http.MethodHead:
	default:
		return nil, errorf(Invalid, "method %q is not supported: the URL reader reads with GET and HEAD only", method)
	}
	t, err := p.check(req.URL)
	if err != nil {
		return nil, err
	}
	header := make(http.Header, len(req.Header)+1)
	for _, h := range req.Header {
		if err := p.r.checkHeader(h[0], h[1]); err != nil {
			return nil, err
		}
		header.Add(h[0], h[1])
	}
	if header.Get("User-Agent") == "" {
		header.Set("User-Agent", p.r.userAgent)
	}

	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, p.r.timeout)
	defer cancel()
	// The plugin's own deadline counts only when it is earlier than the
	// call's (a handler passing its request's context has the same one).
	if pd, ok := parent.Deadline(); !req.Deadline.IsZero() && (!ok || req.Deadline.Before(pd)) {
		var c2 context.CancelFunc
		ctx, c2 = context.WithDeadline(ctx, req.Deadline)
		defer c2()
	} else {
		req.Deadline = time.Time{}
	}
	hreq, err := http.NewRequestWithContext(ctx, method, t.u.String(), nil)
	if err != nil {
		return nil, errorf(Invalid, "%s: %v", t.u.Redacted(), err)
	}
	hreq.Header = header
	client := &http.Client{
		Transport: hops,
		CheckRedirect: func(next *http.Request, via []*http.Request) error {
			if len(via) > MaxRedirects {
				return errorf(Failed, "%s: stopped after %d redirects", t.u.Redacted(), MaxRedirects)
			}
			nt, err := p.check(next.URL.String())
			if err != nil {
				return &Error{Kind: KindOf(err), Msg: fmt.Sprintf("redirect from %s: %v", via[len(via)-1].URL.Redacted(), err)}
			}
			next.URL = nt.u
			// Go's client names the previous URL in a redirect's Referer:
			// that URL can hold what its server put there (an echoed
			// integration token), and the next host has no business
			// with it.
			next.Header.Del("Referer")
			return nil
		},
	}
	resp, err := client.Do(hreq)
	if err != nil {
		return nil, p.classify(parent, req.Deadline, t, err)
	}
	defer resp.Body.Close()
	final := resp.Request.URL.Redacted()
	if resp.StatusCode == http.StatusNotModified {
		return nil, errorf(NotModified, "%s: not modified (ETag %s)", final, resp.Header.Get("ETag"))
	}
	out := &Response{
		Status:       resp.StatusCode,
		URL:          resp.Request.URL.String(),
		ETag:         resp.Header.Get("ETag"),
		LastModified: resp.Header.Get("Last-Modified"),
	}
	if method != http.MethodHead {
		if resp.ContentLength > p.r.maxBytes {
			return nil, errorf(TooLarge, "%s: body of %d bytes is over reading.max_bytes (%d)", final, resp.ContentLength, p.r.maxBytes)
		}
		var buf bytes.Buffer
		if resp.ContentLength > 0 {
			buf.Grow(int(resp.ContentLength))
		}
		if _, err := buf.ReadFrom(io.LimitReader(resp.Body, p.r.maxBytes+1)); err != nil {
			return nil, p.classify(parent, req.Deadline, t, err)
		}
		if int64(buf.Len()) > p.r.maxBytes {
			return nil, errorf(TooLarge, "%s: body is over reading.max_bytes (%d); stopped reading", final, p.r.maxBytes)
		}
		out.Body = buf.Bytes()
	}
	keys := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		if !hopHeaders[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range resp.Header[k] {
			out.Header = append(out.Header, [2]string{k, v})
		}
	}
	return out, nil
}

func (r *Reader) checkHeader(k, v string) error {
	if k == "" {
		return errorf(Invalid, "empty request header name")
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return errorf(Invalid, "request header name %q is not an HTTP token", k)
		}
	}
	why, ok := r.denyHdr[strings.ToLower(k)]
	if !ok && len(k) > len("x-forwarded-") && strings.EqualFold(k[:len("x-forwarded-")], "x-forwarded-") {
		why, ok = "it would speak for the runtime's network", true
	}
	if ok {
		return errorf(Denied, "request header %s may not be set by a plugin: %s", http.CanonicalHeaderKey(k), why)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return errorf(Invalid, "request header %s has a control character in its value", http.CanonicalHeaderKey(k))
		}
	}
	return nil
}

// classify turns a failed request into an *Error naming what ran out or
// broke. parent is the call's context.
func (p *PluginReader) classify(parent context.Context, guestDeadline time.Time, t *target, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		switch {
		case parent.Err() != nil:
			return errorf(Timeout, "%s: the call's deadline passed while reading", t.u.Redacted())
		case !guestDeadline.IsZero() && !time.Now().Before(guestDeadline):
			return errorf(Timeout, "%s: the plugin's deadline for this read passed", t.u.Redacted())
		}
		return errorf(Timeout, "%s: read took longer than reading.timeout (%s)", t.u.Redacted(), p.r.timeout)
	}
	if errors.Is(err, context.Canceled) {
		return errorf(Timeout, "%s: the call was canceled while reading", t.u.Redacted())
	}
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			err = inner
		}
	}
	return errorf(Failed, "%s: %v", t.u.Redacted(), err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// hopper is the http.RoundTripper of one read: it adds an integration's
// token to a request for that integration's exact host (and port, when
// the integration names one) — on every hop, so that a redirect to another
// host never carries it — and remembers which tokens it sent, to scrub
// them from the response. Every hop has passed the allow rules, so a hop
// over plain http is one the operator allowed with scheme = "http".
type hopper struct {
	r    *Reader
	sent []string
	prev string // the previous hop's URL
}

func (h *hopper) RoundTrip(req *http.Request) (*http.Response, error) {
	if t, ok := h.r.token(req.URL); ok {
		req = req.Clone(req.Context())
		req.Header.Set(t.header, t.value)
		// A hop that carries the token asks for the whole body (a
		// server may always answer a range request so): parts of an
		// echoed token, read in two ranges, would each pass the scrub.
		req.Header.Del("Range")
		req.Header.Del("If-Range")
		h.sent = append(h.sent, t.secret)
	}
	resp, err := h.r.transport.RoundTrip(req)
	var e *Error
	if errors.As(err, &e) {
		// A refusal at connect time: say where it happened.
		where := req.URL.Redacted()
		if h.prev != "" {
			where = "redirect from " + h.prev + " to " + where
		}
		err = &Error{Kind: e.Kind, Msg: where + ": " + e.Msg}
	}
	h.prev = req.URL.Redacted()
	return resp, err
}

// token returns the integration credential for u: the integration for its
// host and port, else the one for its host on every port.
func (r *Reader) token(u *url.URL) (token, bool) {
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	port := u.Port()
	if n, err := strconv.Atoi(port); err == nil {
		port = strconv.Itoa(n) // "018901" is port 18901
	}
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
	}
	if t, ok := r.tokens[host+":"+port]; ok {
		return t, true
	}
	t, ok := r.tokens[host]
	return t, ok
}

// scrub removes the tokens sent for this read from what goes back to the
// plugin, in case the server echoed them: in any case of its ASCII
// letters (the runtime lower-cases a host it quotes, net/http
// canonicalises header names) and percent-escaped (as a URL the runtime
// quotes has it). A Content-Length the scrub made wrong is corrected: it
// would tell the token's length. The answer to a HEAD (head) has no body
// to scrub and count, so its Content-Length, which may count an echo, is
// dropped.
func (h *hopper) scrub(resp *Response, head bool) {
	n := len(resp.Body)
	resp.Body = h.scrubBytes(resp.Body)
	if head {
		resp.Header = slices.DeleteFunc(resp.Header, func(hv [2]string) bool { return strings.EqualFold(hv[0], "Content-Length") })
	}
	for i, hv := range resp.Header {
		resp.Header[i][0] = h.scrubString(hv[0])
		resp.Header[i][1] = h.scrubString(hv[1])
		if len(resp.Body) != n && strings.EqualFold(hv[0], "Content-Length") {
			resp.Header[i][1] = strconv.Itoa(len(resp.Body))
		}
	}
	resp.URL = h.scrubString(resp.URL)
	resp.ETag = h.scrubString(resp.ETag)
	resp.LastModified = h.scrubString(resp.LastModified)
}

func (h *hopper) scrubString(s string) string {
	if b := h.scrubBytes([]byte(s)); string(b) != s {
		return string(b)
	}
	return s
}

// scrubBytes replaces every form of a sent token in b (see scrub).
func (h *hopper) scrubBytes(b []byte) []byte {
	// One lower-cased copy finds whether any form is there (a body of up
	// to max_bytes, which almost never holds one); only a form found is
	// replaced, which lower-cases again what it changes.
	var lb []byte
	for _, raw := range h.sent {
		if len(raw) < 4 {
			continue
		}
		for _, form := range []string{raw, url.PathEscape(raw), url.QueryEscape(raw)} {
			if lb == nil {
				lb = lowerASCII(b)
			}
			if lo := lowerASCII([]byte(form)); bytes.Contains(lb, lo) {
				b = replaceFold(b, lb, lo, "[REDACTED]")
				lb = nil
			}
		}
	}
	return b
}

// lowerASCII returns a copy of b with its ASCII letters in lower case and
// every other byte as it is, so that offsets into it are offsets into b.
func lowerASCII(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// replaceFold replaces each occurrence in b of lo, a lower-cased text, in
// any case of its ASCII letters, with new; lb is lowerASCII(b).
func replaceFold(b, lb, lo []byte, new string) []byte {
	var out []byte
	for {
		i := bytes.Index(lb, lo)
		if i < 0 {
			return append(out, b...)
		}
		out = append(append(out, b[:i]...), new...)
		b, lb = b[i+len(lo):], lb[i+len(lo):]
	}
}

// scrubErr is scrub for an error's message.
func (h *hopper) scrubErr(err error) error {
	if err == nil {
		return nil
	}
	if msg := h.scrubString(err.Error()); msg != err.Error() {
		return &Error{Kind: KindOf(err), Msg: msg}
	}
	return err
}
