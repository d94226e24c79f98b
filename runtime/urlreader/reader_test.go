package urlreader

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/config"
)

// mapResolver answers from a fixed table, like a DNS server an attacker
// controls would.
type mapResolver map[string][]string

func (m mapResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	addrs, ok := m[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		out[i] = netip.MustParseAddr(a)
	}
	return out, nil
}

// server is a local test server that counts its requests.
type server struct {
	*httptest.Server
	hits    atomic.Int64
	referer atomic.Value // the last Referer a request carried
	mu      sync.Mutex
	auth    []string // Authorization / PRIVATE-TOKEN / X-Api-Key headers seen
}

func newServer(t testing.TB, tls bool, h http.HandlerFunc) *server {
	s := &server{}
	wrapped := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if ref := r.Header.Get("Referer"); ref != "" {
			s.referer.Store(ref)
		}
		s.mu.Lock()
		for _, k := range []string{"Authorization", "Private-Token", "X-Api-Key"} {
			if v := r.Header.Get(k); v != "" {
				s.auth = append(s.auth, k+": "+v)
			}
		}
		s.mu.Unlock()
		h(w, r)
	})
	if tls {
		s.Server = httptest.NewTLSServer(wrapped)
	} else {
		s.Server = httptest.NewServer(wrapped)
	}
	t.Cleanup(s.Close)
	return s
}

func (s *server) addrPort() netip.AddrPort {
	return netip.MustParseAddrPort(s.Listener.Addr().String())
}

func (s *server) port() string {
	return fmt.Sprint(s.addrPort().Port())
}

func (s *server) seenAuth() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auth...)
}

// reader builds a reader from cfgText with the given servers reachable.
func reader(t *testing.T, cfgText string, res mapResolver, reachable ...*server) *Reader {
	t.Helper()
	opts := Options{Resolver: res}
	for _, s := range reachable {
		opts.TestOnlyReachable = append(opts.TestOnlyReachable, s.addrPort())
		if s.TLS != nil {
			opts.TLSConfig = &tls.Config{RootCAs: s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
		}
	}
	r, err := New(mustConfig(t, cfgText), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func read(p *PluginReader, url string, header ...string) (*Response, error) {
	req := Request{URL: url}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header = append(req.Header, [2]string{header[i], header[i+1]})
	}
	return p.Read(context.Background(), req)
}

func wantErr(t *testing.T, err error, kind Kind, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("read succeeded, want %v error containing %q", kind, contains)
	}
	if KindOf(err) != kind {
		t.Fatalf("err = %v (%v), want %v", err, KindOf(err), kind)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Errorf("err = %q, want it to contain %q", err, c)
		}
	}
}

const localConfig = `
[reading]
allow = [{ host = "docs.test", scheme = "http" }, { host = "127.0.0.1", scheme = "http" }, { host = "169.254.169.254", scheme = "http" }]
`

var localGrants = []string{"docs.test", "127.0.0.1", "169.254.169.254"}

func TestReadAndETag(t *testing.T) {
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
		w.Header().Set("Content-Type", "text/markdown")
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "# docs for %s", r.Header.Get("User-Agent"))
	})
	p := reader(t, localConfig, mapResolver{"docs.test": {"127.0.0.1"}}, srv).For("docs", localGrants)
	url := "http://docs.test:" + srv.port() + "/README.md"
	resp, err := read(p, url)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || string(resp.Body) != "# docs for greenroom-urlreader" || resp.ETag != `"v1"` || resp.LastModified != "Wed, 21 Oct 2015 07:28:00 GMT" || resp.URL != url {
		t.Errorf("resp = %+v body %q", resp, resp.Body)
	}
	found := false
	for _, h := range resp.Header {
		found = found || h == [2]string{"Content-Type", "text/markdown"}
	}
	if !found {
		t.Errorf("headers = %v", resp.Header)
	}
	_, err = read(p, url, "If-None-Match", resp.ETag)
	wantErr(t, err, NotModified, `not modified (ETag "v1")`)

	head, err := p.Read(context.Background(), Request{URL: url, Method: "HEAD"})
	if err != nil || head.Status != 200 || len(head.Body) != 0 || head.ETag != `"v1"` {
		t.Errorf("HEAD: %+v %v", head, err)
	}
	_, err = p.Read(context.Background(), Request{URL: url, Method: "POST"})
	wantErr(t, err, Invalid, `method "POST" is not supported: the URL reader reads with GET and HEAD only`)
	if srv.hits.Load() != 3 {
		t.Errorf("server saw %d requests, want 3 (the POST must not reach it)", srv.hits.Load())
	}
}

