package database

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgname"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/sirupsen/logrus"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// PostgreSQL: the runtime's tables in schema "greenroom"; each plugin's in
// schema plugin_<id>. With isolation = "role" a plugin's connections log in
// as its own role (gr_<hash of the database name>_<id>), which owns its
// schema and has no other privilege; its password is derived from a key in
// the runtime's tables, so every replica computes the same one and no
// operator types it. The driver is pgx through database/sql (stdlib).

// RuntimeSchema holds greenroom's own tables on PostgreSQL.
const RuntimeSchema = "greenroom"

const roleKeyName = "plugin-role-key"

// locksTable holds a row per cross-replica lock (see lock). It is created
// with the schema, before the runtime's migrations, which run under one.
const locksTable = RuntimeSchema + ".runtime_locks"

type pgBackend struct {
	cfg  Config
	log  *logrus.Entry
	conf *pgx.ConnConfig // the operator's connection

	mu      sync.Mutex
	dbname  string
	roleKey []byte
	super   bool
	// checkClient: the server takes client_connection_check_interval
	// (PostgreSQL 14 and later, on platforms that can check: not
	// Windows), set on every plugin connection (see pgConnector).
	checkClient bool
	plugins     map[string]*pgConnector
	// survivors counts, by plugin, the backends of connections the
	// runtime gave up whose end the reap has not seen yet
	// (PluginDB.reapClosed): they count against the plugin's
	// db_max_conns (pgConnector.room), across its versions.
	survivors map[string]*atomic.Int64
	// foreign looks for plugin locks on relations that are not the
	// plugin's (pgforeign.go), from open to close.
	foreign *foreignLockWatch
	// migrations hears of plugin migrations other replicas apply
	// (pgdescribe.go), from open to close.
	migrations *migrationWatch
	// heard counts the notifications the watch has handled; ignored
	// those it ignored, signed by no runtime (migrationFrom).
	heard, ignored atomic.Int64
	// notifyKey signs the notifications of plugin migrations
	// (notifyKeyName), from prepare on.
	notifyKey []byte
}

// survivorsOf is the count of plugin id's given-up backends still running.
func (b *pgBackend) survivorsOf(id string) *atomic.Int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.survivors == nil {
		b.survivors = map[string]*atomic.Int64{}
	}
	n := b.survivors[id]
	if n == nil {
		n = new(atomic.Int64)
		b.survivors[id] = n
	}
	return n
}

// clientCheckInterval is client_connection_check_interval (milliseconds)
// on plugin connections.
const clientCheckInterval = 1000

// defaultConnectTimeout bounds each connection's opening (dial, TLS,
// authentication) when the connection string sets no connect_timeout:
// without it a server that accepts connections and never answers would
// hold the runtime's start, and every plugin call that needs a new
// connection, for good.
const defaultConnectTimeout = 10 * time.Second

func newPG(cfg Config, log *logrus.Entry) (*pgBackend, error) {
	conf, err := config.ParsePGConnection(cfg.Connection)
	if err != nil {
		return nil, fmt.Errorf("database.connection: %w", err)
	}
	if conf.ConnectTimeout == 0 && !strings.Contains(strings.ToLower(cfg.Connection), "connect_timeout") && os.Getenv("PGCONNECT_TIMEOUT") == "" {
		conf.ConnectTimeout = defaultConnectTimeout
	}
	return &pgBackend{cfg: cfg, log: log, conf: conf, plugins: map[string]*pgConnector{}}, nil
}

func (b *pgBackend) open(ctx context.Context) (*bun.DB, error) {
	c := b.conf.Copy()
	c.RuntimeParams["search_path"] = RuntimeSchema
	c.RuntimeParams["application_name"] = "greenroom"
	// Every connection the pool hands out again is checked first (a
	// round trip): pgx checks only one idle for over a second, and the
	// server's restart or a failover ends the others too, whose first
	// statement then failed (57P01): a reload's migrations, a task's
	// claim, right after it. None of the runtime's own statements is on
	// a plugin call's path.
	sdb := stdlib.OpenDB(*c, stdlib.OptionShouldPing(func(context.Context, stdlib.ShouldPingParams) bool { return true }))
	sdb.SetMaxOpenConns(8)
	sdb.SetMaxIdleConns(4)
	if err := sdb.PingContext(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if err := sdb.QueryRowContext(ctx, "SELECT current_database(), (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)").Scan(&b.dbname, &b.super); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	// Tried rather than inferred from the version: a server that cannot
	// check (no POLLRDHUP) refuses any value but 0.
	_, err := sdb.ExecContext(ctx, "SELECT set_config('client_connection_check_interval', '"+strconv.Itoa(clientCheckInterval)+"', false)")
	b.checkClient = err == nil
	// Before the runtime's migrations, which a plugin's lock could hold.
	b.watchForeignLocks()
	b.watchMigrations()
	return bun.NewDB(sdb, pgdialect.New()), nil
}

// ensureRuntimeSchema creates the schema of the runtime's tables and the
// table of its locks, unless migrations are skipped (then they must exist
// already). It runs before any lock can be taken.
func (b *pgBackend) ensureRuntimeSchema(ctx context.Context, db *bun.DB) error {
	if b.cfg.SkipMigrations {
		var exists bool
		if err := db.DB.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", locksTable).Scan(&exists); err != nil {
			return fmt.Errorf("look up table %s: %w", locksTable, err)
		}
		if !exists {
			return fmt.Errorf("database.skip_migrations is set and the runtime's table %s does not exist: run `greenroom migrate up`", locksTable)
		}
		return nil
	}
	var exists bool
	if err := db.DB.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", RuntimeSchema).Scan(&exists); err != nil {
		return fmt.Errorf("look up schema %s: %w", RuntimeSchema, err)
	}
	if !exists {
		if err := b.checkCreateOnDatabase(ctx, db); err != nil {
			return err
		}
	}
	for _, stmt := range []string{
		"CREATE SCHEMA IF NOT EXISTS " + RuntimeSchema,
		"CREATE TABLE IF NOT EXISTS " + locksTable + " (name text PRIMARY KEY)",
	} {
		// Replicas starting together race here: IF NOT EXISTS still fails
		// on a catalog's unique index when another session creates the
		// same object at the same time, which then exists (the table's
		// row type can be the one that collides: 42710).
		var pe *pgconn.PgError
		if _, err := db.DB.ExecContext(ctx, stmt); err != nil && !(errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42P06" || pe.Code == "42P07" || pe.Code == "42710")) {
			return fmt.Errorf("create the runtime's schema: %s: %w", stmt, err)
		}
	}
	return nil
}

