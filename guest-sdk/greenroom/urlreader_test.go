package greenroom

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestURLRequestEncoding(t *testing.T) {
	deadline := time.Unix(0, 1234567890)
	b := appendURLRequest(nil, &urlRequest{method: "HEAD", url: "https://x/y", deadline: deadline, header: http.Header{"If-None-Match": {`"e"`}}})
	r := byteReader{b: b[1:]}
	if b[0] != opReadURL || string(r.bytes()) != "https://x/y" || string(r.bytes()) != "HEAD" {
		t.Fatalf("head of %q", b)
	}
	lo, hi := r.u32(), r.u32()
	if int64(lo)|int64(hi)<<32 != 1234567890 || r.u32() != 1 || string(r.bytes()) != "If-None-Match" || string(r.bytes()) != `"e"` || r.off != len(b)-1 {
		t.Errorf("request = %q", b)
	}
	// A hop of a redirect chain the client follows: read_hop, its
	// earlier hops after the headers.
	b = appendURLRequest(nil, &urlRequest{method: "GET", url: "https://x/c", header: http.Header{}, hop: true, via: []string{"https://x/a", "https://x/b"}})
	r = byteReader{b: b[1:]}
	r.bytes()
	r.bytes()
	r.u32()
	r.u32()
	if b[0] != opReadHop || r.u32() != 0 || r.u32() != 2 || string(r.bytes()) != "https://x/a" || string(r.bytes()) != "https://x/b" || r.off != len(b)-1 {
		t.Errorf("hop request = %q", b)
	}
	// read_hop_flags: read_hop's request, another operation.
	if f := appendURLRequest(nil, &urlRequest{method: "GET", url: "https://x/c", header: http.Header{}, hop: true, flags: true, via: []string{"https://x/a", "https://x/b"}}); f[0] != opReadHopFlags || string(f[1:]) != string(b[1:]) {
		t.Errorf("read_hop_flags request = %q", f)
	}
}

func encodeResponse(status uint32, url, etag, lm string, headers [][2]string, body string) []byte {
	b := appendU32(nil, status)
	b = appendStr(b, url)
	b = appendStr(b, etag)
	b = appendStr(b, lm)
	b = appendU32(b, uint32(len(headers)))
	for _, h := range headers {
		b = appendStr(appendStr(b, h[0]), h[1])
	}
	return appendStr(b, body)
}

func TestURLResponseDecoding(t *testing.T) {
	b := encodeResponse(200, "https://x/final", `"v1"`, "Wed, 21 Oct 2015 07:28:00 GMT", [][2]string{{"content-type", "text/plain"}, {"X-A", "1"}, {"X-A", "2"}}, "body!")
	resp, err := decodeURLResponse(b, false)
	if err != nil {
		t.Fatal(err)
	}
	if resp.status != 200 || resp.url != "https://x/final" || resp.etag != `"v1"` || string(resp.body) != "body!" ||
		resp.header.Get("Content-Type") != "text/plain" || strings.Join(resp.header["X-A"], ",") != "1,2" {
		t.Errorf("resp = %+v", resp)
	}
	for n := 0; n < len(b); n++ {
		if _, err := decodeURLResponse(b[:n], false); err == nil {
			t.Fatalf("truncated response of %d/%d bytes decoded", n, len(b))
		}
	}
	if _, err := decodeURLResponse(append(b, 0), false); err == nil {
		t.Error("trailing byte accepted")
	}
	// read_hop_flags: the flags follow the body.
	fl, err := decodeURLResponse(appendU32(b, flagDecoded), true)
	if err != nil || !fl.decoded || string(fl.body) != "body!" {
		t.Errorf("flags: %v %+v", err, fl)
	}
	if fl, err := decodeURLResponse(appendU32(b, 0), true); err != nil || fl.decoded {
		t.Errorf("no flags set: %v %+v", err, fl)
	}
	if _, err := decodeURLResponse(b, true); err == nil {
		t.Error("a response without its flags decoded")
	}
	huge := appendU32(encodeResponse(200, "", "", "", nil, "")[:16], 0x7fffffff)
	if _, err := decodeURLResponse(huge, false); err == nil {
		t.Error("absurd header count accepted")
	}
}

