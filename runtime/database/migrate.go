package database

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sirupsen/logrus"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"

	"github.com/greenroom-dev/greenroom/migrations"
)

// Names of bun's bookkeeping tables for the runtime's own migrations.
const (
	migrationsTable      = "greenroom_migrations"
	migrationsLocksTable = "greenroom_migration_locks"
)

// runtimeFiles are the runtime's migration files for client.
func runtimeFiles(client string) fs.FS {
	if client == ClientPG {
		return migrations.PG()
	}
	return migrations.SQLite()
}

func runtimeMigrations(client string) (*migrate.Migrations, error) {
	m := migrate.NewMigrations()
	if err := m.Discover(runtimeFiles(client)); err != nil {
		return nil, fmt.Errorf("runtime migrations: %w", err)
	}
	return m, nil
}

func newMigrator(db *bun.DB, client string) (*migrate.Migrator, error) {
	ms, err := runtimeMigrations(client)
	if err != nil {
		return nil, err
	}
	return migrate.NewMigrator(db, ms,
		migrate.WithTableName(migrationsTable),
		migrate.WithLocksTableName(migrationsLocksTable)), nil
}

// A runtime migration on PostgreSQL waits at most
// runtimeMigrationLockTimeout (knobs) for each lock (lock_timeout), and is
// tried again runtimeMigrationLockPause later, for runtimeMigrationLockWait
// (knobs) at most. A DDL statement waiting for its lock queues every later statement
// on that table behind it (the scheduler's, on every replica); a plugin
// can hold a lock on a runtime table for as long as PostgreSQL does not
// act on pg_terminate_backend (pgforeign.go), and an operator's
// transaction can too.
const runtimeMigrationLockPause = time.Second

// migrateRuntime applies the runtime's pending migrations. The caller holds
// the runtime lock, so replicas starting together apply each one once.
//
// Each migration's SQL and its row in the bookkeeping table (bun's, which
// status reads) are written in one transaction: bun's Migrate commits the
// SQL and then inserts the row, and a process killed between the two left
// a database no later start could migrate ("table ... already exists":
// an audit's, with kill -9 at 7 of 28 points of a first start). k are the
// timings and hooks of the database's Services.
func migrateRuntime(ctx context.Context, db *bun.DB, client string, log *logrus.Entry, k *knobs) ([]string, error) {
	m, err := newMigrator(db, client)
	if err != nil {
		return nil, err
	}
	if err := m.Init(ctx); err != nil {
		return nil, fmt.Errorf("runtime migrations: create bookkeeping tables: %w", err)
	}
	all, err := m.MigrationsWithStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("runtime migrations: %w", err)
	}
	group := all.LastGroupID() + 1
	files := runtimeFiles(client)
	var names []string
	for _, mig := range all.Unapplied() {
		file := mig.Name + "_" + mig.Comment + ".tx.up.sql"
		sqlText, err := fs.ReadFile(files, file)
		if err != nil {
			return names, fmt.Errorf("runtime migrations: %s: %w", mig.String(), err)
		}
		mig.GroupID = group
		apply := func(ctx context.Context, tx bun.Tx) error {
			if client == ClientPG {
				// As a plugin migration's (applyOne): a replica held up
				// mid-migration must not hold the runtime's tables.
				if _, err := tx.ExecContext(ctx, "SET LOCAL idle_in_transaction_session_timeout = "+strconv.FormatInt(k.migrationIdleTimeout.Milliseconds(), 10)); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, "SET LOCAL lock_timeout = "+strconv.FormatInt(k.runtimeMigrationLockTimeout.Milliseconds(), 10)); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, string(sqlText)); err != nil {
				return err
			}
			if k.runtimeMark != nil {
				if err := k.runtimeMark(mig.String()); err != nil {
					return err
				}
			}
			_, err := tx.NewInsert().Model(&mig).ModelTableExpr(migrationsTable).Exec(ctx)
			return err
		}
		for waited := time.Duration(0); ; waited += k.runtimeMigrationLockTimeout + runtimeMigrationLockPause {
			err = db.RunInTx(ctx, nil, apply)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "55P03" {
				break
			}
			if waited >= k.runtimeMigrationLockWait {
				err = fmt.Errorf("a lock it needs stayed held by another transaction for %s (tried every %s; pg_locks shows who holds it): %w", k.runtimeMigrationLockWait, k.runtimeMigrationLockTimeout+runtimeMigrationLockPause, err)
				break
			}
			if waited == 0 {
				log.WithError(err).WithField("migration", mig.String()).Warn("a runtime migration waits for a lock another transaction holds; trying again every few seconds, letting other statements through in between")
			}
			select {
			case <-ctx.Done():
				return names, fmt.Errorf("runtime migrations: %s: up: %w", mig.String(), ctx.Err())
			case <-time.After(runtimeMigrationLockPause):
			}
		}
		if err != nil {
			return names, fmt.Errorf("runtime migrations: %s: up: %w", mig.String(), err)
		}
		names = append(names, mig.String())
	}
	if len(names) > 0 {
		log.WithField("migrations", names).Info("applied the runtime's migrations")
	}
	return names, nil
}

