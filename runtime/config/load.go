package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Error is one problem with the config, located at a file and line when
// the key was read from a file.
type Error struct {
	Origin string // "file:line", or "" when unknown
	Key    string // dotted key path, or ""
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Origin != "" {
		b.WriteString(e.Origin)
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a config, reported together (Load
// lists the first MaxErrors and counts the rest in a last one).
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	if len(es) == 1 {
		return "config: " + lines[0]
	}
	return fmt.Sprintf("config: %d errors:\n  %s", len(es), strings.Join(lines, "\n  "))
}

// LookupEnv finds an environment variable; os.LookupEnv in production.
type LookupEnv func(string) (string, bool)

// Source is one config file's name and text.
type Source struct {
	Name string
	Data []byte
}

// MaxFileSize is the largest config file Load reads.
const MaxFileSize = 16 << 20

// Load reads the files and merges them as Read does. Each must be a regular
// file of at most MaxFileSize bytes: a FIFO or a device would hang or
// exhaust memory.
func Load(files []string, env LookupEnv) (*Config, error) {
	var srcs []Source
	var errs Errors
	for _, f := range files {
		data, err := readFile(f)
		if err != nil {
			errs = append(errs, &Error{Msg: fmt.Sprintf("read config file: %v", err)})
			continue
		}
		srcs = append(srcs, Source{Name: f, Data: data})
	}
	if len(errs) > 0 {
		// The files that could be read are still checked for their
		// syntax, so that a missing file does not hide another's
		// errors; without all its files the merged config is not
		// validated (a key the missing file sets would look absent).
		for _, src := range srcs {
			if _, _, _, _, err := parse(src.Data); err != nil {
				errs = append(errs, syntaxErr(src.Name, err))
			}
		}
		boundErrors(errs)
		return nil, capErrors(errs)
	}
	return Read(srcs, env)
}

// syntaxErr is the error of a file parse refused, at its line when the
// parser gave one.
func syntaxErr(name string, err error) *Error {
	origin := name
	var se *syntaxError
	if errors.As(err, &se) {
		origin = fmt.Sprintf("%s:%d", name, se.line)
	}
	return &Error{Origin: origin, Msg: err.Error()}
}

// readFile reads a config file, refusing anything but a regular file of at
// most MaxFileSize bytes.
func readFile(name string) ([]byte, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	if fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("%s: %d bytes is larger than the limit of %s", name, fi.Size(), Size(MaxFileSize))
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The file may have grown since Stat.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: larger than the limit of %s", name, Size(MaxFileSize))
	}
	return data, nil
}

// Read merges the sources in order (later ones override earlier ones key by
// key), substitutes ${VAR} from env (os.LookupEnv when nil) in the merged
// document, so that only values that survive the merge are substituted,
// decodes strictly into a Config over the defaults and validates it. Every
// problem is returned at once as Errors, with the Config as far as it was
// read; no message shows a secret (Secrets), each is [REDACTED]. When a
// file has a TOML syntax error, only the syntax errors are reported: the
// merged config lacks that file, and checking it would report problems the
// file may well fix.
func Read(srcs []Source, env LookupEnv) (*Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	var errs Errors
	merged := map[string]any{}
	origins := map[string]string{}
	literals := map[string]string{}
	tableOrigins := map[string]bool{} // origins that are a table's
	for _, src := range srcs {
		doc, lines, tables, lits, err := parse(src.Data)
		if err != nil {
			errs = append(errs, syntaxErr(src.Name, err))
			continue
		}
		// A value that is not a table replaces what earlier files had
		// under its key (an array of tables, an inline table's array):
		// their lines are not where anything in use was set.
		for o := range origins {
			for p := parentPath(o); p != ""; p = parentPath(p) {
				if _, set := lines[p]; set && !tables[p] {
					delete(origins, o)
					delete(tableOrigins, o)
					break
				}
			}
		}
		for k, line := range lines {
			// Tables merge: one keeps the line that first created it.
			// Anything else is replaced, and is where the later file
			// set it.
			if tables[k] && tableOrigins[k] {
				continue
			}
			origins[k] = fmt.Sprintf("%s:%d", src.Name, line)
			tableOrigins[k] = tables[k]
		}
		maps.Copy(literals, lits)
		mergeMaps(merged, doc)
	}
	// An alias set beside its key is reported with every other problem:
	// the key's own value is kept and checked.
	parsed := len(errs) == 0
	failedKeys := map[string]bool{}
	if parsed {
		errs = append(errs, applyAliases(merged, origins)...)
		errs = append(errs, referencesInKeys("", merged, origins, failedKeys)...)
	}
	s := substituter{env: env, origins: origins, secretPaths: map[string]bool{}, substituted: map[string]bool{}, failed: failedKeys}
	// Before substitution, the secrets lists are as written: enough to
	// know where an error must not quote the text.
	s.hide = secretKeys(merged, nil)
	s.walk("", merged)
	cfg := Default()
	for _, src := range srcs {
		cfg.Files = append(cfg.Files, src.Name)
	}
	cfg.origins = origins
	cfg.secretPaths = s.secretPaths
	cfg.secrets = dedupe(s.secrets)
	isSecret := secretKeys(merged, s.secretPaths)
	d := decoder{origins: origins, secret: isSecret, substituted: s.substituted}
	d.decode("", merged, reflect.ValueOf(cfg).Elem())
	if parsed {
		errs = append(errs, s.errs...)
		errs = append(errs, filterFollowOn(d.errs, s.failed)...)
		failed := maps.Clone(s.failed)
		for _, e := range d.errs {
			failed[e.Key] = true
		}
		errs = append(errs, filterFollowOn(cfg.validate(), failed)...)
	}
	if len(errs) > 0 {
		sortErrors(errs, cfg.Files)
		// Messages quote the values they reject; none may show a secret.
		redactErrors(errs, cfg.Secrets(), secretValues(merged, isSecret))
		boundErrors(errs)
		return cfg, capErrors(errs)
	}
	// Defaults that depend on other settings are filled in, so that the
	// config (config print, the plugins API) shows the values in effect.
	// An origin as a browser sends it, which the CORS middleware
	// compares it with (checkOrigin).
	for i, o := range cfg.Server.CORS.Origins {
		if n, err := checkOrigin(o, true); err == nil {
			cfg.Server.CORS.Origins[i] = n
		}
	}
	if len(cfg.Server.CORS.Methods) == 0 {
		cfg.Server.CORS.Methods = slices.Clone(DefaultCORSMethods)
	}
	for id, pc := range cfg.Plugins {
		// Left to its default, retire_memory is 3/4 of memory: one from
		// the environment is told by it as well as by itself (config print
		// showed "24MiB" beside a [REDACTED] memory of 32MiB).
		lp := "plugins." + id + ".limits."
		if pc.Limits.RetireMemory == 0 && cfg.secretPaths[lp+"memory"] {
			cfg.secretPaths[lp+"retire_memory"] = true
		}
		pc.Limits.RetireMemory = Size(pc.Limits.EffectiveRetireMemory())
		for path := range cfg.secretPaths {
			if key, ok := strings.CutPrefix(path, lp); ok && !strings.Contains(key, ".") {
				if pc.secretLimits == nil {
					pc.secretLimits = map[string]bool{}
				}
				pc.secretLimits[key] = true
			}
		}
		prefix := "plugins." + id + ".config."
		for k, text := range literals {
			if key, ok := strings.CutPrefix(plainKey(k), prefix); ok {
				if pc.literals == nil {
					pc.literals = map[string]string{}
				}
				pc.literals[key] = text
			}
		}
	}
	return cfg, nil
}

// MaxErrors is how many of a config's errors are listed: the rest are
// counted in one last error. 150 000 unknown keys (a 1 MB file) made a
// 48 MB message, in config check's output, the reload's log line and the
// admin API's answer.
const MaxErrors = 100

// capErrors keeps the first MaxErrors of errs, sorted, and says how many
// more there were.
func capErrors(errs Errors) Errors {
	if len(errs) <= MaxErrors {
		return errs
	}
	more := len(errs) - MaxErrors
	return append(errs[:MaxErrors:MaxErrors], &Error{Msg: fmt.Sprintf("and %d more errors, not listed: fix these first", more)})
}

// Sort orders es by file (in the order given, as Config.Files) and line;
// errors without a position come last in the order found. Load's errors
// come sorted; a caller that finds more (config check's look at the
// plugin files) sorts its own the same way.
func (es Errors) Sort(files []string) { sortErrors(es, files) }

// sortErrors orders errors by file (in the order given) and line; errors
// without a position come last in the order found.
func sortErrors(errs Errors, files []string) {
	rank := func(e *Error) (int, int) {
		i := strings.LastIndexByte(e.Origin, ':')
		if i < 0 {
			return len(files), 0
		}
		file, line := e.Origin[:i], e.Origin[i+1:]
		n, _ := strconv.Atoi(line)
		if i := slices.Index(files, file); i >= 0 {
			return i, n
		}
		return len(files), n
	}
	slices.SortStableFunc(errs, func(a, b *Error) int {
		fa, la := rank(a)
		fb, lb := rank(b)
		if fa != fb {
			return fa - fb
		}
		return la - lb
	})
}

// syntaxError is a TOML syntax error, at a line of its file.
type syntaxError struct {
	line int
	msg  string
}

func (e *syntaxError) Error() string { return e.msg }

// utf8BOM is the byte order mark some editors write at a file's start.
var utf8BOM = []byte("\xef\xbb\xbf")

// parse decodes TOML text into a generic document and records the line of
// every key, as dotted paths with [i] for array elements, the keys that are
// tables (tables), and the source text of every number, boolean and
// date-time. A table's line is the first that created it, a header or a
// dotted key implying it included ("[plugins.x.limits]" creates plugins
// and plugins.x). A leading UTF-8 byte order mark is ignored.
func parse(data []byte) (map[string]any, map[string]int, map[string]bool, map[string]string, error) {
	data = bytes.TrimPrefix(data, utf8BOM)
	// go-toml's decoder checks each key against every key decoded before
	// it (quadratic: 200 000 keys, 2 MB, took minutes) and builds every
	// level of a key before maxKeyDepth is checked (one 16 MB dotted key
	// took 4.7 GB): bound both with a linear pass first.
	if err := prescan(data); err != nil {
		return nil, nil, nil, nil, err
	}
	doc := map[string]any{}
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			msg := fmt.Sprintf("TOML syntax error at column %d: %s", col, de.Error())
			if key := outOfRangeKey(data, row); key != "" {
				msg = key + ": " + msg
			}
			return nil, nil, nil, nil, &syntaxError{line: row, msg: msg}
		}
		return nil, nil, nil, nil, err
	}
	p := newLineParser(data)
	p.scan()
	if p.tooDeep != 0 {
		return nil, nil, nil, nil, &syntaxError{line: p.tooDeep, msg: fmt.Sprintf("keys nest more than %d levels deep (tables, dotted keys, arrays and inline tables together)", maxKeyDepth)}
	}
	if err := p.Error(); err != nil {
		return nil, nil, nil, nil, err
	}
	return doc, p.lines, p.tables, p.literals, nil
}

