package runtime

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/logging"
)

// The reason a caller of a plugin that is not serving is given (its 503
// plugin_unavailable) is its load error told without the infrastructure
// it names: any authenticated caller reads it, not only the operator, and
// the database's host, port, user and name may come from a secret
// (database.connection = "${DATABASE_URL}"). The log and the admin API's
// last_error keep the whole error.
//
// callerReason renders err in two passes. First the errors that carry
// what the runtime cannot vouch for are told by their kind only, whatever
// wraps them (the wrappers' own words, the runtime's, are kept):
//   - a connection to PostgreSQL that could not be made (pgx's text names
//     the host, port, user and database): "could not connect to the
//     plugin's database (connection refused)", or the server's refusal by
//     its SQLSTATE ("... (the server refused it: too many connections,
//     SQLSTATE 53300)"), never the server's message, which names the role;
//   - a network error (its addresses) and a failed host name lookup;
//   - a file system error: the file's base name only, not its directory.
//
// A statement's error from the server (a migration's, "ERROR: syntax
// error at or near ..." with its SQLSTATE) is kept: it is about the
// plugin's own SQL and what it names, which its author needs, and what it
// may name of the infrastructure (a database in "permission denied for
// database ...", a role) goes in the second pass. That pass replaces, as
// whole words, the values the config holds that name the infrastructure,
// wherever the runtime's own words quoted them ("the runtime's database
// user "gr_runtime" lacks ..."): the database's hosts and host:port, its
// user and its name, every plugin role of that database (gr_<hash>_...),
// the SQLite directory, runtime.cache_dir, and a plugin's module path
// (by its base name). Values shorter than 3 bytes are left alone: as
// whole words they would garble the text, and the first pass already
// removed the texts where they stand; so is a value that is a plugin's
// id, which the caller knows from its routes.
//
// Last, what names the host wherever it comes from (go build's output,
// a path resolved otherwise than the config names it, a library's words)
// is removed: an absolute path in the host's directories is told by its
// base name (scrubPaths), and an IP address, with its port or zone, is
// "[address]" (scrubAddresses).
func (r *Runtime) callerReason(err error) string {
	if err == nil {
		return ""
	}
	text, ok := render(err)
	if !ok {
		// A wrapper that does not quote its cause as it stands: the
		// cause cannot be cut out of it.
		return "(the runtime's log says why)"
	}
	return scrubAddresses(scrubPaths(scrubValues(r.cfg.Load(), text)))
}

// render returns err's text with each error that may name the
// infrastructure replaced by its kind, and false when one of those is
// wrapped in a way render cannot cut out.
func render(err error) (string, bool) {
	if s, ok := leafText(err); ok {
		return s, true
	}
	var inner []error
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if e := u.Unwrap(); e != nil {
			inner = []error{e}
		}
	case interface{ Unwrap() []error }:
		inner = u.Unwrap()
	}
	full := err.Error()
	for _, in := range inner {
		if in == nil || !hasLeaf(in) {
			continue
		}
		itext := in.Error()
		rendered, ok := render(in)
		if !ok {
			return "", false
		}
		// The cause as the wrapper quotes it: at its end, usually.
		i := strings.LastIndex(full, itext)
		if i < 0 || itext == "" {
			return "", false
		}
		full = full[:i] + rendered + full[i+len(itext):]
	}
	return full, true
}

// hasLeaf reports whether err's chain holds an error leafText tells by
// its kind.
func hasLeaf(err error) bool {
	if _, ok := leafText(err); ok {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if e := u.Unwrap(); e != nil {
			return hasLeaf(e)
		}
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if e != nil && hasLeaf(e) {
				return true
			}
		}
	}
	return false
}

// leafText tells err by its kind when it is an error that names the
// infrastructure.
func leafText(err error) (string, bool) {
	switch e := err.(type) {
	case *pgconn.ParseConfigError:
		return "the database's connection string does not parse", true
	case *pgconn.ConnectError:
		return "could not connect to the plugin's database (" + connectKind(e) + ")", true
	case *net.OpError:
		return "network error (" + netKind(e) + ")", true
	case *net.DNSError:
		return "network error (the database's host name could not be resolved)", true
	case *fs.PathError:
		return fmt.Sprintf("%s %s: %v", e.Op, filepath.Base(e.Path), e.Err), true
	}
	return "", false
}

