package database

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"
)

// Plugin connections keep each statement's description (its parameter and
// result types, pgx's QueryExecModeCacheDescribe) and bind the statement
// with it. A migration that changes a table under a cached description (a
// column added to a table a SELECT * reads) makes the statement's Bind fail
// on each connection that cached it (staleDescription): outside a
// transaction the statement is run again, described anew; inside one the
// failed Bind has aborted the transaction. So whatever may have changed a
// plugin's tables moves its connector's generation on
// (pgConnector.generation), and each of its connections forgets its
// descriptions before its next use:
//
//   - this replica applied the plugin's migrations (migrated), and told
//     the others with a NOTIFY on migratedChannel, which every replica
//     LISTENs to on a connection of its own (watchMigrations);
//   - a statement of the plugin met a stale description on one connection
//     (PluginDB.forgetDescriptions): the others' are as stale;
//   - a new version of the plugin started serving (setLimits).
//
// Every role may NOTIFY, a plugin's too: its statements cannot (the
// session filter refuses NOTIFY and pg_notify), but code the filter does
// not read can (a DO block). So a notification on migratedChannel counts
// only when a runtime signed it: its payload is the plugin's id and an
// HMAC of it under the key in greenroom.runtime_secrets (notifyKeyName),
// which plugin roles cannot read (they have no privilege on the runtime's
// schema). A plugin never sees a runtime's payload to replay it: it can
// LISTEN from a DO block, but the notifications that reach its connection
// are dropped by the driver (pgBackend.plugin's OnNotification) and what
// it listens to ends with the call (sessionReset's UNLISTEN *). A forged
// notification costs the watch one HMAC and is ignored, no query; until
// 2026-12-07's fix (TestPGForgedMigrationNoticeIgnored) one naming a plugin
// made that plugin's connections, on every replica, DEALLOCATE ALL as each
// was next taken and describe each statement again. With isolation =
// "schema" plugins connect as the runtime's user and can read the key.

// migratedChannel is the channel on which a replica that applied a
// plugin's migrations notifies the others; the payload is
// migrationPayload's.
const migratedChannel = "greenroom_plugin_migrated"

// notifyKeyName is the row of greenroom.runtime_secrets whose value signs
// the notifications on migratedChannel, created by the first replica to
// start (pgBackend.prepare).
const notifyKeyName = "migration-notify-key"

