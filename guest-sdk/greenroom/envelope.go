package greenroom

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// This file implements the request and response envelopes of ABI v1
// (docs/abi.md, "Envelopes"). It is plain Go so that it is tested natively;
// the wasip1 build feeds it the bytes the host hands over.

// Principal types as encoded in the request envelope.
const (
	principalNone    = 0
	principalUser    = 1
	principalService = 2
)

var errShortEnvelope = errors.New("greenroom: truncated request envelope")

// envReader reads length-prefixed fields from an envelope held in a string,
// so that every decoded field is a substring of one allocation.
type envReader struct {
	s   string
	off int
	err error
}

func (r *envReader) u32() uint32 {
	if r.err != nil {
		return 0
	}
	if len(r.s)-r.off < 4 {
		r.err = errShortEnvelope
		return 0
	}
	v := uint32(r.s[r.off]) | uint32(r.s[r.off+1])<<8 | uint32(r.s[r.off+2])<<16 | uint32(r.s[r.off+3])<<24
	r.off += 4
	return v
}

func (r *envReader) u64() uint64 {
	lo := uint64(r.u32())
	hi := uint64(r.u32())
	return lo | hi<<32
}

func (r *envReader) u8() uint8 {
	if r.err != nil {
		return 0
	}
	if len(r.s)-r.off < 1 {
		r.err = errShortEnvelope
		return 0
	}
	v := r.s[r.off]
	r.off++
	return v
}

func (r *envReader) str() string {
	n := int(r.u32())
	if r.err != nil {
		return ""
	}
	if n < 0 || len(r.s)-r.off < n {
		r.err = errShortEnvelope
		return ""
	}
	v := r.s[r.off : r.off+n]
	r.off += n
	return v
}

// requestMeta is what the envelope carries besides the HTTP request itself.
type requestMeta struct {
	requestID string
	principal principalData
}

type principalData struct {
	typ     uint8
	subject string
	claims  string // JSON object text, or ""
}

