// Package logging builds the runtime's logrus logger: text or JSON, a
// level, and redaction of every configured secret from every line,
// whatever wrote it (the runtime or a plugin).
package logging

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/sirupsen/logrus"
)

// Redacted replaces a secret in log output.
const Redacted = "[REDACTED]"

// New returns a logger writing to w in format ("text" or "json") at level
// ("debug", "info", "warn", "error"), with secrets redacted.
func New(w io.Writer, format, level string, secrets []string) (*logrus.Logger, *Redactor, error) {
	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, nil, fmt.Errorf("log level: %w", err)
	}
	var inner logrus.Formatter
	switch format {
	case "json":
		inner = &logrus.JSONFormatter{TimestampFormat: "2006-01-02T15:04:05.000Z07:00"}
	case "text", "":
		inner = &logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "2006-01-02T15:04:05.000Z07:00", DisableColors: true}
	default:
		return nil, nil, fmt.Errorf("log format %q: want text or json", format)
	}
	r := &Redactor{inner: inner, json: format == "json"}
	r.AddSecrets(secrets)
	l := logrus.New()
	l.SetOutput(w)
	l.SetLevel(lvl)
	l.SetFormatter(r)
	return l, r, nil
}

// Redactor is a logrus.Formatter that formats with an inner formatter and
// then replaces every secret in the output with [REDACTED]. Working on the
// formatted line catches a secret wherever it hides: the message, any
// field, a field name, or a plugin's own attributes.
type Redactor struct {
	inner logrus.Formatter
	json  bool // inner writes JSON: a secret number is replaced by a string
	m     atomic.Pointer[matcher]
	// multiline is set once a secret holds a line break: text cut into
	// lines must be redacted before it is cut (Multiline).
	multiline atomic.Bool

	mu   sync.Mutex      // serialises AddSecrets
	seen map[string]bool // the forms in m
}

// minSecret is the shortest secret redacted in free text; shorter values
// ("1", "on") would shred every log line. docs/logging.md says so. No
// form of a secret shorter than this is redacted either (a secret's
// lower case can be shorter than it: "\u212a" + "ab", Kelvin's sign, is
// "kab").
const minSecret = 4

// minEncodedSecret is the shortest secret also redacted in hex and in
// base64 (encodedForms). A fragment of base64 shorter than a secret of
// this length gives is a few characters of letters and digits that other
// text holds by chance: 4 bytes give fragments of 4 and 5 characters
// ("YWJj" is in base64 of anything that starts "abc", and in a word
// typed by hand). 8 bytes give fragments of 10 base64 characters (60
// bits, whatever the alignment) and 16 hex digits (64 bits): the chance
// of one in a 1 MiB line of random base64 that does not hold the secret
// is about 2^-40 a run (2^-37 for the six), less in hex, and a word or a
// number in a line is not made of them.
const minEncodedSecret = 8

// AddSecrets adds values to redact (at start and on each config reload).
// A value stays redacted for the life of the process: after a reload
// that changes or drops a secret, the plugin version that read it may
// still be finishing calls, and a line naming a retired secret must not
// show it either.
func (r *Redactor) AddSecrets(secrets []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	var forms [][]byte
	if cur := r.m.Load(); cur != nil {
		forms = append(forms, cur.forms...)
	}
	add := func(f string) {
		if len(f) >= minSecret && !r.seen[f] {
			r.seen[f] = true
			forms = append(forms, []byte(f))
		}
	}
	for _, s := range secrets {
		if len(s) < minSecret {
			continue
		}
		if strings.ContainsAny(s, "\n\r") {
			r.multiline.Store(true)
		}
		for _, u := range secretForms(s) {
			for _, f := range escapedForms(u) {
				add(f)
			}
		}
		for _, f := range encodedForms(s) {
			add(f)
		}
	}
	r.m.Store(newMatcher(forms))
}

