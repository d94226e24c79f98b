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
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'':
			// 'text' with '' escapes; E'..' adds backslash escapes.
			escapes := i > 0 && (q[i-1] == 'E' || q[i-1] == 'e') && (i == 1 || !isIdentChar(q[i-2]))
			i = skipQuoted(q, i, '\'', escapes)
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
			if tag, ok := dollarTag(q, i); ok {
				if j := strings.Index(q[i+len(tag):], tag); j >= 0 {
					i += len(tag) + j + len(tag)
				} else {
					i = len(q)
				}
			} else {
				i++
			}
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

// dollarTag returns the opening tag ($$ or $name$) of a dollar-quoted
// string starting at q[i], unless q[i] continues an identifier.
func dollarTag(q string, i int) (string, bool) {
	if i > 0 && isIdentChar(q[i-1]) {
		return "", false
	}
	return dollarTagAt(q, i)
}

// dollarTagAt is dollarTag for a $ known not to continue an identifier.
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