func (b *pgBackend) checkCreateOnDatabase(ctx context.Context, db *bun.DB) error {
	var ok bool
	var user string
	if err := db.DB.QueryRowContext(ctx, "SELECT has_database_privilege(current_database(), 'CREATE'), current_user").Scan(&ok, &user); err != nil {
		return fmt.Errorf("check privileges: %w", err)
	}
	if !ok {
		return fmt.Errorf("the runtime's database user %q lacks the CREATE privilege on database %q, which it needs to create schemas (its own and one per plugin): grant it with GRANT CREATE ON DATABASE %s TO %s",
			user, b.dbname, pgx.Identifier{b.dbname}.Sanitize(), pgx.Identifier{user}.Sanitize())
	}
	return nil
}

// check refuses a runtime user that lacks what the isolation mode needs,
// naming every privilege it lacks at once.
func (b *pgBackend) check(ctx context.Context, db *bun.DB) error {
	var errs []error
	if err := b.checkCreateOnDatabase(ctx, db); err != nil {
		errs = append(errs, err)
	}
	if b.cfg.Isolation == IsolationSchema {
		if err := b.checkSchemaUser(ctx, db); err != nil {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		b.log.Warn(`database.isolation = "schema": plugins connect as the runtime's user and are kept apart by search_path only; a plugin that sends hostile SQL can read other plugins' data and the runtime's tables (see docs/database.md)`)
		return b.ensureRuntimeSchema(ctx, db)
	}
	var user string
	var createRole bool
	if err := db.DB.QueryRowContext(ctx, "SELECT current_user, rolcreaterole FROM pg_roles WHERE rolname = current_user").Scan(&user, &createRole); err != nil {
		return fmt.Errorf("check privileges: %w", err)
	}
	if !createRole && !b.super {
		errs = append(errs, fmt.Errorf(`database.isolation = "role" needs the runtime's database user %q to have the CREATEROLE privilege (to give each plugin its own login role), and it does not: grant it as a superuser with ALTER ROLE %s CREATEROLE, or set isolation = "schema" under [database] to keep plugins apart by schema only (weaker: a plugin can then read other plugins' data, see docs/database.md)`,
			user, pgx.Identifier{user}.Sanitize()))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return b.ensureRuntimeSchema(ctx, db)
}

// serverPrograms are the predefined roles that let a role read and write
// the database server's files and run programs there (COPY ... TO
// PROGRAM, pg_read_file), as a superuser may.
var serverPrograms = []string{"pg_execute_server_program", "pg_read_server_files", "pg_write_server_files"}

// checkSchemaUser refuses isolation = "schema" when the runtime's user,
// which plugins' connections then log in as, is a superuser or may use
// the server's files and programs: a plugin's SQL could then run programs
// on the database server, which no plugin may, whatever it is trusted
// with. Membership is what counts, not the privileges inherited: a
// NOINHERIT member takes the role's with SET ROLE, and so does a member
// of a role that is a superuser or has them (a later audit). Before
// PostgreSQL 16 a CREATEROLE user may grant itself any role but
// superuser, those included (an audit ran a program through both, from a
// plugin's DO block), and so may a member of a CREATEROLE role.
func (b *pgBackend) checkSchemaUser(ctx context.Context, db *bun.DB) error {
	var user, roles string
	var createRole bool
	var version int
	// The roles the user is a member of, directly or not, that are a
	// superuser, one of serverPrograms or (before 16) CREATEROLE.
	if err := db.DB.QueryRowContext(ctx, `SELECT current_user,
		(SELECT coalesce(string_agg(quote_ident(rolname) || CASE WHEN rolsuper THEN ' (a superuser)' WHEN rolname = ANY(string_to_array($1, ',')) THEN '' ELSE ' (CREATEROLE)' END, ', ' ORDER BY rolname), '')
			FROM pg_catalog.pg_roles
			WHERE rolname <> current_user AND pg_has_role(current_user, oid, 'MEMBER')
				AND (rolsuper OR rolname = ANY(string_to_array($1, ','))
					OR (rolcreaterole AND current_setting('server_version_num')::int < 160000))),
		(SELECT rolcreaterole FROM pg_catalog.pg_roles WHERE rolname = current_user),
		current_setting('server_version_num')::int`, strings.Join(serverPrograms, ",")).Scan(&user, &roles, &createRole, &version); err != nil {
		return fmt.Errorf("check the runtime's database user: %w", err)
	}
	what := ""
	switch {
	case b.super:
		what = "a superuser"
	case roles != "":
		what = "a member of " + roles + ", whose rights it takes with SET ROLE"
	case createRole && version < 160000:
		what = "allowed to create roles (CREATEROLE), which before PostgreSQL 16 lets it grant itself any of " + strings.Join(serverPrograms, ", ")
	default:
		return nil
	}
	return fmt.Errorf(`database.isolation = "schema" runs plugins' SQL as the runtime's database user %q, which is %s: a plugin could read and write the database server's files and run programs there (COPY ... TO PROGRAM, pg_read_file). Use isolation = "role" (the default; a superuser can create the plugin roles) or connect as a user that is neither a superuser nor a member of %s or of a superuser role (nor, before PostgreSQL 16, has CREATEROLE or is a member of a role that has it)`,
		user, what, strings.Join(serverPrograms, ", "))
}

// runtimeSecret returns the value of greenroom.runtime_secrets' row name,
// a random key stored first if there is none (by whichever replica gets
// there first: every replica reads the same).
func runtimeSecret(ctx context.Context, db *bun.DB, name string) ([]byte, error) {
	key := make([]byte, 32)
	rand.Read(key)
	if _, err := db.DB.ExecContext(ctx, "INSERT INTO runtime_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", name, key); err != nil {
		return nil, fmt.Errorf("store the %s: %w", name, err)
	}
	if err := db.DB.QueryRowContext(ctx, "SELECT value FROM runtime_secrets WHERE name = $1", name).Scan(&key); err != nil {
		return nil, fmt.Errorf("read the %s: %w", name, err)
	}
	return key, nil
}

func (b *pgBackend) prepare(ctx context.Context, db *bun.DB) error {
	notifyKey, err := runtimeSecret(ctx, db, notifyKeyName)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.notifyKey = notifyKey
	b.mu.Unlock()
	if b.cfg.Isolation == IsolationSchema {
		return nil
	}
	key, err := runtimeSecret(ctx, db, roleKeyName)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.roleKey = key
	b.mu.Unlock()
	var version int
	if err := db.DB.QueryRowContext(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err == nil && version < 150000 {
		// Before PostgreSQL 15 every role may create objects in schema
		// public; plugins must not.
		if err := execCatalog(ctx, db, "REVOKE CREATE ON SCHEMA public FROM PUBLIC"); err != nil {
			b.log.WithError(err).Warn("PostgreSQL before 15 lets every role create objects in schema public, and the runtime could not revoke that (REVOKE CREATE ON SCHEMA public FROM PUBLIC): plugins can create tables there")
		}
	}
	if b.super {
		b.revokeFromPublic(ctx, db)
		if err := b.refusePluginGrants(ctx, db); err != nil {
			return err
		}
	}
	b.checkStatsExt(ctx, db)
	return nil
}

// statsExtViews are the views of CVE-2024-4317: before PostgreSQL 16.3,
// 15.7, 14.12, 13.15 and 12.19 they showed every role the statistics of
// every CREATE STATISTICS object (a column's most common values among
// them), not only those of the tables it may read. The minor releases
// fixed the views of clusters created by them only; a cluster created
// before keeps the old views until a superuser runs the fix the release
// notes give, in each database. With plugins as roles, one plugin could
// read another's values through them.
var statsExtViews = []string{"pg_catalog.pg_stats_ext", "pg_catalog.pg_stats_ext_exprs"}

// checkStatsExt looks at statsExtViews in the runtime's database: a view
// without the fix's owner check (pg_has_role) that PUBLIC may read has
// SELECT revoked from PUBLIC when the runtime is a superuser (as
// revokeFromPublic does; no plugin needs the views), and is named in a
// warning otherwise (TestPGStatsExtLeakClosed). A view that cannot be
// read is left as it is.
func (b *pgBackend) checkStatsExt(ctx context.Context, db *bun.DB) {
	for _, v := range statsExtViews {
		var fixed, public bool
		err := db.DB.QueryRowContext(ctx, `SELECT position('pg_has_role(' in pg_catalog.pg_get_viewdef($1::regclass)) > 0,
			has_table_privilege('public', $1, 'SELECT')`, v).Scan(&fixed, &public)
		if err != nil || fixed || !public {
			continue
		}
		if b.super {
			err = execCatalog(ctx, db, "REVOKE SELECT ON "+v+" FROM PUBLIC")
			if err == nil {
				b.log.WithField("view", v).Warn("this database's " + v + " lacks the fix of CVE-2024-4317 (a cluster created before PostgreSQL 16.3, 15.7, 14.12, 13.15 or 12.19 and not patched since): SELECT on it was revoked from PUBLIC, so that no plugin reads another's statistics through it; apply the fix from the release notes to restore it for other roles")
				continue
			}
		}
		l := b.log.WithField("view", v)
		if err != nil {
			l = l.WithError(err)
		}
		l.Warn("this database's " + v + " lacks the fix of CVE-2024-4317 (a cluster created before PostgreSQL 16.3, 15.7, 14.12, 13.15 or 12.19 and not patched since): every plugin can read the most common values of the other plugins' columns that a CREATE STATISTICS covers; a superuser should apply the fix from the release notes, or run REVOKE SELECT ON " + v + " FROM PUBLIC, in this database")
	}
}

// revokedFunctions are functions PostgreSQL grants EXECUTE on to PUBLIC
// that no plugin may call, in any way: those that create a large object,
// an object of the whole database rather than of a schema (lo_import's is
// superusers' already), and those that take an advisory lock: one
// statement can take enough of them to fill the server's shared lock
// table, so that no session of any database can connect ("out of shared
// memory"), and a session-level one is held by a pooled connection past
// its request.
var revokedFunctions = []string{
	"pg_catalog.lo_creat(integer)", "pg_catalog.lo_create(oid)", "pg_catalog.lo_from_bytea(oid, bytea)",
	"pg_catalog.pg_advisory_lock(bigint)", "pg_catalog.pg_advisory_lock(integer, integer)",
	"pg_catalog.pg_advisory_lock_shared(bigint)", "pg_catalog.pg_advisory_lock_shared(integer, integer)",
	"pg_catalog.pg_try_advisory_lock(bigint)", "pg_catalog.pg_try_advisory_lock(integer, integer)",
	"pg_catalog.pg_try_advisory_lock_shared(bigint)", "pg_catalog.pg_try_advisory_lock_shared(integer, integer)",
	"pg_catalog.pg_advisory_xact_lock(bigint)", "pg_catalog.pg_advisory_xact_lock(integer, integer)",
	"pg_catalog.pg_advisory_xact_lock_shared(bigint)", "pg_catalog.pg_advisory_xact_lock_shared(integer, integer)",
	"pg_catalog.pg_try_advisory_xact_lock(bigint)", "pg_catalog.pg_try_advisory_xact_lock(integer, integer)",
	"pg_catalog.pg_try_advisory_xact_lock_shared(bigint)", "pg_catalog.pg_try_advisory_xact_lock_shared(integer, integer)",
}

// revokeFromPublic revokes EXECUTE on revokedFunctions from PUBLIC, in the
// runtime's database, so that no plugin role can call them, also from
// code the statement filter does not read (a DO block, a function's body,
// query_to_xml). Only the functions' owner, a superuser, can; the runtime
// does when it connects as one. Other roles of the database lose them
// too: an application that needs one gets it back with GRANT EXECUTE ON
// FUNCTION ... TO its role (see docs/database.md). It runs at Open, under
// the runtime's lock, and changes nothing once done.
func (b *pgBackend) revokeFromPublic(ctx context.Context, db *bun.DB) {
	var revoked []string
	for _, f := range revokedFunctions {
		var public bool
		err := db.DB.QueryRowContext(ctx, "SELECT has_function_privilege('public', $1, 'EXECUTE')", f).Scan(&public)
		if err == nil && public {
			if err = execCatalog(ctx, db, "REVOKE EXECUTE ON FUNCTION "+f+" FROM PUBLIC"); err == nil {
				revoked = append(revoked, f)
			}
		}
		if err != nil {
			b.log.WithError(err).WithField("function", f).Warn("the runtime could not revoke EXECUTE on a function from PUBLIC: plugins can call it from code the statement filter does not read (DO blocks, function bodies); see docs/database.md")
		}
	}
	if len(revoked) > 0 {
		b.log.WithField("functions", strings.Join(revoked, " ")).Infof("revoked EXECUTE from PUBLIC in database %s on the functions that create large objects or take advisory locks, so that plugins cannot create objects outside their schema or fill the server's lock table; other roles of this database that need them get them back with GRANT EXECUTE ON FUNCTION ... TO role", b.dbname)
	}
}

// startTime is the server's pg_postmaster_start_time, read on a new
// connection (see PluginDB.serverRestarted). The session's end while it
// is read (the server began to shut down since it accepted the
// connection) is a serverGoneError.
func (b *pgBackend) startTime(ctx context.Context) (time.Time, error) {
	c := b.conf.Copy()
	c.RuntimeParams["application_name"] = "greenroom"
	conn, err := pgx.ConnectConfig(ctx, c)
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var t time.Time
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_postmaster_start_time()").Scan(&t); err != nil {
		if conn.IsClosed() {
			return time.Time{}, &serverGoneError{err}
		}
		return time.Time{}, err
	}
	return t, nil
}

// lock takes the named cross-replica lock: replicas starting together wait
// for each other around role creation and migrations. The lock is the
// row name of greenroom.runtime_locks, locked FOR UPDATE in a transaction
// on a connection of its own, outside the runtime's pool (which the
// critical section uses); the returned function closes that connection.
// Plugin roles have no privilege on schema greenroom, so no plugin can
// take or hold these locks, as it could advisory locks, which every role
// may take.
//
// A replica held up while it holds the lock (stopped, a paused VM, cut off
// from the server) must not keep every other replica waiting for as long
// as that lasts: the server ends the lock's session once it has been idle
// for lockIdleTimeout, and the holder keeps it busy every lockHeartbeat (knobs)
// while it is alive. The context returned, which the critical section
// runs under, is cancelled (its cause an *errLockLost) when a heartbeat
// fails: the lock may be another replica's by then.
func (b *pgBackend) lock(ctx context.Context, _ *bun.DB, name string) (context.Context, func(), error) {
	c := b.conf.Copy()
	c.RuntimeParams["application_name"] = "greenroom lock"
	// Waiting is bounded by ctx, holding by the critical section.
	for _, p := range []string{"statement_timeout", "lock_timeout"} {
		c.RuntimeParams[p] = "0"
	}
	k := knobsFor(b.cfg.Connection)
	c.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(k.lockIdleTimeout.Milliseconds(), 10)
	conn, err := pgx.ConnectConfig(ctx, c)
	if err != nil {
		return nil, nil, fmt.Errorf("lock %s: connect to PostgreSQL: %w", name, err)
	}
	_, err = conn.Exec(ctx, "INSERT INTO "+locksTable+" (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", name)
	if err == nil {
		_, err = conn.Exec(ctx, "BEGIN")
	}
	if err == nil {
		_, err = conn.Exec(ctx, "SELECT name FROM "+locksTable+" WHERE name = $1 FOR UPDATE", name)
	}
	if err != nil {
		conn.Close(context.Background())
		return nil, nil, fmt.Errorf("lock %s: %w", name, err)
	}
	held, lost := context.WithCancelCause(ctx)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(k.lockHeartbeat)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			hctx, cancel := context.WithTimeout(context.Background(), k.lockHeartbeat)
			_, err := conn.Exec(hctx, "SELECT 1")
			cancel()
			if err != nil {
				lost(&errLockLost{name: name, err: err})
				return
			}
		}
	}()
	var once sync.Once
	return held, func() {
		once.Do(func() {
			close(stop)
			<-done
			lost(nil)
			conn.Close(context.Background())
		})
	}, nil
}

