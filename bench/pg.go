package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/greenroom-dev/greenroom/runtime/database"
)

// defaultDatabaseURL is the local server the harness tries when neither
// -database-url nor DATABASE_URL says otherwise.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// pgDatabase is a database created for one run.
type pgDatabase struct {
	admin *sql.DB
	name  string
	url   string // the admin URL with this database
}

// createPGDatabase creates a uniquely named database on the server of
// adminURL (whose user must be able to create databases and roles).
func createPGDatabase(ctx context.Context, adminURL string) (*pgDatabase, error) {
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		return nil, err
	}
	name := "greenbench_" + randomHex(6)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		admin.Close()
		return nil, fmt.Errorf("create database: %w", err)
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		admin.Close()
		return nil, err
	}
	u.Path = "/" + name
	return &pgDatabase{admin: admin, name: name, url: u.String()}, nil
}

// nativeURL connects as the admin user to the plugin's own schema, where
// greenroom's todo plugin keeps its items.
func (d *pgDatabase) nativeURL() string {
	u, _ := url.Parse(d.url)
	q := u.Query()
	q.Set("search_path", database.SchemaName("todo"))
	u.RawQuery = q.Encode()
	return u.String()
}

// drop removes the database and the plugin roles greenroom created for it
// (roles belong to the whole cluster).
func (d *pgDatabase) drop() error {
	defer d.admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", d.name, err)
	}
	rows, err := d.admin.QueryContext(ctx, "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)", database.RolePrefix(d.name))
	if err != nil {
		return fmt.Errorf("list the roles of %s: %w", d.name, err)
	}
	var roles []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			rows.Close()
			return err
		}
		roles = append(roles, r)
	}
	rows.Close()
	for _, r := range roles {
		if _, err := d.admin.ExecContext(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize()); err != nil {
			return fmt.Errorf("drop role %s: %w", r, err)
		}
	}
	return nil
}

// redactURL hides a password in a connection URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}
