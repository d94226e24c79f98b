package database

import (
	"context"
	"errors"
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

// SetMigrationCommitHook sets what runs before ("before") and after
// ("after") a migration's transaction commits; an error stops the
// migration there, as if the process had stopped. nil removes it.
func SetMigrationCommitHook(f func(stage string) error) { testHookMigrationCommit = f }

// SetMigrationFailedHook makes f run when a migration's statement has
// failed, before the runtime rolls its transaction back; it returns a
// function that restores none.
func SetMigrationFailedHook(f func()) (restore func()) {
	testHookMigrationFailed = f
	return func() { testHookMigrationFailed = nil }
}

// SetReapAttempts sets how many failed checks the reap of a given-up
// backend makes before it gives up, when it has not seen the backend
// outlive its termination; it returns a function that restores it.
func SetReapAttempts(n int) (restore func()) {
	old := reapAttempts
	reapAttempts = n
	return func() { reapAttempts = old }
}

// FailReapChecks makes the reap's checks fail (as if the server refused
// its connections) while fail reports true; it returns a function that
// restores them.
func FailReapChecks(fail func() bool) (restore func()) {
	old := terminate
	terminate = func(ctx context.Context, pc *pgConnector, pid uint32, started time.Time) (bool, bool, error) {
		if fail() {
			return false, false, errors.New("connection refused (a test's)")
		}
		return old(ctx, pc, pid, started)
	}
	return func() { terminate = old }
}

// MarkTable is the table of a plugin's SQLite file that lists the
// migrations the file holds.
const MarkTable = markTable

// SetMigrationIdleTimeout sets how long a migration's transaction may sit
// idle on PostgreSQL; it returns a function that restores it.
func SetMigrationIdleTimeout(d time.Duration) (restore func()) {
	old := migrationIdleTimeout
	migrationIdleTimeout = d
	return func() { migrationIdleTimeout = old }
}

// Lock takes s's cross-replica lock name as the runtime does.
func Lock(ctx context.Context, s *Service, name string) (context.Context, func(), error) {
	return s.backend.lock(ctx, s.DB(), name)
}

// SetLockTimings sets how long a held lock's session may stay idle and
// how often its holder keeps it busy; it returns a function that restores
// them.
func SetLockTimings(idle, heartbeat time.Duration) (restore func()) {
	oldIdle, oldBeat := lockIdleTimeout, lockHeartbeat
	lockIdleTimeout, lockHeartbeat = idle, heartbeat
	return func() { lockIdleTimeout, lockHeartbeat = oldIdle, oldBeat }
}

// IsLockLost reports whether err is a lost lock.
func IsLockLost(err error) bool {
	var lost *errLockLost
	return errors.As(err, &lost)
}

// MigrateRuntime applies the runtime's pending migrations to db as a
// start does (without the runtime lock), stopping with an error before
// the record of the migration named stop ("": none).
func MigrateRuntime(ctx context.Context, db *bun.DB, client string, log *logrus.Entry, stop string) ([]string, error) {
	if stop != "" {
		testHookRuntimeMark = func(name string) error {
			if name == stop {
				return errors.New("stopped (a test's)")
			}
			return nil
		}
		defer func() { testHookRuntimeMark = nil }()
	}
	return migrateRuntime(ctx, db, client, log)
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
// each lock and how long it keeps trying; it returns a function that
// restores them.
func SetRuntimeMigrationLockWait(each, total time.Duration) (restore func()) {
	oldEach, oldTotal := runtimeMigrationLockTimeout, runtimeMigrationLockWait
	runtimeMigrationLockTimeout, runtimeMigrationLockWait = each, total
	return func() { runtimeMigrationLockTimeout, runtimeMigrationLockWait = oldEach, oldTotal }
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
