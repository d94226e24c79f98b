package hostfuncs

import (
	"math"
	"reflect"
	"testing"
	"time"
)

func TestStatementRoundTrip(t *testing.T) {
	ts := time.Date(1, 1, 1, 0, 0, 0, 5, time.UTC)
	vals := []any{nil, int64(math.MinInt64), math.Inf(-1), true, false, "héllo", []byte{0, 1, 255}, ts}
	req := appendUint32(nil, 7)
	req = appendString(req, "SELECT ?")
	req = appendUint32(req, uint32(len(vals)))
	for _, v := range vals {
		req = AppendValue(req, v)
	}
	st, err := DecodeStatement(req)
	if err != nil {
		t.Fatal(err)
	}
	if st.Tx != 7 || st.SQL != "SELECT ?" || !reflect.DeepEqual(st.Args, vals) {
		t.Errorf("decoded %+v", st)
	}
	// Every truncation fails cleanly.
	for n := 0; n < len(req); n++ {
		if _, err := DecodeStatement(req[:n]); err == nil {
			t.Fatalf("truncated request of %d/%d bytes decoded", n, len(req))
		}
	}
}

func TestRowWriterLimit(t *testing.T) {
	var w RowWriter
	w.Reset(64)
	w.Columns([]string{"a"}, []string{"TEXT"})
	if err := w.Row([]any{"short"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Row([]any{string(make([]byte, 100))}); err != ErrResultTooLarge {
		t.Fatalf("err = %v", err)
	}
	if w.Rows() != 1 || w.Len() > 64 {
		t.Errorf("rows %d len %d", w.Rows(), w.Len())
	}
}

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}