// The loopback server is refused unless a test made its exact address
// reachable; nothing reaches it.
func TestInternalAddressesRefusedAtConnect(t *testing.T) {
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {})
	other := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {})
	res := mapResolver{
		"docs.test":  {"127.0.0.1"},
		"mixed.test": {"93.184.215.14", "127.0.0.1"},
		"meta.test":  {"169.254.169.254"},
		"v6.test":    {"::ffff:127.0.0.1"},
		// A Teredo address whose client is 127.0.0.1 (inverted, 0x80fffffe).
		"teredo.test": {"2001:0:4136:e378:8000:63bf:80ff:fffe"},
	}
	cfg := strings.Replace(localConfig, `allow = [`, `allow = [{ host = "*.test", scheme = "http" }, `, 1)
	// other is reachable, srv is not.
	p := reader(t, cfg, res, other).For("p", append(localGrants, "*.test"))
	for url, want := range map[string]string{
		"http://127.0.0.1:" + srv.port() + "/":   "address 127.0.0.1 is loopback (127.0.0.0/8); refused by the URL reader's address rules",
		"http://docs.test:" + srv.port() + "/":   "host docs.test resolves to 127.0.0.1, which is loopback",
		"http://mixed.test:" + srv.port() + "/":  "host mixed.test resolves to 127.0.0.1, which is loopback",
		"http://meta.test/latest/meta-data/":     "host meta.test resolves to 169.254.169.254, which is link-local",
		"http://169.254.169.254/latest/":         "address 169.254.169.254 is link-local",
		"http://v6.test:" + srv.port() + "/":     "host v6.test resolves to 127.0.0.1, which is loopback (127.0.0.0/8)",
		"http://teredo.test:" + srv.port() + "/": "host teredo.test resolves to 2001:0:4136:e378:8000:63bf:80ff:fffe, which is loopback (127.0.0.0/8), through Teredo (its client)",
	} {
		_, err := read(p, url)
		wantErr(t, err, Denied, want)
	}
	if srv.hits.Load() != 0 || other.hits.Load() != 0 {
		t.Errorf("refused servers were reached: %d %d", srv.hits.Load(), other.hits.Load())
	}
	// Exactly the reachable address and port, not the same address on
	// another port.
	if _, err := read(p, "http://127.0.0.1:"+other.port()+"/"); err != nil {
		t.Errorf("reachable test server: %v", err)
	}
	// internal = true on an exact host lets it resolve internally.
	q := reader(t, `
[reading]
allow = [{ host = "wiki.corp", scheme = "http", internal = true }, { host = "*.corp", scheme = "http" }]
`, mapResolver{"wiki.corp": {"127.0.0.1"}, "other.corp": {"127.0.0.1"}}).For("q", []string{"wiki.corp", "*.corp"})
	if _, err := read(q, "http://wiki.corp:"+srv.port()+"/"); err != nil {
		t.Errorf("internal = true: %v", err)
	}
	_, err := read(q, "http://other.corp:"+srv.port()+"/")
	wantErr(t, err, Denied, "resolves to 127.0.0.1, which is loopback")
}

// The Control hook refuses an internal address even when the pre-dial check
// was passed (a resolver that answers differently the second time).
func TestControlChecksTheSocketAddress(t *testing.T) {
	r := reader(t, localConfig, nil)
	conn, err := r.dialer.DialContext(context.Background(), "tcp", "127.0.0.1:9")
	if conn != nil {
		conn.Close()
	}
	wantErr(t, err, Denied, "address 127.0.0.1 is loopback")
}

// redirector answers the paths of TestRedirects: redirects to internal
// and other hosts, to target, and chains of them (/chain?n=N).
func redirector(t *testing.T, internal, target *server) *server {
	return newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-loopback":
			http.Redirect(w, r, "http://127.0.0.1:"+internal.port()+"/", http.StatusFound)
		case "/to-metadata":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/iam/security-credentials/", http.StatusFound)
		case "/to-decimal":
			http.Redirect(w, r, "http://2130706433:"+internal.port()+"/", http.StatusFound)
		case "/to-elsewhere":
			http.Redirect(w, r, "https://evil.example/", http.StatusFound)
		case "/to-target":
			http.Redirect(w, r, "http://127.0.0.1:"+target.port()+"/", http.StatusMovedPermanently)
		case "/chain":
			chain(w, r)
		}
	})
}

func TestRedirects(t *testing.T) {
	target := newServer(t, false, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "landed") })
	internal := newServer(t, false, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "internal secrets") })
	front := redirector(t, internal, target)
	p := reader(t, localConfig, mapResolver{"docs.test": {"127.0.0.1"}}, front, target).For("p", localGrants)
	base := "http://docs.test:" + front.port()
	for path, want := range map[string][]string{
		"/to-loopback":  {"redirect from " + base + "/to-loopback", "address 127.0.0.1 is loopback"},
		"/to-metadata":  {"address 169.254.169.254 is link-local"},
		"/to-decimal":   {"non-canonical spelling of the IPv4 address 127.0.0.1"},
		"/to-elsewhere": {"redirect from " + base + "/to-elsewhere: https://evil.example/: refused: not granted to plugin p"},
	} {
		_, err := read(p, base+path)
		wantErr(t, err, Denied, want...)
	}
	if internal.hits.Load() != 0 {
		t.Errorf("internal server reached through a redirect")
	}
	resp, err := read(p, base+"/to-target")
	if err != nil || string(resp.Body) != "landed" || resp.URL != "http://127.0.0.1:"+target.port()+"/" {
		t.Errorf("allowed redirect: %+v %v", resp, err)
	}
	if resp, err := read(p, base+"/chain?n=5"); err != nil || string(resp.Body) != "end of chain" {
		t.Errorf("5 redirects: %v", err)
	}
	_, err = read(p, base+"/chain?n=6")
	wantErr(t, err, Failed, "stopped after 5 redirects")

	// A grant narrower than the allow list is checked on redirects too.
	narrow := reader(t, localConfig, mapResolver{"docs.test": {"127.0.0.1"}}, front, target).For("narrow", []string{"docs.test/to-target"})
	_, err = read(narrow, base+"/to-target")
	wantErr(t, err, Denied, "not granted to plugin narrow")
}

// chain answers /chain?n=N with a redirect to /chain?n=N-1, and n=0 with
// "end of chain".
func chain(w http.ResponseWriter, r *http.Request) {
	n := 0
	fmt.Sscan(r.URL.Query().Get("n"), &n)
	if n > 0 {
		http.Redirect(w, r, fmt.Sprintf("/chain?n=%d", n-1), http.StatusFound)
		return
	}
	fmt.Fprint(w, "end of chain")
}

