package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// proxyConfig serves plugins/hello to anonymous callers (authentication
// off), limited to one request a minute each, behind the trusted proxies
// listed (TOML strings).
func proxyConfig(trusted string) string {
	return fmt.Sprintf(`[server]
trusted_proxies = [%s]
rate_limit = "1/m"
[auth]
dangerously_disable = true
[plugins.hello]
path = %q
`, trusted, helloWasm)
}

type echoed struct {
	Headers map[string][]string
	Remote  string
}

func getEcho(t *testing.T, in *servertest.Instance, header ...string) echoed {
	t.Helper()
	status, _, body := in.DoAnon(t, "GET", "/api/hello/echo", nil, header...)
	if status != 200 {
		t.Fatalf("%v: %d %s", header, status, body)
	}
	var e echoed
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return e
}

// forwarding are the headers through which a proxy says where a request
// came from, as a client may forge them, CGI-style spellings included.
var forwarding = []string{
	"X-Forwarded-For", "203.0.113.66", "X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "https",
	"X-Forwarded-Port", "8443", "X-Forwarded-Prefix", "/evil", "X-Real-Ip", "203.0.113.67",
	"Forwarded", "for=203.0.113.68;host=evil.example;proto=https", "True-Client-Ip", "203.0.113.69",
	"Cf-Connecting-Ip", "203.0.113.70", "X_Forwarded_For", "203.0.113.71", "x_real_ip", "203.0.113.72",
	"Fastly-Client-Ip", "203.0.113.73", "X-Client-Ip", "203.0.113.74", "X-Cluster-Client-Ip", "203.0.113.75",
	"X-Original-Forwarded-For", "203.0.113.76", "X-FORWARDED-SERVER", "evil.example",
	// Read as the client's by Go frameworks (gin's TrustedPlatform) and
	// by code written for PHP's $_SERVER; refused to a plugin's reads.
	"Fly-Client-Ip", "203.0.113.77", "X-Appengine-Remote-Addr", "203.0.113.78", "Client-Ip", "203.0.113.79",
	"X-Originating-Ip", "203.0.113.80", "X-Remote-Ip", "203.0.113.81", "X-Remote-Addr", "203.0.113.82",
	"X-Forwarded", "for=203.0.113.83", "X-Host", "evil.example", "X-Original-Host", "evil.example",
	"X-Kept", "yes",
}

// logIPs returns the ip of every log line msg ("access denied": the
// audit's; "request": the access log's) of a request to /api/hello/echo.
func logIPs(t *testing.T, in *servertest.Instance, msg string) []string {
	t.Helper()
	var ips []string
	for _, l := range in.LogLines(t) {
		if l["msg"] == msg && l["path"] == "/api/hello/echo" {
			ip, _ := l["ip"].(string)
			ips = append(ips, ip)
		}
	}
	return ips
}

// A client that talks to greenroom directly cannot tell a plugin where
// it came from: the forwarding headers it sends are dropped before the
// guest (a plugin trusting X-Forwarded-For for an audit, or
// X-Forwarded-Host to build a URL, took any caller's word), and the
// guest's RemoteAddr, the rate limit, the audit and access logs have the
// connection's address. The same from a peer that is not a trusted proxy.
func TestForwardingHeadersFromClientDropped(t *testing.T) {
	t.Parallel()
	for _, trusted := range []string{``, `"10.0.0.0/8", "192.0.2.1"`} {
		in := servertest.Start(t, proxyConfig(trusted), servertest.Options{CacheDir: cacheDir, Anonymous: true})
		e := getEcho(t, in, forwarding...)
		for k := range e.Headers {
			for i := 0; i < len(forwarding); i += 2 {
				h := forwarding[i]
				if h != "X-Kept" && strings.EqualFold(strings.ReplaceAll(k, "_", "-"), strings.ReplaceAll(h, "_", "-")) {
					t.Errorf("trusted_proxies [%s]: guest received %s: %q", trusted, k, e.Headers[k])
				}
			}
		}
		if e.Headers["X-Kept"][0] != "yes" {
			t.Errorf("trusted_proxies [%s]: headers %v", trusted, e.Headers)
		}
		if host, _, err := net.SplitHostPort(e.Remote); err != nil || host != "127.0.0.1" {
			t.Errorf("trusted_proxies [%s]: RemoteAddr %q, want the peer's", trusted, e.Remote)
		}
		// Another forged address is no other caller to the rate limit.
		status, _, body := in.DoAnon(t, "GET", "/api/hello/echo", nil, "X-Forwarded-For", "203.0.113.99")
		if status != 429 {
			t.Errorf("trusted_proxies [%s]: a second request with another X-Forwarded-For: %d %s", trusted, status, body)
		}
		for _, msg := range []string{"access denied", "request"} {
			if ips := logIPs(t, in, msg); len(ips) == 0 || ips[0] != "127.0.0.1" {
				t.Errorf("trusted_proxies [%s]: %s lines' ip %q, want the peer's", trusted, msg, ips)
			}
		}
	}
}

