package database

import (
	"slices"
	"strconv"
	"strings"
)

// deniedCommand returns the name of a command in q that a plugin may not
// run on PostgreSQL, or "". A plugin's privileges are those of its role
// whatever it runs, so this is defence in depth with a clearer error: it
// refuses, in any statement of q,
//   - SET ROLE, RESET ROLE, SET SESSION AUTHORIZATION, RESET SESSION
//     AUTHORIZATION and changes of the session's search_path (SET
//     search_path, SET SCHEMA, an UPDATE of pg_settings, a view or rule
//     over pg_settings, which an UPDATE could go through), and every
//     set_config call but those whose first argument is a plain string
//     literal naming another setting (set_config('statement_timeout',
//     ...)), and aggregates built on set_config or on a function named by
//     a string literal (SFUNC = 'set_config'). A function's own SET
//     search_path (CREATE FUNCTION ... SET search_path = ..., ALTER
//     FUNCTION ... SET) is not refused: it applies while that function
//     runs, with the plugin's privileges, as its body could set it;
//   - ALTER ROLE, ALTER USER and ALTER GROUP (PostgreSQL lets a role change
//     its own password and session defaults);
//   - temporary objects (CREATE [OR REPLACE] [LOCAL | GLOBAL] TEMP ...
//     anywhere in a statement, as after EXPLAIN ANALYZE, SELECT ... INTO
//     [LOCAL | GLOBAL] TEMP, a name qualified with pg_temp), which live
//     outside the plugin's schema;
//   - LISTEN, UNLISTEN, NOTIFY (also as a rule's action) and pg_notify
//     calls: a plugin cannot receive notifications, and the runtime drops
//     them;
//   - advisory locks (advisoryLocks): each one held takes a slot of the
//     server's shared lock table, one statement can take thousands, and a
//     full table refuses every new session of every database; the
//     session-level ones also outlive the request on a pooled connection;
//   - COPY ... FROM STDIN and COPY ... TO STDOUT: the runtime does not carry
//     COPY's data stream (FROM STDIN would wait for data until the
//     statement timeout, TO STDOUT return nothing);
//   - objects of no schema: large objects, casts, prepared transactions
//     (deniedGlobal, in placeholders.go);
//   - GRANT and ALTER DEFAULT PRIVILEGES, which would share the plugin's
//     objects with other roles (deniedSharing);
//   - SET, RESET and set_config of idle_in_transaction_session_timeout,
//     which the runtime sets in each of the plugin's transactions (idleWhy);
//   - /* comments nested more than maxCommentDepth deep, anywhere in q.
//
// Literals, quoted identifiers and comments are skipped, so a string
// mentioning them is not refused. q is read as PostgreSQL reads it with
// standard_conforming_strings on and, when backslashes is set (the
// session has it off, see checkSession) or q names that setting, also as
// with it off, when a backslash escapes a quote in every literal. Code
// PostgreSQL runs from inside the server (a DO block or a function's body)
// is not seen here: there, the role's privileges are what holds (see
// docs/database.md).
func deniedCommand(q string, backslashes bool) string {
	if depth := commentDepth(q); depth > maxCommentDepth {
		return "statements with /* comments nested " + strconv.Itoa(depth) + " deep (at most " + strconv.Itoa(maxCommentDepth) + "; PostgreSQL's parser takes time quadratic in the depth, and can be neither cancelled nor terminated meanwhile)"
	}
	code := codeOnly(q, false)
	if cmd := deniedIn(q, code); cmd != "" {
		return cmd
	}
	// The server parses a whole query string before it runs any of it, so
	// a SET earlier in q does not change how q is read; a statement naming
	// the setting is read both ways all the same.
	const setting = "standard_conforming_strings"
	if backslashes || strings.Contains(lowerASCII(q), setting) || strings.Contains(lowerASCII(code), setting) {
		return deniedIn(q, codeOnly(q, true))
	}
	return ""
}

