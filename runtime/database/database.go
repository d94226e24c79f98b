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
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/uptrace/bun"

	"github.com/greenroom-dev/greenroom/runtime/config"
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
	// SQLiteMemory bounds what SQLite allocates in this process (see
	// limitSQLiteMemory); 0 is no bound.
	SQLiteMemory int64
	// SQLiteMemorySecret: SQLiteMemory came from the environment, so a
	// statement's error does not quote it (see Limits.MaxSizeSecret).
	SQLiteMemorySecret bool
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
	// MaxSize bounds the plugin's SQLite database (0: no bound); past it
	// a statement that needs more pages fails with ErrTooLarge.
	MaxSize int64
	// MigrationTimeout bounds ApplyMigrations: the wait for another
	// replica applying them and every pending migration, all together
	// (0: no bound).
	MigrationTimeout time.Duration
	// MaxSizeSecret and MigrationTimeoutSecret: the limit came from the
	// environment (a config secret), so an error does not quote it
	// decoded ("of 65536 bytes" for "64KiB"): a migration's error reaches
	// the plugin's callers in its 503s, and the log's redaction matches
	// the secret as written only.
	MaxSizeSecret, MigrationTimeoutSecret bool
	// StatementTimeoutSecret, MaxConnsSecret and MaxResultSecret: as
	// MaxSizeSecret, for the errors a plugin's statements get (which it
	// may hand its callers) and the log.
	StatementTimeoutSecret, MaxConnsSecret, MaxResultSecret bool
}

// toldStatementTimeout, toldMaxConns and toldMaxResult are the limits as
// an error names them (told).
func (l Limits) toldStatementTimeout() string {
	return told(l.StatementTimeoutSecret, l.StatementTimeout.String())
}
func (l Limits) toldMaxConns() string { return told(l.MaxConnsSecret, strconv.Itoa(l.MaxConns)) }
func (l Limits) toldMaxResult() string {
	return told(l.MaxResultSecret, strconv.Itoa(l.MaxResult)+" bytes")
}

// told is how an error names a limit's value: as text, or [REDACTED]
// when it came from the environment.
func told(secret bool, text string) string {
	if secret {
		return config.Redacted
	}
	return text
}

// Service is the database side of one runtime.
type Service struct {
	cfg Config
	log *logrus.Entry

	// opening serializes Open. mu guards the fields below; it is never
	// held while waiting for the database (a lock another replica holds),
	// so that DB and the other plugins do not wait with it.
	opening sync.Mutex
	mu      sync.Mutex
	opened  bool
	openErr error
	closed  bool
	backend backend
	db      *bun.DB
	plugins map[string]*PluginDB
	// users counts, per plugin id, the PluginDBs Plugin returned that are
	// not released yet (the versions of the plugin loaded): the pool is
	// closed when the last is released (a removed plugin's last version
	// closed).
	users map[string]int
	// loading has a channel per plugin being provisioned, closed when
	// done.
	loading map[string]chan struct{}
	// reaping counts the goroutines ending given-up backends
	// (PluginDB.reapLost); Close waits for them. closing (guarded by mu)
	// is set when Close begins: no reap starts after it.
	reaping sync.WaitGroup
	closing bool
	// applied counts the migrations this process applied, by plugin id
	// ("" for the runtime's); guarded by mu.
	applied map[string]int
	// reapCtx ends the reaps still running reapGrace after Close began.
	reapCtx   context.Context
	stopReaps context.CancelFunc
	// lineAllowed, when set, takes one line from a plugin's log rate
	// limit (SetLineAllowed).
	lineAllowed atomic.Pointer[func(plugin string) bool]
}

// SetLineAllowed has the lines the service writes about a plugin's calls
// that the plugin can multiply (a transaction it leaves open, every
// call) take from its log rate limit: allow reports whether one may be
// written, and counts one dropped when not.
func (s *Service) SetLineAllowed(allow func(plugin string) bool) { s.lineAllowed.Store(&allow) }

// allowLine reports whether a line about plugin id's call may be written.
func (s *Service) allowLine(id string) bool {
	if f := s.lineAllowed.Load(); f != nil {
		return (*f)(id)
	}
	return true
}

// reapGrace is how long Close waits for reaps before stopping them.
const reapGrace = 5 * time.Second

// startReap counts a reap goroutine about to start, unless Close began.
func (s *Service) startReap() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.reaping.Add(1)
	return true
}

// pluginConnector returns what opens plugin id's PostgreSQL connections,
// or nil (SQLite, or no such plugin).
func (s *Service) pluginConnector(id string) *pgConnector {
	pg := s.pg()
	if pg == nil {
		return nil
	}
	pg.mu.Lock()
	defer pg.mu.Unlock()
	return pg.plugins[id]
}