// connectKind is why a connection could not be made, without the server's
// message or an address.
func connectKind(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if database.ValidSQLState(pe.Code) {
			return "the server refused it: " + refusal(pe.Code) + "SQLSTATE " + pe.Code
		}
		return "the server refused it"
	}
	return netKind(err)
}

// refusal names the common reasons a server refuses a connection.
func refusal(code string) string {
	switch {
	case code == "28P01":
		return "password authentication failed, "
	case code == "28000":
		return "the role may not log in or no pg_hba.conf entry allows it, "
	case code == "3D000":
		return "the database does not exist, "
	case code == "53300":
		return "too many connections, "
	case code == "57P03":
		return "the server is starting up or shutting down, "
	case strings.HasPrefix(code, "28"):
		return "authorization failed, "
	case strings.HasPrefix(code, "08"):
		return "connection exception, "
	}
	return ""
}

// netKind is the kind of a network failure, without its addresses.
func netKind(err error) string {
	var dns *net.DNSError
	var ne net.Error
	var te *tls.AlertError
	var re tls.RecordHeaderError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.As(err, &dns):
		return "the host name could not be resolved"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case errors.As(err, &te), errors.As(err, &re), strings.Contains(err.Error(), "tls:"), strings.Contains(err.Error(), "x509:"):
		return "TLS error"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "see the runtime's log"
}

// scrubValues replaces in text, as whole words, what cfg holds that names
// the infrastructure (see callerReason).
func scrubValues(cfg *config.Config, text string) string {
	if cfg == nil {
		return text
	}
	type sub struct{ old, new string }
	var subs []sub
	add := func(old, new string) {
		// A plugin's id is its callers' already (/api/<id>/): a database
		// named like a plugin keeps "plugin todo" and "plugins.todo.".
		if _, id := cfg.Plugins[old]; len(old) >= 3 && !id {
			subs = append(subs, sub{old, new})
		}
	}
	// Paths: longest first, so that a module under the cache directory
	// is told by its base name.
	for id, pc := range cfg.Plugins {
		if pc == nil || pc.Path == "" {
			continue
		}
		path := resolve(cfg, "plugins."+id+".path", pc.Path)
		base := filepath.Base(path)
		if cfg.IsSecretPath("plugins." + id + ".path") {
			// A path with any part from the environment is a secret
			// whole: not even its base name is told (render gives a
			// file system error's base name alone).
			add(base, logging.Redacted)
			base = logging.Redacted
		}
		add(filepath.Clean(path), base)
		if pc.Path != path {
			add(pc.Path, base)
		}
	}
	if dir := resolve(cfg, "runtime.cache_dir", cfg.Runtime.CacheDir); dir != "" {
		add(filepath.Clean(dir), "[runtime.cache_dir]")
	}
	dbc := DatabaseConfig(cfg)
	var rolePrefix string
	switch dbc.Client {
	case database.ClientSQLite:
		if dbc.Connection != "" {
			add(filepath.Clean(dbc.Connection), "[database directory]")
		}
	case database.ClientPG:
		if cc, err := config.ParsePGConnection(dbc.Connection); err == nil {
			pc := cc.Config
			hosts := []struct {
				host string
				port uint16
			}{{pc.Host, pc.Port}}
			for _, f := range pc.Fallbacks {
				hosts = append(hosts, struct {
					host string
					port uint16
				}{f.Host, f.Port})
			}
			for _, h := range hosts {
				add(net.JoinHostPort(h.host, fmt.Sprint(h.port)), "[host]")
				add(h.host, "[host]")
			}
			add(pc.User, "[user]")
			add(pc.Database, "[database]")
			if pc.Database != "" {
				rolePrefix = database.RolePrefix(pc.Database)
			}
		}
		add(dbc.Connection, "[database.connection]")
	}
	sort.SliceStable(subs, func(i, j int) bool { return len(subs[i].old) > len(subs[j].old) })
	if rolePrefix != "" {
		text = regexp.MustCompile(regexp.QuoteMeta(rolePrefix)+`[a-z0-9_]*`).ReplaceAllString(text, "[plugin role]")
	}
	for _, s := range subs {
		text = replaceWord(text, s.old, s.new)
	}
	return text
}

