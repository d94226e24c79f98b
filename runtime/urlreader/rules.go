package urlreader

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/greenroom-dev/greenroom/runtime/config"
)

// hostPattern matches a host exactly, or, written "*.example.com", any
// subdomain of example.com (at any depth, not example.com itself).
type hostPattern struct {
	exact  string // lowercase, no trailing dot
	suffix string // ".example.com" for "*.example.com"
}

func parsePattern(s string) hostPattern {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		return hostPattern{suffix: "." + rest}
	}
	return hostPattern{exact: s}
}

func (p hostPattern) match(host string) bool {
	if p.suffix != "" {
		return len(host) > len(p.suffix) && strings.HasSuffix(host, p.suffix)
	}
	return host == p.exact
}

func (p hostPattern) String() string {
	if p.suffix != "" {
		return "*" + p.suffix
	}
	return p.exact
}

// pathUnder reports whether path is prefix or below it. A prefix ending in
// "/" matches what starts with it; any other prefix matches itself and what
// is below it as a path segment ("/docs" matches "/docs" and "/docs/a",
// not "/docsx"). An empty prefix matches every path.
func pathUnder(path, prefix string) bool {
	if prefix == "" || path == prefix {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}

// segmentCut reports whether prefix, which does not end in "/", starts
// path without covering it: "/feed" and "/feed.json", where pathUnder
// says no because the prefix ends inside one of path's segments.
func segmentCut(path, prefix string) bool {
	return prefix != "" && !strings.HasSuffix(prefix, "/") && len(path) > len(prefix) &&
		strings.HasPrefix(path, prefix) && path[len(prefix)] != '/'
}

// allowRule is one parsed [reading] allow entry.
type allowRule struct {
	name     string // "reading.allow[0]"
	host     hostPattern
	paths    []string
	http     bool
	internal bool
}

// wholeHost reports whether r covers every path of its hosts: it lists
// no paths, or "/" among them.
func (r *allowRule) wholeHost() bool {
	return len(r.paths) == 0 || slices.Contains(r.paths, "/")
}

func (r *allowRule) matchPath(path string) bool {
	if len(r.paths) == 0 {
		return true
	}
	for _, p := range r.paths {
		if pathUnder(path, p) {
			return true
		}
	}
	return false
}

func parseAllow(rules []config.AllowRule) []allowRule {
	out := make([]allowRule, 0, len(rules))
	for i, a := range rules {
		out = append(out, allowRule{
			name:     fmt.Sprintf("reading.allow[%d]", i),
			host:     parsePattern(a.Host),
			paths:    a.Paths,
			http:     a.Scheme == "http",
			internal: a.Internal && !strings.HasPrefix(a.Host, "*."),
		})
	}
	return out
}

// grant is one entry of a plugin's capabilities.urlreader.
type grant struct {
	src  string
	host hostPattern
	path string
}

func parseGrants(grants []string) []grant {
	out := make([]grant, 0, len(grants))
	for _, g := range grants {
		host, path, found := strings.Cut(g, "/")
		if found {
			path = "/" + path
		}
		out = append(out, grant{src: g, host: parsePattern(host), path: path})
	}
	return out
}

// wholeHost reports whether g covers every path of its hosts ("host" or
// "host/").
func (g grant) wholeHost() bool { return g.path == "" || g.path == "/" }

// target is a URL that passed parsing and canonicalisation.
type target struct {
	u    *url.URL
	host string // canonical: lowercase name without a trailing dot, or a canonical IPv4 address
	path string // decoded path, "/" when empty
	// encSlash is set when the path holds an encoded slash (%2F, or
	// %252F encoded twice): read only where the allow rule and the grant
	// cover the whole host (check), as a path prefix is compared with
	// the decoded path, where it is a slash, and a server may read it as
	// part of a name (GitLab's group%2Fproject is one segment).
	encSlash bool
	// wholeOnly, when set, says why the path is read only where the
	// allow rule and the grant cover the whole host: a segment that a
	// server which decodes it again, or reads it loosely, may take for
	// a dot segment (or a backslash) that would climb out of a path
	// prefix (looseReading).
	wholeOnly string
}

// parseTarget parses raw and puts its host in canonical form. It refuses
// what could be read two ways: credentials in the URL, non-canonical
// spellings of IPv4 addresses (decimal, octal, hexadecimal, short forms),
// IPv6 addresses that embed an IPv4 address, IPv6 zones, non-ASCII hosts,
// backslashes and dot segments in the path (with ";parameters" too:
// "..;" is ".." to Tomcat-style servers). An encoded slash is noted in
// the target (encSlash), for check to refuse under a path prefix, and so
// is a segment that servers which decode it again or read it loosely may
// take for a dot segment (wholeOnly, looseReading).
func parseTarget(raw string) (*target, error) {
	if len(raw) > maxURL {
		return nil, errorf(Invalid, "URL is %d bytes, over the limit of %d", len(raw), maxURL)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errorf(Invalid, "%v", err)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "https" && u.Scheme != "http" {
		if u.Scheme == "" {
			return nil, errorf(Invalid, "%q is not an absolute URL (want https://host/path)", raw)
		}
		return nil, errorf(Invalid, "%s: scheme %q is not supported (https, or http where an allow rule says so)", raw, u.Scheme)
	}
	if u.Opaque != "" {
		return nil, errorf(Invalid, "%s: opaque URLs are not supported", raw)
	}
	if u.User != nil {
		return nil, errorf(Denied, "%s://%s: credentials in the URL are refused; the host adds credentials from [[integrations]]", u.Scheme, u.Host)
	}
	host, err := canonicalHost(u)
	if err != nil {
		return nil, err
	}
	hostPart := host
	if strings.Contains(host, ":") {
		hostPart = "[" + host + "]"
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, errorf(Invalid, "%s: bad port %q", raw, port)
		}
		u.Host = hostPart + ":" + port
	} else {
		u.Host = hostPart
	}
	u.Fragment, u.RawFragment = "", ""
	path := u.Path
	if path == "" {
		path = "/"
	}
	// The decoded path is checked too: a server (or a proxy in front of
	// one) that decodes twice reads %252F as "/" and %255C as "\\".
	esc, lp := strings.ToLower(u.EscapedPath()), strings.ToLower(path)
	if strings.Contains(esc, "%5c") || strings.Contains(path, "\\") || strings.Contains(lp, "%5c") {
		return nil, errorf(Invalid, "%s: backslashes in the path, encoded or not (\\, %%5C, or %%255C encoded twice), are refused", raw)
	}
	encSlash := strings.Contains(esc, "%2f") || strings.Contains(lp, "%2f")
	// Go sends a path that is not a valid escaping of itself (a space,
	// "{", "|" or a non-ASCII byte left unescaped) escaped anew from its
	// decoded form, %2F as "/": another path than the one written
	// (GitLab's group/project is not group%2Fproject).
	if strings.Contains(strings.ToLower(u.RawPath), "%2f") && !strings.Contains(esc, "%2f") {
		return nil, errorf(Invalid, "%s: the path holds an encoded slash (%%2F) beside characters left unescaped (a space, {, |, non-ASCII), which would be sent with %%2F decoded to /; escape them too (url.PathEscape)", raw)
	}
	// What the checks below leave, servers that decode more often or
	// read more loosely may still read as a dot segment: such a path is
	// read only for a whole host (check, wholeOnly), where no prefix is
	// to be kept.
	wholeOnly := ""
	for _, seg := range strings.Split(path, "/") {
		// Tomcat, Spring and Jetty strip a segment's ";parameters" before
		// they resolve dot segments: to them "..;" (or "..;x") is "..",
		// which would climb out of a rule's path prefix. The path is
		// decoded, so %2e, %2f and %3b spellings are caught too, and each
		// segment is decoded once more, so that a server that decodes
		// twice finds no dot segment either (%252e%252e, and ..%252F,
		// whose pieces are segments there).
		twice, err := url.PathUnescape(seg)
		if err != nil {
			twice = seg
		}
		for _, s := range append([]string{seg}, strings.Split(twice, "/")...) {
			if name, _, _ := strings.Cut(s, ";"); name == "." || name == ".." {
				return nil, errorf(Invalid, "%s: dot segments (. and .., also with ;parameters as in ..;, or encoded twice as in %%252e%%252e) in the path are refused", raw)
			}
			// As lax servers read it: a dot segment or a slash there is
			// one to them.
			if l := lax(s); l != s && laxRefused(s, l) {
				return nil, errorf(Invalid, "%s: a segment that some servers read as a dot segment or a slash (with a NUL byte, as Jetty reads ..%%00, in overlong UTF-8, as Tomcat reads %%c0%%ae%%c0%%ae, or in Unicode's compatibility forms, as servers that normalise paths read fullwidth %%ef%%bc%%8e%%ef%%bc%%8e, also percent-encoded there, as fullwidth %%ef%%bc%%85%%ef%%bc%%92%%ef%%bd%%85 is %%2e) is refused", raw)
			}
		}
		slash, why := looseReading(seg)
		encSlash = encSlash || slash
		if wholeOnly == "" {
			wholeOnly = why
		}
	}
	return &target{u: u, host: host, path: path, encSlash: encSlash, wholeOnly: wholeOnly}, nil
}

// lax returns a decoded path segment as servers lax about its bytes read
// it: without its NUL bytes (Jetty read "..%00" as "..", CVE-2021-34429)
// and with the overlong UTF-8 spellings of ASCII characters decoded
// ("%c0%ae" is "." to Tomcat, CVE-2008-2938; "%c0%af" and "%c1%9c" are
// "/" and "\\" to IIS), then, when it is not ASCII, in Unicode's NFKC
// form, as servers that normalise a path read it: a fullwidth full stop
// (U+FF0E), a one- or two-dot leader (U+2024, U+2025) and a small full
// stop (U+FE52) are '.' there, a fullwidth solidus and reverse solidus
// (U+FF0F, U+FF3C) '/' and '\\'. Other bytes stay as they are.
func lax(seg string) string {
	seg = laxBytes(seg)
	for i := 0; i < len(seg); i++ {
		if seg[i] >= utf8.RuneSelf {
			return norm.NFKC.String(seg)
		}
	}
	return seg
}

// laxRefused tells whether l, lax's reading of the segment s, is a dot
// segment or holds a slash or a backslash: as it is, or percent-decoded,
// as a server that normalises a path and then decodes it reads it
// (fullwidth percent signs and digits, U+FF05 U+FF12 U+FF45, are "%2e"
// in NFKC, and ".." once decoded). A slash found only that way is
// refused, not read as an encoded slash: a server that decodes before it
// normalises reads a fullwidth "%2F" as a name, one that normalises
// first as "/". A %2F spelled in ASCII (%252F) is one for both, and
// stays the encoded slash it was without the normalisation.
func laxRefused(s, l string) bool {
	dot := func(x string) bool {
		name, _, _ := strings.Cut(x, ";")
		return name == "." || name == ".." || strings.ContainsAny(x, "\\")
	}
	if dot(l) || strings.Contains(l, "/") {
		return true
	}
	d := unescapeLax(l)
	if d == l {
		return false
	}
	if strings.Count(d, "/") > strings.Count(unescapeLax(s), "/") {
		return true
	}
	for _, p := range strings.Split(d, "/") {
		if dot(p) {
			return true
		}
		if lp := lax(p); lp != p && (dot(lp) || strings.Contains(lp, "/")) {
			return true
		}
	}
	return false
}

// unescapeLax decodes s's %XX escapes, leaving a % that starts none as
// it is, as lax servers do.
func unescapeLax(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHexDigit(s[i+1]) && isHexDigit(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

// laxBytes is lax's part for NUL bytes and overlong UTF-8: NUL bytes,
// spelled in one byte or overlong, are dropped.
func laxBytes(seg string) string {
	if !strings.ContainsAny(seg, "\x00\xc0\xc1\xe0\xf0\xf8\xfc") {
		return seg
	}
	b := make([]byte, 0, len(seg))
	for i := 0; i < len(seg); i++ {
		c, n := seg[i], 1
		if o, m := overlongASCII(seg[i:]); m > 0 {
			c, n = o, m
		}
		if c != 0 {
			b = append(b, c)
		}
		i += n - 1
	}
	return string(b)
}

// overlongASCII returns the ASCII character that s begins with in two to
// six bytes of overlong UTF-8, and how many bytes, or 0 bytes when it
// begins with none: C0 or C1 and one more byte, E0 80-81 and one more,
// F0 80 80-81 and one more, and the obsolete five- and six-byte forms,
// F8 80 80 80-81 and one more, FC 80 80 80 80-81 and one more, which
// decoders older than RFC 3629 still read.
func overlongASCII(s string) (byte, int) {
	if r, n := overlongRune(s); n > 0 && r < utf8.RuneSelf {
		return byte(r), n
	}
	return 0, 0
}

// canonicalHost returns u's host in the form rules and the dialer use.
func canonicalHost(u *url.URL) (string, error) {
	h := u.Hostname()
	if h == "" {
		return "", errorf(Invalid, "%s: URL has no host", u.Redacted())
	}
	if strings.HasPrefix(u.Host, "[") {
		a, err := netip.ParseAddr(h)
		if err != nil {
			return "", errorf(Invalid, "bad IPv6 address %q", h)
		}
		if a.Zone() != "" {
			return "", errorf(Invalid, "IPv6 zones are refused (%s)", h)
		}
		if a.Is4In6() || isIPv4Compatible(a) {
			return "", errorf(Denied, "host [%s] is an IPv6 spelling of the IPv4 address %s; refused (write the address itself, and only where an allow rule permits it)", h, embeddedIPv4(a))
		}
		return a.String(), nil
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", errorf(Invalid, "%s: URL has no host", u.Redacted())
	}
	// Checked before it is lower-cased: strings.ToLower makes ASCII of
	// some letters that are not (the Kelvin sign U+212A is "k", the
	// capital I with a dot U+0130 "i"), and raw.g\u0130thubusercontent.com,
	// another host to IDNA, was read as raw.githubusercontent.com.
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", errorf(Invalid, "host %q is not an ASCII host name (write an internationalised name in its xn-- form)", strings.ToLower(h))
		}
	}
	h = strings.ToLower(h)
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" {
			return "", errorf(Invalid, "host %q has an empty label", h)
		}
	}
	// A host whose last label is a number is an IPv4 address (WHATWG URL),
	// which only its canonical dotted-decimal form may name: 2130706433,
	// 0177.0.0.1, 0x7f.1 and 127.1 all mean 127.0.0.1 to some resolvers.
	if last := labels[len(labels)-1]; isNumericLabel(last) {
		if a, err := netip.ParseAddr(h); err == nil && a.Is4() && a.String() == h {
			return h, nil
		}
		if a, ok := parseLegacyIPv4(h); ok {
			return "", errorf(Denied, "host %q is a non-canonical spelling of the IPv4 address %s; refused (write the address itself, and only where an allow rule permits it)", h, a)
		}
		return "", errorf(Invalid, "host %q ends in a number but is not an IPv4 address", h)
	}
	return h, nil
}

