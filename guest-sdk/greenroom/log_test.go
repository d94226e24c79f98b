package greenroom

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
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
		slog.Attr{},
	)
	log.WithGroup("unused").Info("plain")
	log.Debug("debug")
	if len(c.records) != 3 {
		t.Fatalf("%d records", len(c.records))
	}
	level, msg, attrs := decodeRecord(t, c.records[0])
	want := []string{"svc=docs", "req.id=7", "req.took=1.5s", "req.user.name=jane", "req.user.admin=true", "req.inlined=1.5",
		"req.big=18446744073709551615", "req.err=boom", "req.when=2026-01-02T03:04:05.000000006Z", "req.lazy=resolved"}
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
	log.Info(long, "a", long, "b", long)
	many := make([]any, 0, 20000)
	for i := 0; i < 10000; i++ {
		many = append(many, fmt.Sprint("k", i), i)
	}
	log.Info("many", many...)
	if len(c.records) != 2 {
		t.Fatalf("%d records", len(c.records))
	}
	for _, rec := range c.records {
		if len(rec) > maxLogRecord {
			t.Errorf("record of %d bytes sent", len(rec))
		}
	}
	_, msg, attrs := decodeRecord(t, c.records[0])
	if len(msg) > truncatedMessage || !strings.HasSuffix(msg, "…") || len(attrs) != 3 || attrs[0] != "greenroom.truncated=true" || len(attrs[1]) > truncatedString+10 {
		t.Errorf("long strings: msg %d bytes, attrs %d", len(msg), len(attrs))
	}
	_, msg, attrs = decodeRecord(t, c.records[1])
	if msg != "many" || len(attrs) != 1 || !strings.Contains(attrs[0], "attributes were dropped") {
		t.Errorf("many attrs: %q %v", msg, attrs)
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

func TestNativeLoggerWritesText(t *testing.T) {
	if Logger() == nil || Logger() != Logger() {
		t.Fatal("Logger is not one logger")
	}
	if _, ok := Logger().Handler().(*slog.TextHandler); !ok {
		t.Errorf("native Logger handler is %T", Logger().Handler())
	}
}
