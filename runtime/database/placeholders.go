package database

import (
	"strconv"
	"strings"
)

// Plugins write placeholders as `?` or `$1, $2, ...` (not both in one
// statement). SQLite understands both. PostgreSQL understands only `$n`, so
// for it questionMarksToDollars rewrites each `?` outside string literals,
// quoted identifiers, comments and dollar-quoted strings to `$1`, `$2`, ...
// A statement that already uses `$n`, or has no arguments, is left alone,
// so PostgreSQL's jsonb `?` operators keep working there.

// questionMarksToDollars rewrites `?` placeholders to `$n`. args is the
// number of arguments passed with the statement.
func questionMarksToDollars(q string, args int) string {
	if args == 0 || strings.IndexByte(q, '?') < 0 {
		return q
	}
	var b strings.Builder
	n := 0
	last := 0
	word := [2]int{-1, -1} // where the last identifier or keyword began and ended
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'':
			// 'text' with '' escapes; E'..' adds backslash escapes.
			i = skipLiteral(q, i, escapeString(q, i, word))
		case c == '"':
			i = skipQuoted(q, i, '"', false)
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			i = lineEnd(q, i)
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			i = skipBlockComment(q, i)
		case c == '$':
			if i+1 < len(q) && q[i+1] >= '0' && q[i+1] <= '9' && (i == 0 || !isIdentChar(q[i-1])) {
				return q // already numbered
			}
			// Identifiers were skipped whole (below), so a $ here is not
			// inside one.
			if tag, ok := dollarTagAt(q, i); ok {
				if j := strings.Index(q[i+len(tag):], tag); j >= 0 {
					i += len(tag) + j + len(tag)
				} else {
					i = len(q)
				}
			} else {
				i++
			}
		case isIdentChar(c) && (c < '0' || c > '9'):
			// An identifier or keyword, where $ is a letter: x$$a$ is
			// one identifier, not x and a dollar quote.
			word[0] = i
			for i++; i < len(q) && (isIdentChar(q[i]) || q[i] == '$'); i++ {
			}
			word[1] = i
		case c == '?':
			n++
			b.WriteString(q[last:i])
			if i > 0 && (isIdentChar(q[i-1]) || q[i-1] == '$') {
				// $n stays a token of its own: $a? must not become $a$1,
				// a dollar quote that would hide or show what follows.
				b.WriteByte(' ')
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			i++
			last = i
			if i < len(q) && q[i] >= '0' && q[i] <= '9' {
				// ?1 (SQLite's numbered form) must not become $11.
				b.WriteByte(' ')
			}
		default:
			i++
		}
	}
	if n == 0 {
		return q
	}
	b.WriteString(q[last:])
	return b.String()
}

func isIdentChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// skipLiteral returns the index after the string literal opened at q[i]
// (a quote), with backslash escapes or not, and after the parts PostgreSQL
// joins to it: a quoted part that follows it after white space holding a
// newline ('a'\n'b' is 'ab', also with a -- comment before the newline)
// continues the literal, read with its escapes. Read as two literals, an
// E'x' followed by '\' ... ' on the next line would end where the server's
// does not, and hide the code between from the statement filter.
func skipLiteral(q string, i int, backslash bool) int {
	j := skipQuoted(q, i, '\'', backslash)
	for {
		k, ok := continuedAt(q, j)
		if !ok {
			return j
		}
		j = skipQuoted(q, k, '\'', backslash)
	}
}

// continuedAt reports whether a string literal that ended at q[j] goes on
// (PostgreSQL's quotecontinue: horizontal white space or a -- comment, a
// newline, then white space, newlines or -- comments, then a quote), and
// where its next part's quote is. A vertical tab counts as white space: it
// is for PostgreSQL 16 and later, and earlier ones refuse the whole query
// string with it there, so no reading runs code this one took for text.
func continuedAt(q string, j int) (int, bool) {
	newline := false
	for k := j; k < len(q); {
		switch c := q[k]; {
		case c == ' ' || c == '\t' || c == '\f' || c == '\v':
			k++
		case c == '\n' || c == '\r':
			newline = true
			k++
		case c == '-' && k+1 < len(q) && q[k+1] == '-':
			k = lineEnd(q, k)
		case c == '\'' && newline:
			return k, true
		default:
			return 0, false
		}
	}
	return 0, false
}

