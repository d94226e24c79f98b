package config

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/greenroom-dev/greenroom/runtime/internal/pgname"
)

// MinTokenLength is the shortest static token accepted.
const MinTokenLength = 32

// MinIntegrationTokenLength is the shortest integration token Warnings
// does not warn about, in bytes. The URL reader keeps a server's echo of a
// token from the plugin by finding it in what comes back; a shorter token
// matches ordinary text (which is then redacted too), and a plugin could
// guess it by asking for text a server echoes and seeing which guesses
// come back redacted. Operators are trusted, so it is a warning: the
// token is whatever the integration's host issued.
const MinIntegrationTokenLength = 8

// MaxLease bounds scheduler.lease: a task whose replica died waits this
// long at most for another to take it. (Without a bound, a lease near
// int64's range in nanoseconds overflowed the scheduler's arithmetic and
// every global run failed at once as lost.)
const MaxLease = 24 * time.Hour

func (c *Config) validate() Errors {
	v := validator{c: c}
	v.server()
	v.log()
	if c.Runtime.CacheDir == "" {
		v.fail("runtime.cache_dir", "must not be empty")
	} else if v.pathTooLong("runtime.cache_dir", c.Runtime.CacheDir) || v.pathControl("runtime.cache_dir", c.Runtime.CacheDir) {
	} else if why := notADirectory(c.Resolve("runtime.cache_dir", c.Runtime.CacheDir)); why != "" {
		// Checked without creating it: the runtime makes it at start.
		if c.isSecret("runtime.cache_dir") {
			why = notADirectoryHidden
		}
		v.fail("runtime.cache_dir", "%s", why)
	}
	v.database()
	switch l := c.Scheduler.Lease.D(); {
	case l < time.Second:
		v.fail("scheduler.lease", "must be at least 1s, got %s", v.show("scheduler.lease", c.Scheduler.Lease))
	case l > MaxLease:
		v.fail("scheduler.lease", "must be at most 24h (a replica that dies mid-run holds its task this long), got %s", v.show("scheduler.lease", c.Scheduler.Lease))
	}
	v.reading()
	v.auth()
	ids := make([]string, 0, len(c.Plugins))
	for id := range c.Plugins {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		v.plugin(id, c.Plugins[id])
	}
	v.pluginNames(ids)
	return v.errs
}

type validator struct {
	c    *Config
	errs Errors
}

// maxPGTimeout is the longest timeout PostgreSQL's settings take
// (statement_timeout and lock_timeout are ints of milliseconds). It is
// applied on SQLite too, so that a config means the same on both.
const maxPGTimeout = Duration(math.MaxInt32 * time.Millisecond)

// show is x, the decoded value of the key at path, as an error prints it:
// "[REDACTED]" when that value is secret (from the environment, or a
// listed plugin secret). What was decoded from a secret (987 from "0987",
// 5MiB from "5120KiB", 1h0m0s from "3600s") is as secret, and the errors'
// redaction, which knows the secret as written, does not find it.
func (v *validator) show(path string, x any) any {
	if v.c.isSecret(path) {
		return Redacted
	}
	return x
}

func (v *validator) fail(path, format string, args ...any) {
	v.errs = append(v.errs, &Error{Origin: v.origin(path), Key: path, Msg: fmt.Sprintf(format, args...)})
}

// origin is the "file:line" of the key at path or, when it has none (a
// default, or a table only implied), of the nearest parent that has one.
func (v *validator) origin(path string) string {
	for p := path; p != ""; p = parentPath(p) {
		if o, ok := v.c.origins[p]; ok {
			return o
		}
	}
	return ""
}

func (v *validator) server() {
	s := v.c.Server
	if err := checkListen(s.Listen); err != nil {
		v.fail("server.listen", "%v", err)
	}
	if s.MetricsListen != "" {
		if err := checkListen(s.MetricsListen); err != nil {
			v.fail("server.metrics_listen", "%v", err)
		} else if sameListener(s.MetricsListen, s.Listen) {
			v.fail("server.metrics_listen", "%s is server.listen's address (%s), or overlaps it: the two listeners cannot share it; leave metrics_listen out to serve /metrics on server.listen", v.show("server.metrics_listen", s.MetricsListen), v.show("server.listen", s.Listen))
		}
	}
	if s.BodyLimit == 0 {
		v.fail("server.body_limit", "must be more than 0")
	}
	if s.BodyLimit > maxBodyLimit {
		v.fail("server.body_limit", "must be at most %d bytes (2GiB less 16MiB and one byte: a plugin's request, body and head, must stay under 2GiB), got %s", uint64(maxBodyLimit), v.show("server.body_limit", s.BodyLimit))
	}
	for _, t := range []struct {
		key string
		d   Duration
	}{{"server.read_timeout", s.ReadTimeout}, {"server.write_timeout", s.WriteTimeout}} {
		switch {
		case t.d <= 0:
			// The HTTP server takes 0 for no timeout: a client that
			// never finishes sending its request, or never reads the
			// answer, would hold its connection for ever.
			v.fail(t.key, "must be more than 0")
		case t.d.D() < minIOTimeout:
			// "1ns" was taken: every request timed out (408) before its
			// first byte was read, or every answer was cut off.
			v.fail(t.key, "must be at least %s (a shorter one cuts requests off before they are read), got %s", minIOTimeout, v.show(t.key, t.d))
		case t.d.D() > maxIOTimeout:
			// An idle_timeout of 0 is read_timeout's: without this, a
			// longer read_timeout kept idle connections past
			// idle_timeout's own bound.
			v.fail(t.key, "must be at most 24h (a connection holds one of server.max_connections for as long; idle_timeout 0 takes read_timeout's), got %s", v.show(t.key, t.d))
		}
	}
	if s.IdleTimeout < 0 {
		v.fail("server.idle_timeout", "must not be negative (0 is read_timeout's)")
	} else if s.IdleTimeout.D() > maxIdleTimeout {
		v.fail("server.idle_timeout", "must be at most 24h (an idle connection holds one of server.max_connections; clients and proxies drop theirs within minutes), got %s", v.show("server.idle_timeout", s.IdleTimeout))
	}
	if s.ShutdownTimeout <= 0 {
		v.fail("server.shutdown_timeout", "must be more than 0, got %s", v.show("server.shutdown_timeout", s.ShutdownTimeout))
	} else if s.ShutdownTimeout.D() > maxShutdownTimeout {
		v.fail("server.shutdown_timeout", "must be at most 1h (task runs are cancelled at once and requests end within limits.timeout; a longer wait only holds a stopping replica), got %s", v.show("server.shutdown_timeout", s.ShutdownTimeout))
	}
	if s.ShutdownDelay.D() > maxShutdownDelay {
		v.fail("server.shutdown_delay", "must be at most 10m (load balancers stop sending within seconds; a longer delay keeps a stopping replica serving for nothing), got %s", v.show("server.shutdown_delay", s.ShutdownDelay))
	}
	if s.MaxConnections < 1 || s.MaxConnections > maxConnections {
		v.fail("server.max_connections", "must be from 1 to %d, got %v", maxConnections, v.show("server.max_connections", s.MaxConnections))
	}
	if s.ResponseBudget == 0 {
		v.fail("server.response_budget", "must be more than 0")
	}
	// A body_limit past its own bound has its error; not also this one.
	if s.RequestBudget < s.BodyLimit && s.BodyLimit <= maxBodyLimit {
		v.fail("server.request_budget", "(%s) must be at least server.body_limit (%s): a body that large could never be read", v.show("server.request_budget", s.RequestBudget), v.show("server.body_limit", s.BodyLimit))
	}
	if s.HeaderLimit < minHeaderLimit || s.HeaderLimit > maxHeaderLimit {
		v.fail("server.header_limit", "must be from 4KiB to 1MiB, got %v", v.show("server.header_limit", fmt.Sprintf("%d bytes", uint64(s.HeaderLimit))))
	}
	if s.RateBurst < 0 {
		v.fail("server.rate_burst", "must not be negative")
	} else if s.RateBurst > maxRate {
		// As a rate's N: a larger burst limits nothing, and the window
		// it makes is no rate a server keeps.
		v.fail("server.rate_burst", "must be at most %d (requests at once), got %v", int64(maxRate), v.show("server.rate_burst", s.RateBurst))
	}
	if s.RateBurst > 0 && s.RateLimit.PerSecond() == 0 {
		v.fail("server.rate_burst", "is set but server.rate_limit is not")
	}
	if ps := s.RateLimit.PerSecond(); ps > 0 && s.RateBurst >= 0 && s.RateBurst <= maxRate {
		// The limiter counts requests in windows of burst/rate: a window
		// past a day is no rate a server can keep (and one past Go's
		// durations overflowed to a one-second window).
		burst := float64(s.RateBurst)
		if burst == 0 {
			burst = max(1, math.Ceil(s.RateLimit.N))
		}
		if window := burst / ps; window > maxRateWindow.Seconds() {
			if v.c.isSecret("server.rate_limit") || v.c.isSecret("server.rate_burst") {
				v.fail("server.rate_limit", "with its burst makes a window of more than the %s a window may last: raise the rate", maxRateWindow)
			} else {
				v.fail("server.rate_limit", "with a burst of %v makes a window of %.3gs, more than the %s a window may last: raise the rate", burst, window, maxRateWindow)
			}
		}
	}
	for i, tp := range s.TrustedProxies {
		p := fmt.Sprintf("server.trusted_proxies[%d]", i)
		if _, err := parseTrustedProxy(tp, v.c.isSecret(p)); err != nil {
			v.fail(p, "%v", err)
		}
	}
	v.cors()
}

