package database

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// A plugin's role can lock relations it has no privilege on. PostgreSQL's
// sequence functions (nextval, setval, currval) lock the relation an OID
// names before they check privileges, or even that it is a sequence, and
// keep the lock to the end of the transaction, also when a PL/pgSQL
// EXCEPTION block catches their error; every role can read every table's
// OID in pg_class. So a plugin could hold, for as long as its request or
// task ran, a lock on another plugin's table or on the runtime's: no read
// or write waits for it, but an ALTER TABLE, CREATE INDEX, TRUNCATE or
// VACUUM FULL does (another plugin's migrations, the runtime's own at an
// upgrade), and every statement on that table then queues behind the
// waiting one (an audit stalled the scheduler of every replica this way).
//
// No privilege the runtime can take away prevents it (plugins' own serial
// columns need nextval), so every replica looks for such locks once a
// second and ends the backends holding them: a plugin role has no
// legitimate lock on a relation owned by another plugin's role, nor on
// one of the runtime's schema or its TOAST tables.

// foreignLockInterval is how often a replica looks for plugin backends
// holding locks on relations that are not theirs.
const foreignLockInterval = time.Second

// foreignLocks finds, and terminates, the backends of this database's
// plugin roles ($1: their prefix, $2 its length) that hold or wait for a
// lock on a relation owned by another plugin's role, in the runtime's
// schema ($3) or the TOAST table or TOAST index of one there, or owned by
// the runtime's user elsewhere (stronger than AccessShareLock, which a
// plugin takes reading what the operator shares; relations from initdb,
// the catalogs, have OIDs below 16384).
const foreignLocks = `WITH runtime AS (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $3),
foreign_locks AS (
	SELECT DISTINCT ON (l.pid) l.pid, a.usename::text AS usename, coalesce(a.application_name, '') AS app, l.mode, l.relation::pg_catalog.regclass::text AS rel
	FROM pg_catalog.pg_locks l
	JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
	JOIN pg_catalog.pg_class c ON c.oid = l.relation
	JOIN pg_catalog.pg_roles o ON o.oid = c.relowner
	WHERE l.locktype = 'relation'
	  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
	  AND pg_catalog.left(a.usename::text, $2) = $1
	  AND o.rolname <> a.usename
	  AND (pg_catalog.left(o.rolname::text, $2) = $1
	    OR c.relnamespace IN (SELECT oid FROM runtime)
	    OR c.oid IN (SELECT reltoastrelid FROM pg_catalog.pg_class WHERE relnamespace IN (SELECT oid FROM runtime))
	    OR c.oid IN (SELECT i.indexrelid FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class t ON t.reltoastrelid = i.indrelid WHERE t.relnamespace IN (SELECT oid FROM runtime))
	    OR (o.rolname = current_user AND c.oid >= 16384 AND l.mode <> 'AccessShareLock'))
)
SELECT pid, usename, app, mode, rel, pg_catalog.pg_terminate_backend(pid) FROM foreign_locks`

// foreignLockWatch runs the look-out for locks plugins must not hold.
type foreignLockWatch struct {
	stop context.CancelFunc
	done sync.WaitGroup
}

// watchForeignLocks starts looking, every foreignLockInterval, for plugin
// backends holding locks that are not theirs (see above), on a connection
// of its own, until close. Only with isolation = "role": with "schema"
// plugins log in as the runtime's user, and share its privileges.
func (b *pgBackend) watchForeignLocks() {
	if b.cfg.Isolation == IsolationSchema {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &foreignLockWatch{stop: cancel}
	b.mu.Lock()
	b.foreign = w
	b.mu.Unlock()
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		var conn *pgx.Conn
		defer func() {
			if conn != nil {
				conn.Close(context.Background())
			}
		}()
		t := time.NewTicker(foreignLockInterval)
		defer t.Stop()
		failing := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if conn == nil || conn.IsClosed() {
				c := b.conf.Copy()
				c.RuntimeParams["application_name"] = "greenroom lock watch"
				c.RuntimeParams["statement_timeout"] = "5s"
				c.RuntimeParams["lock_timeout"] = "5s"
				cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
				var err error
				conn, err = pgx.ConnectConfig(cctx, c)
				ccancel()
				if err != nil {
					conn = nil
					if !failing && ctx.Err() == nil {
						b.log.WithError(err).Warn("cannot look for plugin locks on other plugins' or the runtime's tables; retrying every second")
					}
					failing = true
					continue
				}
			}
			if err := b.endForeignLocks(ctx, conn); err != nil {
				if !failing && ctx.Err() == nil {
					b.log.WithError(err).Warn("cannot look for plugin locks on other plugins' or the runtime's tables; retrying every second")
				}
				failing = true
				conn.Close(context.Background())
				conn = nil
				continue
			}
			failing = false
		}
	}()
}

// endForeignLocks terminates the plugin backends that hold or wait for a
// lock that is not theirs, with a warning for each.
func (b *pgBackend) endForeignLocks(ctx context.Context, conn *pgx.Conn) error {
	prefix := RolePrefix(b.dbname)
	rows, err := conn.Query(ctx, foreignLocks, prefix, len(prefix), RuntimeSchema)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var pid int64
		var role, app, mode, rel string // app: not trusted, see above
		var ended *bool
		if err := rows.Scan(&pid, &role, &app, &mode, &rel, &ended); err != nil {
			return err
		}
		// The role names the plugin; application_name is the plugin's to
		// set (SET application_name), so it names nobody.
		id := b.pluginOfRole(role)
		b.log.WithFields(map[string]any{"plugin": id, "pid": pid, "relation": rel, "lock": mode, "terminated": ended != nil && *ended}).
			Warn(fmt.Sprintf("ended a database session of plugin %s: it held a lock on %s, which is not its own (a plugin may lock only its own tables; PostgreSQL's sequence functions lock any table before they check privileges)", id, rel))
	}
	return rows.Err()
}

// stopWatchingForeignLocks ends watchForeignLocks.
func (b *pgBackend) stopWatchingForeignLocks() {
	b.mu.Lock()
	w := b.foreign
	b.foreign = nil
	b.mu.Unlock()
	if w != nil {
		w.stop()
		w.done.Wait()
	}
}

// pluginOfRole is the id of the plugin whose role is role, among those
// this replica serves, or the role's name.
func (b *pgBackend) pluginOfRole(role string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id := range b.plugins {
		if RoleName(b.dbname, id) == role {
			return id
		}
	}
	return role
}
