//go:build !wasip1

package greenroom

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
)

// noMigrations starts t with none registered (they add up over calls),
// and puts back the registered ones when it ends.
func noMigrations(t *testing.T) {
	nativeMu.Lock()
	saved := nativeMigrations
	nativeMigrations = nil
	nativeMu.Unlock()
	t.Cleanup(func() {
		nativeMu.Lock()
		nativeMigrations = saved
		nativeMu.Unlock()
	})
}

func TestMigrationsOrderAndErrors(t *testing.T) {
	noMigrations(t)
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

// Migrations called more than once (a package per part of a plugin)
// registers the files of every call, as the runtime does over an init's
// calls: SetDB applies them all, in name order, and a name registered by
// an earlier call refuses the later call whole. Natively the last call
// replaced the others' files, so a unit test's database lacked their
// tables while the runtime's had them.
func TestMigrationsSeveralCalls(t *testing.T) {
	noMigrations(t)
	if err := Migrations(fstest.MapFS{"items/002_items.up.sql": {Data: []byte("CREATE TABLE items (x int);")}}); err != nil {
		t.Fatal(err)
	}
	if err := Migrations(fstest.MapFS{"audit/001_audit.up.sql": {Data: []byte("CREATE TABLE audit (x int);")}}); err != nil {
		t.Fatal(err)
	}
	again := fstest.MapFS{
		"003_more.up.sql":  {Data: []byte("CREATE TABLE more (x int);")},
		"002_items.up.sql": {Data: []byte("CREATE TABLE other (x int);")},
	}
	if err := Migrations(again); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"002_items.up.sql" registered twice`) {
		t.Errorf("a name registered by an earlier call: %v, want ErrInvalid naming it", err)
	}
	var names []string
	for _, m := range RegisteredMigrations() {
		names = append(names, m.Name)
	}
	if got := strings.Join(names, " "); got != "001_audit.up.sql 002_items.up.sql" {
		t.Errorf("registered %q, want both calls' files in name order and none of the refused call's", got)
	}
}
