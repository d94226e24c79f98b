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
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
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
	// Hop makes the read one hop of a redirect chain that the plugin's
	// own client follows (its CheckRedirect decides): a redirect comes
	// back as the response, Location included, and the client's next
	// request is a read of its own, checked as the first was.
	Hop bool
	// Via are the URLs of a Hop read's earlier hops, the first the URL
	// the plugin addressed, the last the one that redirected here; none
	// for a chain's first request. The plugin's client says so: what the
	// runtime does on a redirect it follows itself, it does from Via
	// (see hopRules).
	Via []string
	// NotModifiedResponse makes a 304 the response, with its headers,
	// as any other status (for the plugin's own client), where it is
	// the NotModified error.
	NotModifiedResponse bool
}

// Response is a successful read: any final status from 200 to 999 but
// 304, which is the NotModified error (unless NotModifiedResponse), and
// the redirects the reader
// follows (docs/urlreader.md, "Response statuses").
type Response struct {
	Status       int
	URL          string // after redirects
	ETag         string
	LastModified string
	Header       [][2]string
	Body         []byte
	// Decoded: the body arrived gzip-encoded and was decoded, its
	// Content-Encoding and Content-Length headers dropped (Go's client
	// says so in its Response.Uncompressed).
	Decoded bool
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
	rules    []allowRule
	internal map[string]bool // exact hosts allowed to resolve internally
	maxBytes int64
	timeout  time.Duration
	// shownMaxBytes and shownTimeout are maxBytes and timeout as errors
	// tell them: [REDACTED] for one from the environment (a config
	// secret, whose redaction as written misses it decoded).
	shownMaxBytes, shownTimeout string
	tokens                      map[string]token  // by config.IntegrationHost
	denyHdr                     map[string]string // lowercase header name → why a plugin may not set it
	resolver                    Resolver
	reachable                   map[netip.AddrPort]bool
	dialer                      *net.Dialer
	transport                   *http.Transport
	userAgent                   string
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
		rules:         parseAllow(cfg.Reading.Allow),
		internal:      map[string]bool{},
		maxBytes:      int64(cfg.Reading.MaxBytes),
		timeout:       cfg.Reading.Timeout.D(),
		shownMaxBytes: strconv.FormatInt(int64(cfg.Reading.MaxBytes), 10),
		shownTimeout:  cfg.Reading.Timeout.D().String(),
		tokens:        map[string]token{},
		denyHdr:       map[string]string{},
		resolver:      opts.Resolver,
		reachable:     map[netip.AddrPort]bool{},
		userAgent:     opts.UserAgent,
	}
	if cfg.IsSecretPath("reading.max_bytes") {
		r.shownMaxBytes = config.Redacted
	}
	if cfg.IsSecretPath("reading.timeout") {
		r.shownTimeout = config.Redacted
	}
	if r.resolver == nil {
		r.resolver = net.DefaultResolver
	}
	if r.userAgent == "" {
		r.userAgent = defaultUserAgent
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
			r.denyHdr[strings.ReplaceAll(strings.ToLower(t.header), "_", "-")] = "it carries integration credentials, which the host adds from [[integrations]]"
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
		// The reader asks for gzip and decodes it itself (read): net/http's
		// own decoding reads only the first Content-Encoding line and then
		// deletes them all, so a body encoded twice (two lines) would reach
		// the plugin still encoded, unmarked.
		DisableCompression: true,
	}
	return r, nil
}

// Close releases idle connections.
func (r *Reader) Close() { r.transport.CloseIdleConnections() }

// deniedHeaders are request headers a plugin may not set, with the reason.
// The guest SDK's native build has a copy (guest-sdk/greenroom,
// urlheaders_native.go): TestRuntimeAnswersForTheNativeBuild writes this
// list and the errors of checkHeader to the file the SDK's
// TestNativeHeaderRulesMatchTheRuntime checks its copy with: change both.
var deniedHeaders = map[string]string{
	"authorization":       "it carries credentials, which the host adds from [[integrations]]",
	"proxy-authorization": "it carries credentials",
	"cookie":              "it carries credentials",
	"cookie2":             "it carries credentials",
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
	"accept-encoding":     "the host negotiates compression and hands bodies over decoded",
	"expect":              "reads have no body",
	"forwarded":           "it would speak for the runtime's network",
	"x-forwarded-for":     "it would speak for the runtime's network",
	"x-forwarded-host":    "it would speak for the runtime's network",
	"x-forwarded-proto":   "it would speak for the runtime's network",
	"x-real-ip":           "it would speak for the runtime's network",
	"x-client-ip":         "it would speak for the runtime's network",
	"client-ip":           "it would speak for the runtime's network",
	"true-client-ip":      "it would speak for the runtime's network",
	"x-cluster-client-ip": "it would speak for the runtime's network",
	"x-originating-ip":    "it would speak for the runtime's network",
	"x-remote-ip":         "it would speak for the runtime's network",
	"x-remote-addr":       "it would speak for the runtime's network",
	"cf-connecting-ip":    "it would speak for the runtime's network",
	"fastly-client-ip":    "it would speak for the runtime's network",
	"x-host":              "the host is the URL's",
	// Front ends that route by these (IIS ARR and Azure's gateways by
	// X-Original-Host, middleware by X-HTTP-Host-Override) would send the
	// read to another virtual host than the allow rules checked.
	"x-original-host":      "the host is the URL's",
	"x-http-host-override": "the host is the URL's",
	"x-forwarded":          "it would speak for the runtime's network",
	// Servers behind some proxies and frameworks take these for the
	// request's path or method, which the allow rules and the reader's
	// GET/HEAD decide.
	"x-original-url":         "it would change the path the allow rules checked",
	"x-rewrite-url":          "it would change the path the allow rules checked",
	"x-http-method-override": "reads are GET or HEAD",
	"x-http-method":          "reads are GET or HEAD",
	"x-method-override":      "reads are GET or HEAD",
}