// A "..;" segment, which a Tomcat-style server reads as "..", never leaves
// the reader: neither asked for nor as a redirect's target, so a rule's
// path prefix holds against such servers.
func TestDotSegmentWithParametersNeverSent(t *testing.T) {
	var paths []string
	var mu sync.Mutex
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.EscapedPath())
		mu.Unlock()
		if r.URL.Path == "/allowed/jump" {
			http.Redirect(w, r, "/allowed/..;/admin", http.StatusFound)
			return
		}
		fmt.Fprint(w, "ok")
	})
	cfg := "[reading]\nallow = [{ host = \"docs.test\", scheme = \"http\", paths = [\"/allowed/\"] }]\n"
	p := reader(t, cfg, mapResolver{"docs.test": {"127.0.0.1"}}, srv).For("p", []string{"docs.test/allowed/"})
	base := "http://docs.test:" + srv.port()
	for _, path := range []string{"/allowed/..;/admin", "/allowed/..;x=1/admin", "/allowed/%2e%2e;/admin", "/allowed/..%3B/admin"} {
		_, err := read(p, base+path)
		wantErr(t, err, Invalid, "dot segments")
	}
	_, err := read(p, base+"/allowed/jump")
	if err == nil || !strings.Contains(err.Error(), "dot segments") {
		t.Errorf("redirect to /allowed/..;/admin: err = %v, want refused naming dot segments", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(paths) != 1 || paths[0] != "/allowed/jump" {
		t.Errorf("server saw %q, want only /allowed/jump", paths)
	}
}

// reading.max_bytes and reading.timeout from the environment are secrets:
// a read past them is told "over reading.max_bytes ([REDACTED])" and
// "longer than reading.timeout ([REDACTED])", not decoded ("(1024)" for
// "1KiB", "(300ms)" for "0.3s"), which the redaction of the secret as
// written does not match; the plugin reads these errors, and may hand
// them to its callers.
func TestLimitsFromTheEnvironmentNotTold(t *testing.T) {
	release := make(chan struct{})
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write(bytes.Repeat([]byte("a"), 2048))
		case "/slow":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	})
	t.Cleanup(func() { close(release) })
	env := map[string]string{"GR_MB": "1KiB", "GR_TO": "0.3s"}
	cfg, err := config.Read([]config.Source{{Name: "config.toml", Data: []byte(localConfig + "max_bytes = \"${GR_MB}\"\ntimeout = \"${GR_TO}\"\n")}},
		func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg, Options{TestOnlyReachable: []netip.AddrPort{srv.addrPort()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	p := r.For("p", localGrants)
	base := "http://127.0.0.1:" + srv.port()
	_, err = read(p, base+"/big")
	wantErr(t, err, TooLarge, "over reading.max_bytes ([REDACTED])")
	_, err = read(p, base+"/slow")
	wantErr(t, err, Timeout, "read took longer than reading.timeout ([REDACTED])")
}

func TestLimits(t *testing.T) {
	release := make(chan struct{})
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write(make([]byte, 2048))
		case "/big-chunked":
			for i := 0; i < 4; i++ {
				w.Write(make([]byte, 512))
				w.(http.Flusher).Flush()
			}
		case "/exact":
			w.Write(make([]byte, 1024))
		case "/slow-headers":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "/slow-body":
			w.Header().Set("Content-Length", "100")
			w.Write([]byte("start"))
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	cfg := localConfig + "max_bytes = 1024\ntimeout = \"300ms\"\n"
	p := reader(t, cfg, nil, srv).For("p", localGrants)
	base := "http://127.0.0.1:" + srv.port()
	_, err := read(p, base+"/big")
	wantErr(t, err, TooLarge, "body of 2048 bytes is over reading.max_bytes (1024)")
	_, err = read(p, base+"/big-chunked")
	wantErr(t, err, TooLarge, "over reading.max_bytes (1024); stopped reading")
	if resp, err := read(p, base+"/exact"); err != nil || len(resp.Body) != 1024 {
		t.Errorf("body of exactly max_bytes: %v", err)
	}
	for _, path := range []string{"/slow-headers", "/slow-body"} {
		start := time.Now()
		_, err = read(p, base+path)
		wantErr(t, err, Timeout, "read took longer than reading.timeout (300ms)")
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s: cut off after %v", path, took)
		}
	}
	// The call's deadline and the plugin's own bound the read too.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	long := reader(t, localConfig, nil, srv).For("p", localGrants)
	_, err = long.Read(ctx, Request{URL: base + "/slow-headers"})
	wantErr(t, err, Timeout, "the call's deadline passed")
	_, err = long.Read(context.Background(), Request{URL: base + "/slow-headers", Deadline: time.Now().Add(50 * time.Millisecond)})
	wantErr(t, err, Timeout, "the plugin's deadline for this read passed")
}

func TestRequestHeaders(t *testing.T) {
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.Header.Get("Accept")) })
	p := reader(t, localConfig+`
[[integrations.gitlab]]
host = "gitlab.test"
token = "glpat-0123456789abcdef"
`, nil, srv).For("p", localGrants)
	url := "http://127.0.0.1:" + srv.port() + "/"
	if resp, err := read(p, url, "Accept", "text/plain"); err != nil || string(resp.Body) != "text/plain" {
		t.Errorf("Accept: %v", err)
	}
	for _, tc := range []struct {
		k, v string
		kind Kind
		want string
	}{
		{"Authorization", "Bearer mine", Denied, "request header Authorization may not be set by a plugin: it carries credentials"},
		{"cookie", "a=b", Denied, "Cookie may not be set"},
		{"X-Forwarded-For", "10.0.0.1", Denied, "X-Forwarded-For may not be set"},
		{"Private-Token", "x", Denied, "Private-Token may not be set by a plugin: it carries integration credentials"},
		{"Host", "internal", Denied, "Host may not be set"},
		{"Accept-Encoding", "gzip", Denied, "Accept-Encoding may not be set by a plugin: the host negotiates compression"},
		// Underscore spellings reach CGI-style servers as the same header.
		{"X_Forwarded_For", "10.0.0.1", Denied, "X_forwarded_for may not be set by a plugin: it would speak for the runtime's network"},
		{"x_forwarded_prefix", "/", Denied, "may not be set by a plugin"},
		{"Private_Token", "forged", Denied, "may not be set by a plugin: it carries integration credentials"},
		{"True-Client-IP", "10.0.0.1", Denied, "may not be set by a plugin: it would speak for the runtime's network"},
		{"X-Client-IP", "10.0.0.1", Denied, "may not be set"},
		{"X-Original-URL", "/private/", Denied, "X-Original-Url may not be set by a plugin: it would change the path the allow rules checked"},
		{"X-Rewrite-URL", "/private/", Denied, "may not be set"},
		{"X-HTTP-Method-Override", "DELETE", Denied, "X-Http-Method-Override may not be set by a plugin: reads are GET or HEAD"},
		{"X-Method-Override", "PUT", Denied, "may not be set"},
		// Host overrides that front ends (IIS ARR, Azure, Rails-style
		// middleware) route by, as X-Host and X-Forwarded-Host; the bare
		// X-Forwarded some take for Forwarded; RFC 2965's Cookie2.
		{"X-Original-Host", "admin.internal", Denied, "X-Original-Host may not be set by a plugin: the host is the URL's"},
		{"X-HTTP-Host-Override", "admin.internal", Denied, "may not be set by a plugin: the host is the URL's"},
		{"X-Forwarded", "for=10.0.0.1", Denied, "may not be set by a plugin: it would speak for the runtime's network"},
		{"Cookie2", "$Version=1", Denied, "Cookie2 may not be set by a plugin: it carries credentials"},
		{"X-Ok", "a\r\nInjected: 1", Invalid, "control character"},
		{"Bad Name", "v", Invalid, "not an HTTP token"},
	} {
		_, err := read(p, url, tc.k, tc.v)
		wantErr(t, err, tc.kind, tc.want)
	}
	if srv.hits.Load() != 1 {
		t.Errorf("refused requests reached the server: %d", srv.hits.Load())
	}
}

