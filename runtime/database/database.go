// Package database gives greenroom its own database and every plugin granted
// the database capability an isolated one (docs/database.md).
//
// One Service per runtime holds the runtime's own database (a *bun.DB, for
// greenroom's tables: migrations/, later the scheduler's) and one PluginDB
// per plugin. On PostgreSQL each plugin gets its own schema and, with
// isolation = "role", its own login role that owns that schema and nothing
// else; on SQLite each plugin gets its own file, and an authorizer denies
// every statement that would reach another file. PluginDB implements
// hostfuncs.Database: the host functions of the guest ABI call it.
//
// Lifecycle: New (nothing opened) → Open (connect, provision, apply the
// runtime's migrations; safe with several replicas starting together) →
// Plugin (per plugin: provision and open its database) →
// PluginDB.ApplyMigrations → Close.
package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/uptrace/bun"
)

// Clients.
const (
	ClientSQLite = "sqlite"
	ClientPG     = "pg"
)

// Isolation modes on PostgreSQL.
const (
	IsolationRole   = "role"
	IsolationSchema = "schema"
)

// Config is the [database] table, with paths resolved.
type Config struct {
	// Client is ClientSQLite or ClientPG.
	Client string
	// Connection is, for SQLite, the directory holding the databases
	// (a "file:" prefix is accepted); for PostgreSQL, a postgres:// URL.
	Connection string
	// Isolation is IsolationRole or IsolationSchema (PostgreSQL only).
	Isolation string
	// SkipMigrations leaves migrations to `greenroom migrate up`: the
	// runtime then refuses to start while its own are pending, and a
	// plugin with pending migrations does not load.
	SkipMigrations bool
}

// Limits bound one plugin's use of its database.
type Limits struct {
	// MaxConns is the size of the plugin's connection pool.
	MaxConns int
	// StatementTimeout bounds every statement, and the wait for a
	// connection when all are busy.
	StatementTimeout time.Duration
	// MaxResult bounds the encoded size of one query result.
	MaxResult int
}

// Service is the database side of one runtime.
type Service struct {
	cfg Config
	log *logrus.Entry

	mu      sync.Mutex
	opened  bool
	openErr error
	closed  bool
	backend backend
	db      *bun.DB
	plugins map[string]*PluginDB
}

// backend is what differs between SQLite and PostgreSQL.
type backend interface {
	// open connects the runtime's own database.
	open(ctx context.Context) (*bun.DB, error)
	// check verifies, before anything is created, that the database user
	// has the privileges plugin isolation needs.
	check(ctx context.Context, db *bun.DB) error
	// prepare runs after the runtime's migrations, under the runtime lock
	// (PostgreSQL: read or create the role key).
	prepare(ctx context.Context, db *bun.DB) error
	// lock takes the named cross-replica lock; the returned function
	// releases it.
	lock(ctx context.Context, db *bun.DB, name string) (func(), error)
	// plugin provisions and opens plugin id's database.
	plugin(ctx context.Context, db *bun.DB, id string, lim Limits) (*sql.DB, error)
	// classify turns a driver error into the error the guest sees.
	classify(err error) error
	// rewrite adapts a guest's statement to the database (placeholders).
	rewrite(sql string, args int) string
	close()
}

// New returns a Service for cfg. Nothing is opened until Open.
func New(cfg Config, log *logrus.Logger) *Service {
	return &Service{cfg: cfg, log: log.WithField("component", "database"), plugins: map[string]*PluginDB{}}
}

// Client returns the configured client, ClientSQLite or ClientPG.
func (s *Service) Client() string { return s.cfg.Client }

// Open connects the runtime's own database, applies the runtime's
// migrations (unless skip_migrations) and prepares plugin provisioning. It
// is idempotent: later calls return the first call's result.
func (s *Service) Open(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("database service closed")
	}
	if s.opened {
		return s.openErr
	}
	s.opened = true
	s.openErr = s.open(ctx)
	return s.openErr
}

func (s *Service) open(ctx context.Context) (err error) {
	switch s.cfg.Client {
	case ClientSQLite:
		s.backend, err = newSQLite(s.cfg, s.log)
	case ClientPG:
		s.backend, err = newPG(s.cfg, s.log)
	default:
		err = fmt.Errorf("unknown database client %q", s.cfg.Client)
	}
	if err != nil {
		return err
	}
	db, err := s.backend.open(ctx)
	if err != nil {
		s.backend.close()
		return err
	}
	fail := func(err error) error {
		db.Close()
		s.backend.close()
		return err
	}
	if err := s.backend.check(ctx, db); err != nil {
		return fail(err)
	}
	unlock, err := s.backend.lock(ctx, db, "runtime")
	if err != nil {
		return fail(err)
	}
	defer unlock()
	if s.cfg.SkipMigrations {
		pending, err := pendingRuntimeMigrations(ctx, db, s.cfg.Client)
		if err != nil {
			return fail(fmt.Errorf("database.skip_migrations is set and the runtime's migrations cannot be checked (run `greenroom migrate up`): %w", err))
		}
		if len(pending) > 0 {
			return fail(fmt.Errorf("database.skip_migrations is set and %d of the runtime's migrations are pending (%s): run `greenroom migrate up`", len(pending), pending[0]))
		}
	} else if _, err := migrateRuntime(ctx, db, s.cfg.Client, s.log); err != nil {
		return fail(err)
	}
	if err := s.backend.prepare(ctx, db); err != nil {
		return fail(err)
	}
	s.db = db
	return nil
}

// DB returns the runtime's own database, for greenroom's services (the
// scheduler keeps its tables there). It is nil until Open succeeds. Plugins
// never reach it.
func (s *Service) DB() *bun.DB {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db
}

// Plugin provisions plugin id's database (schema and role, or file) and
// opens its connection pool. A second call for the same id returns the
// same PluginDB with the new limits' pool size.
func (s *Service) Plugin(ctx context.Context, id string, lim Limits) (*PluginDB, error) {
	if err := s.Open(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("database service closed")
	}
	if p := s.plugins[id]; p != nil {
		p.setLimits(lim)
		return p, nil
	}
	unlock, err := s.backend.lock(ctx, s.db, "plugin:"+id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	sdb, err := s.backend.plugin(ctx, s.db, id, lim)
	if err != nil {
		return nil, fmt.Errorf("database for plugin %s: %w", id, err)
	}
	p := newPluginDB(s, id, sdb, lim)
	s.plugins[id] = p
	return p, nil
}

// PluginDB returns the database opened for plugin id, or nil.
func (s *Service) PluginDB(id string) *PluginDB {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.plugins[id]
}

// Close closes every plugin's pool and the runtime's database.
func (s *Service) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for id, p := range s.plugins {
		if err := p.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close database of plugin %s: %w", id, err))
		}
	}
	if s.db != nil {
		if err := s.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close runtime database: %w", err))
		}
	}
	if s.backend != nil {
		s.backend.close()
	}
	return errors.Join(errs...)
}
