package database

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"modernc.org/libc"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQL functions of plugin connections that replace SQLite's built-ins.
//
// SQLite checks its interrupt (db_statement_timeout, a deadline) between
// the steps of a statement, never inside one function call, and some
// built-ins take time quadratic in the length of their arguments: instr,
// replace, trim/ltrim/rtrim with a character set, unhex with a set of
// ignored characters, LIKE and GLOB, json_patch. One call on values of a
// few hundred KB (db_max_result allows 8 MiB) could hold a CPU for
// minutes. The functions here give the same results as the built-ins,
// value and type, errors included, and take time linear (or n log n) in
// their arguments; LIKE and GLOB, whose matching is inherently a search,
// keep SQLite's algorithm with a bound on its work (likeBudget), and
// json_patch is SQLite's own under a bound (jsonPatchBudget). Each checks
// its statement's interrupt when it starts (the trampoline).
//
// They are registered on each plugin connection with SQLite's C API
// rather than through the driver's RegisterFunction, which can register
// one arity per name, passes text arguments cut at their first NUL byte,
// cannot report SQLITE_TOOBIG, and registers functions without
// SQLITE_INNOCUOUS: with trusted_schema off, such a function may not be
// used in a view, a trigger, a CHECK constraint or an index, which would
// break plugins' schemas that use LIKE or trim there.

// likeBudget bounds the work of one LIKE or GLOB call: the bytes it
// reads from its pattern and its value, counted over every retry after a
// wildcard. Past it the call fails with errLikeTooComplex. About 0.5 s of
// CPU on the machine that measured it; an ordinary pattern over an 8 MiB
// value takes a few times the value's length.
const likeBudget = 100_000_000

const errLikeTooComplex = "LIKE or GLOB pattern too complex for the value it is matched against (more than 100000000 steps)"

// sqlFunc is one replaced function.
type sqlFunc struct {
	name string
	nArg int32
	fn   func(c *fnCall)
	// trim flags: 1 left, 2 right.
	flags int
	info  *compareInfo
	// subtype: the function sets its result's subtype (SQLite's JSON
	// functions mark their text results as JSON).
	subtype bool
}

var sqlFuncs = []sqlFunc{
	{name: "instr", nArg: 2, fn: instrFunc},
	{name: "replace", nArg: 3, fn: replaceFunc},
	{name: "trim", nArg: 1, fn: trimFunc, flags: 3},
	{name: "trim", nArg: 2, fn: trimFunc, flags: 3},
	{name: "ltrim", nArg: 1, fn: trimFunc, flags: 1},
	{name: "ltrim", nArg: 2, fn: trimFunc, flags: 1},
	{name: "rtrim", nArg: 1, fn: trimFunc, flags: 2},
	{name: "rtrim", nArg: 2, fn: trimFunc, flags: 2},
	{name: "unhex", nArg: 2, fn: unhexFunc},
	{name: "like", nArg: 2, fn: likeFunc, info: &likeInfo},
	{name: "like", nArg: 3, fn: likeFunc, info: &likeInfo},
	{name: "glob", nArg: 2, fn: likeFunc, info: &globInfo},
	{name: "json_patch", nArg: 2, fn: jsonPatchFunc, subtype: true},
	{name: "jsonb_patch", nArg: 2, fn: jsonPatchFunc},
}

// registerSQLFuncs registers sqlFuncs on the driver connection dc, which
// must be one modernc.org/sqlite opened and nothing has used yet.
func registerSQLFuncs(dc any) error {
	db, tls, err := sqliteHandle(dc)
	if err != nil {
		return err
	}
	for i, f := range sqlFuncs {
		name, err := libc.CString(f.name)
		if err != nil {
			return err
		}
		flags := int32(sqlite3.SQLITE_UTF8 | sqlite3.SQLITE_DETERMINISTIC | sqlite3.SQLITE_INNOCUOUS)
		if f.subtype {
			flags |= sqlite3.SQLITE_RESULT_SUBTYPE
		}
		rc := sqlite3.Xsqlite3_create_function_v2(tls, db, name, f.nArg, flags,
			uintptr(i), cFuncPointer(sqlFuncTrampoline), 0, 0, 0)
		libc.Xfree(tls, name)
		if rc != sqlite3.SQLITE_OK {
			return fmt.Errorf("register %s/%d: SQLite error %d", f.name, f.nArg, rc)
		}
	}
	return nil
}

