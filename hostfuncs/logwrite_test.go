package hostfuncs

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero/api"
)

// groupBomb is the record of the audit: one group named with 63 000 bytes
// holding MaxLogAttrs bool attributes with 2-byte keys. Prefixing the
// group's name to every key made it a 16 MiB record on the host.
func groupBomb() []byte {
	r := newRec(LevelInfo, "m").kind(LogKindGroup, strings.Repeat("g", 63000))
	for i := 0; i < MaxLogAttrs; i++ {
		r.kind(LogKindBool, fmt.Sprintf("%02d", i%100))
		r.b = append(r.b, 1)
	}
	return r.kind(LogKindGroupEnd, "").b
}

// keyBytes is what rec's keys take, without LogTruncatedKey.
func keyBytes(rec *LogRecord) int {
	n := 0
	for _, a := range rec.Attrs {
		if a.Key != LogTruncatedKey {
			n += len(a.Key)
		}
	}
	return n
}

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// The keys of a record, with their groups' names, take at most MaxLogKeys
// bytes: an attribute past that is dropped and the record says so. Nested
// groups of ordinary names are untouched.
func TestDecodeLogRecordKeyBudget(t *testing.T) {
	bomb := groupBomb()
	if len(bomb) > MaxLogRecord {
		t.Fatalf("the bomb is %d bytes, over MaxLogRecord", len(bomb))
	}
	var rec LogRecord
	if err := DecodeLogRecord(bomb, &rec); err != nil {
		t.Fatal(err)
	}
	if n := keyBytes(&rec); n > MaxLogKeys {
		t.Errorf("keys of %d bytes, over MaxLogKeys (%d)", n, MaxLogKeys)
	}
	last := rec.Attrs[len(rec.Attrs)-1]
	if want := "255 of 256 attributes dropped"; last.Key != LogTruncatedKey || !strings.Contains(fmt.Sprint(last.Value), want) {
		t.Errorf("last attribute %q = %.200v, want %s = %q...", last.Key, last.Value, LogTruncatedKey, want)
	}
	// What decoding it costs is bounded by the record, not multiplied by
	// its attributes (it was 16 MiB a record).
	const n = 20
	if got := allocated(func() {
		for i := 0; i < n; i++ {
			DecodeLogRecord(bomb, &rec)
		}
	}); got > n*512<<10 {
		t.Errorf("decoding the record %d times allocated %d MiB", n, got>>20)
	}

	// Attributes that fit are kept, also after ones that did not.
	r := newRec(LevelInfo, "m").kind(LogKindGroup, strings.Repeat("a", 30000)).
		kind(LogKindString, "k1").str("v1").
		kind(LogKindString, "k2").str("v2").
		kind(LogKindString, "k3").str(strings.Repeat("v", 1000)).
		kind(LogKindGroupEnd, "").
		kind(LogKindInt64, "after").u64(7)
	if err := DecodeLogRecord(r.b, &rec); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, a := range rec.Attrs {
		keys = append(keys, a.Key[max(len(a.Key)-5, 0):])
	}
	if got := strings.Join(keys, ","); got != "aa.k1,aa.k2,after,cated" || fmt.Sprint(rec.Attrs[3].Value) != "1 of 4 attributes dropped: their keys with their groups' names came to over 65536 bytes" {
		t.Errorf("kept %s; marker %v", got, rec.Attrs[len(rec.Attrs)-1])
	}

	// Ordinary nesting: 16 groups of 16-byte names, 200 attributes.
	nested := newRec(LevelInfo, "m")
	prefix := ""
	for i := 0; i < MaxLogDepth; i++ {
		name := fmt.Sprintf("group-%010d", i)
		nested.kind(LogKindGroup, name)
		prefix += name + "."
	}
	for i := 0; i < 200; i++ {
		nested.kind(LogKindInt64, fmt.Sprintf("attr%d", i)).u64(uint64(i))
	}
	for i := 0; i < MaxLogDepth; i++ {
		nested.kind(LogKindGroupEnd, "")
	}
	if err := DecodeLogRecord(nested.b, &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Attrs) != 200 || rec.Attrs[199].Key != prefix+"attr199" || rec.Attrs[199].Value != int64(199) {
		t.Errorf("nested: %d attributes, the last %q = %v", len(rec.Attrs), rec.Attrs[len(rec.Attrs)-1].Key, rec.Attrs[len(rec.Attrs)-1].Value)
	}
}

// memory is guest memory for calling host functions without wazero.
type memory struct {
	api.Memory
	b []byte
}

func (m memory) Read(off, n uint32) ([]byte, bool) {
	if uint64(off)+uint64(n) > uint64(len(m.b)) {
		return nil, false
	}
	return m.b[off : off+n], true
}

func (m memory) Size() uint32 { return uint32(len(m.b)) }