// hopHeaders are the standard hop-by-hop headers, not passed back to the
// plugin. The guest SDK's native build has a copy, kept equal in effect
// by TestRuntimeAnswersForTheNativeBuild and the SDK's
// TestNativeResponseHopHeadersMatchTheRuntime.
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Trailer", "Te",
	"Proxy-Authenticate", "Proxy-Authorization",
}

// dropHopHeaders deletes the hop-by-hop headers from a response's: the
// standard ones, and those its Connection headers name (RFC 9110 7.6.1),
// which describe the connection to the target, not the response.
func dropHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
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
	// secrets are the plugin's own (SetSecrets): a request header of the
	// plugin's that holds one is not sent on to another origin.
	secrets []string
}

// SetSecrets gives the reader the plugin's own secrets (the config's
// PluginSecrets) before its first read. A request header whose value
// holds one of them (an API key the plugin sends in X-Api-Key) goes only
// to the host the plugin addressed and its subdomains: a redirect to
// another host gets the plugin's other headers but not that one, as Go's
// client drops Authorization and Cookie there (and keeps them for
// example.com to www.example.com). The plugin cannot do it itself: the
// runtime follows redirects, its CheckRedirect never runs.
func (p *PluginReader) SetSecrets(secrets []string) {
	if p == nil {
		return
	}
	p.secrets = nil
	for _, s := range secrets {
		if len(s) >= minSecretHeader {
			p.secrets = append(p.secrets, s)
		}
	}
}

// minSecretHeader is the shortest secret that keeps a header from another
// origin, as the log's redaction skips shorter ones (a "1" would hold
// back every header with a digit).
const minSecretHeader = 4

// dropSecretHeaders deletes from h, the headers of a redirect to another
// origin than the plugin addressed, each of the plugin's headers whose
// value holds one of its secrets, in any spelling quotes finds
// (X-Auth: Basic <base64 of user:secret>, the secret in hex or
// percent-escaped).
func (p *PluginReader) dropSecretHeaders(h http.Header) {
	for k, vs := range h {
		for _, v := range vs {
			if slices.ContainsFunc(p.secrets, func(s string) bool { return quotes([]byte(v), s) }) {
				h.Del(k)
				break
			}
		}
	}
}

// quotedSecret returns an error when u, the URL of a redirect to another
// site than the plugin addressed, quotes one of the plugin's secrets (in
// any spelling quotes finds): a server that sends the plugin's API key,
// given in the query, on to its login page in a return_to parameter
// would hand it to that other host.
func (p *PluginReader) quotedSecret(u *url.URL) error {
	s := []byte(u.String())
	if slices.ContainsFunc(p.secrets, func(sec string) bool { return quotes(s, sec) }) {
		return errorf(Denied, "refused: the redirect's URL quotes one of plugin %s's secrets (plugins.%s.secrets or a ${VAR} of its config), which would reach %s, another host than the plugin addressed", p.id, p.id, u.Host)
	}
	return nil
}

// sameSite reports whether dest's host is initial's or a subdomain of it
// (a name ending in "." and initial's), whatever their schemes and ports:
// the hosts Go's client sends a request's Authorization and Cookie on
// to. Hosts are canonical (lower case, no trailing dot); an IP address
// has no subdomains.
func sameSite(dest, initial *url.URL) bool {
	d, i := dest.Hostname(), initial.Hostname()
	if d == i {
		return true
	}
	if _, err := netip.ParseAddr(i); err == nil || strings.ContainsAny(d, ":%") {
		return false
	}
	return strings.HasSuffix(d, "."+i)
}

// effectivePort is u's port in decimal without leading zeros ("018901"
// is port 18901), its scheme's default when it names none.
func effectivePort(u *url.URL) string {
	port := u.Port()
	if n, err := strconv.Atoi(port); err == nil {
		port = strconv.Itoa(n)
	}
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
	}
	return port
}

