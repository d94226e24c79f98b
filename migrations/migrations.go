// Package migrations holds the SQL migrations of greenroom's own tables,
// applied with bun's migrate package when the runtime opens its database
// (or by `greenroom migrate up`). PostgreSQL and SQLite have their own
// variants of every file, because their types differ.
//
// Files are named <version>_<name>.tx.up.sql (run in a transaction). Add a
// new file with a higher version for every change; never edit an applied one.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed pg/*.sql sqlite/*.sql
var files embed.FS

// PG returns the PostgreSQL migrations.
func PG() fs.FS { return sub("pg") }

// SQLite returns the SQLite migrations.
func SQLite() fs.FS { return sub("sqlite") }

func sub(dir string) fs.FS {
	f, err := fs.Sub(files, dir)
	if err != nil {
		panic(err) // the directories are embedded above
	}
	return f
}
