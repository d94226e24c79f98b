package database

import "strings"

// deniedCommand returns the name of a command in q that a plugin may not
// run on PostgreSQL, or "". A plugin's privileges are those of its role
// whatever it runs, so this is defence in depth with a clearer error: it
// refuses, in any statement of q,
//   - SET ROLE, RESET ROLE, SET SESSION AUTHORIZATION, RESET SESSION
//     AUTHORIZATION and changes of search_path (SET search_path, SET
//     SCHEMA), and their function forms (set_config('role' |
//     'session_authorization' | 'search_path', ...));
//   - ALTER ROLE, ALTER USER and ALTER GROUP (PostgreSQL lets a role change
//     its own password and session defaults);
//   - temporary objects (CREATE TEMP ..., SELECT ... INTO TEMP, anything
//     naming pg_temp), which live outside the plugin's schema.
//
// Literals, quoted identifiers and comments are skipped, so a string
// mentioning them is not refused. Code PostgreSQL runs from inside the
// server (a DO block or a function's body) is not seen here: there, the
// role's privileges are what holds (see docs/database.md).
func deniedCommand(q string) string {
	code := codeOnly(q)
	for _, stmt := range strings.Split(code, ";") {
		w := strings.Fields(strings.ToLower(stmt))
		if len(w) < 2 {
			continue
		}
		if cmd := deniedWords(w); cmd != "" {
			return cmd
		}
	}
	lower := strings.ToLower(code)
	if len(identOccurrences(lower, "pg_temp")) > 0 {
		return "temporary objects (pg_temp)"
	}
	for _, at := range identOccurrences(lower, "set_config") {
		if name, ok := firstLiteralArg(q, at+len("set_config")); ok {
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "role", "session_authorization", "search_path":
				return "set_config('" + strings.ToLower(strings.TrimSpace(name)) + "', ...)"
			}
		}
	}
	return ""
}

// deniedWords checks one statement, as lower-case words.
func deniedWords(w []string) string {
	verb, rest := w[0], w[1:]
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
		case rest[0] == "session" && len(rest) > 1 && rest[1] == "authorization":
			return strings.ToUpper(verb) + " SESSION AUTHORIZATION"
		case verb == "set" && (strings.HasPrefix(rest[0], "search_path") || rest[0] == "schema"):
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
	}
	// SELECT ... INTO TEMP t, also after WITH; not INSERT INTO temp (a
	// table of that name).
	last := ""
	for i := 0; i+1 < len(w); i++ {
		switch w[i] {
		case "select", "insert", "update", "delete", "merge":
			last = w[i]
		case "into":
			if last == "select" && (w[i+1] == "temp" || w[i+1] == "temporary") {
				return "SELECT INTO TEMPORARY"
			}
		}
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
		if (i == 0 || !isIdentChar(code[i-1])) && (end == len(code) || !isIdentChar(code[end])) {
			out = append(out, i)
		}
		from = end
	}
}

// firstLiteralArg returns the first argument of the call whose name ends
// at off in q when it is a plain string literal: ( 'text' ...
func firstLiteralArg(q string, off int) (string, bool) {
	rest := strings.TrimLeft(q[off:], " \t\r\n")
	rest, ok := strings.CutPrefix(rest, "(")
	if !ok {
		return "", false
	}
	rest = strings.TrimLeft(rest, " \t\r\n")
	rest, ok = strings.CutPrefix(rest, "'")
	if !ok {
		return "", false
	}
	end := strings.IndexByte(rest, '\'')
	if end < 0 {
		return "", false
	}
	return rest[:end], true
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
