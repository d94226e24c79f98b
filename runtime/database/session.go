package database

import "strings"

// deniedSessionCommand returns the name of a session command in q that a
// plugin may not run on PostgreSQL, or "". A plugin's privileges are those
// of its role whatever it runs, so this is defence in depth with a clearer
// error: it refuses, in any statement of q, SET ROLE, RESET ROLE,
// SET SESSION AUTHORIZATION, RESET SESSION AUTHORIZATION and changes of
// search_path (SET search_path, SET SCHEMA). Literals, quoted identifiers
// and comments are skipped, so a string mentioning them is not refused.
func deniedSessionCommand(q string) string {
	for _, stmt := range strings.Split(codeOnly(q), ";") {
		w := strings.Fields(strings.ToLower(stmt))
		if len(w) < 2 || (w[0] != "set" && w[0] != "reset") {
			continue
		}
		verb, rest := w[0], w[1:]
		if rest[0] == "session" && len(rest) > 1 && rest[1] == "authorization" {
			return strings.ToUpper(verb) + " SESSION AUTHORIZATION"
		}
		if verb == "set" && (rest[0] == "session" || rest[0] == "local") && len(rest) > 1 {
			rest = rest[1:]
		}
		switch {
		case rest[0] == "role":
			return strings.ToUpper(verb) + " ROLE"
		case rest[0] == "session" && len(rest) > 1 && rest[1] == "authorization":
			return strings.ToUpper(verb) + " SESSION AUTHORIZATION"
		case verb == "set" && (strings.HasPrefix(rest[0], "search_path") || rest[0] == "schema"):
			return "SET search_path"
		}
	}
	return ""
}

// codeOnly returns q with string literals, quoted identifiers, dollar-quoted
// strings and comments replaced by spaces.
func codeOnly(q string) string {
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
			escapes := i > 0 && (q[i-1] == 'E' || q[i-1] == 'e') && (i == 1 || !isIdentChar(q[i-2]))
			j := skipQuoted(q, i, '\'', escapes)
			blank(i, j)
			i = j
		case c == '"':
			// A quoted identifier stays a word: "role" is still a role.
			j := skipQuoted(q, i, '"', false)
			word := strings.ReplaceAll(q[min(i+1, j):max(i+1, j-1)], `""`, `"`)
			blank(i, j)
			if !strings.ContainsAny(word, " \t\n;") {
				copy(b[i:], word)
			}
			i = j
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := len(q)
			if k := strings.IndexByte(q[i:], '\n'); k >= 0 {
				j = i + k
			}
			blank(i, j)
			i = j
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			j := skipBlockComment(q, i)
			blank(i, j)
			i = j
		case c == '$':
			if tag, ok := dollarTag(q, i); ok {
				j := len(q)
				if k := strings.Index(q[i+len(tag):], tag); k >= 0 {
					j = i + len(tag) + k + len(tag)
				}
				blank(i, j)
				i = j
			} else {
				i++
			}
		default:
			i++
		}
	}
	return string(b)
}
