package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// minSecretLength is the shortest secret redacted from free text, as the
// log's redactor does (runtime/logging); shorter ones are still redacted
// where an error message quotes them whole.
const minSecretLength = 4

// redactErrors replaces every secret in the errors' messages with
// [REDACTED], so that whichever check wrote a message, none echoes a value
// substituted from the environment or another secret.
//
// wholes are the values of the keys whose value is secret: a token, a
// listed plugin secret, a string with any part from the environment. A
// message that quotes one whole shows "[REDACTED]" whole, however short
// the part from the environment, which free text keeps ("x${L}" with
// L=ab was quoted as "xab").
func redactErrors(errs Errors, secrets, wholes []string) {
	type pair struct{ old, new string }
	var pairs []pair
	for _, w := range wholes {
		if w != "" {
			pairs = append(pairs, pair{strconv.Quote(w), strconv.Quote(Redacted)})
		}
	}
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

// secretValues returns the strings in doc (merged and substituted) at the
// key paths isSecret reports (secretKeys: a listed plugin key's values at
// any depth), for redactErrors' wholes.
func secretValues(doc map[string]any, isSecret func(string) bool) []string {
	var out []string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, e := range t {
				walk(joinKey(path, []string{k}), e)
			}
		case []any:
			for i, e := range t {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		case string:
			if t != "" && isSecret(path) {
				out = append(out, t)
			}
		}
	}
	walk("", doc)
	return out
}

// maxQuoted is the most of a value an error message quotes; a longer one
// is cut there, followed by its length: `"AAAA"... (1048576 bytes, cut)`.
const maxQuoted = 64

// maxMessage bounds an error message whole, past its quoted values: what
// a check's words or a library's quote unquoted.
const maxMessage = 2048

// boundErrors cuts every quoted value in the messages to maxQuoted bytes
// and each message to maxMessage, so that a 1 MiB value at a bad key does
// not make a 1 MiB error (twice over where a library repeated it) in the
// output and the log. It runs after redactErrors, which needs each secret
// whole to find it: what is measured and cut is what is left once
// secrets are [REDACTED], and a value with any part from the environment
// is "[REDACTED]" whole by then.
func boundErrors(errs Errors) {
	for _, e := range errs {
		e.Msg = boundMessage(e.Msg)
	}
}

