package greenroom

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// ReadResponse is what ReadURL read.
type ReadResponse struct {
	// Status is the HTTP status, 2xx (other statuses are a *StatusError).
	Status int
	// URL is the URL that answered, after redirects.
	URL string
	// Header holds the response headers.
	Header http.Header
	// Body is the response body, at most the operator's reading.max_bytes.
	Body []byte
	// ETag is the entity tag as sent ("\"abc\"" or "W/\"abc\""); pass it
	// to IfNoneMatch on the next read.
	ETag string
	// LastModified is the parsed Last-Modified header; zero when the
	// server sent none or an unparseable one (the raw value stays in
	// Header).
	LastModified time.Time
}

// ReadOption changes a read.
type ReadOption func(*readOptions)

type readOptions struct {
	header http.Header
}

// IfNoneMatch makes the read conditional: when the resource still has this
// ETag, ReadURL returns ErrNotModified instead of the body.
func IfNoneMatch(etag string) ReadOption {
	return func(o *readOptions) { o.header.Set("If-None-Match", etag) }
}

// IfModifiedSince makes the read conditional on the resource having changed
// since t: when it has not, ReadURL returns ErrNotModified.
func IfModifiedSince(t time.Time) ReadOption {
	return func(o *readOptions) { o.header.Set("If-Modified-Since", t.UTC().Format(http.TimeFormat)) }
}

// WithHeader adds a request header (Accept, Accept-Language, Range, ...).
// Credentials (Authorization, Cookie), hop-by-hop and forwarding headers are
// refused with ErrDenied: the runtime adds the operator's integration
// credentials itself.
func WithHeader(key, value string) ReadOption {
	return func(o *readOptions) { o.header.Add(key, value) }
}

// StatusError is ReadURL's error for a response with a status other than
// 2xx or 304. The response is kept, body included. A 404 matches
// ErrNotFound.
type StatusError struct {
	Response *ReadResponse
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("greenroom: read %s: HTTP %d %s", e.Response.URL, e.Response.Status, http.StatusText(e.Response.Status))
}

// Is matches ErrNotFound for HTTP 404.
func (e *StatusError) Is(target error) bool {
	return target == ErrNotFound && e.Response.Status == http.StatusNotFound
}

// ReadURL reads url with GET through the runtime's URL reader: the
// operator's [reading] allow list and this plugin's grant
// ([plugins.<id>.capabilities] urlreader) must both allow it. The read ends
// at the earliest of ctx's deadline, the call's deadline and the operator's
// reading.timeout.
//
// Errors match (errors.Is) ErrDenied when a grant, allow rule or address
// rule refused (the message names it), ErrNotModified for a conditional
// read of an unchanged resource, ErrTooLarge for a body over
// reading.max_bytes, ErrTimeout when a deadline passed, ErrInvalid for a
// malformed URL, ErrFailed for network failures; a status other than 2xx is
// a *StatusError (404 matches ErrNotFound).
//
// In a native (non-wasm) build ReadURL uses net/http directly, through the
// transport set with SetURLTransport (http.DefaultTransport by default),
// with no allow rules, grants or integration credentials: it exists so that
// plugins run and unit-test natively. The runtime's rules that need no
// config hold there too, with its errors (the URL's form, the request
// headers it refuses from every plugin, no Referer on a redirect, no
// hop-by-hop response headers), as do its defaults (reading.max_bytes
// 16 MiB, reading.timeout 30s, its User-Agent). What still differs, so
// that a unit test passes where the deployed read fails, is what needs the
// operator's config or is left to net/http (docs/urlreader.md, "Native
// builds"): every host is read, over plain http too, loopback and private
// addresses included, and every path of it, one with an encoded slash
// (%2F) or a segment that servers which decode it again or read it
// loosely take for a dot segment (%25252e%25252e, ..%20, ...) too, which
// the runtime reads only for an allow rule and a grant that cover the
// whole host; the runtime's rules for a host's spelling and for
// path segments as lax servers read them are not applied; no
// integration token is added; and a context canceled during a read ends
// it, where the runtime sees it only before the read.
func ReadURL(ctx context.Context, url string, opts ...ReadOption) (*ReadResponse, error) {
	o := readOptions{header: http.Header{}}
	for _, opt := range opts {
		opt(&o)
	}
	resp, err := readURL(ctx, &urlRequest{method: http.MethodGet, url: url, header: o.header})
	if errors.Is(err, ErrNotModified) {
		// The sentinel itself, so that err == ErrNotModified holds as
		// for io.EOF (the caller knows the URL and the validator).
		return nil, ErrNotModified
	}
	if err != nil {
		return nil, err
	}
	rr := &ReadResponse{
		Status: resp.status,
		URL:    resp.url,
		Header: resp.header,
		Body:   resp.body,
		ETag:   resp.etag,
	}
	if resp.lastModified != "" {
		rr.LastModified, _ = http.ParseTime(resp.lastModified)
	}
	if rr.Status < 200 || rr.Status > 299 {
		return nil, &StatusError{Response: rr}
	}
	return rr, nil
}

