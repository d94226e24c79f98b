package database_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/sirupsen/logrus"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
)

// A runtime migration that cannot get a lock on PostgreSQL gives up after
// lock_timeout and tries again, rather than wait in the lock's queue with
// every later statement on the table queued behind it: a reader of the
// table goes on while a transaction (here an operator's; a plugin's in an
// operation PostgreSQL does not interrupt) holds the lock. It fails, with
// an error that says so, once the lock stays held past its bound.
func TestPGRuntimeMigrationLetsStatementsThroughWhileItWaits(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	url := pgtest.URL(t)
	sdb, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	db := bun.NewDB(sdb, pgdialect.New())
	log := logrus.NewEntry(logrus.New())
	names := database.RuntimeMigrationNames(database.ClientPG)
	last := names[len(names)-1] // ALTER TABLE scheduler_tasks ADD COLUMN
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if got, err := database.MigrateRuntime(ctx, db, url, database.ClientPG, log, last); err == nil || len(got) != len(names)-1 {
		t.Fatalf("all but the last: %v %v", got, err)
	}

	holder, err := sdb.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	for _, q := range []string{"BEGIN", "LOCK TABLE scheduler_tasks, scheduler_runs IN ACCESS SHARE MODE"} {
		if _, err := holder.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}

	database.SetRuntimeMigrationLockWait(t, url, time.Second, 0)
	got, err := database.MigrateRuntime(ctx, db, url, database.ClientPG, log, "")
	database.ResetKnobs(t, url)
	if err == nil || !strings.Contains(err.Error(), "stayed held by another transaction") || len(got) != 0 {
		t.Fatalf("with the lock held past the bound: %v %v, want an error that says the lock stayed held", got, err)
	}

	done := make(chan error, 1)
	go func() {
		got, err := database.MigrateRuntime(ctx, db, url, database.ClientPG, log, "")
		if err == nil && (len(got) != 1 || got[0] != last) {
			err = fmt.Errorf("applied %v, want %s", got, last)
		}
		done <- err
	}()
	time.Sleep(500 * time.Millisecond) // the migration waits for its lock
	reader, err := sdb.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if _, err := reader.ExecContext(ctx, "SET statement_timeout = '4s'"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := reader.QueryRowContext(ctx, "SELECT count(*) FROM scheduler_tasks").Scan(&n); err != nil {
		t.Errorf("a reader while the migration waits (the lock is held 6 s): %v, want it to go through", err)
	}
	time.Sleep(6*time.Second - 500*time.Millisecond)
	if _, err := holder.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("once the lock is released: %v", err)
	}
}
