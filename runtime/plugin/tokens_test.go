package plugin

import (
	"slices"
	"testing"
	"time"
)

// A pool's tokens go to waiters in the order their calls arrived, not the
// order they began to wait; nobody jumps the line while anyone waits; a
// waiter that leaves after it was handed a token holds it. OnGrant
// reports each grant, in order, with the arrival of the call handed it.
func TestTokensGoInArrivalOrder(t *testing.T) {
	tk := NewTokens(1)
	var grants []time.Time
	tk.OnGrant(func(arrival time.Time) { grants = append(grants, arrival) })
	base := time.Now()
	if !tk.tryTake(base) {
		t.Fatal("a free token was not taken")
	}
	late := tk.enqueue(base.Add(3 * time.Second))
	early := tk.enqueue(base.Add(1 * time.Second)) // moved by a reload: arrived first
	middle := tk.enqueue(base.Add(2 * time.Second))
	if tk.tryTake(time.Now()) {
		t.Fatal("tryTake took a token while calls wait")
	}
	granted := func(w *tokenWaiter) bool {
		select {
		case <-w.granted:
			return true
		default:
			return false
		}
	}
	tk.give()
	if !granted(early) || granted(middle) || granted(late) {
		t.Fatal("the first token given back did not go to the call that arrived first")
	}
	if tk.leave(middle) {
		t.Fatal("a waiter never handed a token left holding one")
	}
	tk.give()
	if !granted(late) {
		t.Fatal("the token did not go to the next in line")
	}
	if !tk.leave(late) {
		t.Fatal("a waiter handed a token was not told it holds it")
	}
	tk.give()
	if tk.count() != 0 || !tk.tryTake(base.Add(4*time.Second)) {
		t.Fatalf("after all were given back, %d held", tk.count())
	}
	want := []time.Time{base, base.Add(time.Second), base.Add(3 * time.Second), base.Add(4 * time.Second)}
	if !slices.Equal(grants, want) {
		t.Errorf("grants reported: %v, want %v", grants, want)
	}
}

// A reload changes how many calls may run: more hands tokens to those
// waiting at once; fewer holds the line until enough calls have ended.
func TestTokensSetMax(t *testing.T) {
	tk := NewTokens(2)
	tk.tryTake(time.Now())
	tk.tryTake(time.Now())
	now := time.Now()
	a, b, c := tk.enqueue(now), tk.enqueue(now.Add(1)), tk.enqueue(now.Add(2))
	tk.SetMax(3)
	if len(a.granted) != 1 || len(b.granted) != 0 {
		t.Fatal("a larger max did not go to the first in line")
	}
	tk.SetMax(1) // 3 held now
	tk.give()
	tk.give()
	if len(b.granted) != 0 || tk.count() != 1 {
		t.Fatalf("with max 1 and 3 held, two given back: b granted %v, %d held", len(b.granted) == 1, tk.count())
	}
	tk.give()
	if len(b.granted) != 1 || len(c.granted) != 0 || tk.count() != 1 {
		t.Fatalf("the token back under max 1 did not go to the next in line (%d held)", tk.count())
	}
}