// readURL performs one read with ctx's deadline.
func readURL(ctx context.Context, req *urlRequest) (*urlResponse, error) {
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			// As a deadline passing during the read: ErrTimeout, which
			// also matches context.DeadlineExceeded.
			return nil, &Error{Op: "urlreader_call", Code: errTimeout, Message: "the plugin's deadline for this read passed before it began"}
		}
		return nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		req.deadline = d
	}
	return callURL(ctx, req)
}

// callURL is urlCall; tests replace it.
var callURL = urlCall

// hopOps is how far HTTPClient has fallen back from read_hop_flags, once
// the runtime answered an operation as one it does not know (one older
// than it): 0 reads with read_hop_flags; 1 with read_hop, which does not
// tell whether the runtime decoded the body; 2 with read_url, whose
// redirects the runtime follows, as before read_hop.
var hopOps atomic.Int32

// unknownOp reports whether err is the runtime's refusal of op as an
// operation it does not know (docs/abi.md: a guest can fall back), and
// not another ErrInvalid, whose message may quote a URL that says so.
func unknownOp(err error, op int) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == errInvalid && e.Message == "malformed urlreader request: unknown operation "+strconv.Itoa(op)
}

// readHop reads ur, one hop of HTTPClient's, with the newest operation
// the runtime knows of read_hop_flags, read_hop and read_url.
func readHop(ctx context.Context, ur *urlRequest) (*urlResponse, error) {
	for {
		n := hopOps.Load()
		ur.hop, ur.flags = n < 2, n < 1
		resp, err := readURL(ctx, ur)
		switch {
		case ur.flags && unknownOp(err, opReadHopFlags):
			hopOps.CompareAndSwap(0, 1)
		case ur.hop && !ur.flags && unknownOp(err, opReadHop):
			hopOps.Store(2)
		default:
			return resp, err
		}
	}
}

// HTTPClient returns an *http.Client whose transport is the runtime's URL
// reader, for code that takes an *http.Client: it reads with GET and HEAD
// under the same rules as ReadURL (other methods, and requests with a body,
// get an ErrInvalid error). The client follows redirects as net/http's
// does, so that its CheckRedirect decides (http.ErrUseLastResponse hands
// it the 3xx); each hop is a read of its own, which the runtime checks as
// the first and as a redirect it follows itself (at most 5). A
// conditional request for an unchanged resource gets the server's 304
// response, as from any server. A request whose Host differs from its
// URL's host (but for letter case and the scheme's default port) is
// refused (ErrDenied): the reader sends the URL's. As with net/http's
// client, the Host, Content-Length, Transfer-Encoding and Trailer entries
// of the request's Header are not sent; nor are Connection, Keep-Alive,
// Proxy-Connection and TE, which the runtime, which makes and manages the
// connection, would refuse, nor Accept-Encoding: the runtime asks for gzip
// itself and hands bodies over decoded, and a response whose body it
// decoded comes as net/http's Transport hands over one it decoded
// (Uncompressed, ContentLength -1, no Content-Encoding or
// Content-Length). A response body read after Close fails, as net/http's
// does. The reader sends no cookies (Cookie is refused as a credential):
// leave the client's Jar unset, as a Jar that stored a cookie fails the
// next request to that site (the error says so), as a Cookie the plugin
// sets does.
func HTTPClient() *http.Client {
	return &http.Client{Transport: urlTransport{}}
}