// deniedIn checks q, whose code (codeOnly) is code.
func deniedIn(q, code string) string {
	for _, stmt := range strings.Split(code, ";") {
		if cmd := deniedStatement(tokens(lowerASCII(stmt))); cmd != "" {
			return cmd
		}
	}
	lower := lowerASCII(code) // same offsets as q
	for _, at := range identOccurrences(lower, "pg_temp") {
		// pg_temp.t, not a column or alias named pg_temp, nor a
		// function's SET search_path = ..., pg_temp.
		if nextByte(lower, at+len("pg_temp")) == '.' {
			return "temporary objects (pg_temp)"
		}
	}
	for _, at := range identOccurrences(lower, "pg_notify") {
		if nextByte(lower, at+len("pg_notify")) == '(' {
			return "pg_notify"
		}
	}

	for _, at := range identOccurrences(lower, "set_config") {
		if nextByte(lower, at+len("set_config")) != '(' {
			// A column or alias, not a call (an aggregate's SFUNC =
			// set_config is deniedStatement's).
			continue
		}
		name, ok := setConfigName(q, code, at+len("set_config"))
		if !ok {
			return "set_config(...) with a setting name other than a plain string literal"
		}
		switch name = lowerASCII(strings.TrimSpace(name)); name {
		case "role", "session_authorization", "search_path":
			return "set_config('" + name + "', ...)"
		case "idle_in_transaction_session_timeout":
			return "set_config('" + name + "', ...)" + idleWhy
		}
	}
	return ""
}

// advisoryLocks are the functions that take an advisory lock. Each lock
// held takes a slot of the server's shared lock table (sized by
// max_locks_per_transaction for the whole cluster), and one statement can
// take as many as it likes (count(pg_advisory_xact_lock(g)) over
// generate_series): a full table makes the server refuse every new session
// of every database ("out of shared memory") until the transaction ends,
// and a session-level lock would outlive the request on a pooled
// connection. A row lock (SELECT ... FOR UPDATE on a row of the plugin's
// own table) is kept in the row, not in that table.
var advisoryLocks = map[string]bool{
	"pg_advisory_lock": true, "pg_advisory_lock_shared": true, "pg_try_advisory_lock": true, "pg_try_advisory_lock_shared": true,
	"pg_advisory_xact_lock": true, "pg_advisory_xact_lock_shared": true, "pg_try_advisory_xact_lock": true, "pg_try_advisory_xact_lock_shared": true,
}

// deniedStatement checks one statement, as tokens.
func deniedStatement(t []string) string {
	var w []string // its words alone
	for _, tok := range t {
		if isWord(tok) {
			w = append(w, tok)
		}
	}
	if len(w) == 0 {
		return ""
	}
	if cmd := deniedVerb(w); cmd != "" {
		return cmd
	}
	if cmd := deniedGlobal(t, w); cmd != "" {
		return cmd
	}
	if cmd := deniedSharing(w); cmd != "" {
		return cmd
	}
	for _, tok := range t {
		// Any mention, as for large objects: an operator or aggregate
		// can call a function its definition names.
		if advisoryLocks[tok] {
			return tok + " (an advisory lock: each takes a slot of the server's lock table, shared by every database, and one statement can fill it; lock a row of the plugin's own table with SELECT ... FOR UPDATE instead)"
		}
	}
	for i := range w {
		if w[i] == "create" && createsTemp(w[i+1:]) {
			// Also after EXPLAIN ANALYZE, which runs it.
			return "CREATE TEMPORARY"
		}
	}
	p := parens{t: t}
	for k, tok := range t {
		switch tok {
		case "into":
			// SELECT ... INTO [LOCAL | GLOBAL] TEMP t, also after WITH or
			// EXPLAIN; not INSERT INTO temp or MERGE INTO temp (a table of
			// that name), where INSERT or MERGE is the command, not a
			// column label (SELECT 1 insert INTO TEMP t).
			if k+1 < len(t) && tempWords[t[k+1]] && !(k > 0 && (t[k-1] == "insert" || t[k-1] == "merge") && commandAt(&p, k-1)) {
				return "SELECT INTO TEMPORARY"
			}
		case "notify":
			// A rule's action (DO ALSO NOTIFY c); at the start, deniedVerb.
			if ruleAction(t, k) {
				return "NOTIFY"
			}
		case "update":
			// pg_settings' update rule calls set_config; reading it is fine.
			if updateTarget(t, k) == "pg_settings" {
				return "UPDATE pg_settings"
			}
		}
	}
	if w[0] == "create" && slices.Contains(w, "pg_settings") && (slices.Contains(w, "view") || slices.Contains(w, "rule")) {
		// An UPDATE of the view, or a rule's, updates pg_settings.
		return "CREATE VIEW or RULE over pg_settings"
	}
	if cmd := aggregateSupport(t); cmd != "" {
		return cmd
	}
	if w[0] == "copy" && (slices.Contains(w, "stdin") || slices.Contains(w, "stdout")) {
		return "COPY ... FROM STDIN or TO STDOUT"
	}
	return ""
}