// encodedForms returns, for a secret of minEncodedSecret bytes or more,
// the forms it takes encoded by whoever logs it: in hex, lower and upper
// case, and inside base64 of any text that holds it (an HTTP Basic
// Authorization header, base64 of "user:" + s; a token a plugin encoded
// itself), in the standard and URL alphabets, padded or not. In base64
// the secret starts at one of three offsets of a 3-byte group; for each,
// its form is the run of characters made only of the secret's bits, the
// 6-bit characters from the first that begins at or after its first bit
// to the last that ends at or before its last: the characters at either
// end that mix its bits with its neighbours' (at most one at each end,
// with at most 4 of the secret's bits) depend on the text around it and
// stay in the line. Padding lies past the last character that holds the
// secret's bits, so padded and unpadded base64 hold the same run. A run
// with '+' or '/' is also redacted as a query value escapes it (%2B,
// %2F: base64 sent in a URL built with url.Values).
func encodedForms(s string) []string {
	if len(s) < minEncodedSecret {
		return nil
	}
	b := []byte(s)
	h := hex.EncodeToString(b)
	out := []string{h, strings.ToUpper(h)}
	for off := range 3 {
		in := append(make([]byte, off, off+len(b)), b...)
		first := (8*off + 5) / 6       // the first character after off's bytes
		last := 8 * (off + len(b)) / 6 // the characters wholly before the end
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			run := enc.EncodeToString(in)[first:last]
			for _, f := range []string{run, url.QueryEscape(run)} {
				if !slices.Contains(out, f) {
					out = append(out, f)
				}
			}
		}
	}
	return out
}

// matcher finds every form of every secret in a text in one pass, rather
// than one search of the text for each form: with the forms of several
// secrets (a few to a dozen each, counting their escaped, percent-encoded,
// hex and base64 forms) a search each cost a line as much again per
// secret. It is immutable: AddSecrets makes a new one.
//
// It is Wu and Manber's (for the forms of shortForm bytes or more; the
// others are looked for one by one, short): every such form is at least
// window bytes long, so a window of that many bytes where a form starts
// ends with 4 bytes that
// some form has at most window-4 bytes from its start; shift tells, for
// the hash of the 4 bytes that end a window, how far the window may move
// on without passing the start of a form (window-3 for 4 bytes no form
// has near its start). Where it may not move, filter and starts check the
// forms that begin with the window's first 4 bytes, in one walk down a
// tree of them: checking each in turn cost, where many forms begin alike
// (the PEM keys' "-----BEGIN", the tokens' "ghp_", the hex and base64 of
// both) and the window is short (a 4-byte secret configured too), a
// comparison per form at every byte of a run of dashes: with 20 PEM
// keys, 0.65 s of CPU a MiB, up to 2 s on a loaded machine between two
// checks of a guest call's deadline (TestMatcherManyFormsAlike).
type matcher struct {
	forms   [][]byte // longest first; forms[:long] each window bytes or more
	longest int
	window  int // the shortest of forms[:long]'s length, at most maxWindow
	// shift is how far a window whose last 4 bytes hash (shiftHash) to
	// its index may move.
	shift [1 << shiftBits]uint8
	// filter has a bit set for the hash (filterHash) of each form's
	// first 4 bytes.
	filter [1 << 16 / 64]uint64
	// starts holds, for each form's first 4 bytes, the forms that begin
	// with them as a tree of what follows those bytes.
	starts map[uint32]*trieNode
	// long counts the forms of shortForm bytes or more, forms[:long];
	// short are the others (of a secret of 4 to 7 bytes), each looked
	// for on its own (bytes.Index): in the window they would leave the
	// skips nothing (a 4-byte window moves a byte at most), and a line
	// cost 6 to 8 ns a byte whatever the other secrets.
	long  int
	short [][]byte
}

// trieNode is a node of a radix tree of forms that begin with the same 4
// bytes: the root stands for those 4 bytes, each other node for the bytes
// of its label after its parent's. Finding the longest form that begins
// a text costs a comparison per node on the text's path, whatever the
// number of forms.
type trieNode struct {
	label []byte      // what this node adds to its parent's bytes
	form  int32       // the form (an index into forms) that ends here, -1 for none
	first []byte      // the first byte of each child's label
	kids  []*trieNode // the children, in the order of first
}

