package server

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/valyala/fasthttp"

	"github.com/greenroom-dev/greenroom/runtime/config"
)

// Behind a reverse proxy every connection comes from the proxy: the
// client's address is in the X-Forwarded-For the proxy appends to (or in
// Forwarded, RFC 7239). Only a proxy listed in server.trusted_proxies is
// believed, and the guest gets of the header only what it vouches for.
// Fiber's own TrustedProxies and ProxyHeader are not used: its c.IP()
// takes the header's leftmost address (or the whole value), which the
// client writes ("X-Forwarded-For: 1.2.3.4" sent through a proxy that
// appends), it does not skip the trusted proxies of a chain, and its
// config is fixed when the app is built, where trusted_proxies is
// applied by a reload.

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

// origin is where a trusted proxy says a request came from.
type origin struct {
	// client is the client's address (see proxySet.client).
	client netip.AddrPort
	// header is the forwarding header read for the client, canonical:
	// "X-Forwarded-For", or "Forwarded" when the request has no
	// X-Forwarded-For; "" when it has neither.
	header string
	// chain is header's trusted part, the one line of it the guest gets
	// in place of every line the proxy sent (none when header did not
	// name the client, who is then the peer): the client's entry and
	// those right of it, which the listed proxies wrote. What is left of
	// the client's entry was written by the client (or a proxy not
	// listed), and a guest taking the leftmost entry as the client's, as
	// most code behind a proxy does, would take it.
	chain []byte
}

// client returns where the request came from: the peer (o.client,
// nothing else set) unless the connection comes from a trusted proxy
// (trusted; never when p is nil), and then the
// rightmost address of X-Forwarded-For (every such header, in order, read
// as one list) that is not a trusted proxy's, or its leftmost when all
// are; without X-Forwarded-For the same of Forwarded's for= parameters
// (RFC 7239); the peer's when neither header is there, or an entry before
// that one does not name an address (it does not parse, it is "unknown"
// or an obfuscated identifier, or a Forwarded element has no for=). A
// named address's port is kept (an entry "203.0.113.7:5100"), else it is
// 0.
func (p *proxySet) client(fc *fasthttp.RequestCtx) (o origin, trusted bool) {
	peer := peerAddr(fc)
	if p == nil || !peer.IsValid() || !p.trusts(peer.Addr()) {
		return origin{client: peer}, false
	}
	if all := fc.Request.Header.PeekAll(fasthttp.HeaderXForwardedFor); len(all) > 0 {
		o = p.fromXFF(all, peer)
		o.header = fasthttp.HeaderXForwardedFor
	} else if all := fc.Request.Header.PeekAll(fasthttp.HeaderForwarded); len(all) > 0 {
		o = p.fromForwarded(all, peer)
		o.header = fasthttp.HeaderForwarded
	} else {
		o.client = peer
	}
	return o, true
}

// fromXFF is client's reading of X-Forwarded-For, its lines all.
func (p *proxySet) fromXFF(all [][]byte, peer netip.AddrPort) origin {
	var hops []netip.AddrPort // trusted entries, right to left
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
				return origin{client: peer}
			}
			if !p.trusts(a.Addr()) {
				return origin{client: a, chain: xffLine(a, hops)}
			}
			hops = append(hops, a)
		}
	}
	if n := len(hops); n > 0 {
		return origin{client: hops[n-1], chain: xffLine(hops[n-1], hops[:n-1])}
	}
	return origin{client: peer}
}

// xffLine writes the client's address then hops (given right to left),
// each as read (IPv4 unmapped, no zone, a port when one was given), as
// one X-Forwarded-For list.
func xffLine(client netip.AddrPort, hops []netip.AddrPort) []byte {
	b := appendEntry(make([]byte, 0, 24*(len(hops)+1)), client)
	for i := len(hops) - 1; i >= 0; i-- {
		b = appendEntry(append(b, ", "...), hops[i])
	}
	return b
}

func appendEntry(b []byte, a netip.AddrPort) []byte {
	if a.Port() == 0 {
		return a.Addr().AppendTo(b)
	}
	return a.AppendTo(b)
}

// fromForwarded is client's reading of Forwarded, its lines all. A line
// that is not a valid Forwarded list, when the walk reaches it, leaves
// the peer's address: its elements cannot be told apart.
func (p *proxySet) fromForwarded(all [][]byte, peer netip.AddrPort) origin {
	var hops [][]byte // trusted elements as sent, right to left
	var last netip.AddrPort
	for i := len(all) - 1; i >= 0; i-- {
		elems, ok := parseForwarded(all[i])
		if !ok {
			return origin{client: peer}
		}
		for j := len(elems) - 1; j >= 0; j-- {
			a, ok := elems[j].addr()
			if !ok {
				return origin{client: peer}
			}
			if !p.trusts(a.Addr()) {
				return origin{client: a, chain: forwardedLine(elems[j].raw, hops)}
			}
			hops = append(hops, elems[j].raw)
			last = a
		}
	}
	if n := len(hops); n > 0 {
		return origin{client: last, chain: forwardedLine(hops[n-1], hops[:n-1])}
	}
	return origin{client: peer}
}