// pg returns s's PostgreSQL backend, or nil on SQLite.
func (s *Service) pg() *pgBackend {
	s.mu.Lock()
	defer s.mu.Unlock()
	pg, _ := s.backend.(*pgBackend)
	return pg
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
	// releases it. The critical section runs under the context returned,
	// which is cancelled if the lock may have been lost.
	lock(ctx context.Context, db *bun.DB, name string) (context.Context, func(), error)
	// plugin provisions and opens plugin id's database.
	plugin(ctx context.Context, db *bun.DB, id string, lim Limits) (*sql.DB, error)
	// classify turns a driver error into the error the guest sees.
	classify(err error) error
	// rewrite adapts a guest's statement to the database (placeholders).
	rewrite(sql string, args int) string
	close()
}

// limitsSetter is a backend whose plugin connections take limits when
// they open (PostgreSQL: statement_timeout, the driver's largest message):
// setLimits applies a version's when it starts serving (PluginDB.Activate).
type limitsSetter interface {
	setLimits(id string, lim Limits)
}

// describer is a backend whose plugin connections cache statement
// descriptions (PostgreSQL, pgdescribe.go): forgetDescriptions makes
// plugin id's forget them, and migrated does and tells the other
// replicas, once plugin id's migrations committed.
type describer interface {
	forgetDescriptions(id string)
	migrated(ctx context.Context, db *bun.DB, id string)
}

// New returns a Service for cfg. Nothing is opened until Open.
func New(cfg Config, log *logrus.Logger) *Service {
	s := &Service{cfg: cfg, log: log.WithField("component", "database"), plugins: map[string]*PluginDB{}, users: map[string]int{}, loading: map[string]chan struct{}{}}
	s.reapCtx, s.stopReaps = context.WithCancel(context.Background())
	return s
}

// Client returns the configured client, ClientSQLite or ClientPG.
func (s *Service) Client() string { return s.cfg.Client }

// Open connects the runtime's own database, applies the runtime's
// migrations (unless skip_migrations) and prepares plugin provisioning. It
// is idempotent: later calls return the first call's result (a failure
// too, until RetryOpen).
func (s *Service) Open(ctx context.Context) error {
	s.opening.Lock()
	defer s.opening.Unlock()
	s.mu.Lock()
	closed, opened, openErr := s.closed, s.opened, s.openErr
	s.mu.Unlock()
	if closed {
		return errors.New("database service closed")
	}
	if opened {
		return openErr
	}
	b, db, err := s.open(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && s.closed {
		db.Close()
		b.close()
		err = errors.New("database service closed")
	}
	s.opened, s.openErr = true, err
	if err == nil {
		s.backend, s.db = b, db
	}
	return err
}

// RetryOpen makes the next Open try again if the last one failed. A
// reload calls it: a database that did not answer when a reload first
// granted it may answer at the next.
func (s *Service) RetryOpen() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opened && s.openErr != nil {
		s.opened, s.openErr = false, nil
	}
}

func (s *Service) open(ctx context.Context) (_ backend, _ *bun.DB, err error) {
	var b backend
	switch s.cfg.Client {
	case ClientSQLite:
		b, err = newSQLite(s.cfg, s.log)
	case ClientPG:
		b, err = newPG(s.cfg, s.log)
	default:
		err = fmt.Errorf("unknown database client %q", s.cfg.Client)
	}
	if err != nil {
		return nil, nil, err
	}
	db, err := b.open(ctx)
	if err != nil {
		b.close()
		return nil, nil, err
	}
	fail := func(err error) (backend, *bun.DB, error) {
		db.Close()
		b.close()
		return nil, nil, err
	}
	if err := b.check(ctx, db); err != nil {
		return fail(err)
	}
	ctx, unlock, err := b.lock(ctx, db, "runtime")
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
	} else if names, err := migrateRuntime(ctx, db, s.cfg.Client, s.log, s.knobs()); err != nil {
		return fail(err)
	} else {
		s.countApplied("", len(names))
	}
	if err := b.prepare(ctx, db); err != nil {
		return fail(err)
	}
	return b, db, nil
}

// countApplied records that this process applied n migrations of plugin
// id ("" for the runtime's own).
func (s *Service) countApplied(id string, n int) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applied == nil {
		s.applied = map[string]int{}
	}
	s.applied[id] += n
}

