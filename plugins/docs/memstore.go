package main

import (
	"context"
	"sync"
)

// memStore keeps the copy and the history in this instance's memory: the
// store of a docs plugin the operator did not grant a database. Each
// instance (limits.instances) and each restart fetches its own copy, and
// the history is the instance's own.
type memStore struct {
	mu      sync.Mutex
	latest  *Copy
	fetches []Fetch // oldest first, at most maxHistory
}

func (s *memStore) Latest(ctx context.Context) (*Copy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.latest == nil {
		return nil, nil
	}
	c := *s.latest
	return &c, nil
}

func (s *memStore) SaveCopy(ctx context.Context, c *Copy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := *c
	s.latest = &cp
	return nil
}

func (s *memStore) AddFetch(ctx context.Context, f Fetch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.fetches) == maxHistory {
		s.fetches = append(s.fetches[:0], s.fetches[1:]...)
	}
	s.fetches = append(s.fetches, f)
	return nil
}

func (s *memStore) History(ctx context.Context, limit int) ([]Fetch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Fetch{}
	for i := len(s.fetches) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, s.fetches[i])
	}
	return out, nil
}