// check parses raw and applies the grant, then the allow list. It
// returns the allow rule that matched.
//
// A refusal tells the plugin (and the log) only what it asked about and
// what it was granted: the grant is checked first, so that the allow
// rules are consulted only for URLs the plugin may ask for, and a rule is
// named by its place in [reading] allow, never by the hosts and paths it
// lists (an operator's ${VAR} may hold one, and the rules the plugin was
// not granted are none of its business).
func (p *PluginReader) check(raw string) (*target, error) {
	t, err := parseTarget(raw)
	if err != nil {
		return nil, err
	}
	// An encoded slash, and a segment that servers which decode it again
	// or read it loosely take for a dot segment (wholeOnly), is read only
	// through a grant and a rule for the whole host: pathGrant is a grant that covers the path only by its
	// prefix, wholeGrant one for the whole host.
	granted, wholeGrant, pathGrant := false, false, ""
	for _, g := range p.grants {
		if g.host.match(t.host) && pathUnder(t.path, g.path) {
			granted = true
			if g.wholeHost() {
				wholeGrant = true
			} else if pathGrant == "" {
				pathGrant = g.src
			}
		}
	}
	if !granted {
		srcs := make([]string, len(p.grants))
		hint := ""
		for i, g := range p.grants {
			srcs[i] = g.src
			// A grant "host/feed" read as a prefix of /feed.json: say
			// that a prefix without a trailing "/" covers whole segments.
			if hint == "" && g.host.match(t.host) && segmentCut(t.path, g.path) {
				hint = fmt.Sprintf("; %q covers %s and the paths under %s/, not %s (a prefix that ends in \"/\" covers every path that starts with it)", g.src, g.path, g.path, t.path)
			}
		}
		return nil, errorf(Denied, "%s: refused: not granted to plugin %s by plugins.%s.capabilities.urlreader %q%s", t.u.Redacted(), p.id, p.id, srcs, hint)
	}
	var hostRule, rule, pathRule *allowRule
	for i := range p.r.rules {
		ar := &p.r.rules[i]
		if !p.r.ruleCovers(ar, t.host) {
			continue
		}
		if hostRule == nil {
			hostRule = ar
		}
		if ar.matchPath(t.path) && (t.u.Scheme == "https" || ar.http) {
			if (t.encSlash || t.wholeOnly != "") && !ar.wholeHost() {
				if pathRule == nil {
					pathRule = ar
				}
				continue
			}
			rule = ar
			break
		}
	}
	switch {
	case (t.encSlash || t.wholeOnly != "") && (rule == nil && pathRule != nil || rule != nil && !wholeGrant):
		// A path prefix is compared with the decoded path, where %2F is
		// a slash; a server may read it as one (and a prefix then says
		// nothing of which directory is read) or as part of a name
		// (GitLab's group%2Fproject), which the prefix does not name.
		var by []string
		if rule == nil {
			by = append(by, pathRule.name+" allows it only under its paths")
		}
		if !wholeGrant {
			by = append(by, fmt.Sprintf("the grant %q in plugins.%s.capabilities.urlreader covers a path prefix", pathGrant, p.id))
		}
		what := "an encoded slash (%2F, or %252F encoded twice or more), read only where both the allow rule and the plugin's grant cover the whole host: a path prefix cannot say where such a path leads (a server may read %2F as a slash or as part of a name)"
		if t.wholeOnly != "" {
			what = t.wholeOnly + ", read only where both the allow rule and the plugin's grant cover the whole host: under a path prefix a server could read it out of the prefix"
		}
		return nil, errorf(Denied, "%s: refused: the path holds %s; %s. To read it, the operator gives host %s an allow rule without paths and grants it whole (plugins.%s.capabilities.urlreader = [%q])", t.u.Redacted(), what, strings.Join(by, " and "), t.host, p.id, t.host)
	case len(p.r.rules) == 0:
		return nil, errorf(Denied, "%s: refused: [reading] allow is empty, so no URL may be read", t.u.Redacted())
	case hostRule == nil:
		return nil, errorf(Denied, "%s: refused: no [reading] allow rule matches host %s", t.u.Redacted(), t.host)
	case rule == nil:
		// Say which rule comes closest.
		for i := range p.r.rules {
			ar := &p.r.rules[i]
			if p.r.ruleCovers(ar, t.host) && ar.matchPath(t.path) {
				return nil, errorf(Denied, "%s: refused: scheme http is not allowed by %s; it allows https only unless it says scheme = \"http\"", t.u.Redacted(), ar.name)
			}
		}
		// Only when another rule, not an internal one, matches the host:
		// with the internal rules alone the words send the operator
		// looking for a rule that is not there.
		why := ""
		if p.r.internal[t.host] {
			for i := range p.r.rules {
				if ar := &p.r.rules[i]; !ar.internal && ar.host.match(t.host) {
					why = "; a host an internal = true rule names is read only as its internal rules allow, whatever other rules match it"
					break
				}
			}
		}
		return nil, errorf(Denied, "%s: refused: %s matches host %s, but none of its paths covers %s%s", t.u.Redacted(), hostRule.name, t.host, t.path, why)
	}
	return t, nil
}

// ruleCovers reports whether allow rule ar applies to host. A host that an
// internal = true rule names is read only as its internal rules allow: the
// address check lets it resolve internally whichever rule matched, so
// another rule (a "*." pattern, or the same host without internal) would
// lend it the paths and schemes its internal rules leave out.
func (r *Reader) ruleCovers(ar *allowRule, host string) bool {
	return ar.host.match(host) && (ar.internal || !r.internal[host])
}

// Read performs one read under ctx (the call's context): the earliest of
// ctx's deadline, req.Deadline and reading.timeout bounds it.
func (p *PluginReader) Read(ctx context.Context, req Request) (*Response, error) {
	hops := &hopper{r: p.r}
	resp, err := p.read(ctx, req, hops)
	// An integration token sent on this read never goes back to the
	// plugin, wherever the server echoed it: the body, a header, the final
	// URL (a redirect's Location), or an error message that quotes them.
	// A hop after one that carried a token loses its Set-Cookie as a
	// redirect the runtime followed from there does (scrub).
	if len(hops.sent) > 0 || hops.viaToken {
		if resp != nil {
			hops.scrub(resp, req.Method == http.MethodHead || !bodyAllowed(resp.Status))
		}
		err = hops.scrubErr(err, req.URL)
	}
	return resp, err
}