// ParseTrustedProxy reads an entry of server.trusted_proxies, which
// validation accepted: an IP address (the network of that one address)
// or a network in CIDR notation.
func ParseTrustedProxy(s string) (netip.Prefix, error) { return parseTrustedProxy(s, false) }

// parseTrustedProxy reads an entry of server.trusted_proxies. A network
// with bits set past its length ("10.0.0.1/8") is refused, not masked:
// it is more likely one address with a wrong length than the network.
// With secret (the entry came from the environment), its error quotes no
// part of s.
func parseTrustedProxy(s string, secret bool) (netip.Prefix, error) {
	shown := strconv.Quote(s)
	if secret {
		shown = strconv.Quote(Redacted)
	}
	const want = ` (want an IP address, "10.0.0.1" or "::1", or a network in CIDR notation, "10.0.0.0/8" or "fd00::/8")`
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil:
			return netip.Prefix{}, fmt.Errorf("%s is not a network in CIDR notation%s", shown, want)
		case p.Addr().Is4In6():
			return netip.Prefix{}, fmt.Errorf("%s is an IPv4 network written as IPv6: write it as IPv4 (\"10.0.0.0/8\")", shown)
		case p.Masked() != p:
			if secret {
				return netip.Prefix{}, fmt.Errorf("%s has bits set past its prefix length: write the network's first address, or the one address alone", shown)
			}
			return netip.Prefix{}, fmt.Errorf("%s has bits set past its prefix length: write %q for the network, or %q for the one address", shown, p.Masked().String(), p.Addr().String())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return netip.Prefix{}, fmt.Errorf("%s is not an IP address%s", shown, want)
	case a.Zone() != "":
		return netip.Prefix{}, fmt.Errorf("%s has a zone: a client's address is compared without one (write the address alone)", shown)
	case a.Is4In6():
		return netip.Prefix{}, fmt.Errorf("%s is an IPv4 address written as IPv6: write it as IPv4 (\"10.0.0.1\")", shown)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// minIOTimeout is the shortest server.read_timeout and write_timeout.
const minIOTimeout = 10 * time.Millisecond

// maxIOTimeout bounds server.read_timeout and write_timeout (their
// errors say 24h), as maxIdleTimeout does idle_timeout, which takes
// read_timeout's when 0.
const maxIOTimeout = 24 * time.Hour

// maxShutdownDelay bounds server.shutdown_delay (its error says 10m).
const maxShutdownDelay = 10 * time.Minute

// maxShutdownTimeout bounds server.shutdown_timeout (its error says 1h):
// Kubernetes waits 30s by default before it kills a pod, systemd 90s.
// Without a bound, one near the longest duration wrapped when the shutdown
// added shutdown_delay to it, and its deadline was in the past: every
// request and task run in flight was cut off at once.
const maxShutdownTimeout = time.Hour

// maxIdleTimeout bounds server.idle_timeout (its error says 24h).
const maxIdleTimeout = 24 * time.Hour

// maxCORSMaxAge bounds server.cors.max_age, in seconds: a day, Firefox's
// own cap (Chromium's is two hours); a longer one is cut by the browser.
const maxCORSMaxAge = 86400

// Bounds of a plugin's limits an audit found without one.
const (
	// maxDBMaxConns bounds limits.db_max_conns, a pool per plugin and
	// replica: PostgreSQL's own max_connections is 100 by default.
	maxDBMaxConns = 1000
	// maxLogBurst bounds limits.log_burst: 100000 tokens are about
	// 400 MiB of log lines at once.
	maxLogBurst = 100000
	// minPluginTimeout is the shortest limits.timeout (a task's default
	// Timeout): under it no call could run.
	minPluginTimeout = time.Millisecond
	// maxPluginTimeout is the longest limits.timeout, the longest Timeout
	// a task may give itself (scheduler.MaxTimeout). A call's deadline
	// reaches the guest in Unix nanoseconds, which hold dates up to 2262:
	// a timeout of more than about 239 years ("2562047h") wrapped it to a
	// date in the past, and every request's context had ended before the
	// handler ran.
	maxPluginTimeout = 24 * time.Hour
	// maxLogRate bounds limits.log_rate, in tokens a second (4 GiB of
	// lines a second). The whole process writes its lines one at a time,
	// each with one write under logrus's lock: about 2 us for a 200-byte
	// line to a file on the 2-core machine of docs/benchmarks.md, 500 000
	// lines a second, each after 5-7 us of formatting on some core
	// (BenchmarkPluginWrite). A rate past this limits nothing.
	maxLogRate = 1000000
)

// maxRateWindow is the longest window server.rate_limit may make.
const maxRateWindow = 24 * time.Hour

// minDBMaxSize is the smallest limits.db_max_size: sixteen of SQLite's
// default pages.
const minDBMaxSize = 64 << 10

// maxBodyLimit bounds server.body_limit: fasthttp reads a body of at
// most 2 GiB - 1 (its limits are ints, capped for 32-bit builds), and the
// request envelope a plugin is called with (the body, and its head and
// principal, each within header_limit, at most 1 MiB, encoded) has its
// length passed as a wasm i32: 16 MiB less keeps it under 2 GiB, where a
// larger one read as a negative length, an error code, to the guest.
const maxBodyLimit Size = 1<<31 - 1 - 16<<20

// maxConnections bounds server.max_connections: fasthttp's own default.
const maxConnections = 256 * 1024

// Bounds of server.header_limit: Fiber's own default, and a size past which
// one connection's buffer is a memory problem.
const (
	minHeaderLimit = 4 << 10
	maxHeaderLimit = 1 << 20
)

func (v *validator) cors() {
	c := v.c.Server.CORS
	for i, o := range c.Origins {
		p := fmt.Sprintf("server.cors.origins[%d]", i)
		if o == "*" {
			if len(c.Origins) > 1 {
				v.fail(p, "\"*\" allows every origin and cannot be combined with other origins")
			}
			if c.AllowCredentials {
				v.fail("server.cors.allow_credentials", "cannot be true with origin \"*\"")
			}
			continue
		}
		if _, err := checkOrigin(o, v.c.isSecret(p)); err != nil {
			v.fail(p, "%v", err)
		}
	}
	for i, m := range c.Methods {
		if !isToken(m) {
			v.fail(fmt.Sprintf("server.cors.methods[%d]", i), "%q is not an HTTP method", m)
		}
	}
	for i, h := range c.Headers {
		if !isToken(h) {
			v.fail(fmt.Sprintf("server.cors.headers[%d]", i), "%q is not an HTTP header name", h)
		}
	}
	if c.MaxAge < 0 {
		v.fail("server.cors.max_age", "must not be negative, got %v", v.show("server.cors.max_age", c.MaxAge))
	} else if c.MaxAge > maxCORSMaxAge {
		v.fail("server.cors.max_age", "must be from 0 to %d (a day, in seconds: browsers cache a preflight no longer, Chromium two hours), got %v", maxCORSMaxAge, v.show("server.cors.max_age", c.MaxAge))
	}
}

// checkOrigin accepts what a browser sends as Origin: scheme://host[:port],
// with "*." allowed at the start of the host for every subdomain, and
// returns it as a browser sends it in its Origin header, which is what the
// CORS middleware compares it with (as strings, lower-cased): the scheme
// and host in lower case, no trailing "/", no port when it is the
// scheme's default (":443" for https, ":80" for http: a browser never
// sends one, so "https://app.example:443" never matched), and an IPv6
// address in its canonical form ("[::1]" for "[0:0::1]"). With secret (a
// part of o came from the environment), its error quotes no part of o,
// nor says which byte of it is wrong.
func checkOrigin(o string, secret bool) (string, error) {
	shown := strconv.Quote(o)
	if secret {
		shown = strconv.Quote(Redacted)
	}
	bad := func(why string) error {
		return fmt.Errorf("origin %s %s (want e.g. \"https://app.example.com\" or \"https://*.example.com\")", shown, why)
	}
	scheme, rest, ok := strings.Cut(o, "://")
	// A scheme is case-insensitive; a browser sends it in lower case.
	scheme = strings.ToLower(scheme)
	if !ok || (scheme != "http" && scheme != "https") {
		return "", bad("must start with http:// or https://")
	}
	rest = strings.TrimSuffix(rest, "/")
	host := strings.TrimPrefix(rest, "*.")
	if host == "" || strings.ContainsAny(host, "/?#@*, \t") {
		return "", bad("must be a scheme and a host, with no path, query or wildcard inside the host")
	}
	u, err := url.Parse(scheme + "://" + host)
	if err != nil || u.Host != host {
		return "", bad("is not a valid origin")
	}
	port := u.Port()
	if port != "" || strings.HasSuffix(host, ":") {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' {
			return "", bad("has a port that is not a number from 1 to 65535")
		}
	}
	name := strings.ToLower(u.Hostname())
	if strings.HasPrefix(host, "[") {
		// A browser sends an IPv6 address in its canonical form, and
		// never with a zone.
		a, err := netip.ParseAddr(name)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", bad("has a host that is not an IPv6 address a browser sends (no zone)")
		}
		name = "[" + a.String() + "]"
	}
	if !strings.HasPrefix(host, "[") {
		// A trailing dot is kept: a page at https://app.example.com./
		// sends it in its Origin.
		if why := hostNameProblem(u.Hostname()); why != "" {
			if secret {
				return "", bad("has a host that is not a host name")
			}
			return "", bad("has a host that is not a host name: " + why)
		}
	}
	wild := host != rest
	if wild {
		// The CORS middleware reads "https://*.x" as "https://.x", and
		// an address has no subdomains.
		if strings.HasPrefix(host, "[") || net.ParseIP(u.Hostname()) != nil {
			return "", bad("has a wildcard before an IP address, which has no subdomains")
		}
		if u, err := url.Parse(scheme + "://." + host); err != nil || u.Host != "."+host {
			return "", bad("is not a valid origin")
		}
	}
	out := scheme + "://"
	if wild {
		out += "*."
	}
	out += name
	if port != "" && !(scheme == "https" && port == "443" || scheme == "http" && port == "80") {
		out += ":" + port
	}
	return out, nil
}

