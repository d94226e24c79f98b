package hostfuncs

import (
	"errors"
	"testing"
)

func TestCanonicalHeaderName(t *testing.T) {
	for in, want := range map[string]string{
		"content-type": "Content-Type", "Content-Type": "Content-Type", "x-REQUEST-id": "X-Request-Id",
		"accept": "Accept", "bad name": "bad name", "": "",
	} {
		if got := string(CanonicalHeaderName([]byte(in))); got != want {
			t.Errorf("%q -> %q, want %q", in, got, want)
		}
	}
}

// A final status is 200-599: a 1xx written as the answer would leave the
// client waiting for the real one (or switch the connection's protocol),
// and HTTP defines no code past 599 (RFC 9110, 15).
func TestDecodeResponseStatus(t *testing.T) {
	for _, tc := range []struct {
		status uint32
		ok     bool
	}{{0, false}, {99, false}, {100, false}, {101, false}, {103, false}, {199, false}, {200, true}, {204, true}, {599, true}, {600, false}, {999, false}, {1000, false}} {
		_, err := DecodeResponse(appendResponse(nil, int(tc.status), []byte("x")), nil)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrBadResponse) {
			t.Errorf("status %d: %v, want ok=%v", tc.status, err, tc.ok)
		}
	}
}

// A response may hold at most MaxResponseHeaders headers: a Go handler's
// 1000 and the two its SDK adds among them.
func TestDecodeResponseHeaderCount(t *testing.T) {
	for _, tc := range []struct {
		n  int
		ok bool
	}{{0, true}, {1002, true}, {MaxResponseHeaders, true}, {MaxResponseHeaders + 1, false}, {1_800_000, false}} {
		hs := make([]string, 0, 2*tc.n)
		for range tc.n {
			hs = append(hs, "a", "")
		}
		_, err := DecodeResponse(appendResponse(nil, 200, nil, hs...), nil)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrBadResponse) {
			t.Errorf("%d headers: %v, want ok=%v", tc.n, err, tc.ok)
		}
	}
}

// A large response buffer does not stay with the instance after its call;
// a small one is reused.
func TestResetReleasesLargeResponse(t *testing.T) {
	in := &Instance{Response: make([]byte, 10, maxKeptResult+1)}
	in.Reset()
	if cap(in.Response) != 0 {
		t.Errorf("kept a %d-byte response buffer", cap(in.Response))
	}
	in.Response = make([]byte, 10, 4096)
	in.Reset()
	if len(in.Response) != 0 || cap(in.Response) != 4096 {
		t.Errorf("small buffer: len %d cap %d, want 0 and 4096", len(in.Response), cap(in.Response))
	}
	// db_query's row writer: a large buffer it holds goes too.
	w := &RowWriter{buf: make([]byte, 0, maxKeptResult+1)}
	in.SetValue(rowWriterKey{}, w)
	in.result = make([]byte, 10, maxKeptResult+1)
	in.Reset()
	if cap(w.buf) != 0 || cap(in.result) != 0 {
		t.Errorf("kept a %d-byte row buffer and a %d-byte result slot", cap(w.buf), cap(in.result))
	}
	w.buf = make([]byte, 10, 4096)
	in.Reset()
	if cap(w.buf) != 4096 {
		t.Errorf("small row buffer: cap %d, want 4096", cap(w.buf))
	}
}
