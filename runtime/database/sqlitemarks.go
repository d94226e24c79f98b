package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"
)

// On SQLite a plugin's tables are in its own file (plugins/<id>.db) and the
// runtime's plugin_migrations table in greenroom.db: two files, which no
// transaction spans. So each migration also writes a row into markTable
// of the plugin's file, in the migration's own transaction: the file
// itself says which migrations it holds, whatever happened to
// greenroom.db between the two commits (a process killed, a power loss,
// one file restored or deleted without the other). Before it applies
// anything, ApplyMigrations makes the plugin's rows of plugin_migrations
// agree with the file (reconcileSQLite).
//
// A plugin's own statements may read the table but not write, drop,
// alter or shadow it (authorize).
const markTable = "_greenroom_migrations"

// isMarkTable reports whether name is markTable, as SQLite compares names.
func isMarkTable(name string) bool { return strings.EqualFold(name, markTable) }

const createMarkTable = "CREATE TABLE IF NOT EXISTS main." + markTable +
	" (name TEXT PRIMARY KEY NOT NULL, sha256 TEXT NOT NULL, applied_at TEXT NOT NULL)"

// onSQLiteConn runs f on conn's driver connection, where the runtime's
// own statements pass the authorizer (trustedExec).
func onSQLiteConn(conn *sql.Conn, f func(*sqliteConn) error) error {
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*sqliteConn)
		if !ok {
			return fmt.Errorf("not a SQLite connection (%T)", dc)
		}
		return f(c)
	})
}

// markApplied records rec in the plugin's file on conn, inside the
// transaction the migration runs in.
func markApplied(ctx context.Context, conn *sql.Conn, rec *pluginMigration) error {
	return onSQLiteConn(conn, func(c *sqliteConn) error {
		if err := c.trustedExec(ctx, createMarkTable); err != nil {
			return fmt.Errorf("record the migration in the plugin's database: %w", err)
		}
		if err := c.trustedExecArgs(ctx, "INSERT INTO main."+markTable+" (name, sha256, applied_at) VALUES (?1, ?2, ?3)",
			rec.Name, rec.SHA256, rec.AppliedAt.Format(time.RFC3339Nano)); err != nil {
			return fmt.Errorf("record the migration in the plugin's database: %w", err)
		}
		return nil
	})
}