// insert adds form k, whose bytes after n's are s.
func (n *trieNode) insert(s []byte, k int32) {
	for len(s) > 0 {
		c := bytes.IndexByte(n.first, s[0])
		if c < 0 {
			n.first = append(n.first, s[0])
			n.kids = append(n.kids, &trieNode{label: s, form: k})
			return
		}
		kid := n.kids[c]
		l := 0
		for l < len(kid.label) && l < len(s) && kid.label[l] == s[l] {
			l++
		}
		if l < len(kid.label) { // split kid's label after l bytes
			mid := &trieNode{label: kid.label[:l], form: -1, first: []byte{kid.label[l]}, kids: []*trieNode{kid}}
			kid.label = kid.label[l:]
			n.kids[c] = mid
			kid = mid
		}
		n, s = kid, s[l:]
	}
	n.form = k // forms are distinct: no other ends here
}

// longest returns the longest form that begins t, where t follows the 4
// bytes n stands for; -1 when none does.
func (n *trieNode) longest(t []byte) int32 {
	best := n.form
	for len(t) > 0 {
		c := bytes.IndexByte(n.first, t[0])
		if c < 0 {
			break
		}
		n = n.kids[c]
		if !bytes.HasPrefix(t, n.label) {
			break
		}
		t = t[len(n.label):]
		if n.form >= 0 {
			best = n.form
		}
	}
	return best
}

const (
	shortForm = 8 // forms shorter are not in the window (matcher.short)
	shiftBits = 13
	maxWindow = 128 // a shift fits in a uint8
)

func filterHash(p uint32) uint32 { return p * 0x9e3779b1 >> 16 }
func shiftHash(p uint32) uint32  { return p * 0x85ebca6b >> (32 - shiftBits) }

func newMatcher(forms [][]byte) *matcher {
	// Longest first (starts finds the longest form at a place whatever
	// their order; this one is kept from one AddSecrets to the next).
	slices.SortStableFunc(forms, func(a, b []byte) int { return len(b) - len(a) })
	m := &matcher{forms: forms, starts: map[uint32]*trieNode{}, window: maxWindow}
	long := len(forms)
	for long > 0 && len(forms[long-1]) < shortForm {
		long--
	}
	m.long, m.short = long, forms[long:]
	for _, f := range forms {
		m.longest = max(m.longest, len(f))
	}
	for k, f := range forms[:long] {
		p := binary.LittleEndian.Uint32(f)
		h := filterHash(p)
		m.filter[h>>6] |= 1 << (h & 63)
		root := m.starts[p]
		if root == nil {
			root = &trieNode{form: -1}
			m.starts[p] = root
		}
		root.insert(f[4:], int32(k))
		m.window = min(m.window, len(f))
	}
	for i := range m.shift {
		m.shift[i] = uint8(m.window - 3)
	}
	for _, f := range forms[:long] {
		for q := 0; q+4 <= m.window; q++ {
			h := shiftHash(binary.LittleEndian.Uint32(f[q:]))
			m.shift[h] = min(m.shift[h], uint8(m.window-4-q))
		}
	}
	return m
}

// scanner finds the forms in one text, from left to right: it keeps,
// for the long forms and for each short one, where the first was found
// at or after where it last looked, so that each part of the text is
// looked at once by each however close the others' finds are.
type scanner struct {
	m *matcher
	b []byte
	f []byte // the long form found at at[0]
	// at[0] is the long forms', at[1+k] short[k]'s: the first found at
	// or after where it last looked, before to[k]; -1 for none: then
	// none is before to[k]. In the arrays for up to 3 short forms (a
	// slice in the scanner itself would move it to the heap), else in
	// atx and tox.
	at, to   [4]int
	atx, tox []int
}

func (sc *scanner) init(m *matcher, b []byte) {
	sc.m, sc.b = m, b
	if n := 1 + len(m.short); n > len(sc.at) {
		sc.atx, sc.tox = make([]int, n), make([]int, n)
	}
	for k := range 1 + len(m.short) {
		at, _ := sc.slot(k)
		*at = -1
	}
}

// slot returns at[k] and to[k].
func (sc *scanner) slot(k int) (*int, *int) {
	if sc.atx != nil {
		return &sc.atx[k], &sc.tox[k]
	}
	return &sc.at[k], &sc.to[k]
}