// isToken reports whether s is an HTTP token (RFC 9110), as method and
// header names are.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", ch) >= 0 {
			continue
		}
		return false
	}
	return true
}

func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		// net's error repeats the address, unquoted: its reason alone.
		why := err.Error()
		if ae, ok := err.(*net.AddrError); ok {
			why = ae.Err
		}
		return fmt.Errorf("invalid address %q (want host:port, e.g. \"127.0.0.1:7007\"): %s", addr, why)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("invalid address %q: host must be an IP address or localhost", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		// The port alone is not quoted: the address may be a secret, and
		// only whole secrets are redacted.
		return fmt.Errorf("invalid address %q: the port must be a number from 0 to 65535", addr)
	}
	return nil
}

// sameListener reports whether two valid listen addresses (checkListen)
// would bind the same port of the same address: the same port, and hosts
// that are the same address (localhost is 127.0.0.1, as net.Listen binds
// it) or one of which is all addresses ("", 0.0.0.0, ::). Port 0 picks a
// free port: never the same.
func sameListener(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	na, _ := strconv.Atoi(pa)
	nb, _ := strconv.Atoi(pb)
	if na != nb || na == 0 {
		return false
	}
	ip := func(h string) net.IP {
		switch h {
		case "":
			return net.IPv6unspecified
		case "localhost":
			return net.IPv4(127, 0, 0, 1)
		}
		return net.ParseIP(h)
	}
	ia, ib := ip(ha), ip(hb)
	return ia.IsUnspecified() || ib.IsUnspecified() || ia.Equal(ib)
}

var logLevels = []string{"debug", "info", "warn", "error"}

func (v *validator) log() {
	if !slices.Contains(logLevels, v.c.Log.Level) {
		v.fail("log.level", "must be one of %s, got %q", strings.Join(logLevels, ", "), v.c.Log.Level)
	}
	if f := v.c.Log.Format; f != "text" && f != "json" {
		v.fail("log.format", "must be text or json, got %q", f)
	}
}

func (v *validator) database() {
	d := v.c.Database
	switch d.Client {
	case "sqlite":
		// A value with a part from the environment is not quoted, nor
		// the path made of it: a short part is not redacted from free
		// text.
		secret := v.c.isSecret("database.connection")
		if err := checkSQLiteConnection(d.Connection, secret); err != nil {
			v.fail("database.connection", "%v", err)
		} else if v.pathTooLong("database.connection", d.Connection) {
		} else if why := notADirectory(v.c.Resolve("database.connection", strings.TrimPrefix(d.Connection, "file:"))); why != "" {
			if secret {
				why = notADirectoryHidden
			}
			v.fail("database.connection", "%s (the directory that holds the SQLite databases)", why)
		}
	case "pg":
		if !strings.HasPrefix(d.Connection, "postgres://") && !strings.HasPrefix(d.Connection, "postgresql://") {
			v.fail("database.connection", "for client pg, want a postgres:// URL")
		} else if _, err := parsePGConnection(d.Connection, v.c.isSecret("database.connection")); err != nil {
			v.fail("database.connection", "%v", err)
		}
	default:
		v.fail("database.client", "must be sqlite or pg, got %q", d.Client)
	}
	if d.Isolation != "role" && d.Isolation != "schema" {
		v.fail("database.isolation", "must be role or schema, got %q", d.Isolation)
	}
	if d.SQLiteMemory != 0 && d.SQLiteMemory < minSQLiteMemory {
		v.fail("database.sqlite_memory", "must be at least 64MiB (or 0 for no bound), got %s", v.show("database.sqlite_memory", d.SQLiteMemory))
	}
}

// minSQLiteMemory is the smallest database.sqlite_memory: room for the
// page caches of a few dozen connections.
const minSQLiteMemory = 64 << 20