// decodeRequest turns a request envelope into an *http.Request whose context
// carries the deadline, request id and principal, and the request's own
// response writer.
func decodeRequest(env string) (*http.Request, *responseWriter, error) {
	r := envReader{s: env}
	method := r.str()
	rawPath := r.str()
	rawQuery := r.str()
	var meta requestMeta
	meta.requestID = r.str()
	remoteAddr := r.str()
	deadline := int64(r.u64())
	meta.principal.typ = r.u8()
	meta.principal.subject = r.str()
	meta.principal.claims = r.str()
	nh := int(r.u32())
	if r.err != nil {
		return nil, nil, r.err
	}
	// Each header needs at least 8 bytes; refuse counts the envelope cannot hold.
	if nh < 0 || nh > (len(env)-r.off)/8 {
		return nil, nil, errShortEnvelope
	}
	// One allocation holds the context, the URL and (for the usual few
	// headers) the header values; each value is a full slice, so a
	// handler's append copies instead of overwriting its neighbour.
	hold := &requestHold{ctx: requestContext{meta: meta}}
	values := hold.values[:]
	if nh > len(values) {
		values = make([]string, nh)
	}
	header := make(http.Header, nh)
	host := ""
	for i := 0; i < nh; i++ {
		// Names arrive in canonical form (docs/abi.md): the host
		// canonicalises them, natively and cheaply.
		key := r.str()
		value := r.str()
		if r.err != nil {
			return nil, nil, r.err
		}
		if key == "Host" {
			host = value
			continue
		}
		if prev, ok := header[key]; ok {
			header[key] = append(prev, value)
			continue
		}
		values[i] = value
		header[key] = values[i : i+1 : i+1]
	}
	body := r.str()
	if r.err != nil {
		return nil, nil, r.err
	}
	if len(body) >= bodyApart {
		// Every field is a view of the envelope, the body's bytes
		// included: a handler that kept a header, the path (a
		// PathValue) or the principal's subject would keep the whole
		// body alive in the plugin's memory. With a large body the head
		// gets memory of its own.
		head := strings.Clone(env[:len(env)-len(body)])
		re := func(s string) string {
			if s == "" {
				return "" // a view of length 0 still points into env
			}
			if o, ok := offsetIn(s, env); ok {
				return head[o : o+len(s)]
			}
			return s
		}
		method, rawPath, rawQuery, remoteAddr, host = re(method), re(rawPath), re(rawQuery), re(remoteAddr), re(host)
		m := &hold.ctx.meta
		m.requestID, m.principal.subject, m.principal.claims = re(m.requestID), re(m.principal.subject), re(m.principal.claims)
		rebased := make(http.Header, len(header))
		for k, vs := range header {
			for i := range vs {
				vs[i] = re(vs[i])
			}
			rebased[re(k)] = vs
		}
		header = rebased
	}

	u := &hold.url
	u.Path, u.RawQuery = rawPath, rawQuery
	unescaped := true
	if strings.IndexByte(rawPath, '%') >= 0 {
		p, err := url.PathUnescape(rawPath)
		if unescaped = err == nil; unescaped {
			u.Path = p
		}
	}
	// RawPath as net/http's server sets it (url.URL.setPath): only when
	// the path is written otherwise than Path's own escaping would write
	// it (%2F, lower-case hex, or a character sent unescaped that Path's
	// escaping escapes: é, {, !), so that routers that match on a RawPath
	// set (chi, echo) see /items/a%20b as /items/a b, as they do natively,
	// and not its escapes. EscapedPath allocates nothing for a path with
	// nothing to escape.
	if unescaped && u.EscapedPath() != rawPath {
		u.RawPath = rawPath
	}
	if deadline > 0 {
		hold.ctx.deadline = time.Unix(0, deadline)
	}
	req := hold.request()
	req.Method = method
	req.URL = u
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, 1
	req.Header = header
	req.Body = http.NoBody
	req.ContentLength = int64(len(body))
	req.Host = host
	req.RemoteAddr = remoteAddr
	req.RequestURI = rawPath
	if rawQuery != "" {
		req.RequestURI = rawPath + "?" + rawQuery
	}
	if len(body) > 0 {
		hold.body.r.Reset(body)
		req.Body = &hold.body
		// Let go of the body when the handler returns (finish): the
		// hold is one allocation with the URL, the header slices and the
		// context, which a handler may keep.
		hold.ctx.body = &hold.body
	}
	hold.rw.status = http.StatusOK
	hold.rw.ctx = &hold.ctx
	hold.rw.isHead = method == http.MethodHead
	return req, &hold.rw, nil
}

// bodyApart is the size from which a request's body no longer shares its
// memory with the rest of the request (decodeRequest).
const bodyApart = 16 << 10

// offsetIn reports where s starts within env, if it is a view of it.
func offsetIn(s, env string) (int, bool) {
	if len(s) == 0 || len(env) == 0 {
		return 0, false
	}
	o := uintptr(unsafe.Pointer(unsafe.StringData(s))) - uintptr(unsafe.Pointer(unsafe.StringData(env)))
	if o >= uintptr(len(env)) {
		return 0, false
	}
	return int(o), true
}

// requestHold gathers a request's small allocations into one.
type requestHold struct {
	req    http.Request
	ctx    requestContext
	url    url.URL
	rw     responseWriter
	body   requestBody
	values [8]string
}

// requestBody is a request's body, read from the envelope. As net/http's,
// it fails a Read after Close with http.ErrBodyReadAfterClose.
type requestBody struct {
	r      strings.Reader
	closed bool
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	return b.r.Read(p)
}

// WriteTo writes the rest of the body to w in one Write (WriteString when
// w has it, as the response writer does), so that io.Copy(w, r.Body)
// allocates no 32 KiB buffer to copy through: in wasm that buffer's
// allocation and zeroing cost more than the copy itself.
func (b *requestBody) WriteTo(w io.Writer) (int64, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	return b.r.WriteTo(w)
}