func newLineParser(data []byte) *lineParser {
	p := &lineParser{newlines: newlineOffsets(data), literals: map[string]string{}, lines: map[string]int{}, tables: map[string]bool{}}
	p.Reset(data)
	return p
}

// outOfRangeKey is the key whose integer, on line row of data, is past
// what TOML's 64-bit integers hold ("" for none): the decoder's error
// gives the line and column alone, where every other error about a value
// names its key. Only the key is named, not the number, which may be a
// plugin's secret.
func outOfRangeKey(data []byte, row int) string {
	p := newLineParser(data)
	p.scan()
	var keys []string
	for k, lit := range p.literals {
		if p.lines[k] == row && isIntegerLiteral(lit) {
			if _, err := strconv.ParseInt(strings.ReplaceAll(lit, "_", ""), 0, 64); err != nil && errors.Is(err, strconv.ErrRange) {
				keys = append(keys, k)
			}
		}
	}
	if len(keys) != 1 {
		return ""
	}
	return keys[0]
}

// isIntegerLiteral reports whether lit, a TOML number as written, is an
// integer: not a float (a fraction or an exponent), nan or inf.
func isIntegerLiteral(lit string) bool {
	if strings.HasPrefix(lit, "0x") || strings.HasPrefix(lit, "0o") || strings.HasPrefix(lit, "0b") {
		return true
	}
	t := strings.TrimLeft(lit, "+-")
	return t != "" && strings.Trim(t, "0123456789_") == ""
}