func isNumericLabel(l string) bool {
	if l == "" {
		return false
	}
	if strings.HasPrefix(l, "0x") {
		for i := 2; i < len(l); i++ {
			if !isHex(l[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

// parseLegacyIPv4 parses the forms inet_aton accepts: one to four parts,
// each decimal, octal (leading 0) or hexadecimal (0x), the last part
// filling the remaining bytes.
func parseLegacyIPv4(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		base := 10
		switch {
		case strings.HasPrefix(p, "0x"):
			base, p = 16, p[2:]
			if p == "" {
				p = "0"
			}
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		v, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 255 {
			return netip.Addr{}, false
		}
		n |= v << (24 - 8*i)
	}
	last := vals[len(vals)-1]
	if last >= 1<<(8*(5-len(vals))) {
		return netip.Addr{}, false
	}
	n |= last
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// embeddedIPv4 returns the IPv4 address in the last four bytes of a.
func embeddedIPv4(a netip.Addr) netip.Addr {
	b := a.As16()
	return netip.AddrFrom4([4]byte(b[12:16]))
}

// isIPv4Compatible reports the deprecated ::a.b.c.d form (other than :: and
// ::1 themselves).
func isIPv4Compatible(a netip.Addr) bool {
	if !a.Is6() || a.Is4In6() {
		return false
	}
	b := a.As16()
	for _, x := range b[:12] {
		if x != 0 {
			return false
		}
	}
	return !(b[12] == 0 && b[13] == 0 && b[14] == 0 && b[15] <= 1)
}

// GrantCovered reports whether the urlreader grant g gives nothing that
// the grants in next do not also give (the same grant spelled otherwise,
// or one that a wider grant covers).
func GrantCovered(g string, next []string) bool {
	old := parseGrants([]string{g})[0]
	for _, n := range parseGrants(next) {
		hostOK := n.host == old.host ||
			n.host.suffix != "" && (old.host.exact != "" && n.host.match(old.host.exact) ||
				old.host.suffix != "" && strings.HasSuffix(old.host.suffix, n.host.suffix))
		if hostOK && pathUnder(old.path, n.path) {
			return true
		}
	}
	return false
}

// maxDecodings is how many times more than once a path segment is
// percent-decoded to find what a server that decodes again reads in it
// (looseReading); a segment that still decodes after that is read only
// for a whole host.
const maxDecodings = 8

// Reasons a path is read only where the allow rule and the grant cover
// the whole host (target.wholeOnly).
const (
	looseDots = "a segment that servers which decode it again or read it loosely take for a dot segment " +
		"(percent-encoded three times or more, as in %25252e%25252e; with invisible characters, spaces or more dots, as in .%e2%80%8b., ..%20 or ...; " +
		"in look-alike characters, as in %e3%80%82%e3%80%82, or beside look-alike slashes, as in ..%e2%88%95; in IIS's %u002e; or in overlong UTF-8 of any character)"
	looseBackslash = "a backslash that servers which decode it again or read it loosely find (percent-encoded three times or more, as in %25255C, or in overlong UTF-8 of a fullwidth one)"
	looseTooDeep   = "a segment still percent-encoded after 9 decodings"
)

// looseReading reads a path segment (decoded once) as servers may that
// decode it again and again, up to maxDecodings more times, or that read
// it loosely at each step: NUL bytes and overlong UTF-8 of any character
// decoded (laxRunes), in NFKC, IIS's %uXXXX escapes decoded too. It
// tells whether some reading holds a slash (an encoded slash, for
// check as %2F is) and the reason the segment is read only for a whole
// host, if any: a reading holds a piece that is a dot segment to a
// server (dotPiece), or a backslash (the ones found in fewer decodings
// are refused by parseTarget whatever the rules), or the segment still
// decodes after maxDecodings.
func looseReading(seg string) (slash bool, why string) {
	if !strings.ContainsAny(seg, "%\x00") && isASCII(seg) {
		if dotPiece(seg) {
			return false, looseDots
		}
		return false, ""
	}
	// Two chains: decoded as it is, and decoded once read loosely, at
	// each step. seg holds no slash, and no backslash (parseTarget).
	for _, loose := range []bool{false, true} {
		x := seg
		for level := 0; ; level++ {
			l := laxRunes(x)
			for _, r := range []string{x, l} {
				if dotPiece(r) {
					return false, looseDots
				}
				slash = slash || strings.Contains(r, "/")
				if strings.Contains(r, "\\") {
					why = looseBackslash
				}
			}
			if loose {
				x = l
			}
			next := unescapeLoose(x)
			if next == x {
				break
			}
			if level == maxDecodings {
				return slash, looseTooDeep
			}
			x = next
		}
	}
	return slash, why
}

// unescapeLoose decodes s's %XX escapes, and IIS's %uXXXX, leaving a %
// that starts none as it is.
func unescapeLoose(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] != '%':
		case i+2 < len(s) && isHexDigit(s[i+1]) && isHexDigit(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		case i+5 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U') && isHexDigit(s[i+2]) && isHexDigit(s[i+3]) && isHexDigit(s[i+4]) && isHexDigit(s[i+5]):
			r := rune(unhex(s[i+2]))<<12 | rune(unhex(s[i+3]))<<8 | rune(unhex(s[i+4]))<<4 | rune(unhex(s[i+5]))
			b = utf8.AppendRune(b, r)
			i += 5
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

// laxRunes is lax for any character: NUL bytes dropped, overlong UTF-8
// of any character decoded (F0 8F BC 8E is U+FF0E, a fullwidth full
// stop, to a decoder that does not refuse overlong forms), then, when
// not ASCII, NFKC.
func laxRunes(s string) string {
	b := make([]byte, 0, len(s))
	changed := false
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			changed = true
			continue
		}
		if r, n := overlongRune(s[i:]); n > 0 {
			changed = true
			if r != 0 {
				b = utf8.AppendRune(b, r)
			}
			i += n - 1
			continue
		}
		b = append(b, s[i])
	}
	if changed {
		s = string(b)
	}
	if !isASCII(s) {
		return norm.NFKC.String(s)
	}
	return s
}

// overlongRune returns the character s begins with in overlong UTF-8
// (two to six bytes, a value that fewer bytes would hold), and how many
// bytes, or 0 bytes when it begins with none.
func overlongRune(s string) (rune, int) {
	n := 0
	switch c := s[0]; {
	case c&0xe0 == 0xc0:
		n = 2
	case c&0xf0 == 0xe0:
		n = 3
	case c&0xf8 == 0xf0:
		n = 4
	case c&0xfc == 0xf8:
		n = 5
	case c&0xfe == 0xfc:
		n = 6
	default:
		return 0, 0
	}
	if len(s) < n {
		return 0, 0
	}
	v := uint32(s[0] & (0x7f >> n))
	for j := 1; j < n; j++ {
		if s[j]&0xc0 != 0x80 {
			return 0, 0
		}
		v = v<<6 | uint32(s[j]&0x3f)
	}
	if v >= [...]uint32{2: 0x80, 3: 0x800, 4: 0x10000, 5: 0x200000, 6: 0x4000000}[n] {
		return 0, 0
	}
	return rune(v), n
}

// dotPiece tells whether s, split at slashes, backslashes and the
// characters servers map to them, holds a piece (its ;parameters cut
// off, and an NTFS stream name, ..::$INDEX_ALLOCATION) that a server may
// take for a dot segment: one or more dots, or characters servers read
// as one, and nothing else but spaces (a "+" too, a space to servers
// that decode a path as a query), invisible characters and bytes that
// are not UTF-8, which servers trim or drop (Windows trims trailing dots
// and spaces, ".. " and "..." are ".." or "." there).
func dotPiece(s string) bool {
	for piece := range strings.FieldsFuncSeq(s, isSeparatorLike) {
		if i := strings.IndexAny(piece, ";:"); i >= 0 {
			piece = piece[:i]
		}
		if strings.IndexFunc(piece, isDotLike) >= 0 && strings.IndexFunc(piece, func(r rune) bool { return !isDotLike(r) && r != '+' && !isIgnorable(r) }) < 0 {
			return true
		}
	}
	return false
}

// isSeparatorLike: a slash, a backslash, or a character that Windows'
// "best-fit" conversion to an ANSI code page (or NFKC) makes one: U+2215
// DIVISION SLASH, U+2044 FRACTION SLASH, U+29F8 BIG SOLIDUS, U+2571,
// U+FF0F, U+2216 SET MINUS, U+29F5, U+29F9, U+2572, U+FF3C, U+FE68, and
// the yen and won signs, backslashes in code pages 932 and 949.
func isSeparatorLike(r rune) bool {
	switch r {
	case '/', '\\', '\u2215', '\u2044', '\u29f8', '\u2571', '\uff0f', '\u27cb',
		'\u2216', '\u29f5', '\u29f9', '\u2572', '\uff3c', '\ufe68', '\u27cd',
		'\u00a5', '\u20a9', '\uffe5', '\uffe6':
		return true
	}
	return false
}

// isDotLike: a full stop, or a character read as one (or as two or
// three): NFKC's (U+2024-U+2026 leaders and ellipsis, U+FE52, U+FF0E,
// U+FE19), IDNA's (U+3002, U+FF61, and U+FE12, whose NFKC is U+3002).
func isDotLike(r rune) bool {
	switch r {
	case '.', '\u2024', '\u2025', '\u2026', '\ufe52', '\uff0e', '\ufe19', '\u3002', '\uff61', '\ufe12':
		return true
	}
	return false
}

// isIgnorable: a character servers trim or drop from a name: white
// space (tabs and line ends too), other control and format characters
// (U+200B ZERO WIDTH SPACE, U+FEFF, U+00AD SOFT HYPHEN, bidi marks),
// combining marks, other default-ignorable code points (U+034F,
// U+115F, U+3164, ...), variation selectors, and bytes that are not
// UTF-8.
func isIgnorable(r rune) bool {
	return r == utf8.RuneError || unicode.IsSpace(r) || unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zs, unicode.Zl, unicode.Zp,
		unicode.Mn, unicode.Me, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