// checkSQLiteConnection checks a SQLite database.connection as start-up
// reads it (database.SQLiteDir): "file:DIRECTORY" or a path starting with
// "/" or ".", naming the directory that holds greenroom.db and plugins/.
// The SQLite URI forms of one database (file::memory:, ?mode=ro) would
// make a directory of that name: refused, as is an empty directory. The
// error quotes conn with its passwords [REDACTED] (a PostgreSQL URL given
// by mistake), or, when secret (a part came from the environment), as
// "[REDACTED]" whole.
func checkSQLiteConnection(conn string, secret bool) error {
	const want = `for client sqlite, want file:DIRECTORY (a directory that holds greenroom.db and one file per plugin, e.g. "file:.greenroom/data")`
	got := strconv.Quote(redactConnection(conn))
	if secret {
		got = strconv.Quote(Redacted)
	}
	dir, isFile := strings.CutPrefix(conn, "file:")
	switch {
	case !isFile && !strings.HasPrefix(conn, "/") && !strings.HasPrefix(conn, "."):
		return fmt.Errorf("%s, got %s", want, got)
	case dir == "":
		return fmt.Errorf("%s, got %s: the directory is empty", want, got)
	case strings.Contains(dir, ":memory:"):
		return fmt.Errorf("%s, got %s: an in-memory database is not supported", want, got)
	case strings.Contains(dir, "?"):
		return fmt.Errorf("%s, got %s: SQLite URI parameters (?...) are not supported; greenroom sets its own on each file", want, got)
	}
	return nil
}

// Warnings lists what the config allows but is most likely a mistake,
// each as "file:line: key: what": a token scoped to a plugin id the
// config has no [plugins.<id>] for (a typo, or a plugin since removed)
// can call nothing under that id. Such a config still loads: the scope
// fails closed, and a plugin may be added back by a later reload.
// Likewise server.header_limit × server.max_connections over
// connBufferWarn: each open connection holds a read buffer of
// header_limit, so connections alone could take that much memory. And
// an auth.jwt.jwks_url over plain http:// to another machine: whoever is
// on the path could answer with keys of its own. And a [database] key of
// the other client (database.isolation with SQLite, sqlite_memory with
// PostgreSQL), which the client ignores (clientKeys).
func (c *Config) Warnings() []string {
	out := c.warnings()
	// As errors are: a 1 MiB host in a plain http:// jwks_url made a
	// 1 MiB warning, at every start and reload.
	for i, w := range out {
		out[i] = boundMessage(w)
	}
	return out
}

func (c *Config) warnings() []string {
	var out []string
	if w := c.connBuffers(); w != "" {
		out = append(out, w)
	}
	out = append(out, c.shortIntegrationTokens()...)
	out = append(out, c.clientKeys()...)
	out = append(out, c.wideTrustedProxies()...)
	if w := c.plainHTTPJWKS(); w != "" {
		out = append(out, w)
	}
	names := slices.Sorted(maps.Keys(c.Auth.Tokens))
	for _, n := range names {
		for i, id := range c.Auth.Tokens[n].Plugins {
			if _, ok := c.Plugins[id]; ok {
				continue
			}
			key := fmt.Sprintf("%s.plugins[%d]", joinKey("auth.tokens", []string{n}), i)
			where := c.warnedAt(key)
			out = append(out, fmt.Sprintf("%s%s: names plugin %q, which this config does not have: the token can call no plugin by that id", where, key, id))
		}
	}
	return out
}

// clientKeys is Warnings' lines about the [database] keys a config file
// sets that the chosen client ignores: database.isolation (PostgreSQL's
// plugin roles or schemas) with SQLite, database.sqlite_memory with
// PostgreSQL. They are warned of, not refused as limits.db_max_size is
// with PostgreSQL: that one promises a bound PostgreSQL would not
// enforce, while these take nothing away (a SQLite plugin has a database
// file of its own whatever isolation says); and a later file that
// switches database.client (a development override of a PostgreSQL
// config) cannot unset a key an earlier one set. Neither quotes a value:
// the client may come from the environment.
func (c *Config) clientKeys() []string {
	var out []string
	switch c.Database.Client {
	case "sqlite":
		if c.Origin("database.isolation") != "" {
			out = append(out, c.warnedAt("database.isolation")+`database.isolation: is ignored: it applies to client "pg" only (with SQLite every plugin has a database file of its own); remove it, or set client = "pg"`)
		}
	case "pg":
		if c.Origin("database.sqlite_memory") != "" {
			out = append(out, c.warnedAt("database.sqlite_memory")+`database.sqlite_memory: is ignored: it applies to client "sqlite" only; remove it, or set client = "sqlite"`)
		}
	}
	return out
}

// wideTrustedProxies is Warnings' lines about server.trusted_proxies
// entries that hold every address of their family (0.0.0.0/0, ::/0):
// every direct client of that family (an IPv4 one is never taken as
// IPv4-mapped IPv6) is then a trusted proxy, and chooses the
// address greenroom takes for it with X-Forwarded-For (its anonymous
// rate-limit budget, the audit log's ip, the plugin's RemoteAddr). Loud,
// not refused: an operator whose greenroom only a proxy can reach (a
// network policy) may mean it. An entry from the environment is named
// by its index only.
func (c *Config) wideTrustedProxies() []string {
	var out []string
	for i, s := range c.Server.TrustedProxies {
		p, err := ParseTrustedProxy(s)
		if err != nil || p.Bits() != 0 {
			continue
		}
		key := fmt.Sprintf("server.trusted_proxies[%d]", i)
		shown := strconv.Quote(s)
		if c.isSecret(key) {
			shown = strconv.Quote(Redacted)
		}
		family := "IPv4"
		if p.Addr().Is6() {
			family = "IPv6"
		}
		out = append(out, fmt.Sprintf("%s%s: %s trusts every %s address as a proxy: any client that reaches greenroom directly chooses the address it is taken for with X-Forwarded-For (its anonymous rate-limit budget, the audit log's ip, the plugin's RemoteAddr); list only your proxies' addresses",
			c.warnedAt(key), key, shown, family))
	}
	return out
}

// warnedAt is the "file:line: " a warning about key begins with (that of
// key or of its nearest parent the config sets), or "" when there is none.
func (c *Config) warnedAt(key string) string {
	if where := (&validator{c: c}).origin(key); where != "" {
		return where + ": "
	}
	return ""
}

// plainHTTPJWKS is Warnings' line about an auth.jwt.jwks_url that is
// fetched over plain http:// from a host other than this machine's
// loopback (127.0.0.0/8, ::1, localhost), or "". It names the host, never
// the URL, which may hold a password; not the host either when a part of
// the URL came from the environment.
func (c *Config) plainHTTPJWKS() string {
	j := c.Auth.JWT
	if j == nil {
		return ""
	}
	u, err := ParseJWKSURL(j.JWKSURL)
	if err != nil || u.Scheme != "http" || IsLoopback(u.Hostname()) {
		return ""
	}
	host := u.Host
	if c.isSecret("auth.jwt.jwks_url") {
		// A fragment of a secret, which the log's redactor (that knows
		// the secret whole) would not find.
		host = "its host"
	}
	return fmt.Sprintf("%sauth.jwt.jwks_url: is fetched over plain http:// from %s, which is not this machine: whoever sits on the path can answer with keys of its own and forge any token greenroom accepts; use https://",
		c.warnedAt("auth.jwt.jwks_url"), host)
}

