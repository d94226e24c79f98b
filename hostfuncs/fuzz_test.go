package hostfuncs

import "testing"

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
		DecodeURLRequest(b, &req)
	})
}