func (b *requestBody) Close() error {
	b.closed = true
	return nil
}

// request returns the hold's Request with its context set. In wasm every
// allocation and large copy costs about a microsecond, and WithContext
// would allocate and copy a second Request only to set one field, so the
// field is set in place: its offset is looked up once, by name and type,
// with reflection. Should a future net/http rename or retype it, the
// lookup fails and WithContext is used, as correct as before and a little
// slower.
func (h *requestHold) request() *http.Request {
	if ctxField.ok {
		*(*context.Context)(unsafe.Add(unsafe.Pointer(&h.req), ctxField.offset)) = &h.ctx
		return &h.req
	}
	var zero http.Request
	return zero.WithContext(&h.ctx)
}

var ctxField = func() (f struct {
	offset uintptr
	ok     bool
}) {
	sf, found := reflect.TypeFor[http.Request]().FieldByName("ctx")
	if found && sf.Type == reflect.TypeFor[context.Context]() {
		f.offset, f.ok = sf.Offset, true
	}
	return f
}()

// requestContext is the context of one request. It knows its deadline but
// only arms a timer when somebody asks for Done, which most handlers never do.
type requestContext struct {
	meta     requestMeta
	deadline time.Time
	inner    context.Context
	cancel   context.CancelFunc
	finished bool // the handler returned: canceled, as net/http's is
	// body is the request's body, closed and emptied by finish.
	body *requestBody
}

type requestContextKey struct{}

func (c *requestContext) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

func (c *requestContext) armed() context.Context {
	if c.inner == nil {
		if c.deadline.IsZero() {
			c.inner, c.cancel = context.WithCancel(context.Background())
		} else {
			c.inner, c.cancel = context.WithDeadline(context.Background(), c.deadline)
		}
		if c.finished {
			c.cancel()
		}
	}
	return c.inner
}

func (c *requestContext) Done() <-chan struct{} { return c.armed().Done() }

func (c *requestContext) Err() error {
	if c.inner != nil {
		return c.inner.Err()
	}
	if c.finished {
		return context.Canceled
	}
	if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *requestContext) Value(key any) any {
	if key == (requestContextKey{}) {
		return c
	}
	if c.inner != nil {
		// Lets the context package find the armed cancelCtx and link
		// children to it directly instead of starting a goroutine.
		return c.inner.Value(key)
	}
	return nil
}

// finish ends the context once the handler returned (code that kept it
// sees it canceled, as with net/http's server) and releases the timer
// armed by Done, if any.
func (c *requestContext) finish() {
	c.finished = true
	if c.body != nil {
		// A read after the handler returned fails, as net/http's
		// ("http: invalid Read on closed Body"), and the body's bytes
		// (the envelope) are not kept by whatever the handler kept.
		c.body.closed = true
		c.body.r.Reset("")
		c.body = nil
	}
	if c.cancel != nil {
		c.cancel()
	}
}

func requestContextFrom(ctx context.Context) *requestContext {
	c, _ := ctx.Value(requestContextKey{}).(*requestContext)
	return c
}

// RequestID returns the id the runtime gave the request that ctx belongs to,
// the same id that appears in the runtime's access log, or "" outside a
// request.
func RequestID(ctx context.Context) string {
	if c := requestContextFrom(ctx); c != nil {
		return c.meta.requestID
	}
	return ""
}