// IsLoopback reports whether host (a URL's, without brackets or port)
// names this machine's loopback interface.
func IsLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// shortIntegrationTokens is Warnings' lines about integration tokens
// shorter than MinIntegrationTokenLength, which never quote the token.
func (c *Config) shortIntegrationTokens() []string {
	var out []string
	for _, kind := range []string{"github", "gitlab", "bitbucket", "generic"} {
		for i, in := range c.Integrations.List(kind) {
			if in.Token == "" || len(in.Token) >= MinIntegrationTokenLength {
				continue
			}
			key := fmt.Sprintf("integrations.%s[%d].token", kind, i)
			where := c.warnedAt(key)
			out = append(out, fmt.Sprintf("%s%s: is under %d bytes: the URL reader redacts a server's echo of the token from what a plugin gets back, and text that short also matches ordinary text (redacted as well) and can be guessed by a plugin watching which of its guesses come back redacted; use the longer token the host can issue",
				where, key, MinIntegrationTokenLength))
		}
	}
	return out
}

// connBufferWarn is how much memory the read buffers of
// server.max_connections connections of server.header_limit each may
// take before Warnings warns.
const connBufferWarn = 1 << 30

// connBuffers is Warnings' line about header_limit × max_connections, or
// "" when it is at most connBufferWarn. It names the key the config sets
// (header_limit when it sets both).
func (c *Config) connBuffers() string {
	s := c.Server
	total := uint64(s.HeaderLimit) * uint64(max(s.MaxConnections, 0))
	if total <= connBufferWarn {
		return ""
	}
	key := "server.header_limit"
	if c.Origin(key) == "" && c.Origin("server.max_connections") != "" {
		key = "server.max_connections"
	}
	where := c.warnedAt(key)
	v := &validator{c: c}
	var gib any = fmt.Sprintf("%.1f", float64(total)/(1<<30))
	if c.isSecret("server.header_limit") || c.isSecret("server.max_connections") {
		gib = Redacted // computed from a secret
	}
	return fmt.Sprintf("%s%s: server.header_limit (%s) × server.max_connections (%v) is %s GiB: each open connection holds a read buffer of header_limit, so that many connections could take that much memory for their buffers alone; lower one of them",
		where, key, v.show("server.header_limit", s.HeaderLimit), v.show("server.max_connections", s.MaxConnections), gib)
}

// maxPath is the longest path a config key may name: Linux's PATH_MAX,
// past which no file can be opened by it. A longer one could only fail,
// at start-up, with an error that quoted it whole into the log, an error
// page and the admin API.
const maxPath = 4096

// pathTooLong reports, and fails, a path at key longer than maxPath; its
// length is told unless it is secret.
func (v *validator) pathTooLong(key, path string) bool {
	if len(path) <= maxPath {
		return false
	}
	if v.c.isSecret(key) {
		v.fail(key, "is longer than %d bytes, the longest path the system opens", maxPath)
	} else {
		v.fail(key, "is %d bytes, longer than %d, the longest path the system opens", len(path), maxPath)
	}
	return true
}

// pathControl reports (and says, as an error naming key) whether path
// holds a control character: a NUL, which no file name can hold (it was
// reported only when the plugin loaded), or another C0 byte or DEL, which
// no sane file name holds and which would garble the logs that name it.
// The path is quoted (Go's escapes show the byte), but not one with a part
// from the environment.
func (v *validator) pathControl(key, path string) bool {
	if !strings.ContainsFunc(path, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return false
	}
	if v.c.isSecret(key) {
		v.fail(key, "must not contain control characters (a NUL, a newline, ...)")
	} else {
		v.fail(key, "must not contain control characters (a NUL, a newline, ...), got %q", path)
	}
	return true
}

// notADirectoryHidden is notADirectory's answer for a path with a part
// from the environment, which it does not name.
const notADirectoryHidden = "names a file, or a directory under one or a symbolic link to nothing, where the directory would be"

// notADirectory says why dir cannot be used or made as a directory: it,
// or the nearest of its parents that exists, is something else (a file).
// It returns "" otherwise, leaving what only making it can tell
// (permissions) to start-up, which makes it.
func notADirectory(dir string) string {
	dir = filepath.Clean(dir)
	for p := dir; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		switch {
		case err == nil && st.IsDir():
			return ""
		case err == nil && p == dir:
			return fmt.Sprintf("%s is not a directory", dir)
		case err == nil:
			return fmt.Sprintf("%s is not a directory, so %s cannot be made", p, dir)
		case errors.Is(err, fs.ErrNotExist):
			// A symbolic link to nothing: MkdirAll cannot make it.
			if lst, lerr := os.Lstat(p); lerr == nil && lst.Mode()&fs.ModeSymlink != 0 {
				return fmt.Sprintf("%s is a symbolic link to nothing, so %s cannot be made", p, dir)
			}
			if filepath.Dir(p) == p {
				return ""
			}
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
			return ""
		case filepath.Dir(p) == p:
			return ""
		}
	}
}

func (v *validator) reading() {
	r := v.c.Reading
	for i, a := range r.Allow {
		p := fmt.Sprintf("reading.allow[%d]", i)
		if a.Host == "" {
			v.fail(p+".host", "must not be empty")
		} else if err := checkHostPattern(a.Host, v.c.isSecret(p+".host")); err != nil {
			v.fail(p+".host", "%v", err)
		}
		if a.Scheme != "" && a.Scheme != "https" && a.Scheme != "http" {
			v.fail(p+".scheme", "must be https or http, got %q", a.Scheme)
		}
		for j, path := range a.Paths {
			if !strings.HasPrefix(path, "/") {
				v.fail(fmt.Sprintf("%s.paths[%d]", p, j), "path prefix %q must start with /", path)
			}
		}
		if a.Internal && strings.HasPrefix(a.Host, "*.") {
			v.fail(p+".internal", "needs an exact host, not the pattern %q: internal addresses are allowed one host at a time", a.Host)
		}
	}
	if r.MaxBytes == 0 {
		v.fail("reading.max_bytes", "must be more than 0")
	}
	if r.MaxBytes > 1<<30 {
		v.fail("reading.max_bytes", "must be at most 1GiB, got %s", v.show("reading.max_bytes", r.MaxBytes))
	}
	if r.Timeout == 0 {
		v.fail("reading.timeout", "must be more than 0")
	}
	hosts := map[string]string{}
	for _, kind := range []string{"github", "gitlab", "bitbucket", "generic"} {
		for i, in := range v.c.Integrations.List(kind) {
			p := fmt.Sprintf("integrations.%s[%d]", kind, i)
			h, err := IntegrationHost(in.Host)
			switch {
			case in.Host == "":
				v.fail(p+".host", "must not be empty")
			case err != nil:
				v.fail(p+".host", "%v", err)
			}
			if other, ok := hosts[h]; ok && h != "" {
				v.fail(p+".host", "%s already has a credential in %s; one host gets one token", v.show(p+".host", in.Host), other)
			}
			hosts[h] = p
			// The token goes in a request header, which cannot carry a
			// control character: every read of the host would fail, with
			// net/http's words, not these.
			switch {
			case strings.TrimSpace(in.Token) != in.Token:
				v.fail(p+".token", "must not begin or end with whitespace (a newline from an environment file?)")
			case strings.ContainsFunc(in.Token, func(r rune) bool { return r < 0x20 || r == 0x7f }):
				v.fail(p+".token", "must not contain control characters: it is sent in an HTTP header")
			}
			if in.Header != "" && kind != "generic" {
				v.fail(p+".header", "only generic integrations choose their header")
			}
			if in.Header != "" && !validHeaderName(in.Header) {
				v.fail(p+".header", "%q is not an HTTP header name", in.Header)
			}
		}
	}
}

// IntegrationHost returns the key an integration's host is matched by: the
// name in lower case without a trailing dot, and ":port" when the host
// names one ("ghe.example.com:8443": that port only; without one, every
// port).
func IntegrationHost(h string) (string, error) {
	name, port := h, ""
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		name, port = h[:i], h[i+1:]
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' || port[0] == '+' {
			return "", fmt.Errorf("port of %q must be a number from 1 to 65535", h)
		}
	}
	if err := checkHostPattern(name, false); err != nil || strings.HasPrefix(name, "*.") {
		return "", fmt.Errorf("must be a plain host name, optionally with a port, got %q", h)
	}
	key := strings.ToLower(strings.TrimSuffix(name, "."))
	if port != "" {
		key += ":" + port
	}
	return key, nil
}