// replaceWord replaces old in s where no letter, digit or '_' touches it.
func replaceWord(s, old, new string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, old)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(old)
		if (i > 0 && wordByte(s[i-1]) && wordByte(old[0])) || (end < len(s) && wordByte(s[end]) && wordByte(old[len(old)-1])) {
			b.WriteString(s[:i+1])
			s = s[i+1:]
			continue
		}
		b.WriteString(s[:i])
		b.WriteString(new)
		s = s[end:]
	}
}

func wordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// pathToken is a candidate absolute path: a slash and what follows it up
// to a space, a quote or a bracket (a line and column after it included).
var pathToken = regexp.MustCompile("/[^\\s\"'`()<>\\[\\]{},;|*]*")

// lineCol is a position after a path: ":12:3", "(12)" is not one.
var lineCol = regexp.MustCompile(`(:[0-9]+)*:?\.?$`)

// scrubPaths replaces each absolute path in text that names a directory
// of the host by its base name: go build's work directory (go-build...)
// wherever it is, and any path whose first directory is one in the
// host's root (/tmp, /home, /var, /usr, /srv ...). A path that is not
// the host's (a route, "/items/{id}"), a relative one ("./x"), and a URL's
// are kept.
func scrubPaths(text string) string {
	roots := map[string]bool{}
	hostDir := func(first string) bool {
		is, seen := roots[first]
		if !seen {
			st, err := os.Stat("/" + first)
			is = err == nil && st.IsDir()
			roots[first] = is
		}
		return is
	}
	var b strings.Builder
	last := 0
	for _, m := range pathToken.FindAllStringIndex(text, -1) {
		i, j := m[0], m[1]
		if i > 0 {
			if c := text[i-1]; wordByte(c) || c == '.' || c == '/' || c == ':' || c == '~' || c == '-' || c == '@' || c == '%' {
				continue // relative, a URL's or not a path
			}
		}
		tok := text[i:j]
		if strings.HasPrefix(tok, "//") {
			continue
		}
		path := tok[:lineCol.FindStringIndex(tok)[0]]
		first, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
		if first == "" || !strings.Contains(path, "go-build") && !hostDir(first) {
			continue
		}
		b.WriteString(text[last:i])
		base := filepath.Base(path)
		if base == "/" || base == "." {
			base = "[path]"
		}
		b.WriteString(base)
		b.WriteString(tok[len(path):])
		last = j
	}
	b.WriteString(text[last:])
	return b.String()
}

// addrToken is a candidate IP address: IPv4 (a port after it included), or
// IPv6 with two colons at least, bracketed or not (a zone, and after the
// brackets a port, included).
var addrToken = regexp.MustCompile(`\[[0-9A-Fa-f:.]+(%[0-9A-Za-z_.-]+)?\](:[0-9]+)?|[0-9A-Fa-f]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f.]*(%[0-9A-Za-z_.-]+)?|[0-9]{1,3}(\.[0-9]{1,3}){3}(:[0-9]+)?`)

// scrubAddresses replaces each IP address in text (its port and zone
// included) with "[address]". What only looks like one (a time 12:30:45,
// a line main.go:12:3, a version 1.2.3.4 in v1.2.3.4) is kept: a
// candidate must parse as an address and stand apart from a word.
func scrubAddresses(text string) string {
	var b strings.Builder
	last := 0
	for _, m := range addrToken.FindAllStringIndex(text, -1) {
		i, j := m[0], m[1]
		for j > i && text[j-1] == '.' { // a sentence's end
			j--
		}
		tok := text[i:j]
		if i > 0 && (wordByte(text[i-1]) || text[i-1] == '.' || text[i-1] == ':') {
			continue
		}
		if j < len(text) && (wordByte(text[j]) || text[j] == ':' || j+1 < len(text) && text[j] == '.' && wordByte(text[j+1])) {
			continue
		}
		host := tok
		if strings.HasPrefix(host, "[") {
			host = host[1:strings.IndexByte(host, ']')]
		} else if h, _, err := net.SplitHostPort(host); err == nil && strings.Count(host, ":") == 1 {
			host = h
		}
		host, _, _ = strings.Cut(host, "%")
		if !strings.ContainsAny(host, "0123456789abcdefABCDEF") {
			continue
		}
		if _, err := netip.ParseAddr(host); err != nil {
			continue
		}
		b.WriteString(text[last:i])
		b.WriteString("[address]")
		last = j
	}
	b.WriteString(text[last:])
	return b.String()
}