// responseWriter buffers one request's response; the SDK sends it to the
// host in one piece when the handler returns. Every request gets a writer
// of its own: a goroutine the handler started may still hold it after the
// handler returned, and nothing it writes then may reach another request.
// Such late writes fail with errWriteAfterReturn.
//
// As net/http's, the writer takes the header when the status is written
// (WriteHeader, or the first Write): later changes to the header map are
// not sent.
type responseWriter struct {
	header      http.Header // made on the first Header call
	status      int
	wroteHeader bool
	warned      bool   // a superfluous WriteHeader was logged (once per response)
	done        bool   // the handler returned: the writer is retired
	noSniff     bool   // the header, when taken, had a Content-Type, a Content-Encoding or a Transfer-Encoding
	head        []byte // status and headers, encoded when the status was written
	body        []byte // the body, or its first part (see appendBody)
	more        [][]byte
	size        int   // the body's length: body's and more's
	isHead      bool  // the request is a HEAD: its Content-Length is the GET's
	declared    int64 // the Content-Length the header had when taken, or -1
	written     int64 // the bytes the handler tried to write (net/http's count)
	ctx         *requestContext
	gone        chan bool // CloseNotify's, made on its first call
	// typedAtFlush: a flush added the sniffed Content-Type to head.
	typedAtFlush bool
}

// bodyPart is the size of the parts in which a body longer than its
// first buffer grows (more): each part is filled and never copied again.
// Grown by doubling one buffer, a body written in pieces (io.Copy) held up
// to three times its size at the moment it grew, and a 14 MiB answer ran
// a 64 MiB guest out of memory.
const bodyPart = 1 << 20

// appendBody appends p to the body: to its first buffer while it fits
// there, or under bodyPart; then to parts of at least bodyPart.
func appendBody[S ~string | ~[]byte](w *responseWriter, p S) {
	w.size += len(p)
	if len(w.more) == 0 {
		if need := len(w.body) + len(p); need <= max(cap(w.body), bodyPart) {
			if need > cap(w.body) {
				// Doubled (append grows a large slice by a quarter,
				// which allocated five times the body in all).
				nb := make([]byte, len(w.body), min(max(need, 2*cap(w.body), 512), bodyPart))
				copy(nb, w.body)
				w.body = nb
			}
			w.body = append(w.body, p...)
			return
		}
		n := min(cap(w.body)-len(w.body), len(p))
		w.body = append(w.body, p[:n]...)
		p = p[n:]
	} else {
		last := &w.more[len(w.more)-1]
		n := min(cap(*last)-len(*last), len(p))
		*last = append(*last, p[:n]...)
		p = p[n:]
	}
	if len(p) > 0 {
		w.more = append(w.more, append(make([]byte, 0, max(len(p), bodyPart)), p...))
	}
}

// sniffed is the start of the body http.DetectContentType looks at.
func (w *responseWriter) sniffed() []byte {
	const sniffLen = 512 // http.DetectContentType's
	if len(w.body) >= sniffLen || len(w.more) == 0 {
		return w.body
	}
	b := append([]byte(nil), w.body...)
	for _, m := range w.more {
		if len(b) >= sniffLen {
			break
		}
		b = append(b, m[:min(len(m), sniffLen-len(b))]...)
	}
	return b
}

// errWriteAfterReturn is what a write to a request's response gets once
// its handler returned.
var errWriteAfterReturn = errors.New("greenroom: write to a response after its handler returned")

func (w *responseWriter) Header() http.Header {
	if w.done {
		return http.Header{} // not sent anywhere
	}
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

func (w *responseWriter) WriteHeader(status int) {
	// As net/http's checkWriteHeaderCode: a code HTTP cannot carry is the
	// handler's bug, and panics (the call fails as a panic does).
	if status < 100 || status > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(status))
	}
	if w.done {
		return
	}
	if w.wroteHeader {
		// As net/http, which logs "http: superfluous
		// response.WriteHeader call from ...": a handler's bug (the
		// status it meant is not sent), said rather than ignored; once
		// per response.
		if !w.warned {
			w.warned = true
			warnSuperfluous(w.status, status)
		}
		return
	}
	// Informational statuses (103 Early Hints, 100, 101) cannot be sent
	// ahead of the answer here: ignored, as the final status is still to come.
	if status >= 100 && status < 200 {
		return
	}
	w.status = status
	w.wroteHeader = true
	// net/http sniffs no type for a body the handler encoded (or framed)
	// itself, nor when it set one, even to nil.
	_, hasType := w.header["Content-Type"]
	w.noSniff = hasType || w.header.Get("Content-Encoding") != "" || len(w.header["Transfer-Encoding"]) > 0 && w.header["Transfer-Encoding"][0] != ""
	// As net/http's: a Content-Length that is no length is not one.
	w.declared = -1
	if n, err := strconv.ParseInt(w.header.Get("Content-Length"), 10, 64); err == nil && n >= 0 {
		w.declared = n
	}
	w.head = appendResponseHead(w.head[:0], status, w.header)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, errWriteAfterReturn
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	if !w.fits(len(p)) {
		return 0, http.ErrContentLength
	}
	appendBody(w, p)
	return len(p), nil
}

