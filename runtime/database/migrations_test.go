package database

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

func migrationFiles(from, n, size int) []hostfuncs.MigrationFile {
	files := make([]hostfuncs.MigrationFile, n)
	for i := range files {
		files[i] = hostfuncs.MigrationFile{Name: fmt.Sprintf("%06d.up.sql", from+i), SQL: "SELECT 1;" + strings.Repeat(" ", max(size-9, 0))}
	}
	return files
}

// migrationNames are the names of the migrations p would apply.
func migrationNames(p *PluginDB) []string {
	var names []string
	for _, f := range p.migrations {
		names = append(names, f.Name)
	}
	return names
}

// refused checks that err is ErrInvalid with a message containing want.
func refused(t *testing.T, what string, err error, want string) {
	t.Helper()
	var f *hostfuncs.Failure
	if !errors.As(err, &f) || f.Code != hostfuncs.ErrInvalid || !strings.Contains(f.Msg, want) {
		t.Errorf("%s: got %v, want ErrInvalid containing %q", what, err, want)
	}
}

// Migrations registered over an init's calls of db_migrations are checked
// for duplicates in linear time and bounded in number and bytes; a refused
// call registers none of its files.
func TestRegisterMigrationsLimits(t *testing.T) {
	p := &PluginDB{}
	in := &hostfuncs.Instance{Initializing: true}
	refused(t, "a duplicate in one call", p.RegisterMigrations(in, append(migrationFiles(0, 3, 9), migrationFiles(1, 1, 9)...)), `"000001.up.sql" registered twice`)
	start := time.Now()
	if err := p.RegisterMigrations(in, migrationFiles(0, hostfuncs.MaxMigrations-1, 9)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("registering %d migrations took %s", hostfuncs.MaxMigrations-1, took)
	}
	refused(t, "a duplicate of an earlier call's", p.RegisterMigrations(in, migrationFiles(5, 1, 9)), `"000005.up.sql" registered twice`)
	refused(t, "past the count", p.RegisterMigrations(in, migrationFiles(20000, 2, 9)), "10001 migrations, more than the 10000 a plugin may register")
	refused(t, "a file too large", p.RegisterMigrations(in, migrationFiles(20000, 1, hostfuncs.MaxMigrationSQL+1)), "4194305 bytes of SQL, more than the 4194304 (4 MiB) a migration may have")
	// The refused calls registered nothing: the last file fits.
	if err := p.RegisterMigrations(in, migrationFiles(20000, 1, 9)); err != nil {
		t.Fatal(err)
	}
	in.EndInit()
	if len(p.migrations) != hostfuncs.MaxMigrations {
		t.Errorf("%d migrations registered, want %d", len(p.migrations), hostfuncs.MaxMigrations)
	}

	// Bytes over all the calls of one init.
	in = &hostfuncs.Instance{Initializing: true}
	for i := range hostfuncs.MaxMigrationsSQL / hostfuncs.MaxMigrationSQL {
		if err := p.RegisterMigrations(in, migrationFiles(i, 1, hostfuncs.MaxMigrationSQL)); err != nil {
			t.Fatal(err)
		}
	}
	refused(t, "past the bytes", p.RegisterMigrations(in, migrationFiles(100, 1, 9)), "more than 67108864 bytes of SQL in the plugin's migrations")
	in.EndInit()
	if len(p.migrations) != hostfuncs.MaxMigrationsSQL/hostfuncs.MaxMigrationSQL {
		t.Errorf("%d migrations registered, want %d", len(p.migrations), hostfuncs.MaxMigrationsSQL/hostfuncs.MaxMigrationSQL)
	}
}

// A module's start section and its _initialize are calls of their own
// (each ends what it left open), but one initialization: the migrations
// both register are one list, checked for duplicates and limits over both
// (the start section's files were replaced by _initialize's, so never
// applied, and a name in both was not found twice).
func TestRegisterMigrationsOverStartAndInitialize(t *testing.T) {
	p := &PluginDB{}
	in := &hostfuncs.Instance{Initializing: true}
	if err := p.RegisterMigrations(in, migrationFiles(0, 2, 9)); err != nil { // the start section
		t.Fatal(err)
	}
	in.EndCall()
	if len(p.migrations) != 0 {
		t.Errorf("%d migrations published before the initialization ended", len(p.migrations))
	}
	refused(t, "a start section's name again", p.RegisterMigrations(in, migrationFiles(1, 1, 9)), `"000001.up.sql" registered twice`)
	if err := p.RegisterMigrations(in, migrationFiles(2, 1, 9)); err != nil { // _initialize
		t.Fatal(err)
	}
	in.EndCall()
	in.EndInit()
	names := migrationNames(p)
	if want := []string{"000000.up.sql", "000001.up.sql", "000002.up.sql"}; !slices.Equal(names, want) {
		t.Errorf("registered %q, want %q", names, want)
	}
	if in.Value(migrationsKey{}) != nil {
		t.Error("the instance still holds its registration after its initialization")
	}
}