// transactionControl names the first statement of q that begins or ends
// a transaction (BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK but not
// ROLLBACK TO a savepoint, ABORT), or returns "". A migration runs in a
// transaction of the runtime's: one that ended it would run the rest of
// its statements outside, and be recorded as applied all the same.
//
// q is read both as with standard_conforming_strings on and as with it off
// (a backslash escaping a quote), as deniedCommand reads a statement that
// names the setting: a migration's connection may come with it off.
func transactionControl(q string) string {
	if cmd := transactionControlIn(codeOnly(q, false)); cmd != "" {
		return cmd
	}
	return transactionControlIn(codeOnly(q, true))
}

func transactionControlIn(code string) string {
	atomic := false // inside a BEGIN ATOMIC ... END function body
	for _, stmt := range strings.Split(code, ";") {
		t := tokens(lowerASCII(stmt))
		var w []string
		for _, tok := range t {
			if isWord(tok) {
				w = append(w, tok)
			}
		}
		if len(w) == 0 {
			continue
		}
		if atomic {
			// The body's statements, up to the END that closes it.
			if w[0] == "end" {
				atomic = false
			}
			continue
		}
		if atomic = opensAtomicBody(t, w); atomic {
			continue
		}
		switch w[0] {
		case "begin", "commit", "end", "abort":
			return strings.ToUpper(w[0])
		case "start":
			if len(w) > 1 && w[1] == "transaction" {
				return "START TRANSACTION"
			}
		case "rollback":
			if len(w) > 1 && w[1] == "to" {
				continue // to a savepoint
			}
			if len(w) > 2 && w[1] == "transaction" && w[2] == "to" || len(w) > 2 && w[1] == "work" && w[2] == "to" {
				continue
			}
			return "ROLLBACK"
		}
	}
	return ""
}

// pgStatementStarts returns the byte offset in q of each statement
// PostgreSQL runs when it is sent q as one query string (the simple
// protocol, as a migration file is sent), in order: where each statement's
// first token is, past spaces and comments. Statements end at a semicolon
// outside literals, dollar quotes, quoted identifiers and comments
// (codeOnly, with backslashes as the session reads literals) and outside
// parentheses (CREATE RULE ... DO ALSO (INSERT ...; INSERT ...) is one
// statement, where PostgreSQL's grammar has a semicolon in them), but for
// the body of a CREATE FUNCTION or PROCEDURE ... BEGIN ATOMIC, which ends
// at its END (as transactionControlIn reads it); empty statements (";;",
// a comment alone) are not run and not listed. A failing migration's
// error without a position is on the statement after those the server
// completed (execMigration).
func pgStatementStarts(q string, backslashes bool) []int {
	code := codeOnly(q, backslashes)
	var starts []int
	atomic := false
	for from := 0; from < len(code); {
		end, depth := from, 0
		for ; end < len(code) && (code[end] != ';' || depth > 0); end++ {
			switch code[end] {
			case '(':
				depth++
			case ')':
				depth--
			}
		}
		stmt := code[from:end]
		t := tokens(lowerASCII(stmt))
		var w []string
		for _, tok := range t {
			if isWord(tok) {
				w = append(w, tok)
			}
		}
		switch {
		case len(w) == 0 && len(strings.TrimSpace(stmt)) == 0:
		case atomic:
			atomic = w == nil || w[0] != "end"
		default:
			starts = append(starts, from+len(stmt)-len(strings.TrimLeft(stmt, spaces)))
			atomic = len(w) > 0 && opensAtomicBody(t, w)
		}
		from = end + 1
	}
	return starts
}

