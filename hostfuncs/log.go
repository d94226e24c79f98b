package hostfuncs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// Log levels are slog's (docs/abi.md, "Log records"): any int32 is a level,
// and these are the named ones. The runtime maps below-info to debug, 0-3 to
// info, 4-7 to warn and 8 and above to error.
const (
	LevelDebug int32 = -4
	LevelInfo  int32 = 0
	LevelWarn  int32 = 4
	LevelError int32 = 8
)

// Limits of one log record.
const (
	// MaxLogRecord is the largest record log_write accepts, in bytes.
	MaxLogRecord = 64 << 10
	// MaxLogAttrs is the most attributes (not counting groups) in a record.
	MaxLogAttrs = 256
	// MaxLogDepth is the deepest nesting of groups.
	MaxLogDepth = 16
	// MaxLogKeys bounds the attribute keys of a record once their groups'
	// names are prefixed to them: all of them together take at most this
	// many bytes. Without it a record could name a group of nearly
	// MaxLogRecord bytes and put MaxLogAttrs attributes in it, and one
	// 64 KiB record would become a 16 MiB log line. An attribute whose
	// key would pass the limit is dropped, and the record says so in
	// LogTruncatedKey.
	MaxLogKeys = 64 << 10
)

// LogTruncatedKey is the attribute that marks a record whose attributes
// were dropped (by the host past MaxLogKeys, or by the guest SDK when the
// record was over MaxLogRecord).
const LogTruncatedKey = "greenroom.truncated"

// Attribute kinds in a log record.
const (
	LogKindString   = 1 // bytes
	LogKindInt64    = 2 // u64, two's complement
	LogKindUint64   = 3 // u64
	LogKindFloat64  = 4 // u64, IEEE 754 bits
	LogKindBool     = 5 // u8, 0 or 1
	LogKindDuration = 6 // u64, nanoseconds, two's complement
	LogKindGroup    = 7 // opens a group named by the key; no value
	LogKindGroupEnd = 8 // closes the innermost group; no key, no value
)

// Results of log_write (non-negative: the record was well-formed).
const (
	LogWritten  = 0 // written to the log
	LogFiltered = 1 // below the plugin's level floor or the runtime's level
	LogDropped  = 2 // over the plugin's rate limit; counted and reported
)

// LogRecord is one decoded log record, or one line of a guest's stdout or
// stderr.
type LogRecord struct {
	// Level is an slog level.
	Level   int32
	Message string
	// Stream is "stdout" or "stderr" for a line a guest printed, "" for a
	// structured record from log_write.
	Stream string
	// Attrs are the record's attributes, groups flattened: an attribute k
	// inside group g inside group f has the key "f.g.k". Values are
	// string, int64, uint64, float64, bool or time.Duration. The keys
	// take at most MaxLogKeys bytes together (plus LogTruncatedKey's).
	Attrs []LogAttr
}

// LogAttr is one attribute of a LogRecord.
type LogAttr struct {
	Key   string
	Value any
}

// ErrBadLogRecord is wrapped by DecodeLogRecord errors.
var ErrBadLogRecord = errors.New("malformed log record")

// DecodeLogRecord parses a log record written by a guest into rec, reusing
// rec.Attrs. The guest is not trusted: every length is checked against
// what is left, kinds must be known, groups must balance, and the counts
// and nesting are bounded. So is what the record becomes: the keys of its
// attributes, each with its groups' names, take at most MaxLogKeys bytes
// together; an attribute that would pass that is dropped (its value is not
// even copied), and a last attribute, LogTruncatedKey, says how many were.
func DecodeLogRecord(b []byte, rec *LogRecord) error {
	if len(b) > MaxLogRecord {
		return fmt.Errorf("%w: %d bytes, over the limit of %d", ErrBadLogRecord, len(b), MaxLogRecord)
	}
	d := logDecoder{b: b}
	rec.Level = int32(d.u32())
	rec.Message = string(d.bytes())
	rec.Stream = ""
	clear(rec.Attrs)
	rec.Attrs = rec.Attrs[:0]
	if d.err != nil {
		return d.err
	}
	var prefix []byte // the open groups' names, each followed by '.'
	var marks [MaxLogDepth]int
	depth := 0
	attrs, dropped, keyBytes := 0, 0, 0
	for d.off < len(b) {
		at := d.off
		kind := d.u8()
		if kind == LogKindGroupEnd {
			if depth == 0 {
				return fmt.Errorf("%w: group end at byte %d closes no group", ErrBadLogRecord, at)
			}
			depth--
			prefix = prefix[:marks[depth]]
			continue
		}
		key := d.bytes()
		if d.err != nil {
			return d.err
		}
		if len(key) == 0 {
			return fmt.Errorf("%w: attribute at byte %d has an empty key", ErrBadLogRecord, at)
		}
		if kind == LogKindGroup {
			if depth == MaxLogDepth {
				return fmt.Errorf("%w: groups nested deeper than %d", ErrBadLogRecord, MaxLogDepth)
			}
			marks[depth] = len(prefix)
			depth++
			prefix = append(append(prefix, key...), '.')
			continue
		}
		if attrs == MaxLogAttrs {
			return fmt.Errorf("%w: more than %d attributes", ErrBadLogRecord, MaxLogAttrs)
		}
		attrs++
		keep := keyBytes+len(prefix)+len(key) <= MaxLogKeys
		var v any
		switch kind {
		case LogKindString:
			if s := d.bytes(); keep {
				v = string(s)
			}
		case LogKindInt64:
			v = int64(d.u64())
		case LogKindUint64:
			v = d.u64()
		case LogKindFloat64:
			v = math.Float64frombits(d.u64())
		case LogKindBool:
			v = d.u8() != 0
		case LogKindDuration:
			v = time.Duration(int64(d.u64()))
		default:
			return fmt.Errorf("%w: unknown attribute kind %d at byte %d", ErrBadLogRecord, kind, at)
		}
		if d.err != nil {
			return d.err
		}
		if !keep {
			dropped++
			continue
		}
		keyBytes += len(prefix) + len(key)
		rec.Attrs = append(rec.Attrs, LogAttr{Key: string(prefix) + string(key), Value: v})
	}
	if depth > 0 {
		return fmt.Errorf("%w: %d groups left open", ErrBadLogRecord, depth)
	}
	if dropped > 0 {
		rec.Attrs = append(rec.Attrs, LogAttr{Key: LogTruncatedKey, Value: fmt.Sprintf(
			"%d of %d attributes dropped: their keys with their groups' names came to over %d bytes", dropped, attrs, MaxLogKeys)})
	}
	return nil
}