// errLockLost is the cause of a lock's context when its session could no
// longer be reached: the server may have ended it, and another replica
// taken the lock.
type errLockLost struct {
	name string
	err  error
}

func (e *errLockLost) Error() string {
	return fmt.Sprintf("lost the cross-replica lock %s (this replica was held up, or cut off from the database server): %v", e.name, e.err)
}
func (e *errLockLost) Unwrap() error { return e.err }

// RoleName is the login role of plugin id in database dbname
// (pgname.Role).
func RoleName(dbname, id string) string { return pgname.Role(dbname, id) }

// RolePrefix is the prefix of every plugin role of database dbname.
func RolePrefix(dbname string) string { return pgname.RolePrefix(dbname) }

// SchemaName is the schema of plugin id (pgname.Schema).
func SchemaName(id string) string { return pgname.Schema(id) }

// rolePassword derives the password of a plugin role from the role key:
// every replica reading the same key computes the same password.
func (b *pgBackend) rolePassword(role string) string {
	b.mu.Lock()
	key := b.roleKey
	b.mu.Unlock()
	m := hmac.New(sha256.New, key)
	m.Write([]byte("password:" + role))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// scramVerifier is the SCRAM-SHA-256 verifier of password (RFC 7677, as
// PostgreSQL stores it), so that the password itself never appears in a
// statement the server might log. The salt is derived too, so replicas
// write the same verifier.
func (b *pgBackend) scramVerifier(role, password string) (string, error) {
	b.mu.Lock()
	key := b.roleKey
	b.mu.Unlock()
	m := hmac.New(sha256.New, key)
	m.Write([]byte("salt:" + role))
	salt := m.Sum(nil)[:16]
	const iter = 4096
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(k []byte, s string) []byte {
		h := hmac.New(sha256.New, k)
		h.Write([]byte(s))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	server := mac(salted, "Server Key")
	enc := base64.StdEncoding.EncodeToString
	return "SCRAM-SHA-256$" + strconv.Itoa(iter) + ":" + enc(salt) + "$" + enc(stored[:]) + ":" + enc(server), nil
}

func (b *pgBackend) plugin(ctx context.Context, db *bun.DB, id string, lim Limits) (*sql.DB, error) {
	schema := SchemaName(id)
	qs := pgx.Identifier{schema}.Sanitize()
	conf := b.conf.Copy()
	var heal func(context.Context) error
	if b.cfg.Isolation == IsolationSchema {
		if _, err := db.DB.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+qs); err != nil {
			return nil, fmt.Errorf("create schema %s: %w", schema, err)
		}
	} else {
		role := RoleName(b.dbname, id)
		password := b.rolePassword(role)
		if err := b.provisionRole(ctx, db, role, password, schema); err != nil {
			return nil, err
		}
		conf.User, conf.Password = role, password
		heal = func(ctx context.Context) error { return b.setPassword(ctx, db, role, password) }
	}
	// What database.connection sets for the session that a plugin could
	// read back (current_setting, SHOW) and that no PostgreSQL setting
	// needs: a custom setting ("?app.key=..." or "-c app.key=..." in
	// options), a value the operator meant for the runtime's connection
	// and, from ${DATABASE_URL}, a part of a secret. options goes whole
	// (its -c settings are given as plain parameters instead:
	// "?TimeZone=UTC"), as does any parameter with a dot in its name.
	for k := range conf.RuntimeParams {
		if k == "options" || strings.Contains(k, ".") {
			delete(conf.RuntimeParams, k)
		}
	}
	conf.RuntimeParams["search_path"] = schema // [a-z0-9_] only: no quoting needed
	conf.RuntimeParams["application_name"] = "greenroom plugin " + id
	// A statement whose replica died (killed, crashed: its socket closed
	// without a cancel request) is ended by the server within a second
	// instead of running on to its statement_timeout and committing: a
	// global task's run then never writes after another replica took its
	// expired lease (docs/scheduler.md). Not on PostgreSQL before 14.
	// A plugin cannot receive notifications (it could LISTEN from a DO
	// block): drop them rather than let the driver buffer them.
	conf.OnNotification = func(*pgconn.PgConn, *pgconn.Notification) {}
	// No prepared statement outlives a statement: pgx's default mode
	// prepares each distinct statement with arguments as a named server
	// statement, up to 512 per connection, and the backend keeps each
	// one's parse tree and plans for as long as the connection lives
	// (hundreds of megabytes of server memory per connection, from a
	// plugin sending large distinct statements). Described once and
	// cached on the client, each statement runs as the unnamed one,
	// which the next replaces; the statement cache is off, so that no
	// mode can name one, and the session reset's DEALLOCATE ALL
	// (sessionReset) ends the plugin's own PREPAREd statements without
	// taking one from the driver.
	conf.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	if conf.DescriptionCacheCapacity <= 0 {
		// The operator turned the description cache off
		// (description_cache_capacity=0): describe every time.
		conf.DefaultQueryExecMode = pgx.QueryExecModeDescribeExec
	}
	conf.StatementCacheCapacity = 0
	pc := &pgConnector{conf: conf, runtime: b.conf, heal: heal, log: b.log.WithField("plugin", id), checkClient: b.checkClient, survivors: b.survivorsOf(id), connection: b.cfg.Connection}
	pc.lim.Store(&lim)
	b.mu.Lock()
	b.plugins[id] = pc
	b.mu.Unlock()
	sdb := sql.OpenDB(pc)
	pc.db = sdb
	sdb.SetMaxOpenConns(lim.MaxConns)
	sdb.SetMaxIdleConns(lim.MaxConns)
	if err := sdb.PingContext(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("connect as the plugin's role: %w", err)
	}
	return sdb, nil
}

// provisionRole creates (or re-asserts) the plugin's login role with no
// privilege but owning its schema. The caller holds the plugin's lock.
func (b *pgBackend) provisionRole(ctx context.Context, db *bun.DB, role, password, schema string) error {
	qr, qs := pgx.Identifier{role}.Sanitize(), pgx.Identifier{schema}.Sanitize()
	verifier, err := b.scramVerifier(role, password)
	if err != nil {
		return err
	}
	var exists bool
	if err := db.DB.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
		return fmt.Errorf("look up role %s: %w", role, err)
	}
	const attrs = " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS PASSWORD "
	stmt := "CREATE ROLE " + qr + attrs
	switch {
	case exists && b.super:
		stmt = "ALTER ROLE " + qr + " WITH" + attrs
	case exists:
		// Only a superuser may name SUPERUSER, REPLICATION or BYPASSRLS
		// in ALTER ROLE, even to turn them off: a CREATEROLE user's
		// ALTER ROLE ... NOSUPERUSER fails ("must be superuser to alter
		// superuser roles or change superuser attribute"), which kept
		// every plugin from loading at a restart or on a second replica.
		// The role is checked for them below instead.
		stmt = "ALTER ROLE " + qr + " WITH LOGIN NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD "
	}
	// The verifier is base64 and "$:", nothing a literal must escape. The
	// statement is never logged.
	if _, err := db.DB.ExecContext(ctx, stmt+"'"+verifier+"'"); err != nil {
		return fmt.Errorf("create role %s: %w", role, err)
	}
	if exists && !b.super {
		var super, replication, bypassRLS bool
		if err := db.DB.QueryRowContext(ctx, "SELECT rolsuper, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = $1", role).Scan(&super, &replication, &bypassRLS); err != nil {
			return fmt.Errorf("look up role %s: %w", role, err)
		}
		if super || replication || bypassRLS {
			return fmt.Errorf("role %s has SUPERUSER, REPLICATION or BYPASSRLS, which a plugin's role must not have and only a superuser can take away: run ALTER ROLE %s NOSUPERUSER NOREPLICATION NOBYPASSRLS as a superuser", role, qr)
		}
	}
	if err := b.revokeMemberships(ctx, db, role); err != nil {
		return err
	}
	if !b.super {
		// The runtime's user must be a member of the role to give it the
		// schema.
		if _, err := db.DB.ExecContext(ctx, "GRANT "+qr+" TO CURRENT_USER"); err != nil {
			return fmt.Errorf("grant role %s to the runtime's user: %w", role, err)
		}
	}
	for _, s := range []string{
		"CREATE SCHEMA IF NOT EXISTS " + qs + " AUTHORIZATION " + qr,
		"ALTER SCHEMA " + qs + " OWNER TO " + qr,
		"REVOKE ALL ON SCHEMA " + qs + " FROM PUBLIC",
		// A role may set its own defaults (from a DO block), and one can
		// keep every login from succeeding (local_preload_libraries
		// naming no file: FATAL); only search_path, set here, is the
		// runtime's. In this database and in all.
		"ALTER ROLE " + qr + " RESET ALL",
		"ALTER ROLE " + qr + " IN DATABASE " + pgx.Identifier{b.dbname}.Sanitize() + " RESET ALL",
		"ALTER ROLE " + qr + " SET search_path = " + qs,
	} {
		if _, err := db.DB.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("provision schema %s for role %s: %w", schema, role, err)
		}
	}
	if err := b.revokeShared(ctx, db, role, schema); err != nil {
		return err
	}
	if err := b.grantConnect(ctx, db, role); err != nil {
		b.log.WithError(err).WithField("role", role).Warn("could not grant CONNECT on the database to a plugin role; it relies on PUBLIC's CONNECT")
	}
	return nil
}