// preGrow is the most room a read makes for a body before it arrives.
const preGrow = 64 << 10

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
		if from := redirectFrom(req); from != "" {
			err = &Error{Kind: KindOf(err), Msg: "redirect from " + from + ": " + err.Error()}
		}
		return nil, err
	}
	header := make(http.Header, len(req.Header)+1)
	for _, h := range req.Header {
		if err := p.r.checkHeader(h[0], h[1]); err != nil {
			return nil, err
		}
		header.Add(h[0], h[1])
	}
	if err := p.hopRules(req, t, header, hops); err != nil {
		return nil, err
	}
	if header.Get("User-Agent") == "" {
		header.Set("User-Agent", p.r.userAgent)
	}
	if method == http.MethodGet && header.Get("Range") == "" {
		header.Set("Accept-Encoding", "gzip")
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
			if req.Hop {
				return http.ErrUseLastResponse
			}
			if len(via) > MaxRedirects {
				return errorf(Failed, "%s: stopped after %d redirects", t.u.Redacted(), MaxRedirects)
			}
			nt, err := p.check(next.URL.String())
			if err == nil {
				err = hops.quotedElsewhere(nt.u)
			}
			otherSite := len(p.secrets) > 0 && err == nil && !sameSite(nt.u, t.u)
			if otherSite {
				err = p.quotedSecret(nt.u)
			}
			if err != nil {
				return &Error{Kind: KindOf(err), Msg: fmt.Sprintf("redirect from %s: %v", via[len(via)-1].URL.Redacted(), err)}
			}
			next.URL = nt.u
			// Go's client copies the plugin's headers to every hop.
			if otherSite {
				p.dropSecretHeaders(next.Header)
			}
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
	if loc := resp.Header.Get("Location"); req.Hop && loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 && len(hops.sent) > 0 {
		// A redirect the plugin's client is to follow, from a hop that
		// carried a token: one whose URL quotes the token for another
		// host is refused, as when the runtime follows it (the plugin
		// would get it scrubbed anyway, but a refusal says why).
		if u, err := resp.Request.URL.Parse(loc); err == nil {
			if err := hops.quotedElsewhere(u); err != nil {
				return nil, &Error{Kind: KindOf(err), Msg: fmt.Sprintf("redirect from %s: %v", final, err)}
			}
		}
	}
	// Go's client reads past every 1xx but 101 itself. A 101 with
	// Connection: Upgrade has the raw connection for its body, which the
	// read's deadline no longer bounds: closing it ends the exchange.
	if resp.StatusCode < 200 {
		return nil, errorf(Failed, "%s: refused: the server answered %s, which is not a final response (the URL reader asks for no protocol switch and reads only final responses)", final, strings.TrimSpace(fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))))
	}
	// One gzip layer, named by exactly one Content-Encoding line, is
	// decoded; any other coding stays and fails the read (below). A
	// response without a body (a 204 or 304, whose ContentLength Go's
	// client makes 0, or a Content-Length: 0) keeps its headers and is
	// not Decoded, as net/http's Transport decodes only a body.
	decoded := false
	if ce := resp.Header.Values("Content-Encoding"); method == http.MethodGet && resp.ContentLength != 0 && len(ce) == 1 && strings.EqualFold(strings.TrimSpace(ce[0]), "gzip") && resp.Request.Header.Get("Accept-Encoding") == "gzip" {
		resp.Body = &lazyGzip{r: resp.Body}
		resp.Header.Del("Content-Encoding")
		resp.Header.Del("Content-Length")
		resp.ContentLength = -1
		decoded = true
	}
	// Read before the hop-by-hop headers go: a Connection header that
	// names Content-Encoding does not hide the body's coding.
	codings := resp.Header.Values("Content-Encoding")
	dropHopHeaders(resp.Header)
	if resp.StatusCode == http.StatusNotModified && !req.NotModifiedResponse {
		return nil, errorf(NotModified, "%s: not modified (ETag %s)", final, resp.Header.Get("ETag"))
	}
	out := &Response{
		Status:       resp.StatusCode,
		URL:          resp.Request.URL.String(),
		ETag:         resp.Header.Get("ETag"),
		LastModified: resp.Header.Get("Last-Modified"),
		Decoded:      decoded,
	}
	if method != http.MethodHead {
		if resp.ContentLength > p.r.maxBytes {
			return nil, errorf(TooLarge, "%s: body of %d bytes is over reading.max_bytes (%s)", final, resp.ContentLength, p.r.shownMaxBytes)
		}
		// Room for the length the server claims, up to preGrow: the rest
		// grows as the body arrives, so that a claim the server does
		// not keep costs no memory.
		var buf bytes.Buffer
		if resp.ContentLength > 0 {
			buf.Grow(int(min(resp.ContentLength, preGrow)))
		}
		if _, err := buf.ReadFrom(io.LimitReader(resp.Body, p.r.maxBytes+1)); err != nil {
			return nil, p.classify(parent, req.Deadline, t, err)
		}
		if int64(buf.Len()) > p.r.maxBytes {
			return nil, errorf(TooLarge, "%s: body is over reading.max_bytes (%s); stopped reading", final, p.r.shownMaxBytes)
		}
		out.Body = buf.Bytes()
	}
	// Bodies are handed over decoded: one still encoded (a coding the
	// transport does not decode, sent unasked) fails the read; with a
	// token sent, it could not have been searched for an echo either.
	for _, v := range codings {
		// An empty value names no coding (RFC 9110 lists none).
		if v := strings.TrimSpace(v); len(out.Body) > 0 && v != "" && !strings.EqualFold(v, "identity") {
			return nil, errorf(Failed, "%s: refused: the response is encoded (Content-Encoding: %s), which the runtime does not decode; a plugin gets bodies decoded (the runtime asks for gzip itself)", final, v)
		}
	}
	keys := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range resp.Header[k] {
			out.Header = append(out.Header, [2]string{k, v})
		}
	}
	return out, nil
}

