package database

import (
	"sync"
	"sync/atomic"
	"time"
)

// knobs are the timings and test hooks of the Services of one database.
// Every Service uses defaultKnobs unless a test set others for its own
// database (export_test.go), so that tests that change them need not run
// alone: a test's knobs reach only the Services of the database it made.
// A knobs value is never changed once published; a test's change
// publishes a changed copy.
type knobs struct {
	// migrationIdleTimeout bounds how long a migration's transaction, the
	// runtime's or a plugin's, may sit idle on PostgreSQL before the
	// server ends it (see applyOne).
	migrationIdleTimeout time.Duration
	// How long a held cross-replica lock's session may stay idle before
	// the server ends it, and how often its holder keeps it busy (see
	// pgBackend.lock).
	lockIdleTimeout, lockHeartbeat time.Duration
	// A runtime migration on PostgreSQL waits at most
	// runtimeMigrationLockTimeout for each lock (see migrateRuntime),
	// for runtimeMigrationLockWait in all.
	runtimeMigrationLockTimeout, runtimeMigrationLockWait time.Duration
	// reapAttempts bounds reapClosed's failed tries, a second apart,
	// before it has seen the backend outlive its termination.
	reapAttempts int

	// Hooks, set by tests only (nil: none).
	//
	// migrationFailed runs when a plugin migration's statement has
	// failed, before its transaction is rolled back.
	migrationFailed func()
	// migrationCommit runs before a plugin migration's transaction
	// commits ("before") and after ("after"); an error stops the
	// migration there, as if the process had stopped.
	migrationCommit func(stage string) error
	// runtimeMark runs in a runtime migration's transaction after its
	// SQL and before its bookkeeping row; an error ends the migration
	// there (a process killed at that point).
	runtimeMark func(name string) error
	// failReapChecks makes the reap's checks fail (as if the server
	// refused its connections) while it reports true.
	failReapChecks func() bool
	// pluginConnSetup runs when a plugin's new PostgreSQL connection has
	// logged in, before the runtime sets its session up, with the
	// backend's pid.
	pluginConnSetup func(pid uint32)
}

// defaultKnobs are every Service's, outside tests.
var defaultKnobs = &knobs{
	migrationIdleTimeout:        15 * time.Second,
	lockIdleTimeout:             30 * time.Second,
	lockHeartbeat:               5 * time.Second,
	runtimeMigrationLockTimeout: 2 * time.Second,
	runtimeMigrationLockWait:    2 * time.Minute,
	reapAttempts:                10,
}

// testKnobs holds the knobs tests set, by knobsKey of their database's
// connection (*atomic.Pointer[knobs]); empty outside tests.
var testKnobs sync.Map

// knobsKey is the key of connection (Config.Connection) in testKnobs:
// a SQLite directory with or without its "file:" prefix is one database.
func knobsKey(connection string) string { return SQLiteDir(connection) }

// knobsFor returns the knobs of the Services of connection.
func knobsFor(connection string) *knobs {
	if p, ok := testKnobs.Load(knobsKey(connection)); ok {
		return p.(*atomic.Pointer[knobs]).Load()
	}
	return defaultKnobs
}

// knobs returns s's knobs, as they are now.
func (s *Service) knobs() *knobs { return knobsFor(s.cfg.Connection) }