// skipQuoted returns the index after the literal or identifier opened by
// quote at q[i]. A doubled quote is an escaped one.
func skipQuoted(q string, i int, quote byte, backslash bool) int {
	for j := i + 1; j < len(q); j++ {
		switch q[j] {
		case '\\':
			if backslash {
				j++
			}
		case quote:
			if j+1 < len(q) && q[j+1] == quote {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(q)
}

// skipBlockComment returns the index after the (nestable) /* */ comment at
// q[i].
func skipBlockComment(q string, i int) int {
	depth := 0
	for j := i; j+1 < len(q); j++ {
		switch {
		case q[j] == '/' && q[j+1] == '*':
			depth++
			j++
		case q[j] == '*' && q[j+1] == '/':
			depth--
			j++
			if depth == 0 {
				return j + 1
			}
		}
	}
	return len(q)
}

// lineEnd returns the end of the -- comment at q[i]: PostgreSQL ends it at
// a carriage return as well as at a newline.
func lineEnd(q string, i int) int {
	if j := strings.IndexAny(q[i:], "\r\n"); j >= 0 {
		return i + j
	}
	return len(q)
}

// escapeString reports whether the literal opened by the quote at q[i] is
// an escape string (E'...'): the identifier or keyword just before the
// quote, which began at word[0] and ended at word[1], is E alone. In x$E'...'
// or xE'...' the E ends a longer identifier, and the literal is a plain one.
func escapeString(q string, i int, word [2]int) bool {
	return word[1] == i && word[0] == i-1 && (q[i-1] == 'E' || q[i-1] == 'e')
}

// dollarTagAt returns the opening tag ($$ or $name$) of a dollar-quoted
// string starting at q[i], a $ known not to continue an identifier.
func dollarTagAt(q string, i int) (string, bool) {
	for j := i + 1; j < len(q); j++ {
		c := q[j]
		if c == '$' {
			return q[i : j+1], true
		}
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80 || (j > i+1 && c >= '0' && c <= '9')) {
			return "", false
		}
	}
	return "", false
}

// Objects that belong to no schema. The statement filter (deniedCommand,
// in session.go) refuses, in each statement, what would make a plugin
// create or reach an object of the whole database rather than of its own
// schema, which would outlive its schema and could be shared with other
// plugins; deniedGlobal checks a statement for them.

// largeObjectFunctions are PostgreSQL's server-side large object functions
// (https://www.postgresql.org/docs/current/lo-funcs.html, and the
// descriptor-level ones of lo-interfaces: lo_open, loread, lowrite, ...).
// A large object belongs to the database, not to a schema: a plugin could
// create one (lo_create(424242) squats a fixed OID), grant it to PUBLIC and
// have another plugin read it, and it outlives the plugin's schema. Any
// mention of these names as an identifier is refused, not only a call:
// an operator or an aggregate can call a function named in its definition
// (CREATE OPERATOR ### (..., FUNCTION = lo_from_bytea)).
var largeObjectFunctions = map[string]bool{
	"lo_creat": true, "lo_create": true, "lo_from_bytea": true, "lo_import": true, "lo_export": true,
	"lo_put": true, "lo_get": true, "lo_unlink": true, "lo_open": true, "lo_close": true,
	"lo_truncate": true, "lo_truncate64": true, "lo_lseek": true, "lo_lseek64": true,
	"lo_tell": true, "lo_tell64": true, "loread": true, "lowrite": true,
}

// outsideSchema says why deniedGlobal refuses a command.
const outsideSchema = "belong to the whole database, not to the plugin's schema"

// deniedGlobal checks one statement, as tokens t (lower case) and its words
// w, for what creates or reaches objects of no schema:
//   - large objects: any mention of a large object function (above), and
//     the commands on large objects (GRANT and REVOKE ... ON LARGE OBJECT,
//     ALTER LARGE OBJECT, COMMENT or SECURITY LABEL ON LARGE OBJECT, ALTER
//     DEFAULT PRIVILEGES ... ON LARGE OBJECTS);
//   - CREATE CAST and DROP CAST: a cast is a row of pg_cast, of the whole
//     database (PostgreSQL lets a role that owns a type cast it);
//   - CREATE OPERATOR whose FUNCTION (or PROCEDURE) is named by a string
//     literal, which PostgreSQL accepts (FUNCTION = 'lo_from_bytea') and
//     the filter does not read as a name;
//   - PREPARE TRANSACTION, whose transaction outlives the session (and
//     holds its locks) until someone commits or rolls it back.
//
// The other commands that make such objects (CREATE ACCESS METHOD, EVENT
// TRIGGER, OPERATOR CLASS or FAMILY, LANGUAGE, TRANSFORM, PUBLICATION,
// SUBSCRIPTION, TABLESPACE, SCHEMA, ROLE, DATABASE) are the server's to
// refuse: they need privileges a plugin's role lacks (see docs/database.md).
func deniedGlobal(t, w []string) string {
	for _, tok := range t {
		if largeObjectFunctions[tok] {
			return tok + " (large objects " + outsideSchema + ": store bytes in a bytea column)"
		}
	}
	for i := 1; i+1 < len(w); i++ {
		if w[i] == "large" && (w[i+1] == "object" || w[i+1] == "objects") && (w[i-1] == "on" || i == 1 && w[0] == "alter") {
			cmd := strings.ToUpper(w[0]) + " ... ON LARGE OBJECT"
			if w[i-1] != "on" {
				cmd = "ALTER LARGE OBJECT"
			}
			return cmd + " (large objects " + outsideSchema + ")"
		}
	}
	if w[0] == "grant" || w[0] == "revoke" {
		// GRANT ... ON DATABASE grants a plugin role nothing (PostgreSQL
		// warns), yet updates and locks the database's row of
		// pg_database until the transaction ends: one left open stalls
		// the runtime's grant of CONNECT to a new plugin's role, makes
		// it fail ("tuple concurrently updated"), and holds VACUUM back.
		// ON TABLESPACE is the same, for a row of the whole cluster.
		for i := 1; i+1 < len(t); i++ {
			// ON DATABASE names the database next; a table called
			// database is followed by TO, FROM or a comma instead.
			if t[i] == "on" && (t[i+1] == "database" || t[i+1] == "tablespace") &&
				(i+2 >= len(t) || t[i+2] != "to" && t[i+2] != "from" && t[i+2] != ",") {
				return strings.ToUpper(w[0]) + " ... ON " + strings.ToUpper(t[i+1]) + " (it grants a plugin nothing, and locks the " + t[i+1] + "'s catalog row, shared by every plugin and the runtime, until the transaction ends)"
			}
		}
	}
	if len(w) > 1 && w[1] == "cast" && (w[0] == "create" || w[0] == "drop") {
		return strings.ToUpper(w[0]) + " CAST (casts " + outsideSchema + ")"
	}
	if len(t) == 2 && t[0] == "prepare" && t[1] == "transaction" {
		// PREPARE TRANSACTION 'id' (the literal is not among the tokens);
		// PREPARE transaction AS ... prepares a statement of that name.
		return "PREPARE TRANSACTION (a prepared transaction outlives the plugin's session)"
	}
	if len(t) > 2 && t[0] == "create" && t[1] == "operator" && t[2] != "class" && t[2] != "family" {
		for k := 3; k+1 < len(t); k++ {
			if (t[k] == "function" || t[k] == "procedure") && t[k+1] == "=" && dottedName(t, k+2) == "" {
				return "CREATE OPERATOR with a function named by a string"
			}
		}
	}
	return ""
}