// forwardedLine joins the client's element then hops (given right to
// left) into one Forwarded list.
func forwardedLine(client []byte, hops [][]byte) []byte {
	n := len(client)
	for _, h := range hops {
		n += 2 + len(h)
	}
	b := append(make([]byte, 0, n), client...)
	for i := len(hops) - 1; i >= 0; i-- {
		b = append(append(b, ", "...), hops[i]...)
	}
	return b
}

// forwardedElement is an element of a Forwarded list: raw is it as sent
// (without the whitespace around it), node its for= value (unquoted),
// hasFor whether it has one.
type forwardedElement struct {
	raw    []byte
	node   []byte
	hasFor bool
}

// addr is the address e's for= names (RFC 7239, 6): an IPv4 address,
// or an IPv6 one in brackets, with or without a port, as
// forwardedAddr reads them (an IPv6 address without brackets too, as
// proxies configured with "for=$remote_addr" write it); an obfuscated
// port ("192.0.2.43:_p1") is taken as none. "unknown", an obfuscated
// identifier ("_hidden") and an element without for= name none.
func (e forwardedElement) addr() (netip.AddrPort, bool) {
	node := e.node
	if !e.hasFor || len(node) == 0 || node[0] == '_' {
		return netip.AddrPort{}, false
	}
	if j := bytes.LastIndexByte(node, ':'); j >= 0 && j+1 < len(node) && node[j+1] == '_' {
		node = node[:j] // an obfuscated port
	}
	if len(node) > 2 && node[0] == '[' && node[len(node)-1] == ']' {
		node = node[1 : len(node)-1]
	}
	return forwardedAddr(node)
}

// parseForwarded splits one line of Forwarded into its elements (RFC
// 7239, 4: a list of elements, each pairs token=value separated by
// ';', a value a token or a quoted string), whitespace allowed around
// ',' and ';'. ok is false when the line is not such a list, or an
// element has for= twice: then no element of it can be told from the
// client's text (a quote the client opened swallows what a proxy
// appended). Empty elements and pairs are skipped. An unquoted value may
// hold ':', '[' and ']' besides token characters, as proxies write an
// address with a port or an IPv6 address unquoted.
func parseForwarded(line []byte) (elems []forwardedElement, ok bool) {
	i, n := 0, len(line)
	skipOWS := func() {
		for i < n && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
	}
	for {
		skipOWS()
		start := i
		var e forwardedElement
		for {
			skipOWS()
			if i < n && line[i] != ',' && line[i] != ';' {
				// A pair: token "=" value.
				k := i
				for i < n && isTokenChar(line[i]) {
					i++
				}
				if i == k || i >= n || line[i] != '=' {
					return nil, false
				}
				name := line[k:i]
				i++
				var value []byte
				if i < n && line[i] == '"' {
					i++
					for {
						if i >= n {
							return nil, false // unterminated
						}
						ch := line[i]
						if ch == '"' {
							i++
							break
						}
						if ch == '\\' {
							i++
							if i >= n {
								return nil, false
							}
							ch = line[i]
						}
						if ch < 0x20 && ch != '\t' || ch == 0x7f {
							return nil, false
						}
						value = append(value, ch)
						i++
					}
				} else {
					v := i
					for i < n && (isTokenChar(line[i]) || line[i] == ':' || line[i] == '[' || line[i] == ']') {
						i++
					}
					if i == v {
						return nil, false
					}
					value = line[v:i]
				}
				if len(name) == 3 && headerFold(name, "for") {
					if e.hasFor {
						return nil, false
					}
					e.hasFor, e.node = true, value
				}
				skipOWS()
			}
			if i >= n || line[i] == ',' {
				break
			}
			if line[i] != ';' {
				return nil, false
			}
			i++
		}
		if raw := bytes.TrimRight(line[start:i], " \t"); len(raw) > 0 {
			e.raw = raw
			elems = append(elems, e)
		}
		if i >= n {
			return elems, true
		}
		i++ // the ','
	}
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

// fromProxyRead reports whether k names header, the forwarding header
// read for the client (origin.header), in any letter case: the guest
// gets it only as its trusted chain.
func fromProxyRead(k []byte, header string) bool {
	switch header {
	case fasthttp.HeaderXForwardedFor:
		return len(k) == 15 && headerFold(k, "x-forwarded-for")
	case fasthttp.HeaderForwarded:
		return len(k) == 9 && headerFold(k, "forwarded")
	}
	return false
}
