package database_test

import (
	"strings"
	"testing"
)

// Pragmas that reach beyond the plugin's own statements are denied: the
// process's SQLite heap (soft_heap_limit, shrink_memory), its threads,
// the write-ahead log that db_max_size does not bound (wal_autocheckpoint,
// wal_checkpoint), durability and the file's layout (synchronous,
// auto_vacuum, incremental_vacuum, secure_delete), where temporary data
// goes (temp_store), and the checks SQLite makes on what it reads or
// writes (cell_size_check, ignore_check_constraints, legacy_alter_table).
// A denied function is denied where a plugin hides it, in a view or a
// trigger: creating one is allowed, using it is not.
func TestSQLiteDeniedBeyondTheList(t *testing.T) {
	in := start(t, backends[0].conf(t), plugin("alpha", true, "good", ""))
	for _, sql := range []string{
		"PRAGMA soft_heap_limit = 1",
		"PRAGMA shrink_memory",
		"PRAGMA threads = 8",
		"PRAGMA wal_autocheckpoint = 0",
		"PRAGMA wal_checkpoint(TRUNCATE)",
		"PRAGMA synchronous = OFF",
		"PRAGMA auto_vacuum = FULL",
		"PRAGMA incremental_vacuum",
		"PRAGMA secure_delete = OFF",
		"PRAGMA temp_store = FILE",
		"PRAGMA cell_size_check = OFF",
		"PRAGMA ignore_check_constraints = ON",
		"PRAGMA legacy_alter_table = ON",
		"PRAGMA automatic_index = OFF",
		"PRAGMA temp.cache_size = -1000000",
		"SELECT * FROM pragma_compile_options",
		"CREATE VIRTUAL TABLE v USING fts5vocab(main, ft, row)",
	} {
		if r := run(t, in, "alpha", exec(sql))[0]; r.Kind != "denied" || !strings.Contains(r.Error, "statement refused by the sandbox") {
			t.Errorf("%q: %s %q, want denied", sql, r.Kind, r.Error)
		}
	}
	must(t, in, "alpha",
		exec("CREATE VIEW ext AS SELECT load_extension('/usr/lib/x86_64-linux-gnu/libm.so.6') AS x"),
		exec("CREATE VIEW overlap AS SELECT geopoly_overlap('[[0,0],[1,0],[0,1],[0,0]]', '[[0,0],[2,0],[0,2],[0,0]]') AS x"),
		exec("CREATE TABLE log (x)"),
		exec("CREATE TRIGGER tr AFTER INSERT ON log BEGIN SELECT load_extension('/usr/lib/x86_64-linux-gnu/libm.so.6'); END"))
	for sql, want := range map[string]string{
		// In a view SQLite itself refuses it first (trusted_schema is
		// off: load_extension is not innocuous).
		"SELECT x FROM ext":          "unsafe use of load_extension()",
		"SELECT x FROM overlap":      "statement refused by the sandbox: function geopoly_overlap() is not allowed",
		"INSERT INTO log VALUES (1)": "statement refused by the sandbox: function load_extension() is not allowed",
	} {
		if r := run(t, in, "alpha", exec(sql))[0]; r.Error == "" || !strings.Contains(r.Error, want) {
			t.Errorf("%q: %s %q, want refused: %s", sql, r.Kind, r.Error, want)
		}
	}
	if n := count(t, in, "alpha", "log"); n != 0 {
		t.Errorf("log has %d rows, want 0", n)
	}
}