func TestErrorsMatch(t *testing.T) {
	e := &Error{Op: "urlreader_call", Code: errDenied, Message: "refused: no rule"}
	if !errors.Is(e, ErrDenied) || errors.Is(e, ErrFailed) || e.Timeout() {
		t.Error("denied error matches wrongly")
	}
	to := &Error{Code: errTimeout}
	if !errors.Is(to, ErrTimeout) || !errors.Is(to, context.DeadlineExceeded) || !to.Timeout() {
		t.Error("timeout error matches wrongly")
	}
	if e.Error() != "greenroom: refused: no rule" {
		t.Errorf("Error() = %q", e)
	}
	nf := &StatusError{Response: &ReadResponse{Status: 404, URL: "https://x"}}
	if !errors.Is(nf, ErrNotFound) || errors.Is(&StatusError{Response: &ReadResponse{Status: 500}}, ErrNotFound) {
		t.Error("StatusError matches wrongly")
	}
}

// A runtime older than the read_hop_flags operation answers it
// ERR_INVALID (unknown operation 5): HTTPClient then reads with read_hop
// (its responses do not say whether the runtime decoded the body), and on
// one older than read_hop (unknown operation 4) with read_url, whose
// redirects the runtime follows, as before read_hop, for the rest of the
// instance's life, instead of failing every request.
func TestHTTPClientFallsBackWithoutReadHop(t *testing.T) {
	defer func(f func(context.Context, *urlRequest) (*urlResponse, error)) { callURL = f; hopOps.Store(0) }(callURL)
	var ops []byte
	known := 5
	fake := func(_ context.Context, req *urlRequest) (*urlResponse, error) {
		op := appendURLRequest(nil, req)[0]
		ops = append(ops, op)
		if int(op) > known {
			return nil, &Error{Op: "urlreader_call", Code: errInvalid, Message: "malformed urlreader request: unknown operation " + strconv.Itoa(int(op))}
		}
		return &urlResponse{status: 200, url: req.url, header: http.Header{}, body: []byte("ok"), decoded: req.flags}, nil
	}
	// Another ErrInvalid is the request's own, even if it says so.
	callURL = func(_ context.Context, req *urlRequest) (*urlResponse, error) {
		return nil, &Error{Op: "urlreader_call", Code: errInvalid, Message: "https://x.example/unknown operation 5: invalid"}
	}
	if _, err := HTTPClient().Get("https://x.example/unknown%20operation%205"); !errors.Is(err, ErrInvalid) || hopOps.Load() != 0 {
		t.Errorf("another ErrInvalid: %v; operations given up: %d", err, hopOps.Load())
	}
	callURL = fake
	for _, c := range []struct {
		known        int
		want         string
		uncompressed bool
	}{
		{5, "\x05\x05", true},
		{4, "\x05\x04\x04", false},
		{1, "\x04\x01\x01", false},
	} {
		ops, known = nil, c.known
		for range 2 {
			resp, err := HTTPClient().Get("https://x.example/")
			if err != nil || resp.StatusCode != 200 || resp.Uncompressed != c.uncompressed {
				t.Fatalf("runtime knowing operation %d: %v %+v", c.known, err, resp)
			}
		}
		if string(ops) != c.want {
			t.Errorf("runtime knowing operation %d: read with operations %q, want %q", c.known, ops, c.want)
		}
	}
}

