package database_test

import (
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// A plugin whose database connection cannot be opened is told so, with
// the SQLSTATE when the server gave one, and not pgx's text, which names
// the database's host and port, the plugin's role and the database
// ("failed to connect to `user=gr_... database=gr_test_...`: 127.0.0.1:5432
// ..."). The operator's log has it.
func TestConnectErrorNotToGuest(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	admin := pgtest.Admin(t)
	dbconf := "[database]\nclient = \"pg\"\nconnection = \"" + pgtest.URL(t) + "\"\n"
	in := start(t, dbconf, plugin("alpha", true, "good", "db_max_conns = 1"))
	name := dbName(t, in)
	role := database.RoleName(name, "alpha")
	must(t, in, "alpha", query("SELECT 1"))
	ident := pgx.Identifier{role}.Sanitize()
	if _, err := admin.Exec("ALTER ROLE " + ident + " NOLOGIN"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec("ALTER ROLE " + ident + " LOGIN") })
	if _, err := admin.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role); err != nil {
		t.Fatal(err)
	}
	// The pool's connection, ended, may fail one statement first.
	var r result
	for range 3 {
		time.Sleep(1100 * time.Millisecond) // past pgx's ping on reuse
		if r = run(t, in, "alpha", query("SELECT 1"))[0]; strings.Contains(r.Error, "connection") && !strings.Contains(r.Error, "terminat") {
			break
		}
	}
	const want = "greenroom: could not open a database connection (the runtime's log says why) (SQLSTATE 28000)"
	if r.Error != want || r.SQLState != "28000" {
		t.Errorf("the plugin got %q (SQLSTATE %q), want %q", r.Error, r.SQLState, want)
	}
	for _, leak := range []string{role, name, "127.0.0.1", "5432", "user="} {
		if strings.Contains(r.Error, leak) {
			t.Errorf("the plugin's error names %q: %s", leak, r.Error)
		}
	}
	log := in.Log.String()
	if !strings.Contains(log, "the plugin's database connection could not be opened") || !strings.Contains(log, "is not permitted to log in") {
		t.Errorf("the log does not have the reason:\n%s", log)
	}
}
