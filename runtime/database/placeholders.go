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
			i = skipQuoted(q, i, '\'', escapeString(q, i, word))
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