// Integration tokens go to their exact host over https, on every hop that
// goes there and no other; the plugin never sees them.
func TestIntegrationTokens(t *testing.T) {
	const tok = "ghp_0123456789abcdefghijklmnopqrstuvwxyz"
	var other *server
	other = newServer(t, true, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "other host") })
	gh := newServer(t, true, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			// A server that echoes credentials back.
			w.Header().Set("X-Echo", r.Header.Get("Authorization"))
			fmt.Fprintf(w, "you sent %q", r.Header.Get("Authorization"))
		case "/echo304":
			// The 304 of /echo to a conditional read: its Content-Length
			// is that of the 200's body (RFC 9110, 8.6), echo included
			// (written raw: net/http's server drops it).
			conn, bw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				panic(err)
			}
			defer conn.Close()
			fmt.Fprintf(bw, "HTTP/1.1 304 Not Modified\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(fmt.Sprintf("you sent %q", r.Header.Get("Authorization"))))
			bw.Flush()
		case "/away":
			http.Redirect(w, r, "https://127.0.0.1:"+other.port()+"/landing", http.StatusFound)
		case "/back":
			http.Redirect(w, r, "/echo", http.StatusFound)
		case "/leak":
			// Echoes the credential into a redirect's Location and an ETag.
			http.Redirect(w, r, "/landing?t="+url.QueryEscape(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")), http.StatusFound)
		case "/range":
			// Echoes the credential as a file, ranges honoured: two
			// ranges would each hold part of it.
			http.ServeContent(w, r, "echo.txt", time.Time{}, strings.NewReader("you sent "+r.Header.Get("Authorization")))
		case "/encoded":
			// Echoes it in a coding nobody asked for.
			w.Header().Set("Content-Encoding", "x-rot13")
			fmt.Fprint(w, r.Header.Get("Authorization"))
		case "/landing":
			w.Header().Set("ETag", `"`+r.URL.Query().Get("t")+`"`)
			fmt.Fprint(w, "landed")
		case "/hostecho":
			// Echoes it as a host name, which the refusal quotes lower-cased.
			http.Redirect(w, r, "https://"+strings.ToUpper(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))+".denied.example/x", http.StatusFound)
		case "/nameecho":
			// ... and as a header's name, which net/http canonicalises.
			w.Header().Set("X-"+strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), "v")
		case "/leakaway":
			// ... and into a redirect the reader refuses, whose error
			// message quotes the URL.
			http.Redirect(w, r, "https://denied.example/?t="+url.QueryEscape(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")), http.StatusFound)
		case "/leakother":
			// ... and into a redirect to another host the plugin may
			// read, which would take the token there in its URL.
			http.Redirect(w, r, "https://127.0.0.1:"+other.port()+"/landing?t="+url.QueryEscape(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")), http.StatusFound)
		case "/leakother64":
			// ... there in base64, in a URL-safe alphabet.
			http.Redirect(w, r, "https://127.0.0.1:"+other.port()+"/landing?auth="+base64.RawURLEncoding.EncodeToString([]byte(r.Header.Get("Authorization"))), http.StatusFound)
		case "/leak64":
			// ... into the Location of a redirect within the host.
			http.Redirect(w, r, "/landing?auth="+base64.URLEncoding.EncodeToString([]byte(r.Header.Get("Authorization"))), http.StatusFound)
		case "/echo64":
			// Echoes the credential base64-encoded, as a debug endpoint
			// showing the request's headers might.
			fmt.Fprintf(w, `{"authorization": %q}`, base64.StdEncoding.EncodeToString([]byte(r.Header.Get("Authorization"))))
		default:
			fmt.Fprint(w, "ok")
		}
	})
	plain := newServer(t, false, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "plain") })
	cfg := `
[reading]
allow = [{ host = "example.com", scheme = "http" }, { host = "127.0.0.1" }]
[[integrations.github]]
host = "example.com"
token = "` + tok + `"
`
	res := mapResolver{"example.com": {"127.0.0.1"}}
	p := reader(t, cfg, res, gh, other, plain).For("p", []string{"example.com", "127.0.0.1"})
	ghURL := "https://example.com:" + gh.port()

	resp, err := read(p, ghURL+"/echo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(resp.Body), tok) || !strings.Contains(string(resp.Body), "Bearer [REDACTED]") {
		t.Errorf("echoed token reached the plugin: %q", resp.Body)
	}
	for _, h := range resp.Header {
		if strings.Contains(h[1], tok) {
			t.Errorf("echoed token in header %s", h[0])
		}
	}
	if got := gh.seenAuth(); len(got) != 1 || got[0] != "Authorization: Bearer "+tok {
		t.Errorf("integration host saw %q", got)
	}
	for _, h := range resp.Header {
		if strings.EqualFold(h[0], "Content-Length") && h[1] != fmt.Sprint(len(resp.Body)) {
			t.Errorf("Content-Length %s for a scrubbed body of %d bytes: it tells the token's length", h[1], len(resp.Body))
		}
	}
	// A HEAD has no body to scrub: its Content-Length (net/http's server
	// counts what the handler wrote, the echo included) would tell the
	// token's length, so it is dropped.
	if resp, err := p.Read(context.Background(), Request{URL: ghURL + "/echo", Method: http.MethodHead}); err != nil {
		t.Fatal(err)
	} else {
		for _, h := range resp.Header {
			if strings.EqualFold(h[0], "Content-Length") {
				t.Errorf("HEAD answered with Content-Length %s: it counts the echoed token", h[1])
			}
		}
	}
	// Nor has a 304, handed to the plugin's own client as a response
	// (read_hop_flags): its Content-Length, the 200's, is dropped too.
	if resp, err := p.Read(context.Background(), Request{URL: ghURL + "/echo304", Hop: true, NotModifiedResponse: true}); err != nil || resp.Status != http.StatusNotModified {
		t.Fatalf("a 304 as the response: %v %d", err, respStatus(resp))
	} else {
		for _, h := range resp.Header {
			if strings.EqualFold(h[0], "Content-Length") {
				t.Errorf("304 answered with Content-Length %s: it counts the echoed token", h[1])
			}
		}
	}
	// Echoes the runtime or net/http reformat: a host name lower-cased in
	// a refusal, a header name canonicalised.
	lower := strings.ToLower(tok)
	if _, err := read(p, ghURL+"/hostecho"); err == nil || strings.Contains(strings.ToLower(err.Error()), lower) {
		t.Errorf("refused redirect to a host named after the token: %v", err)
	}
	if resp, err := read(p, ghURL+"/nameecho"); err != nil {
		t.Fatal(err)
	} else {
		for _, h := range resp.Header {
			if strings.Contains(strings.ToLower(h[0]+h[1]), lower) {
				t.Errorf("echoed token in a header name: %q", h[0])
			}
		}
	}
	// Redirect away: the other host gets nothing.
	if resp, err := read(p, ghURL+"/away"); err != nil || string(resp.Body) != "other host" {
		t.Fatalf("redirect away: %v", err)
	}
	if got := other.seenAuth(); len(got) != 0 {
		t.Errorf("token sent to another host across a redirect: %q", got)
	}
	// Redirect within the host: sent again on the new hop.
	if _, err := read(p, ghURL+"/back"); err != nil {
		t.Fatal(err)
	}
	if got := gh.seenAuth(); len(got) != 8 {
		t.Errorf("integration host saw %d tokens over its 8 requests", len(got))
	}
	// Directly to another host: nothing.
	if _, err := read(p, "https://127.0.0.1:"+other.port()+"/"); err != nil {
		t.Fatal(err)
	}
	if got := other.seenAuth(); len(got) != 0 {
		t.Errorf("token sent where it does not belong: %q", got)
	}
	// Over plain http where the operator allows it for that host: sent.
	if _, err := read(p, "http://example.com:"+plain.port()+"/"); err != nil {
		t.Fatal(err)
	}
	if got := plain.seenAuth(); len(got) != 1 || got[0] != "Authorization: Bearer "+tok {
		t.Errorf("integration host over allowed plain http saw %q", got)
	}
	// A token echoed into the final URL, an ETag or an error message.
	resp, err = read(p, ghURL+"/leak")
	if err != nil || string(resp.Body) != "landed" {
		t.Fatalf("redirect with the token in its Location: %v", err)
	}
	if strings.Contains(resp.URL, tok) || strings.Contains(resp.ETag, tok) || !strings.Contains(resp.URL, "REDACTED") {
		t.Errorf("echoed token reached the plugin: URL %q ETag %q", resp.URL, resp.ETag)
	}
	// A range request to the integration's host is sent whole.
	resp, err = read(p, ghURL+"/range", "Range", "bytes=0-15")
	if err != nil || resp.Status != http.StatusOK || string(resp.Body) != "you sent Bearer [REDACTED]" {
		t.Errorf("range read of an echo: %v %+v", err, resp)
	}
	// A body in a coding the reader cannot decode is not handed over.
	if resp, err := read(p, ghURL+"/encoded"); err == nil || strings.Contains(err.Error(), tok) || !strings.Contains(err.Error(), "Content-Encoding: x-rot13") {
		t.Errorf("encoded echo: %v %+v", err, resp)
	}
	_, err = read(p, ghURL+"/leakaway")
	if err == nil || strings.Contains(err.Error(), tok) || KindOf(err) != Denied {
		t.Errorf("refused redirect carrying the token: %v (kind %v), want Denied without the token", err, KindOf(err))
	}
	// A redirect to another host the plugin may read, quoting the token
	// in its URL, is not followed: the other host would get it.
	hits := other.hits.Load()
	_, err = read(p, ghURL+"/leakother")
	wantErr(t, err, Denied, "redirect from "+ghURL+"/leakother: refused: the redirect's URL quotes an integration token sent on this read, which would reach 127.0.0.1:"+other.port()+", a host it is not for")
	if strings.Contains(err.Error(), tok) {
		t.Errorf("the refusal quotes the token: %v", err)
	}
	_, err = read(p, ghURL+"/leakother64")
	wantErr(t, err, Denied, "the redirect's URL quotes an integration token sent on this read")
	if n := other.hits.Load() - hits; n != 0 {
		t.Errorf("the other host was reached %d times with the token in the URL", n)
	}
	// An echo in base64 is scrubbed as the token itself is, in the final
	// URL as in the body.
	resp, err = read(p, ghURL+"/leak64")
	enc64 := base64.URLEncoding.EncodeToString([]byte("Bearer " + tok))
	if err != nil || !strings.Contains(resp.URL, "[REDACTED]") || strings.Contains(resp.URL, enc64[12:len(enc64)-4]) {
		t.Errorf("base64 echo in the final URL: %v %+v", err, resp)
	}
	resp, err = read(p, ghURL+"/echo64")
	enc := base64.StdEncoding.EncodeToString([]byte("Bearer " + tok))
	if err != nil || !strings.Contains(string(resp.Body), "[REDACTED]") || strings.Contains(string(resp.Body), enc[12:len(enc)-4]) {
		t.Errorf("base64 echo: %v %q", err, respBody(resp))
	}
}

