package database_test

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/database"
)

// On SQLite a plugin's migration records (greenroom.db) and its tables
// (plugins/<id>.db) are two files; the plugin's file says which
// migrations it holds, and the records follow it at the next load. Each
// case failed before: a migration recorded but not applied, or applied
// but not recorded, kept the plugin from loading.
func TestSQLiteMigrationRecordsFollowThePluginFile(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	alpha := plugin("alpha", true, "good", "")
	setup := func(t *testing.T) (dir, conf string) {
		dir = t.TempDir()
		return dir, fmt.Sprintf("[database]\nclient = \"sqlite\"\nconnection = \"file:%s\"\n", dir)
	}
	// sqlFile runs statements on one of the files with greenroom stopped.
	sqlFile := func(t *testing.T, path string, stmts ...string) {
		t.Helper()
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, s := range stmts {
			if _, err := db.Exec(s); err != nil {
				t.Fatalf("%s: %s: %v", path, s, err)
			}
		}
	}
	records := func(t *testing.T, dir string) []string {
		t.Helper()
		db, err := sql.Open("sqlite", filepath.Join(dir, "greenroom.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		rows, err := db.Query("SELECT name FROM plugin_migrations WHERE plugin = 'alpha' ORDER BY name")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var n string
			rows.Scan(&n)
			out = append(out, n)
		}
		return out
	}
	// ready starts greenroom on conf and checks alpha is ready with both
	// migrations applied once and recorded.
	ready := func(t *testing.T, dir, conf string) {
		t.Helper()
		in := start(t, conf, alpha)
		if st, reason := in.RT.Slot("alpha").Status(); st != "ready" {
			t.Fatalf("alpha: %s %s", st, reason)
		}
		must(t, in, "alpha", query("SELECT count(*) FROM notes"))
		if n := count(t, in, "alpha", "applied"); n != 1 {
			t.Errorf("002 applied %d times, want once", n)
		}
		if r := must(t, in, "alpha", query("SELECT name FROM "+database.MarkTable+" ORDER BY name")); fmt.Sprint(r[0].Rows) != "[[001_notes.up.sql] [002_applied.up.sql]]" {
			t.Errorf("marked in the plugin's file: %v", r[0].Rows)
		}
		stop(t, in)
		if r := records(t, dir); fmt.Sprint(r) != "[001_notes.up.sql 002_applied.up.sql]" {
			t.Errorf("records %v, want both", r)
		}
	}

	t.Run("stopped between the two commits", func(t *testing.T) {
		dir, conf := setup(t)
		database.SetMigrationCommitHook(t, dir, func(stage string) error {
			if stage == "before" {
				return errors.New("process stopped")
			}
			return nil
		})
		in := start(t, conf, alpha)
		database.SetMigrationCommitHook(t, dir, nil)
		if st, reason := in.RT.Slot("alpha").Status(); st != "failed" || !strings.Contains(reason, "process stopped") {
			t.Fatalf("alpha: %s %s, want failed at its first migration", st, reason)
		}
		stop(t, in)
		if r := records(t, dir); len(r) != 1 {
			t.Fatalf("records %v, want 001 recorded, its tables not committed", r)
		}
		ready(t, dir, conf)
	})
	t.Run("plugin file deleted", func(t *testing.T) {
		dir, conf := setup(t)
		ready(t, dir, conf)
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(filepath.Join(dir, "plugins", "alpha.db"+suffix))
		}
		ready(t, dir, conf)
	})
	t.Run("records lost", func(t *testing.T) {
		dir, conf := setup(t)
		ready(t, dir, conf)
		sqlFile(t, filepath.Join(dir, "greenroom.db"), "DELETE FROM plugin_migrations WHERE plugin = 'alpha'")
		ready(t, dir, conf)
	})
	t.Run("file from before the marks", func(t *testing.T) {
		dir, conf := setup(t)
		ready(t, dir, conf)
		sqlFile(t, filepath.Join(dir, "plugins", "alpha.db"), "DROP TABLE "+database.MarkTable)
		ready(t, dir, conf)
	})
}

// A plugin reads the runtime's marks but cannot change, drop, rename,
// shadow or hook them, not even from a trigger.
func TestSQLiteMarkTableIsTheRuntimes(t *testing.T) {
	in := start(t, backends[0].conf(t), plugin("alpha", true, "good", ""))
	m := database.MarkTable
	for _, s := range []string{
		"INSERT INTO " + m + " VALUES ('003_x.up.sql', 'x', 'x')",
		"UPDATE " + m + " SET sha256 = 'x'",
		"DELETE FROM " + m,
		"DROP TABLE " + m,
		"ALTER TABLE " + m + " RENAME TO mine",
		"ALTER TABLE main." + strings.ToUpper(m) + " ADD COLUMN c",
		"CREATE TEMP TABLE " + m + " (name, sha256, applied_at)",
		"CREATE TEMP VIEW " + m + " AS SELECT 1",
		"CREATE INDEX marks_sha ON " + m + " (sha256)",
		"CREATE TRIGGER marks_t AFTER DELETE ON " + m + " BEGIN SELECT 1; END",
	} {
		r := run(t, in, "alpha", exec(s))
		if r[0].Error == "" || !strings.Contains(r[0].Error, m) {
			t.Errorf("%s: %q, want refused naming %s", s, r[0].Error, m)
		}
	}
	// A trigger's statements are authorized when a statement that fires
	// it compiles: the insert that would delete the marks is refused.
	must(t, in, "alpha", exec("CREATE TRIGGER notes_t AFTER INSERT ON notes BEGIN DELETE FROM "+m+"; END"))
	if r := run(t, in, "alpha", exec("INSERT INTO notes (note) VALUES ('x')")); !strings.Contains(r[0].Error, m) {
		t.Errorf("an insert firing a trigger that deletes the marks: %q, want refused naming %s", r[0].Error, m)
	}
	must(t, in, "alpha", exec("DROP TRIGGER notes_t"), exec("INSERT INTO notes (note) VALUES ('x')"))
	if r := must(t, in, "alpha", query("SELECT count(*) FROM "+m)); fmt.Sprint(r[0].Rows) != "[[2]]" {
		t.Errorf("marks read by the plugin: %v, want 2", r[0].Rows)
	}
}

// A plugin without migrations cannot make the marks either: ALTER TABLE
// ... RENAME TO names only the old name to the authorizer, and an audit's
// plugin renamed a table of its own to the marks' name, holding a forged
// record, which a later version with migrations took as applied. The
// runtime makes the table at every load, so the name is taken.
func TestSQLiteMarkTableCannotBeMadeByRename(t *testing.T) {
	in := start(t, backends[0].conf(t), plugin("alpha", true, "", ""))
	m := database.MarkTable
	must(t, in, "alpha", exec("CREATE TABLE x (name TEXT PRIMARY KEY NOT NULL, sha256 TEXT NOT NULL, applied_at TEXT NOT NULL)"),
		exec("INSERT INTO x VALUES ('999_forged.up.sql', 'x', 'x')"))
	if r := run(t, in, "alpha", exec("ALTER TABLE x RENAME TO "+m)); r[0].Error == "" {
		t.Fatalf("renamed a table to %s", m)
	}
	if r := must(t, in, "alpha", query("SELECT count(*) FROM "+m)); fmt.Sprint(r[0].Rows) != "[[0]]" {
		t.Errorf("marks of a plugin without migrations: %v, want none", r[0].Rows)
	}
}