// opensAtomicBody reports whether a statement, as tokens t and their words
// w, is CREATE [OR REPLACE] FUNCTION or PROCEDURE with a SQL-standard body
// (BEGIN ATOMIC ... END, whose statements transactionControlIn skips): the
// two words next to each other, outside parentheses. Not BEGIN and ATOMIC
// as two column names (SELECT begin, atomic FROM t, or v(begin, atomic))
// or as a parameter and its type (f(begin atomic)): taken for a body, they
// hid the COMMIT after them, and a migration committed half of itself.
// Nor an empty body (BEGIN ATOMIC END, which PostgreSQL takes), closed
// where it opens: taken for open, it hid every statement after it up to
// one beginning with END, and a COMMIT there ran.
func opensAtomicBody(t, w []string) bool {
	k := 1
	if len(w) > 3 && w[1] == "or" && w[2] == "replace" {
		k = 3
	}
	if w[0] != "create" || k >= len(w) || w[k] != "function" && w[k] != "procedure" {
		return false
	}
	depth := 0
	for i, tok := range t {
		switch tok {
		case "(":
			depth++
		case ")":
			depth--
		case "begin":
			if depth == 0 && i+1 < len(t) && t[i+1] == "atomic" {
				// A body statement never begins with END.
				return i+2 >= len(t) || t[i+2] != "end"
			}
		}
	}
	return false
}

// idleWhy is why a plugin may not change idle_in_transaction_session_timeout:
// the runtime sets it in each of the plugin's transactions (idleBound), so
// that the server ends one whose replica is held up (stopped, cut off)
// before the call's deadline or a global task's lease has passed, and
// another replica has taken over.
const idleWhy = " (the runtime bounds how long a plugin's transaction may sit idle, so that one whose replica is held up ends before another replica takes over)"

// databaseWhy is why a plugin may not create, drop or alter a database.
// With isolation = "schema" its SQL runs as the runtime's user, which
// often owns the database: ALTER DATABASE ... CONNECTION LIMIT 0, or a
// setting every new session fails on, locked every replica out (an
// audit). With isolation = "role" the server refuses them anyway.
const databaseWhy = " (the database and its settings are the operator's, shared by the runtime and every plugin)"

// deniedVerb checks the command a statement begins with, as lower-case
// words.
func deniedVerb(w []string) string {
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
		case rest[0] == "idle_in_transaction_session_timeout":
			return strings.ToUpper(verb) + " idle_in_transaction_session_timeout" + idleWhy
		}
	case "alter":
		switch rest[0] {
		case "role", "user", "group":
			return "ALTER " + strings.ToUpper(rest[0])
		case "database":
			return "ALTER DATABASE" + databaseWhy
		}
	case "create", "drop":
		if rest[0] == "database" {
			return strings.ToUpper(verb) + " DATABASE" + databaseWhy
		}
	case "listen", "unlisten", "notify":
		return strings.ToUpper(verb)
	}
	return ""
}

// deniedSharing refuses, in a statement's words w, what would share a
// plugin's objects with other roles (see pgshare.go): GRANT in every form
// (the plugin's role owns everything in its schema, so a grant can only
// give it to PUBLIC, which every other plugin's role is in, or to another
// role), and ALTER DEFAULT PRIVILEGES, which grants what is not yet made.
// REVOKE only takes away, and stays allowed.
func deniedSharing(w []string) string {
	const why = " (a plugin's objects are its own: a grant to PUBLIC or to another role would let other plugins read or write them)"
	switch {
	case w[0] == "grant":
		return "GRANT" + why
	case len(w) > 2 && w[0] == "alter" && w[1] == "default" && w[2] == "privileges":
		return "ALTER DEFAULT PRIVILEGES" + why
	}
	return ""
}