// An integration whose host names a port is for that port only; the
// scheme's port counts when a URL names none.
func TestIntegrationPorts(t *testing.T) {
	a := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {})
	b := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {})
	cfg := `
[reading]
allow = [{ host = "127.0.0.1", scheme = "http" }]
[[integrations.generic]]
host = "127.0.0.1:` + a.port() + `"
token = "key-aaaaaaaaaaaaaaaa"
header = "X-Api-Key"
`
	p := reader(t, cfg, mapResolver{}, a, b).For("p", []string{"127.0.0.1"})
	for _, s := range []*server{a, b} {
		if _, err := read(p, "http://127.0.0.1:"+s.port()+"/"); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.seenAuth(); len(got) != 1 || got[0] != "X-Api-Key: key-aaaaaaaaaaaaaaaa" {
		t.Errorf("the integration's port saw %q", got)
	}
	if got := b.seenAuth(); len(got) != 0 {
		t.Errorf("another port of the same host saw %q", got)
	}

	r := &Reader{tokens: map[string]token{"a.test:443": {src: "443"}, "a.test:80": {src: "80"}, "b.test": {src: "any"}}}
	for raw, want := range map[string]string{
		"https://a.test/": "443", "https://A.test.:443/": "443", "http://a.test/": "80", "http://a.test:443/": "443",
		"https://a.test:8443/": "", "https://b.test:8443/": "any", "http://b.test/": "any", "https://c.test/": "",
		"https://a.test:0443/": "443", // the same port
	} {
		u, _ := url.Parse(raw)
		if got, _ := r.token(u); got.src != want {
			t.Errorf("%s: integration %q, want %q", raw, got.src, want)
		}
	}
}