// sqliteHandle returns the sqlite3* handle of a connection the driver
// opened and the libc thread state it calls SQLite with. The driver does
// not export them; they are its connection's fields db and tls.
func sqliteHandle(dc any) (uintptr, *libc.TLS, error) {
	v := reflect.ValueOf(dc)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return 0, nil, fmt.Errorf("sqlite connection %T: not a pointer to a struct", dc)
	}
	v = v.Elem()
	db, tls := v.FieldByName("db"), v.FieldByName("tls")
	if !db.IsValid() || db.Kind() != reflect.Uintptr || !tls.IsValid() || tls.Type() != reflect.TypeFor[*libc.TLS]() {
		return 0, nil, fmt.Errorf("sqlite connection %T: no db uintptr and tls *libc.TLS fields", dc)
	}
	t := reflect.NewAt(tls.Type(), unsafe.Pointer(tls.UnsafeAddr())).Elem().Interface().(*libc.TLS)
	if db.Uint() == 0 || t == nil {
		return 0, nil, errors.New("sqlite connection without a handle")
	}
	return uintptr(db.Uint()), t, nil
}

// cFuncPointer returns the value SQLite (compiled to Go) calls as a C
// function pointer, as the driver does for its own callbacks.
func cFuncPointer[T any](f T) uintptr {
	return *(*uintptr)(unsafe.Pointer(&struct{ f T }{f}))
}

func sqlFuncTrampoline(tls *libc.TLS, ctx uintptr, argc int32, argv uintptr) {
	c := &fnCall{tls: tls, ctx: ctx, argc: argc, argv: argv}
	defer func() {
		if r := recover(); r != nil {
			c.error(fmt.Sprintf("internal error: %v", r))
		}
	}()
	f := &sqlFuncs[sqlite3.Xsqlite3_user_data(tls, ctx)]
	c.f = f
	// SQLite checks its interrupt (the statement's deadline) between the
	// steps of a statement, not between the function calls of one
	// expression: forty LIKE calls in one sum each under the budget ran
	// 8.7 s past a 1 s deadline. Each call checks it first.
	if c.interrupted() {
		sqlite3.Xsqlite3_result_error_code(tls, ctx, sqlite3.SQLITE_INTERRUPT)
		return
	}
	f.fn(c)
}

// interrupted reports whether the statement of the call was interrupted
// (sqlite3_interrupt: the driver does at its context's end).
func (c *fnCall) interrupted() bool {
	return sqlite3.Xsqlite3_is_interrupted(c.tls, sqlite3.Xsqlite3_context_db_handle(c.tls, c.ctx)) != 0
}

// fnCall is one call of a function: SQLite's context and arguments.
type fnCall struct {
	tls  *libc.TLS
	ctx  uintptr
	argc int32
	argv uintptr
	f    *sqlFunc
}