// A request whose Host differs from its URL's host, which net/http's
// client sends as the Host header (a server of virtual hosts answers for
// that site), is refused as the Host header is, sending nothing: the
// reader sends the URL's host, and the plugin got another site's answer
// without a word. The URL's own host, in any case, passes.
func TestHTTPClientRefusesAnotherHost(t *testing.T) {
	defer func(f func(context.Context, *urlRequest) (*urlResponse, error)) { callURL = f }(callURL)
	var sent []string
	callURL = func(_ context.Context, req *urlRequest) (*urlResponse, error) {
		sent = append(sent, req.url)
		return &urlResponse{status: 200, url: req.url, header: http.Header{}, body: []byte("ok")}, nil
	}
	req, _ := http.NewRequest("GET", "https://10.0.0.7:8443/status", nil)
	req.Host = "billing.internal"
	_, err := HTTPClient().Do(req)
	if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), `request Host "billing.internal" may not be set by a plugin`) || len(sent) != 0 {
		t.Errorf("another Host: %v (%d sent)", err, len(sent))
	}
	for _, host := range []string{"", "10.0.0.7:8443"} {
		req, _ := http.NewRequest("GET", "https://10.0.0.7:8443/status", nil)
		req.Host = host
		if resp, err := HTTPClient().Do(req); err != nil || resp.StatusCode != 200 {
			t.Errorf("Host %q: %v", host, err)
		}
	}
	req, _ = http.NewRequest("GET", "https://Docs.Example/a", nil)
	req.Host = "docs.example"
	if _, err := HTTPClient().Do(req); err != nil {
		t.Errorf("the URL's host in another case: %v", err)
	}
	// The scheme's default port, written in one and not the other, names
	// the same site (net/http sends either as it is written): such a
	// request was refused. Another port is another site.
	for _, c := range []struct {
		url, host string
		ok        bool
	}{
		{"https://docs.example:443/a", "docs.example", true},
		{"https://docs.example/a", "docs.example:443", true},
		{"http://docs.example/a", "DOCS.example:80", true},
		{"http://[::1]:80/a", "[::1]", true},
		{"https://[::1]/a", "[::1]:443", true},
		{"https://docs.example/a", "docs.example:80", false},
		{"http://docs.example/a", "docs.example:443", false},
		{"https://docs.example:8443/a", "docs.example", false},
		{"https://docs.example/a", "docs.example:", false},
		{"https://[::1]/a", "[::2]:443", false},
		{"https://docs.example/a", "other.example:443", false},
	} {
		req, _ := http.NewRequest("GET", c.url, nil)
		req.Host = c.host
		n := len(sent)
		_, err := HTTPClient().Do(req)
		if c.ok && (err != nil || len(sent) != n+1) || !c.ok && (!errors.Is(err, ErrDenied) || len(sent) != n) {
			t.Errorf("%s with Host %q: %v (%d sent), want sent: %t", c.url, c.host, err, len(sent)-n, c.ok)
		}
	}
}

// The headers net/http's client never sends from Request.Header (it
// writes Host, Content-Length, Transfer-Encoding and Trailer from the
// request's own fields) are not sent by HTTPClient either, so that code
// written for net/http that sets them (a signer's Host, a GET's
// Content-Length: 0) reads as it does natively: they reached the
// runtime, which refused the read ("request header Host may not be set
// by a plugin"). The request itself is left as it was.
func TestHTTPClientDropsHeadersNetHTTPDoesNotSend(t *testing.T) {
	defer func(f func(context.Context, *urlRequest) (*urlResponse, error)) { callURL = f }(callURL)
	var sent http.Header
	callURL = func(_ context.Context, req *urlRequest) (*urlResponse, error) {
		sent = req.header
		return &urlResponse{status: 200, url: req.url, header: http.Header{}, body: []byte("ok")}, nil
	}
	req, _ := http.NewRequest("GET", "https://docs.example/a", nil)
	for _, k := range []string{"Host", "Content-Length", "Transfer-Encoding", "Trailer"} {
		req.Header.Set(k, "x")
	}
	req.Header.Set("Host", "docs.example")
	req.Header.Set("Content-Length", "0")
	req.Header.Set("X-Api-Version", "2")
	req.Header.Set("User-Agent", "plugin/1")
	if _, err := HTTPClient().Do(req); err != nil {
		t.Fatal(err)
	}
	if len(sent) != 2 || sent.Get("X-Api-Version") != "2" || sent.Get("User-Agent") != "plugin/1" {
		t.Errorf("sent %v, want X-Api-Version and User-Agent only", sent)
	}
	if len(req.Header) != 6 || req.Header.Get("Host") != "docs.example" {
		t.Errorf("the request's header was changed: %v", req.Header)
	}
}

