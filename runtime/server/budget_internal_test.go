package server

import (
	"bytes"
	"io"
	"testing"
)

func TestByteBudgetTakeGive(t *testing.T) {
	var b byteBudget
	b.limit.Store(100)
	if !b.take(60) || !b.take(40) {
		t.Fatal("60 + 40 bytes do not fit in 100")
	}
	if b.take(1) {
		t.Fatal("a byte past the limit was taken")
	}
	b.give(40)
	if b.take(41) || !b.take(40) {
		t.Fatal("after giving 40 back, want 40 to fit and 41 not")
	}
	if got := b.refused.Load(); got != 2 {
		t.Errorf("refused = %d, want 2", got)
	}
}

func TestBodyStream(t *testing.T) {
	var b byteBudget
	b.limit.Store(1 << 20)
	body := bytes.Repeat([]byte("greenroom "), 1000)
	for _, write := range []string{"Read", "WriteTo"} {
		if !b.take(int64(len(body)) + 7) {
			t.Fatal("take")
		}
		src := append([]byte(nil), body...)
		s := newBodyStream(src, int64(len(body))+7, &b)
		clear(src) // the stream has its own copy: the instance's buffer is reused
		var got bytes.Buffer
		var err error
		if write == "Read" {
			_, err = io.Copy(&got, struct{ io.Reader }{s})
		} else {
			_, err = s.WriteTo(&got)
		}
		if err != nil || !bytes.Equal(got.Bytes(), body) {
			t.Fatalf("%s: %v, %d bytes, equal %v", write, err, got.Len(), bytes.Equal(got.Bytes(), body))
		}
		if b.used.Load() == 0 {
			t.Fatalf("%s: the budget was given back before Close", write)
		}
		s.Close()
		if got := b.used.Load(); got != 0 {
			t.Fatalf("%s: %d bytes still held after Close", write, got)
		}
	}
}