// hopRules applies to a Hop read that continues a redirect chain (its
// Via) what the runtime applies to a redirect it follows itself: at most
// MaxRedirects of them; the plugin's headers that hold its secrets go
// only to the host it addressed (Via's first URL) and its subdomains; no
// Referer (Go's client names the previous URL there); and a Set-Cookie
// is dropped after a hop that carried an integration's token. An error
// names the redirect, as one the runtime follows does. The plugin's
// client says what Via holds: a plugin that leaves it out reads as if
// it addressed this URL itself, which it may.
func (p *PluginReader) hopRules(req Request, t *target, header http.Header, hops *hopper) error {
	prev := redirectFrom(req)
	if prev == "" {
		return nil
	}
	if len(req.Via) > MaxRedirects {
		return errorf(Failed, "redirect from %s: %s: stopped after %d redirects", prev, t.u.Redacted(), MaxRedirects)
	}
	first, err := parseTarget(req.Via[0])
	if err != nil {
		return errorf(Invalid, "redirect from %s: the first URL of the chain: %v", prev, err)
	}
	if len(p.secrets) > 0 && !sameSite(t.u, first.u) {
		if err := p.quotedSecret(t.u); err != nil {
			return &Error{Kind: KindOf(err), Msg: "redirect from " + prev + ": " + err.Error()}
		}
		p.dropSecretHeaders(header)
	}
	header.Del("Referer")
	for _, v := range req.Via {
		if u, err := url.Parse(v); err == nil {
			if _, ok := p.r.token(u); ok {
				hops.viaToken = true
			}
		}
	}
	hops.prev = prev
	return nil
}

// redirectFrom is the URL that redirected to a Hop read (the last of its
// Via), as errors quote it, or "" for a chain's first request.
func redirectFrom(req Request) string {
	if !req.Hop || len(req.Via) == 0 {
		return ""
	}
	prev := req.Via[len(req.Via)-1]
	if u, err := url.Parse(prev); err == nil {
		return u.Redacted()
	}
	return prev
}

func (r *Reader) checkHeader(k, v string) error { return checkHeader(r.denyHdr, k, v) }

// defaultUserAgent is the User-Agent of a read whose plugin sets none
// (unless Options.UserAgent says otherwise). The guest SDK's native build
// sends it too (TestRuntimeAnswersForTheNativeBuild).
const defaultUserAgent = "greenroom-urlreader"

// checkHeader checks a plugin's request header k: v against deny, the
// refused names (lower-case, '-' for '_') with their reasons.
func checkHeader(deny map[string]string, k, v string) error {
	if k == "" {
		return errorf(Invalid, "empty request header name")
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return errorf(Invalid, "request header name %q is not an HTTP token", k)
		}
	}
	// Compared with '_' as '-': servers behind CGI-style gateways read
	// X_Forwarded_For as X-Forwarded-For (both HTTP_X_FORWARDED_FOR).
	lk := strings.ReplaceAll(strings.ToLower(k), "_", "-")
	why, ok := deny[lk]
	if !ok && strings.HasPrefix(lk, "x-forwarded-") {
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
		return errorf(Timeout, "%s: read took longer than reading.timeout (%s)", t.u.Redacted(), p.r.shownTimeout)
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
	// viaToken: a Hop read after a hop that carried a token (hopRules).
	viaToken bool
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
	if t, ok := r.tokens[host+":"+effectivePort(u)]; ok {
		return t, true
	}
	t, ok := r.tokens[host]
	return t, ok
}

// scrub removes the tokens sent for this read from what goes back to the
// plugin, in case the server echoed them, in whatever spelling the echo
// took on its way (see findToken): letters in any case (the runtime
// lower-cases a host it quotes, net/http canonicalises header names), any
// of its bytes percent-escaped (a URL, escaped whole or in part), or
// escaped as in a JSON string ("\/", "\u002f"), and encoded in hex or
// base64 (see encodings) before any of these. A Content-Length the scrub
// made wrong is corrected: it would tell the token's length. The answer
// to a HEAD, and a 204 or 304 (a 304 is a response to read_hop_flags),
// has no body to scrub and count (bodiless), so its Content-Length, which
// may count an echo (a 304's is the 200's: RFC 9110, 8.6), is dropped.
// The response's Set-Cookie and Set-Cookie2 are dropped whatever the
// method (see below).
func (h *hopper) scrub(resp *Response, bodiless bool) {
	n := len(resp.Body)
	resp.Body = h.scrubBytes(resp.Body)
	// A cookie a server sets in answer to a request that carried a token
	// can be a session that token opened (Jenkins, Jira and Confluence
	// answer a token with an authenticated session cookie): a credential
	// as good as the token, which the plugin could hand on. The plugin
	// cannot send a cookie anyway.
	resp.Header = slices.DeleteFunc(resp.Header, func(hv [2]string) bool {
		return strings.EqualFold(hv[0], "Set-Cookie") || strings.EqualFold(hv[0], "Set-Cookie2") ||
			bodiless && strings.EqualFold(hv[0], "Content-Length")
	})
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

// bodyAllowed reports whether a response of status may have a body
// (RFC 9110, 6.4.1: not a 1xx, 204 or 304).
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

func (h *hopper) scrubString(s string) string {
	if b := h.scrubBytes([]byte(s)); string(b) != s {
		return string(b)
	}
	return s
}

// scrubBytes replaces every spelling of a sent token in b (see scrub) with
// [REDACTED]. b is returned as it is when it holds none.
func (h *hopper) scrubBytes(b []byte) []byte {
	var needles []string
	for _, tok := range h.tokens() {
		needles = append(needles, encodings(tok)...)
	}
	return redactAll(b, needles)
}

// tokens returns the tokens sent on this read, each once (every hop to a
// token's host sends it again).
func (h *hopper) tokens() []string {
	var out []string
	for _, tok := range h.sent {
		if !slices.Contains(out, tok) {
			out = append(out, tok)
		}
	}
	return out
}

// encodings returns tok and the encodings of it a server may echo: its hex
// and the base64 runs (standard and URL alphabets) that every base64
// encoding of a text holding tok holds, whatever the text around it
// ("Bearer " + tok, "user:" + tok): tok starts at one of three offsets of
// a 3-byte group, and the characters of the groups that are all tok's are
// the same at that offset. The characters of the groups tok shares with
// the text around it, at most three at either end (two of tok's bytes),
// are not among them.
func encodings(tok string) []string {
	out := []string{tok, hex.EncodeToString([]byte(tok))}
	for skip := range 3 {
		if n := (len(tok) - skip) / 3 * 3; n > 0 {
			core := []byte(tok[skip : skip+n])
			for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
				if e := enc.EncodeToString(core); !slices.Contains(out, e) {
					out = append(out, e)
				}
			}
		}
	}
	return out
}