func boundMessage(msg string) string {
	if len(msg) <= maxQuoted+2 {
		return msg
	}
	var b strings.Builder
	rest := msg
	for {
		i := strings.IndexByte(rest, '"')
		if i < 0 {
			break
		}
		if i > 0 && rest[i-1] == '\'' && i+1 < len(rest) && rest[i+1] == '\'' {
			// A rune literal, '"' (hostNameProblem's byte), starts no
			// string.
			b.WriteString(rest[:i+2])
			rest = rest[i+2:]
			continue
		}
		// The quoted string's end: the next '"' not escaped.
		j := i + 1
		for j < len(rest) && rest[j] != '"' {
			if rest[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(rest) {
			break
		}
		q := rest[i : j+1]
		b.WriteString(rest[:i])
		rest = rest[j+1:]
		if len(q) <= maxQuoted+2 {
			b.WriteString(q)
			continue
		}
		s, err := strconv.Unquote(q)
		if err != nil || len(s) <= maxQuoted {
			b.WriteString(q)
			continue
		}
		fmt.Fprintf(&b, "%s... (%d bytes, cut)", strconv.Quote(cutUTF8(s, maxQuoted)), len(s))
	}
	b.WriteString(rest)
	msg = b.String()
	if len(msg) > maxMessage {
		msg = fmt.Sprintf("%s... (%d bytes, cut)", cutUTF8(msg, maxMessage), len(msg))
	}
	return msg
}

// cutUTF8 is s cut to at most n bytes, not inside a UTF-8 sequence.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// floatForms returns the texts a secret number takes once a plugin holds
// it as a float64 — what reading it as JSON and decoding that into an
// interface gives — and prints it: fmt's %v and strconv's 'g' (logrus's
// text format, "1.2345678e+07"), encoding/json's (the JSON format and a
// re-encoded table; "98765432109876540" for 98765432109876543, which a
// float64 cannot hold), 'f' and 'e'. Forms equal to the number's own
// decimal text are left out. A number whose decimal text is shorter than
// minSecretLength gets none: it is not redacted as written, and its longer
// forms ("1e+02" for 100) must not be either.
func floatForms(v any) []string {
	var f float64
	var text string
	switch n := v.(type) {
	case int64:
		f, text = float64(n), strconv.FormatInt(n, 10)
	case float64:
		f, text = n, strconv.FormatFloat(n, 'g', -1, 64)
	default:
		return nil
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || len(text) < minSecretLength {
		return nil
	}
	forms := []string{
		fmt.Sprint(f),
		strconv.FormatFloat(f, 'g', -1, 64),
		strconv.FormatFloat(f, 'f', -1, 64),
		strconv.FormatFloat(f, 'e', -1, 64),
	}
	if j, err := json.Marshal(f); err == nil {
		forms = append(forms, string(j))
	}
	var out []string
	for _, s := range forms {
		if s != text && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// secretKeys returns a test for the key paths of a merged, substituted
// document whose values are secret, for the decoder, which has to know
// them before it has decoded anything (Config.isSecret looks at decoded
// plugins): values substituted from the environment (secretPaths), token
// keys, the tables and arrays that hold tokens (a token written one level
// up, "[auth.tokens] ci = "...", is still a token), and every key under
// one a plugin's secrets list names.
func secretKeys(doc map[string]any, secretPaths map[string]bool) func(path string) bool {
	listed := map[string][]string{} // plugin id → its secrets list
	if plugins, ok := doc["plugins"].(map[string]any); ok {
		for id, p := range plugins {
			table, ok := p.(map[string]any)
			if !ok {
				continue
			}
			list, _ := table["secrets"].([]any)
			for _, k := range list {
				if k, ok := k.(string); ok {
					listed[id] = append(listed[id], k)
				}
			}
		}
	}
	return func(path string) bool {
		if secretPaths[path] || alwaysSecret(path) || holdsTokens(path) {
			return true
		}
		rest, ok := strings.CutPrefix(path, "plugins.")
		if !ok {
			return false
		}
		for id, list := range listed {
			if key, ok := strings.CutPrefix(rest, id+".config."); ok && underListedKey(key, list) {
				return true
			}
		}
		return false
	}
}

// holdsTokens reports the keys whose values hold token keys: auth.tokens,
// auth.tokens.<name>, integrations, integrations.<kind> and
// integrations.<kind>[i]. A value of the wrong type there is most likely a
// token written in the wrong place.
func holdsTokens(path string) bool {
	switch path {
	case "auth.tokens", "integrations":
		return true
	}
	parent := parentPath(path)
	if parent == "auth.tokens" || parent == "integrations" {
		return true
	}
	return strings.HasSuffix(path, "]") && parentPath(parent) == "integrations"
}

// underListedKey reports whether key (a key path under a plugin's config
// table, "[i]" for array elements) is one of the listed secret keys or
// lies under one. Quoted parts ("my key") are compared unquoted, as the
// secrets list names them.
func underListedKey(key string, list []string) bool {
	key = plainKey(key)
	for _, s := range list {
		if s == key || strings.HasPrefix(key, s+".") || strings.HasPrefix(key, s+"[") {
			return true
		}
	}
	return false
}

// referenceCredentials returns where the credentials of a value as written
// lie, for the errors about its ${ references (the value is then emptied,
// and its credentials are in no secret list): in database.connection and
// the urlKeys, a URL's whole userinfo (its user name too: "https://TOKEN@")
// and whole query, and the password and sslpassword values of libpq's
// keyword/value form; nil at any other key.
func referenceCredentials(path, v string) [][2]int {
	if path != "database.connection" && !urlKeys[path] {
		return nil
	}
	var spans [][2]int
	if path == "database.connection" && !pgURL(v) {
		// The keyword/value form, whatever "://" its values hold; and,
		// should it not be one, the URL's credentials below too.
		var kv bool
		if spans, kv = keywordPasswords(v); kv {
			return spans
		}
	}
	i := strings.Index(v, "://")
	if i < 0 {
		return spans
	}
	start := i + len("://")
	rest := v[start:]
	if at := strings.LastIndexByte(rest, '@'); at > 0 {
		spans = append(spans, [2]int{start, start + at})
	}
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		end := len(v)
		if h := strings.IndexByte(rest[q:], '#'); h >= 0 {
			end = start + q + h
		}
		if start+q+1 < end {
			spans = append(spans, [2]int{start + q + 1, end})
		}
	}
	return mergeSpans(spans)
}

// overlaps reports whether [from, to) overlaps one of the spans.
func overlaps(spans [][2]int, from, to int) bool {
	for _, sp := range spans {
		if from < sp[1] && sp[0] < to {
			return true
		}
	}
	return false
}

// mergeSpans sorts spans and merges those that overlap or touch.
func mergeSpans(spans [][2]int) [][2]int {
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

// redactConnection returns a database connection string with its
// passwords replaced by [REDACTED].
func redactConnection(conn string) string {
	return redactSpans(conn, connectionPasswords(conn))
}

// minBareUser is the shortest user name without a password that
// urlCredentials takes for a token.
const minBareUser = 16

// credentialParam reports whether a URL query parameter named name (as
// decoded) holds a credential: its name says token, key, secret,
// password, signature, auth or code, in any case and with any affix
// (access_token, api_key, apiKey, client_secret, X-Amz-Signature).
func credentialParam(name string) bool {
	name = strings.ToLower(name)
	for _, w := range []string{"token", "key", "secret", "passw", "pwd", "sig", "auth", "code", "credential", "session"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// redactSpans replaces conn's spans (in order, not overlapping) with
// [REDACTED].
func redactSpans(conn string, spans [][2]int) string {
	for i := len(spans) - 1; i >= 0; i-- {
		conn = conn[:spans[i][0]] + Redacted + conn[spans[i][1]:]
	}
	return conn
}

// urlKeys are the config keys other than database.connection that hold a
// URL, and so may hold a password in its userinfo (or a password query
// parameter), treated as database.connection's is.
var urlKeys = map[string]bool{"auth.jwt.jwks_url": true}

// redactURL returns a URL with its passwords replaced by [REDACTED]
// ("https://svc:[REDACTED]@idp/jwks"); anything but a URL is returned as
// it is.
func redactURL(u string) string {
	i := strings.Index(u, "://")
	if i < 0 {
		return u
	}
	return redactSpans(u, urlCredentials(u, i+len("://"), true))
}

// urlSecrets returns the credentials written in a URL (its userinfo and
// query values, see urlCredentials), as written and decoded, for log
// redaction; none for anything but a URL. A credential in the userinfo
// is returned also as Go writes it back into a URL (url.URL's String and
// Redacted, which keep a user name, and so the HTTP client's errors):
// escaped for the userinfo, "Tok!en" as "Tok%21en", a form that neither
// the text as written nor the log's percent-encoded forms of it need
// match (the userinfo keeps ',' and ';', which a path segment escapes).
func urlSecrets(u string) []string {
	i := strings.Index(u, "://")
	if i < 0 {
		return nil
	}
	spans := urlCredentials(u, i+len("://"), true)
	out := spanSecrets(u, spans, true)
	at := strings.LastIndexByte(u, '@')
	for _, sp := range spans {
		if sp[1] > at {
			continue // a query value
		}
		if dec, err := url.PathUnescape(u[sp[0]:sp[1]]); err == nil {
			if esc := url.User(dec).String(); !slices.Contains(out, esc) {
				out = append(out, esc)
			}
		}
	}
	return out
}

// connectionSecrets returns the passwords written in a database connection
// string, as written and decoded, for log redaction.
func connectionSecrets(conn string) []string {
	kv, u := connectionParts(conn)
	out := spanSecrets(conn, kv, false)
	for _, sec := range spanSecrets(conn, u, true) {
		if !slices.Contains(out, sec) {
			out = append(out, sec)
		}
	}
	return out
}

// spanSecrets returns the text of conn's spans, as written and decoded:
// percent-decoded in a URL (isURL), backslash-decoded in the keyword/value
// form.
func spanSecrets(conn string, spans [][2]int, isURL bool) []string {
	var out []string
	for _, sp := range spans {
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
// keyword/value form ("host=h password=PASSWORD"), the values of password
// and sslpassword.
func connectionPasswords(conn string) [][2]int {
	kv, u := connectionParts(conn)
	return mergeSpans(append(kv, u...))
}

// pgURL reports whether pgx reads conn as a URL: only when it starts with
// postgres:// or postgresql://; anything else is keyword/value to it,
// whatever "://" a value holds ("application_name=http://x", a password
// with one in it).
func pgURL(conn string) bool {
	return strings.HasPrefix(conn, "postgres://") || strings.HasPrefix(conn, "postgresql://")
}

// connectionParts returns where the passwords are in conn as pgx reads
// it: in a URL (pgURL), the URL's (u); else those of the keyword/value
// form (kv) and, when conn is not one all through but holds a "://" (a
// URL whose scheme pgx does not take, "POSTGRES://", which it refuses),
// the URL's as well, so that an error quoting it shows neither. Finding
// the form by a "://" anywhere in conn left the password of a
// keyword/value string with a URL in one of its values in the errors
// that quote the value, and out of the log's secrets
// (TestConnectionPassword).
func connectionParts(conn string) (kv, u [][2]int) {
	if pgURL(conn) {
		return nil, urlPasswords(conn, strings.Index(conn, "://")+len("://"))
	}
	kv, whole := keywordPasswords(conn)
	if i := strings.Index(conn, "://"); !whole && i >= 0 {
		u = urlPasswords(conn, i+len("://"))
	}
	return kv, u
}

func urlPasswords(conn string, start int) [][2]int { return urlCredentials(conn, start, false) }

// urlCredentials is urlPasswords or, with all, also a user name of a
// token's length that has no password, or an empty one, and the value of each query
// parameter whose name says it is a credential: for a URL such as
// auth.jwt.jwks_url, where a user name alone ("https://TOKEN@idp/jwks")
// or a parameter ("?access_token=...") may be the credential. Every value
// found is a log secret, redacted from every line: a name or a parameter
// such as format=json is not one.
func urlCredentials(conn string, start int, all bool) [][2]int {
	var spans [][2]int
	rest := conn[start:]
	// The userinfo ends at the last '@': a password with an unescaped '/',
	// '?' or '@' in it is still covered whole (at worst, with more).
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		colon := strings.IndexByte(rest[:at], ':')
		switch {
		case colon >= 0 && colon+1 < at:
			spans = append(spans, [2]int{start + colon + 1, start + at})
		case all && colon < 0 && at >= minBareUser:
			// A user name without a password, as long as a token, is
			// the credential (a short one, "svc", is only a name: as a
			// log secret it would cut that word out of every line).
			spans = append(spans, [2]int{start, start + at})
		case all && colon >= minBareUser && colon+1 == at:
			// So is one with an empty password ("https://TOKEN:@idp"),
			// the common way of writing a token as the user name.
			spans = append(spans, [2]int{start, start + colon})
		}
	}
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		pos := start + q + 1
		for _, param := range strings.Split(conn[pos:], "&") {
			// The key as the driver reads it: percent-decoded
			// (pass%77ord is a password too); sslpassword decrypts
			// the client's TLS key.
			k, v, ok := strings.Cut(param, "=")
			if dk, err := url.QueryUnescape(k); ok && err == nil && (dk == "password" || dk == "sslpassword" || all && credentialParam(dk)) {
				v, _, _ = strings.Cut(v, "#")
				if v != "" {
					spans = append(spans, [2]int{pos + len(k) + 1, pos + len(k) + 1 + len(v)})
				}
			}
			pos += len(param) + 1
		}
	}
	// A '?' inside the userinfo can make the spans overlap: merge them.
	return mergeSpans(spans)
}

// keywordPasswords finds password=... and sslpassword=... (which
// decrypts the client's TLS key) in libpq's keyword/value form:
// pairs separated by white space (pgx's, as libpq's: space, \t, \n, \v,
// \f, \r), "=" with optional white space around it, values bare or in
// single quotes, backslash escaping the next character. whole reports
// whether all of conn is in that form; the spans found before the first
// part that is not are returned either way.
func keywordPasswords(conn string) (spans [][2]int, whole bool) {
	space := func(i int) bool { return i < len(conn) && strings.IndexByte(" \t\n\v\f\r", conn[i]) >= 0 }
	i := 0
	for {
		for space(i) {
			i++
		}
		if i >= len(conn) {
			return spans, true
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
			return spans, false // not keyword/value
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
		if (key == "password" || key == "sslpassword") && end > v {
			spans = append(spans, [2]int{v, end})
		}
		if quoted {
			i++
		}
	}
}

// ParseJWKSURL parses auth.jwt.jwks_url as an http(s) URL with a host.
// Its error never quotes the URL, and quotes the parser only when that
// shows no part of a password: with a '/', '?' or '#' in a password the
// parser takes the password's start for a port or a host and quotes it,
// where neither the redactor (which knows the whole password) nor
// Redacted would hide it.
func ParseJWKSURL(raw string) (*url.URL, error) { return parseJWKSURL(raw, false) }

// parseJWKSURL is ParseJWKSURL; with secret (a part of raw came from the
// environment) its error quotes raw as "[REDACTED]".
func parseJWKSURL(raw string, secret bool) (*url.URL, error) {
	if !strings.HasPrefix(raw, "https://") && !strings.HasPrefix(raw, "http://") {
		got := redactURL(raw)
		if secret {
			got = Redacted
		}
		return nil, fmt.Errorf("must be an http(s) URL, got %q", got)
	}
	if atAfterHost(raw) {
		return nil, errAtAfterHost
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if secret {
			// net/url's reasons quote the fragment they stumble on,
			// which no redaction of the secret it is part of finds.
			msg := goQuoted.ReplaceAllString(err.Error(), "")
			if strings.HasPrefix(msg, "invalid host:") {
				msg = "invalid host" // netip's reason, which names parts
			}
			return nil, fmt.Errorf("does not parse as a URL: %s", msg)
		}
		if strings.HasPrefix(err.Error(), "invalid port ") {
			// The "port" it quotes is what follows the host's last
			// colon: the password of "https://user:password" without
			// its "@host", or its part before a '#'.
			return nil, errors.New("does not parse as a URL: what follows the host's ':' is not a port (a '/', '?', '#' or '@' in a user name or password must be percent-encoded: %2F, %3F, %23, %40)")
		}
		return nil, parseError(raw, "does not parse as a URL", err)
	}
	if u.Host == "" {
		return nil, errors.New("has no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			if secret {
				return nil, errors.New("has a port that is not from 1 to 65535")
			}
			return nil, fmt.Errorf("has port %q: want 1 to 65535", p)
		}
	}
	return u, nil
}

// ParsePGConnection parses a PostgreSQL database.connection as the runtime
// connects with it (pgx.ParseConfig, which also reads the PG* environment
// variables and files), so that config check refuses what start-up would.
// Its error quotes pgx's message only when that shows no part of a
// password (pgx hides a password it can find, not the fragment of one with
// a '/' or '#' that its parser quotes).
func ParsePGConnection(conn string) (*pgx.ConnConfig, error) { return parsePGConnection(conn, false) }

// parsePGConnection is ParsePGConnection; with secret (a part of conn came
// from the environment), its error gives pgx's reason only as one of
// pgxReasons, never what pgx quotes or names of the value.
func parsePGConnection(conn string, secret bool) (*pgx.ConnConfig, error) {
	if pgURL(conn) && atAfterHost(conn) {
		return nil, errAtAfterHost
	}
	c, err := pgx.ParseConfig(conn)
	if err != nil {
		if secret {
			return nil, secretParseError(err)
		}
		return nil, parseError(conn, "does not parse", err)
	}
	return c, nil
}

// goQuoted matches a string as strconv.Quote writes it, and a space
// before it.
var goQuoted = regexp.MustCompile(` ?"(?:[^"\\]|\\.)*"`)

// pgxReasons are the reasons pgx.ParseConfig gives, in its words, without
// the values it adds to some (a quoted fragment, an unknown value, a
// file's path in the error it wraps).
var pgxReasons = []string{
	"failed to parse as URL", "failed to parse as keyword/value", "failed to read service",
	"failed to configure TLS", "invalid port", "invalid connect_timeout", "invalid sslcertmode",
	"invalid require_auth", "invalid default_query_exec_mode", "invalid min_protocol_version",
	"invalid max_protocol_version", "min_protocol_version cannot be greater than max_protocol_version",
	"cannot parse statement_cache_capacity", "cannot parse description_cache_capacity",
	"unknown channel_binding value", "unknown target_session_attrs value", "unknown value",
	"connection string key", "could not match",
}

// secretParseError is the error of a connection string with a part from
// the environment that pgx does not parse: pgx's reason, as one of
// pgxReasons (the longest it begins with), else the hint alone.
func secretParseError(err error) error {
	msg := err.Error()
	if _, after, ok := strings.Cut(msg, "`: "); ok {
		msg = after
	}
	best := ""
	for _, r := range pgxReasons {
		if strings.HasPrefix(msg, r) && len(r) > len(best) {
			best = r
		}
	}
	if best == "" {
		return errors.New("does not parse (a '/', '?', '#' or '@' in a user name or password must be percent-encoded: %2F, %3F, %23, %40)")
	}
	return fmt.Errorf("does not parse: %s", best)
}

// atAfterHost reports whether the URL raw has an '@' after the end of its
// host (the first '/', '?' or '#' after "://"). Either a password holds
// one of those unencoded, and the parser cuts it there (taking its start
// for a port, "svc:5432/rest@db" parses with host svc, and its rest for the
// path), so that the password the runtime redacts (up to the last '@') is
// not the one used and its pieces show in messages; or the path or query
// holds an '@'. The two cannot be told apart: refused, with a hint.
func atAfterHost(raw string) bool {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return false
	}
	end := strings.IndexAny(rest, "/?#")
	return end >= 0 && strings.Contains(rest[end:], "@")
}

// quotedConnection is a string pgx's messages quote in backticks.
var quotedConnection = regexp.MustCompile("`[^`]*`")

var errAtAfterHost = errors.New("has an '@' after its host: percent-encode a '/', '?', '#' or '@' in the user name or password (%2F, %3F, %23, %40), and an '@' in the path or query (%40)")

// parseError is what, followed by err's message unless that holds three
// characters in a row (or all, when shorter) of a password written in raw;
// then a hint instead. The connection string pgx quotes in its message
// (`cannot parse `+"`...`"+`: reason`) is left out first: the key and line
// already say which it is, pgx masks only a password it can find there,
// and any other value quoted in it (a query parameter made of the same
// secret) made every such message the hint, the reason lost.
func parseError(raw, what string, err error) error {
	msg := quotedConnection.ReplaceAllString(err.Error(), "the connection string")
	for _, sp := range connectionPasswords(raw) {
		pw := raw[sp[0]:sp[1]]
		n := min(3, len(pw))
		for i := 0; i+n <= len(pw); i++ {
			if strings.Contains(msg, pw[i:i+n]) {
				return fmt.Errorf("%s (a '/', '?', '#' or '@' in a user name or password must be percent-encoded: %%2F, %%3F, %%23, %%40)", what)
			}
		}
	}
	return fmt.Errorf("%s: %s", what, msg)
}