// revokeMemberships takes back every role the plugin's role is a member
// of: through a membership (granted by hand, say pg_read_all_data, or
// another plugin's role) the plugin could SET ROLE, from a DO block, to
// privileges it must not have. A membership the runtime's user cannot
// revoke keeps the plugin from loading, saying what to run.
func (b *pgBackend) revokeMemberships(ctx context.Context, db *bun.DB, role string) error {
	rows, err := db.DB.QueryContext(ctx, `SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
		WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = $1) ORDER BY 1`, role)
	if err != nil {
		return fmt.Errorf("look up the memberships of role %s: %w", role, err)
	}
	var of []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			rows.Close()
			return fmt.Errorf("look up the memberships of role %s: %w", role, err)
		}
		of = append(of, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("look up the memberships of role %s: %w", role, err)
	}
	qr := pgx.Identifier{role}.Sanitize()
	for _, r := range of {
		stmt := "REVOKE " + pgx.Identifier{r}.Sanitize() + " FROM " + qr
		if _, err := db.DB.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("role %s is a member of role %s, which would let its plugin take that role's privileges, and the runtime's user cannot revoke it (%v): run %s as a superuser", role, r, err, stmt)
		}
		b.log.WithFields(logrus.Fields{"role": role, "member_of": r}).Warn("revoked a membership a plugin's role must not have")
	}
	return nil
}