// ptr turns an address SQLite handed out into a pointer (memory outside
// the Go heap).
func ptr(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

func (c *fnCall) arg(i int) uintptr {
	return *(*uintptr)(unsafe.Add(ptr(c.argv), i*int(unsafe.Sizeof(uintptr(0)))))
}

func (c *fnCall) typ(i int) int32 { return sqlite3.Xsqlite3_value_type(c.tls, c.arg(i)) }

// text is sqlite3_value_text and sqlite3_value_bytes: ok is false when
// the text is a NULL pointer. The bytes are SQLite's until the call ends.
func (c *fnCall) text(i int) ([]byte, bool) {
	p := sqlite3.Xsqlite3_value_text(c.tls, c.arg(i))
	if p == 0 {
		return nil, false
	}
	n := sqlite3.Xsqlite3_value_bytes(c.tls, c.arg(i))
	return cBytes(p, n), true
}

func (c *fnCall) blob(i int) []byte {
	p := sqlite3.Xsqlite3_value_blob(c.tls, c.arg(i))
	n := sqlite3.Xsqlite3_value_bytes(c.tls, c.arg(i))
	return cBytes(p, n)
}

func cBytes(p uintptr, n int32) []byte {
	if p == 0 || n <= 0 {
		return []byte{}
	}
	return unsafe.Slice((*byte)(ptr(p)), n)
}

func (c *fnCall) limit(id int32) int64 {
	return int64(sqlite3.Xsqlite3_limit(c.tls, sqlite3.Xsqlite3_context_db_handle(c.tls, c.ctx), id, -1))
}

func (c *fnCall) resultInt(n int64) { sqlite3.Xsqlite3_result_int64(c.tls, c.ctx, n) }

func (c *fnCall) tooBig() { sqlite3.Xsqlite3_result_error_toobig(c.tls, c.ctx) }

func (c *fnCall) error(msg string) {
	z, err := libc.CString(msg)
	if err != nil {
		sqlite3.Xsqlite3_result_error_nomem(c.tls, c.ctx)
		return
	}
	sqlite3.Xsqlite3_result_error(c.tls, c.ctx, z, -1)
	libc.Xfree(c.tls, z)
}

// result sets the call's result to a copy of b, text or blob. The
// pointer handed to SQLite is never 0, which would make the result NULL.
func (c *fnCall) result(b []byte, text bool) {
	if int64(len(b)) > c.limit(sqlite3.SQLITE_LIMIT_LENGTH) {
		c.tooBig()
		return
	}
	p := sqlite3.Xsqlite3_malloc64(c.tls, uint64(len(b))+1)
	if p == 0 {
		sqlite3.Xsqlite3_result_error_nomem(c.tls, c.ctx)
		return
	}
	copy(unsafe.Slice((*byte)(ptr(p)), len(b)+1), b)
	if text {
		sqlite3.Xsqlite3_result_text64(c.tls, c.ctx, p, uint64(len(b)), sqlite3.SQLITE_TRANSIENT, sqlite3.SQLITE_UTF8)
	} else {
		sqlite3.Xsqlite3_result_blob64(c.tls, c.ctx, p, uint64(len(b)), sqlite3.SQLITE_TRANSIENT)
	}
	sqlite3.Xsqlite3_free(c.tls, p)
}

// isCont reports whether b is a UTF-8 continuation byte.
func isCont(b byte) bool { return b&0xc0 == 0x80 }

// instrFunc is instr(X,Y): SQLite's instrFunc, with bytes.Index in place
// of its byte-by-byte memcmp.
func instrFunc(c *fnCall) {
	th, tn := c.typ(0), c.typ(1)
	if th == sqlite3.SQLITE_NULL || tn == sqlite3.SQLITE_NULL {
		return
	}
	nNeedle := sqlite3.Xsqlite3_value_bytes(c.tls, c.arg(1))
	if nNeedle <= 0 {
		c.resultInt(1)
		return
	}
	var hay, needle []byte
	isText := true
	switch {
	case th == sqlite3.SQLITE_BLOB && tn == sqlite3.SQLITE_BLOB:
		hay, needle, isText = c.blob(0), c.blob(1), false
	case th != sqlite3.SQLITE_BLOB && tn != sqlite3.SQLITE_BLOB:
		var ok1, ok2 bool
		hay, ok1 = c.text(0)
		needle, ok2 = c.text(1)
		if !ok1 || !ok2 {
			sqlite3.Xsqlite3_result_error_nomem(c.tls, c.ctx)
			return
		}
	default:
		// One BLOB, one not: SQLite reads both as text (a copy, so
		// that the BLOB stays a BLOB). The bytes are the same.
		hay, needle = c.blob(0), c.blob(1)
		if th != sqlite3.SQLITE_BLOB {
			h, ok := c.text(0)
			if !ok {
				sqlite3.Xsqlite3_result_error_nomem(c.tls, c.ctx)
				return
			}
			hay = h
		}
		if tn != sqlite3.SQLITE_BLOB {
			n, ok := c.text(1)
			if !ok {
				sqlite3.Xsqlite3_result_error_nomem(c.tls, c.ctx)
				return
			}
			needle = n
		}
	}
	if len(needle) == 0 {
		c.resultInt(1)
		return
	}
	c.resultInt(instrIndex(hay, needle, isText))
}

// instrIndex is instr's result for non-empty needle. SQLite tries the
// needle at offset 0 and, for text, at each byte that is not a UTF-8
// continuation byte (it steps a character at a time, a character being a
// byte and the continuation bytes after it); the result counts the steps.
func instrIndex(hay, needle []byte, isText bool) int64 {
	if !isText {
		i := indexLinear(hay, needle)
		return int64(i + 1)
	}
	if isCont(needle[0]) {
		// Only offset 0 can start with a continuation byte.
		if bytes.HasPrefix(hay, needle) {
			return 1
		}
		return 0
	}
	i := indexLinear(hay, needle)
	if i < 0 {
		return 0
	}
	n := int64(1)
	for _, b := range hay[1 : i+1] {
		if !isCont(b) {
			n++
		}
	}
	return n
}

// replaceFunc is replace(X,Y,Z): SQLite's replaceFunc, with bytes.Index.
func replaceFunc(c *fnCall) {
	str, ok := c.text(0)
	if !ok {
		return
	}
	pat, ok := c.text(1)
	if !ok {
		return
	}
	if len(pat) == 0 || pat[0] == 0 {
		// SQLite returns X unchanged when Y is empty or begins with NUL.
		c.result(str, true)
		return
	}
	rep, ok := c.text(2)
	if !ok {
		return
	}
	limit := c.limit(sqlite3.SQLITE_LIMIT_LENGTH)
	if int64(len(str))+1 > limit {
		c.tooBig()
		return
	}
	var at []int // where pat is, left to right, not overlapping
	for i := 0; ; {
		j := indexLinear(str[i:], pat)
		if j < 0 {
			break
		}
		at = append(at, i+j)
		i += j + len(pat)
	}
	n := int64(len(at))
	if len(rep) > len(pat) && int64(len(str))+n*int64(len(rep)-len(pat)) > limit {
		c.tooBig()
		return
	}
	out := make([]byte, 0, len(str)+len(at)*(len(rep)-len(pat)))
	prev := 0
	for _, i := range at {
		out = append(append(out, str[prev:i]...), rep...)
		prev = i + len(pat)
	}
	c.result(append(out, str[prev:]...), true)
}

// indexLinear is bytes.Index in time linear in len(s) + len(sep) whatever
// the input: bytes.Index compares sep at every place its first byte
// occurs until those fail too often, which a periodic value keeps from
// happening (a 4 MiB value of period 16 and a needle of that period
// ending apart: 21 s in one instr). Past 16 bytes it is Rabin-Karp over
// the prime 2^61-1 with a base drawn at random for the process, so that
// no value can be made to collide.
func indexLinear(s, sep []byte) int {
	m := len(sep)
	if m <= 16 {
		return bytes.Index(s, sep)
	}
	if m > len(s) {
		return -1
	}
	var hs, hw, pow uint64 = 0, 0, 1
	for i := range m {
		hs = addMod(mulMod(hs, rkBase), uint64(sep[i])+1)
		hw = addMod(mulMod(hw, rkBase), uint64(s[i])+1)
		if i > 0 {
			pow = mulMod(pow, rkBase) // rkBase^(m-1)
		}
	}
	for i := 0; ; i++ {
		if hw == hs && bytes.Equal(s[i:i+m], sep) {
			return i
		}
		if i+m >= len(s) {
			return -1
		}
		hw = addMod(hw, rkMod-mulMod(uint64(s[i])+1, pow))
		hw = addMod(mulMod(hw, rkBase), uint64(s[i+m])+1)
	}
}

const rkMod = 1<<61 - 1

var rkBase = 256 + rand.Uint64N(rkMod-256)

// mulMod is a*b mod rkMod, for a, b < rkMod.
func mulMod(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	r := (hi<<3 | lo>>61) + lo&rkMod // 2^61 is 1 mod rkMod
	if r >= rkMod {
		r -= rkMod
	}
	return r
}

// addMod is a+b mod rkMod, for a, b < rkMod.
func addMod(a, b uint64) uint64 {
	r := a + b
	if r >= rkMod {
		r -= rkMod
	}
	return r
}

// trimFunc is trim, ltrim and rtrim with one or two arguments: SQLite's
// trimFunc. It removes, from the start (flags&1) then the end (flags&2),
// the first character of Y, in Y's order, that the value starts (ends)
// with, for as long as there is one. A character of Y is a byte, with the
// continuation bytes that follow it if it is 0xc0 or above; Y ends at its
// first NUL byte.
func trimFunc(c *fnCall) {
	if c.typ(0) == sqlite3.SQLITE_NULL {
		return
	}
	in, ok := c.text(0)
	if !ok {
		return
	}
	var set *trimSet
	if c.argc == 1 {
		set = newTrimSet([]byte(" "))
	} else {
		cs, ok := c.text(1)
		if !ok {
			return
		}
		if i := bytes.IndexByte(cs, 0); i >= 0 {
			cs = cs[:i]
		}
		// SQLite allocates a pointer and a length per character, and
		// refuses before it does (so before the set is built here: 2M
		// characters took seconds to sort).
		if n := int64(utf8CharLen(cs)); n > 0 && n*12 > c.limit(sqlite3.SQLITE_LIMIT_LENGTH) {
			c.tooBig()
			return
		}
		set = newTrimSet(cs)
	}
	lo, hi := 0, len(in)
	if set.n > 0 {
		if c.f.flags&1 != 0 {
			lo = set.trimLeft(in)
		}
		if c.f.flags&2 != 0 {
			hi = lo + set.trimRight(in[lo:])
		}
	}
	c.result(in[lo:hi], true)
}

// trimSet is the characters of trim's Y. A one-byte character's first
// position in Y is in single; the longer ones (a lead byte and
// continuation bytes) are in multi, sorted, each once with its first
// position.
type trimSet struct {
	n      int64 // characters in Y, repeats included
	single [256]int64
	multi  []trimChar
}

type trimChar struct {
	s   []byte
	pos int64
}

const noPos = int64(1) << 62

func newTrimSet(y []byte) *trimSet {
	t := &trimSet{}
	for i := range t.single {
		t.single[i] = noPos
	}
	for i := 0; i < len(y); {
		j := i + 1
		if y[i] >= 0xc0 {
			for j < len(y) && isCont(y[j]) {
				j++
			}
		}
		if j == i+1 {
			t.single[y[i]] = min(t.single[y[i]], t.n)
		} else {
			t.multi = append(t.multi, trimChar{s: y[i:j], pos: t.n})
		}
		t.n++
		i = j
	}
	sort.SliceStable(t.multi, func(a, b int) bool { return bytes.Compare(t.multi[a].s, t.multi[b].s) < 0 })
	// Keep each character once, at its first position (stable sort: the
	// first of equal ones comes first).
	out := t.multi[:0]
	for i, m := range t.multi {
		if i > 0 && bytes.Equal(m.s, out[len(out)-1].s) {
			continue
		}
		out = append(out, m)
	}
	t.multi = out
	return t
}

// prefixes calls f(k, pos) for each multi-byte character of the set that
// is in[:k], shortest first, walking the sorted list down one byte at a
// time: O(len * log(characters)).
func (t *trimSet) prefixes(in []byte, f func(k int, pos int64)) {
	lo, hi := 0, len(t.multi)
	for d := 0; d < len(in) && lo < hi; d++ {
		b := in[d]
		// Narrow [lo,hi) to the characters whose byte d is b; those
		// of length d (shorter) sort first and drop out.
		lo = lo + sort.Search(hi-lo, func(i int) bool {
			s := t.multi[lo+i].s
			return len(s) > d && s[d] >= b
		})
		hi = lo + sort.Search(hi-lo, func(i int) bool {
			s := t.multi[lo+i].s
			return s[d] > b
		})
		if lo < hi && len(t.multi[lo].s) == d+1 {
			f(d+1, t.multi[lo].pos)
		}
	}
}

// trimLeft returns how many bytes trim removes from in's start.
func (t *trimSet) trimLeft(in []byte) int {
	q := 0
	for q < len(in) {
		best, bestLen := t.single[in[q]], 1
		if in[q] >= 0xc0 {
			end := q + 1
			for end < len(in) && isCont(in[end]) {
				end++
			}
			t.prefixes(in[q:end], func(k int, pos int64) {
				if pos < best {
					best, bestLen = pos, k
				}
			})
		}
		if best == noPos {
			break
		}
		q += bestLen
	}
	return q
}

// trimRight returns how many bytes of in remain once trim removes what it
// removes from in's end.
func (t *trimSet) trimRight(in []byte) int {
	p := len(in)
	for p > 0 {
		// in[s+1:p] is a run of continuation bytes and in[s] is not
		// one: a character longer than a byte that ends within the run
		// starts at s.
		s := p - 1
		for s >= 0 && isCont(in[s]) {
			s--
		}
		var term []int64 // term[k]: first position of the character in[s:s+k]
		if s >= 0 && in[s] >= 0xc0 && p-s >= 2 {
			term = make([]int64, p-s+1)
			for i := range term {
				term[i] = noPos
			}
			t.prefixes(in[s:p], func(k int, pos int64) { term[k] = pos })
		}
		for {
			best, bestLen := t.single[in[p-1]], 1
			if term != nil && p-s >= 2 && term[p-s] < best {
				best, bestLen = term[p-s], p-s
			}
			if best == noPos {
				return p
			}
			p -= bestLen
			if p <= s+1 {
				break
			}
		}
	}
	return p
}

// unhexFunc is unhex(X,Y): SQLite's unhexFunc, with Y's characters in a
// set rather than searched for each character of X.
func unhexFunc(c *fnCall) {
	hex, ok1 := c.text(0)
	pass, ok2 := c.text(1)
	if !ok1 || !ok2 {
		return
	}
	if int64(len(hex)/2+1) > c.limit(sqlite3.SQLITE_LIMIT_LENGTH) {
		c.tooBig()
		return
	}
	allowed := map[uint32]bool{}
	for i := 0; i < len(pass); {
		var ch uint32
		ch, i = utf8Read(pass, i)
		allowed[ch] = true
	}
	if i := bytes.IndexByte(hex, 0); i >= 0 {
		hex = hex[:i]
	}
	out := make([]byte, 0, len(hex)/2)
	i := 0
	for i < len(hex) {
		for !isHex(hex[i]) {
			var ch uint32
			ch, i = utf8Read(hex, i)
			if !allowed[ch] {
				return
			}
			if i >= len(hex) {
				c.result(out, false)
				return
			}
		}
		h := hex[i]
		i++
		if i >= len(hex) || !isHex(hex[i]) {
			return
		}
		out = append(out, hexVal(h)<<4|hexVal(hex[i]))
		i++
	}
	c.result(out, false)
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}

func hexVal(h byte) byte { return (h + 9*(1&(h>>6))) & 0xf }

// utf8Trans1 is SQLite's sqlite3Utf8Trans1.
var utf8Trans1 = [64]byte{
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
	0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
	0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
	0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
	0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
	0x00, 0x01, 0x02, 0x03, 0x00, 0x01, 0x00, 0x00,
}

// utf8Read is SQLite's sqlite3Utf8Read on s from i, the end of s standing
// for the NUL that ends SQLite's string: it returns 0 there.
func utf8Read(s []byte, i int) (uint32, int) {
	if i >= len(s) {
		return 0, i
	}
	c := uint32(s[i])
	i++
	if c >= 0xc0 {
		c = uint32(utf8Trans1[c-0xc0])
		for i < len(s) && isCont(s[i]) {
			c = c<<6 + uint32(s[i]&0x3f)
			i++
		}
		if c < 0x80 || c&0xFFFFF800 == 0xD800 {
			c = 0xFFFD
		}
	}
	return c, i
}

// compareInfo is SQLite's: the wildcards of LIKE or GLOB.
type compareInfo struct {
	matchAll, matchOne, matchSet uint32
	noCase                       bool
}

var (
	likeInfo = compareInfo{matchAll: '%', matchOne: '_', noCase: true}
	globInfo = compareInfo{matchAll: '*', matchOne: '?', matchSet: '['}
)

// likeFunc is like(P,X), like(P,X,E) and glob(P,X): SQLite's likeFunc.
func likeFunc(c *fnCall) {
	if c.typ(0) == sqlite3.SQLITE_BLOB || c.typ(1) == sqlite3.SQLITE_BLOB {
		// SQLite is built with SQLITE_LIKE_DOESNT_MATCH_BLOBS.
		c.resultInt(0)
		return
	}
	nPat := int64(sqlite3.Xsqlite3_value_bytes(c.tls, c.arg(0)))
	if nPat > c.limit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH) {
		c.error("LIKE or GLOB pattern too complex")
		return
	}
	info := *c.f.info
	var escape uint32
	if c.argc == 3 {
		esc, ok := c.text(2)
		if !ok {
			return
		}
		if i := bytes.IndexByte(esc, 0); i >= 0 {
			esc = esc[:i]
		}
		if utf8CharLen(esc) != 1 {
			c.error("ESCAPE expression must be a single character")
			return
		}
		escape, _ = utf8Read(esc, 0)
		if escape == info.matchAll {
			info.matchAll = 0
		}
		if escape == info.matchOne {
			info.matchOne = 0
		}
	} else {
		escape = info.matchSet
	}
	pat, ok1 := c.text(0)
	str, ok2 := c.text(1)
	if !ok1 || !ok2 {
		return
	}
	if i := bytes.IndexByte(pat, 0); i >= 0 {
		pat = pat[:i]
	}
	if i := bytes.IndexByte(str, 0); i >= 0 {
		str = str[:i]
	}
	m := matcher{pat: pat, str: str, info: &info, matchOther: escape, budget: likeBudget, call: c, check: likeCheckEvery}
	switch m.compare(0, 0) {
	case likeMatch:
		c.resultInt(1)
	case likeAbort:
		if m.interrupted {
			sqlite3.Xsqlite3_result_error_code(c.tls, c.ctx, sqlite3.SQLITE_INTERRUPT)
			return
		}
		c.error(errLikeTooComplex)
	default:
		c.resultInt(0)
	}
}

