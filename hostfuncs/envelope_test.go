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

// A final status is 200-999: a 1xx written as the answer would leave the
// client waiting for the real one (or switch the connection's protocol).
func TestDecodeResponseStatus(t *testing.T) {
	for _, tc := range []struct {
		status uint32
		ok     bool
	}{{0, false}, {99, false}, {100, false}, {101, false}, {103, false}, {199, false}, {200, true}, {204, true}, {599, true}, {999, true}, {1000, false}} {
		_, err := DecodeResponse(appendResponse(nil, int(tc.status), []byte("x")), nil)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrBadResponse) {
			t.Errorf("status %d: %v, want ok=%v", tc.status, err, tc.ok)
		}
	}
}
