package urlreader

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// More spellings an attacker tries, beyond TestHostSpellingsRefused's:
// short hexadecimal forms, an allowed host as the userinfo of another, a
// backslash that WHATWG parsers read as a slash, schemes other than http
// and https, Unicode hosts that look like allowed ones. None reaches a
// resolver or a server.
func TestAttackSpellingsRefused(t *testing.T) {
	for _, tc := range []struct {
		url  string
		kind Kind
		want string
	}{
		{"http://0x7f.1/", Denied, "non-canonical spelling of the IPv4 address 127.0.0.1"},
		{"http://0x7f.0x1/", Denied, "127.0.0.1"},
		{"http://0xa9fea9fe/", Denied, "169.254.169.254"},
		{"http://0x0/", Denied, "0.0.0.0"},
		{"http://10.1/", Denied, "10.0.0.1"},
		{"http://0300.0250.1/", Denied, "192.168.0.1"},
		{"http://[::ffff:a9fe:a9fe]/", Denied, "169.254.169.254"},
		{"http://[::ffff:10.0.0.1]/", Denied, "10.0.0.1"},
		{"https://allowed.test@evil.example/", Denied, "credentials in the URL are refused"},
		{"https://allowed.test:443@evil.example/", Denied, "credentials in the URL are refused"},
		{"https://allowed.test%40evil.example/", Invalid, ""},
		{`https://evil.example\allowed.test/`, Invalid, ""},
		{`https://allowed.test\@evil.example/`, Invalid, ""},
		{"file:///etc/passwd", Invalid, `scheme "file" is not supported`},
		{"gopher://allowed.test:70/_GET", Invalid, `scheme "gopher" is not supported`},
		{"ftp://allowed.test/", Invalid, `scheme "ftp" is not supported`},
		{"dict://allowed.test:11211/stats", Invalid, `scheme "dict" is not supported`},
		{"ws://allowed.test/", Invalid, `scheme "ws" is not supported`},
		{"data:text/plain,x", Invalid, `scheme "data" is not supported`},
		{"https:allowed.test/x", Invalid, "opaque"},
		{"https://аllowed.test/", Invalid, "not an ASCII host name"},      // Cyrillic а
		{"https://allowed\u3002test/", Invalid, "not an ASCII host name"}, // ideographic full stop
		{"https://ａllowed.test/", Invalid, "not an ASCII host name"},      // fullwidth a
		{"https://allowed.test../", Invalid, "empty label"},
		{"https://allowed.test\x00.evil/", Invalid, ""},
		{"https://allowed.test%00.evil/", Invalid, ""},
		{"https://allowed.test%2eevil.example/", Invalid, ""},
	} {
		_, err := parseTarget(tc.url)
		if err == nil || KindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v (%v), want %v containing %q", tc.url, err, KindOf(err), tc.kind, tc.want)
		}
	}
	// Through a plugin's reader with a resolver that would answer anything
	// with a loopback server: nothing is resolved, nothing connects.
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {})
	res := &countingResolver{answer: "127.0.0.1"}
	r, err := New(mustConfig(t, "[reading]\nallow = [{ host = \"allowed.test\", scheme = \"http\" }, { host = \"*.allowed.test\", scheme = \"http\" }]\n"),
		Options{Resolver: res, TestOnlyReachable: []netip.AddrPort{srv.addrPort()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	p := r.For("p", []string{"allowed.test", "*.allowed.test"})
	for _, u := range []string{
		"http://allowed.test@127.0.0.1:" + srv.port() + "/",
		"http://allowed.test:" + srv.port() + "@127.0.0.1:" + srv.port() + "/",
		"http://127.0.0.1:" + srv.port() + "#@allowed.test/",
		"http://127.0.0.1:" + srv.port() + "?@allowed.test/",
		"http://127.0.0.1:" + srv.port() + "\\@allowed.test/",
		"http://0x7f.1:" + srv.port() + "/",
		"http://2130706433:" + srv.port() + "/",
		"http://017700000001:" + srv.port() + "/",
		"http://[::ffff:127.0.0.1]:" + srv.port() + "/",
		"http://evil.example/.allowed.test/",
		"http://allowed.test.evil.example:" + srv.port() + "/",
		"http://xallowed.test:" + srv.port() + "/",
		"gopher://allowed.test:" + srv.port() + "/",
	} {
		if _, err := read(p, u); err == nil {
			t.Errorf("%s: read succeeded", u)
		}
	}
	if n := res.calls(); n != 0 || srv.hits.Load() != 0 {
		t.Errorf("refused URLs were resolved %d times and reached the server %d times", n, srv.hits.Load())
	}
	// The trailing-dot spelling of an allowed host is the same host.
	if _, err := read(p, "http://allowed.test.:"+srv.port()+"/"); err != nil {
		t.Errorf("allowed.test. (trailing dot): %v", err)
	}
}

// countingResolver answers every name with answer (or, when it is set,
// with rebind after the first lookup) and counts its lookups.
type countingResolver struct {
	mu     sync.Mutex
	n      int
	answer string
	rebind string
}

func (c *countingResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	a := c.answer
	if c.n > 1 && c.rebind != "" {
		a = c.rebind
	}
	return []netip.Addr{netip.MustParseAddr(a)}, nil
}

func (c *countingResolver) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// DNS rebinding: a name that first resolves to an address the reader may
// reach and then to an internal one. The reader resolves once per
// connection and connects to the address it checked, so the second
// connection (keep-alives off on the server) is refused, naming the
// address the name now resolves to.
func TestDNSRebindingRefused(t *testing.T) {
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		fmt.Fprint(w, "ok")
	})
	// 127.0.0.2 on srv's port: loopback, not made reachable.
	res := &countingResolver{answer: "127.0.0.1", rebind: "127.0.0.2"}
	r, err := New(mustConfig(t, "[reading]\nallow = [{ host = \"rebind.test\", scheme = \"http\" }]\n"),
		Options{Resolver: res, TestOnlyReachable: []netip.AddrPort{srv.addrPort()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	p := r.For("p", []string{"rebind.test"})
	url := "http://rebind.test:" + srv.port() + "/"
	if resp, err := read(p, url); err != nil || string(resp.Body) != "ok" {
		t.Fatalf("first read: %v", err)
	}
	_, err = read(p, url)
	wantErr(t, err, Denied, "host rebind.test resolves to 127.0.0.2, which is loopback")
	if srv.hits.Load() != 1 || res.calls() != 2 {
		t.Errorf("server hits %d, lookups %d; want 1 and 2", srv.hits.Load(), res.calls())
	}
}

// HTTP_PROXY and HTTPS_PROXY do not route reads: a proxy would be the only
// address the reader dialled and checked.
func TestProxyEnvironmentIgnored(t *testing.T) {
	var proxied sync.Map
	proxy := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		proxied.Store(r.URL.String(), true)
		fmt.Fprint(w, "from the proxy")
	})
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"} {
		t.Setenv(k, proxy.URL)
	}
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "direct") })
	p := reader(t, localConfig, mapResolver{"docs.test": {"127.0.0.1"}}, srv).For("p", localGrants)
	resp, err := read(p, "http://docs.test:"+srv.port()+"/")
	if err != nil || string(resp.Body) != "direct" {
		t.Errorf("read: %v", err)
	}
	// The metadata address is refused, not handed to the proxy.
	_, err = read(p, "http://169.254.169.254/latest/meta-data/")
	wantErr(t, err, Denied, "link-local")
	if proxy.hits.Load() != 0 {
		t.Errorf("the proxy from the environment was used %d times", proxy.hits.Load())
	}
}