// next returns the first position from i up to before limit where a form
// starts, and the longest form that starts there; -1 when none does. i
// never decreases from one call to the next.
func (sc *scanner) next(i, limit int) (int, []byte) {
	m, b := sc.m, sc.b
	j, f := -1, []byte(nil)
	if m.long > 0 {
		at, to := sc.slot(0)
		if *at < i && *to < limit {
			*at, sc.f = m.nextLong(b, max(i, *to), limit)
			*to = limit
			if *at >= 0 {
				*to = *at + 1
			}
		}
		if *at >= i && *at < limit {
			j, f = *at, sc.f
		}
	}
	// Longest first: at the same place the first found is the longest.
	for k, s := range m.short {
		at, to := sc.slot(1 + k)
		if *at < i && *to < limit {
			from := max(i, *to)
			*at, *to = -1, limit
			if hi := min(len(b), limit+len(s)-1); hi-from >= len(s) {
				if x := bytes.Index(b[from:hi], s); x >= 0 {
					*at, *to = from+x, from+x+1
				}
			}
		}
		if *at >= i && *at < limit && (j < 0 || *at < j) {
			j, f = *at, s
		}
	}
	return j, f
}

// nextLong returns the first position from i up to before limit where
// a form of shortForm bytes or more starts, and the longest that starts
// there; -1 when none does.
func (m *matcher) nextLong(b []byte, i, limit int) (int, []byte) {
	limit = min(limit, len(b)-m.window+1)
	for i < limit {
		if s := m.shift[shiftHash(binary.LittleEndian.Uint32(b[i+m.window-4:]))]; s > 0 {
			i += int(s)
			continue
		}
		p := binary.LittleEndian.Uint32(b[i:])
		if h := filterHash(p); m.filter[h>>6]&(1<<(h&63)) != 0 {
			if root := m.starts[p]; root != nil {
				if k := root.longest(b[i+4:]); k >= 0 {
					return i, m.forms[k]
				}
			}
		}
		i++
	}
	return -1, nil
}

// contains reports whether b holds a form.
func (m *matcher) contains(b []byte) bool {
	if m == nil || len(m.forms) == 0 {
		return false
	}
	var sc scanner
	sc.init(m, b)
	i, _ := sc.next(0, len(b))
	return i >= 0
}

// escapes are the ways a value's text is escaped on its way into a line:
// Go quoting (the text format quotes values that need it), JSON (the JSON
// format, and a config table or array a plugin reads as JSON), and JSON
// without HTML escaping (a plugin's own encoder).
var escapes = []func(string) string{
	func(s string) string { q := strconv.Quote(s); return q[1 : len(q)-1] },
	func(s string) string { j, _ := json.Marshal(s); return string(j[1 : len(j)-1]) },
	func(s string) string {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.Encode(s)
		j := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
		return string(j[1 : len(j)-1])
	},
}