// The version's first instance decides its migrations, as it decides its
// tasks and public routes: instances a load starts after it (a reload's,
// as many as the old version had) register theirs too, and a plugin whose
// instances registered different files had the last one's applied.
func TestFirstInstanceFixesMigrations(t *testing.T) {
	p := &PluginDB{}
	first := &hostfuncs.Instance{Initializing: true}
	if err := p.RegisterMigrations(first, migrationFiles(0, 2, 9)); err != nil {
		t.Fatal(err)
	}
	first.EndCall()
	first.EndInit()
	p.FixMigrations()
	later := &hostfuncs.Instance{Initializing: true}
	if err := p.RegisterMigrations(later, migrationFiles(5, 1, 9)); err != nil {
		t.Fatal(err)
	}
	later.EndCall()
	later.EndInit()
	names := migrationNames(p)
	if want := []string{"000000.up.sql", "000001.up.sql"}; !slices.Equal(names, want) {
		t.Errorf("migrations %q, want the first instance's %q", names, want)
	}
}

// A migration's name is shown to operators (greenroom migrate status):
// one with a control or format character, which could forge a line of
// the listing or send a terminal escape, is refused, named quoted.
func TestRegisterMigrationsNames(t *testing.T) {
	p := &PluginDB{}
	for _, c := range []struct{ name, want string }{
		{"001_a.up.sql\nplugin other  002_b.up.sql", `migration "001_a.up.sql\nplugin other  002_b.up.sql": its name has U+000A, a control or format character`},
		{"001\x1b[2J.up.sql", `migration "001\x1b[2J.up.sql": its name has U+001B`},
		{"001_\u202elqs.pu.sql", `migration "001_\u202elqs.pu.sql": its name has U+202E`},
		{"001\u200b.up.sql", "U+200B"}, // zero width space, also Cf
		{"001\u0085.up.sql", "U+0085"}, // C1 control
		{"001\t.up.sql", "U+0009"},
		{"001_\xff.up.sql", `migration "001_\xff.up.sql": its name is not valid UTF-8`},
	} {
		in := &hostfuncs.Instance{Initializing: true}
		files := append(migrationFiles(0, 1, 9), hostfuncs.MigrationFile{Name: c.name, SQL: "SELECT 1;"})
		refused(t, fmt.Sprintf("%q", c.name), p.RegisterMigrations(in, files), c.want)
	}
	// Other characters, spaces and letters of any script, are fine.
	ok := []hostfuncs.MigrationFile{{Name: "001 create items.up.sql", SQL: "SELECT 1;"}, {Name: "002_étiquettes_标签.up.sql", SQL: "SELECT 1;"}}
	if err := p.RegisterMigrations(&hostfuncs.Instance{Initializing: true}, ok); err != nil {
		t.Fatal(err)
	}
}

// A migration whose SQL has a NUL byte is refused when it is registered,
// at the plugin's load, naming the file: SQLite would run its SQL only up
// to the NUL and record the whole file as applied.
func TestRegisterMigrationsNUL(t *testing.T) {
	p := &PluginDB{}
	in := &hostfuncs.Instance{Initializing: true}
	files := append(migrationFiles(0, 1, 9), hostfuncs.MigrationFile{Name: "002_x.up.sql", SQL: "CREATE TABLE a (x int);\x00DROP TABLE a;"})
	refused(t, "a NUL byte", p.RegisterMigrations(in, files), `migration "002_x.up.sql": its SQL has a NUL byte (at byte 23)`)
	in.EndInit()
	if len(p.migrations) != 0 {
		t.Errorf("%d migrations registered, want none", len(p.migrations))
	}
}

// The decoder refuses a request past the limits before it copies it.
func TestDecodeMigrationsLimits(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	enc := func(files []hostfuncs.MigrationFile) []byte {
		b := []byte{byte(len(files)), byte(len(files) >> 8), byte(len(files) >> 16), 0}
		for _, f := range files {
			for _, s := range []string{f.Name, f.SQL} {
				b = append(b, byte(len(s)), byte(len(s)>>8), byte(len(s)>>16), byte(len(s)>>24))
				b = append(b, s...)
			}
		}
		return b
	}
	for name, c := range map[string]struct {
		req  []byte
		want string
	}{
		"count":     {enc(migrationFiles(0, hostfuncs.MaxMigrations+1, 0)), "10001 migrations, more than the 10000"},
		"file size": {enc(migrationFiles(0, 1, hostfuncs.MaxMigrationSQL+1)), "4194305 bytes of SQL, more than the 4194304 (4 MiB)"},
		"total":     {enc(migrationFiles(0, 17, hostfuncs.MaxMigrationSQL)), "migration 17: more than 67108864 bytes of SQL"},
		"name":      {enc([]hostfuncs.MigrationFile{{Name: strings.Repeat("x", 256) + ".up.sql", SQL: "SELECT 1"}}), "a name of 263 bytes, more than the 255"},
	} {
		if _, err := hostfuncs.DecodeMigrations(c.req, 0, 0); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", name, err, c.want)
		}
	}
	if files, err := hostfuncs.DecodeMigrations(enc(migrationFiles(0, 3, 9)), 0, 0); err != nil || len(files) != 3 {
		t.Errorf("3 small migrations: %d, %v", len(files), err)
	}
}