type urlTransport struct{}

func (urlTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		// A body of unknown length (ContentLength 0) is refused unless it
		// is empty: it would otherwise be dropped without a word.
		empty := req.ContentLength == 0
		if empty {
			var one [1]byte
			n, _ := io.ReadFull(req.Body, one[:])
			empty = n == 0
		}
		req.Body.Close()
		if !empty || req.Method != http.MethodGet && req.Method != http.MethodHead && req.Method != "" {
			return nil, &Error{Op: "urlreader_call", Code: errInvalid, Message: fmt.Sprintf("%s %s: the URL reader reads with GET and HEAD only, without a body", req.Method, req.URL.Redacted())}
		}
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if method != http.MethodGet && method != http.MethodHead {
		return nil, &Error{Op: "urlreader_call", Code: errInvalid, Message: fmt.Sprintf("method %s is not supported: the URL reader reads with GET and HEAD only", method)}
	}
	if req.Host != "" && !sameHostPort(req.Host, req.URL) {
		// net/http's client would send it as the Host header, and a
		// server of virtual hosts would answer for that site; the URL
		// reader sends the URL's host, so the plugin got another site's
		// answer without a word. Refused as a Host header given to
		// ReadURL is (one in req.Header is not sent: sentHeader).
		return nil, &Error{Op: "urlreader_call", Code: errDenied, Message: fmt.Sprintf("%s %s: request Host %q may not be set by a plugin: the host is the URL's (%s); put the host in the URL", method, req.URL.Redacted(), req.Host, req.URL.Host)}
	}
	if len(req.Header.Values("Cookie")) != 0 {
		// The runtime refuses Cookie as a credential; refused here, the
		// error can say where one comes from when the plugin set none:
		// net/http's client adds the cookies its Jar stored for the URL
		// (one an earlier response, or a redirect's, set) to every
		// request it sends there.
		return nil, &Error{Op: "urlreader_call", Code: errDenied, Message: errCookie}
	}
	ur := &urlRequest{method: method, url: req.URL.String(), header: sentHeader(req.Header), via: via(req)}
	resp, err := readHop(req.Context(), ur)
	if errors.Is(err, ErrNotModified) {
		// From a runtime older than read_hop_flags (which hands the
		// server's 304 over as a response): a 304 of the validators the
		// request sent.
		h := http.Header{}
		if etag := req.Header.Get("If-None-Match"); etag != "" {
			h.Set("ETag", etag)
		}
		return &http.Response{
			Status: "304 Not Modified", StatusCode: http.StatusNotModified,
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: h, Body: http.NoBody, Request: req,
		}, nil
	}
	if err != nil {
		return nil, err
	}
	out := &http.Response{
		Status:     fmt.Sprintf("%d %s", resp.status, http.StatusText(resp.status)),
		StatusCode: resp.status,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        resp.header,
		Body:          &responseBody{r: bytes.NewReader(resp.body)},
		ContentLength: int64(len(resp.body)),
		Request:       req,
	}
	if resp.decoded {
		// As net/http's Transport says of a body it decoded: the
		// runtime dropped Content-Encoding and Content-Length.
		out.Uncompressed = true
		out.ContentLength = -1
	} else if resp.status == http.StatusNoContent || resp.status == http.StatusNotModified || resp.header.Get("Content-Length") == "0" {
		// net/http's body of a response that has none, which reads
		// io.EOF after Close too.
		out.Body = http.NoBody
	}
	if method == http.MethodHead {
		out.Body = http.NoBody
		out.ContentLength = -1
		if n, err := strconv.ParseInt(resp.header.Get("Content-Length"), 10, 64); err == nil {
			out.ContentLength = n
		}
	}
	return out, nil
}