// A response body read after its Close fails, as net/http's does ("http:
// read on closed response body"): it read on (io.NopCloser), so that code
// that closed a body before reading it worked in a plugin and failed in
// its native tests, or the other way round. Close itself stays harmless
// to repeat.
func TestHTTPClientBodyClosed(t *testing.T) {
	defer func(f func(context.Context, *urlRequest) (*urlResponse, error)) { callURL = f }(callURL)
	callURL = func(_ context.Context, req *urlRequest) (*urlResponse, error) {
		return &urlResponse{status: 200, url: req.url, header: http.Header{}, body: []byte("hello, world")}, nil
	}
	resp, err := HTTPClient().Get("https://docs.example/a")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if n, err := resp.Body.Read(buf); n != 5 || err != nil || string(buf) != "hello" {
		t.Fatalf("read before Close: %d %v %q", n, err, buf)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	n, err := resp.Body.Read(buf)
	if n != 0 || err == nil || err.Error() != "http: read on closed response body" {
		t.Errorf("read after Close: %d, %v; want net/http's error", n, err)
	}
	if b, err := io.ReadAll(resp.Body); len(b) != 0 || err == nil {
		t.Errorf("ReadAll after Close: %q, %v", b, err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// A response without a body (204, Content-Length: 0) has net/http's
	// http.NoBody, which reads io.EOF after Close as before it.
	for _, c := range []struct {
		status int
		header http.Header
	}{{204, http.Header{}}, {200, http.Header{"Content-Length": {"0"}}}} {
		callURL = func(_ context.Context, req *urlRequest) (*urlResponse, error) {
			return &urlResponse{status: c.status, url: req.url, header: c.header}, nil
		}
		resp, err := HTTPClient().Get("https://docs.example/empty")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if n, err := resp.Body.Read(buf); resp.Body != http.NoBody || n != 0 || err != io.EOF {
			t.Errorf("%d %v: body %T read after Close: %d %v, want net/http's NoBody", c.status, c.header, resp.Body, n, err)
		}
	}
}

// The connection-management headers net/http's client sends as given
// and a server accepts (Connection: close or keep-alive, Keep-Alive,
// Proxy-Connection, TE: trailers), in any letter case, are not sent:
// they reached the runtime, which manages the connection itself and
// refused the read ("request header Connection may not be set by a
// plugin: it is hop-by-hop"), where net/http's client read. Upgrade, a
// protocol switch rather than a read, is still sent (and refused).
func TestHTTPClientDropsConnectionHeaders(t *testing.T) {
	defer func(f func(context.Context, *urlRequest) (*urlResponse, error)) { callURL = f }(callURL)
	var sent http.Header
	callURL = func(_ context.Context, req *urlRequest) (*urlResponse, error) {
		sent = req.header
		return &urlResponse{status: 200, url: req.url, header: http.Header{}, body: []byte("ok")}, nil
	}
	for _, c := range []http.Header{
		{"Connection": {"close"}},
		{"Connection": {"keep-alive"}, "Keep-Alive": {"timeout=5, max=100"}},
		{"Proxy-Connection": {"keep-alive"}},
		{"Te": {"trailers"}},
		{"connection": {"close"}, "TE": {"trailers"}},
	} {
		req, _ := http.NewRequest("GET", "https://docs.example/a", nil)
		for k, v := range c {
			req.Header[k] = v
		}
		req.Header.Set("Accept", "text/plain")
		if _, err := HTTPClient().Do(req); err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		if len(sent) != 1 || sent.Get("Accept") != "text/plain" {
			t.Errorf("%v: sent %v, want Accept only", c, sent)
		}
		if len(req.Header) != len(c)+1 {
			t.Errorf("the request's header was changed: %v", req.Header)
		}
	}
	req, _ := http.NewRequest("GET", "https://docs.example/a", nil)
	req.Header.Set("Upgrade", "websocket")
	if _, err := HTTPClient().Do(req); err != nil || sent.Get("Upgrade") != "websocket" {
		t.Errorf("Upgrade: %v, sent %v", err, sent)
	}
}

// A body the runtime decoded from gzip (read_hop_flags says so) comes as
// net/http's Transport hands over one it decoded: Uncompressed, its
// ContentLength -1 (unknown, as the encoded length no longer applies),
// without Content-Encoding and Content-Length (the runtime dropped them).
// It came with Uncompressed false and ContentLength set. A body as sent
// keeps its length. The plugin's own Accept-Encoding is not sent: the
// runtime refused it, failing the read; the body then comes decoded too.
func TestHTTPClientUncompressed(t *testing.T) {
	defer func(f func(context.Context, *urlRequest) (*urlResponse, error)) { callURL = f }(callURL)
	var sent http.Header
	callURL = func(_ context.Context, req *urlRequest) (*urlResponse, error) {
		sent = req.header
		if !req.flags {
			t.Errorf("read without read_hop_flags: %+v", req)
		}
		if strings.HasSuffix(req.url, "/plain") {
			return &urlResponse{status: 200, url: req.url, header: http.Header{"Content-Length": {"5"}}, body: []byte("plain")}, nil
		}
		return &urlResponse{status: 200, url: req.url, header: http.Header{"Content-Type": {"text/plain"}}, body: []byte("decoded"), decoded: true}, nil
	}
	for _, ae := range []string{"", "gzip", "gzip, deflate, br"} {
		req, _ := http.NewRequest("GET", "https://docs.example/gz", nil)
		if ae != "" {
			req.Header.Set("Accept-Encoding", ae)
		}
		resp, err := HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if !resp.Uncompressed || resp.ContentLength != -1 || string(body) != "decoded" || resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Content-Length") != "" {
			t.Errorf("Accept-Encoding %q: Uncompressed %t, ContentLength %d, body %q, header %v; want net/http's for a body it decoded", ae, resp.Uncompressed, resp.ContentLength, body, resp.Header)
		}
		if _, ok := sent["Accept-Encoding"]; ok {
			t.Errorf("Accept-Encoding %q: sent %v", ae, sent)
		}
		if ae != "" && req.Header.Get("Accept-Encoding") != ae {
			t.Errorf("the request's header was changed: %v", req.Header)
		}
	}
	resp, err := HTTPClient().Get("https://docs.example/plain")
	if err != nil || resp.Uncompressed || resp.ContentLength != 5 {
		t.Errorf("a body as sent: %v %+v", err, resp)
	}
}

// A 304 to HTTPClient is the server's (read_hop_flags hands it over as a
// response): its headers, a Last-Modified or Cache-Control, where it had
// only the validators the request sent (an ETag from If-None-Match,
// nothing for If-Modified-Since), as it still has from a runtime older
// than read_hop_flags (ERR_NOT_MODIFIED). Its body is http.NoBody and its
// ContentLength 0, as net/http's.
func TestHTTPClientNotModified(t *testing.T) {
	defer func(f func(context.Context, *urlRequest) (*urlResponse, error)) { callURL = f; hopOps.Store(0) }(callURL)
	callURL = func(_ context.Context, req *urlRequest) (*urlResponse, error) {
		if !req.flags {
			return nil, &Error{Op: "urlreader_call", Code: errNotModified, Message: "not modified"}
		}
		return &urlResponse{status: 304, url: req.url, header: http.Header{"Etag": {`"v3"`}, "Cache-Control": {"max-age=60"}}}, nil
	}
	req, _ := http.NewRequest("GET", "https://docs.example/a", nil)
	req.Header.Set("If-Modified-Since", "Wed, 21 Oct 2015 07:28:00 GMT")
	resp, err := HTTPClient().Do(req)
	if err != nil || resp.StatusCode != 304 || resp.Status != "304 Not Modified" || resp.Header.Get("ETag") != `"v3"` || resp.Header.Get("Cache-Control") != "max-age=60" || resp.Body != http.NoBody || resp.ContentLength != 0 {
		t.Errorf("304: %v %+v, want the server's", err, resp)
	}
	hopOps.Store(1)
	req.Header.Set("If-None-Match", `"v2"`)
	resp, err = HTTPClient().Do(req)
	if err != nil || resp.StatusCode != 304 || len(resp.Header) != 1 || resp.Header.Get("ETag") != `"v2"` || resp.Body != http.NoBody {
		t.Errorf("304 from an older runtime: %v %+v, want the validators sent", err, resp)
	}
}

// The URL reader sends no cookies: the runtime refuses Cookie as a
// credential. A client with a Jar that stored a cookie adds it to its
// next request to that site, which failed with the runtime's "request
// header Cookie may not be set by a plugin" although the plugin set no
// Cookie. The SDK refuses any Cookie itself, sending nothing, with an
// error that names the Jar and what to do; a redirect's hop too, and a
// Cookie the plugin sets, through any client around the transport.
func TestHTTPClientNamesTheJarThatAddedACookie(t *testing.T) {
	defer func(f func(context.Context, *urlRequest) (*urlResponse, error)) { callURL = f }(callURL)
	var sent []string
	callURL = func(_ context.Context, req *urlRequest) (*urlResponse, error) {
		sent = append(sent, req.url)
		if req.header.Get("Cookie") != "" {
			return nil, &Error{Op: "urlreader_call", Code: errDenied, Message: "request header Cookie may not be set by a plugin: it carries credentials"}
		}
		h := http.Header{}
		switch {
		case strings.HasSuffix(req.url, "/login"):
			h.Set("Set-Cookie", "sid=abc; Path=/")
		case strings.HasSuffix(req.url, "/sso"):
			h.Set("Set-Cookie", "sid=abc; Path=/")
			h.Set("Location", "/home")
			return &urlResponse{status: http.StatusFound, url: req.url, header: h}, nil
		}
		return &urlResponse{status: 200, url: req.url, header: h, body: []byte("ok")}, nil
	}
	const cookieErr = "request header Cookie may not be set by a plugin: it carries credentials; the URL reader sends no cookies: set none, and leave the client's Jar unset"
	c := HTTPClient()
	c.Jar, _ = cookiejar.New(nil)
	if resp, err := c.Get("https://docs.example/login"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the read that sets the cookie: %v", err)
	}
	if _, err := c.Get("https://docs.example/page"); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), cookieErr) || len(sent) != 1 {
		t.Errorf("the next read: %v (%d sent), want ErrDenied %q, nothing sent", err, len(sent)-1, cookieErr)
	}
	// Another site: the Jar has no cookie for it.
	if _, err := c.Get("https://other.example/page"); err != nil {
		t.Errorf("another site: %v", err)
	}
	c = HTTPClient()
	c.Jar, _ = cookiejar.New(nil)
	sent = nil
	if _, err := c.Get("https://docs.example/sso"); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), cookieErr) || len(sent) != 1 {
		t.Errorf("a redirect that sets a cookie: %v (%d sent), want ErrDenied %q for its second hop", err, len(sent), cookieErr)
	}
	// Set by the plugin, with a Jar or none, through HTTPClient or
	// another client around its transport.
	for _, c := range []*http.Client{HTTPClient(), {Transport: c.Transport, Jar: c.Jar}, {Transport: c.Transport}} {
		req, _ := http.NewRequest("GET", "https://docs.example/page", nil)
		req.Header.Set("Cookie", "sid=mine")
		sent = nil
		if _, err := c.Do(req); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), cookieErr) || len(sent) != 0 {
			t.Errorf("a Cookie the plugin sets (jar %v): %v (%d sent), want ErrDenied %q, nothing sent", c.Jar != nil, err, len(sent), cookieErr)
		}
	}
}
