package main

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
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

// Store keeps the latest copy and the fetch history.
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

// maxHistory bounds the fetches the store keeps.
const maxHistory = 100

//go:embed migrations/*.up.sql
var migrations embed.FS

// dbStore keeps the copy and the history in the plugin's own database
// (greenroom.DB), shared by every instance and kept across restarts.
type dbStore struct{ db *sql.DB }

func newStore() Store { return &dbStore{db: greenroom.DB()} }

func (s *dbStore) Latest(ctx context.Context) (*Copy, error) {
	var c Copy
	var lastModified sql.NullTime
	err := s.db.QueryRowContext(ctx,
		"SELECT url, body, content_type, etag, last_modified, fetched_at, checked_at FROM copy WHERE id = 1").
		Scan(&c.URL, &c.Body, &c.ContentType, &c.ETag, &lastModified, &c.FetchedAt, &c.CheckedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the latest copy: %w", err)
	}
	if lastModified.Valid {
		c.LastModified = lastModified.Time
	}
	return &c, nil
}

func (s *dbStore) SaveCopy(ctx context.Context, c *Copy) error {
	var lastModified sql.NullTime
	if !c.LastModified.IsZero() {
		lastModified = sql.NullTime{Time: c.LastModified.UTC(), Valid: true}
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO copy (id, url, body, content_type, etag, last_modified, fetched_at, checked_at)
VALUES (1, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET url = excluded.url, body = excluded.body, content_type = excluded.content_type,
  etag = excluded.etag, last_modified = excluded.last_modified, fetched_at = excluded.fetched_at, checked_at = excluded.checked_at`,
		c.URL, c.Body, c.ContentType, c.ETag, lastModified, c.FetchedAt.UTC(), c.CheckedAt.UTC())
	if err != nil {
		return fmt.Errorf("save the copy: %w", err)
	}
	return nil
}

// AddFetch records f with the next id, so that fetches recorded within one
// clock tick keep their order. Two instances racing for the same id (on
// PostgreSQL) make one insert fail; it retries.
func (s *dbStore) AddFetch(ctx context.Context, f Fetch) error {
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		if err = s.addFetch(ctx, f); err == nil {
			return nil
		}
	}
	return err
}

func (s *dbStore) addFetch(ctx context.Context, f Fetch) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record the fetch: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO fetches (id, at, outcome, status, etag, bytes, error, duration_ms)
SELECT COALESCE(MAX(id), 0) + 1, ?, ?, ?, ?, ?, ?, ? FROM fetches`,
		f.At.UTC(), f.Outcome, f.Status, f.ETag, f.Bytes, f.Error, f.DurationMS); err != nil {
		return fmt.Errorf("record the fetch: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		"DELETE FROM fetches WHERE id NOT IN (SELECT id FROM fetches ORDER BY at DESC, id DESC LIMIT ?)", maxHistory); err != nil {
		return fmt.Errorf("prune the history: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record the fetch: %w", err)
	}
	return nil
}

func (s *dbStore) History(ctx context.Context, limit int) ([]Fetch, error) {
	rows, err := s.db.QueryContext(ctx,
		"SELECT at, outcome, status, etag, bytes, error, duration_ms FROM fetches ORDER BY at DESC, id DESC LIMIT ?", limit)
	if err != nil {
		return nil, fmt.Errorf("read the history: %w", err)
	}
	defer rows.Close()
	out := []Fetch{}
	for rows.Next() {
		var f Fetch
		if err := rows.Scan(&f.At, &f.Outcome, &f.Status, &f.ETag, &f.Bytes, &f.Error, &f.DurationMS); err != nil {
			return nil, fmt.Errorf("read the history: %w", err)
		}
		out = append(out, f)
	}
	return out, rows.Err()
}
