package database

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// deniedCommand returns the name of a command in q that a plugin may not
// run on PostgreSQL, or "". A plugin's privileges are those of its role
// whatever it runs, so this is defence in depth with a clearer error: it
// refuses, in any statement of q,
//   - SET ROLE, RESET ROLE, SET SESSION AUTHORIZATION, RESET SESSION
//     AUTHORIZATION and changes of search_path (SET search_path, SET
//     SCHEMA, UPDATE pg_settings), and every set_config call but those
//     whose first argument is a plain string literal naming another
//     setting (set_config('statement_timeout', ...));
//   - ALTER ROLE, ALTER USER and ALTER GROUP (PostgreSQL lets a role change
//     its own password and session defaults);
//   - temporary objects (CREATE TEMP ..., SELECT ... INTO [LOCAL | GLOBAL]
//     TEMP, anything naming pg_temp), which live outside the plugin's
//     schema;
//   - LISTEN, UNLISTEN, NOTIFY and pg_notify: a plugin cannot receive
//     notifications, and the runtime drops them.
//
// Literals, quoted identifiers and comments are skipped, so a string
// mentioning them is not refused; q is read both as PostgreSQL reads it
// with standard_conforming_strings on and off (a session can turn it off,
// and then a backslash escapes a quote in every literal). Code PostgreSQL
// runs from inside the server (a DO block or a function's body) is not seen
// here: there, the role's privileges are what holds (see docs/database.md).
func deniedCommand(q string) string {
	for _, backslashes := range []bool{false, true} {
		if cmd := deniedIn(q, codeOnly(q, backslashes)); cmd != "" {
			return cmd
		}
	}
	return ""
}

// deniedIn checks q, whose code (codeOnly) is code.
func deniedIn(q, code string) string {
	for _, stmt := range strings.Split(code, ";") {
		// Words are runs of identifier characters: PostgreSQL needs no
		// space between a keyword and punctuation (SELECT*INTO).
		w := strings.FieldsFunc(lowerASCII(stmt), func(r rune) bool {
			return r < utf8.RuneSelf && !isIdentChar(byte(r)) && r != '$'
		})
		if len(w) == 0 {
			continue
		}
		if cmd := deniedWords(w); cmd != "" {
			return cmd
		}
	}
	lower := lowerASCII(code) // same offsets as q
	if len(identOccurrences(lower, "pg_temp")) > 0 {
		return "temporary objects (pg_temp)"
	}
	if len(identOccurrences(lower, "pg_notify")) > 0 {
		return "pg_notify"
	}
	for _, at := range identOccurrences(lower, "set_config") {
		name, ok := setConfigName(q, code, at+len("set_config"))
		if !ok {
			return "set_config(...) with a setting name other than a plain string literal"
		}
		switch name = lowerASCII(strings.TrimSpace(name)); name {
		case "role", "session_authorization", "search_path":
			return "set_config('" + name + "', ...)"
		}
	}
	return ""
}

// deniedWords checks one statement, as lower-case words.
func deniedWords(w []string) string {
	verb, rest := w[0], w[1:]
	if len(rest) == 0 {
		rest = []string{""} // UNLISTEN *
	}
	switch verb {
	case "set", "reset":
		if rest[0] == "session" && len(rest) > 1 && rest[1] == "authorization" {
			return strings.ToUpper(verb) + " SESSION AUTHORIZATION"
		}
		if verb == "set" && (rest[0] == "session" || rest[0] == "local") && len(rest) > 1 {
			rest = rest[1:]
		}
		switch {
		case rest[0] == "role":
			return strings.ToUpper(verb) + " ROLE"
		case rest[0] == "session_authorization",
			rest[0] == "session" && len(rest) > 1 && rest[1] == "authorization":
			return strings.ToUpper(verb) + " SESSION AUTHORIZATION"
		case verb == "set" && (rest[0] == "search_path" || rest[0] == "schema"):
			return "SET search_path"
		}
	case "alter":
		switch rest[0] {
		case "role", "user", "group":
			return "ALTER " + strings.ToUpper(rest[0])
		}
	case "create":
		if len(rest) > 2 && rest[0] == "or" && rest[1] == "replace" {
			rest = rest[2:]
		}
		if len(rest) > 1 && (rest[0] == "global" || rest[0] == "local") {
			rest = rest[1:]
		}
		if rest[0] == "temp" || rest[0] == "temporary" {
			return "CREATE TEMPORARY"
		}
	case "listen", "unlisten", "notify":
		return strings.ToUpper(verb)
	}
	// SELECT ... INTO [LOCAL | GLOBAL] TEMP t, also after WITH; not
	// INSERT INTO temp (a table of that name).
	last := ""
	update, settings := false, false
	for i := range w {
		switch w[i] {
		case "select", "insert", "update", "delete", "merge":
			last = w[i]
			update = update || w[i] == "update"
		case "pg_settings":
			settings = true
		case "into":
			if last == "select" && i+1 < len(w) {
				switch w[i+1] {
				case "temp", "temporary", "local", "global":
					return "SELECT INTO TEMPORARY"
				}
			}
		}
	}
	if update && settings {
		// pg_settings' update rule calls set_config.
		return "UPDATE pg_settings"
	}
	return ""
}

