//go:build !wasip1

package greenroom

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"math"
	"testing"
	"testing/slogtest"
	"time"
)

// slogtestRecorder is what one slogtest case logged through the SDK's
// handler: the encoded records (docs/abi.md, "Log records"), and whether
// the record the handler was given had a time.
type slogtestRecorder struct {
	records [][]byte
	timed   []bool
}

// timeNoting is the handler under test with a note of each record's
// time: the SDK's handler does not send Record.Time (the host stamps its
// own), and the results function must know what it dropped.
type timeNoting struct {
	h   slog.Handler
	rec *slogtestRecorder
}

func (n timeNoting) Enabled(ctx context.Context, l slog.Level) bool { return n.h.Enabled(ctx, l) }
func (n timeNoting) Handle(ctx context.Context, r slog.Record) error {
	n.rec.timed = append(n.rec.timed, !r.Time.IsZero())
	return n.h.Handle(ctx, r)
}
func (n timeNoting) WithAttrs(as []slog.Attr) slog.Handler {
	return timeNoting{n.h.WithAttrs(as), n.rec}
}
func (n timeNoting) WithGroup(g string) slog.Handler { return timeNoting{n.h.WithGroup(g), n.rec} }

// parseLogRecord turns an encoded record into slogtest's map: the level
// as slog names it, the message, and the attributes, each group a map of
// its own (a group the record opens is there even when nothing is in it,
// so that an empty group the handler sent is seen).
func parseLogRecord(t *testing.T, b []byte) map[string]any {
	t.Helper()
	r := byteReader{b: b}
	m := map[string]any{
		slog.LevelKey:   slog.Level(int32(r.u32())).String(),
		slog.MessageKey: string(r.bytes()),
	}
	stack := []map[string]any{m}
	for !r.bad && r.off < len(b) {
		kind := b[r.off]
		r.off++
		if kind == kindGroupEnd {
			if len(stack) == 1 {
				t.Fatalf("unbalanced group end in %q", b)
			}
			stack = stack[:len(stack)-1]
			continue
		}
		key := string(r.bytes())
		if key == "" || r.bad {
			t.Fatalf("empty key or truncated record %q", b)
		}
		cur := stack[len(stack)-1]
		if _, dup := cur[key]; dup {
			t.Fatalf("key %q sent twice in %q", key, b)
		}
		var v any
		switch kind {
		case kindGroup:
			g := map[string]any{}
			cur[key] = g
			stack = append(stack, g)
			continue
		case kindString:
			v = string(r.bytes())
		case kindInt64:
			v = int64(binary.LittleEndian.Uint64(b[r.off:]))
			r.off += 8
		case kindUint64:
			v = binary.LittleEndian.Uint64(b[r.off:])
			r.off += 8
		case kindFloat64:
			v = math.Float64frombits(binary.LittleEndian.Uint64(b[r.off:]))
			r.off += 8
		case kindBool:
			v = b[r.off] == 1
			r.off++
		case kindDuration:
			v = time.Duration(binary.LittleEndian.Uint64(b[r.off:]))
			r.off += 8
		default:
			t.Fatalf("unknown kind %d in %q", kind, b)
		}
		cur[key] = v
	}
	if r.bad || len(stack) != 1 {
		t.Fatalf("malformed record %q", b)
	}
	return m
}

// TestLogHandlerSlogtest runs testing/slogtest's cases against the SDK's
// handler, reading what it sends to the host.
//
// The handler drops Record.Time on purpose: the wire format has no time,
// and the line's time is the host's, stamped when it receives the record
// (docs/logging.md). As slogtest documents for an attribute a handler
// drops on purpose, the results function checks that no time was sent
// (there is no field for one, and no "time" attribute) and adds it back
// for a record that had one; a record with a zero time had nothing to
// drop, and gets none (slogtest's "zero-time" case).
func TestLogHandlerSlogtest(t *testing.T) {
	var rec *slogtestRecorder
	slogtest.Run(t, func(t *testing.T) slog.Handler {
		rec = &slogtestRecorder{}
		return timeNoting{&logHandler{
			enabled: func(l int32) bool { return l >= levelInfo },
			write:   func(b []byte) { rec.records = append(rec.records, bytes.Clone(b)) },
		}, rec}
	}, func(t *testing.T) map[string]any {
		if len(rec.records) != 1 || len(rec.timed) != 1 {
			t.Fatalf("%d records sent for one log call (%d handled)", len(rec.records), len(rec.timed))
		}
		m := parseLogRecord(t, rec.records[0])
		if _, ok := m[slog.TimeKey]; ok {
			t.Fatalf("the handler sent a %q attribute of its own: %v", slog.TimeKey, m)
		}
		if rec.timed[0] {
			m[slog.TimeKey] = "stamped by the host"
		}
		return m
	})
}
