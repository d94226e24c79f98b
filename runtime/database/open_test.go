package database_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime/database"
)

// Open keeps its failure until RetryOpen (a reload calls it), then tries
// again.
func TestRetryOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	// A file where the databases' directory should be: SQLite cannot
	// open there.
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	svc := database.New(database.Config{Client: database.ClientSQLite, Connection: dir}, logrus.New())
	defer svc.Close()
	ctx := context.Background()
	if err := svc.Open(ctx); err == nil {
		t.Fatal("Open succeeded over a file")
	}
	os.Remove(dir)
	if err := svc.Open(ctx); err == nil {
		t.Fatal("Open tried again before RetryOpen")
	}
	svc.RetryOpen()
	if err := svc.Open(ctx); err != nil {
		t.Fatalf("Open after RetryOpen: %v", err)
	}
	svc.RetryOpen() // nothing to retry: stays open
	if svc.DB() == nil {
		t.Fatal("RetryOpen dropped an open database")
	}
}

// greenroom.db's pool is bounded, and a flood of writers (the scheduler's
// IMMEDIATE transactions under a plugin's thousand tasks) waits for a
// connection instead of opening one each: unbounded, a flood opened over
// a thousand, and writers past busy_timeout failed with SQLITE_BUSY.
func TestRuntimeSQLitePoolBounded(t *testing.T) {
	svc := database.New(database.Config{Client: database.ClientSQLite, Connection: t.TempDir()}, logrus.New())
	defer svc.Close()
	ctx := context.Background()
	if err := svc.Open(ctx); err != nil {
		t.Fatal(err)
	}
	db := svc.DB().DB
	if got := db.Stats().MaxOpenConnections; got != database.RuntimeSQLiteConns {
		t.Fatalf("greenroom.db's pool allows %d connections (0: unbounded), want %d", got, database.RuntimeSQLiteConns)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE flood (n INTEGER)"); err != nil {
		t.Fatal(err)
	}
	var peak atomic.Int64
	sample := func() {
		for n := int64(db.Stats().OpenConnections); ; {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				return
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			tx, err := db.BeginTx(cctx, nil)
			if err != nil {
				errs <- err
				return
			}
			sample()
			if _, err := tx.ExecContext(cctx, "INSERT INTO flood VALUES (?)", i); err != nil {
				tx.Rollback()
				errs <- err
				return
			}
			if err := tx.Commit(); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if p := peak.Load(); p > database.RuntimeSQLiteConns {
		t.Errorf("%d connections open at once, want at most %d", p, database.RuntimeSQLiteConns)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM flood").Scan(&n); err != nil || n != 200 {
		t.Errorf("%d rows (%v), want 200", n, err)
	}
}