// scan records the line of every key, the tables and the literals of
// p's text, stopping at the first key nested deeper than maxKeyDepth.
func (p *lineParser) scan() {
	var prefix string
	var prefixDepth int
	arrays := map[string]int{}
	for p.NextExpression() && p.tooDeep == 0 {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table:
			parts := keyOf(e)
			if p.deep(len(parts), func() int { return p.lineOf(e) }) {
				break
			}
			prefix, prefixDepth = joinKey("", parts), len(parts)
			p.recordTables("", parts, p.lineOf(e))
		case unstable.ArrayTable:
			parts := keyOf(e)
			if p.deep(len(parts)+1, func() int { return p.lineOf(e) }) {
				break
			}
			prefixDepth = len(parts) + 1
			k := joinKey("", parts)
			prefix = fmt.Sprintf("%s[%d]", k, arrays[k])
			arrays[k]++
			line := p.lineOf(e)
			p.lines[prefix] = line
			p.recordTables("", parts[:len(parts)-1], line)
			if _, ok := p.lines[k]; !ok {
				p.lines[k] = line
			}
		case unstable.KeyValue:
			p.depth = prefixDepth
			recordKeyValue(p, p.lines, prefix, e)
		}
	}
}

// recordTables records the tables that the key parts under prefix name,
// each of them and its parents, at line unless an earlier line created it.
func (p *lineParser) recordTables(prefix string, parts []string, line int) {
	for i := 1; i <= len(parts); i++ {
		k := joinKey(prefix, parts[:i])
		p.tables[k] = true
		if _, ok := p.lines[k]; !ok {
			p.lines[k] = line
		}
	}
}