// trustedExecArgs runs one of the runtime's own statements with arguments.
func (c *sqliteConn) trustedExecArgs(ctx context.Context, q string, args ...any) error {
	c.trusted = true
	defer func() { c.trusted = false }()
	named := make([]driver.NamedValue, len(args))
	for i, a := range args {
		named[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	_, err := c.sqliteDriverConn.ExecContext(ctx, q, named)
	return err
}

// reconcileSQLite makes recs, the plugin's rows of plugin_migrations in
// greenroom.db, agree with the migrations its own file holds, and returns
// them as they now are:
//   - a row whose migration the file does not hold (greenroom.db committed,
//     the plugin's file did not; or the file was restored from an older
//     copy) is deleted, so that the migration is applied again;
//   - a migration the file holds without a row (greenroom.db lost it, or
//     was restored from an older copy) gets its row back;
//   - a file without markTable whose records say migrations were applied
//     was either written before markTable existed (it has tables: its
//     migrations are taken as applied and marked in it) or deleted,
//     emptied or replaced (it has nothing: they are applied again);
//   - a file without markTable or records gets an empty markTable.
//
// It runs at every load of a plugin with the database capability, with
// or without migrations, before the plugin's first statement.
func (p *PluginDB) reconcileSQLite(ctx context.Context, recs []pluginMigration) ([]pluginMigration, error) {
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var tables int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM main.sqlite_schema WHERE type = 'table' AND name = ?", markTable).Scan(&tables); err != nil {
		return nil, fmt.Errorf("look for %s in the plugin's database: %w", markTable, err)
	}
	if tables == 0 {
		if len(recs) == 0 {
			// Made now, before the plugin's first statement, so that the
			// plugin cannot make it: the authorizer refuses a table of
			// this name, but ALTER TABLE ... RENAME TO it names only the
			// old name to the authorizer (an audit forged records so).
			return recs, onSQLiteConn(conn, func(c *sqliteConn) error {
				if err := c.trustedExec(ctx, createMarkTable); err != nil {
					return fmt.Errorf("make %s in the plugin's database: %w", markTable, err)
				}
				return nil
			})
		}
		var objects int
		if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM main.sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'").Scan(&objects); err != nil {
			return nil, fmt.Errorf("read the plugin's database schema: %w", err)
		}
		if objects > 0 {
			if err := p.adoptRecords(ctx, conn, recs); err != nil {
				return nil, err
			}
			p.log.WithField("migrations", len(recs)).Info("the plugin's database predates its own migration records: marked the recorded migrations as applied in it")
			return recs, nil
		}
		p.log.WithField("migrations", len(recs)).Warn("the plugin's database file holds none of the migrations recorded for it (deleted, emptied or replaced): applying them again")
		if _, err := p.svc.DB().NewDelete().Model((*pluginMigration)(nil)).Where("plugin = ?", p.id).Exec(ctx); err != nil {
			return nil, fmt.Errorf("forget the migrations its database file does not hold: %w", err)
		}
		return nil, nil
	}
	marks := map[string]pluginMigration{}
	rows, err := conn.QueryContext(ctx, "SELECT name, sha256, applied_at FROM main."+markTable)
	if err != nil {
		return nil, fmt.Errorf("read %s in the plugin's database: %w", markTable, err)
	}
	for rows.Next() {
		var m pluginMigration
		var at string
		if err := rows.Scan(&m.Name, &m.SHA256, &at); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read %s in the plugin's database: %w", markTable, err)
		}
		m.Plugin = p.id
		if m.AppliedAt, err = time.Parse(time.RFC3339Nano, at); err != nil {
			m.AppliedAt = time.Now().UTC()
		}
		marks[m.Name] = m
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s in the plugin's database: %w", markTable, err)
	}
	var out []pluginMigration
	for _, r := range recs {
		if _, ok := marks[r.Name]; ok {
			out = append(out, r)
			delete(marks, r.Name)
			continue
		}
		p.log.WithField("migration", r.Name).Warn("a migration is recorded as applied but the plugin's database file does not hold it (stopped between the two commits, or the file restored from an older copy): applying it again")
		r := r
		if _, err := p.svc.DB().NewDelete().Model(&r).WherePK().Exec(ctx); err != nil {
			return nil, fmt.Errorf("forget migration %s, which its database file does not hold: %w", r.Name, err)
		}
	}
	for _, m := range marks {
		p.log.WithField("migration", m.Name).Warn("the plugin's database file holds a migration greenroom.db did not record (greenroom.db lost it, or was restored from an older copy): recorded it")
		m := m
		if _, err := p.svc.DB().NewInsert().Model(&m).Exec(ctx); err != nil {
			return nil, fmt.Errorf("record migration %s, which its database file holds: %w", m.Name, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// adoptRecords writes recs into markTable of a plugin's file that has
// none, in one transaction.
func (p *PluginDB) adoptRecords(ctx context.Context, conn *sql.Conn, recs []pluginMigration) error {
	err := onSQLiteConn(conn, func(c *sqliteConn) error {
		if err := c.trustedExec(ctx, "BEGIN IMMEDIATE"); err != nil {
			return err
		}
		err := c.trustedExec(ctx, createMarkTable)
		for _, r := range recs {
			if err != nil {
				break
			}
			err = c.trustedExecArgs(ctx, "INSERT OR IGNORE INTO main."+markTable+" (name, sha256, applied_at) VALUES (?1, ?2, ?3)",
				r.Name, r.SHA256, r.AppliedAt.UTC().Format(time.RFC3339Nano))
		}
		if err == nil {
			err = c.trustedExec(ctx, "COMMIT")
		}
		if err != nil {
			return errors.Join(err, c.trustedExec(context.Background(), "ROLLBACK"))
		}
		return nil
	})
	if err != nil {
		// Not back into the pool: it may still be in the transaction.
		conn.Raw(func(any) error { return driver.ErrBadConn })
		return fmt.Errorf("mark the recorded migrations in the plugin's database: %w", err)
	}
	return nil
}