// utf8CharLen is SQLite's sqlite3Utf8CharLen on a string without NUL.
func utf8CharLen(s []byte) int {
	n := 0
	for i := 0; i < len(s); {
		b := s[i]
		i++
		if b >= 0xc0 {
			for i < len(s) && isCont(s[i]) {
				i++
			}
		}
		n++
	}
	return n
}

const (
	likeMatch      = 0
	likeNoMatch    = 1
	likeNoWildcard = 2
	likeAbort      = 3
)

// matcher is SQLite's patternCompare with a count of its steps.
type matcher struct {
	pat, str   []byte
	info       *compareInfo
	matchOther uint32
	steps      int64
	budget     int64
	// Every likeCheckEvery steps (check: the next), the call looks
	// whether its statement was interrupted.
	call        *fnCall
	check       int64
	interrupted bool
}

// likeCheckEvery is how many steps a LIKE or GLOB call takes between two
// looks at its statement's interrupt (a few milliseconds).
const likeCheckEvery = 1 << 20

// over reports whether the match must stop: past the budget, or its
// statement interrupted.
func (m *matcher) over() bool {
	if m.steps > m.budget {
		return true
	}
	if m.steps >= m.check {
		m.check = m.steps + likeCheckEvery
		if m.call != nil && m.call.interrupted() {
			m.interrupted = true
			return true
		}
	}
	return false
}