func TestIntegrationHeaders(t *testing.T) {
	srv := newServer(t, true, func(w http.ResponseWriter, r *http.Request) {})
	cfg := `
[reading]
allow = [{ host = "*.test" }]
[[integrations.gitlab]]
host = "gitlab.test"
token = "glpat-aaaaaaaaaaaaaaaa"
[[integrations.bitbucket]]
host = "bb.test"
token = "bb-bbbbbbbbbbbbbbbb"
[[integrations.generic]]
host = "generic.test"
token = "key-cccccccccccccccc"
header = "X-Api-Key"
[[integrations.generic]]
host = "bearer.test"
token = "key-dddddddddddddddd"
`
	res := mapResolver{"gitlab.test": {"127.0.0.1"}, "bb.test": {"127.0.0.1"}, "generic.test": {"127.0.0.1"}, "bearer.test": {"127.0.0.1"}}
	r := reader(t, cfg, res, srv)
	// The httptest certificate names example.com and 127.0.0.1 only.
	r.transport.TLSClientConfig.ServerName = "example.com"
	p := r.For("p", []string{"*.test"})
	for _, h := range []string{"gitlab", "bb", "generic", "bearer"} {
		if _, err := read(p, "https://"+h+".test:"+srv.port()+"/"); err != nil {
			t.Fatalf("%s: %v", h, err)
		}
	}
	want := []string{"Private-Token: glpat-aaaaaaaaaaaaaaaa", "Authorization: Bearer bb-bbbbbbbbbbbbbbbb", "X-Api-Key: key-cccccccccccccccc", "Authorization: Bearer key-dddddddddddddddd"}
	if got := srv.seenAuth(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("headers = %q, want %q", got, want)
	}
}

func TestFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close() // nothing listens there now
	r, err := New(mustConfig(t, localConfig), Options{Resolver: mapResolver{}, TestOnlyReachable: []netip.AddrPort{addr}})
	if err != nil {
		t.Fatal(err)
	}
	p := r.For("p", localGrants)
	_, err = read(p, fmt.Sprintf("http://127.0.0.1:%d/", addr.Port()))
	wantErr(t, err, Failed, "connection refused")
	_, err = read(p, "http://docs.test/")
	wantErr(t, err, Failed, "resolve docs.test")
}

// A redirect's next request carries no Referer (Go's client would name
// the previous URL, which its server may have filled with an echoed
// token); a plugin may set no X-Forwarded-* header at all; a body still
// encoded (a coding the runtime does not decode) fails the read, with or
// without a token.
func TestRefererForwardedAndEncodedBodies(t *testing.T) {
	var referers []string
	var mu sync.Mutex
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		referers = append(referers, r.Header.Get("Referer"))
		mu.Unlock()
		switch r.URL.Path {
		case "/jump":
			http.Redirect(w, r, "/land?t=secret-in-the-url", http.StatusFound)
		case "/land":
			http.Redirect(w, r, "/end", http.StatusFound)
		case "/deflate":
			w.Header().Set("Content-Encoding", "deflate")
			w.Write([]byte{0x4b, 0x4c, 0x4a, 0x06, 0x00})
		default:
			fmt.Fprint(w, "ok")
		}
	})
	cfg := "[reading]\nallow = [{ host = \"docs.test\", scheme = \"http\" }]\n"
	p := reader(t, cfg, mapResolver{"docs.test": {"127.0.0.1"}}, srv).For("p", []string{"docs.test/"})
	base := "http://docs.test:" + srv.port()
	if resp, err := read(p, base+"/jump"); err != nil || string(resp.Body) != "ok" {
		t.Fatalf("redirects: %v %+v", err, resp)
	}
	for i, ref := range referers {
		if ref != "" {
			t.Errorf("request %d carried Referer %q", i+1, ref)
		}
	}
	for _, h := range []string{"X-Forwarded-Prefix", "x-forwarded-port", "X-Forwarded-Ssl", "X-Forwarded-For"} {
		_, err := read(p, base+"/", h, "evil")
		wantErr(t, err, Denied, "may not be set by a plugin")
	}
	_, err := read(p, base+"/deflate")
	wantErr(t, err, Failed, "Content-Encoding: deflate")
}