// A server that sends its body a byte at a time, each within any
// per-read idle timeout, is cut off at reading.timeout for the whole
// read.
func TestSlowDripCutOff(t *testing.T) {
	stop := make(chan struct{})
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		for i := 0; i < 100000; i++ {
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-time.After(20 * time.Millisecond):
			case <-r.Context().Done():
				return
			case <-stop:
				return
			}
		}
	})
	t.Cleanup(func() { close(stop) })
	p := reader(t, localConfig+"timeout = \"300ms\"\n", nil, srv).For("p", localGrants)
	start := time.Now()
	_, err := read(p, "http://127.0.0.1:"+srv.port()+"/")
	wantErr(t, err, Timeout, "read took longer than reading.timeout (300ms)")
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("cut off after %v", took)
	}
}

// Each internal address an operator's allow rule names without
// internal = true, localhost as the system resolves it, and names that
// resolve to internal IPv6 addresses (allow rules name IPv6 hosts only by
// name) are refused before anything connects, naming the range.
func TestInternalTargetsAllowedByNameStillRefused(t *testing.T) {
	hosts := map[string]string{
		"localhost":       "loopback",
		"127.0.0.1":       "loopback",
		"127.8.9.10":      "loopback",
		"0.0.0.0":         "unspecified",
		"10.1.2.3":        "private (RFC 1918)",
		"172.20.0.1":      "private (RFC 1918)",
		"192.168.1.1":     "private (RFC 1918)",
		"100.64.0.1":      "shared address space",
		"169.254.169.254": "link-local",
		"v6-loop.test":    "loopback (::1/128)",
		"v6-any.test":     "unspecified (::/128)",
		"v6-link.test":    "link-local (fe80::/10)",
		"v6-ula.test":     "unique local",
		"aws-v6-md.test":  "unique local", // fd00:ec2::254, AWS's IPv6 metadata address
		"nat64-md.test":   "(169.254.0.0/16), through NAT64",
	}
	names := mapResolver{
		"v6-loop.test":   {"::1"},
		"v6-any.test":    {"::"},
		"v6-link.test":   {"fe80::1"},
		"v6-ula.test":    {"fd12:3456::1"},
		"aws-v6-md.test": {"fd00:ec2::254"},
		"nat64-md.test":  {"64:ff9b::a9fe:a9fe"},
	}
	cfg := "[reading]\nallow = ["
	var grants []string
	for h := range hosts {
		cfg += fmt.Sprintf("{ host = %q, scheme = \"http\" }, ", h)
		grants = append(grants, h)
	}
	cfg = strings.TrimSuffix(cfg, ", ") + "]\n"
	r, err := New(mustConfig(t, cfg), Options{Resolver: systemFor(names, "localhost")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	p := r.For("p", grants)
	for h, want := range hosts {
		_, err := read(p, "http://"+h+":8080/")
		wantErr(t, err, Denied, want, "refused by the URL reader's address rules")
	}
	// An IPv6 literal matches no allow rule.
	_, err = read(p, "http://[::1]:8080/")
	wantErr(t, err, Denied, "refused: not granted to plugin p")
}

// systemFor answers the names in system from the system's resolver, the
// others from m.
func systemFor(m mapResolver, system ...string) Resolver {
	return resolverFunc(func(ctx context.Context, network, host string) ([]netip.Addr, error) {
		for _, s := range system {
			if s == host {
				return net.DefaultResolver.LookupNetIP(ctx, network, host)
			}
		}
		return m.LookupNetIP(ctx, network, host)
	})
}

type resolverFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

func (f resolverFunc) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f(ctx, network, host)
}

// A hostile plugin's redirects, through an allowed front it controls, to
// allowed names that resolve internally in each spelling a resolver may
// answer (IPv4-mapped, NAT64, IPv4-translated, 6to4, 0.0.0.0, ::), and to
// allowed hosts spelled with a trailing dot, upper case, a port of 0 or
// past 65535, userinfo naming an allowed host, and IPv6 spellings of
// loopback: none reaches the internal server, as the runtime follows the
// redirect and as the plugin's client does.
func TestHostileRedirectsToInternalNames(t *testing.T) {
	internal := newServer(t, false, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "internal secrets") })
	ip := internal.port()
	names := mapResolver{
		"front.test":  {"127.0.0.1"},
		"mapped.test": {"::ffff:127.0.0.1"},
		"nat64.test":  {"64:ff9b::7f00:1"},
		"xlat.test":   {"::ffff:0:7f00:1"},
		"6to4.test":   {"2002:7f00:1::1"},
		"zero.test":   {"0.0.0.0"},
		"any6.test":   {"::"},
		"mixed.test":  {"93.184.215.14", "10.0.0.7"},
	}
	locs := map[string]string{
		"/mapped":    "http://mapped.test:" + ip + "/",
		"/nat64":     "http://nat64.test:" + ip + "/",
		"/xlat":      "http://xlat.test:" + ip + "/",
		"/6to4":      "http://6to4.test:" + ip + "/",
		"/zero":      "http://zero.test:" + ip + "/",
		"/any6":      "http://any6.test:" + ip + "/",
		"/mixed":     "http://mixed.test:" + ip + "/",
		"/dotcase":   "http://ZERO.TEST.:" + ip + "/",
		"/port0":     "http://front.test:0/",
		"/portbig":   "http://front.test:65536/",
		"/userinfo":  "http://front.test@127.0.0.1:" + ip + "/",
		"/v6loop":    "http://[0:0:0:0:0:0:0:1]:" + ip + "/",
		"/v6mapped":  "http://[::ffff:7f00:1]:" + ip + "/",
		"/octal":     "http://0177.0.0.1:" + ip + "/",
		"/schemerel": "//127.0.0.1:" + ip + "/",
	}
	front := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", locs[r.URL.Path])
		w.WriteHeader(http.StatusFound)
	})
	var allow, grants []string
	for h := range names {
		allow = append(allow, fmt.Sprintf("{ host = %q, scheme = \"http\" }", h))
		grants = append(grants, h)
	}
	allow = append(allow, `{ host = "127.0.0.1", scheme = "http" }`)
	grants = append(grants, "127.0.0.1")
	cfg := "[reading]\nallow = [" + strings.Join(allow, ", ") + "]\n"
	p := reader(t, cfg, names, front).For("p", grants)
	for _, hop := range []bool{false, true} {
		for path := range locs {
			u := "http://front.test:" + front.port() + path
			var err error
			if hop {
				_, _, err = get(&http.Client{Transport: hopTransport{p}}, u)
			} else {
				_, err = read(p, u)
			}
			// Refused, not failed to connect (NAT64 and 6to4 addresses
			// route nowhere here).
			if k := KindOf(err); err == nil || k != Denied && k != Invalid {
				t.Errorf("hop %v %s (to %s): err %v (%v), want it refused", hop, path, locs[path], err, k)
			}
		}
	}
	if n := internal.hits.Load(); n != 0 {
		t.Errorf("the internal server was reached %d times", n)
	}
}
