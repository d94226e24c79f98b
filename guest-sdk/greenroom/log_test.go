package greenroom

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// decodeRecord reads a record as docs/abi.md describes it and renders its
// attributes as "key=value" with groups as dotted keys, the way the runtime
// writes them.
func decodeRecord(t *testing.T, b []byte) (level int32, msg string, attrs []string) {
	t.Helper()
	r := byteReader{b: b}
	level = int32(r.u32())
	msg = string(r.bytes())
	var prefix []string
	for !r.bad && r.off < len(b) {
		kind := b[r.off]
		r.off++
		if kind == kindGroupEnd {
			if len(prefix) == 0 {
				t.Fatalf("unbalanced group end in %q", b)
			}
			prefix = prefix[:len(prefix)-1]
			continue
		}
		key := string(r.bytes())
		if key == "" {
			t.Fatalf("empty key in %q", b)
		}
		if kind == kindGroup {
			prefix = append(prefix, key)
			continue
		}
		full := strings.Join(append(append([]string(nil), prefix...), key), ".")
		var v any
		switch kind {
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
			t.Fatalf("unknown kind %d", kind)
		}
		attrs = append(attrs, fmt.Sprintf("%s=%v", full, v))
	}
	if r.bad || len(prefix) != 0 {
		t.Fatalf("malformed record %q (open groups %v)", b, prefix)
	}
	return level, msg, attrs
}

type capture struct {
	floor   int32
	records [][]byte
}

func (c *capture) logger() *slog.Logger {
	return slog.New(&logHandler{
		enabled: func(l int32) bool { return l >= c.floor },
		write:   func(rec []byte) { c.records = append(c.records, append([]byte(nil), rec...)) },
	})
}

type valuer struct{}

func (valuer) LogValue() slog.Value { return slog.StringValue("resolved") }

func TestLogHandlerEncoding(t *testing.T) {
	c := &capture{floor: -4}
	log := c.logger()
	when := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	log.With("svc", "docs").WithGroup("req").With("id", 7).Warn("slow",
		"took", 1500*time.Millisecond,
		slog.Group("user", "name", "jane", "admin", true),
		slog.Group("empty"),
		slog.Group("", "inlined", 1.5),
		"big", uint64(math.MaxUint64),
		"err", errors.New("boom"),
		"when", when,
		"lazy", valuer{},
		"bytes", []byte("s3cret-value"),
		"raw", json.RawMessage(`{"token":"s3cret"}`),
		"ints", []int{1, 2},
		slog.Attr{},
	)
	log.WithGroup("unused").Info("plain")
	log.Debug("debug")
	if len(c.records) != 3 {
		t.Fatalf("%d records", len(c.records))
	}
	level, msg, attrs := decodeRecord(t, c.records[0])
	want := []string{"svc=docs", "req.id=7", "req.took=1.5s", "req.user.name=jane", "req.user.admin=true", "req.inlined=1.5",
		"req.big=18446744073709551615", "req.err=boom", "req.when=2026-01-02T03:04:05.000000006Z", "req.lazy=resolved",
		"req.bytes=s3cret-value", `req.raw={"token":"s3cret"}`, "req.ints=[1 2]"}
	if level != 4 || msg != "slow" || strings.Join(attrs, " ") != strings.Join(want, " ") {
		t.Errorf("got %d %q %q\nwant %q", level, msg, attrs, want)
	}
	if _, msg, attrs := decodeRecord(t, c.records[1]); msg != "plain" || len(attrs) != 0 {
		t.Errorf("empty group: %q %q", msg, attrs)
	}
	// Below the floor nothing is encoded.
	c.floor = 0
	log.Debug("hidden")
	if len(c.records) != 3 {
		t.Error("record below the floor was written")
	}
}

func TestLogHandlerTruncates(t *testing.T) {
	c := &capture{floor: -4}
	log := c.logger()
	long := strings.Repeat("x", 40<<10)
	log.Info(long, "a", long, "b", long, "short", "kept")
	many := make([]any, 0, 20000)
	for i := 0; i < 10000; i++ {
		many = append(many, fmt.Sprint("k", i), i)
	}
	log.Info("many", many...)
	huge := strings.Repeat("m", 70<<10)
	log.Info(huge)
	if len(c.records) != 3 {
		t.Fatalf("%d records", len(c.records))
	}
	for _, rec := range c.records {
		if len(rec) > maxLogRecord {
			t.Errorf("record of %d bytes sent", len(rec))
		}
	}
	// Long attribute values are dropped whole; the message is kept.
	_, msg, attrs := decodeRecord(t, c.records[0])
	dropped := "[40960 bytes dropped: record over 64 KiB]"
	want := []string{"greenroom.truncated=true", "a=" + dropped, "b=" + dropped, "short=kept"}
	if msg != long || strings.Join(attrs, " ") != strings.Join(want, " ") {
		t.Errorf("long strings: msg %d bytes, attrs %q", len(msg), attrs)
	}
	// 10 000 attributes: more than a record holds (256); the first 255
	// are sent, and how many were dropped.
	_, msg, attrs = decodeRecord(t, c.records[1])
	if msg != "many" || len(attrs) != maxLogAttrs || attrs[254] != "k254=254" || attrs[255] != "greenroom.attrs_dropped=9745 attributes dropped: a record holds at most 256" {
		t.Errorf("many attrs: %q %d attrs, last %q", msg, len(attrs), attrs[len(attrs)-1])
	}
	_, msg, attrs = decodeRecord(t, c.records[2])
	if msg != "[71680 bytes dropped: record over 64 KiB]" || len(attrs) != 1 {
		t.Errorf("huge message: %.50q %v", msg, attrs)
	}
}

