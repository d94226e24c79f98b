package database

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

// Replicas opening one new SQLite file together all get it: turning the
// file to WAL takes an exclusive lock, and SQLite answers SQLITE_BUSY at
// once (no busy handler) to a connection that would deadlock with another
// doing the same; one replica of TestRestartAndReplicas failed so.
func TestSQLiteOpenedTogether(t *testing.T) {
	dir := t.TempDir()
	for round := range 20 {
		path := filepath.Join(dir, fmt.Sprintf("db-%d.db", round))
		if err := createPrivate(path); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				sdb, err := sql.Open("sqlite", sqliteDSN(path))
				if err != nil {
					errs <- err
					return
				}
				defer sdb.Close()
				if err := pingBusy(context.Background(), sdb); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
	}
}