// redactAll replaces every spelling of each of needles in b (see scrub)
// with [REDACTED]. b is returned as it is when it holds none.
func redactAll(b []byte, needles []string) []byte {
	if len(needles) == 0 {
		return b
	}
	// Without an escape character in b only a needle itself, in any
	// case, can be there: a linear search finds it, where matching at
	// every byte costs b's length times the needle's for a body much like
	// it. "[REDACTED]" brings no escape character.
	escapes := bytes.ContainsAny(b, "%+\\&")
	var lb []byte // b in lower case, when it has no escape character
	if !escapes {
		lb = lowerASCII(b)
	}
	for _, n := range needles {
		if out := redact(b, lb, escapes, n); out != nil {
			b = out
			if !escapes {
				lb = lowerASCII(b)
			}
		}
	}
	return b
}

// redact replaces every spelling of tok in b (see scrub) with [REDACTED]:
// a linear search of lb, b in lower case, or, where b holds an escape
// character (escapes), a match at every byte that may start an escape or
// tok. It returns nil when b holds none.
func redact(b, lb []byte, escapes bool, tok string) []byte {
	ltok := lowerASCII([]byte(tok))
	var out []byte
	last, i := 0, 0
	for i < len(b) {
		n := 0
		if !escapes {
			k := bytes.Index(lb[i:], ltok)
			if k < 0 {
				break
			}
			i, n = i+k, len(ltok)
		} else if c := b[i]; c == '%' || c == '+' || c == '\\' || c == '&' || sameByte(c, tok[0]) {
			n = findToken(b[i:], tok)
		}
		if n == 0 {
			i++
			continue
		}
		out = append(append(out, b[last:i]...), "[REDACTED]"...)
		i += n
		last = i
	}
	if out == nil {
		return nil
	}
	return append(out, b[last:]...)
}

// quotedElsewhere returns an error when u, the URL of a redirect, quotes
// a token sent on this read (in any spelling quotes finds) and u's host
// is not that token's: following it would hand the token to another host
// in the URL, and to whatever that host logs or redirects on to. A
// redirect to the token's own host may quote it, but only in a spelling
// the scrub cuts out of the URL the plugin gets (the final URL, or the
// Location its client follows): one escaped twice, or base64 of its
// base64, would reach the plugin; so would any in a URL over maxURL,
// which is not searched.
func (h *hopper) quotedElsewhere(u *url.URL) error {
	own, _ := h.r.token(u)
	s := []byte(u.String())
	if len(s) > maxURL {
		// Never read (check refuses it), but the plugin's client would
		// get it in the Location, where it is not searched.
		return errorf(Denied, "refused: the redirect's URL is %d bytes, over the limit of %d, too long to search for an integration token sent on this read", len(s), maxURL)
	}
	for _, tok := range h.tokens() {
		if tok != own.secret && quotes(s, tok) {
			return errorf(Denied, "refused: the redirect's URL quotes an integration token sent on this read, which would reach %s, a host it is not for", u.Host)
		}
	}
	if own.secret != "" && slices.Contains(h.tokens(), own.secret) && quotes(h.scrubBytes(s), own.secret) {
		return errorf(Denied, "refused: the redirect's URL quotes an integration token sent on this read in a spelling the runtime cannot cut out of it (escaped twice, or hex or base64 of an encoding of it), which would reach the plugin in the URL it reads")
	}
	return nil
}

// maxDecodeRounds is how many decodings deep quotes looks for a secret,
// past the spellings redactAll finds by itself; maxDecodeWork is how many
// decoded bytes it examines in all for one text, and decodeWorkPerByte
// that many per byte of the text when it is less (ordinary URLs, a
// presigned one's base64 token included, take under 8; a plugin sending
// many headers so costs the host no more than 64 times what it sent). A
// text still holding something new to decode after maxDecodeRounds, or
// one whose decodings pass that work, is taken to quote the secret: no
// URL a server means honestly nests that deep, and one made to cost the
// search more is refused, not followed unsearched.
const (
	maxDecodeRounds   = 16
	maxDecodeWork     = 1 << 20
	decodeWorkPerByte = 64
)

// maxQuoted is the longest text quotes decodes: one longer is taken to
// quote the secret (a redirect's URL is at most maxURL; a plugin's header
// that long goes to the host it addressed, not to another).
const maxQuoted = 16 << 10