// Applied returns how many migrations this process applied, by plugin id
// ("" for the runtime's own): not those another replica or another
// `migrate up` applied meanwhile, which a count of the recorded ones
// before and after would include.
func (s *Service) Applied() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.applied)
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
// opens its connection pool. A later call for the same id (a new version
// of the plugin, loading beside the one serving) returns a new PluginDB on
// the same pool, with lim and its own registered migrations; lim becomes
// the pool's (connection count, each connection's limits) only when that
// version serves and the runtime calls Activate, so a version that fails to
// load changes nothing for the one serving.
func (s *Service) Plugin(ctx context.Context, id string, lim Limits) (*PluginDB, error) {
	if err := s.Open(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	for {
		if s.closed {
			s.mu.Unlock()
			return nil, errors.New("database service closed")
		}
		if p := s.plugins[id]; p != nil {
			s.users[id]++
			s.mu.Unlock()
			return newPluginDB(s, id, p.db, lim), nil
		}
		wait := s.loading[id]
		if wait == nil {
			break
		}
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, fmt.Errorf("database for plugin %s: %w", id, ctx.Err())
		}
		s.mu.Lock()
	}
	done := make(chan struct{})
	s.loading[id] = done
	b, db := s.backend, s.db
	s.mu.Unlock()

	sdb, err := s.provision(ctx, b, db, id, lim)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.loading, id)
	close(done)
	if err != nil {
		return nil, fmt.Errorf("database for plugin %s: %w", id, err)
	}
	if s.closed {
		sdb.Close()
		return nil, errors.New("database service closed")
	}
	p := newPluginDB(s, id, sdb, lim)
	s.plugins[id] = p
	s.users[id]++
	return p, nil
}

// release ends one use of plugin id's pool (PluginDB.Release); the last
// closes it, so that a plugin the config no longer has holds no
// connection, file or goroutine. A later Plugin opens it again.
func (s *Service) release(id string) {
	s.mu.Lock()
	if s.users[id]--; s.users[id] > 0 {
		s.mu.Unlock()
		return
	}
	delete(s.users, id)
	p := s.plugins[id]
	if p == nil || s.closed {
		s.mu.Unlock()
		return
	}
	delete(s.plugins, id)
	if f, ok := s.backend.(interface{ forget(id string) }); ok {
		f.forget(id)
	}
	s.mu.Unlock()
	// Closed outside the lock: closing waits for the pool's connections,
	// and other plugins' pools must not wait for it.
	if err := p.db.Close(); err != nil {
		s.log.WithField("plugin", id).WithError(err).Warn("cannot close the database pool of a removed plugin")
	}
}

// provision creates and opens plugin id's database under the plugin's
// cross-replica lock. Twice Limits.MigrationTimeout bounds it: what it
// waits for (the lock, which another replica holds while it sets up the
// plugin and applies its migrations, for at most MigrationTimeout; a role
// or schema a transaction has locked — on PostgreSQL a plugin's own DO
// block can lock its role) must not hold the plugin's load, and
// readiness, forever.
func (s *Service) provision(ctx context.Context, b backend, db *bun.DB, id string, lim Limits) (*sql.DB, error) {
	parent := ctx
	bound := 2 * lim.MigrationTimeout
	if bound > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, bound)
		defer cancel()
	}
	locked := false
	sdb, err := func() (*sql.DB, error) {
		held, unlock, err := b.lock(ctx, db, "plugin:"+id)
		if err != nil && serverWent(err) {
			// The server ended the runtime's own lock connection (a
			// restart, a failover), which no plugin can do: retried.
			return nil, &lockWaitError{err}
		}
		if err != nil {
			return nil, err
		}
		locked = true
		defer unlock()
		sdb, err := b.plugin(held, db, id, lim)
		if lost := lockLost(held); err != nil && lost != nil {
			err = &heldUpError{fmt.Errorf("setting up the plugin's database: %w: %w", lost, err)}
		}
		return sdb, err
	}()
	if err != nil && ctx.Err() != nil && parent.Err() == nil {
		err = fmt.Errorf("setting up the plugin's database did not finish within %s, twice limits.migration_timeout (waiting for its cross-replica lock, which another replica holds while it migrates, or for a lock on its role or schema that a transaction holds): %w", told(lim.MigrationTimeoutSecret, bound.String()), err)
		if !locked {
			// The cross-replica lock, which only the runtime takes (a
			// replica or migrate up applying migrations, each bounded by
			// its migration_timeout): the load is retried. A lock on the
			// role or schema can be a plugin's own transaction's, and
			// is not: that would keep the replica unready.
			err = &lockWaitError{err}
		}
	}
	return sdb, err
}

// PluginDB returns the database opened for plugin id, or nil.
func (s *Service) PluginDB(id string) *PluginDB {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.plugins[id]
}

// Close closes every plugin's pool and the runtime's database, after the
// backends of given-up connections are ended (it waits reapGrace for that
// at most).
func (s *Service) Close() error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	reaped := make(chan struct{})
	go func() { s.reaping.Wait(); close(reaped) }()
	select {
	case <-reaped:
	case <-time.After(reapGrace):
	}
	s.stopReaps()
	<-reaped
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
