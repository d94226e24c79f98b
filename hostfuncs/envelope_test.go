package hostfuncs

import "testing"

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
