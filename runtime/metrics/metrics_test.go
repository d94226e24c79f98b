package metrics

import "testing"

// A status code HTTP names is its own label; any other is its class, so
// that a plugin answering with arbitrary codes adds at most ten series a
// route.
func TestStatusLabel(t *testing.T) {
	for status, want := range map[int]string{
		200: "200", 204: "204", 418: "418", 429: "429", 504: "504",
		299: "2xx", 599: "5xx", 999: "9xx", 600: "6xx", 100: "100",
		0: "other", 42: "other", 1000: "other", -1: "other",
	} {
		if got := statusLabel(status); got != want {
			t.Errorf("statusLabel(%d) = %q, want %q", status, got, want)
		}
	}
}
