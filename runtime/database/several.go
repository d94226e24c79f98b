package database

import (
	"strings"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

// checkSeveral refuses, on SQLite, several statements in one Exec with
// arguments (docs/database.md, "Several statements in one call"):
// SQLite would run them all, numbering each statement's own ?
// placeholders from the first argument (the second statement's ? is the
// first argument again), where PostgreSQL refuses them (42601). An Exec
// without arguments runs every statement, on both, as a migration's file
// does. (A Query of several statements is left to SQLite, which runs
// them and returns the last one's rows: refusing it here would answer
// ErrInvalid where the sandbox's authorizer answers ErrDenied for a
// statement it does not allow, such as "SELECT 1; ATTACH ...".)
func (p *PluginDB) checkSeveral(st *hostfuncs.Statement) error {
	if p.svc.cfg.Client != ClientSQLite || len(st.Args) == 0 {
		return nil
	}
	at := secondStatement(st.SQL)
	if at < 0 {
		return nil
	}
	return hostfuncs.Failf(hostfuncs.ErrInvalid, "statement refused: several statements in a call with arguments (the second begins at byte %d); SQLite would run each with its own ? numbered from the first argument: send one statement per call when it has arguments", at)
}

// secondStatement returns the byte offset in q, SQLite text, of a second
// statement, or -1 when q holds at most one: past the first semicolon
// outside a string, a quoted identifier and a comment, anything but
// spaces, comments and further semicolons. A CREATE statement is taken
// as one: a trigger's body holds statements ended by semicolons (and
// SQLite refuses parameters in a trigger anyway).
func secondStatement(q string) int {
	i := skipBlank(q, 0)
	if w := leadingWord(q[i:]); strings.EqualFold(w, "create") {
		return -1
	}
	for ended := false; ; { // ended: a semicolon ended the first statement
		if i = skipBlank(q, i); i >= len(q) {
			return -1
		}
		c := q[i]
		switch {
		case c == ';':
			ended = true
			i++
		case ended:
			return i
		case c == '\'' || c == '"' || c == '`':
			i = pastQuoted(q, i, c)
		case c == '[':
			if j := strings.IndexByte(q[i:], ']'); j >= 0 {
				i += j + 1
			} else {
				i = len(q)
			}
		default:
			i++
		}
	}
}

// skipBlank returns the offset of q's first byte from i on that is
// neither a space nor in a comment (-- to the line's end, /* */ or to
// q's end), as SQLite's tokenizer reads them; len(q) when there is none.
func skipBlank(q string, i int) int {
	for i < len(q) {
		switch c := q[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				return len(q)
			}
			i += j + 1
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			j := strings.Index(q[i+2:], "*/")
			if j < 0 {
				return len(q)
			}
			i += 2 + j + 2
		default:
			return i
		}
	}
	return i
}

// pastQuoted returns the offset just past the quoted token beginning at
// q[i] with quote, where a doubled quote stands for itself (or len(q)
// when it is not closed).
func pastQuoted(q string, i int, quote byte) int {
	for i++; i < len(q); i++ {
		if q[i] == quote {
			if i+1 < len(q) && q[i+1] == quote {
				i++
				continue
			}
			return i + 1
		}
	}
	return len(q)
}

// leadingWord is the run of ASCII letters q begins with.
func leadingWord(q string) string {
	j := 0
	for j < len(q) && q[j]|0x20 >= 'a' && q[j]|0x20 <= 'z' {
		j++
	}
	return q[:j]
}