// validHeaderName reports whether h is an HTTP token (RFC 9110) other than
// the headers that frame or route a request.
func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	switch strings.ToLower(h) {
	case "host", "connection", "content-length", "transfer-encoding", "te", "trailer", "upgrade", "keep-alive", "proxy-connection", "cookie":
		return false
	}
	return true
}

// checkHostPattern checks a host name or "*." pattern. With secret (a part
// of it came from the environment), its error quotes no part of h, nor
// says which byte of it is wrong.
func checkHostPattern(h string, secret bool) error {
	shown := strconv.Quote(h)
	if secret {
		shown = strconv.Quote(Redacted)
	}
	name := strings.TrimPrefix(h, "*.")
	if name == "" {
		return fmt.Errorf("host %s must be a host name, optionally starting with \"*.\"", shown)
	}
	if why := hostNameProblem(name); why != "" {
		if secret {
			return fmt.Errorf("host %s must be a host name, optionally starting with \"*.\"", shown)
		}
		return fmt.Errorf("host %s must be a host name, optionally starting with \"*.\": %s", shown, why)
	}
	return nil
}

// hostNameProblem says what keeps name (one trailing dot allowed) from
// being a host name the URL reader and a browser's Origin can hold: ASCII
// letters, digits, '-', '_' and '.', no empty label, and, when its last
// label is a number, an IPv4 address in dotted decimal. It returns "" for
// a good name. A pattern any other way could never match a request's
// host, which the URL reader reduces to that form (urlreader's
// canonicalHost).
func hostNameProblem(name string) string {
	name = strings.TrimSuffix(name, ".")
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Sprintf("byte %d (%q) is not a letter, digit, '-', '_' or '.' (write an internationalised name in its xn-- form)", i, c)
		}
	}
	labels := strings.Split(name, ".")
	if slices.Contains(labels, "") {
		return "it has an empty label"
	}
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" {
		if a, err := netip.ParseAddr(name); err != nil || !a.Is4() || a.String() != name {
			return "it ends in a number but is not an IPv4 address in dotted decimal (such as 10.0.0.1)"
		}
	}
	return ""
}

var jwtAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