// identOccurrences returns where word occurs in code as a whole identifier
// (a qualifying "schema." before it is allowed).
func identOccurrences(code, word string) []int {
	var out []int
	for from := 0; ; {
		i := strings.Index(code[from:], word)
		if i < 0 {
			return out
		}
		i += from
		end := i + len(word)
		if (i == 0 || !isIdentChar(code[i-1]) && code[i-1] != '$') && (end == len(code) || !isIdentChar(code[end]) && code[end] != '$') {
			out = append(out, i)
		}
		from = end
	}
}

// setConfigName returns the first argument of the set_config call whose
// name ends at off when it is a plain string literal, ( 'name' , with no
// quote or backslash inside; ok is false for anything else (an escape
// string, an expression, a comment), which PostgreSQL could read as any
// name. code is q as codeOnly returns it.
func setConfigName(q, code string, off int) (name string, ok bool) {
	// The name may have been quoted ("set_config"): find the parenthesis
	// in code, where the rest of a quoted identifier and comments are
	// blank.
	i := off + len(code[off:]) - len(strings.TrimLeft(code[off:], spaces))
	if i >= len(q) || q[i] != '(' {
		return "", false
	}
	rest, ok := strings.CutPrefix(strings.TrimLeft(q[i+1:], spaces), "'")
	if !ok {
		return "", false
	}
	end := strings.IndexAny(rest, `'\`)
	if end < 0 || rest[end] != '\'' || !strings.HasPrefix(strings.TrimLeft(rest[end+1:], spaces), ",") {
		return "", false
	}
	return rest[:end], true
}

// spaces are PostgreSQL's white space.
const spaces = " \t\n\r\f\v"

// codeOnly returns q with string literals, quoted identifiers, dollar-quoted
// strings and comments replaced by spaces; a quoted identifier stays as its
// name, between spaces. backslashes reads every literal as an escape string
// (standard_conforming_strings off).
func codeOnly(q string, backslashes bool) string {
	b := []byte(q)
	blank := func(from, to int) {
		for k := from; k < to && k < len(b); k++ {
			b[k] = ' '
		}
	}
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'':
			escapes := backslashes || i > 0 && (q[i-1] == 'E' || q[i-1] == 'e') && (i == 1 || !isIdentChar(q[i-2]))
			j := skipQuoted(q, i, '\'', escapes)
			blank(i, j)
			i = j
		case c == '"':
			// A quoted identifier stays a word: "role" is still a role.
			from, j := i, skipQuoted(q, i, '"', false)
			word := strings.ReplaceAll(q[min(i+1, j):max(i+1, j-1)], `""`, `"`)
			if i >= 2 && q[i-1] == '&' && (q[i-2] == 'u' || q[i-2] == 'U') && (i == 2 || !isIdentChar(q[i-3]) && q[i-3] != '$') {
				// U&"d\0061ta" [UESCAPE '!']
				from = i - 2
				esc := byte('\\')
				if k := skipSpace(q, j); len(q)-k >= 7 && strings.EqualFold(q[k:k+7], "uescape") {
					if k = skipSpace(q, k+7); k+2 < len(q) && q[k] == '\'' && q[k+2] == '\'' {
						esc, j = q[k+1], k+3
					}
				}
				word = unicodeEscapes(word, esc)
			}
			blank(from, j)
			if !strings.ContainsAny(word, spaces+";") {
				copy(b[from+1:], word)
			}
			i = j
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := lineEnd(q, i)
			blank(i, j)
			i = j
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			j := skipBlockComment(q, i)
			blank(i, j)
			i = j
		case c == '$':
			// Identifiers were skipped whole (below), so a $ here is not
			// inside one: $1 or a dollar quote, after a number too.
			if tag, ok := dollarTagAt(q, i); ok {
				j := len(q)
				if k := strings.Index(q[i+len(tag):], tag); k >= 0 {
					j = i + len(tag) + k + len(tag)
				}
				blank(i, j)
				i = j
			} else {
				i++
			}
		case isIdentChar(c) && (c < '0' || c > '9'):
			// An identifier or keyword, where $ is a letter: x$$a$ is
			// one identifier, not x and a dollar quote.
			for i++; i < len(q) && (isIdentChar(q[i]) || q[i] == '$'); i++ {
			}
		default:
			i++
		}
	}
	return string(b)
}

// lowerASCII lowers ASCII letters only, as PostgreSQL does for identifiers,
// keeping every byte where it was.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// skipSpace returns the index of the first byte at or after i that is not
// white space or a comment.
func skipSpace(q string, i int) int {
	for i < len(q) {
		switch {
		case strings.IndexByte(spaces, q[i]) >= 0:
			i++
		case strings.HasPrefix(q[i:], "--"):
			i = lineEnd(q, i)
		case strings.HasPrefix(q[i:], "/*"):
			i = skipBlockComment(q, i)
		default:
			return i
		}
	}
	return i
}

// unicodeEscapes decodes the escapes of a U& identifier: esc followed by 4
// hex digits, by + and 6, or by itself.
func unicodeEscapes(s string, esc byte) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != esc {
			b.WriteByte(s[i])
			continue
		}
		n := 4
		switch {
		case i+1 < len(s) && s[i+1] == esc:
			b.WriteByte(esc)
			i++
			continue
		case i+1 < len(s) && s[i+1] == '+':
			n = 6
			i++
		}
		if i+n >= len(s) {
			b.WriteString(s[i:])
			break
		}
		r, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32)
		if err != nil {
			b.WriteByte(s[i])
			continue
		}
		b.WriteRune(rune(r))
		i += n
	}
	return b.String()
}