// ReadFrom copies src to the body as io.Copy would, each piece through
// Write, but through a buffer kept for the next copy: io.Copy allocates
// 32 KiB for every copy from a reader that is not an io.WriterTo
// (http.MaxBytesReader, io.LimitReader, a gzip reader), which in wasm
// costs more than the copy itself (see requestBody.WriteTo).
func (w *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	if wt, ok := src.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	buf := copyBuffers.Get().(*[]byte)
	defer func() {
		// Zeroed as a new one is: a reader that reports more than it
		// read must not hand on an earlier caller's bytes.
		clear(*buf)
		copyBuffers.Put(buf)
	}()
	return io.CopyBuffer(writeOnly{w}, src, *buf)
}

// writeOnly hides a writer's ReadFrom from io.CopyBuffer, which would
// otherwise call it back.
type writeOnly struct{ io.Writer }

// copyBuffers are ReadFrom's buffers, io.Copy's size.
var copyBuffers = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}

// WriteString lets io.WriteString skip a conversion.
func (w *responseWriter) WriteString(s string) (int, error) {
	if w.done {
		return 0, errWriteAfterReturn
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	if !w.fits(len(s)) {
		return 0, http.ErrContentLength
	}
	appendBody(w, s)
	return len(s), nil
}

// fits counts a write of n bytes and reports whether the body still
// holds to the declared Content-Length: as net/http's, a write that would
// pass it fails whole (http.ErrContentLength), and counts, so that later
// writes fail too.
func (w *responseWriter) fits(n int) bool {
	w.written += int64(n)
	return w.declared < 0 || w.written <= w.declared
}

// badResponse says, once the handler returned, why its response cannot
// be sent as it is, or "" when it can: more header lines than
// maxHandlerHeaders, which the runtime would refuse; or a body that the
// handler declared longer (its Content-Length) than it wrote, which
// net/http's client sees cut short when the server closes the connection
// (not a HEAD's, nor one its status allows none of).
func (w *responseWriter) badResponse() string {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n := binary.LittleEndian.Uint32(w.head[4:])
	if w.typedAtFlush {
		n-- // the SDK's sniffed type, which maxHandlerHeaders leaves room for
	}
	if n > maxHandlerHeaders {
		return fmt.Sprintf("the handler set %d response header lines, more than the %d a response may have: it is not sent", n, maxHandlerHeaders)
	}
	if w.declared < 0 || int64(w.size) >= w.declared || w.isHead || !w.bodyAllowed() {
		return ""
	}
	return fmt.Sprintf("http: handler wrote %d bytes of the %d its Content-Length declared: the response would arrive cut short, and is not sent", w.size, w.declared)
}

// reset forgets what the handler wrote, for the SDK's own answer.
func (w *responseWriter) reset() {
	w.header, w.wroteHeader, w.head, w.body, w.more, w.size, w.written = nil, false, w.head[:0], w.body[:0], nil, 0, 0
	w.typedAtFlush = false
}

// Flush is http.Flusher's, for handlers and frameworks that flush (gin's
// and echo's Flush, a server-sent-events loop): the response is buffered
// and sent whole when the handler returns, so a flush, as
// httptest.ResponseRecorder's, writes the status (200 if none was
// written) and takes the header, and sends nothing early. As net/http's,
// the first flush also fixes the Content-Type the SDK sniffs for a
// handler that set none: from what was written before it, and none when
// nothing was.
func (w *responseWriter) Flush() { w.FlushError() }

// FlushError is what http.ResponseController's Flush calls: Flush, failing
// with errWriteAfterReturn once the handler returned, as a write does.
func (w *responseWriter) FlushError() error {
	if w.done {
		return errWriteAfterReturn
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.noSniff && w.bodyAllowed() {
		// net/http's head goes out now, its type sniffed from what was
		// written so far (none when nothing was): what follows is not
		// looked at.
		if w.size > 0 {
			w.head = appendHeader(w.head, "Content-Type", http.DetectContentType(w.sniffed()))
			w.typedAtFlush = true
		}
		w.noSniff = true
	}
	return nil
}

// CloseNotify is http.CloseNotifier's, which net/http's writer has (it
// is deprecated, but gin's Context.Stream and many server-sent-events
// loops assert it, and panicked without it). Its channel tells what
// r.Context() tells, as Request.Context replaces it: it receives true
// once the request's context ends (the handler returned, or the
// deadline), not when the client goes away, which a guest does not see.
func (w *responseWriter) CloseNotify() <-chan bool {
	if w.gone == nil {
		w.gone = make(chan bool, 1)
		if w.ctx == nil {
			w.gone <- true
		} else {
			gone := w.gone
			context.AfterFunc(w.ctx, func() { gone <- true })
		}
	}
	return w.gone
}

// SetReadDeadline, SetWriteDeadline and EnableFullDuplex are what
// http.ResponseController calls, and a handler that lifts its write
// deadline for a long download or a server-sent-events loop, or reads its
// body while it writes, stops with an error when they fail
// (http.ErrNotSupported, before). Here the body is in the guest's memory
// before the handler runs and the response is buffered: no read or write
// waits on the client, so a deadline has nothing to bound (the call's own,
// limits.timeout, bounds the handler) and is accepted, and the body stays
// readable after the response is written, which is full duplex. Once the
// handler returned they fail, as a flush does.
func (w *responseWriter) SetReadDeadline(time.Time) error { return w.controlled() }

func (w *responseWriter) SetWriteDeadline(time.Time) error { return w.controlled() }

func (w *responseWriter) EnableFullDuplex() error { return w.controlled() }

// controlled is the answer to a ResponseController call other than Flush.
func (w *responseWriter) controlled() error {
	if w.done {
		return errWriteAfterReturn
	}
	return nil
}

// bodyAllowed reports whether the status written allows a body: not 204
// No Content nor 304 Not Modified (Write then fails with
// http.ErrBodyNotAllowed, as with net/http).
func (w *responseWriter) bodyAllowed() bool {
	return w.status != http.StatusNoContent && w.status != http.StatusNotModified
}

// finish completes the response once the handler returned: the status
// (200 if none was written), a Content-Type sniffed from the body when the
// handler set none, nor a Content-Encoding (as net/http's server does),
// the route the request matched (pattern: the request's Pattern, which
// http.ServeMux sets; "" for none) and the body's length prefix. w.head
// then holds the envelope up to the body, w.body and w.more the body.
func (w *responseWriter) finish(pattern string) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.noSniff && w.size > 0 && w.bodyAllowed() {
		w.head = appendHeader(w.head, "Content-Type", http.DetectContentType(w.sniffed()))
	}
	if pattern != "" {
		// Not an HTTP token: a runtime that does not know it drops it as
		// it drops any such name, and no handler's header can be it.
		w.head = appendHeader(w.head, routeHeader, pattern)
	}
	w.head = binary.LittleEndian.AppendUint32(w.head, uint32(w.size))
}

// retire ends the writer's use: later writes fail, and its buffers are no
// longer its own (the SDK reuses them for the next request).
func (w *responseWriter) retire() {
	w.done = true
	w.head, w.body, w.more, w.header = nil, nil, nil, nil
}

// maxHandlerHeaders is the most header lines a handler's response may
// have: the runtime takes an envelope of at most 1024 (docs/abi.md), and
// the SDK may add two (a sniffed Content-Type, :route).
const maxHandlerHeaders = 1024 - 2

// routeHeader is the response envelope's pseudo-header that names the
// route a request matched (docs/abi.md): the runtime labels the request's
// metrics with it and drops it.
const routeHeader = ":route"

// appendResponseHead encodes status and headers, the part of the response
// envelope that precedes the body's length prefix and the body.
func appendResponseHead(dst []byte, status int, header http.Header) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(status))
	dst = append(dst, 0, 0, 0, 0) // header count, counted by appendHeader
	for k, vs := range header {
		// A 304 describes no body: net/http drops these from it. A name
		// starting with ':' is no HTTP header (the runtime drops it), but
		// a handler's :route would name the route the runtime counts
		// the request under, before the SDK's own.
		if status == http.StatusNotModified && (k == "Content-Type" || k == "Content-Length" || k == "Transfer-Encoding") || k != "" && k[0] == ':' {
			continue
		}
		for _, v := range vs {
			dst = appendHeader(dst, k, headerValue(v))
		}
	}
	return dst
}