func recordKeyValue(p *lineParser, lines map[string]int, prefix string, kv *unstable.Node) {
	parts := keyOf(kv)
	if p.deep(p.depth+len(parts), func() int { return p.lineOf(kv) }) {
		return
	}
	defer func(d int) { p.depth = d }(p.depth)
	p.depth += len(parts)
	path := joinKey(prefix, parts)
	line := p.lineOf(kv)
	// Dotted keys define their parent tables too.
	p.recordTables(prefix, parts[:len(parts)-1], line)
	lines[path] = line
	recordValue(p, lines, path, kv.Value(), line)
}

func recordValue(p *lineParser, lines map[string]int, path string, v *unstable.Node, line int) {
	switch v.Kind {
	case unstable.Integer, unstable.Float, unstable.Bool, unstable.DateTime, unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime:
		p.literals[path] = string(v.Data)
	case unstable.InlineTable:
		p.tables[path] = true
		it := v.Children()
		for it.Next() {
			recordKeyValue(p, lines, path, it.Node())
		}
	case unstable.Array:
		if p.deep(p.depth+1, func() int { return line }) {
			return
		}
		p.depth++
		defer func() { p.depth-- }()
		it := v.Children()
		for i := 0; it.Next(); i++ {
			ep := fmt.Sprintf("%s[%d]", path, i)
			// An element's own line, for an array written over several.
			el := it.Node()
			eline := p.valueLine(el, line)
			lines[ep] = eline
			recordValue(p, lines, ep, el, eline)
		}
	}
}

