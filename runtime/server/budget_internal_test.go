package server

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/auth"
	"github.com/greenroom-dev/greenroom/runtime/config"
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
	var sb sharedBudget
	sb.setLimit(1<<20, 0, false, false)
	b := &sb.all
	body := bytes.Repeat([]byte("greenroom "), 1000)
	for _, write := range []string{"Read", "WriteTo"} {
		claim := sb.claim(nil, false)
		if !claim.take(int64(len(body)) + 7) {
			t.Fatal("take")
		}
		src := append([]byte(nil), body...)
		s := newBodyStream(src, claim)
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

// A claim on a sharedBudget takes from its caller's share and from the
// whole budget: a principal's own share, the anonymous callers' share,
// or (the authentication off) the whole budget alone; a share is a
// quarter but has room for one body of the largest size. Claiming and
// giving back a principal's share allocates nothing (it is taken on
// every plugin answer).
func TestSharedBudgetClaims(t *testing.T) {
	var sb sharedBudget
	sb.setLimit(100, 10, false, false)
	authn, err := auth.New(&config.Auth{Tokens: map[string]*config.Token{
		"a": {Token: "token-of-a-0123456789abcdef", Subject: "service:a"},
		"b": {Token: "token-of-b-0123456789abcdef", Subject: "service:b"},
	}}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer authn.Close()
	a, err := authn.Authenticate(context.Background(), []byte("Bearer token-of-a-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := authn.Authenticate(context.Background(), []byte("Bearer token-of-b-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	ca := sb.claim(a, false)
	if !ca.take(25) || ca.take(1) {
		t.Fatal("a principal's share is not a quarter of 100")
	}
	if !ca.shareFull {
		t.Error("a refusal by the share is not told so")
	}
	ca2 := sb.claim(a, false)
	if ca2.take(1) {
		t.Error("a principal's second claim does not share its share")
	}
	cb := sb.claim(b, false)
	anon := sb.claim(nil, true)
	if !cb.take(25) || !anon.take(25) || anon.take(1) {
		t.Fatal("another principal's share, the anonymous share")
	}
	whole := sb.claim(nil, false)
	if !whole.take(25) || whole.take(1) || whole.shareFull {
		t.Fatal("the authentication off: the whole budget alone")
	}
	for _, c := range []*budgetClaim{&ca, &ca2, &cb, &anon, &whole} {
		c.release()
	}
	if got := sb.all.used.Load(); got != 0 {
		t.Fatalf("%d bytes held after every claim was released", got)
	}
	if len(sb.principals.m) != 0 {
		t.Fatalf("shares no claim holds are kept: %v", sb.principals.m)
	}

	// Room for one body of the largest size, never past the budget.
	sb.setLimit(100, 60, false, false)
	if c := sb.claim(a, false); !c.take(60) || c.take(1) {
		t.Error("a share with room for one body of 60 in 100")
	} else {
		c.release()
	}
	sb.setLimit(100, 200, false, false)
	if got := sb.anonymous.limit.Load(); got != 100 {
		t.Errorf("a share past the budget: %d", got)
	}

	// A share holding nothing takes one claim past its limit (what an
	// answer holds may pass max_response: TestResponseBudgetShareFitsOneAnswer),
	// within the whole budget; holding something, it does not.
	sb.setLimit(100, 10, false, false)
	if c := sb.claim(a, false); !c.take(30) || c.take(1) || !c.shareFull {
		t.Error("an empty share of 25 refused one claim of 30, or took more after it")
	} else {
		c.release()
	}
	if c := sb.claim(a, false); c.take(101) || c.shareFull {
		t.Error("an empty share took one claim past the whole budget")
	} else {
		c.release()
	}
	if got := sb.all.used.Load(); got != 0 {
		t.Fatalf("%d bytes held after every claim was released", got)
	}

	if n := testing.AllocsPerRun(100, func() {
		c := sb.claim(a, false)
		c.take(10)
		c.release()
	}); n != 0 {
		t.Errorf("claiming a principal's share allocates %v times", n)
	}
}