// quotes reports whether b holds the secret tok in a spelling redactAll
// finds (any case, percent-, JSON- or HTML-escaped once, hex, base64 of a
// text holding it), or in one it finds in what b decodes to, decoded
// again and again in any order until nothing new comes of it (a
// fixpoint): b percent-decoded (%XX, and \xNN as some encoders write a
// byte; a URL nested in another's query,
// return_to=https%3A%2F%2F...%3Ft%3D<token escaped>, escapes the token's
// escapes again), a base64 run of b decoded, from each of its first four
// characters, in either alphabet, padded or not (base64 of a URL that
// holds the token escaped), and a run of hex digits decoded, from each of
// its first two (hex of the token's base64). The search is bounded by
// maxDecodeRounds and by maxDecodeWork or decodeWorkPerByte, past which b
// counts as quoting tok.
// It is for the text that would carry a secret to another host (a
// redirect's URL, a plugin's header), where a false alarm costs a refused
// redirect or a header left out, not for scrubbing: what it finds decoded
// cannot be cut out of b.
func quotes(b []byte, tok string) bool {
	if len(b) > maxQuoted {
		return true
	}
	needles := encodings(tok)
	shortest := len(tok)
	for _, n := range needles {
		shortest = min(shortest, len(n))
	}
	seen := map[string]bool{string(b): true}
	work, budget := 0, min(maxDecodeWork, decodeWorkPerByte*len(b))
	frontier := [][]byte{b}
	for round := 0; len(frontier) > 0; round++ {
		var next [][]byte
		for _, t := range frontier {
			if out := redactAll(t, needles); !bytes.Equal(out, t) {
				return true
			}
			if round == maxDecodeRounds {
				continue
			}
			for _, d := range decodings(t, shortest) {
				if seen[string(d)] {
					continue
				}
				if work += len(d); work > budget {
					return true
				}
				seen[string(d)] = true
				next = append(next, d)
			}
		}
		if round == maxDecodeRounds {
			// Found in none of the last round, but some still decodes.
			return slices.ContainsFunc(frontier, func(t []byte) bool {
				return slices.ContainsFunc(decodings(t, shortest), func(d []byte) bool { return !seen[string(d)] })
			})
		}
		frontier = next
	}
	return false
}

// decodings returns what b decodes to in one step, each at least
// shortest bytes long (a shorter one holds no needle): b with its escapes
// decoded, and each run of base64 characters or of hex digits decoded
// from each place a whole encoded byte may start.
func decodings(b []byte, shortest int) [][]byte {
	var out [][]byte
	if d := percentDecode(b); d != nil && len(d) >= shortest {
		out = append(out, d)
	}
	runs := func(in func(byte) bool, offsets int, decode func([]byte) []byte) {
		for i := 0; i < len(b); {
			if !in(b[i]) {
				i++
				continue
			}
			j := i
			for j < len(b) && in(b[j]) {
				j++
			}
			for off := 0; off < offsets && i+off < j; off++ {
				if d := decode(b[i+off : j]); len(d) >= shortest && len(d) > 0 {
					out = append(out, d)
				}
			}
			i = j
		}
	}
	runs(isBase64Char, 4, decodeBase64Run)
	runs(isHexDigit, 2, decodeHexRun)
	return out
}

// decodeHexRun decodes r, a run of hex digits in either case, as far as
// it goes in whole bytes.
func decodeHexRun(r []byte) []byte {
	out := make([]byte, len(r)/2)
	for i := range out {
		out[i] = unhex(r[2*i])<<4 | unhex(r[2*i+1])
	}
	return out
}

// percentDecode returns b with each %XX escape decoded, and each \xNN
// (a C, Python or JavaScript string's escape of a byte), other bytes as
// they are, or nil when b holds no escape.
func percentDecode(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); i++ {
		n := 0
		switch {
		case b[i] == '%' && i+2 < len(b) && isHexDigit(b[i+1]) && isHexDigit(b[i+2]):
			n = 1
		case b[i] == '\\' && i+3 < len(b) && (b[i+1] == 'x' || b[i+1] == 'X') && isHexDigit(b[i+2]) && isHexDigit(b[i+3]):
			n = 2
		}
		if n > 0 {
			if out == nil {
				out = append(make([]byte, 0, len(b)), b[:i]...)
			}
			out = append(out, unhex(b[i+n])<<4|unhex(b[i+n+1]))
			i += n + 1
			continue
		}
		if out != nil {
			out = append(out, b[i])
		}
	}
	return out
}

func isBase64Char(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_'
}

// decodeBase64Run decodes r, a run of base64 characters of either
// alphabet (mixed, as a URL-safe one whose '-' and '_' were not escaped
// is), as far as it goes in whole characters.
func decodeBase64Run(r []byte) []byte {
	n := len(r)
	if n%4 == 1 {
		n-- // a lone last character encodes no whole byte
	}
	std := make([]byte, n)
	for i, c := range r[:n] {
		switch c {
		case '-':
			c = '+'
		case '_':
			c = '/'
		}
		std[i] = c
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(n))
	m, _ := base64.RawStdEncoding.Decode(out, std)
	return out[:m]
}