// urlForms returns s and, where they differ from it, the forms it takes
// percent-encoded in a URL: as a query value (url.QueryEscape, what a
// plugin building a URL with url.Values sends, and what the access log's
// path shows of a secret a client put in its query) and as a path segment
// (url.PathEscape); as a query value with a space as %20 (Python's
// quote(s, safe="")), also with '/' left as it is (Python's quote(s),
// whose default keeps it) and with !'()* left as they are (JavaScript's
// encodeURIComponent); and as net/url writes it in a URL's path, userinfo
// and fragment (url.URL.String, the URL reader's own messages), which
// leave more of the reserved characters as they are than a path segment
// does ("pa/ss:w0rd!" in a path is "pa/ss:w0rd%21", found by none of the
// other forms). The minimum length applies to s, not to these longer
// forms.
func urlForms(s string) []string {
	out := []string{s}
	q := url.QueryEscape(s)
	sp := strings.ReplaceAll(q, "+", "%20")
	// JavaScript's encodeURIComponent leaves !'()* as they are, which
	// the query form escapes.
	js := strings.NewReplacer("%21", "!", "%27", "'", "%28", "(", "%29", ")", "%2A", "*").Replace(sp)
	goForms := []string{
		js,
		(&url.URL{Path: s}).EscapedPath(),
		url.UserPassword("", s).String()[1:],
		(&url.URL{Fragment: s}).EscapedFragment(),
	}
	for _, e := range append(append([]string{q, url.PathEscape(s), sp, strings.ReplaceAll(sp, "%2F", "/")}, goForms...), readForms(s)...) {
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

// secretForms returns s and the forms it takes in a URL (urlForms), and
// those the URL reader's messages give it, a secret a plugin put in part
// of a URL it reads: in lower case, as the reader writes a host (it
// lower-cases it to check it, and so do its denials, "no such
// host" and TLS errors, and, Go-quoted, its refusal of a host with
// characters no host name has), and percent-decoded, as the reader
// writes a path no allow rule covers ("none of its paths covers
// /priv/PaAth+k" for a secret "Pa%41th%2Bk" written into the path as it
// is), with that decoding's own URL forms (net/url escapes a path it
// decoded again, and the reader's messages quote the URL so:
// `Zq9"Key%41x` in a path is written `Zq9%22KeyAx`). Each kept a plugin's
// secret in the log in clear. A decoded form shorter than minSecret is
// left out. escapedForms gives each its quoted and JSON-escaped forms.
func secretForms(s string) []string {
	out := urlForms(s)
	if l := strings.ToLower(s); !slices.Contains(out, l) {
		out = append(out, l)
	}
	if d, err := url.PathUnescape(s); err == nil && d != s && len(d) >= minSecret {
		for _, f := range urlForms(d) {
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// readForms returns, for a secret that is an http(s) URL, the forms in
// which reading it quotes it: the URL reader lower-cases the host, drops
// a trailing dot and the fragment, and its errors show the URL with its
// password masked (url.URL.Redacted), as the guest SDK's StatusError
// shows the URL read. An audit's secret URL with a capital in its host,
// or a fragment, reached the log with its access_token in clear in the
// "url read" line's error and the plugin's own warning.
func readForms(s string) []string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil
	}
	canon := *u
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if p := u.Port(); p != "" {
		host += ":" + p
	}
	canon.Host = host
	var out []string
	for _, v := range []url.URL{*u, canon} {
		for _, frag := range []bool{true, false} {
			if !frag {
				v.Fragment, v.RawFragment = "", ""
			}
			for _, f := range []string{v.String(), v.Redacted()} {
				if f != s && !slices.Contains(out, f) {
					out = append(out, f)
				}
			}
		}
	}
	return out
}

// escapedForms returns s and the forms it takes escaped once or twice
// (a secret in a config table a plugin reads as JSON and logs is escaped
// by the table's JSON and again by the log's format), without repeats.
func escapedForms(s string) []string {
	out := []string{s}
	seen := map[string]bool{s: true}
	level := []string{s}
	for range 2 {
		var next []string
		for _, v := range level {
			for _, esc := range escapes {
				if e := esc(v); !seen[e] {
					seen[e] = true
					out = append(out, e)
					next = append(next, e)
				}
			}
		}
		level = next
	}
	return out
}

// Format implements logrus.Formatter.
func (r *Redactor) Format(e *logrus.Entry) ([]byte, error) {
	b, err := r.inner.Format(e)
	if err != nil {
		return b, err
	}
	if r.m.Load().contains(b) {
		if r.json {
			b = r.RedactJSON(b)
		} else {
			b = r.Redact(b)
		}
	}
	if r.json {
		b = escapeInvisible(b)
	}
	if size, ok := e.Context.(*lineSize); ok {
		// A plugin's line: the rate limit charges what it wrote.
		size.n = len(b)
	}
	return b, nil
}

// escapeInvisible writes, in JSON text b, the C1 control characters
// (U+0080 to U+009F) and Unicode's format characters (category Cf) as \u
// escapes, as the text format's quoting (strconv) writes them.
// encoding/json writes both as they are (they are valid UTF-8), and what
// shows the log may act on them: U+009B starts a control sequence on some
// terminals, with which a plugin's logged value could hide or rewrite
// what the operator reads; a bidirectional override (U+202E) or isolate
// shows text in another order ("exe.gnp" as "png.exe", a line's fields
// swapped) in a viewer that applies them; zero-width characters (U+200B,
// U+2060, U+FEFF) and the tag characters (U+E0000 to U+E007F, which spell
// ASCII no one sees) hide text between the characters one reads. A plugin
// logs any text, and any client puts some in the access log's path. In
// the UTF-8 encoding/json writes, outside strings JSON text is ASCII, so
// the escapes land inside strings; a character past U+FFFF is written as
// its UTF-16 surrogate pair, as JSON wants.
func escapeInvisible(b []byte) []byte {
	i := firstNonASCII(b)
	if i < 0 {
		return b // the common case
	}
	var out []byte // nil until a character is escaped
	at := 0        // b[:at] is in out
	for i < len(b) {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r >= 0x80 && r <= 0x9f || unicode.Is(unicode.Cf, r) {
			if out == nil {
				out = make([]byte, 0, len(b)+16)
			}
			out = append(out, b[at:i]...)
			if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
				out = appendUEscape(appendUEscape(out, r1), r2)
			} else {
				out = appendUEscape(out, r)
			}
			at = i + n
		}
		i += n
	}
	if out == nil {
		return b
	}
	return append(out, b[at:]...)
}

// appendUEscape appends JSON's \u escape of the UTF-16 code unit r.
func appendUEscape(out []byte, r rune) []byte {
	const hex = "0123456789abcdef"
	return append(out, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
}

// firstNonASCII returns the index of b's first byte that is not ASCII,
// -1 when there is none; eight bytes at a time, since most lines are
// ASCII.
func firstNonASCII(b []byte) int {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:])&0x8080808080808080 != 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		if b[i] >= utf8.RuneSelf {
			return i
		}
	}
	return -1
}