// From a trusted proxy, the client is the rightmost address of
// X-Forwarded-For that is not a trusted proxy's: the guest's RemoteAddr,
// the anonymous rate limit's key, the audit and access logs' ip. What a
// client wrote left of it is not believed, nor passed on: the guest's
// X-Forwarded-For is its trusted part; the other forwarding headers
// reach the guest as the proxy sent them (not their underscore
// spellings, which no proxy sets, nor the identity headers of the
// X-Forwarded- family). A header that does not parse leaves the peer's
// address.
func TestTrustedProxyNamesClient(t *testing.T) {
	t.Parallel()
	in := servertest.Start(t, proxyConfig(`"10.0.0.0/8", "127.0.0.1"`), servertest.Options{CacheDir: cacheDir, Anonymous: true})

	// The client forged 198.51.100.9; the proxy appended 203.0.113.7,
	// and an inner proxy 10.1.2.3.
	e := getEcho(t, in, "X-Forwarded-For", "198.51.100.9, 203.0.113.7,10.1.2.3", "X-Forwarded-Host", "app.example",
		"X-Forwarded-Proto", "https", "Forwarded", "for=203.0.113.7", "X_Forwarded_For", "198.51.100.10",
		"X-Forwarded-User", "admin", "X-Forwarded-Client-Cert", "Hash=forged")
	if e.Remote != "203.0.113.7:0" {
		t.Errorf("RemoteAddr %q, want 203.0.113.7:0", e.Remote)
	}
	want := map[string]string{"X-Forwarded-For": "203.0.113.7, 10.1.2.3", "X-Forwarded-Host": "app.example",
		"X-Forwarded-Proto": "https", "Forwarded": "for=203.0.113.7"}
	for k, v := range want {
		if got := e.Headers[k]; len(got) != 1 || got[0] != v {
			t.Errorf("guest's %s = %q, want %q", k, got, v)
		}
	}
	// Nor, from a trusted proxy either, the identity headers of the
	// family (auth.md).
	for k := range e.Headers {
		if strings.Contains(k, "_") || k == "X-Forwarded-User" || k == "X-Forwarded-Client-Cert" {
			t.Errorf("guest received %s", k)
		}
	}
	// The same client again is limited, under its own address (its
	// left part forged otherwise); another client is not.
	status, _, body := in.DoAnon(t, "GET", "/api/hello/echo", nil, "X-Forwarded-For", "198.51.100.11, 203.0.113.7")
	if status != 429 {
		t.Errorf("the same client again: %d %s", status, body)
	}
	// Several headers are one list, in order; a port is kept, a zone
	// (any text) dropped.
	for _, c := range []struct {
		xff  []string
		want string
	}{
		{[]string{"203.0.113.8"}, "203.0.113.8:0"},
		{[]string{"203.0.113.9:5100, 10.0.0.1", "127.0.0.1"}, "203.0.113.9:5100"},
		{[]string{"[2001:db8::1]:5100"}, "[2001:db8::1]:5100"},
		{[]string{"fe80::1%evil-text"}, "[fe80::1]:0"},
		{[]string{"::ffff:203.0.113.10"}, "203.0.113.10:0"},
		// Every address a trusted proxy's: the farthest.
		{[]string{"10.9.9.9, 10.0.0.2"}, "10.9.9.9:0"},
	} {
		var h []string
		for _, v := range c.xff {
			h = append(h, "X-Forwarded-For", v)
		}
		if e := getEcho(t, in, h...); e.Remote != c.want {
			t.Errorf("X-Forwarded-For %q: RemoteAddr %q, want %q", c.xff, e.Remote, c.want)
		}
	}
	// The header in any letter case (Go's client sends it canonical).
	conn, err := net.Dial("tcp", strings.TrimPrefix(in.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /api/hello/echo HTTP/1.1\r\nHost: x\r\nx-forwarded-FOR: 203.0.113.12\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if raw, _ := io.ReadAll(conn); !strings.Contains(string(raw), `"remote":"203.0.113.12:0"`) {
		t.Errorf("x-forwarded-FOR: %s", raw)
	}
	// Malformed, or missing: the peer's address (and the peer, the test
	// client, has its one request of the minute).
	e = getEcho(t, in, "X-Forwarded-For", "203.0.113.11, not-an-address")
	if host, _, _ := net.SplitHostPort(e.Remote); host != "127.0.0.1" {
		t.Errorf("a malformed X-Forwarded-For: RemoteAddr %q, want the peer's", e.Remote)
	}
	if status, _, body := in.DoAnon(t, "GET", "/api/hello/echo", nil); status != 429 {
		t.Errorf("the peer again, without X-Forwarded-For: %d %s", status, body)
	}
	if ips := logIPs(t, in, "access denied"); strings.Join(ips, " ") != "203.0.113.7 127.0.0.1" {
		t.Errorf("audit lines' ip %q, want the client's then the peer's", ips)
	}
	if ips := logIPs(t, in, "request"); len(ips) != 11 || ips[0] != "203.0.113.7" || ips[1] != "203.0.113.7" || ips[2] != "203.0.113.8" || ips[4] != "2001:db8::1" {
		t.Errorf("access lines' ip %q", ips)
	}
}

// A reload applies server.trusted_proxies to the requests that follow,
// without a restart (a proxy's address changes with its deployment).
func TestTrustedProxiesReload(t *testing.T) {
	t.Parallel()
	in := servertest.Start(t, proxyConfig(``), servertest.Options{CacheDir: cacheDir, Anonymous: true})
	if e := getEcho(t, in, "X-Forwarded-For", "203.0.113.7"); strings.HasPrefix(e.Remote, "203.0.113.7:") || e.Headers["X-Forwarded-For"] != nil {
		t.Fatalf("before the reload: %+v", e)
	}
	in.SetConfig(proxyConfig(`"127.0.0.0/8"`))
	if res := in.Reload(t); len(res.RestartNeeded) != 0 {
		t.Errorf("restart_needed %q", res.RestartNeeded)
	}
	if e := getEcho(t, in, "X-Forwarded-For", "203.0.113.7"); e.Remote != "203.0.113.7:0" || e.Headers["X-Forwarded-For"][0] != "203.0.113.7" {
		t.Errorf("after the reload: %+v", e)
	}
}

// unlimited is proxyConfig without the rate limit.
func unlimited(trusted string) string {
	return strings.Replace(proxyConfig(trusted), "rate_limit = \"1/m\"\n", "", 1)
}

// The guest's X-Forwarded-For, from a trusted proxy, is one line holding
// only the trusted part of the chain: the client's address greenroom
// took, then the listed proxies' right of it, as read. A proxy that adds
// a line of its own rather than appending to the client's left the
// client's forged line first, which r.Header.Get returned; one that
// appends left the forged addresses leftmost, where most code behind a
// proxy takes the client from. When the header names no client (an entry
// does not parse), the guest gets none. From a peer that is not a listed
// proxy, every line is dropped.
func TestGuestGetsTrustedXForwardedFor(t *testing.T) {
	t.Parallel()
	in := servertest.Start(t, unlimited(`"10.0.0.0/8", "127.0.0.1"`), servertest.Options{CacheDir: cacheDir, Anonymous: true})
	for _, c := range []struct {
		xff          []string
		remote, want string // want "": no X-Forwarded-For
	}{
		// The proxy added a line of its own.
		{[]string{"198.51.100.9", "203.0.113.7, 10.1.2.3"}, "203.0.113.7:0", "203.0.113.7, 10.1.2.3"},
		{[]string{"198.51.100.9, 10.0.0.5", "203.0.113.8"}, "203.0.113.8:0", "203.0.113.8"},
		// It appended to the client's.
		{[]string{"198.51.100.9, 203.0.113.9,10.1.2.3"}, "203.0.113.9:0", "203.0.113.9, 10.1.2.3"},
		{[]string{"203.0.113.10"}, "203.0.113.10:0", "203.0.113.10"},
		// As read: a port kept, a zone (any text) dropped, IPv4 unmapped.
		{[]string{"x, [2001:db8::1]:5100", " 10.0.0.1:80 ,, "}, "[2001:db8::1]:5100", "[2001:db8::1]:5100, 10.0.0.1:80"},
		{[]string{"fe80::1%evil, text"}, "127.0.0.1", ""},
		{[]string{"fe80::1%evil-text"}, "[fe80::1]:0", "fe80::1"},
		{[]string{"::ffff:203.0.113.11, ::ffff:10.0.0.3"}, "203.0.113.11:0", "203.0.113.11, 10.0.0.3"},
		// Every address a listed proxy's: all of them.
		{[]string{"10.9.9.9", "10.0.0.2"}, "10.9.9.9:0", "10.9.9.9, 10.0.0.2"},
		// No client named: none.
		{[]string{"203.0.113.12, not-an-address"}, "127.0.0.1", ""},
		{[]string{"203.0.113.13", "unknown"}, "127.0.0.1", ""},
		{[]string{""}, "127.0.0.1", ""},
	} {
		var h []string
		for _, v := range c.xff {
			h = append(h, "X-Forwarded-For", v)
		}
		e := getEcho(t, in, h...)
		if remote := e.Remote; remote != c.remote && !(c.remote == "127.0.0.1" && strings.HasPrefix(remote, "127.0.0.1:")) {
			t.Errorf("X-Forwarded-For %q: RemoteAddr %q, want %q", c.xff, remote, c.remote)
		}
		got := e.Headers["X-Forwarded-For"]
		if c.want == "" && got != nil || c.want != "" && (len(got) != 1 || got[0] != c.want) {
			t.Errorf("X-Forwarded-For %q: the guest's %q, want %q", c.xff, got, c.want)
		}
	}

	// Not from a listed proxy: dropped, every line.
	direct := servertest.Start(t, unlimited(`"10.0.0.0/8"`), servertest.Options{CacheDir: cacheDir, Anonymous: true})
	e := getEcho(t, direct, "X-Forwarded-For", "198.51.100.9", "X-Forwarded-For", "203.0.113.7, 10.1.2.3", "x-forwarded-for", "203.0.113.14")
	if got, ok := e.Headers["X-Forwarded-For"]; ok || !strings.HasPrefix(e.Remote, "127.0.0.1:") {
		t.Errorf("from a peer not listed: the guest's X-Forwarded-For %q, RemoteAddr %q", got, e.Remote)
	}
}

// Without X-Forwarded-For, a trusted proxy's Forwarded (RFC 7239) names
// the client the same way: the rightmost for= that is not a listed
// proxy's address, quoted IPv6 in brackets and ports read; the guest gets
// the trusted elements as one line. An element that names no address
// (for=unknown, an obfuscated for=_hidden, none) where the client would
// be, or a line that is no valid list (a quote the client left open
// swallowing what the proxy appended), leaves the peer's address, and
// the guest no Forwarded. With X-Forwarded-For there, that is read and
// Forwarded passed on as sent.
func TestTrustedProxyForwarded(t *testing.T) {
	t.Parallel()
	in := servertest.Start(t, unlimited(`"10.0.0.0/8", "127.0.0.1"`), servertest.Options{CacheDir: cacheDir, Anonymous: true})
	for _, c := range []struct {
		fwd          []string
		remote, want string // want "": no Forwarded
	}{
		{[]string{`for=198.51.100.9, for="[2001:db8:cafe::17]:4711";proto=https, for=10.1.2.3`}, "[2001:db8:cafe::17]:4711",
			`for="[2001:db8:cafe::17]:4711";proto=https, for=10.1.2.3`},
		// A line of the proxy's own.
		{[]string{`for=198.51.100.9`, `For=203.0.113.7;proto=https`}, "203.0.113.7:0", `For=203.0.113.7;proto=https`},
		{[]string{`for=198.51.100.9;x="`, `, for=203.0.113.7`}, "203.0.113.7:0", `for=203.0.113.7`}, // the client's line not reached
		{[]string{`for="203.0.113.8:_p1";by=_gw`}, "203.0.113.8:0", `for="203.0.113.8:_p1";by=_gw`},
		{[]string{`for=2001:db8::2`}, "[2001:db8::2]:0", `for=2001:db8::2`},
		{[]string{`for="10.0.0.9"`, `for=10.0.0.8`}, "10.0.0.9:0", `for="10.0.0.9", for=10.0.0.8`},
		// Nothing a proxy vouches for: the peer.
		{[]string{`for=198.51.100.9, for=unknown`}, "127.0.0.1", ""},
		{[]string{`for=198.51.100.9, for=_hidden`}, "127.0.0.1", ""},
		{[]string{`for=198.51.100.9, for=unknown;proto=https, for=10.1.2.3`}, "127.0.0.1", ""},
		{[]string{`for=198.51.100.9, proto=https`}, "127.0.0.1", ""},
		{[]string{`for=198.51.100.9;x=", for=203.0.113.7`}, "127.0.0.1", ""},
		{[]string{`for=198.51.100.9, for=203.0.113.7;for=203.0.113.6`}, "127.0.0.1", ""},
	} {
		var h []string
		for _, v := range c.fwd {
			h = append(h, "Forwarded", v)
		}
		e := getEcho(t, in, h...)
		if remote := e.Remote; remote != c.remote && !(c.remote == "127.0.0.1" && strings.HasPrefix(remote, "127.0.0.1:")) {
			t.Errorf("Forwarded %q: RemoteAddr %q, want %q", c.fwd, remote, c.remote)
		}
		got := e.Headers["Forwarded"]
		if c.want == "" && got != nil || c.want != "" && (len(got) != 1 || got[0] != c.want) {
			t.Errorf("Forwarded %q: the guest's %q, want %q", c.fwd, got, c.want)
		}
	}
	// X-Forwarded-For first: Forwarded is then one more header the proxy
	// passed on.
	e := getEcho(t, in, "Forwarded", "for=198.51.100.12", "X-Forwarded-For", "203.0.113.15")
	if e.Remote != "203.0.113.15:0" || len(e.Headers["Forwarded"]) != 1 || e.Headers["Forwarded"][0] != "for=198.51.100.12" {
		t.Errorf("with X-Forwarded-For: RemoteAddr %q, the guest's Forwarded %q", e.Remote, e.Headers["Forwarded"])
	}
	if ips := logIPs(t, in, "request"); len(ips) == 0 || ips[0] != "2001:db8:cafe::17" {
		t.Errorf("access lines' ip %q", ips)
	}
}
