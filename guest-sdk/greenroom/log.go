package greenroom

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Logger returns the plugin's structured logger. Its records go to the
// runtime's log with their attributes as separate fields, tagged with the
// plugin and the request (or task) being served:
//
//	log := greenroom.Logger()
//	log.Info("fetched", "url", u, "bytes", n)
//	log.With("user", id).WithGroup("req").Warn("slow", "took", d)
//
// Groups become dotted field names ("req.took"). Levels map to the
// runtime's: below Info is debug, Info info, Warn warn, Error and above
// error; a level between them (slog.Level(2), LevelDebug-4) keeps slog's
// name for it ("INFO+2", "DEBUG-4") in the line's slog_level field. The operator's [plugins.<id>] log_level raises the floor (Enabled
// asks the runtime, so records below it cost nothing), and a per-plugin
// rate limit drops what is over it, counted and reported. Secrets from the
// plugin's config are redacted from every line. A record over 64 KiB is
// shrunk: its long strings are dropped first, then its attributes (a
// string is dropped whole, never cut, so that no part of a secret in it is
// left for the runtime's redaction to miss).
//
// The record's time is not sent: the line's time is the runtime's, when it
// receives the record. Otherwise the handler follows slog's rules for
// handlers (testing/slogtest passes): a group with nothing in it, from the
// record or from WithGroup, is left out.
//
// To send slog's default logger and the log package here as well:
//
//	slog.SetDefault(greenroom.Logger())
//
// In a native (non-wasm) build, Logger writes text to stderr with slog's
// TextHandler.
func Logger() *slog.Logger {
	loggerOnce.Do(func() { logger = slog.New(newLogHandler()) })
	return logger
}

var (
	loggerOnce sync.Once
	logger     *slog.Logger
)

// logHandler is the slog.Handler that encodes records for log_write. It
// pre-encodes the attributes and groups of With and WithGroup, as slog's
// own handlers do.
type logHandler struct {
	enabled func(level int32) bool
	write   func(rec []byte)
	pre     []byte // attributes and group openings from WithAttrs/WithGroup
	groups  int    // groups opened in pre
	// preAttrs is how much of pre ends with its last attribute, and
	// trailing how many of its groups are opened after that: a record
	// that adds no attribute sends pre[:preAttrs] and leaves them out,
	// as slog's handlers leave out a group with nothing in it.
	preAttrs, trailing int
	count              attrCount
	// chain is what pre encodes, kept for a record that must be sent
	// flat (see encodeFlat).
	chain []chainLink
}

// chainLink is one WithGroup (group set) or WithAttrs (attrs set) call.
type chainLink struct {
	group string
	attrs []slog.Attr
}

// The runtime's bounds on a record's structure (docs/abi.md): at most
// maxLogAttrs attributes, groups at most maxLogDepth deep.
const (
	maxLogAttrs = 256
	maxLogDepth = 16
)

// attrCount counts what an encoding writes: attributes, and the depth of
// groups.
type attrCount struct{ attrs, depth, maxDepth int }

func (c *attrCount) fits() bool { return c.attrs <= maxLogAttrs && c.maxDepth <= maxLogDepth }

var recordPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// When a record is over maxLogRecord, string values longer than this are
// dropped (see dropString).
const droppedString = 1 << 10

func (h *logHandler) Enabled(_ context.Context, level slog.Level) bool {
	return h.enabled(clampLevel(level))
}

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	bp := recordPool.Get().(*[]byte)
	buf := h.encode((*bp)[:0], r, 0)
	if len(buf) > maxLogRecord {
		buf = h.encode(buf[:0], r, droppedString)
		if len(buf) > maxLogRecord {
			buf = appendMessageOnly(buf[:0], clampLevel(r.Level), r.Message)
			if len(buf) > maxLogRecord {
				buf = appendMessageOnly(buf[:0], clampLevel(r.Level), droppedText(len(r.Message)))
			}
		}
	}
	h.write(buf)
	if cap(buf) <= 64<<10 {
		*bp = buf[:0]
		recordPool.Put(bp)
	}
	return nil
}