// grantConnect grants CONNECT on the database to role, unless a grant of
// its own gives it already (PUBLIC's does not count: an operator may revoke
// that). Every plugin's grant, on every replica, updates the same row of
// pg_database, and PostgreSQL fails an update of a catalog row that another
// transaction updated since it read it ("tuple concurrently updated",
// XX000) rather than wait: the plugin locks keep one plugin's provisioning
// to one replica at a time, not two plugins'. So grants are made under the
// cross-replica lock "database", which only they take (after their
// plugin's, never before), and retried, briefly, if something else (an
// operator's GRANT, ALTER DATABASE) updates the row at the same time.
func (b *pgBackend) grantConnect(ctx context.Context, db *bun.DB, role string) error {
	const q = `SELECT EXISTS (SELECT 1 FROM pg_database d, aclexplode(d.datacl) a
		WHERE d.datname = current_database() AND a.privilege_type = 'CONNECT'
		AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1))`
	var granted bool
	if err := db.DB.QueryRowContext(ctx, q, role).Scan(&granted); err != nil {
		return err
	}
	if granted {
		return nil
	}
	_, unlock, err := b.lock(ctx, db, databaseLock)
	if err != nil {
		return err
	}
	defer unlock()
	err = execCatalogBounded(ctx, db, "GRANT CONNECT ON DATABASE "+pgx.Identifier{b.dbname}.Sanitize()+" TO "+pgx.Identifier{role}.Sanitize(), grantLockTimeout)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "55P03" {
		return fmt.Errorf("the database's row of pg_database stayed locked for %s by another transaction (%s): a GRANT, REVOKE or ALTER DATABASE in a transaction still open, which a plugin can run from a DO block: %w", grantLockTimeout, b.rowHolder(ctx, db), err)
	}
	if err != nil {
		return err
	}
	// A user without the grant option on CONNECT gets only a warning
	// from PostgreSQL ("no privileges were granted"), and nothing
	// granted.
	if err := db.DB.QueryRowContext(ctx, q, role).Scan(&granted); err != nil {
		return err
	}
	if !granted {
		return fmt.Errorf("GRANT CONNECT ON DATABASE %s granted nothing: the runtime's user is neither the database's owner nor holds CONNECT WITH GRANT OPTION", b.dbname)
	}
	return nil
}

