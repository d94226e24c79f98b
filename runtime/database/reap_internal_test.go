package database

import (
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// Close waits for the reaps of given-up backends, but at most reapGrace:
// then it stops them (a database that does not answer must not hold the
// runtime's shutdown), and no reap starts after it.
func TestCloseStopsReaps(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	s := New(Config{Client: ClientSQLite}, logrus.New())
	if !s.startReap() {
		t.Fatal("startReap refused before Close")
	}
	go func() { <-s.reapCtx.Done(); s.reaping.Done() }() // a reap that waits for the database
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// (That it returns at all is the point; it waits the grace first.)
	if took := time.Since(start); took < reapGrace {
		t.Errorf("Close took %s with a reap running, want it to wait %s for it", took, reapGrace)
	}
	if s.startReap() {
		t.Error("a reap started after Close")
	}
}