// An echoed token is scrubbed in every form the runtime, net/http or the
// echoing server may give it before the plugin sees it: any case of its
// letters, percent-escaped whole or in part (as a path, a query, or
// Python's quote escape it), and escaped as in a JSON string.
func TestScrubForms(t *testing.T) {
	const tok = "tok|en^Secret{x}/a+b=c d%e\\f"
	h := &hopper{sent: []string{tok}}
	for _, in := range []string{
		tok, strings.ToUpper(tok), strings.ToLower(tok),
		url.PathEscape(tok), strings.ToLower(url.PathEscape(tok)), url.QueryEscape(tok),
		// urllib.parse.quote: '/' kept, the rest escaped
		strings.ReplaceAll(url.QueryEscape(tok), "%2F", "/"),
		// every byte escaped, in lower-case hex
		escapeAll(tok),
		// JSON: PHP's json_encode escapes '/', others \u-escape
		`tok|en^Secret{x}\/a+b=c d%e\\f`,
		`tok\u007cen\u005ESecret\u007bx\u007d\/a\u002bb\u003dc d%e\\f`,
	} {
		if got := h.scrubString("a " + in + " b"); got != "a [REDACTED] b" {
			t.Errorf("%q: scrubbed to %q", in, got)
		}
	}
	for _, in := range []string{
		"nothing here", "%%%", "\\", "+++", "tok|en^Secret{x}/a+b=c d%e", "%74ok|en^Secret{x}/a+b=c d%e\\",
		"tok|en^Secret{y}/a+b=c d%e\\f",
	} {
		if got := h.scrubString(in); got != in {
			t.Errorf("changed text without the token: %q became %q", in, got)
		}
	}
	if got := h.scrubString("1 " + tok + tok + " 2 " + url.QueryEscape(tok)); got != "1 [REDACTED][REDACTED] 2 [REDACTED]" {
		t.Errorf("several echoes: %q", got)
	}
	// Tokens holding what is also an escape are found written as they are
	// (an escape that spells the token's byte is not the only reading),
	// and HTML character references (html/template writes '+' as &#43;).
	for tok, forms := range map[string][]string{
		"abc%25def0123": {"abc%25def0123", url.QueryEscape("abc%25def0123"), "abc%2525def0123"},
		`abc\def0123`:   {`abc\def0123`, `abc\\def0123`, url.PathEscape(`abc\def0123`)},
		"ab+c/d=e&f":    {"ab&#43;c&#x2F;d&#61;e&amp;f", "ab+c/d=e&f", "ab%2Bc%2Fd%3De%26f"},
	} {
		h := &hopper{sent: []string{tok}}
		for _, in := range forms {
			if got := h.scrubString("<" + in + ">"); got != "<[REDACTED]>" {
				t.Errorf("token %q echoed as %q: scrubbed to %q", tok, in, got)
			}
		}
	}
}

// An echo encoded in hex or base64 (either alphabet, padded or not, the
// token alone or inside other text at any offset, and escaped again on its
// way: percent-escaped in a URL, "\/" in a JSON string) is scrubbed too:
// all but the characters at either end that encode the text around it.
func TestScrubEncodedEchoes(t *testing.T) {
	const tok = "ghp_0123456789abcdefghijklmnopqrstuvwxyz?>~"
	h := &hopper{sent: []string{tok}}
	for _, tc := range []struct{ name, in string }{
		{"hex", hex.EncodeToString([]byte(tok))},
		{"HEX", strings.ToUpper(hex.EncodeToString([]byte(tok)))},
		{"base64", base64.StdEncoding.EncodeToString([]byte(tok))},
		{"base64 after 1 byte", base64.StdEncoding.EncodeToString([]byte("x" + tok + "y"))},
		{"base64 of the header", base64.StdEncoding.EncodeToString([]byte("Authorization: Bearer " + tok))},
		{"base64 of user:token", base64.StdEncoding.EncodeToString([]byte("x-access-token:" + tok))},
		{"base64url after 2 bytes", base64.RawURLEncoding.EncodeToString([]byte("xy" + tok))},
		{"base64 in a query", url.QueryEscape(base64.StdEncoding.EncodeToString([]byte("Bearer " + tok)))},
		{"base64 in JSON", strings.ReplaceAll(base64.StdEncoding.EncodeToString([]byte("Bearer "+tok)), "/", `\/`)},
	} {
		got := h.scrubString("<" + tc.in + ">")
		if !strings.Contains(got, "[REDACTED]") || len(got) > len("<[REDACTED]>")+len(tc.in)-len(tok) {
			t.Errorf("%s: %q scrubbed to %q", tc.name, tc.in, got)
		}
	}
	// Text that merely looks encoded is left alone.
	for _, in := range []string{hex.EncodeToString([]byte("another token, not this one")), base64.StdEncoding.EncodeToString([]byte("ghp_0123456789abcdefghijklmnopqrstuvwxy!"))} {
		if got := h.scrubString(in); got != in {
			t.Errorf("changed text without the token: %q became %q", in, got)
		}
	}
}

// A token under 8 bytes (which the config loads, with a warning) is
// scrubbed like any other: short is no reason to hand its echo back.
func TestScrubShortToken(t *testing.T) {
	h := &hopper{sent: []string{"t1"}}
	if got := h.scrubString("a t1 b"); got != "a [REDACTED] b" {
		t.Errorf("a 2-byte token's echo scrubbed to %q", got)
	}

	// Through New, as the server builds the reader: it takes the token
	// the config loaded (New used to refuse it, and the server with it),
	// sends it and scrubs its echo.
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "you sent %s", r.Header.Get("X-Api-Key"))
	})
	cfg := `
[reading]
allow = [{ host = "127.0.0.1", scheme = "http" }]
[[integrations.generic]]
host = "127.0.0.1"
token = "t1"
header = "X-Api-Key"
`
	resp, err := read(reader(t, cfg, mapResolver{}, srv).For("p", []string{"127.0.0.1"}), srv.URL+"/")
	if err != nil || string(resp.Body) != "you sent [REDACTED]" {
		t.Errorf("a read with a 2-byte token: %v %q", err, respBody(resp))
	}
	if got := srv.seenAuth(); len(got) != 1 || got[0] != "X-Api-Key: t1" {
		t.Errorf("the host saw %q", got)
	}
}

func escapeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02x", s[i])
	}
	return b.String()
}

// BenchmarkScrubSelfSimilar scrubs a 1 MiB body much like the token (the
// token's first 255 bytes repeated), with and without an escape character
// in the body: matching at every byte would cost the body's length times
// the token's; without escapes the scrub is one linear search.
func BenchmarkScrubSelfSimilar(b *testing.B) {
	tok := strings.Repeat("a", 255) + "b"
	h := &hopper{sent: []string{tok, tok}}
	for _, tc := range []struct{ name, body string }{
		{"plain", strings.Repeat("a", 1<<20)},
		{"escaped", strings.Repeat("a", 1<<20-1) + "%"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			body := []byte(tc.body)
			for b.Loop() {
				if out := h.scrubBytes(body); len(out) != len(body) {
					b.Fatal("scrubbed text without the token")
				}
			}
		})
	}
}

// A cookie set in answer to a request that carried a token can be a
// session the token opened (Jenkins, Jira and Confluence answer a token
// with an authenticated session cookie): it never reaches the plugin. A
// read without a token keeps its cookies.
func TestTokenReadDropsSetCookie(t *testing.T) {
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "JSESSIONID=session-opened-by-the-token; Path=/; HttpOnly")
		w.Header().Add("Set-Cookie", "other=1")
		w.Header().Add("set-cookie2", "old=1")
		fmt.Fprint(w, "ok")
	})
	cfg := `
[reading]
allow = [{ host = "127.0.0.1", scheme = "http" }, { host = "notoken.test", scheme = "http" }]
[[integrations.generic]]
host = "127.0.0.1"
token = "key-bbbbbbbbbbbbbbbb"
header = "X-Api-Key"
`
	p := reader(t, cfg, mapResolver{"notoken.test": {"127.0.0.1"}}, srv).For("p", []string{"127.0.0.1", "notoken.test"})
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp, err := p.Read(context.Background(), Request{URL: "http://127.0.0.1:" + srv.port() + "/", Method: method})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range resp.Header {
			if strings.HasPrefix(strings.ToLower(h[0]), "set-cookie") {
				t.Errorf("%s with a token: the plugin got %s: %s", method, h[0], h[1])
			}
		}
	}
	if got := srv.seenAuth(); len(got) != 2 {
		t.Fatalf("the integration's host saw %q, want the token twice", got)
	}
	resp, err := read(p, "http://notoken.test:"+srv.port()+"/")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, h := range resp.Header {
		if strings.EqualFold(h[0], "Set-Cookie") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("a read without a token got %d Set-Cookie headers, want 2: %q", n, resp.Header)
	}
}

// A request header of the plugin's that holds one of its secrets (an API
// key it sends itself) goes only to the host the plugin addressed and its
// subdomains, as Go's client sends Authorization: a redirect to another
// host gets the plugin's other headers, not that one; a redirect within
// the host (another port included) or to a subdomain keeps it.
func TestPluginSecretHeaderNotSentToAnotherOrigin(t *testing.T) {
	const key = "plugin-api-key-0123456789"
	var mu sync.Mutex
	var seen []string // who got which X-Api-Key and X-Trace
	record := func(r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Host+r.URL.Path+" "+r.Header.Get("X-Api-Key")+" "+r.Header.Get("X-Trace"))
		mu.Unlock()
	}
	other := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		record(r)
		switch r.URL.Path {
		case "/back":
			http.Redirect(w, r, "http://api.test:"+r.URL.Query().Get("port")+"/landing", http.StatusFound)
		default:
			fmt.Fprint(w, "other")
		}
	})
	var originPort string
	origin := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		record(r)
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, "http://other.test:"+other.port()+"/landing", http.StatusFound)
		case "/awayandback":
			http.Redirect(w, r, "http://other.test:"+other.port()+"/back?port="+originPort, http.StatusFound)
		case "/port":
			http.Redirect(w, r, "http://api.test:"+other.port()+"/landing", http.StatusFound)
		case "/sub":
			http.Redirect(w, r, "http://www.api.test:"+other.port()+"/landing", http.StatusFound)
		case "/within":
			http.Redirect(w, r, "/landing", http.StatusFound)
		default:
			fmt.Fprint(w, "landed")
		}
	})
	originPort = origin.port()
	cfg := `
[reading]
allow = [{ host = "api.test", scheme = "http" }, { host = "*.api.test", scheme = "http" }, { host = "other.test", scheme = "http" }]
`
	res := mapResolver{"api.test": {"127.0.0.1"}, "www.api.test": {"127.0.0.1"}, "other.test": {"127.0.0.1"}}
	p := reader(t, cfg, res, origin, other).For("p", []string{"api.test", "*.api.test", "other.test"})
	p.SetSecrets([]string{key, "abc"})
	// The runtime follows the redirects, or the plugin's client does
	// (Hop reads, TestHopReadsFollowedByThePluginsClient).
	for _, hop := range []bool{false, true} {
		for _, path := range []string{"/within", "/port", "/sub", "/away", "/awayandback"} {
			mu.Lock()
			seen = nil
			mu.Unlock()
			var err error
			if hop {
				_, _, err = get(&http.Client{Transport: hopTransport{p}}, "http://api.test:"+origin.port()+path, "X-Api-Key", "Key "+key, "X-Trace", "abc-1")
			} else {
				_, err = read(p, "http://api.test:"+origin.port()+path, "X-Api-Key", "Key "+key, "X-Trace", "abc-1")
			}
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			for _, s := range seen {
				host, _, _ := strings.Cut(s, " ")
				withKey := strings.Contains(s, " Key "+key+" ")
				if wantKey := !strings.HasPrefix(host, "other.test"); withKey != wantKey {
					t.Errorf("%s: %q got the key: %v, want %v", path, s, withKey, wantKey)
				}
				if !strings.HasSuffix(s, " abc-1") {
					t.Errorf("%s: %q lacks the plugin's other header", path, s)
				}
			}
			if path == "/awayandback" && len(seen) != 3 {
				t.Errorf("%s: hops %q, want 3", path, seen)
			}
			mu.Unlock()
		}
	}
}
