package hostfuncs

import (
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// recBuilder writes log records as docs/abi.md describes them, so that the
// decoder is tested against the document rather than against itself.
type recBuilder struct{ b []byte }

func newRec(level int32, msg string) *recBuilder {
	r := &recBuilder{}
	r.b = binary.LittleEndian.AppendUint32(r.b, uint32(level))
	return r.str(msg)
}

func (r *recBuilder) str(s string) *recBuilder {
	r.b = binary.LittleEndian.AppendUint32(r.b, uint32(len(s)))
	r.b = append(r.b, s...)
	return r
}
func (r *recBuilder) kind(k uint8, key string) *recBuilder {
	r.b = append(r.b, k)
	if k != LogKindGroupEnd {
		r.str(key)
	}
	return r
}
func (r *recBuilder) u64(v uint64) *recBuilder {
	r.b = binary.LittleEndian.AppendUint64(r.b, v)
	return r
}

func TestDecodeLogRecord(t *testing.T) {
	b := newRec(LevelWarn, "hello").
		kind(LogKindString, "user").str("jane").
		kind(LogKindGroup, "req").
		kind(LogKindString, "method").str("GET").
		kind(LogKindGroup, "timing").
		kind(LogKindDuration, "took").u64(uint64(1500*time.Millisecond)).
		kind(LogKindGroupEnd, "").
		kind(LogKindInt64, "n").u64(uint64(0xffffffffffffffff)). // -1
		kind(LogKindGroupEnd, "").
		kind(LogKindUint64, "big").u64(math.MaxUint64).
		kind(LogKindFloat64, "ratio").u64(math.Float64bits(0.25))
	b.b = append(b.b, LogKindBool)
	b.str("ok")
	b.b = append(b.b, 1)
	var rec LogRecord
	if err := DecodeLogRecord(b.b, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Level != LevelWarn || rec.Message != "hello" {
		t.Errorf("level %d message %q", rec.Level, rec.Message)
	}
	want := []LogAttr{
		{"user", "jane"}, {"req.method", "GET"}, {"req.timing.took", 1500 * time.Millisecond},
		{"req.n", int64(-1)}, {"big", uint64(math.MaxUint64)}, {"ratio", 0.25}, {"ok", true},
	}
	if len(rec.Attrs) != len(want) {
		t.Fatalf("attrs = %v", rec.Attrs)
	}
	for i, w := range want {
		if rec.Attrs[i] != w {
			t.Errorf("attr %d = %#v, want %#v", i, rec.Attrs[i], w)
		}
	}
	// Reuse: a second decode replaces everything.
	if err := DecodeLogRecord(newRec(LevelInfo, "two").b, &rec); err != nil || len(rec.Attrs) != 0 || rec.Message != "two" {
		t.Errorf("reuse: %v %+v", err, rec)
	}
}

func TestDecodeLogRecordHostile(t *testing.T) {
	full := newRec(LevelInfo, "m").kind(LogKindGroup, "g").kind(LogKindString, "k").str("v").kind(LogKindGroupEnd, "").b
	var rec LogRecord
	// Every truncation either decodes a shorter valid record or fails
	// cleanly; none panics.
	for n := 0; n < len(full); n++ {
		err := DecodeLogRecord(full[:n], &rec)
		if n < 9 && err == nil {
			t.Errorf("record of %d bytes without a complete message decoded", n)
		}
	}
	deep := newRec(LevelInfo, "m")
	for i := 0; i <= MaxLogDepth; i++ {
		deep.kind(LogKindGroup, "g")
	}
	many := newRec(LevelInfo, "m")
	for i := 0; i <= MaxLogAttrs; i++ {
		many.kind(LogKindBool, "k")
		many.b = append(many.b, 0)
	}
	cases := map[string]struct {
		b    []byte
		want string
	}{
		"unknown kind":     {newRec(0, "m").kind(99, "k").b, "unknown attribute kind 99"},
		"kind zero":        {newRec(0, "m").kind(0, "k").b, "unknown attribute kind 0"},
		"stray group end":  {newRec(0, "m").kind(LogKindGroupEnd, "").b, "closes no group"},
		"open group":       {newRec(0, "m").kind(LogKindGroup, "g").b, "1 groups left open"},
		"empty key":        {newRec(0, "m").kind(LogKindString, "").str("v").b, "empty key"},
		"huge length":      {append(binary.LittleEndian.AppendUint32(nil, 0), 0xff, 0xff, 0xff, 0xff), "overruns"},
		"too deep":         {deep.b, "nested deeper than 16"},
		"too many":         {many.b, "more than 256 attributes"},
		"value truncated":  {newRec(0, "m").kind(LogKindInt64, "k").u64(7).b[:18], "truncated"},
		"over record size": {make([]byte, MaxLogRecord+1), "over the limit"},
	}
	for name, tc := range cases {
		err := DecodeLogRecord(tc.b, &rec)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrBadLogRecord) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

// encURLRequest writes a urlreader_call request as docs/abi.md describes
// it; headers are name, value pairs.
func encURLRequest(op uint8, url, method string, deadline uint64, headers ...string) []byte {
	b := []byte{op}
	for _, s := range []string{url, method} {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	b = binary.LittleEndian.AppendUint64(b, deadline)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(headers)/2))
	for _, s := range headers {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

func TestDecodeURLRequest(t *testing.T) {
	enc := encURLRequest
	var req URLRequest
	b := enc(URLOpRead, "https://example.com/x", "GET", 42, "If-None-Match", `"abc"`)
	if err := DecodeURLRequest(b, &req); err != nil {
		t.Fatal(err)
	}
	if req.URL != "https://example.com/x" || req.Method != "GET" || req.Deadline != 42 || len(req.Header) != 1 || req.Header[0] != [2]string{"If-None-Match", `"abc"`} {
		t.Errorf("req = %+v", req)
	}
	for n := 0; n < len(b); n++ {
		if err := DecodeURLRequest(b[:n], &req); err == nil {
			t.Errorf("truncated request of %d/%d bytes decoded", n, len(b))
		}
	}
	// read_hop: the same fields, then the hops before it.
	hop := enc(URLOpReadHop, "https://b.example/y", "HEAD", 0, "Accept", "*/*")
	hop = binary.LittleEndian.AppendUint32(hop, 2)
	for _, v := range []string{"https://a.example/x", "https://a.example/z"} {
		hop = binary.LittleEndian.AppendUint32(hop, uint32(len(v)))
		hop = append(hop, v...)
	}
	if err := DecodeURLRequest(hop, &req); err != nil || !req.Hop || len(req.Via) != 2 || req.Via[1] != "https://a.example/z" || req.URL != "https://b.example/y" || len(req.Header) != 1 {
		t.Errorf("read_hop: %v %+v", err, req)
	}
	for n := 0; n < len(hop); n++ {
		if err := DecodeURLRequest(hop[:n], &req); err == nil {
			t.Errorf("truncated read_hop of %d/%d bytes decoded", n, len(hop))
		}
	}
	// read_hop_flags: read_hop's request; its response ends with flags.
	flags := append([]byte{URLOpReadHopFlags}, hop[1:]...)
	if err := DecodeURLRequest(flags, &req); err != nil || !req.Hop || !req.Flags || len(req.Via) != 2 || req.URL != "https://b.example/y" {
		t.Errorf("read_hop_flags: %v %+v", err, req)
	}
	if err := DecodeURLRequest(hop, &req); err != nil || req.Flags {
		t.Errorf("read_hop after read_hop_flags: %v %+v", err, req)
	}
	resp := &URLResponse{Status: 200, Body: []byte("x"), Decoded: true}
	env := AppendURLResponse(nil, resp)
	if f := AppendURLFlags(env, resp); len(f) != len(env)+4 || binary.LittleEndian.Uint32(f[len(env):]) != URLFlagDecoded {
		t.Errorf("flags of a decoded body: %x", f[len(env):])
	}
	resp.Decoded = false
	if f := AppendURLFlags(env, resp); binary.LittleEndian.Uint32(f[len(env):]) != 0 {
		t.Errorf("flags of a body as sent: %x", f[len(env):])
	}
	if err := DecodeURLRequest(b, &req); err != nil || req.Hop || req.Via != nil {
		t.Errorf("read_url after read_hop: %v %+v", err, req)
	}
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"hop count": {append(enc(URLOpReadHop, "u", "GET", 0), 0xff, 0xff, 0xff, 0x7f), "via count"},
		"tree":      {enc(URLOpTree, "u", "GET", 0), "read_tree) is reserved"},
		"search":    {enc(URLOpSearch, "u", "GET", 0), "search) is reserved"},
		"unknown":   {enc(9, "u", "GET", 0), "unknown operation 9"},
		"trailing":  {append(enc(URLOpRead, "u", "GET", 0), 1), "1 trailing bytes"},
		"count":     {append(enc(URLOpRead, "u", "GET", 0)[:len(enc(URLOpRead, "u", "GET", 0))-4], 0xff, 0xff, 0xff, 0x7f), "header count"},
	} {
		if err := DecodeURLRequest(tc.b, &req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

func TestFailCapsMessage(t *testing.T) {
	var in Instance
	long := strings.Repeat("é", MaxMessage) // 2 bytes each
	if code := in.Fail(ErrInvalid, "%s", long); code != ErrInvalid {
		t.Fatal(code)
	}
	if len(in.result) > MaxMessage || len(in.result) < MaxMessage-1 || !strings.HasPrefix(long, string(in.result)) {
		t.Errorf("message of %d bytes not cut at a rune boundary to %d", len(in.result), MaxMessage)
	}
	in.failWith(Failf(ErrDenied, "no %s", "grant"))
	if string(in.result) != "no grant" {
		t.Errorf("failWith: %q", in.result)
	}
}