// errCookie is the refusal of a request with a Cookie header, whether the
// plugin set it or the client's Jar added it.
const errCookie = "request header Cookie may not be set by a plugin: it carries credentials; the URL reader sends no cookies: set none, and leave the client's Jar unset (a Jar adds the cookies a response set for the site to the requests that follow)"

// errReadOnClosedBody is net/http's error for a read of a response body
// after its Close (its errReadOnClosedResBody, unexported): the text is
// the same, so that code that tells it by its message still does.
var errReadOnClosedBody = errors.New("http: read on closed response body")

// responseBody is a response's body, whole in memory: as net/http's, a
// Read after Close fails (it read on, as io.NopCloser does, so that code
// that closed a body too early worked here and failed natively).
// A Close may come from another goroutine than the reads (one that
// watches a context), as net/http allows.
type responseBody struct {
	r      *bytes.Reader
	closed atomic.Bool
}

func (b *responseBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errReadOnClosedBody
	}
	return b.r.Read(p)
}

func (b *responseBody) Close() error {
	b.closed.Store(true)
	return nil
}

// sameHostPort reports whether host, a request's Host, names u's host:
// the same but for letter case and the scheme's default port (80, 443),
// written in one and not the other ("docs.example" and
// "docs.example:443" for https), as net/http sends either as written and
// a server answers both for one site. They were refused as another host.
func sameHostPort(host string, u *url.URL) bool {
	if strings.EqualFold(host, u.Host) {
		return true
	}
	def := map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	split := func(hp string) (h, port string, ok bool) {
		h = hp
		if i := strings.LastIndexByte(hp, ':'); i >= 0 && !strings.Contains(hp[i:], "]") {
			h, port = hp[:i], hp[i+1:]
			if port == "" {
				return "", "", false // "host:": written as no other is
			}
		}
		if port == "" {
			port = def
		}
		return h, port, def != ""
	}
	h1, p1, ok1 := split(host)
	h2, p2, ok2 := split(u.Host)
	return ok1 && ok2 && p1 == p2 && strings.EqualFold(h1, h2)
}

// notSent are the request headers HTTPClient does not send from
// Request.Header, where the runtime would refuse them and fail the read
// (docs/urlreader.md):
//
//   - those net/http's client never sends from there (its
//     reqWriteExcludeHeader, but User-Agent, which it sends from there): it
//     writes Host from Request.Host or the URL, and Content-Length,
//     Transfer-Encoding and Trailer from the request's own fields. Code
//     written for it sets them harmlessly (a signer's Host, a GET's
//     Content-Length: 0);
//   - the hop-by-hop headers of connection management, Connection,
//     Keep-Alive, Proxy-Connection and TE, which net/http's client sends
//     and a server accepts (Connection: close, keep-alive; TE: trailers):
//     they are about the connection, which the runtime makes and manages,
//     not the request. Upgrade is still sent, and refused: a protocol
//     switch is not a read, and dropping it would hand the plugin a
//     server's answer to another request than it made;
//   - Accept-Encoding: the runtime asks for gzip itself and hands every
//     body over decoded (so that it can search it for an echoed
//     integration token). net/http's client sends the caller's and then
//     hands over the body as the server encoded it; here the plugin gets
//     it decoded, without Content-Encoding, as a server that answers
//     without a coding sends it (Response.Uncompressed says the runtime
//     decoded it).
var notSent = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Trailer": true,
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Accept-Encoding": true,
}

// sentHeader is h without the headers notSent names (in any letter
// case): h itself when it has none, else a copy (a RoundTripper must not
// change the request).
func sentHeader(h http.Header) http.Header {
	var out http.Header
	for k := range h {
		if notSent[http.CanonicalHeaderKey(k)] {
			if out == nil {
				out = h.Clone()
			}
			delete(out, k)
		}
	}
	if out == nil {
		return h
	}
	return out
}

