//go:build !wasip1

package greenroom

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestMigrationsOrderAndErrors(t *testing.T) {
	fsys := fstest.MapFS{
		"migrations/b/002_second.up.sql": {Data: []byte("CREATE TABLE b (x int);")},
		"migrations/001_first.up.sql":    {Data: []byte("CREATE TABLE a (x int);")},
		"migrations/001_first.down.sql":  {Data: []byte("DROP TABLE a;")},
		"README.md":                      {Data: []byte("not a migration")},
	}
	if err := Migrations(fsys); err != nil {
		t.Fatal(err)
	}
	got := RegisteredMigrations()
	if len(got) != 2 || got[0].Name != "001_first.up.sql" || got[1].Name != "002_second.up.sql" {
		t.Errorf("registered %+v", got)
	}
	if err := Migrations(fstest.MapFS{"x.sql": {}}); err == nil {
		t.Error("no *.up.sql accepted")
	}
	dup := fstest.MapFS{"a/001_x.up.sql": {Data: []byte("x")}, "b/001_x.up.sql": {Data: []byte("y")}}
	if err := Migrations(dup); err == nil {
		t.Error("two files of one name accepted")
	}
}

func TestNativeDBWithoutRuntime(t *testing.T) {
	SetDB(nil)
	if _, err := DB().Exec("SELECT 1"); err == nil {
		t.Error("native DB without SetDB worked")
	}
}

// A handler that closes DB's database (a habit from database/sql's
// examples) closes it for itself only: later calls of DB get a new one.
func TestClosedDBIsReplaced(t *testing.T) {
	SetDB(nil)
	db := DB()
	if again := DB(); again != db {
		t.Fatal("two calls of DB returned two databases")
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := db.Exec("SELECT 1"); err == nil || !strings.Contains(err.Error(), "database is closed") {
		t.Errorf("the closed database: %v, want database/sql's \"database is closed\"", err)
	}
	next := DB()
	if next == db {
		t.Fatal("DB returned the database a caller closed")
	}
	// Outside the runtime its statements reach no database, and say so.
	if _, err := next.Exec("SELECT 1"); err == nil || strings.Contains(err.Error(), "database is closed") {
		t.Errorf("the new database: %v, want the driver's own error", err)
	}
	if DB() != next {
		t.Error("DB did not keep the new database")
	}
}
