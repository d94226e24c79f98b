package server

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/valyala/fasthttp"

	"github.com/greenroom-dev/greenroom/runtime/config"
)

// Behind a reverse proxy every connection comes from the proxy: the
// client's address is in the X-Forwarded-For the proxy appends to. Only a
// proxy listed in server.trusted_proxies is believed. Fiber's own
// TrustedProxies and ProxyHeader are not used: its c.IP() takes the
// header's leftmost address (or the whole value), which the client writes
// ("X-Forwarded-For: 1.2.3.4" sent through a proxy that appends), it does
// not skip the trusted proxies of a chain, and its config is fixed when
// the app is built, where trusted_proxies is applied by a reload.

// proxySet is server.trusted_proxies, parsed; nil when it is empty.
type proxySet struct {
	nets []netip.Prefix
}

// newProxySet parses cfg's trusted_proxies (which validation accepted);
// nil when there are none.
func newProxySet(cfg *config.Config) *proxySet {
	var p proxySet
	for _, s := range cfg.Server.TrustedProxies {
		if n, err := config.ParseTrustedProxy(s); err == nil {
			p.nets = append(p.nets, n)
		}
	}
	if len(p.nets) == 0 {
		return nil
	}
	return &p
}

func (p *proxySet) trusts(a netip.Addr) bool {
	for _, n := range p.nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddr is the address of the connection's other end, IPv4 unmapped;
// not valid when the connection is not TCP.
func peerAddr(fc *fasthttp.RequestCtx) netip.AddrPort {
	if a, ok := fc.RemoteAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
	}
	return netip.AddrPort{}
}

// client returns, when the connection comes from a trusted proxy
// (trusted; never when p is nil), the client's address: the rightmost
// address of X-Forwarded-For (every such header, in order, read as one
// list) that is not a trusted proxy's, or its leftmost when all are; the
// peer's when the header is missing or an address it names before that
// one does not parse. A named address's port is kept (an entry
// "203.0.113.7:5100"), else it is 0.
func (p *proxySet) client(fc *fasthttp.RequestCtx) (client netip.AddrPort, trusted bool) {
	if p == nil {
		return netip.AddrPort{}, false
	}
	peer := peerAddr(fc)
	if !peer.IsValid() || !p.trusts(peer.Addr()) {
		return peer, false
	}
	all := fc.Request.Header.PeekAll(fasthttp.HeaderXForwardedFor)
	var last netip.AddrPort
	for i := len(all) - 1; i >= 0; i-- {
		list := all[i]
		for len(list) > 0 {
			var entry []byte
			if j := bytes.LastIndexByte(list, ','); j >= 0 {
				entry, list = list[j+1:], list[:j]
			} else {
				entry, list = list, nil
			}
			entry = bytes.Trim(entry, " \t")
			if len(entry) == 0 {
				continue // an empty element of the list (RFC 9110, 5.6.1)
			}
			a, ok := forwardedAddr(entry)
			if !ok {
				return peer, true
			}
			if !p.trusts(a.Addr()) {
				return a, true
			}
			last = a
		}
	}
	if last.IsValid() {
		return last, true
	}
	return peer, true
}

// forwardedAddr reads an entry of X-Forwarded-For: an IP address, or
// one with a port ("192.0.2.1:5100", "[2001:db8::1]:5100"). A zone is
// dropped (it is any text the client chose), IPv4 unmapped.
func forwardedAddr(b []byte) (netip.AddrPort, bool) {
	s := string(b)
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a.Unmap().WithZone(""), 0), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()), true
	}
	return netip.AddrPort{}, false
}

// forwardingHeader reports whether k names a header through which a
// proxy tells the request's origin: the client's address (X-Forwarded-For,
// X-Real-Ip, Forwarded, Client-Ip, X-Originating-Ip, X-Remote-Ip and
// -Addr, the CDNs' and platforms' own: True-Client-Ip, Cf-Connecting-Ip,
// Fastly-Client-Ip, Fly-Client-Ip, X-Appengine-Remote-Addr, which Go
// frameworks read as the client's, gin's TrustedPlatform among them),
// the host, scheme, port or path prefix the client used
// (X-Forwarded-Host, -Proto, -Port, -Prefix, and the rest of the
// X-Forwarded- family, X-Forwarded, X-Host, X-Original-Host): those the
// URL reader refuses a plugin to send for the same reason (urlreader's
// refused headers), and more. dashed says it is spelled as a proxy
// sends it, with '-' and not '_' (X_Forwarded_For, which CGI-style code
// reads as X-Forwarded-For, is the client's own, whoever passes it on).
// Names are matched in any letter case. Identity headers of the
// X-Forwarded- family (X-Forwarded-User) are dropped before, always.
func forwardingHeader(k []byte) (is, dashed bool) {
	const family = "x-forwarded-"
	if len(k) > len(family) && headerFold(k[:len(family)], family) {
		is = true
	} else {
		switch len(k) {
		case 6:
			is = headerFold(k, "x-host")
		case 9:
			is = headerFold(k, "forwarded") || headerFold(k, "x-real-ip") || headerFold(k, "client-ip")
		case 11:
			is = headerFold(k, "x-client-ip") || headerFold(k, "x-remote-ip") || headerFold(k, "x-forwarded")
		case 13:
			is = headerFold(k, "x-remote-addr") || headerFold(k, "fly-client-ip")
		case 14:
			is = headerFold(k, "true-client-ip")
		case 15:
			is = headerFold(k, "x-original-host")
		case 16:
			is = headerFold(k, "cf-connecting-ip") || headerFold(k, "fastly-client-ip") || headerFold(k, "x-originating-ip")
		case 19:
			is = headerFold(k, "x-cluster-client-ip")
		case 23:
			is = headerFold(k, "x-appengine-remote-addr")
		case 24:
			is = headerFold(k, "x-original-forwarded-for")
		}
	}
	return is, is && bytes.IndexByte(k, '_') < 0
}
