package database

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sirupsen/logrus"
	"github.com/uptrace/bun"
)

// PluginConnConfig returns the configuration plugin id's PostgreSQL
// connections open with, for tests that connect as the plugin does from
// another process.
func PluginConnConfig(s *Service, id string) *pgx.ConnConfig {
	return s.pluginConnector(id).conf.Copy()
}

// tuneMu orders tests' changes of testKnobs.
var tuneMu sync.Mutex

// tune changes the knobs of the Services of the database connection names
// (Config.Connection, or the [database] table's connection) by f, for the
// rest of t: the Services of other databases, other tests', keep theirs.
func tune(t testing.TB, connection string, f func(*knobs)) {
	t.Helper()
	key := knobsKey(connection)
	tuneMu.Lock()
	defer tuneMu.Unlock()
	v, loaded := testKnobs.LoadOrStore(key, new(atomic.Pointer[knobs]))
	p := v.(*atomic.Pointer[knobs])
	if !loaded {
		p.Store(defaultKnobs)
		t.Cleanup(func() { testKnobs.Delete(key) })
	}
	k := *p.Load()
	f(&k)
	p.Store(&k)
}

// ResetKnobs gives the Services of the database connection names the
// default timings and no hooks again.
func ResetKnobs(t testing.TB, connection string) {
	tune(t, connection, func(k *knobs) { *k = *defaultKnobs })
}

// SetMigrationCommitHook sets, for the Services of the database connection
// names until t ends, what runs before ("before") and after ("after") a
// migration's transaction commits; an error stops the migration there, as
// if the process had stopped. nil removes it.
func SetMigrationCommitHook(t testing.TB, connection string, f func(stage string) error) {
	tune(t, connection, func(k *knobs) { k.migrationCommit = f })
}

// SetMigrationFailedHook makes f run, for the Services of the database
// connection names until t ends, when a migration's statement has failed,
// before the runtime rolls its transaction back.
func SetMigrationFailedHook(t testing.TB, connection string, f func()) {
	tune(t, connection, func(k *knobs) { k.migrationFailed = f })
}

// SetReapAttempts sets, for the Services of the database connection names
// until t ends, how many failed checks the reap of a given-up backend
// makes before it gives up, when it has not seen the backend outlive its
// termination.
func SetReapAttempts(t testing.TB, connection string, n int) {
	tune(t, connection, func(k *knobs) { k.reapAttempts = n })
}

// FailReapChecks makes the reap's checks fail (as if the server refused
// its connections) while fail reports true, for the Services of the
// database connection names until t ends.
func FailReapChecks(t testing.TB, connection string, fail func() bool) {
	tune(t, connection, func(k *knobs) { k.failReapChecks = fail })
}

// SetPluginConnSetupHook makes f run, for the Services of the database
// connection names until t ends, when a plugin's new PostgreSQL
// connection has logged in, before the runtime sets its session up, with
// its backend's pid. nil removes it.
func SetPluginConnSetupHook(t testing.TB, connection string, f func(pid uint32)) {
	tune(t, connection, func(k *knobs) { k.pluginConnSetup = f })
}

// MarkTable is the table of a plugin's SQLite file that lists the
// migrations the file holds.
const MarkTable = markTable

// SetMigrationIdleTimeout sets how long a migration's transaction may sit
// idle on PostgreSQL, for the Services of the database connection names
// until t ends.
func SetMigrationIdleTimeout(t testing.TB, connection string, d time.Duration) {
	tune(t, connection, func(k *knobs) { k.migrationIdleTimeout = d })
}

// Lock takes s's cross-replica lock name as the runtime does.
func Lock(ctx context.Context, s *Service, name string) (context.Context, func(), error) {
	return s.backend.lock(ctx, s.DB(), name)
}

// SetLockTimings sets how long a held lock's session may stay idle and
// how often its holder keeps it busy, for the Services of the database
// connection names until t ends.
func SetLockTimings(t testing.TB, connection string, idle, heartbeat time.Duration) {
	tune(t, connection, func(k *knobs) { k.lockIdleTimeout, k.lockHeartbeat = idle, heartbeat })
}

// IsLockLost reports whether err is a lost lock.
func IsLockLost(err error) bool {
	var lost *errLockLost
	return errors.As(err, &lost)
}

// MigrateRuntime applies the runtime's pending migrations to db, the
// database connection names, as a start does (without the runtime lock,
// with the knobs the test set for it), stopping with an error before the
// record of the migration named stop ("": none).
func MigrateRuntime(ctx context.Context, db *bun.DB, connection, client string, log *logrus.Entry, stop string) ([]string, error) {
	k := *knobsFor(connection)
	if stop != "" {
		k.runtimeMark = func(name string) error {
			if name == stop {
				return errors.New("stopped (a test's)")
			}
			return nil
		}
	}
	return migrateRuntime(ctx, db, client, log, &k)
}

// RuntimeMigrationNames are the names of the runtime's migrations for
// client, in order.
func RuntimeMigrationNames(client string) []string {
	ms, err := runtimeMigrations(client)
	if err != nil {
		panic(err)
	}
	var out []string
	for _, m := range ms.Sorted() {
		out = append(out, m.String())
	}
	return out
}

// SetRuntimeMigrationLockWait sets how long a runtime migration waits for
// each lock and how long it keeps trying, on the database connection names
// until t ends.
func SetRuntimeMigrationLockWait(t testing.TB, connection string, each, total time.Duration) {
	tune(t, connection, func(k *knobs) { k.runtimeMigrationLockTimeout, k.runtimeMigrationLockWait = each, total })
}

// RuntimeSQLiteConns is the size of greenroom.db's connection pool.
const RuntimeSQLiteConns = runtimeSQLiteConns

// DescriptionGeneration is plugin id's connector generation on s (0 on
// SQLite): it moves on each time the plugin's PostgreSQL connections are
// to forget the statement descriptions they cached.
func DescriptionGeneration(s *Service, id string) int64 {
	if pc := s.pluginConnector(id); pc != nil {
		return pc.generation.Load()
	}
	return 0
}

// MigrationsHeard counts the notifications of plugin migrations s's watch
// has handled, signed by a runtime (PostgreSQL; 0 on SQLite), its own
// replica's included.
func MigrationsHeard(s *Service) int64 {
	if pg := s.pg(); pg != nil {
		return pg.heard.Load()
	}
	return 0
}

// MigrationNoticesIgnored counts the notifications on the migration
// channel s's watch ignored, signed by no runtime (PostgreSQL; 0 on
// SQLite).
func MigrationNoticesIgnored(s *Service) int64 {
	if pg := s.pg(); pg != nil {
		return pg.ignored.Load()
	}
	return 0
}

// NotifyMigrated sends, as s's replica does once plugin id's migrations
// committed, the notification that tells every replica (s's own too).
func NotifyMigrated(s *Service, id string) {
	s.mu.Lock()
	pg, _ := s.backend.(*pgBackend)
	db := s.db
	s.mu.Unlock()
	pg.migrated(context.Background(), db, id)
}

// PGStatementStarts is where pgStatementStarts finds each statement of q.
func PGStatementStarts(q string, backslashes bool) []int { return pgStatementStarts(q, backslashes) }

// PGExecCounting runs q in tx on conn as a PostgreSQL migration's file
// is run, and returns how many of its statements completed.
func PGExecCounting(ctx context.Context, conn *sql.Conn, tx *sql.Tx, q string) (int, error) {
	done, _, err := pgExecCounting(ctx, conn, tx, q)
	return done, err
}