// findToken returns the length of the spelling of tok that b starts with,
// or 0 when it starts with none. Each byte of tok may be spelled as
// itself (an ASCII letter in either case), percent-escaped (%2f, %2F), as
// '+' for a space (a query's escape), or, for an ASCII byte, escaped as in
// a JSON string (\/ for a slash, \" and \\, \u002f in either case) or as
// an HTML character reference (&#43;, &#x2b;, &amp;), so that an echo
// escaped whole, in part, or by a JSON or HTML encoder is found. Where an
// escape spells the token's byte and so does its first byte read as
// itself (a token holding '%', '\\' or '&': "%25" is '%' either way), both
// readings are tried.
func findToken(b []byte, tok string) int {
	var failed map[[2]int]bool // (j, k) from which no reading matches
	var match func(j, k int) int
	match = func(j, k int) int {
		for ; k < len(tok); k++ {
			if j >= len(b) {
				return -1
			}
			c, n := spelled(b[j:])
			esc := sameByte(c, tok[k])
			lit := b[j] == tok[k]
			switch {
			case esc && lit && n > 1:
				if failed[[2]int{j, k}] {
					return -1
				}
				if end := match(j+n, k+1); end >= 0 {
					return end
				}
				if failed == nil {
					failed = map[[2]int]bool{}
				}
				failed[[2]int{j, k}] = true
				j++
			case esc:
				j += n
			case lit:
				j++
			default:
				return -1
			}
		}
		return j
	}
	return max(match(0, 0), 0)
}

// spelled decodes the escape b starts with (percent, '+', a JSON string's,
// an HTML character reference) and returns the byte and the escape's
// length, or, when b starts with no escape, its first byte and 1.
func spelled(b []byte) (byte, int) {
	switch {
	case b[0] == '%' && len(b) >= 3 && isHexDigit(b[1]) && isHexDigit(b[2]):
		return unhex(b[1])<<4 | unhex(b[2]), 3
	case b[0] == '+':
		return ' ', 1
	case b[0] == '\\' && len(b) >= 2 && strings.IndexByte(`/"\\`, b[1]) >= 0:
		return b[1], 2
	case b[0] == '\\' && len(b) >= 6 && b[1] == 'u' && b[2] == '0' && b[3] == '0' && isHexDigit(b[4]) && isHexDigit(b[5]) && unhex(b[4]) < 8:
		return unhex(b[4])<<4 | unhex(b[5]), 6
	case b[0] == '&':
		return htmlReference(b)
	}
	return b[0], 1
}

// htmlReference decodes the HTML character reference b starts with, for
// an ASCII character: &#43; &#x2B; &amp; &lt; &gt; &quot; &apos;.
func htmlReference(b []byte) (byte, int) {
	end := bytes.IndexByte(b[:min(len(b), 10)], ';')
	if end < 0 {
		return b[0], 1
	}
	ref := string(b[1:end])
	if named, ok := map[string]byte{"amp": '&', "lt": '<', "gt": '>', "quot": '"', "apos": '\''}[ref]; ok {
		return named, end + 1
	}
	if !strings.HasPrefix(ref, "#") {
		return b[0], 1
	}
	base, digits := 10, ref[1:]
	if strings.HasPrefix(digits, "x") || strings.HasPrefix(digits, "X") {
		base, digits = 16, digits[1:]
	}
	v, err := strconv.ParseUint(digits, base, 8)
	if err != nil || digits == "" || v >= 0x80 {
		return b[0], 1
	}
	return byte(v), end + 1
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

// sameByte reports whether a and b are the same byte, ASCII letters in
// either case.
func sameByte(a, b byte) bool {
	if 'A' <= a && a <= 'Z' {
		a += 'a' - 'A'
	}
	if 'A' <= b && b <= 'Z' {
		b += 'a' - 'A'
	}
	return a == b
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// scrubErr is scrub for an error's message, which may quote a URL or a
// header line the server made of a token: a refused redirect's URL, a
// malformed Location. Past the spellings the scrub cuts out, a word of
// the message (a run without spaces, as a URL is) that still quotes a
// sent token in a spelling quotes finds (escaped twice, base64 of its
// base64) is [REDACTED] whole, and a message that quotes one across its
// words is withheld, its kind and the URL the plugin asked for kept.
func (h *hopper) scrubErr(err error, reqURL string) error {
	if err == nil {
		return nil
	}
	msg := h.scrubString(err.Error())
	quoted := func(s string) bool {
		return slices.ContainsFunc(h.tokens(), func(tok string) bool { return quotes([]byte(s), tok) })
	}
	if quoted(msg) {
		words := strings.Split(msg, " ")
		for i, w := range words {
			if quoted(w) {
				end := strings.TrimRight(w, `:,;"'`)
				words[i] = "[REDACTED]" + w[len(end):]
			}
		}
		msg = strings.Join(words, " ")
		if quoted(msg) {
			where := reqURL
			if u, err := url.Parse(reqURL); err == nil {
				where = u.Redacted()
			}
			why := "it quoted an integration token sent on this read, in a spelling the runtime cannot cut out of it"
			if len(msg) > maxQuoted {
				why = fmt.Sprintf("it is over %d KiB, too long to search for an integration token sent on this read", maxQuoted>>10)
			}
			msg = fmt.Sprintf("%s: the read failed (%s); its message is withheld: %s", where, KindOf(err), why)
		}
	}
	if msg != err.Error() {
		return &Error{Kind: KindOf(err), Msg: msg}
	}
	return err
}

// lazyGzip decodes a gzip body, opening the decoder at the first Read (an
// empty body is an empty body, as net/http's own decoding has it).
type lazyGzip struct {
	r  io.ReadCloser
	zr *gzip.Reader
}

func (g *lazyGzip) Read(b []byte) (int, error) {
	if g.zr == nil {
		zr, err := gzip.NewReader(g.r)
		if err != nil {
			return 0, err
		}
		g.zr = zr
	}
	return g.zr.Read(b)
}

func (g *lazyGzip) Close() error { return g.r.Close() }