func keyOf(n *unstable.Node) []string {
	var parts []string
	it := n.Key()
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

// scanValue adds to work what decoding v, a value depth levels deep
// under a key of size bytes, costs in go-toml's duplicate-key checks:
// each inline table checks each of its keys against those before it
// (quadratic in its keys, as a table's; a review's inline table of 80 000
// keys took 10 s). It returns why v is refused: a key or value inside
// nests deeper than maxKeyDepth, counted as parse counts it (an array is
// a level, an inline table's keys add their parts), or a key grows past
// maxKeyBytes; "" when it is not.
func scanValue(v *unstable.Node, depth, size int, work *float64) string {
	if v == nil {
		return ""
	}
	switch v.Kind {
	case unstable.Array:
		if depth+1 > maxKeyDepth {
			return tooDeep
		}
		for it := v.Children(); it.Next(); {
			if msg := scanValue(it.Node(), depth+1, size, work); msg != "" {
				return msg
			}
		}
	case unstable.InlineTable:
		seen := 0
		for it := v.Children(); it.Next(); {
			kv := it.Node()
			parts, bytes := 0, 0
			for k := kv.Key(); k.Next() && depth+parts <= maxKeyDepth && size+bytes <= maxKeyBytes; {
				parts++
				bytes += len(k.Node().Data) + 1
			}
			if depth+parts > maxKeyDepth {
				return tooDeep
			}
			if size+bytes > maxKeyBytes {
				return tooLong
			}
			*work += float64(seen) * float64(parts)
			seen += parts
			if msg := scanValue(kv.Value(), depth+parts, size+bytes, work); msg != "" {
				return msg
			}
		}
	}
	return ""
}

// The prescan's refusals.
var (
	tooDeep = fmt.Sprintf("keys nest more than %d levels deep (tables, dotted keys, arrays and inline tables together)", maxKeyDepth)
	tooLong = fmt.Sprintf("a key longer than %d bytes (its table's name, dotted parts and inline tables together)", maxKeyBytes)
)

// maxKeyBytes bounds a key's length, its table's name and the keys of the
// inline tables it is in counted: the decoder and the runtime build a
// key's whole name for each key under it, so a long one multiplies the
// work of every key below (a review: 20 000 keys under a 200 KB table
// name took 14 s and 3.9 GB).
const maxKeyBytes = 4096

// partsSize is the length of a key made of parts, dots included.
func partsSize(parts []string) int {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	return n
}

// lineParser is a TOML parser that finds the line of an offset with a
// binary search over the input's newlines (Parser.Shape counts them from
// the start every time: quadratic over a file's keys).
type lineParser struct {
	unstable.Parser
	newlines []int // offsets of every '\n', ascending
	literals map[string]string
	lines    map[string]int  // line by key path
	tables   map[string]bool // key paths that are tables
	// depth is how many levels deep the key being recorded is; tooDeep
	// the line of the first key deeper than maxKeyDepth (0: none).
	depth   int
	tooDeep int
}

// maxKeyDepth bounds how deep keys nest. Every level costs the runtime
// work over the levels below it (each table's path, each table's text as
// greenroom.Config gives it): a 4 KB config of 2000 dotted levels held a
// start for minutes.
const maxKeyDepth = 64

// deep reports whether a key of depth levels nests too deep, and records
// the first such line.
func (p *lineParser) deep(depth int, line func() int) bool {
	if depth <= maxKeyDepth {
		return false
	}
	if p.tooDeep == 0 {
		p.tooDeep = max(line(), 1)
	}
	return true
}

func newlineOffsets(data []byte) []int {
	var out []int
	for i := 0; ; {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			return out
		}
		out = append(out, i+j)
		i += j + 1
	}
}

// line returns the 1-based line of the byte at off.
func (p *lineParser) line(off int) int {
	n, _ := slices.BinarySearch(p.newlines, off)
	return n + 1
}

func (p *lineParser) lineOf(n *unstable.Node) int {
	it := n.Key()
	if it.Next() {
		if k := it.Node(); k.Raw.Length > 0 {
			return p.line(int(k.Raw.Offset))
		}
		if off := rangeOf(&p.Parser, it.Node().Data); off >= 0 {
			return p.line(off)
		}
	}
	if n.Raw.Length > 0 {
		return p.line(int(n.Raw.Offset))
	}
	return 0
}

// valueLine is the line value n starts on, where the parser tells it (a
// scalar), else def.
func (p *lineParser) valueLine(n *unstable.Node, def int) int {
	if n.Raw.Length > 0 {
		return p.line(int(n.Raw.Offset))
	}
	if off := rangeOf(&p.Parser, n.Data); off >= 0 {
		return p.line(off)
	}
	return def
}