// createsTemp reports whether the words after CREATE make it create a
// temporary object: [OR REPLACE] [LOCAL | GLOBAL] TEMP | TEMPORARY.
func createsTemp(w []string) bool {
	if len(w) > 2 && w[0] == "or" && w[1] == "replace" {
		w = w[2:]
	}
	if len(w) > 1 && (w[0] == "global" || w[0] == "local") {
		w = w[1:]
	}
	return len(w) > 0 && (w[0] == "temp" || w[0] == "temporary")
}

// tempWords are the words after SELECT ... INTO that make a temporary
// table.
var tempWords = map[string]bool{"temp": true, "temporary": true, "local": true, "global": true}

// commandAt reports whether t[k] (INSERT, MERGE) is where a command
// begins, rather than a column label or name: at the start of the
// statement; after EXPLAIN and its options, or PREPARE name AS; as a
// WITH query's body, or after the WITH queries; as a rule's action. What
// comes before a label is an expression, which none of these can end. p
// holds the statement's tokens.
func commandAt(p *parens, k int) bool {
	t := p.t
	if k == 0 || ruleAction(t, k) {
		return true
	}
	switch t[k-1] {
	case "(":
		return withBody(t, k-1) // WITH x AS (INSERT ...)
	case ")":
		j := p.opening(k - 1)
		// WITH x AS (...) INSERT, EXPLAIN (ANALYZE) INSERT
		return j > 0 && (withBody(t, j) || j == 1 && t[0] == "explain")
	case "as":
		// PREPARE p [(types)] AS INSERT
		return t[0] == "prepare" && (k == 3 || k > 3 && t[k-2] == ")" && p.opening(k-2) == 2)
	}
	if t[0] == "explain" {
		// EXPLAIN [ANALYZE] [VERBOSE] INSERT
		for _, tok := range t[1:k] {
			if tok != "analyze" && tok != "analyse" && tok != "verbose" {
				return false
			}
		}
		return true
	}
	return false
}

// withBody reports whether the parenthesis t[j] opens a WITH query's body:
// AS (, AS [NOT] MATERIALIZED (.
func withBody(t []string, j int) bool {
	switch {
	case j >= 1 && t[j-1] == "as":
		return true
	case j >= 2 && t[j-1] == "materialized":
		return t[j-2] == "as" || j >= 3 && t[j-2] == "not" && t[j-3] == "as"
	}
	return false
}

// ruleAction reports whether t[k] begins an action of CREATE RULE: after
// DO, ALSO or INSTEAD, or a parenthesis after them.
func ruleAction(t []string, k int) bool {
	if t[0] != "create" || k < 1 {
		return false
	}
	if t[k-1] == "(" {
		k--
		if k < 1 {
			return false
		}
	}
	switch t[k-1] {
	case "do", "also", "instead":
		return true
	}
	return false
}

// parens are a statement's tokens t and, once asked for, where each of
// their parentheses opens: matched in one pass, so that a statement of many
// INSERT INTO TEMP after a parenthesis is read in linear time (searching
// back from each made it quadratic: seconds of host CPU for 1 MiB).
type parens struct {
	t    []string
	open []int // the index of the parenthesis each ) closes, or -1
}

// opening returns the index of the parenthesis that the one at t[k]
// closes, or -1.
func (p *parens) opening(k int) int {
	if p.open == nil {
		p.open = make([]int, len(p.t))
		var stack []int
		for j, tok := range p.t {
			p.open[j] = -1
			switch tok {
			case "(":
				stack = append(stack, j)
			case ")":
				if n := len(stack); n > 0 {
					p.open[j], stack = stack[n-1], stack[:n-1]
				}
			}
		}
	}
	return p.open[k]
}

// updateTarget returns the last part of the name of the relation that
// UPDATE at t[k] updates (after ONLY, a parenthesis, and its schema or
// database), or "".
func updateTarget(t []string, k int) string {
	i := k + 1
	if i < len(t) && t[i] == "only" {
		i++
	}
	if i < len(t) && t[i] == "(" {
		i++
	}
	return dottedName(t, i)
}

