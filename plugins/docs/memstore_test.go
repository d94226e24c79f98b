package main

import (
	"context"
	"testing"
	"time"
)

// The memory store keeps the last maxHistory fetches, newest first, and
// hands out copies of the latest copy, not the copy itself.
func TestMemStore(t *testing.T) {
	ctx := context.Background()
	s := &memStore{}
	if c, err := s.Latest(ctx); c != nil || err != nil {
		t.Fatalf("empty store: %v %v", c, err)
	}
	start := time.Unix(0, 0)
	for i := range maxHistory + 10 {
		s.AddFetch(ctx, Fetch{At: start.Add(time.Duration(i) * time.Second), Outcome: "fetched"})
	}
	h, _ := s.History(ctx, maxHistory+50)
	if len(h) != maxHistory || !h[0].At.Equal(start.Add(time.Duration(maxHistory+9)*time.Second)) || !h[len(h)-1].At.Equal(start.Add(10*time.Second)) {
		t.Errorf("history: %d fetches, newest %v, oldest %v", len(h), h[0].At, h[len(h)-1].At)
	}
	if h, _ := s.History(ctx, 3); len(h) != 3 {
		t.Errorf("limit 3: %d", len(h))
	}
	s.SaveCopy(ctx, &Copy{URL: "u", ETag: `"1"`})
	c, _ := s.Latest(ctx)
	c.ETag = "changed"
	if c2, _ := s.Latest(ctx); c2.ETag != `"1"` {
		t.Errorf("the store's copy changed through the one Latest returned: %q", c2.ETag)
	}
}