// grantLockTimeout bounds grantConnect's wait for the database's row of
// pg_database: a transaction that updated it (a plugin's GRANT ... ON
// DATABASE from a DO block, which grants nothing but locks the row all
// the same) holds it until it ends, and the grant runs under the
// runtime's cross-replica lock, during a load or a reload.
const grantLockTimeout = 3 * time.Second

// rowHolder says which session holds the transaction that locked the
// database's row of pg_database (its xmax), as far as the runtime's user
// may see it.
func (b *pgBackend) rowHolder(ctx context.Context, db *bun.DB) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	var pid int64
	var user, app string
	err := db.DB.QueryRowContext(ctx, `SELECT a.pid, coalesce(a.usename, ''), coalesce(a.application_name, '')
		FROM pg_database d JOIN pg_locks l ON l.locktype = 'transactionid' AND l.transactionid = d.xmax AND l.mode = 'ExclusiveLock' AND l.granted
		JOIN pg_stat_activity a ON a.pid = l.pid WHERE d.datname = current_database()`).Scan(&pid, &user, &app)
	if err != nil {
		return "its session not found"
	}
	return fmt.Sprintf("held by backend %d, user %q, application_name %q", pid, user, app)
}

// databaseLock is the cross-replica lock under which the runtime changes
// catalog rows every plugin's provisioning shares (the database's ACL).
// Plugin locks are "plugin:<id>", the runtime's "runtime".
const databaseLock = "database"

// execCatalog runs stmt, a statement that updates a catalog row other
// sessions may update at the same time (GRANT, REVOKE), retrying it a few
// times, after a short and growing wait, when PostgreSQL reports "tuple
// concurrently updated" (XX000): the update it lost to has committed by
// then, and the next attempt reads it.
func execCatalog(ctx context.Context, db *bun.DB, stmt string) error {
	return execCatalogBounded(ctx, db, stmt, 0)
}

// execCatalogBounded is execCatalog with each attempt's wait for a lock
// bounded by lockTimeout (SET LOCAL lock_timeout, in a transaction of
// its own), when it is not 0: it then fails with SQLSTATE 55P03.
func execCatalogBounded(ctx context.Context, db *bun.DB, stmt string, lockTimeout time.Duration) error {
	exec := func() error {
		if lockTimeout == 0 {
			_, err := db.DB.ExecContext(ctx, stmt)
			return err
		}
		tx, err := db.DB.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, "SET LOCAL lock_timeout = "+strconv.FormatInt(max(lockTimeout.Milliseconds(), 1), 10)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return err
		}
		return tx.Commit()
	}
	wait := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := exec()
		var pe *pgconn.PgError
		if err == nil || attempt == 6 || !errors.As(err, &pe) || pe.Code != "XX000" || !strings.Contains(pe.Message, "concurrently") {
			return err
		}
		// Jitter keeps sessions that collided from colliding again.
		t := time.NewTimer(wait + time.Duration(mrand.Int64N(int64(wait))))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		wait *= 2
	}
}

func (b *pgBackend) setPassword(ctx context.Context, db *bun.DB, role, password string) error {
	verifier, err := b.scramVerifier(role, password)
	if err != nil {
		return err
	}
	_, err = db.DB.ExecContext(ctx, "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" PASSWORD '"+verifier+"'")
	return err
}

func (b *pgBackend) rewrite(q string, args int) string { return questionMarksToDollars(q, args) }

func (b *pgBackend) classify(err error) error {
	var big *pgproto3.ExceededMaxBodyLenErr
	if errors.As(err, &big) {
		// One message (a row) longer than db_max_result, refused by the
		// driver before it is read.
		return &tooLargeError{err: err}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "42501": // insufficient_privilege
			return &deniedError{err: err, msg: err.Error()}
		case "57014": // query_canceled: statement_timeout
			return &timeoutError{err: err}
		}
	}
	return err
}

func (b *pgBackend) close() {
	b.stopWatchingForeignLocks()
	b.stopWatchingMigrations()
}