// read is utf8Read, counting the bytes it reads as steps: a character
// can be a lead byte and any number of continuation bytes, so that a
// count of characters would not bound the work (a value of 9000
// characters of 801 bytes each, matched against "%a" and 20000 "_", took
// 35 s at a few million characters).
func (m *matcher) read(s []byte, i int) (uint32, int) {
	c, j := utf8Read(s, i)
	m.steps += int64(max(j-i, 1))
	return c, j
}

func asciiLower(c uint32) uint32 {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func asciiUpper(c uint32) uint32 {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

// compare matches pat[pi:] against str[si:]: likeMatch, likeNoMatch,
// likeNoWildcard (no match, and none with a later start for an enclosing
// "*" either) or likeAbort (past the budget, or the statement
// interrupted: see over).
func (m *matcher) compare(pi, si int) int {
	pat, str, info := m.pat, m.str, m.info
	zEscaped := -1
	var c, c2 uint32
	for {
		m.steps++
		if m.over() {
			return likeAbort
		}
		c, pi = m.read(pat, pi)
		if c == 0 {
			break
		}
		if c == info.matchAll {
			for {
				m.steps++
				c, pi = m.read(pat, pi)
				if !(c == info.matchAll || c == info.matchOne && info.matchOne != 0) {
					break
				}
				if c == info.matchOne {
					c2, si = m.read(str, si)
					if c2 == 0 {
						return likeNoWildcard
					}
				}
			}
			if c == 0 {
				return likeMatch
			}
			if c == m.matchOther {
				if info.matchSet == 0 {
					c, pi = m.read(pat, pi)
					if c == 0 {
						return likeNoWildcard
					}
				} else {
					// "[...]" right after "*": try each start.
					for si < len(str) {
						if r := m.compare(pi-1, si); r != likeNoMatch {
							return r
						}
						_, si = m.read(str, si)
					}
					return likeNoWildcard
				}
			}
			if c < 0x80 {
				s0, s1 := byte(c), byte(c)
				if info.noCase {
					s0, s1 = byte(asciiUpper(c)), byte(asciiLower(c))
				}
				for {
					var k int
					if s0 == s1 {
						k = bytes.IndexByte(str[si:], s0)
					} else {
						k = indexByte2(str[si:], s0, s1)
					}
					if k < 0 {
						m.steps += int64(len(str) - si)
						break
					}
					m.steps += int64(k)
					si += k + 1
					if r := m.compare(pi, si); r != likeNoMatch {
						return r
					}
				}
			} else {
				for {
					m.steps++
					if m.over() {
						return likeAbort
					}
					c2, si = m.read(str, si)
					if c2 == 0 {
						break
					}
					if c2 != c {
						continue
					}
					if r := m.compare(pi, si); r != likeNoMatch {
						return r
					}
				}
			}
			return likeNoWildcard
		}
		if c == m.matchOther {
			if info.matchSet == 0 {
				c, pi = m.read(pat, pi)
				if c == 0 {
					return likeNoMatch
				}
				zEscaped = pi
			} else {
				var prior uint32
				seen, invert := false, false
				c, si = m.read(str, si)
				if c == 0 {
					return likeNoMatch
				}
				c2, pi = m.read(pat, pi)
				if c2 == '^' {
					invert = true
					c2, pi = m.read(pat, pi)
				}
				if c2 == ']' {
					if c == ']' {
						seen = true
					}
					c2, pi = m.read(pat, pi)
				}
				for c2 != 0 && c2 != ']' {
					m.steps++
					if c2 == '-' && pi < len(pat) && pat[pi] != ']' && prior > 0 {
						c2, pi = m.read(pat, pi)
						if c >= prior && c <= c2 {
							seen = true
						}
						prior = 0
					} else {
						if c == c2 {
							seen = true
						}
						prior = c2
					}
					c2, pi = m.read(pat, pi)
				}
				if c2 == 0 || seen == invert {
					return likeNoMatch
				}
				continue
			}
		}
		c2, si = m.read(str, si)
		if c == c2 {
			continue
		}
		if info.noCase && c < 0x80 && c2 < 0x80 && asciiLower(c) == asciiLower(c2) {
			continue
		}
		if c == info.matchOne && pi != zEscaped && c2 != 0 {
			continue
		}
		return likeNoMatch
	}
	if si >= len(str) {
		return likeMatch
	}
	return likeNoMatch
}

// indexByte2 is the index of the first a or b in s, -1 if none.
func indexByte2(s []byte, a, b byte) int {
	for i, x := range s {
		if x == a || x == b {
			return i
		}
	}
	return -1
}

// jsonPatchBudget bounds one json_patch or jsonb_patch call: the members
// its patch can have times those of the target and the patch together
// (jsonPatchMembers). SQLite merges a patch by looking each of its
// members up in the target object by a linear scan, and adds those it
// does not find, so its time grows with that product (two
// objects of 20 000 members: about 11 s in one call, which its interrupt
// cannot stop). 2^24 pairs take about half a second.
const jsonPatchBudget = 1 << 24

// jsonPatchMembers bounds the object members a json_patch argument can
// hold: one per ':' of a JSON text, one per two bytes of a JSONB blob
// (a member takes at least a one-byte key and a one-byte value header).
func jsonPatchMembers(c *fnCall, i int) int64 {
	switch c.typ(i) {
	case sqlite3.SQLITE_BLOB:
		return int64(len(c.blob(i))) / 2
	case sqlite3.SQLITE_TEXT:
		t, _ := c.text(i)
		return int64(bytes.Count(t, []byte{':'}))
	}
	return 0
}

// jsonPatchFunc is json_patch(T,P) and jsonb_patch(T,P): past
// jsonPatchBudget it fails; otherwise SQLite's own function computes it,
// on a connection of the default driver (pristineDB), whose result and
// error it returns as they are.
func jsonPatchFunc(c *fnCall) {
	// The patch's members not in the target are added to it, and looked
	// for there by the next ones: {} patched with 40 000 members took
	// 13.6 s.
	if n, m := jsonPatchMembers(c, 0), jsonPatchMembers(c, 1); (n+m)*m > jsonPatchBudget {
		c.error(fmt.Sprintf("%s of a target of up to %d members and a patch of up to %d is refused: its time grows with the patch's members times the target's and the patch's (more than %d)", c.f.name, n, m, jsonPatchBudget))
		return
	}
	args := make([]any, 2)
	for i := range args {
		switch c.typ(i) {
		case sqlite3.SQLITE_INTEGER:
			args[i] = sqlite3.Xsqlite3_value_int64(c.tls, c.arg(i))
		case sqlite3.SQLITE_FLOAT:
			args[i] = sqlite3.Xsqlite3_value_double(c.tls, c.arg(i))
		case sqlite3.SQLITE_BLOB:
			args[i] = bytes.Clone(c.blob(i))
		case sqlite3.SQLITE_TEXT:
			t, _ := c.text(i)
			args[i] = string(t)
		}
	}
	db, err := pristineDB()
	if err != nil {
		c.error(err.Error())
		return
	}
	var out any
	if err := db.QueryRowContext(context.Background(), "SELECT "+c.f.name+"(?1, ?2)", args...).Scan(&out); err != nil {
		var se *sqlite.Error
		if !errors.As(err, &se) {
			c.error(err.Error())
			return
		}
		// The driver's message is "errstr: errmsg (code)"; SQLite's
		// own, which the plugin's driver formats the same way, is errmsg.
		msg := strings.TrimSuffix(se.Error(), fmt.Sprintf(" (%d)", se.Code()))
		msg = strings.TrimPrefix(msg, libc.GoString(sqlite3.Xsqlite3_errstr(c.tls, int32(se.Code())))+": ")
		c.error(msg)
		sqlite3.Xsqlite3_result_error_code(c.tls, c.ctx, int32(se.Code()))
		return
	}
	switch v := out.(type) {
	case string:
		c.result([]byte(v), true)
		if c.f.subtype {
			sqlite3.Xsqlite3_result_subtype(c.tls, c.ctx, jsonSubtype)
		}
	case []byte:
		c.result(v, false)
	case int64:
		c.resultInt(v)
	case float64:
		sqlite3.Xsqlite3_result_double(c.tls, c.ctx, v)
	}
}

// jsonSubtype is the subtype SQLite's JSON functions give their text
// results ('J'), so that another JSON function takes them as JSON rather
// than as a string.
const jsonSubtype = 74

var pristine struct {
	once sync.Once
	db   *sql.DB
	err  error
}

// pristineDB is a pool of in-memory connections of the driver's default
// "sqlite" driver, whose functions are SQLite's own: jsonPatchFunc has
// SQLite compute what it lets through. No plugin data is ever in it.
func pristineDB() (*sql.DB, error) {
	pristine.once.Do(func() {
		pristine.db, pristine.err = sql.Open("sqlite", ":memory:")
		if pristine.err == nil {
			pristine.db.SetMaxIdleConns(2)
		}
	})
	return pristine.db, pristine.err
}