// pendingRuntimeMigrations lists the runtime's migrations not yet applied.
func pendingRuntimeMigrations(ctx context.Context, db *bun.DB, client string) ([]string, error) {
	st, err := runtimeMigrationStatus(ctx, db, client)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range st {
		if m.AppliedAt.IsZero() {
			out = append(out, m.Name)
		}
	}
	return out, nil
}

// MigrationStatus is one migration and when it was applied (zero: pending).
type MigrationStatus struct {
	// Plugin is "" for the runtime's own migrations.
	Plugin    string
	Name      string
	AppliedAt time.Time
	// Unconfirmed marks a plugin migration recorded whose transaction's
	// COMMIT was not confirmed (a replica stopped during it): the plugin's
	// next load asks the server whether it committed, and applies it
	// again if not.
	Unconfirmed bool
}

func runtimeMigrationStatus(ctx context.Context, db *bun.DB, client string) ([]MigrationStatus, error) {
	all, err := runtimeMigrations(client)
	if err != nil {
		return nil, err
	}
	m, err := newMigrator(db, client)
	if err != nil {
		return nil, err
	}
	// Before the first migration there is no bookkeeping table: all are
	// pending.
	var exists bool
	q := "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '" + migrationsTable + "')"
	if client == ClientPG {
		q = "SELECT to_regclass('" + RuntimeSchema + "." + migrationsTable + "') IS NOT NULL"
	}
	if err := db.DB.QueryRowContext(ctx, q).Scan(&exists); err != nil {
		return nil, fmt.Errorf("read applied runtime migrations: %w", err)
	}
	var ms migrate.MigrationSlice
	if exists {
		ms, err = m.MigrationsWithStatus(ctx)
	} else {
		ms = all.Sorted()
	}
	if err != nil {
		return nil, fmt.Errorf("read applied runtime migrations: %w", err)
	}
	out := make([]MigrationStatus, 0, len(ms))
	for _, mig := range ms {
		out = append(out, MigrationStatus{Name: mig.String(), AppliedAt: mig.MigratedAt})
	}
	return out, nil
}

// Status opens the runtime's database without migrating it and reports the
// runtime's migrations and every plugin migration recorded so far. It is
// `greenroom migrate status`. A SQLite database that does not exist yet is
// not created: every runtime migration is pending.
func Status(ctx context.Context, cfg Config, log *logrus.Logger) ([]MigrationStatus, error) {
	cfg.SkipMigrations = true
	var b backend
	var err error
	switch cfg.Client {
	case ClientSQLite:
		b, err = newSQLite(cfg, log.WithField("component", "database"))
	case ClientPG:
		b, err = newPG(cfg, log.WithField("component", "database"))
	default:
		err = fmt.Errorf("unknown database client %q", cfg.Client)
	}
	if err != nil {
		return nil, err
	}
	defer b.close()
	if sb, ok := b.(*sqliteBackend); ok {
		// A status does not create the database: without its file
		// nothing was applied.
		if _, err := os.Stat(filepath.Join(sb.dir, "greenroom.db")); errors.Is(err, fs.ErrNotExist) {
			all, err := runtimeMigrations(cfg.Client)
			if err != nil {
				return nil, err
			}
			var out []MigrationStatus
			for _, mig := range all.Sorted() {
				out = append(out, MigrationStatus{Name: mig.String()})
			}
			return out, nil
		}
	}
	db, err := b.open(ctx)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	out, err := runtimeMigrationStatus(ctx, db, cfg.Client)
	if err != nil {
		return nil, err
	}
	var recs []pluginMigration
	if err := db.NewSelect().Model(&recs).Order("plugin", "name").Scan(ctx); err != nil {
		// Before the runtime's first migration there is no table yet,
		// and before 20261202000001 (pending, as status applies none) no
		// xact column.
		recs = nil
		if err := db.NewSelect().Model(&recs).ExcludeColumn("xact").Order("plugin", "name").Scan(ctx); err != nil {
			return out, nil
		}
	}
	for _, r := range recs {
		out = append(out, MigrationStatus{Plugin: r.Plugin, Name: r.Name, AppliedAt: r.AppliedAt, Unconfirmed: r.Xact != ""})
	}
	return out, nil
}

// pluginMigration is one row of plugin_migrations.
type pluginMigration struct {
	bun.BaseModel `bun:"table:plugin_migrations"`

	Plugin    string    `bun:"plugin,pk"`
	Name      string    `bun:"name,pk"`
	SHA256    string    `bun:"sha256,notnull"`
	AppliedAt time.Time `bun:"applied_at,notnull"`
	// Xact is the PostgreSQL transaction that applied it while its COMMIT
	// is not confirmed; "" (NULL) once it is, and always on SQLite.
	Xact string `bun:"xact,nullzero"`
}