// encode writes r; maxStr > 0 drops attribute values longer than maxStr
// and marks the record as truncated. The message is always whole. A
// record with more attributes or deeper groups than the runtime takes is
// written flat instead (encodeFlat).
func (h *logHandler) encode(dst []byte, r slog.Record, maxStr int) []byte {
	start := len(dst)
	dst = appendRecordHead(dst, clampLevel(r.Level), r.Message)
	c := h.count
	if maxStr > 0 {
		dst = appendBoolAttr(dst, "greenroom.truncated", true)
		c.attrs++
	}
	// lastAttr is where the last attribute of h's chain ends in dst;
	// the trailing groups of the chain are opened after it.
	var lastAttr int
	if maxStr > 0 {
		// h.pre holds With's attributes whole: they are encoded again,
		// so that a long one is dropped too, not the whole record.
		c = attrCount{attrs: c.attrs - h.count.attrs}
		lastAttr = len(dst)
		for _, l := range h.chain {
			if l.attrs == nil {
				dst = appendKey(dst, kindGroup, l.group)
				c.depth++
				c.maxDepth = max(c.maxDepth, c.depth)
				continue
			}
			n := len(dst)
			for _, a := range l.attrs {
				dst = appendSlogAttr(dst, a, maxStr, &c)
			}
			if len(dst) > n {
				lastAttr = len(dst)
			}
		}
	} else {
		lastAttr = len(dst) + h.preAttrs
		dst = append(dst, h.pre...)
	}
	before := len(dst)
	r.Attrs(func(a slog.Attr) bool {
		dst = appendSlogAttr(dst, a, maxStr, &c)
		return true
	})
	groups := h.groups
	if len(dst) == before {
		// The record adds nothing to the groups WithGroup opened after
		// the last attribute: they are left out.
		dst = dst[:lastAttr]
		groups -= h.trailing
	}
	for i := 0; i < groups; i++ {
		dst = append(dst, kindGroupEnd)
	}
	if !c.fits() {
		return h.encodeFlat(dst[:start], r, maxStr)
	}
	return dst
}

// encodeFlat writes r without groups, each attribute under its dotted
// name ("req.took", which is how the runtime writes a grouped one too),
// and with at most maxLogAttrs attributes: the ones past it are dropped
// and counted in greenroom.attrs_dropped. The runtime refuses a record over
// its bounds whole, so this keeps the message and what fits.
func (h *logHandler) encodeFlat(dst []byte, r slog.Record, maxStr int) []byte {
	dst = appendRecordHead(dst, clampLevel(r.Level), r.Message)
	f := flatWriter{dst: dst, maxStr: maxStr, room: maxLogAttrs - 1} // one for the note
	if maxStr > 0 {
		f.dst = appendBoolAttr(f.dst, "greenroom.truncated", true)
		f.room--
	}
	prefix := ""
	for _, l := range h.chain {
		if l.attrs == nil {
			prefix += l.group + "."
			continue
		}
		for _, a := range l.attrs {
			f.attr(prefix, a)
		}
	}
	r.Attrs(func(a slog.Attr) bool {
		f.attr(prefix, a)
		return true
	})
	if f.dropped > 0 {
		f.dst = appendStringAttr(f.dst, "greenroom.attrs_dropped", strconv.Itoa(f.dropped)+" attributes dropped: a record holds at most "+strconv.Itoa(maxLogAttrs))
	}
	return f.dst
}

// flatWriter writes attributes without groups for encodeFlat.
type flatWriter struct {
	dst           []byte
	maxStr        int
	room, dropped int
}

func (f *flatWriter) attr(prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			f.attr(prefix, ga)
		}
		return
	}
	if f.room == 0 {
		f.dropped++
		return
	}
	f.room--
	a.Key = prefix + a.Key
	f.dst = appendSlogAttr(f.dst, a, f.maxStr, &attrCount{})
}