// headerValue is v as net/http's server writes a header value: a CR or LF
// in it (a Content-Security-Policy written over several lines, an error's
// text) becomes a space, and the spaces and tabs around it are trimmed.
// The runtime drops a value holding a control character whole, so that
// such a header, which net/http sends, was lost.
func headerValue(v string) string {
	for i := 0; i < len(v); i++ {
		if v[i] == '\n' || v[i] == '\r' {
			b := []byte(v)
			for j := i; j < len(b); j++ {
				if b[j] == '\n' || b[j] == '\r' {
					b[j] = ' '
				}
			}
			v = string(b)
			break
		}
	}
	if n := len(v); n > 0 && (v[0] == ' ' || v[0] == '\t' || v[n-1] == ' ' || v[n-1] == '\t') {
		return strings.Trim(v, " \t")
	}
	return v
}

// appendHeader appends one header to a head begun by appendResponseHead.
func appendHeader(head []byte, k, v string) []byte {
	binary.LittleEndian.PutUint32(head[4:], binary.LittleEndian.Uint32(head[4:])+1)
	head = binary.LittleEndian.AppendUint32(head, uint32(len(k)))
	head = append(head, k...)
	head = binary.LittleEndian.AppendUint32(head, uint32(len(v)))
	return append(head, v...)
}

