package config

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// minSecretLength is the shortest secret redacted from free text, as the
// log's redactor does (runtime/logging); shorter ones are still redacted
// where an error message quotes them whole.
const minSecretLength = 4

// redactErrors replaces every secret in the errors' messages with
// [REDACTED], so that whichever check wrote a message, none echoes a value
// substituted from the environment or another secret.
func redactErrors(errs Errors, secrets []string) {
	type pair struct{ old, new string }
	var pairs []pair
	for _, s := range secrets {
		if s == "" {
			continue
		}
		// Messages quote values with %q: the whole value, quoted, whatever
		// its length.
		pairs = append(pairs, pair{strconv.Quote(s), strconv.Quote(Redacted)})
		if len(s) < minSecretLength {
			continue
		}
		pairs = append(pairs, pair{s, Redacted})
		if q := strconv.Quote(s); q[1:len(q)-1] != s {
			pairs = append(pairs, pair{q[1 : len(q)-1], Redacted})
		}
	}
	if len(pairs) == 0 {
		return
	}
	// Longest first, so that a secret containing another is replaced whole.
	slices.SortStableFunc(pairs, func(a, b pair) int { return len(b.old) - len(a.old) })
	args := make([]string, 0, 2*len(pairs))
	for _, p := range pairs {
		args = append(args, p.old, p.new)
	}
	r := strings.NewReplacer(args...)
	for _, e := range errs {
		e.Msg = r.Replace(e.Msg)
	}
}

// redactConnection returns a database connection string with its
// passwords replaced by [REDACTED].
func redactConnection(conn string) string {
	spans := connectionPasswords(conn)
	for i := len(spans) - 1; i >= 0; i-- {
		conn = conn[:spans[i][0]] + Redacted + conn[spans[i][1]:]
	}
	return conn
}

// connectionSecrets returns the passwords written in a database connection
// string, as written and decoded, for log redaction.
func connectionSecrets(conn string) []string {
	var out []string
	isURL := strings.Contains(conn, "://")
	for _, sp := range connectionPasswords(conn) {
		raw := conn[sp[0]:sp[1]]
		out = append(out, raw)
		if !isURL {
			if dec := unescapeKeyword(raw); dec != raw {
				out = append(out, dec)
			}
			continue
		}
		// Userinfo and query escaping differ on '+'; both are secrets.
		for _, unescape := range []func(string) (string, error){url.PathUnescape, url.QueryUnescape} {
			if dec, err := unescape(raw); err == nil && dec != raw && !slices.Contains(out, dec) {
				out = append(out, dec)
			}
		}
	}
	return out
}

// unescapeKeyword undoes libpq's backslash escapes in a keyword's value.
func unescapeKeyword(raw string) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if raw[i] == '\\' && i+1 < len(raw) {
			i++
		}
		b.WriteByte(raw[i])
	}
	return b.String()
}

// connectionPasswords returns where the passwords are in a connection
// string, in order: in a URL ("postgres://user:PASSWORD@host/db"), the
// userinfo's password and a password query parameter; otherwise, in
// keyword/value form ("host=h password=PASSWORD"), the password's value.
func connectionPasswords(conn string) [][2]int {
	if i := strings.Index(conn, "://"); i >= 0 {
		return urlPasswords(conn, i+len("://"))
	}
	return keywordPasswords(conn)
}

func urlPasswords(conn string, start int) [][2]int {
	var spans [][2]int
	rest := conn[start:]
	// The userinfo ends at the last '@': a password with an unescaped '/',
	// '?' or '@' in it is still covered whole (at worst, with more).
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		if colon := strings.IndexByte(rest[:at], ':'); colon >= 0 && colon+1 < at {
			spans = append(spans, [2]int{start + colon + 1, start + at})
		}
	}
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		pos := start + q + 1
		for _, param := range strings.Split(conn[pos:], "&") {
			// The key as the driver reads it: percent-decoded
			// (pass%77ord is a password too).
			k, v, ok := strings.Cut(param, "=")
			if dk, err := url.QueryUnescape(k); ok && err == nil && dk == "password" {
				v, _, _ = strings.Cut(v, "#")
				if v != "" {
					spans = append(spans, [2]int{pos + len(k) + 1, pos + len(k) + 1 + len(v)})
				}
			}
			pos += len(param) + 1
		}
	}
	// A '?' inside the userinfo can make the spans overlap: merge them.
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	var out [][2]int
	for _, sp := range spans {
		if n := len(out); n > 0 && sp[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], sp[1])
			continue
		}
		out = append(out, sp)
	}
	return out
}

// keywordPasswords finds password=... in libpq's keyword/value form:
// pairs separated by spaces, "=" with optional spaces around it, values
// bare or in single quotes, backslash escaping the next character.
func keywordPasswords(conn string) [][2]int {
	var spans [][2]int
	space := func(i int) bool { return i < len(conn) && strings.IndexByte(" \t\r\n", conn[i]) >= 0 }
	i := 0
	for {
		for space(i) {
			i++
		}
		if i >= len(conn) {
			return spans
		}
		k := i
		for i < len(conn) && conn[i] != '=' && !space(i) {
			i++
		}
		key := conn[k:i]
		for space(i) {
			i++
		}
		if i >= len(conn) || conn[i] != '=' {
			return spans // not keyword/value
		}
		i++
		for space(i) {
			i++
		}
		quoted := i < len(conn) && conn[i] == '\''
		if quoted {
			i++
		}
		v := i
		for i < len(conn) && (quoted && conn[i] != '\'' || !quoted && !space(i)) {
			if conn[i] == '\\' {
				i++
			}
			i++
		}
		end := min(i, len(conn))
		if key == "password" && end > v {
			spans = append(spans, [2]int{v, end})
		}
		if quoted {
			i++
		}
	}
}
