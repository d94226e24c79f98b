package database

import (
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
)

// A runtime migration's SQL and its bookkeeping row commit together: a
// process stopped between the two (here: the hook failing there) leaves
// the migration pending, and the next start applies it. bun's Migrate
// committed the SQL first, and such a database could never be migrated
// again ("duplicate column name": an audit's, with kill -9).
func TestRuntimeMigrationCommitsWithItsRecord(t *testing.T) {
	// Before SQLite starts in this process: the runtime's tests rely on
	// its memory accounting (sqlite_memory).
	if err := enableSQLiteMemstatus(); err != nil {
		t.Fatal(err)
	}
	sdb, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "greenroom.db"))
	if err != nil {
		t.Fatal(err)
	}
	db := bun.NewDB(sdb, sqlitedialect.New())
	defer db.Close()
	log := logrus.NewEntry(logrus.New())
	ms, err := runtimeMigrations(ClientSQLite)
	if err != nil {
		t.Fatal(err)
	}
	sorted := ms.Sorted()
	last := sorted[len(sorted)-1].String()
	stop := errors.New("stopped (a test's)")
	stopped := *defaultKnobs
	stopped.runtimeMark = func(name string) error {
		if name == last {
			return stop
		}
		return nil
	}
	names, err := migrateRuntime(t.Context(), db, ClientSQLite, log, &stopped)
	if !errors.Is(err, stop) || len(names) != len(sorted)-1 {
		t.Fatalf("stopped before the last record: %v %v", names, err)
	}
	if pending, err := pendingRuntimeMigrations(t.Context(), db, ClientSQLite); err != nil || len(pending) != 1 || !strings.HasPrefix(last, pending[0]) {
		t.Errorf("pending after the stop: %v %v, want %s", pending, err, last)
	}
	names, err = migrateRuntime(t.Context(), db, ClientSQLite, log, defaultKnobs)
	if err != nil || !slices.Equal(names, []string{last}) {
		t.Fatalf("the next start: %v %v, want %s applied", names, err, last)
	}
	if names, err = migrateRuntime(t.Context(), db, ClientSQLite, log, defaultKnobs); err != nil || len(names) != 0 {
		t.Errorf("again: %v %v, want nothing to apply", names, err)
	}
	var n int
	if err := db.QueryRowContext(t.Context(), "SELECT count(*) FROM "+migrationsTable+" WHERE name = ?", strings.SplitN(last, "_", 2)[0]).Scan(&n); err != nil || n != 1 {
		t.Errorf("records of %s: %d %v, want 1", last, n, err)
	}
}