// via returns the URLs of the requests Go's client made before req, a
// redirect it follows (the redirect's Response names its request, whose
// own Response the one before), the first request's first: the runtime
// applies to this hop what it applies to a redirect it follows itself.
func via(req *http.Request) []string {
	var urls []string
	for r := req.Response; r != nil && r.Request != nil; r = r.Request.Response {
		urls = append(urls, r.Request.URL.String())
	}
	slices.Reverse(urls)
	return urls
}

// urlRequest is one URL reader request (operation read_url, or read_hop
// with hop set).
type urlRequest struct {
	method   string
	url      string
	deadline time.Time
	header   http.Header
	hop      bool     // a redirect comes back as the response
	flags    bool     // read_hop_flags (with hop): the response ends with flags
	via      []string // a hop's earlier hops, the first request's first
}

// urlResponse is a decoded URL reader response.
type urlResponse struct {
	status       int
	url          string
	etag         string
	lastModified string
	header       http.Header
	body         []byte
	decoded      bool // the runtime decoded a gzip body (flagDecoded)
}

// The URL reader's operations (docs/abi.md, "URL reader").
const (
	opReadURL      = 1
	opReadHop      = 4
	opReadHopFlags = 5
)

// flagDecoded, in read_hop_flags' response: the runtime decoded a gzip
// body, dropping its Content-Encoding and Content-Length.
const flagDecoded = 1

// appendURLRequest encodes req as a urlreader_call request envelope.
func appendURLRequest(dst []byte, req *urlRequest) []byte {
	op := byte(opReadURL)
	if req.hop {
		op = opReadHop
		if req.flags {
			op = opReadHopFlags
		}
	}
	dst = append(dst, op)
	dst = appendStr(dst, req.url)
	dst = appendStr(dst, req.method)
	var deadline uint64
	if !req.deadline.IsZero() {
		deadline = uint64(req.deadline.UnixNano())
	}
	dst = appendU64(dst, deadline)
	n := 0
	for _, vs := range req.header {
		n += len(vs)
	}
	dst = appendU32(dst, uint32(n))
	for k, vs := range req.header {
		for _, v := range vs {
			dst = appendStr(dst, k)
			dst = appendStr(dst, v)
		}
	}
	if req.hop {
		dst = appendU32(dst, uint32(len(req.via)))
		for _, u := range req.via {
			dst = appendStr(dst, u)
		}
	}
	return dst
}

var errBadURLResponse = errors.New("greenroom: malformed urlreader response")

// decodeURLResponse parses a response envelope, one of read_hop_flags
// when flags is set. The body aliases b.
func decodeURLResponse(b []byte, flags bool) (*urlResponse, error) {
	r := byteReader{b: b}
	resp := &urlResponse{status: int(r.u32())}
	resp.url = string(r.bytes())
	resp.etag = string(r.bytes())
	resp.lastModified = string(r.bytes())
	n := int(r.u32())
	if r.bad || n > (len(b)-r.off)/8 {
		return nil, errBadURLResponse
	}
	resp.header = make(http.Header, n)
	for i := 0; i < n; i++ {
		k := http.CanonicalHeaderKey(string(r.bytes()))
		v := string(r.bytes())
		resp.header[k] = append(resp.header[k], v)
	}
	resp.body = r.bytes()
	if flags {
		resp.decoded = r.u32()&flagDecoded != 0
	}
	if r.bad || r.off != len(b) {
		return nil, errBadURLResponse
	}
	return resp, nil
}

// byteReader reads length-prefixed fields; after the first short read it
// returns zero values and bad is set.
type byteReader struct {
	b   []byte
	off int
	bad bool
}

func (r *byteReader) u32() uint32 {
	if r.bad || len(r.b)-r.off < 4 {
		r.bad = true
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

func (r *byteReader) bytes() []byte {
	n := r.u32()
	if r.bad || uint64(n) > uint64(len(r.b)-r.off) {
		r.bad = true
		return nil
	}
	v := r.b[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return v
}
