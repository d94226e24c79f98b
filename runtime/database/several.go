package database

import (
	"context"
	"strings"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

// checkSeveral checks, on SQLite, a call of several statements, before
// any runs (docs/database.md, "Several statements in one call"). Where
// PostgreSQL parses a call whole and runs none of it when one statement
// is refused, SQLite runs each statement as it comes to it, and would
// commit those before the one it refuses; and it runs a Query's every
// statement and returns the last one's rows ("SELECT ...; DELETE FROM t"
// deleted), and numbers each statement's ? placeholders from the first
// argument (the second statement's ? is the first argument again). So:
//   - every statement is compiled first, not run (at most as long as the
//     statement's time allows: the run would take longer), and
//     one the sandbox does not allow refuses the call as such, ErrDenied
//     from its authorizer ("DELETE FROM t; ATTACH ..."), whatever comes
//     before it;
//   - a Query, or an Exec with arguments, of several statements is then
//     refused with ErrInvalid, naming the byte where the second begins,
//     as PostgreSQL refuses them (42601);
//   - an Exec without arguments runs every statement, on both, as a
//     migration's file does.
func (p *PluginDB) checkSeveral(ctx, sctx context.Context, lim Limits, r runner, st *hostfuncs.Statement, query bool) error {
	if p.svc.cfg.Client != ClientSQLite {
		return nil
	}
	at := secondStatement(st.SQL)
	if at < 0 {
		return nil
	}
	q := st.SQL
	for q != "" {
		if err := sctx.Err(); err != nil {
			return p.fail(ctx, sctx, lim, st, err)
		}
		end := secondStatement(q)
		if end < 0 {
			end = len(q)
		}
		// The driver compiles a statement as it prepares it, calling the
		// authorizer; closing it runs nothing. A statement that does not
		// compile yet (its table is created by one before it) is left
		// for the run to report.
		s, err := r.PrepareContext(sctx, q[:end])
		if err == nil {
			s.Close()
		} else if err = p.fail(ctx, sctx, lim, st, err); failedWith(err, hostfuncs.ErrDenied) || failedWith(err, hostfuncs.ErrTimeout) {
			return err
		}
		q = q[end:]
	}
	switch {
	case query:
		return hostfuncs.Failf(hostfuncs.ErrInvalid, "statement refused: several statements in one query (the second begins at byte %d); SQLite would run them all and return only the last one's rows: send one statement per query", at)
	case len(st.Args) > 0:
		return hostfuncs.Failf(hostfuncs.ErrInvalid, "statement refused: several statements in a call with arguments (the second begins at byte %d); SQLite would run each with its own ? numbered from the first argument: send one statement per call when it has arguments", at)
	}
	return nil
}

// secondStatement returns the byte offset in q, SQLite text, of a second
// statement, or -1 when q holds at most one. A statement ends at a
// semicolon outside a string, a quoted identifier and a comment, except
// a CREATE TRIGGER, whose body holds statements of its own: it ends at
// the semicolon after its body's closing "; END". That is the rule of
// SQLite's sqlite3_complete(), followed here token by token; what comes
// after an end that is neither a space, a comment nor another semicolon
// begins the second statement.
func secondStatement(q string) int {
	st, ended := stStart, false // ended: a statement has ended
	for i := skipBlank(q, 0); i < len(q); i = skipBlank(q, i) {
		tok, next := sqlToken(q, i)
		if tok != tkSemi && st == stStart && ended {
			return i
		}
		to := statementStates[st][tok]
		ended = ended || (tok == tkSemi && st != stStart && to == stStart)
		st, i = to, next
	}
	return -1
}

// The states of secondStatement's reading of a statement, after
// sqlite3_complete's.
const (
	stStart   = iota // between statements
	stNormal         // in a statement that ends at a semicolon
	stExplain        // after a leading EXPLAIN (QUERY PLAN)
	stCreate         // after a leading CREATE (TEMP), perhaps a trigger's
	stTrigger        // in a CREATE TRIGGER, which ends at "; END;"
	stSemi           // in a trigger, after a semicolon
	stEnd            // in a trigger, after "; END"
)

// The tokens that move secondStatement from one state to another; every
// other token is tkOther.
const (
	tkSemi = iota
	tkOther
	tkExplain
	tkCreate
	tkTemp // TEMP or TEMPORARY
	tkTrigger
	tkEnd
)

// statementStates[state][token] is the state after token.
var statementStates = [...][7]int{
	//           semi     other      explain    create     temp       trigger    end
	stStart:   {stStart, stNormal, stExplain, stCreate, stNormal, stNormal, stNormal},
	stNormal:  {stStart, stNormal, stNormal, stNormal, stNormal, stNormal, stNormal},
	stExplain: {stStart, stExplain, stNormal, stCreate, stNormal, stNormal, stNormal},
	stCreate:  {stStart, stNormal, stNormal, stNormal, stCreate, stTrigger, stNormal},
	stTrigger: {stSemi, stTrigger, stTrigger, stTrigger, stTrigger, stTrigger, stTrigger},
	stSemi:    {stSemi, stTrigger, stTrigger, stTrigger, stTrigger, stTrigger, stEnd},
	stEnd:     {stStart, stTrigger, stTrigger, stTrigger, stTrigger, stTrigger, stTrigger},
}

// sqlToken reads the token at q[i], which is neither a space nor in a
// comment, and returns it and the offset past it: a semicolon, one of
// the keywords secondStatement follows, or any other token (a string, a
// quoted identifier, a word or number, or a single other byte).
func sqlToken(q string, i int) (tok, next int) {
	switch c := q[i]; {
	case c == ';':
		return tkSemi, i + 1
	case c == '\'' || c == '"' || c == '`':
		return tkOther, pastQuoted(q, i, c)
	case c == '[':
		if j := strings.IndexByte(q[i:], ']'); j >= 0 {
			return tkOther, i + j + 1
		}
		return tkOther, len(q)
	case !isIDChar(c):
		return tkOther, i + 1
	}
	j := i + 1
	for j < len(q) && isIDChar(q[j]) {
		j++
	}
	if c := q[i]; c >= '0' && c <= '9' {
		return tkOther, j // a number, whatever follows its digits
	}
	switch w := q[i:j]; {
	case strings.EqualFold(w, "explain"):
		return tkExplain, j
	case strings.EqualFold(w, "create"):
		return tkCreate, j
	case strings.EqualFold(w, "temp"), strings.EqualFold(w, "temporary"):
		return tkTemp, j
	case strings.EqualFold(w, "trigger"):
		return tkTrigger, j
	case strings.EqualFold(w, "end"):
		return tkEnd, j
	}
	return tkOther, j
}

// isIDChar reports whether c may be part of an SQLite identifier: an
// ASCII letter or digit, _, $, or a byte of a multi-byte character.
func isIDChar(c byte) bool {
	return c|0x20 >= 'a' && c|0x20 <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
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
