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
// client wrote left of it is not believed; the forwarding headers reach
// the guest as the proxy sent them (not their underscore spellings, which
// no proxy sets, nor the identity headers of the X-Forwarded- family). A header that does not parse leaves the peer's address.
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
	want := map[string]string{"X-Forwarded-For": "198.51.100.9, 203.0.113.7,10.1.2.3", "X-Forwarded-Host": "app.example",
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