func (v *validator) auth() {
	a := v.c.Auth
	names := make([]string, 0, len(a.Tokens))
	for n := range a.Tokens {
		names = append(names, n)
	}
	slices.Sort(names)
	seen := map[string]string{}
	for _, n := range names {
		t := a.Tokens[n]
		p := joinKey("auth.tokens", []string{n})
		if n := utf8.RuneCountInString(t.Token); n < MinTokenLength {
			// Not "got N": a secret's length is not told.
			v.fail(p+".token", "must be at least %d characters", MinTokenLength)
		}
		// A bearer token is presented trimmed: one with spaces around it
		// (a newline from an env file) could never match, nor one with a
		// control character, which no Authorization header can carry.
		switch {
		case strings.TrimSpace(t.Token) != t.Token:
			v.fail(p+".token", "must not begin or end with whitespace (a newline from an environment file?)")
		case strings.ContainsFunc(t.Token, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			v.fail(p+".token", "must not contain control characters: it is sent in an HTTP header, which cannot carry them")
		}
		if other, ok := seen[t.Token]; ok && t.Token != "" {
			v.fail(p+".token", "is the same as %s.token", other)
		}
		seen[t.Token] = p
		// The subject is the principal: what plugins compare, what the
		// rate limit and the request budget are kept by. One read with a
		// newline from an environment file, or spaces around it, named
		// another principal than the one it reads as, silently.
		switch {
		case strings.TrimSpace(t.Subject) == "":
			v.fail(p+".subject", "must not be empty")
		case strings.TrimSpace(t.Subject) != t.Subject:
			v.fail(p+".subject", "must not begin or end with whitespace (a newline from an environment file?): it names the principal plugins see and the rate limit counts")
		case strings.ContainsFunc(t.Subject, unicode.IsControl):
			v.fail(p+".subject", "must not contain control characters")
		}
		if t.Type != "service" && t.Type != "user" {
			v.fail(p+".type", "must be service or user, got %q", t.Type)
		}
		// Left out, the token may call every plugin; an empty list reads
		// like "none" and would mean all: refused as ambiguous.
		if t.Plugins != nil && len(t.Plugins) == 0 {
			v.fail(p+".plugins", "is empty: list the plugins the token may call, or leave the key out for all of them")
		}
		for i, id := range t.Plugins {
			if !PluginIDPattern.MatchString(id) {
				v.fail(fmt.Sprintf("%s.plugins[%d]", p, i), "%q is not a plugin id", id)
			}
		}
	}
	if j := a.JWT; j != nil {
		if _, err := parseJWKSURL(j.JWKSURL, v.c.isSecret("auth.jwt.jwks_url")); err != nil {
			v.fail("auth.jwt.jwks_url", "%v", err)
		}
		// Compared whole with each token's iss and aud, and looked up as
		// the claim's name: one read with a newline from an environment
		// file, or all spaces, matched no token, and a reload that set it
		// answered 200 and refused every JWT from then on.
		v.jwtText("auth.jwt.issuer", j.Issuer)
		v.jwtText("auth.jwt.audience", j.Audience)
		if len(j.Algorithms) == 0 {
			v.fail("auth.jwt.algorithms", "must list at least one algorithm")
		}
		for i, alg := range j.Algorithms {
			if !slices.Contains(jwtAlgorithms, alg) {
				v.fail(fmt.Sprintf("auth.jwt.algorithms[%d]", i), "%q is not allowed (allowed: %s; never none or HMAC)", alg, strings.Join(jwtAlgorithms, ", "))
			}
		}
		v.jwtText("auth.jwt.subject_claim", j.SubjectClaim)
		if j.PrincipalType != "user" && j.PrincipalType != "service" {
			v.fail("auth.jwt.principal_type", "must be user or service, got %q", j.PrincipalType)
		}
		if j.Leeway.D() > 5*time.Minute {
			v.fail("auth.jwt.leeway", "must be at most 5m, got %s", v.show("auth.jwt.leeway", j.Leeway))
		}
	}
}

// jwtText refuses a value of [auth.jwt] that a token's claim is compared
// with, or looked up by, when it is blank or begins or ends with
// whitespace: no token would match it.
func (v *validator) jwtText(key, s string) {
	switch {
	case strings.TrimSpace(s) == "":
		v.fail(key, "must not be empty")
	case strings.TrimSpace(s) != s:
		v.fail(key, "must not begin or end with whitespace (a newline from an environment file?): it is compared with each token's claims, and no token would match it")
	}
}

func (v *validator) plugin(id string, p *Plugin) {
	// As origins are recorded: plugins."a b" for a quoted id.
	base := joinKey("plugins", []string{id})
	if !PluginIDPattern.MatchString(id) {
		v.fail(base, "plugin id %q is invalid: want a lowercase letter followed by up to 62 lowercase letters, digits or '-'", id)
	}
	if p.Path == "" {
		v.fail(base+".path", "must name a .wasm file (or, for greenroom dev, a Go source directory)")
	} else if !v.pathTooLong(base+".path", p.Path) {
		v.pathControl(base+".path", p.Path)
	}
	if p.SHA256 != "" {
		if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != 32 {
			v.fail(base+".sha256", "must be 64 hex digits, got %q", p.SHA256)
		}
	}
	if p.LogLevel != "" && !slices.Contains(logLevels, p.LogLevel) {
		v.fail(base+".log_level", "must be one of %s, got %q", strings.Join(logLevels, ", "), p.LogLevel)
	}
	for i, r := range p.PublicRoutes {
		key := fmt.Sprintf("%s.public_routes[%d]", base, i)
		if err := CheckPublicRoute(r); err != nil {
			if len(r) > MaxRouteLength && v.c.isSecret(key) {
				// Not "of 2000 bytes": a secret's length is not told.
				v.fail(key, "route is longer than %d bytes", MaxRouteLength)
				continue
			}
			v.fail(key, "%v", err)
		}
	}
	l := p.Limits
	lp := base + ".limits"
	if l.Memory < 1<<20 {
		v.fail(lp+".memory", "must be at least 1MiB, got %s", v.show(lp+".memory", l.Memory))
	}
	if l.Memory > 4<<30 {
		v.fail(lp+".memory", "must be at most 4GiB (the 32-bit WebAssembly limit), got %s", v.show(lp+".memory", l.Memory))
	}
	if l.Timeout == 0 {
		v.fail(lp+".timeout", "must be more than 0")
	} else if l.Timeout.D() < minPluginTimeout {
		// "1ns" was taken: every call, and every task run without its
		// own Timeout, failed at its deadline.
		v.fail(lp+".timeout", "must be at least 1ms, got %s", v.show(lp+".timeout", l.Timeout))
	} else if l.Timeout.D() > maxPluginTimeout {
		v.fail(lp+".timeout", "must be at most 24h (as a task's own Timeout), got %s", v.show(lp+".timeout", l.Timeout))
	}
	if l.Instances < 1 || l.Instances > 1024 {
		v.fail(lp+".instances", "must be between 1 and 1024, got %v", v.show(lp+".instances", l.Instances))
	}
	if l.MaxRequests < 0 {
		v.fail(lp+".max_requests", "must not be negative")
	}
	if l.RetireMemory > 0 && l.RetireMemory > l.Memory {
		v.fail(lp+".retire_memory", "(%s) must not exceed limits.memory (%s)", v.show(lp+".retire_memory", l.RetireMemory), v.show(lp+".memory", l.Memory))
	}
	if l.MaxResponse == 0 {
		v.fail(lp+".max_response", "must be more than 0")
	}
	if rb := v.c.Server.ResponseBudget; rb > 0 && l.MaxResponse > rb {
		v.fail(lp+".max_response", "(%s) must not exceed server.response_budget (%s): an answer that large could never be sent", v.show(lp+".max_response", l.MaxResponse), v.show("server.response_budget", rb))
	}
	if l.GCPercent < -1 || l.GCPercent > 10000 {
		v.fail(lp+".gc_percent", "must be -1 (off), 0 (Go's default, 100) or a percentage up to 10000, got %v", v.show(lp+".gc_percent", l.GCPercent))
	}
	if l.DBMaxConns < 1 || l.DBMaxConns > maxDBMaxConns {
		v.fail(lp+".db_max_conns", "must be from 1 to %d (connections per replica), got %v", maxDBMaxConns, v.show(lp+".db_max_conns", l.DBMaxConns))
	}
	if l.DBStatementTimeout == 0 {
		v.fail(lp+".db_statement_timeout", "must be more than 0")
	}
	if l.DBStatementTimeout > maxPGTimeout {
		v.fail(lp+".db_statement_timeout", "must be at most %s (PostgreSQL's statement_timeout takes at most 2147483647 ms), got %s", maxPGTimeout, v.show(lp+".db_statement_timeout", l.DBStatementTimeout))
	}
	if l.DBMaxResult == 0 {
		v.fail(lp+".db_max_result", "must be more than 0")
	}
	if l.DBMaxResult > 1<<30 {
		// A result is copied whole into the plugin's memory, and its
		// length crosses the ABI as an i32.
		v.fail(lp+".db_max_result", "must be at most 1GiB, got %s", v.show(lp+".db_max_result", l.DBMaxResult))
	}
	if l.DBMaxSize > 0 {
		if v.c.Database.Client == "pg" {
			v.fail(lp+".db_max_size", "is enforced on SQLite only: a PostgreSQL schema has no quota of its own (watch the database's disk usage instead)")
		} else if l.DBMaxSize < minDBMaxSize {
			v.fail(lp+".db_max_size", "must be at least 64KiB (or 0 for no bound), got %s", v.show(lp+".db_max_size", l.DBMaxSize))
		}
	}
	if l.MigrationTimeout <= 0 {
		v.fail(lp+".migration_timeout", "must be more than 0")
	}
	if l.MigrationTimeout > maxPGTimeout {
		v.fail(lp+".migration_timeout", "must be at most %s (PostgreSQL's statement_timeout and lock_timeout take at most 2147483647 ms), got %s", maxPGTimeout, v.show(lp+".migration_timeout", l.MigrationTimeout))
	}
	if l.LogRate <= 0 || l.LogRate > maxLogRate {
		v.fail(lp+".log_rate", "must be more than 0 and at most %d (tokens a second: 4GiB of log lines, more than the log writes), got %v", maxLogRate, v.show(lp+".log_rate", l.LogRate))
	}
	if l.LogBurst < 1 || l.LogBurst > maxLogBurst {
		v.fail(lp+".log_burst", "must be from 1 to %d (tokens of 4KiB of log lines), got %v", maxLogBurst, v.show(lp+".log_burst", l.LogBurst))
	}
	for i, g := range p.Capabilities.URLReader {
		if g == "" || strings.Contains(g, "://") {
			v.fail(fmt.Sprintf("%s.capabilities.urlreader[%d]", base, i), "grant %q must be host/path-prefix without a scheme, e.g. \"raw.githubusercontent.com/backstage/\"", g)
			continue
		}
		host, _, _ := strings.Cut(g, "/")
		if err := checkHostPattern(host, v.c.isSecret(fmt.Sprintf("%s.capabilities.urlreader[%d]", base, i))); err != nil {
			v.fail(fmt.Sprintf("%s.capabilities.urlreader[%d]", base, i), "%v", err)
		}
	}
	v.flatNames(base, p)
	for i, k := range p.Secrets {
		if _, ok := p.ConfigValue(k); !ok {
			v.fail(fmt.Sprintf("%s.secrets[%d]", base, i), "names %q, which is not a key of [%s.config]", k, base)
		}
	}
}

// flatNames refuses two keys of a plugin's config table that greenroom.Config
// names alike: a quoted key with a dot in it and a nested path ("t.x" and
// t = { x = ... }). The plugin would read either at random, and a secrets
// entry could not say which it means. Each clash is reported once, at the
// key found second, naming the first; what lies under it is not checked.
func (v *validator) flatNames(base string, p *Plugin) {
	prefix := base + ".config"
	seen := map[string]string{} // flat name → key path
	eachFlat(p.Config, func(flat, path string, _ any) bool {
		first, dup := seen[flat]
		if !dup {
			seen[flat] = path
			return true
		}
		other := prefix + "." + first
		if o := v.origin(other); o != "" {
			other += " (" + o + ")"
		}
		v.fail(prefix+"."+path, "names the same key %q as %s: greenroom.Config(%q) could not tell them apart; rename one", flat, other, flat)
		return false
	})
}

// pluginNames refuses two plugin ids that would get the same PostgreSQL
// schema or role: each would read and write the other's data. The names
// are one-to-one but for ids too long for PostgreSQL's 63-byte names,
// which keep 32 bits of a hash (pgname): two such ids that agree on their
// first 42 bytes can meet. Checked whatever the database (the same ids
// must work when it becomes PostgreSQL); a role's prefix has the same
// length for every database name, so the database does not matter. Each
// clash is reported at the id found second (in sorted order), naming the
// first.
func (v *validator) pluginNames(ids []string) {
	for _, kind := range []struct {
		what string
		name func(string) string
	}{
		{"schema", pgname.Schema},
		{"role", func(id string) string {
			return "gr_<database hash>_" + strings.TrimPrefix(pgname.Role("", id), pgname.RolePrefix(""))
		}},
	} {
		seen := map[string]string{} // name → plugin id
		for _, id := range ids {
			if !PluginIDPattern.MatchString(id) {
				continue
			}
			n := kind.name(id)
			first, dup := seen[n]
			if !dup {
				seen[n] = id
				continue
			}
			other := joinKey("plugins", []string{first})
			if o := v.origin(other); o != "" {
				other += " (" + o + ")"
			}
			v.fail(joinKey("plugins", []string{id}), "would get the same PostgreSQL %s (%s) as %s, and each plugin would read and write the other's data: rename one", kind.what, n, other)
		}
	}
}

// MaxRouteLength bounds a public route.
const MaxRouteLength = 1024

// CheckPublicRoute checks a public route: an exact path relative to the
// plugin's mount, as a client sends it ("/ping"), with no query, fragment
// or wildcard. The same rule applies to what a plugin asks for and to what
// the operator lists.
func CheckPublicRoute(r string) error {
	// The length first: the other messages quote the route.
	switch {
	case len(r) > MaxRouteLength:
		return fmt.Errorf("route of %d bytes is longer than %d", len(r), MaxRouteLength)
	case !strings.HasPrefix(r, "/"):
		return fmt.Errorf("route %q must start with /", r)
	case strings.ContainsAny(r, "?#"):
		return fmt.Errorf("route %q must be a path only, without ? or #", r)
	case strings.ContainsAny(r, "*{}"): // {name}, {path...}: ServeMux's wildcards
		return fmt.Errorf("route %q: public routes are exact paths; wildcards (*, {name}, {path...}) are not supported", r)
	}
	for i := 0; i < len(r); i++ {
		if r[i] <= ' ' || r[i] == 0x7f {
			return fmt.Errorf("route %q must not contain spaces or control characters", r)
		}
	}
	return nil
}

// ConfigValue returns the value at a dotted key of the plugin's config
// table, named as FlatConfig names it: strings as they are, numbers and
// booleans as their TOML text, arrays and tables as JSON.
func (p *Plugin) ConfigValue(key string) (string, bool) {
	vs := p.configAll(key)
	if len(vs) == 0 {
		return "", false
	}
	return p.valueText(key, vs[0]), true
}

// valueText is the text of v, the value at key: a number, boolean or
// date-time as written in the file (1_000, 0xff, 2026-01-02; a later
// file's string or table under the key is not one), anything else as
// formatValue gives it.
func (p *Plugin) valueText(key string, v any) string {
	switch v.(type) {
	case string, map[string]any, []any:
	default:
		if text, ok := p.literals[key]; ok {
			return text
		}
	}
	return formatValue(v)
}

// configAll returns the values of the plugin's config table that FlatConfig
// names key: a table, an array or a scalar. A valid config has at most one
// (flatNames refuses two); an invalid one may have more, and Secrets
// redacts each.
func (p *Plugin) configAll(key string) []any {
	var out []any
	eachFlat(p.Config, func(flat, _ string, v any) bool {
		if flat == key {
			out = append(out, v)
		}
		// Only a table whose name starts the key can hold it (or one
		// named "", whose keys' flat names are their own).
		return flat == "" || strings.HasPrefix(key, flat+".")
	})
	return out
}

// FlatConfig returns every leaf of the plugin's config table by dotted key,
// plus every table and array by its own key: what greenroom.Config reads.
func (p *Plugin) FlatConfig() map[string]string {
	out := map[string]string{}
	eachFlat(p.Config, func(flat, _ string, v any) bool {
		out[flat] = p.valueText(flat, v)
		return true
	})
	return out
}

// eachFlat calls fn for every value in a plugin's config table, tables and
// arrays included, in key order, with its flat name (the keys from the
// table down joined with ".", as greenroom.Config and a secrets entry name
// it) and its key path (as joinKey writes it, quoted parts quoted, the
// form origins are recorded in). It descends into a table when fn returns
// true. FlatConfig, ConfigValue, Secrets and flatNames all name keys
// through it, so that they cannot disagree.
func eachFlat(table map[string]any, fn func(flat, path string, v any) bool) {
	var walk func(flat, path string, m map[string]any)
	walk = func(flat, path string, m map[string]any) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			f := k
			if flat != "" {
				f = flat + "." + k
			}
			kp := joinKey(path, []string{k})
			if fn(f, kp, m[k]) {
				if sub, ok := m[k].(map[string]any); ok {
					walk(f, kp, sub)
				}
			}
		}
	}
	walk("", "", table)
}