// An attribute With added that is too long is dropped like one of the
// record's own, not with every other attribute.
func TestLogHandlerTruncatesWithAttrs(t *testing.T) {
	c := &capture{floor: -4}
	long := strings.Repeat("x", 70<<10)
	c.logger().With("big", long).WithGroup("g").With("id", 7).Info("with big", "small", "kept")
	_, msg, attrs := decodeRecord(t, c.records[0])
	want := []string{"greenroom.truncated=true", "big=[71680 bytes dropped: record over 64 KiB]", "g.id=7", "g.small=kept"}
	if msg != "with big" || strings.Join(attrs, " ") != strings.Join(want, " ") {
		t.Errorf("got %q %q\nwant %q", msg, attrs, want)
	}
}

type countingValuer struct{ n *int }

func (v countingValuer) LogValue() slog.Value { *v.n++; return slog.IntValue(*v.n) }

// A With() LogValuer is resolved once, when With is called, as slog's
// handlers do: not again for a record that is too long and encoded anew.
func TestLogHandlerResolvesWithOnce(t *testing.T) {
	c := &capture{floor: -4}
	var n int
	log := c.logger().With("snap", countingValuer{&n})
	log.Info("short")
	log.Info(strings.Repeat("m", 100), "long", strings.Repeat("x", 70<<10))
	for i, want := range []string{"snap=1", "snap=1"} {
		if _, _, attrs := decodeRecord(t, c.records[i]); !slices.Contains(attrs, want) {
			t.Errorf("record %d: %q, want %s", i, attrs, want)
		}
	}
}

type ptrError struct{ msg string }

func (e *ptrError) Error() string { return e.msg }

type panicError struct{}

func (panicError) Error() string { panic("no message") }

// An error attribute is written as slog's handlers write it: a nil
// pointer or an Error method that panics does not fail the log call.
func TestLogHandlerHostileErrors(t *testing.T) {
	c := &capture{floor: -4}
	var nilErr *ptrError
	c.logger().Info("errors", "nil", nilErr, "wrapped", error(nilErr), "panics", panicError{}, "fine", &ptrError{"boom"})
	_, _, attrs := decodeRecord(t, c.records[0])
	want := []string{"nil=<nil>", "wrapped=<nil>", "panics=%!v(PANIC=Error method: no message)", "fine=boom"}
	if strings.Join(attrs, " ") != strings.Join(want, " ") {
		t.Errorf("got %q\nwant %q", attrs, want)
	}
}

// The guest cannot know the plugin's secrets, which the runtime redacts
// whole: shrinking an oversized record never sends part of a string, so
// no part of a secret escapes the redaction.
func TestLogHandlerNeverCutsStrings(t *testing.T) {
	const secret = "s3cr3t-value-0123456789"
	c := &capture{floor: -4}
	log := c.logger()
	pad := strings.Repeat("p", 70<<10)
	// A value that straddles the 1 KiB limit, a message that straddles
	// 8 KiB, a message too long for any record.
	log.Info("value", "pad", pad, "v", strings.Repeat("z", droppedString-10)+secret)
	log.Info(strings.Repeat("m", 8<<10-10)+secret, "pad", pad)
	log.Info(strings.Repeat("m", maxLogRecord-10)+secret, "pad", pad)
	log.Info(strings.Repeat("m", 40<<10), "many", strings.Repeat("m", 30<<10), slog.Group("g", "v", pad[:droppedString-10]+secret))
	if len(c.records) != 4 {
		t.Fatalf("%d records", len(c.records))
	}
	for i, rec := range c.records {
		whole := bytes.Count(rec, []byte(secret))
		if part := bytes.Count(rec, []byte(secret[:4])); part != whole {
			t.Errorf("record %d holds part of the secret (%d starts, %d whole)", i, part, whole)
		}
		if len(rec) > maxLogRecord {
			t.Errorf("record %d of %d bytes sent", i, len(rec))
		}
	}
	if _, msg, _ := decodeRecord(t, c.records[1]); !strings.HasSuffix(msg, secret) {
		t.Errorf("a message that fits was not kept whole: ...%q", msg[max(len(msg)-30, 0):])
	}
}