// rangeOf returns the offset of b in the parser's input if b points into it.
func rangeOf(p *unstable.Parser, b []byte) int {
	data := p.Data()
	if len(b) == 0 || len(data) == 0 {
		return -1
	}
	defer func() { recover() }()
	r := p.Range(b)
	return int(r.Offset)
}

// plainKey turns a path joinKey made back into the dotted key a plugin
// asks for: quoted parts ("max conns") unquoted.
func plainKey(path string) string {
	if !strings.Contains(path, `"`) {
		return path
	}
	var b strings.Builder
	for i := 0; i < len(path); {
		if path[i] != '"' {
			b.WriteByte(path[i])
			i++
			continue
		}
		j := i + 1
		for j < len(path) && path[j] != '"' {
			if path[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(path) {
			b.WriteString(path[i:])
			break
		}
		if part, err := strconv.Unquote(path[i : j+1]); err == nil {
			b.WriteString(part)
		} else {
			b.WriteString(path[i : j+1])
		}
		i = j + 1
	}
	return b.String()
}

func joinKey(prefix string, parts []string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, p := range parts {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		if needsQuote(p) {
			b.WriteString(strconv.Quote(p))
		} else {
			b.WriteString(p)
		}
	}
	return b.String()
}

func needsQuote(k string) bool {
	if k == "" {
		return true
	}
	for _, r := range k {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return true
		}
	}
	return false
}

// mergeMaps overlays src on dst: tables merge key by key, anything else
// replaces.
func mergeMaps(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeMaps(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

func dedupe(ss []string) []string {
	slices.Sort(ss)
	return slices.Compact(ss)
}

// substituter replaces ${VAR} and ${VAR:-default} in every string of a
// merged document, in place. "$${" stands for a literal "${".
type substituter struct {
	env         LookupEnv
	origins     map[string]string // "file:line" by key path
	secretPaths map[string]bool
	// substituted holds the key paths whose strings held a ${VAR}: the
	// decoder takes one as a number or boolean where the key wants one.
	substituted map[string]bool
	secrets     []string
	errs        Errors
	// failed holds the key paths whose substitution failed: their values
	// are emptied, and nothing more is reported about them (filterFollowOn).
	failed map[string]bool
	// hide reports the keys whose text an error must not quote (tokens,
	// listed plugin secrets): an error there describes the value instead.
	hide func(path string) bool
}

func (s *substituter) walk(path string, v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = s.walk(joinKey(path, []string{k}), e)
		}
	case []any:
		for i, e := range t {
			t[i] = s.walk(fmt.Sprintf("%s[%d]", path, i), e)
		}
	case string:
		out, secret, errs := s.expand(t, s.hide != nil && s.hide(path), referenceCredentials(path, t))
		if len(errs) > 0 {
			for _, err := range errs {
				s.errs = append(s.errs, &Error{Origin: s.origin(path), Key: path, Msg: err.Error()})
			}
			// The text as written ("${CI_TOKEN}") is not the value: it is
			// neither checked as one nor, at a secret key, redacted from
			// the message that names the variable.
			s.failed[path] = true
			return ""
		}
		if secret {
			// Only this value: an array's other elements are not secret.
			s.secretPaths[path] = true
		}
		if out != t {
			s.substituted[path] = true
		}
		return out
	}
	return v
}

func (s *substituter) origin(path string) string {
	for p := path; p != ""; p = parentPath(p) {
		if o, ok := s.origins[p]; ok {
			return o
		}
	}
	return ""
}

// expand substitutes one string and reports whether any part of the result
// came from the environment. Every unset variable is an error of its own;
// a malformed reference ends the string's errors there. With hide, the
// errors do not quote the string; creds are where its credentials lie
// (referenceCredentials), [REDACTED] where an error quotes it, and a
// malformed reference among them is not quoted.
func (s *substituter) expand(in string, hide bool, creds [][2]int) (string, bool, []error) {
	if !strings.Contains(in, "${") {
		return in, false, nil
	}
	quoted := strconv.Quote(redactSpans(in, creds))
	if hide {
		quoted = "the value"
	}
	var b strings.Builder
	var errs []error
	secret := false
	rest := in
	for {
		i := strings.Index(rest, "${")
		if i < 0 {
			b.WriteString(rest)
			break
		}
		if i > 0 && rest[i-1] == '$' {
			b.WriteString(rest[:i-1])
			b.WriteString("${")
			rest = rest[i+2:]
			continue
		}
		b.WriteString(rest[:i])
		at := len(in) - len(rest) + i // the reference's offset in in
		end := strings.IndexByte(rest[i:], '}')
		if end < 0 {
			return "", false, append(errs, fmt.Errorf("unclosed ${ in %s", quoted))
		}
		expr := rest[i+2 : i+end]
		rest = rest[i+end+1:]
		if strings.Contains(expr, "${") {
			// ${A:-${B}} would end at B's "}": refuse rather than guess.
			return "", false, append(errs, fmt.Errorf("nested ${ in %s is not supported: a variable name or default cannot contain \"${\"", quoted))
		}
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validEnvName(name) {
			ref := "${" + expr + "}"
			switch {
			case hide:
				ref = "in the value"
			case overlaps(creds, at, at+end+1):
				ref = "in a credential of the value"
			}
			return "", false, append(errs, fmt.Errorf("invalid variable reference %s (want ${NAME} or ${NAME:-default})", ref))
		}
		val, ok := s.env(name)
		switch {
		case ok && val != "":
			b.WriteString(val)
			secret = true
			s.secrets = append(s.secrets, val)
		case hasDef:
			b.WriteString(def)
		case ok:
			// Set but empty, and no default: empty it is.
		default:
			errs = append(errs, fmt.Errorf("environment variable %s is not set (and ${%s} has no default; write ${%s:-default} to give one)", name, name, name))
		}
	}
	if len(errs) > 0 {
		return "", false, errs
	}
	return b.String(), secret, nil
}

// filterFollowOn drops the errors about keys that already have one:
// decoding a value whose substitution failed (it holds no value), and
// validating one that failed to substitute or decode (a token of the
// wrong type is not also "at least 32 characters, got 0").
func filterFollowOn(errs Errors, failed map[string]bool) Errors {
	if len(failed) == 0 {
		return errs
	}
	var out Errors
	for _, e := range errs {
		if !underFailed(e.Key, failed) {
			out = append(out, e)
		}
	}
	return out
}

// underFailed reports whether path is a failed key or lies under one.
func underFailed(path string, failed map[string]bool) bool {
	for p := path; p != ""; p = parentPath(p) {
		if failed[p] {
			return true
		}
	}
	return false
}

func validEnvName(n string) bool {
	if n == "" {
		return false
	}
	for i, r := range n {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// parentPath returns the path of the table or array that holds the key at
// p ("" at the top level): p without its last part, where a quoted part
// ("a.b") is one part, dots and all.
func parentPath(p string) string {
	cut := -1
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '"':
			// Skip the quoted part, as strconv.Quote wrote it.
			for i++; i < len(p) && p[i] != '"'; i++ {
				if p[i] == '\\' {
					i++
				}
			}
		case '.', '[':
			cut = i
		}
	}
	if cut <= 0 {
		return ""
	}
	return p[:cut]
}

// maxDecodeWork bounds the comparisons go-toml's duplicate-key tracker
// makes: for each new key it scans every entry recorded after the key's
// table (tracker.SeenTracker.find), so one table of n keys costs n²/2.
// 100k keys in tables of 100 cost 5e6; 200k keys in one table 2e10.
const maxDecodeWork = 2e8

// prescan refuses, in one linear pass, a file that go-toml would take
// quadratic time to decode (many keys in one table) or whose keys nest
// deeper than maxKeyDepth (go-toml builds every level first). It models
// the tracker's cost: a new key under a table costs the entries recorded
// since that table was. A syntax error is left to the decoder, which
// locates it.
func prescan(data []byte) error {
	p := lineParser{newlines: newlineOffsets(data)}
	p.Reset(data)
	index := map[string]int{"": 0}
	entries := 1
	work := 0.0
	add := func(parent string, parts []string) {
		path := parent
		for _, k := range parts {
			child := joinKey(path, []string{k})
			if _, ok := index[child]; !ok {
				work += float64(entries - index[path])
				index[child] = entries
				entries++
			}
			path = child
		}
	}
	var prefix string
	var prefixDepth int // as parse counts it
	var prefixSize int  // bytes of the table's key parts
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind != unstable.KeyValue && e.Kind != unstable.Table && e.Kind != unstable.ArrayTable {
			continue
		}
		n := 0
		for it := e.Key(); it.Next() && n <= maxKeyDepth; {
			n++
		}
		if n > maxKeyDepth {
			return &syntaxError{line: max(p.lineOf(e), 1), msg: tooDeep}
		}
		parts := keyOf(e)
		size := partsSize(parts)
		if e.Kind == unstable.KeyValue {
			size += prefixSize
		}
		if size > maxKeyBytes {
			return &syntaxError{line: max(p.lineOf(e), 1), msg: tooLong}
		}
		switch e.Kind {
		case unstable.Table:
			prefix, prefixDepth, prefixSize = joinKey("", parts), len(parts), size
			add("", parts)
		case unstable.ArrayTable:
			prefixDepth, prefixSize = len(parts)+1, size
			// Each element is a table of its own: its keys are
			// recorded after it.
			prefix = fmt.Sprintf("%s[%d]", joinKey("", parts), entries)
			add("", parts)
			index[prefix] = entries
			entries++
		default:
			add(prefix, parts)
			if msg := scanValue(e.Value(), prefixDepth+len(parts), size, &work); msg != "" {
				return &syntaxError{line: max(p.lineOf(e), 1), msg: msg}
			}
		}
		if work > maxDecodeWork {
			return &syntaxError{line: max(p.lineOf(e), 1), msg: "too many keys in one table: split them over tables (a table's keys cost its reading time quadratic in their number)"}
		}
	}
	return nil
}