// setLimits makes plugin id's connections use lim's statement timeout and
// result limit: a connection opened with others is replaced by a new one
// before its next use. It is called as a version starts serving, and the
// connections kept forget their statement descriptions (generationKey).
func (b *pgBackend) setLimits(id string, lim Limits) {
	b.mu.Lock()
	pc := b.plugins[id]
	b.mu.Unlock()
	if pc != nil {
		pc.lim.Store(&lim)
		pc.generation.Add(1)
	}
}

// forget drops plugin id's connector once its pool is closed.
func (b *pgBackend) forget(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.plugins, id)
}

// pgConnector opens a plugin's connections, each with the plugin's
// current limits. A plugin can change its own role's password (PostgreSQL
// lets every role do that); when a connection then fails authentication,
// the connector sets the derived password again and retries once, so the
// plugin only ever breaks its own in-flight connections' successors for
// one attempt.
type pgConnector struct {
	conf *pgx.ConnConfig
	// checkClient: set client_connection_check_interval on each
	// connection (pgBackend.checkClient), by SET rather than as a startup
	// parameter, which a connection pooler in between may refuse.
	checkClient bool
	lim         atomic.Pointer[Limits]
	// generation counts what may have changed the plugin's tables
	// under the statement descriptions its connections cached: a
	// version that started serving (setLimits), the plugin's migrations
	// applied by this replica or another (pgdescribe.go), a statement
	// that met a description gone stale (PluginDB.Exec). A connection
	// that last served an earlier generation forgets the descriptions
	// before its next use (generationKey).
	generation atomic.Int64
	heal       func(context.Context) error
	// runtime is the runtime's own connection (the operator's user),
	// which ends the backends of given-up connections where it may
	// (terminateBackend).
	runtime *pgx.ConnConfig
	log     *logrus.Entry
	// db is the pool the connector opens connections for, and survivors
	// the plugin's given-up backends still running (pgBackend.survivors).
	db        *sql.DB
	survivors *atomic.Int64
	// connection is the database's (Config.Connection), whose knobs
	// the connector's test hooks are.
	connection string
}

// backendStartKey keys a plugin connection's backend start time in its
// pgconn.PgConn.CustomData.
const backendStartKey = "greenroom.backend_start"

// generationKey keys, in a plugin connection's pgconn.PgConn.CustomData,
// the pgConnector.generation it last served under. The driver keeps, per
// connection, each statement's description (its parameter and result
// types) and sends the statement with them; a new version's migrations
// may have changed the tables (a column from int to text), and a
// statement then ran with the old types once on each connection the
// reload kept (an INSERT of a text into the now text column failed with
// invalid input syntax for type integer); another replica's migration
// adding a column failed a SELECT * in a transaction once on each
// connection (staleDescription). So a connection that goes on into a new
// generation drops its descriptions first.
const generationKey = "greenroom.generation"

// sessionReset is what PluginDB.release runs on a plugin connection
// before it goes back to the pool: it ends what the call left in the
// session, the role a SET ROLE in a DO block took first (RESET ALL leaves
// it). A connection's own (sessionResetKey, in its
// pgconn.PgConn.CustomData) adds what the connector SET after connecting,
// which RESET ALL undoes; release adds reseed.
const (
	sessionReset    = "RESET ROLE; UNLISTEN *; CLOSE ALL; DEALLOCATE ALL; DISCARD TEMP; DISCARD SEQUENCES; RESET ALL; SELECT pg_catalog.pg_advisory_unlock_all()"
	sessionResetKey = "greenroom.session_reset"
)

// reseed is the last statement of each reset of a plugin connection:
// setseed with a value drawn for this reset, so that the sequence of
// random() a call fixed with setseed (from a statement or a DO block:
// session state that no RESET or DISCARD ends) does not reach the next
// call on the connection, which got that very sequence; a new session
// seeds random() from strong random bits, and the reset draws the seed
// from them too (TestPGRandomSeedEndsWithTheCall).
func reseed() string {
	var b [8]byte
	rand.Read(b[:])
	// 53 random bits, as a float64 in [-1, 1), setseed's range.
	f := float64(uint64(b[0])|uint64(b[1])<<8|uint64(b[2])<<16|uint64(b[3])<<24|uint64(b[4])<<32|uint64(b[5])<<40|uint64(b[6]&0x1f)<<48)/(1<<52) - 1
	return "; SELECT pg_catalog.setseed(" + strconv.FormatFloat(f, 'f', -1, 64) + ")"
}

// connector opens connections with the current limits.
func (c *pgConnector) connector() driver.Connector {
	lim := c.lim.Load()
	generation := c.generation.Load()
	conf := c.conf.Copy()
	conf.RuntimeParams["statement_timeout"] = strconv.FormatInt(max(lim.StatementTimeout.Milliseconds(), 1), 10)
	maxBody := lim.MaxResult + 1<<16
	return stdlib.GetConnector(*conf,
		stdlib.OptionAfterConnect(func(ctx context.Context, conn *pgx.Conn) error {
			// One message (one row) may not exceed db_max_result: the
			// driver would buffer it whole before the result limit could
			// apply.
			conn.PgConn().Frontend().SetMaxBodyLen(maxBody)
			if hook := knobsFor(c.connection).pluginConnSetup; hook != nil {
				hook(conn.PgConn().PID())
			}
			// When the client gives this connection up (a statement past
			// its timeout), PluginDB.reapLost ends its backend by pid;
			// the start time makes sure it is this backend and not a
			// later one the pid was given to.
			// Not knowing it (pg_stat_activity revoked from PUBLIC, a
			// hardening some operators apply) only leaves such a backend
			// to the server's own checks.
			var started time.Time
			if err := conn.QueryRow(ctx, "SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()").Scan(&started); err == nil {
				conn.PgConn().CustomData()[backendStartKey] = started
			} else if conn.PgConn().IsClosed() {
				return endedInSetup{fmt.Errorf("read the connection's backend start: %w", err)}
			}
			reset := sessionReset
			if c.checkClient {
				set := "SET client_connection_check_interval = " + strconv.Itoa(clientCheckInterval)
				if _, err := conn.Exec(ctx, set); err != nil {
					err = fmt.Errorf("set client_connection_check_interval: %w", err)
					if conn.PgConn().IsClosed() {
						return endedInSetup{err}
					}
					return err
				}
				// RESET ALL, when the connection goes back to the
				// pool, would undo it.
				reset += "; " + set
			}
			conn.PgConn().CustomData()[sessionResetKey] = reset
			conn.PgConn().CustomData()[generationKey] = generation
			return nil
		}),
		// pgx's driver pings a connection it hands out again when it
		// sat idle over a second, before the reset below: one the
		// server ended is left unpinged, for the reset to discard with
		// its log line (a failed ping discarded it unlogged).
		stdlib.OptionShouldPing(func(_ context.Context, p stdlib.ShouldPingParams) bool {
			return p.IdleDuration > time.Second && !serverEnded(p.Conn.PgConn())
		}),
		stdlib.OptionResetSession(func(ctx context.Context, conn *pgx.Conn) error {
			// The server ended the session while the connection sat in
			// the pool (see serverEnded): database/sql discards it
			// and takes another, before anything is sent on it.
			if serverEnded(conn.PgConn()) {
				c.log.WithField("pid", conn.PgConn().PID()).Debug("discarded a pooled database connection whose session the server had ended (a restart, a failover or pg_terminate_backend), before sending anything on it")
				return driver.ErrBadConn
			}
			// A reload changed the limits since this connection opened:
			// database/sql discards it and opens another.
			if now := c.lim.Load(); now.StatementTimeout != lim.StatementTimeout || now.MaxResult != lim.MaxResult {
				return driver.ErrBadConn
			}
			// The plugin's tables may have changed since this
			// connection's last use (a new version, migrations here or
			// on another replica): forget the statement descriptions
			// (and the server's prepared statements, which the session
			// reset has deallocated already).
			if now := c.generation.Load(); conn.PgConn().CustomData()[generationKey] != now {
				if err := conn.DeallocateAll(ctx); err != nil {
					return driver.ErrBadConn
				}
				conn.PgConn().CustomData()[generationKey] = now
			}
			return nil
		}))
}