// release drops what rec holds (its message and attribute values, up to a
// record's worth), keeping only the attribute slice, so that an idle
// instance keeps no log record alive.
func (rec *LogRecord) release() {
	rec.Message = ""
	clear(rec.Attrs)
	rec.Attrs = rec.Attrs[:0]
}

type logDecoder struct {
	b   []byte
	off int
	err error
}

func (d *logDecoder) need(n int) bool {
	if d.err != nil {
		return false
	}
	if len(d.b)-d.off < n {
		d.err = fmt.Errorf("%w: truncated at byte %d", ErrBadLogRecord, d.off)
		return false
	}
	return true
}

func (d *logDecoder) u8() uint8 {
	if !d.need(1) {
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *logDecoder) u32() uint32 {
	if !d.need(4) {
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v
}

func (d *logDecoder) u64() uint64 {
	if !d.need(8) {
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v
}

func (d *logDecoder) bytes() []byte {
	n := d.u32()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.b)-d.off) {
		d.err = fmt.Errorf("%w: field of %d bytes at byte %d overruns the record", ErrBadLogRecord, n, d.off-4)
		return nil
	}
	v := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return v
}

// log_enabled(level i32) -> i32
//
// Returns 1 when a record at level (an slog level) would be written, 0 when
// the plugin's level floor or the runtime's log level filters it out. A
// guest asks first so that it does not encode records nobody reads. Never
// fails.
func logEnabled(ctx context.Context, mod api.Module, stack []uint64) {
	in := instanceFrom(ctx, "log_enabled")
	if in.Host.LogEnabled(api.DecodeI32(stack[0])) {
		stack[0] = 1
	} else {
		stack[0] = 0
	}
}

// LogLimiter is implemented by a Host whose Log applies a rate limit.
// log_write then takes the record's place in the limit before it decodes
// the record, so that a record over the limit is dropped unread and costs
// almost nothing.
type LogLimiter interface {
	// LogAllow takes a line of size bytes (a record's encoded size, a
	// printed line's length) from the plugin's rate limit, which may
	// charge more for a larger line. False means the record is dropped,
	// and LogAllow has counted it as dropped.
	LogAllow(size int) bool
	// LogAllowed writes rec like Log, for a record that passed LogEnabled
	// and LogAllow(charged): it takes from the rate limit only what the
	// line it wrote cost past what LogAllow charged (its escapes and the
	// runtime's fields).
	LogAllowed(in *Instance, rec *LogRecord, charged int) int32
}

// log_write(rec_ptr, rec_len i32) -> i32
//
// Writes the log record of rec_len bytes at rec_ptr (docs/abi.md, "Log
// records") to the runtime's log, tagged with the plugin and the call in
// progress. Returns LogWritten (0), LogFiltered (1, below the level floor)
// or LogDropped (2, over the rate limit); ErrTooLarge when the record is
// over MaxLogRecord bytes, ErrInvalid when it is malformed (the message
// says where). Traps if the record is outside guest memory.
//
// Only the level is read before the level floor and the rate limit are
// applied: a filtered or dropped record is not decoded (nor checked), and
// a malformed record the limit lets through has spent its line. What the
// decoded record holds is released when the call returns.
func logWrite(ctx context.Context, mod api.Module, stack []uint64) {
	const fn = "log_write"
	in := instanceFrom(ctx, fn)
	b := guestBytes(mod, fn, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	if len(b) > MaxLogRecord {
		stack[0] = api.EncodeI32(in.Fail(ErrTooLarge, "log record is %d bytes, over the limit of %d", len(b), MaxLogRecord))
		return
	}
	if len(b) < 4 {
		stack[0] = api.EncodeI32(in.Fail(ErrInvalid, "log record of %d bytes has no level", len(b)))
		return
	}
	if !in.Host.LogEnabled(int32(binary.LittleEndian.Uint32(b))) {
		stack[0] = LogFiltered
		return
	}
	limiter, limited := in.Host.(LogLimiter)
	if limited && !limiter.LogAllow(len(b)) {
		stack[0] = LogDropped
		return
	}
	rec := &in.logRec
	err := DecodeLogRecord(b, rec)
	switch {
	case err != nil:
		stack[0] = api.EncodeI32(in.Fail(ErrInvalid, "%v", err))
	case limited:
		stack[0] = api.EncodeI32(limiter.LogAllowed(in, rec, len(b)))
	default:
		stack[0] = api.EncodeI32(in.Host.Log(in, rec))
	}
	rec.release()
}
