package greenroom

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

type logTextInner struct {
	Name string
	key  []byte
}

type logTextOuter struct {
	ID    int
	In    logTextInner
	Raw   json.RawMessage
	Any   any
	Err   error
	Ptr   *logTextInner
	Float float32
	C     complex64
}

// Bytes anywhere in a value are written as text; everything else as fmt's
// %v writes it.
func TestLogText(t *testing.T) {
	secret := []byte("s3cret-value")
	self := []any{1}
	self = append(self, self) // holds a copy of itself one deep
	for _, tc := range []struct {
		v    any
		want string
	}{
		{secret, "s3cret-value"},
		{json.RawMessage(`{"k":1}`), `{"k":1}`},
		{[2]byte{'h', 'i'}, "[104 105]"}, // an array (a hash) as fmt writes it
		{struct {
			Sum [2]byte
			Key []byte
		}{[2]byte{1, 255}, secret}, "{[1 255] s3cret-value}"},
		{logTextInner{"a", secret}, "{a s3cret-value}"},
		{&logTextInner{"a", secret}, "&{a s3cret-value}"},
		{[][]byte{secret, []byte("x")}, "[s3cret-value x]"},
		{[]any{secret, 2, "s"}, "[s3cret-value 2 s]"},
		{map[string][]byte{"b": secret, "a": []byte("x")}, "map[a:x b:s3cret-value]"},
		{map[string]any{"k": secret}, "map[k:s3cret-value]"},
		{logTextOuter{ID: 1, In: logTextInner{"n", secret}, Raw: json.RawMessage("[]"), Any: secret, Err: errors.New("boom"), Float: 0.1, C: complex(0.1, 2)},
			"{1 {n s3cret-value} [] s3cret-value boom <nil> 0.1 (0.1+2i)}"},
		{[]any{net.IPv4(1, 2, 3, 4)}, "[1.2.3.4]"}, // its String method, as fmt
		{[]any{nil, (*logTextInner)(nil), time.Second}, "[<nil> <nil> 1s]"},
	} {
		if got := logText(tc.v); got != tc.want {
			t.Errorf("logText(%#v) = %q, want %q", tc.v, got, tc.want)
		}
	}
	// Types that hold no bytes go to fmt as they are.
	for _, v := range []any{1, "s", []int{1, 2}, [4]byte{'a', 0, 255, '\n'}, map[string]int{"b": 2, "a": 1}, struct{ A, b int }{1, 2}, time.Second, errors.New("e"), 1.5, nil} {
		if got, want := logText(v), fmt.Sprint(v); got != want {
			t.Errorf("logText(%#v) = %q, fmt says %q", v, got, want)
		}
	}
	if got := logText(self); got != "[1 [1]]" {
		t.Errorf("logText of a slice holding a copy of itself = %q", got)
	}
	// Nothing loops forever or doubles without end: a slice that holds
	// itself twice (2^33 leaves at the depth bound) stops at the budget.
	cycle := make([]any, 2)
	cycle[0], cycle[1] = cycle, []byte("x")
	wide := make([]any, 2)
	wide[0], wide[1] = wide, wide
	for _, v := range []any{cycle, wide} {
		done := make(chan string)
		go func() { done <- logText(v) }()
		select {
		case got := <-done:
			if !strings.Contains(got, "...") || len(got) > 1<<20 {
				t.Errorf("a cyclic value: %d bytes, %.80q", len(got), got)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("logText of a cyclic value did not return")
		}
	}
	// Map keys in fmt's order: arrays element by element.
	if got, want := logText(map[[2]byte][]byte{{10, 0}: []byte("ten"), {2, 0}: []byte("two"), {1, 0}: []byte("one")}), "map[[1 0]:one [2 0]:two [10 0]:ten]"; got != want {
		t.Errorf("array keys: %q, want %q", got, want)
	}
	// Map keys in fmt's order: numbers by value.
	if got, want := logText(map[int][]byte{10: []byte("x"), 2: []byte("y"), 1: []byte("z")}), "map[1:z 2:y 10:x]"; got != want {
		t.Errorf("map keys: %q, want %q", got, want)
	}
}