// appendMessageOnly writes a record of the message alone, noting that its
// attributes were dropped.
func appendMessageOnly(dst []byte, level int32, msg string) []byte {
	dst = appendRecordHead(dst, level, msg)
	return appendStringAttr(dst, "greenroom.truncated", "record over 64 KiB; its attributes were dropped")
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	h2.pre = slices.Clip(h.pre)
	// Resolved now, once, as slog's handlers do: a LogValuer is not
	// called again when a long record is encoded anew from the chain.
	resolved := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		resolved[i] = resolveAttr(a)
		h2.pre = appendSlogAttr(h2.pre, resolved[i], 0, &h2.count)
	}
	if len(h2.pre) > len(h.pre) {
		h2.preAttrs, h2.trailing = len(h2.pre), 0
	}
	h2.chain = append(slices.Clip(h.chain), chainLink{attrs: resolved})
	return &h2
}

// resolveAttr resolves a's value, and those in its groups at any depth.
func resolveAttr(a slog.Attr) slog.Attr {
	a.Value = a.Value.Resolve()
	if a.Value.Kind() != slog.KindGroup {
		return a
	}
	g := a.Value.Group()
	out := make([]slog.Attr, len(g))
	for i, ga := range g {
		out[i] = resolveAttr(ga)
	}
	return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.pre = appendKey(slices.Clip(h.pre), kindGroup, name)
	h2.groups++
	h2.trailing++
	h2.count.depth++
	h2.count.maxDepth = max(h2.count.maxDepth, h2.count.depth)
	h2.chain = append(slices.Clip(h.chain), chainLink{group: name})
	return &h2
}

// appendSlogAttr encodes a, following slog's handler rules: values are
// resolved, an empty attribute is ignored, an empty group is omitted and a
// group with an empty key is inlined.
func appendSlogAttr(dst []byte, a slog.Attr, maxStr int, c *attrCount) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return dst
	}
	v := a.Value
	if v.Kind() != slog.KindGroup {
		c.attrs++
	}
	switch v.Kind() {
	case slog.KindGroup:
		attrs := v.Group()
		if len(attrs) == 0 {
			return dst
		}
		start := len(dst)
		if a.Key != "" {
			dst = appendKey(dst, kindGroup, a.Key)
			c.depth++
			c.maxDepth = max(c.maxDepth, c.depth)
		}
		inner := len(dst)
		for _, ga := range attrs {
			dst = appendSlogAttr(dst, ga, maxStr, c)
		}
		if a.Key != "" {
			c.depth--
			if len(dst) == inner {
				// Nothing in it but empty attributes: omitted, as an
				// empty group is.
				return dst[:start]
			}
			dst = append(dst, kindGroupEnd)
		}
		return dst
	case slog.KindString:
		return appendStringAttr(dst, a.Key, dropString(v.String(), maxStr))
	case slog.KindInt64:
		return appendInt64Attr(dst, kindInt64, a.Key, v.Int64())
	case slog.KindUint64:
		return appendUint64Attr(dst, a.Key, v.Uint64())
	case slog.KindFloat64:
		return appendFloat64Attr(dst, a.Key, v.Float64())
	case slog.KindBool:
		return appendBoolAttr(dst, a.Key, v.Bool())
	case slog.KindDuration:
		return appendInt64Attr(dst, kindDuration, a.Key, int64(v.Duration()))
	case slog.KindTime:
		return appendStringAttr(dst, a.Key, v.Time().Format(time.RFC3339Nano))
	}
	s := ""
	if err, ok := v.Any().(error); ok {
		// fmt's %v, as slog's handlers write an error: "<nil>" for a
		// nil pointer whose Error method would dereference it, and
		// %!v(PANIC=Error method: ...) for one that panics, instead of
		// failing the log call (and with it the request).
		s = fmt.Sprint(err)
	} else {
		// fmt's %v, but with bytes as text wherever they are, which the
		// host can redact (fmt's [85 115 ...] hid a secret from it).
		s = logText(v.Any())
	}
	return appendStringAttr(dst, a.Key, dropString(s, maxStr))
}

func clampLevel(l slog.Level) int32 {
	return int32(max(min(int(l), math.MaxInt32), math.MinInt32))
}
