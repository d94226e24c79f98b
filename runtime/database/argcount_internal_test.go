package database

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// checkArgs remembers a statement's placeholder count, so that a
// statement run again is not compiled twice, and refuses from memory
// as from a compile; a statement over maxCountedSQL bytes is not
// remembered, and a full memory starts over.
func TestArgCountsRemembered(t *testing.T) {
	// Before SQLite starts in this process: the runtime's tests rely on
	// its memory accounting (sqlite_memory).
	if err := enableSQLiteMemstatus(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "p.db")
	if err := createPrivate(path); err != nil {
		t.Fatal(err)
	}
	dc, err := (&sqliteConnector{dsn: sqliteDSN(path)}).Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	c := dc.(*sqliteConn)

	const q = "SELECT CAST(?1 AS int) + CAST(?2 AS int) + CAST(?1 AS int)"
	for round := range 2 {
		if err := c.checkArgs(q, 2); err != nil {
			t.Fatalf("round %d: two arguments refused: %v", round, err)
		}
		if err := c.checkArgs(q, 3); err == nil || !strings.Contains(err.Error(), "3 arguments for its 2 placeholders") {
			t.Fatalf("round %d: three arguments: %v, want refused", round, err)
		}
		if n, ok := c.counts[q]; !ok || n != 2 {
			t.Fatalf("round %d: remembered %d, %v; want 2", round, n, ok)
		}
	}
	// A count in memory is what checkArgs goes by.
	c.counts[q] = 5
	if err := c.checkArgs(q, 5); err != nil {
		t.Fatalf("the remembered count was not used: %v", err)
	}
	delete(c.counts, q)

	long := "SELECT ?" + strings.Repeat(" ", maxCountedSQL)
	if err := c.checkArgs(long, 2); err == nil {
		t.Fatal("a long statement with one placeholder took two arguments")
	}
	if _, ok := c.counts[long]; ok {
		t.Fatal("a statement over maxCountedSQL was remembered")
	}
	// One that does not compile is left to its run, and not remembered.
	if err := c.checkArgs("SELECT ? FROM missing", 2); err != nil {
		t.Fatalf("a statement that does not compile: %v, want it left to its run", err)
	}
	if _, ok := c.counts["SELECT ? FROM missing"]; ok {
		t.Fatal("a statement that does not compile was remembered")
	}
	for i := range maxCounts + 1 {
		if err := c.checkArgs(fmt.Sprintf("SELECT ? + %d", i), 1); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.counts) > maxCounts {
		t.Fatalf("%d counts remembered, at most %d", len(c.counts), maxCounts)
	}
}