func formatValue(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case int64:
		return strconv.FormatInt(t, 10)
	case float64:
		s := strconv.FormatFloat(t, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eIN") {
			s += ".0" // TOML writes a float with a fraction or an exponent
		}
		return s
	case bool:
		return strconv.FormatBool(t)
	case time.Time:
		return t.Format(time.RFC3339Nano)
	default:
		b, err := json.Marshal(jsonSafe(t))
		if err != nil {
			return fmt.Sprint(t)
		}
		return string(b)
	}
}

// jsonSafe returns v with the floats JSON cannot hold (nan, inf, -inf) as
// the strings TOML spells them with, copying only what it changes.
func jsonSafe(v any) any {
	out, _ := jsonSafeChanged(v)
	return out
}

// jsonSafeChanged is jsonSafe, and whether it changed v: one walk of v
// (comparing each level's result with its input made nested tables cost
// the square of their depth, at every level).
func jsonSafeChanged(v any) (any, bool) {
	switch t := v.(type) {
	case float64:
		switch {
		case math.IsNaN(t):
			return "nan", true
		case math.IsInf(t, 1):
			return "inf", true
		case math.IsInf(t, -1):
			return "-inf", true
		}
	case map[string]any:
		var out map[string]any
		for k, e := range t {
			if s, changed := jsonSafeChanged(e); changed {
				if out == nil {
					out = maps.Clone(t)
				}
				out[k] = s
			}
		}
		if out != nil {
			return out, true
		}
	case []any:
		var out []any
		for i, e := range t {
			if s, changed := jsonSafeChanged(e); changed {
				if out == nil {
					out = slices.Clone(t)
				}
				out[i] = s
			}
		}
		if out != nil {
			return out, true
		}
	}
	return v, false
}

// sameValue is reflect.DeepEqual for config values, except that nan
// equals nan.
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		return ok && (x == y || x != x && y != y)
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// Equal reports whether p and q configure a plugin alike: deep equality,
// except that a nan in the plugin's config table equals itself (so that a
// config holding one does not count as changed on every reload).
func (p *Plugin) Equal(q *Plugin) bool {
	if p == nil || q == nil {
		return p == q
	}
	p2, q2 := *p, *q
	p2.Config, q2.Config = nil, nil
	return reflect.DeepEqual(p2, q2) && sameValue(p.Config, q.Config)
}

// PluginSecretKeys returns the keys of a plugin's config table whose values
// are secret: substituted from the environment or listed in secrets.
func (c *Config) PluginSecretKeys(id string) []string {
	prefix := "plugins." + id + ".config."
	var out []string
	for p := range c.secretPaths {
		if k, ok := strings.CutPrefix(p, prefix); ok && !strings.Contains(k, "[") {
			// Named as greenroom.Config names it: "t.x", not "\"t.x\"".
			out = append(out, plainKey(k))
		}
	}
	if p := c.Plugins[id]; p != nil {
		out = append(out, p.Secrets...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Granted lists the capabilities the operator granted the plugin, sorted:
// "database", "scheduler", "urlreader".
func (p *Plugin) Granted() []string {
	var out []string
	if p.Capabilities.Database {
		out = append(out, "database")
	}
	if p.Capabilities.Scheduler {
		out = append(out, "scheduler")
	}
	if len(p.Capabilities.URLReader) > 0 {
		out = append(out, "urlreader")
	}
	return out
}
