package main

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Copy is the latest fetched copy of the document.
type Copy struct {
	URL          string
	Body         []byte
	ContentType  string
	ETag         string
	LastModified time.Time
	// FetchedAt is when this body was fetched, CheckedAt when it was last
	// confirmed current (a fetch or a 304).
	FetchedAt time.Time
	CheckedAt time.Time
}

// Fetch is one attempt to fetch the document.
type Fetch struct {
	At         time.Time `json:"at"`
	Outcome    string    `json:"outcome"` // "fetched", "not_modified" or "error"
	Status     int       `json:"status,omitempty"`
	ETag       string    `json:"etag,omitempty"`
	Bytes      int       `json:"bytes,omitempty"`
	Error      string    `json:"error,omitempty"`
	DurationMS int64     `json:"duration_ms"`
}

// Store keeps the latest copy and the fetch history. The issue asks for
// both in the plugin's database; for now memStore keeps them in the
// instance's memory. A Store over greenroom.DB() replaces it in newStore
// without touching the handlers.
type Store interface {
	// Latest returns the latest copy, or nil when there is none.
	Latest(ctx context.Context) (*Copy, error)
	// SaveCopy replaces the latest copy.
	SaveCopy(ctx context.Context, c *Copy) error
	// AddFetch records a fetch attempt.
	AddFetch(ctx context.Context, f Fetch) error
	// History returns up to limit fetches, newest first.
	History(ctx context.Context, limit int) ([]Fetch, error)
}

// maxHistory bounds the fetches memStore keeps.
const maxHistory = 100

// memStore is Store in memory. Each plugin instance has its own, and loses
// it when the runtime retires the instance.
type memStore struct {
	mu      sync.Mutex
	latest  *Copy
	fetches []Fetch // oldest first
}

func newStore() Store { return &memStore{} }

func (s *memStore) Latest(context.Context) (*Copy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.latest == nil {
		return nil, nil
	}
	c := *s.latest
	return &c, nil
}

func (s *memStore) SaveCopy(_ context.Context, c *Copy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := *c
	s.latest = &cp
	return nil
}

func (s *memStore) AddFetch(_ context.Context, f Fetch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetches = append(s.fetches, f)
	if len(s.fetches) > maxHistory {
		s.fetches = slices.Delete(s.fetches, 0, len(s.fetches)-maxHistory)
	}
	return nil
}

func (s *memStore) History(_ context.Context, limit int) ([]Fetch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(limit, len(s.fetches))
	out := make([]Fetch, 0, n)
	for i := len(s.fetches) - 1; i >= len(s.fetches)-n; i-- {
		out = append(out, s.fetches[i])
	}
	return out, nil
}
