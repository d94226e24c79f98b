package hostfuncs

import (
	"errors"
	"strings"
	"testing"
)

// The decoders take bytes from untrusted guests: whatever they get, they
// return a record or an error, never panic. `go test` runs the seeds;
// `go test -fuzz FuzzDecodeLogRecord ./hostfuncs/` searches further.
func FuzzDecodeLogRecord(f *testing.F) {
	f.Add(newRec(LevelInfo, "m").kind(LogKindGroup, "g").kind(LogKindString, "k").str("v").kind(LogKindGroupEnd, "").b)
	f.Add(newRec(LevelError, "").kind(LogKindDuration, "d").u64(5).b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var rec LogRecord
		if err := DecodeLogRecord(b, &rec); err == nil && len(rec.Attrs) > MaxLogAttrs {
			t.Fatalf("%d attributes accepted", len(rec.Attrs))
		}
	})
}

func FuzzDecodeURLRequest(f *testing.F) {
	f.Add([]byte{1, 1, 0, 0, 0, 'u', 3, 0, 0, 0, 'G', 'E', 'T', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		var req URLRequest
		if err := DecodeURLRequest(b, &req); err != nil && strings.Contains(err.Error(), "log record") {
			t.Fatalf("a urlreader request's error names a log record: %v", err)
		}
	})
}

// A malformed urlreader request's error says what was wrong and where.
func TestDecodeURLRequestErrors(t *testing.T) {
	for b, want := range map[string]string{
		"":                        "malformed urlreader request: empty request",
		"\x01\x00\x00\x00":        "malformed urlreader request: truncated at byte 1",
		"\x01\x09\x00\x00\x00abc": "malformed urlreader request: field of 9 bytes at byte 1 overruns the record",
		"\x09":                    "malformed urlreader request: unknown operation 9",
	} {
		var req URLRequest
		if err := DecodeURLRequest([]byte(b), &req); err == nil || err.Error() != want || !errors.Is(err, ErrBadURLRequest) {
			t.Errorf("%q: %v, want %q", b, err, want)
		}
	}
}

// The response envelope is what every guest call ends with.
func FuzzDecodeResponse(f *testing.F) {
	f.Add(appendResponse(nil, 200, []byte(`{"ok":true}`), "Content-Type", "application/json"))
	f.Add(appendResponse(nil, 204, nil))
	f.Add([]byte{200, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeResponse(b, nil)
		if err != nil {
			return
		}
		if r.Status < 200 || r.Status > 599 {
			t.Fatalf("status %d accepted", r.Status)
		}
		// Everything decoded lies inside the envelope.
		n := 8 + 4 + len(r.Body)
		for _, h := range r.Headers {
			n += 8 + len(h[0]) + len(h[1])
		}
		if n != len(b) {
			t.Fatalf("decoded %d bytes of a %d-byte envelope", n, len(b))
		}
	})
}

func FuzzDecodeStatement(f *testing.F) {
	st := appendUint32(nil, 0)
	st = appendBytes(st, []byte("SELECT ?"))
	st = appendUint32(st, 3)
	for _, v := range []any{int64(42), "x", []byte{1}} {
		st = AppendValue(st, v)
	}
	f.Add(st)
	f.Add(append(appendBytes(appendUint32(nil, 1), []byte("COMMIT")), 0, 0, 0, 0))
	f.Add([]byte{0, 0, 0, 0, 1, 0, 0, 0, 'x', 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := DecodeStatement(b, 0)
		if err != nil {
			return
		}
		if len(st.SQL) > MaxStatementSQL || len(st.Args) > MaxStatementArgs {
			t.Fatalf("statement of %d bytes with %d arguments accepted", len(st.SQL), len(st.Args))
		}
		// The arguments' size read in place is the size they decode
		// from: a bound at it accepts them, one byte under refuses them.
		size := 0
		for _, v := range st.Args {
			size += len(AppendValue(nil, v))
		}
		if size == 0 {
			return
		}
		if _, err := DecodeStatement(b, size); err != nil {
			t.Fatalf("arguments of %d bytes refused at a bound of %d: %v", size, size, err)
		}
		// A bound of 0 is none: one argument of a byte (null, a bool)
		// has no bound under it.
		if _, err := DecodeStatement(b, size-1); size > 1 && !errors.Is(err, ErrArgsTooLarge) {
			t.Fatalf("arguments of %d bytes at a bound of %d: %v", size, size-1, err)
		}
	})
}

func FuzzDecodeMigrations(f *testing.F) {
	m := appendUint32(nil, 1)
	m = appendBytes(m, []byte("001_init.up.sql"))
	m = appendBytes(m, []byte("CREATE TABLE t (x int);"))
	f.Add(m)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		files, err := DecodeMigrations(b, 0, 0)
		if err == nil && len(files) > len(b)/8 {
			t.Fatalf("%d migrations from %d bytes", len(files), len(b))
		}
	})
}