func TestDropString(t *testing.T) {
	if got := dropString("short", 5); got != "short" {
		t.Errorf("dropString = %q", got)
	}
	if got := dropString("longer", 0); got != "longer" {
		t.Errorf("dropString with no limit = %q", got)
	}
	if got := dropString("héllo", 5); got != "[6 bytes dropped: record over 64 KiB]" {
		t.Errorf("dropString = %q", got)
	}
}

func TestTruncate(t *testing.T) {
	if got := truncate("héllo wörld", 6); got != "h…" && len(got) > 6 {
		t.Errorf("truncate = %q", got)
	}
	if got := truncate("short", 100); got != "short" {
		t.Errorf("truncate = %q", got)
	}
	if got := truncate("ééééé", 5); !strings.HasSuffix(got, "…") || len(got) > 5 || !strings.HasPrefix(got, "é") {
		t.Errorf("cut inside a rune: %q", got)
	}
}

// A record with more attributes or deeper groups than the runtime takes
// (it refuses such a record whole) is sent flat: dotted names, as the
// runtime writes grouped attributes anyway, and at most 256 attributes.
func TestLogHandlerFlattens(t *testing.T) {
	c := &capture{floor: -4}
	log := c.logger()
	deep := log.With("top", 1)
	var args []any
	for i := range 20 {
		deep = deep.WithGroup(fmt.Sprintf("g%d", i))
	}
	args = append(args, "leaf", "x", slog.Group("inner", "a", 1))
	deep.Info("deep", args...)
	shallow := log.WithGroup("req").With("id", 7)
	shallow.Info("ok", "took", time.Second)
	if len(c.records) != 2 {
		t.Fatalf("%d records", len(c.records))
	}
	path := "g0.g1.g2.g3.g4.g5.g6.g7.g8.g9.g10.g11.g12.g13.g14.g15.g16.g17.g18.g19."
	_, msg, attrs := decodeRecord(t, c.records[0])
	if want := []string{"top=1", path + "leaf=x", path + "inner.a=1"}; msg != "deep" || strings.Join(attrs, " ") != strings.Join(want, " ") {
		t.Errorf("20 groups deep: %q %q, want %q", msg, attrs, want)
	}
	if !bytes.Contains(c.records[0], []byte(path+"leaf")) {
		t.Error("a record 21 groups deep was not sent flat")
	}
	// Within the bounds records keep their groups.
	if bytes.Contains(c.records[1], []byte("req.took")) {
		t.Error("a record within the bounds was sent flat")
	}
	if _, _, attrs := decodeRecord(t, c.records[1]); strings.Join(attrs, " ") != "req.id=7 req.took=1s" {
		t.Errorf("grouped record: %q", attrs)
	}
}

// A group with nothing in it is left out, as slog's handlers leave it
// out (TestLogHandlerSlogtest runs slogtest's cases): one WithGroup
// opened that the record adds nothing to, also when the record is sent
// with its long strings dropped, and a record's group that holds only
// empty attributes.
func TestLogHandlerEmptyGroups(t *testing.T) {
	c := &capture{floor: -4}
	log := c.logger()
	long := strings.Repeat("x", 70<<10)
	log.With("a", 1).WithGroup("G").Info("trailing group")
	log.WithGroup("G").Info("group of empties", slog.Group("H", slog.Attr{}), slog.Attr{})
	log.WithGroup("G").With(slog.Attr{}).WithGroup("H").Info("empty With")
	log.With("big", long).WithGroup("G").Info("long")
	log.With("a", 1).WithGroup("G").With("b", 2).WithGroup("H").Info("kept", "c", 3)
	want := [][]string{{"a=1"}, nil, nil, {"greenroom.truncated=true", "big=[71680 bytes dropped: record over 64 KiB]"}, {"a=1", "G.b=2", "G.H.c=3"}}
	if len(c.records) != len(want) {
		t.Fatalf("%d records", len(c.records))
	}
	for i, rec := range c.records {
		_, msg, attrs := decodeRecord(t, rec)
		if strings.Join(attrs, " ") != strings.Join(want[i], " ") {
			t.Errorf("%s: %q, want %q", msg, attrs, want[i])
		}
		if i < 4 && (bytes.Contains(rec, []byte("G")) || bytes.Contains(rec, []byte("H"))) {
			t.Errorf("%s: an empty group was sent: %q", msg, rec[:min(len(rec), 200)])
		}
	}
}

// A LogValuer inside a group given to With is resolved once, when With is
// called, like one at the top (TestLogHandlerResolvesWithOnce).
func TestLogHandlerResolvesWithGroupsOnce(t *testing.T) {
	c := &capture{floor: -4}
	var n int
	log := c.logger().With(slog.Group("g", "snap", countingValuer{&n}))
	log.Info("short")
	log.Info("long", "long", strings.Repeat("x", 70<<10))
	for i := range c.records {
		if _, _, attrs := decodeRecord(t, c.records[i]); !slices.Contains(attrs, "g.snap=1") {
			t.Errorf("record %d: %q, want g.snap=1", i, attrs)
		}
	}
}