// migrationMAC is the signature of plugin id's migration notification.
func migrationMAC(key []byte, id string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("migrated:" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// migrationPayload is the payload of plugin id's migration notification:
// the id, a space, and its signature. (The build of 2026-12-07 that
// introduced the watch, never released, sent the bare id: such a replica
// and a newer one ignore each other's notifications.)
func (b *pgBackend) migrationPayload(id string) string {
	b.mu.Lock()
	key := b.notifyKey
	b.mu.Unlock()
	return id + " " + migrationMAC(key, id)
}

// migrationFrom returns the plugin id a notification's payload names, and
// whether a runtime signed it (compared in constant time). Before the key
// is read (the watch starts before prepare) nothing is accepted: no
// plugin is loaded then.
func (b *pgBackend) migrationFrom(payload string) (string, bool) {
	b.mu.Lock()
	key := b.notifyKey
	b.mu.Unlock()
	i := strings.LastIndexByte(payload, ' ')
	if len(key) == 0 || i < 0 {
		return "", false
	}
	id := payload[:i]
	return id, hmac.Equal([]byte(payload[i+1:]), []byte(migrationMAC(key, id)))
}

// migrationWatchRetry is how long the watch waits before it connects again
// when its connection failed.
const migrationWatchRetry = time.Second

// migrationWatch runs the LISTEN for other replicas' plugin migrations.
type migrationWatch struct {
	stop context.CancelFunc
	done sync.WaitGroup
}

// watchMigrations listens, on a connection of its own, for the plugins'
// migrations other replicas apply, until close, and makes that plugin's
// connections forget their statement descriptions on each. While it has
// no connection (the server restarted, a failover, a network cut) nothing
// is heard: the first of a plugin's transactions to meet a description
// another replica's migration made stale then fails, as for a change no
// notification tells of, and its connections forget theirs from there
// (PluginDB.forgetDescriptions); that is logged once, at warn, until the
// watch is connected again, and every plugin's connections then forget
// their descriptions (what was missed meanwhile is not known).
func (b *pgBackend) watchMigrations() {
	ctx, cancel := context.WithCancel(context.Background())
	w := &migrationWatch{stop: cancel}
	b.mu.Lock()
	b.migrations = w
	b.mu.Unlock()
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		failing := false
		for {
			err := b.listenForMigrations(ctx, func() {
				b.forgetAllDescriptions()
				if failing {
					b.log.Info("hearing of other replicas' plugin migrations again")
				}
				failing = false
			})
			if ctx.Err() != nil {
				return
			}
			if !failing {
				b.log.WithError(err).Warn("not hearing of the plugin migrations other replicas apply (no LISTEN connection): until it is back, after another replica's migration changes a table a plugin reads with SELECT * or RETURNING *, the plugin's first transaction to run such a statement with arguments fails (08P01) before its connections describe their statements again; retrying every second")
			}
			failing = true
			select {
			case <-ctx.Done():
				return
			case <-time.After(migrationWatchRetry):
			}
		}
	}()
}

// listenForMigrations connects, LISTENs on migratedChannel, calls
// connected, then handles notifications until the connection fails or ctx
// ends.
func (b *pgBackend) listenForMigrations(ctx context.Context, connected func()) error {
	c := b.conf.Copy()
	c.RuntimeParams["application_name"] = "greenroom migration watch"
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, c)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+migratedChannel); err != nil {
		return err
	}
	connected()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		id, ok := b.migrationFrom(n.Payload)
		if !ok {
			if b.ignored.Add(1) == 1 {
				b.log.Warn("ignored a notification on " + migratedChannel + " that no greenroom runtime signed (a plugin's DO block can NOTIFY; or a replica of the unreleased build of 2026-12-07 that sent unsigned ones): such notifications are ignored, this is logged once")
			}
			continue
		}
		b.forgetDescriptions(id)
		b.heard.Add(1)
	}
}

// stopWatchingMigrations ends watchMigrations.
func (b *pgBackend) stopWatchingMigrations() {
	b.mu.Lock()
	w := b.migrations
	b.migrations = nil
	b.mu.Unlock()
	if w != nil {
		w.stop()
		w.done.Wait()
	}
}

// forgetDescriptions makes each of plugin id's connections (on this
// replica) forget its statement descriptions before its next use.
func (b *pgBackend) forgetDescriptions(id string) {
	b.mu.Lock()
	pc := b.plugins[id]
	b.mu.Unlock()
	if pc != nil {
		pc.generation.Add(1)
	}
}

// forgetAllDescriptions is forgetDescriptions for every plugin.
func (b *pgBackend) forgetAllDescriptions() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, pc := range b.plugins {
		pc.generation.Add(1)
	}
}

// migrated is called once plugin id's migrations committed on this
// replica: its connections here forget their descriptions, and the other
// replicas are told.
func (b *pgBackend) migrated(ctx context.Context, db *bun.DB, id string) {
	b.forgetDescriptions(id)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := db.DB.ExecContext(ctx, "SELECT pg_catalog.pg_notify($1, $2)", migratedChannel, b.migrationPayload(id)); err != nil {
		b.log.WithError(err).WithField("plugin", id).Warn("could not tell the other replicas that the plugin's migrations changed its tables (NOTIFY): there, the plugin's first transaction to read a changed table with SELECT * or RETURNING * and arguments fails (08P01) before its connections describe their statements again")
	}
}