type module struct {
	api.Module
	mem memory
}

func (m module) Memory() api.Memory { return m.mem }

// limitHost is a Host with a rate limit of allow lines, like the runtime's.
type limitHost struct {
	Host
	allow   int
	dropped int
	written []int // each written record's key bytes
}

func (h *limitHost) LogEnabled(int32) bool { return true }

func (h *limitHost) LogAllow(int) bool {
	if h.allow == 0 {
		h.dropped++
		return false
	}
	h.allow--
	return true
}

func (h *limitHost) LogAllowed(in *Instance, rec *LogRecord, charged int) int32 {
	h.written = append(h.written, keyBytes(rec))
	return LogWritten
}

// Log is Host.Log: LogAllow, then LogAllowed.
func (h *limitHost) Log(in *Instance, rec *LogRecord) int32 {
	if !h.LogAllow(len(rec.Message)) {
		return LogDropped
	}
	return h.LogAllowed(in, rec, len(rec.Message))
}

// callLogWrite calls log_write on in with rec in guest memory.
func callLogWrite(in *Instance, rec []byte) int32 {
	stack := []uint64{0, uint64(len(rec))}
	logWrite(WithInstance(context.Background(), in), module{mem: memory{b: rec}}, stack)
	return api.DecodeI32(stack[0])
}

// A record over the rate limit is dropped before it is decoded: it costs
// nearly nothing (a dropped group bomb cost 32 MiB and 8 ms), and it is
// counted as dropped.
func TestLogWriteDropsBeforeDecoding(t *testing.T) {
	h := &limitHost{allow: 1}
	in := &Instance{Host: h}
	bomb := groupBomb()
	if got := callLogWrite(in, bomb); got != LogWritten || len(h.written) != 1 {
		t.Fatalf("first record: %d, written %v", got, h.written)
	}
	const n = 50
	var results []int32
	got := allocated(func() {
		for i := 0; i < n; i++ {
			results = append(results, callLogWrite(in, bomb))
		}
	})
	if got > 1<<20 {
		t.Errorf("%d dropped records allocated %d KiB", n, got>>10)
	}
	for _, r := range results {
		if r != LogDropped {
			t.Fatalf("results %v, want all %d", results, LogDropped)
		}
	}
	if h.dropped != n || len(h.written) != 1 {
		t.Errorf("%d dropped, %d written; want %d and 1", h.dropped, len(h.written), n)
	}
	// Dropped unread: a malformed record over the limit is dropped too.
	if got := callLogWrite(in, newRec(LevelInfo, "m").kind(99, "k").b); got != LogDropped {
		t.Errorf("malformed record over the limit: %d, want %d", got, LogDropped)
	}
	// Within the limit it is refused, and it spent its line.
	h.allow = 1
	if got := callLogWrite(in, newRec(LevelInfo, "m").kind(99, "k").b); got != ErrInvalid || h.allow != 0 {
		t.Errorf("malformed record: %d (allow %d), want %d", got, h.allow, ErrInvalid)
	}
}

// An instance keeps no decoded record between calls (it kept the last
// one: 16 MiB after a group bomb).
func TestLogWriteReleasesRecord(t *testing.T) {
	for _, limited := range []bool{true, false} {
		h := &limitHost{allow: 1}
		var host Host = h
		if !limited {
			host = plainLogHost{h}
		}
		in := &Instance{Host: host}
		if got := callLogWrite(in, groupBomb()); got != LogWritten {
			t.Fatalf("limited=%v: %d", limited, got)
		}
		kept := len(in.logRec.Message)
		for _, a := range in.logRec.Attrs[:cap(in.logRec.Attrs)] {
			kept += len(a.Key)
			if s, ok := a.Value.(string); ok {
				kept += len(s)
			}
			if a.Value != nil {
				kept++
			}
		}
		if kept != 0 {
			t.Errorf("limited=%v: the instance keeps %d bytes of the record", limited, kept)
		}
	}
}

// plainLogHost is a Host without LogLimiter: log_write decodes, then Log.
type plainLogHost struct{ h *limitHost }

func (p plainLogHost) Config(string) (string, bool)           { return "", false }
func (p plainLogHost) PublicRoute(string) error               { return nil }
func (p plainLogHost) Database() (Database, error)            { return nil, nil }
func (p plainLogHost) Scheduler() error                       { return nil }
func (p plainLogHost) RegisterTask(*Instance, TaskSpec) error { return nil }
func (p plainLogHost) LogEnabled(l int32) bool                { return p.h.LogEnabled(l) }
func (p plainLogHost) Log(in *Instance, rec *LogRecord) int32 { return p.h.Log(in, rec) }
func (p plainLogHost) ReadURL(context.Context, *Instance, *URLRequest) (*URLResponse, error) {
	return nil, nil
}