// RedactJSON replaces every secret in JSON text b. A number or a literal
// (true, false, null) outside strings that contains a secret (a secret
// number a plugin logged as a number; a secret "true") becomes the string
// "[REDACTED]", so that b stays JSON; Redact, which replaces text wherever
// it is, would leave a bare [REDACTED] there.
func (r *Redactor) RedactJSON(b []byte) []byte {
	return r.Redact(r.redactJSONValues(b))
}

// redactJSONValues is RedactJSON's part outside strings.
func (r *Redactor) redactJSONValues(b []byte) []byte {
	m := r.m.Load()
	if m == nil {
		return b
	}
	var out []byte // nil until a number is replaced
	inString, escaped := false, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z':
			j := i
			for j < len(b) && (strings.IndexByte("+-.0123456789", b[j]) >= 0 || b[j] >= 'a' && b[j] <= 'z' || b[j] == 'E') {
				j++
			}
			if m.contains(b[i:j]) {
				if out == nil {
					out = append(make([]byte, 0, len(b)+len(Redacted)), b[:i]...)
				}
				out = append(append(append(out, '"'), Redacted...), '"')
			} else if out != nil {
				out = append(out, b[i:j]...)
			}
			i = j - 1
			continue
		}
		if out != nil {
			out = append(out, c)
		}
	}
	if out == nil {
		return b
	}
	return out
}

// Longest returns the length of the longest text Redact replaces (a
// secret, or one of its escaped forms), 0 when there is none. A writer
// that cuts a stream of text into lines can redact what it holds and then
// cut anywhere but in its last Longest()-1 bytes without splitting a
// secret: any secret that starts earlier ends within the text, so it was
// replaced.
func (r *Redactor) Longest() int {
	if m := r.m.Load(); m != nil {
		return m.longest
	}
	return 0
}

// Spans calls span with where each text Redact replaces in b begins and
// ends, for those that begin before limit, in the order they begin (at
// each place the longest). A writer that cuts a stream into lines keeps
// the text raw and cuts it by these: redacting what it holds and keeping
// the rest would let the replacement of one secret take the bytes it
// shares with the next ("AAAA-BBBB" and "BBBB-CCCC" in
// "AAAA-BBBB-CCCC"), whose rest would then match nothing.
func (r *Redactor) Spans(b []byte, limit int, span func(start, end int)) {
	m := r.m.Load()
	if m == nil || len(m.forms) == 0 {
		return
	}
	var sc scanner
	sc.init(m, b)
	for i := 0; ; {
		j, f := sc.next(i, min(limit, len(b)))
		if j < 0 {
			return
		}
		span(j, j+len(f))
		i = j + 1
	}
}

