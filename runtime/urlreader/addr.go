package urlreader

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
)

// refusedRange is a block of addresses the reader does not connect to
// unless the operator allowed the exact host with internal = true.
type refusedRange struct {
	prefix netip.Prefix
	what   string
}

// refusedRanges are checked in order; the first match names the reason.
var refusedRanges = []refusedRange{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified (\"this network\")"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private (RFC 1918)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (CGNAT, RFC 6598)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (where cloud metadata services live)"},
	// Public by its prefix, but on Azure a virtual machine's own platform
	// endpoint (the wireserver, with the VM's extension and certificate
	// settings, its DNS and health probes), reachable from every VM and
	// answered by its host, as 169.254.169.254 is elsewhere.
	{netip.MustParsePrefix("168.63.129.16/32"), "Azure's platform endpoint (wireserver)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private (RFC 1918)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private (RFC 1918)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved or broadcast"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible (deprecated)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("fc00::/7"), "unique local (private)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local (deprecated)"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
	// translated is SIIT's IPv4-translated form, ::ffff:0:a.b.c.d (RFC
	// 2765), which a stateless translator turns into a.b.c.d.
	translated = netip.MustParsePrefix("::ffff:0:0:0/96")
	// teredo is RFC 4380's 2001:0::/32: a Teredo address carries its
	// server's IPv4 address in bits 32-63 and its client's (NAT-mapped)
	// IPv4 address, inverted, in the last 32 bits; a host with a Teredo
	// interface sends a packet for it over UDP to that client address.
	teredo = netip.MustParsePrefix("2001::/32")
)

// internalReason returns why a is an internal address the reader refuses,
// or "" when it is a public one. IPv6 forms that carry an IPv4 address
// (IPv4-mapped, IPv4-translated, NAT64, 6to4, Teredo, ISATAP) are judged
// by that address (Teredo by both of its addresses).
func internalReason(a netip.Addr) string {
	if a.Zone() != "" {
		return "a scoped (zoned) IPv6 address"
	}
	if a.Is4In6() {
		if r := internalReason(a.Unmap()); r != "" {
			return r + ", IPv4-mapped"
		}
		return ""
	}
	if a.Is6() {
		switch {
		case nat64.Contains(a):
			if r := internalReason(embeddedIPv4(a)); r != "" {
				return r + ", through NAT64"
			}
		case translated.Contains(a):
			if r := internalReason(embeddedIPv4(a)); r != "" {
				return r + ", IPv4-translated"
			}
		case sixToFour.Contains(a):
			b := a.As16()
			if r := internalReason(netip.AddrFrom4([4]byte(b[2:6]))); r != "" {
				return r + ", through 6to4"
			}
		case teredo.Contains(a):
			b := a.As16()
			client := netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]})
			if r := internalReason(client); r != "" {
				return r + ", through Teredo (its client)"
			}
			if r := internalReason(netip.AddrFrom4([4]byte(b[4:8]))); r != "" {
				return r + ", through Teredo (its server)"
			}
		}
		// ISATAP (RFC 5214): an interface identifier 0000:5efe or
		// 0200:5efe followed by an IPv4 address, under any prefix; a host
		// with an ISATAP tunnel sends a packet for it to that IPv4
		// address. No other address has such an identifier by chance
		// but once in 2^31.
		if b := a.As16(); (b[8]|0x02) == 0x02 && b[9] == 0 && b[10] == 0x5e && b[11] == 0xfe {
			if r := internalReason(netip.AddrFrom4([4]byte(b[12:16]))); r != "" {
				return r + ", through ISATAP"
			}
		}
	}
	for _, r := range refusedRanges {
		if r.prefix.Contains(a) {
			return fmt.Sprintf("%s (%s)", r.what, r.prefix)
		}
	}
	return ""
}

type internalOKKey struct{}

// dial connects to address ("host:port" of a canonical URL host). It
// resolves the name itself and checks every address before connecting;
// the net.Dialer's Control function checks the address of each socket
// again just before it connects, so that nothing — a resolver that
// answers differently the second time, a future change to this code —
// reaches an internal address the rules refuse.
func (r *Reader) dial(ctx context.Context, network, address string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, errorf(Invalid, "bad address %q: %v", address, err)
	}
	port64, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, errorf(Invalid, "bad port in %q", address)
	}
	port := uint16(port64)
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		addrs, err = r.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, errorf(Failed, "resolve %s: %v", host, err)
		}
		if len(addrs) == 0 {
			return nil, errorf(Failed, "resolve %s: no addresses", host)
		}
		// Go's resolver gives IPv4 answers (DNS A records, /etc/hosts) in
		// their IPv4-mapped IPv6 form; name them as the IPv4 addresses they
		// are (the checks judge both forms alike).
		for i, a := range addrs {
			addrs[i] = a.Unmap()
		}
	}
	internalOK := r.internal[host]
	// Every address must pass, not only the first: a name that resolves to
	// a public and an internal address is refused.
	for _, a := range addrs {
		if err := r.checkAddr(host, a, port, internalOK); err != nil {
			return nil, err
		}
	}
	if internalOK {
		ctx = context.WithValue(ctx, internalOKKey{}, true)
	}
	var firstErr error
	for _, a := range addrs {
		c, err := r.dialer.DialContext(ctx, network, netip.AddrPortFrom(a, port).String())
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// checkAddr refuses an internal address, unless the host was allowed with
// internal = true or a test made that exact address and port reachable.
func (r *Reader) checkAddr(host string, a netip.Addr, port uint16, internalOK bool) error {
	why := internalReason(a)
	if why == "" || internalOK || r.reachable[netip.AddrPortFrom(a, port)] {
		return nil
	}
	if host == a.String() {
		return errorf(Denied, "address %s is %s; refused by the URL reader's address rules (internal addresses need an allow rule naming that exact host with internal = true)", a, why)
	}
	return errorf(Denied, "host %s resolves to %s, which is %s; refused by the URL reader's address rules (internal addresses need an allow rule naming that exact host with internal = true)", host, a, why)
}

// control is the net.Dialer's ControlContext: the last check, on the
// address the socket is about to connect to.
func (r *Reader) control(ctx context.Context, network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return errorf(Denied, "refusing to connect to unparseable address %q", address)
	}
	internalOK, _ := ctx.Value(internalOKKey{}).(bool)
	return r.checkAddr(ap.Addr().String(), ap.Addr(), ap.Port(), internalOK)
}