// serverEnded reports, without a round trip, whether the server has
// ended the session of pc, an idle pooled connection: it sent something
// (a FATAL error: 57P01 for a restart, a failover or
// pg_terminate_backend, 57P02, 57P03) or closed the socket, which an
// idle session's server does only when it ends it. pgx's database/sql
// driver checks a connection it hands out again (a round trip) only when
// over a second passed since it last did, and a plugin's statement on
// one the server ended within that second failed with that FATAL error,
// as if it had run (the plugin's statements are not pinged: a round
// trip each). What the driver has read and not yet handled counts too.
// A session the server ends between this check and the statement's
// arrival, or whose end has not reached this host yet (a server cut
// off), fails the statement as before; so does one ended while its
// statement runs, which is not run again (it may have committed what it
// did before: a procedure's COMMIT; and an operator's
// pg_terminate_backend of a runaway statement means to stop it).
func serverEnded(pc *pgconn.PgConn) bool {
	return pc.Frontend().ReadBufferLen() > 0 || peerSpoke(pc.Conn())
}

func (c *pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	if err := c.room(ctx); err != nil {
		return nil, err
	}
	return c.connect(ctx)
}

// connect opens a connection as the plugin's role, setting the role's
// password back when the plugin changed it.
func (c *pgConnector) connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.connector().Connect(ctx)
	var pe *pgconn.PgError
	if err != nil && c.heal != nil && errors.As(err, &pe) && pe.Code == "28P01" {
		c.log.Warn("the plugin's database role failed to authenticate (did the plugin change its password?); restoring the derived password")
		if herr := c.heal(ctx); herr != nil {
			return nil, errors.Join(err, herr)
		}
		conn, err = c.connector().Connect(ctx)
	}
	// A session the server ended while the connection was being set up
	// (pg_terminate_backend of every session, or a failover's, reaching
	// one just opened) ran nothing of the plugin's: open another, twice
	// at most, so that a server ending every new session is not tried for
	// ever. The plugin's statement failed with 57P01 for it
	// (TestPGPluginConnectionEndedDuringItsSetup).
	for range 2 {
		var ended endedInSetup
		if err == nil || !errors.As(err, &ended) || ctx.Err() != nil {
			break
		}
		c.log.WithError(err).Debug("the server ended a new database connection's session while it was being set up; opening another")
		conn, err = c.connector().Connect(ctx)
	}
	if sc, ok := conn.(*stdlib.Conn); ok && err == nil {
		return validConn{sc}, nil
	}
	return conn, err
}

// endedInSetup is the error of a new plugin connection whose session the
// server ended while the runtime set it up, before anything of the
// plugin's was sent on it (pgConnector.connect opens another).
type endedInSetup struct{ error }

func (e endedInSetup) Unwrap() error { return e.error }

// validConn is pgx's database/sql connection with driver.Validator.
// Without it, database/sql's own rollback of a transaction whose context
// ended (Tx.awaitDone) discards the connection, closing the *sql.Conn it
// was begun on; the runtime then could not reach the driver's connection
// through that *sql.Conn (Raw fails) to reap a backend the transaction
// left running (PluginDB.reapLost): a migration or a plugin's transaction
// given up at its deadline, whose statement catches the server's cancel,
// ran on whenever that rollback came first (an audit's flaky
// TestPGGivenUpMigrationEnds; TestPGGivenUpMigrationEndsAfterTheTxRollback).
// With it, database/sql keeps the connection after that rollback, and
// discards it when it goes back to the pool if it is closed.
type validConn struct{ *stdlibConn }

// stdlibConn names stdlib.Conn so that validConn's embedded field is not
// called Conn, which would hide the connection's Conn method.
type stdlibConn = stdlib.Conn

// IsValid implements driver.Validator.
func (c validConn) IsValid() bool { return !c.Conn().IsClosed() }

// validConn keeps every optional interface of stdlib.Conn that
// database/sql looks for.
var _ interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.NamedValueChecker
	driver.Pinger
	driver.SessionResetter
	driver.Validator
	Conn() *pgx.Conn
} = validConn{}

func (c *pgConnector) Driver() driver.Driver { return stdlib.GetDefaultDriver() }

// room waits, at most until ctx ends, until a new connection fits in the
// plugin's db_max_conns beside the backends of connections given up after
// their statement's timeout that still run on the server. PostgreSQL does
// not interrupt some operations (array containment over large arrays,
// for one) on a cancel, a statement_timeout or pg_terminate_backend: such
// a backend runs on until its computation ends, and without this each
// given-up connection the pool replaced would add one, until the server's
// max_connections were taken from every other plugin. The pool counts the
// connection being opened among its open ones.
func (c *pgConnector) room(ctx context.Context) error {
	if c.survivors == nil || c.db == nil || c.survivors.Load() == 0 {
		return nil
	}
	for {
		n := c.survivors.Load()
		if n == 0 || int64(c.db.Stats().OpenConnections)+n <= int64(c.lim.Load().MaxConns) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d backends of the plugin's connections given up after their statement's timeout still run on the server (ended with pg_terminate_backend, which PostgreSQL does not act on inside some operations) and take limits.db_max_conns of %d: %w", n, c.lim.Load().MaxConns, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