// dottedName returns the last part of the name a.b.c at t[i], or "" if no
// word is there.
func dottedName(t []string, i int) string {
	name := ""
	for ; i < len(t) && isWord(t[i]); i += 2 {
		name = t[i]
		if i+1 >= len(t) || t[i+1] != "." {
			break
		}
	}
	return name
}

// aggregateSupport checks CREATE AGGREGATE: the server calls its support
// functions (SFUNC, FINALFUNC, COMBINEFUNC, ...) with arguments this
// filter never sees, INITCOND among them, so SFUNC = set_config with
// INITCOND = 'search_path' would set search_path; and it takes such a
// function's name as a string literal too (SFUNC = 'set_config'), which
// the filter does not read as a name.
func aggregateSupport(t []string) string {
	i := 1
	if len(t) > 3 && t[1] == "or" && t[2] == "replace" {
		i = 3
	}
	if t[0] != "create" || i >= len(t) || t[i] != "aggregate" {
		return ""
	}
	for k := i; k+1 < len(t); k++ {
		if !isWord(t[k]) || !strings.HasSuffix(t[k], "func") || t[k+1] != "=" {
			continue
		}
		switch dottedName(t, k+2) {
		case "":
			return "CREATE AGGREGATE with a support function named by a string"
		case "set_config":
			return "CREATE AGGREGATE over set_config"
		}
	}
	return ""
}

// tokens splits the code of a statement into words (runs of identifier
// characters and $: PostgreSQL needs no space between a keyword and
// punctuation, SELECT*INTO) and single punctuation characters; white space
// goes.
func tokens(code string) []string {
	var t []string
	for i := 0; i < len(code); {
		j := i + 1
		switch c := code[i]; {
		case isIdentChar(c) || c == '$':
			for j < len(code) && (isIdentChar(code[j]) || code[j] == '$') {
				j++
			}
		case strings.IndexByte(spaces, c) >= 0:
			i = j
			continue
		}
		t = append(t, code[i:j])
		i = j
	}
	return t
}

// isWord reports whether a token of tokens is a word.
func isWord(tok string) bool {
	return tok != "" && (isIdentChar(tok[0]) || tok[0] == '$')
}

// nextByte returns the first byte of code at or after i that is not white
// space, or 0.
func nextByte(code string, i int) byte {
	if i = len(code) - len(strings.TrimLeft(code[min(i, len(code)):], spaces)); i < len(code) {
		return code[i]
	}
	return 0
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
	word := [2]int{-1, -1} // where the last identifier or keyword began and ended
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'':
			// An E or U& before the literal goes with it.
			from, escapes := i, escapeString(q, i, word)
			switch {
			case escapes:
				from = i - 1
			case i >= 2 && q[i-1] == '&' && word[1] == i-1 && word[0] == i-2 && (q[i-2] == 'u' || q[i-2] == 'U'):
				from = i - 2
			}
			j := skipLiteral(q, i, backslashes || escapes)
			blank(from, j)
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
			word[0] = i
			for i++; i < len(q) && (isIdentChar(q[i]) || q[i] == '$'); i++ {
			}
			word[1] = i
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

// maxCommentDepth is how deep /* */ comments may nest in a statement.
// PostgreSQL's lexer takes time quadratic in the depth (2 s at 20,000, 6 s
// with the comments closed), and checks for no interrupt meanwhile: a
// backend parsing such a statement ignores statement_timeout, a cancel
// and pg_terminate_backend, so a plugin could hold for as long the locks
// its transaction took before (see pgforeign.go). No statement written by
// hand nests comments more than a few deep.
const maxCommentDepth = 64

// commentDepth returns the deepest nesting of /* */ comments in q, read
// without regard to literals and quoted identifiers: the body of a DO
// block or a function is a literal to this statement, and PostgreSQL
// lexes it as code when it runs it.
func commentDepth(q string) int {
	depth, deepest := 0, 0
	for i := 0; i+1 < len(q); i++ {
		switch {
		case q[i] == '/' && q[i+1] == '*':
			depth++
			deepest = max(deepest, depth)
			i++
		case q[i] == '*' && q[i+1] == '/':
			depth = max(depth-1, 0)
			i++
		}
	}
	return deepest
}