// warnSuperfluous logs, at warn level, a WriteHeader(ignored) after the
// response's status was already written: the message net/http's server
// logs, naming the caller, with the status sent and the one ignored.
func warnSuperfluous(sent, ignored int) {
	msg := "http: superfluous response.WriteHeader call from " + writeHeaderCaller()
	rec := appendRecordHead(nil, levelWarn, dropString(msg, 16<<10))
	rec = appendInt64Attr(rec, kindInt64, "status", int64(sent))
	rec = appendInt64Attr(rec, kindInt64, "ignored_status", int64(ignored))
	if !emitRecord(rec) {
		fmt.Fprintf(os.Stderr, "%s (status %d sent, %d ignored)\n", msg, sent, ignored)
	}
}

// writeHeaderCaller names the function that called WriteHeader, past the
// writer's own methods and net/http's (a handler wrapped by
// http.StripPrefix, or served by a ServeMux), as net/http's relevantCaller
// does: "main.handler (/src/main.go:42)".
func writeHeaderCaller() string {
	var pcs [16]uintptr
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs[:])])
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "net/http.") && !strings.Contains(f.Function, ".(*responseWriter).") {
			return f.Function + " (" + f.File + ":" + strconv.Itoa(f.Line) + ")"
		}
		if !more {
			return "unknown"
		}
	}
}