// referencesInKeys refuses every key under path that holds "${": ${VAR}
// is substituted in string values only, and a key taken as written ("${K}"
// in a plugin's config, a token named "${N}") is never the key its
// author meant. Each is marked failed, so that nothing more is reported
// about it or what is under it (a plugin id's pattern).
func referencesInKeys(path string, v any, origins map[string]string, failed map[string]bool) Errors {
	var errs Errors
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			p := joinKey(path, []string{k})
			if strings.Contains(k, "${") {
				origin := ""
				for q := p; q != "" && origin == ""; q = parentPath(q) {
					origin = origins[q]
				}
				errs = append(errs, &Error{Origin: origin, Key: p, Msg: `a key cannot hold "${": ${...} is substituted in string values only, not in keys (write the key out)`})
				failed[p] = true
				continue
			}
			errs = append(errs, referencesInKeys(p, e, origins, failed)...)
		}
	case []any:
		for i, e := range t {
			errs = append(errs, referencesInKeys(fmt.Sprintf("%s[%d]", path, i), e, origins, failed)...)
		}
	}
	return errs
}

// aliases are keys read as another key of the same table: the issue that
// specified the rate limit wrote its burst as "burst" beside rate_limit,
// and the key is rate_burst (docs/config.md).
var aliases = map[string]string{"server.burst": "server.rate_burst"}

// applyAliases moves each alias's value in merged (and its origin) to the
// key it names; an alias set beside its key is an error.
func applyAliases(merged map[string]any, origins map[string]string) Errors {
	var errs Errors
	for alias, key := range aliases {
		table, name, _ := strings.Cut(alias, ".")
		_, keyName, _ := strings.Cut(key, ".")
		t, ok := merged[table].(map[string]any)
		if !ok {
			continue
		}
		v, ok := t[name]
		if !ok {
			continue
		}
		delete(t, name)
		if _, both := t[keyName]; both {
			errs = append(errs, &Error{Origin: origins[alias], Key: alias, Msg: "is another name for " + key + ", which is set too (at " + origins[key] + "): set one of them"})
			continue
		}
		t[keyName] = v
		origins[key] = origins[alias]
		delete(origins, alias)
	}
	return errs
}