// Multiline reports whether a secret holds a line break ("\n" or "\r",
// a PEM key): whoever cuts text into lines must redact it first, or each
// line would hold a part of it that no form matches.
func (r *Redactor) Multiline() bool { return r.multiline.Load() }

// RedactorOf returns the redactor of a logger made by New, nil for any
// other logger.
func RedactorOf(log *logrus.Logger) *Redactor {
	r, _ := log.Formatter.(*Redactor)
	return r
}

// Redact replaces every secret in b; it returns b itself when there is
// none. Each run of text that secrets cover, overlapping one another or
// themselves, becomes one Redacted: replacing one secret after the other
// left in the line the part of one that the other's replacement did not
// cover ("AbcdEfgh1234" and "1234Wxyz5678" in "AbcdEfgh1234Wxyz5678",
// an audit).
func (r *Redactor) Redact(b []byte) []byte { return r.RedactChecked(b, nil) }

// redactPiece is how many bytes RedactChecked scans for a secret between
// two calls of its check.
const redactPiece = 1 << 20

// RedactChecked is Redact calling check, when not nil, before it scans
// each redactPiece bytes of b: a check that panics (a guest's call past
// its deadline) stops it there. A guest's write to stdout of its whole
// memory (up to 4 GiB) is redacted at once when a secret holds a line
// break: 64 MiB took 0.86 s with a PEM key and two tokens configured
// (about 55 s for 4 GiB), past the call's timeout with no check of its
// deadline (TestMultilineRedactionInterrupted).
//
// With a check, what the secrets cover is kept as a bit a byte rather
// than as a span a match, and each run of covered bytes becomes one
// Redacted, secrets that only touch included: 64 MiB of a 4-byte secret
// over and over allocated 2.2 GB as spans and gave 160 MiB of Redacted
// (TestRedactCheckedBounded).
func (r *Redactor) RedactChecked(b []byte, check func()) []byte {
	m := r.m.Load()
	if m == nil || len(m.forms) == 0 {
		return b
	}
	var out []byte       // without a check: b redacted up to end, nil until a secret is found
	end := 0             // without a check: the end of the run of secrets last found
	var covered []uint64 // with a check: a bit a byte of b, set where a secret is
	set := 0             // with a check: covered is set before here
	var sc scanner
	sc.init(m, b)
	for i := 0; i < len(b); {
		limit := len(b)
		if check != nil {
			check()
			limit = min(limit, i+redactPiece)
		}
		for {
			j, f := sc.next(i, limit)
			if j < 0 {
				break
			}
			switch {
			case check != nil:
				if covered == nil {
					covered = make([]uint64, (len(b)+63)/64)
				}
				for k := max(j, set); k < j+len(f); k++ {
					covered[k>>6] |= 1 << (k & 63)
				}
				set = max(set, j+len(f))
			case out != nil && j < end:
				end = max(end, j+len(f)) // it overlaps the run
			default:
				prev := 0
				if out == nil {
					out = make([]byte, 0, len(b))
				} else {
					out = append(out, Redacted...)
					prev = end
				}
				out = append(out, b[prev:j]...)
				end = j + len(f)
			}
			i = j + 1
		}
		i = max(i, limit)
	}
	if covered != nil {
		return redactCovered(b, covered, check)
	}
	if out == nil {
		return b
	}
	return append(append(out, Redacted...), b[end:]...)
}

// redactCovered returns b with each run of the bytes covered marks
// replaced by one Redacted, calling check every redactPiece bytes.
func redactCovered(b []byte, covered []uint64, check func()) []byte {
	out := make([]byte, 0, len(b))
	at, run := 0, false // b[:at] is done with; run: in a covered run
	for k := 0; k < len(b); k++ {
		if k&(redactPiece-1) == 0 {
			check()
		}
		if k&63 == 0 && !run && covered[k>>6] == 0 {
			k += 63 // a word of bytes no secret covers
			continue
		}
		switch c := covered[k>>6]&(1<<(k&63)) != 0; {
		case c && !run:
			out = append(append(out, b[at:k]...), Redacted...)
			run = true
		case !c && run:
			at, run = k, false
		}
	}
	if run {
		return out
	}
	return append(out, b[at:]...)
}
