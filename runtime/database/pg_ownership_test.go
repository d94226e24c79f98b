package database_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/database"
)

// A plugin's role owns its schema and what is in it, and PostgreSQL lets
// an owner rename, move and give away what it owns. None of that may
// reach another plugin: giving its schema or tables to another plugin's
// role (whose data would then sit beside objects the giver made), moving
// a table into another plugin's schema, renaming its schema to the name a
// plugin added later would get (plugin_gamma), taking another role's
// objects (REASSIGN OWNED, DROP OWNED), or reaching another plugin's
// sequence, counters or backends by OID, which every role reads in the
// catalogs. Each is refused by the server (the role is a member of no
// role and has no CREATE on the database), from a statement and from a
// DO block alike; and the whole-database maintenance commands a plugin
// may run (VACUUM, ANALYZE, CLUSTER) touch only its own tables.
func TestPGOwnershipStaysWithThePlugin(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "good", ""), plugin("beta", true, "good", ""))
	db := dbName(t, in)
	betaRole := database.RoleName(db, "beta")
	must(t, in, "beta", exec("INSERT INTO notes (note) VALUES ('beta secret')"), exec("CREATE SEQUENCE bseq"), query("SELECT nextval('bseq')"))
	betaPID := must(t, in, "beta", query("SELECT pg_backend_pid()"))[0].Rows[0][0]
	betaNotes := "(SELECT c.oid FROM pg_class c WHERE c.relname = 'notes' AND c.relnamespace = 'plugin_beta'::regnamespace)"
	hostile := []string{
		"ALTER SCHEMA plugin_alpha RENAME TO plugin_gamma",
		"ALTER SCHEMA plugin_alpha OWNER TO " + betaRole,
		"ALTER TABLE notes OWNER TO " + betaRole,
		"REASSIGN OWNED BY CURRENT_USER TO " + betaRole,
		"REASSIGN OWNED BY " + betaRole + " TO CURRENT_USER",
		"DROP OWNED BY " + betaRole,
		"ALTER TABLE notes SET SCHEMA plugin_beta",
		"CREATE TABLE evil () INHERITS (plugin_beta.notes)",
		"CREATE TABLE evil (LIKE plugin_beta.notes)",
		"REINDEX SCHEMA plugin_beta",
		"REINDEX DATABASE " + db,
		"SELECT pg_sequence_last_value(c.oid) FROM pg_class c WHERE c.relname = 'bseq' AND c.relnamespace = 'plugin_beta'::regnamespace",
		"SELECT pg_stat_reset_single_table_counters(" + betaNotes + ")",
		fmt.Sprintf("SELECT pg_log_backend_memory_contexts(%v)", betaPID),
	}
	for _, q := range hostile {
		do := "DO $$ BEGIN EXECUTE '" + strings.ReplaceAll(q, "'", "''") + "'; END $$"
		if strings.HasPrefix(q, "SELECT") {
			do = "DO $$ BEGIN PERFORM " + strings.TrimPrefix(q, "SELECT ") + "; END $$"
		}
		for _, sql := range []string{q, do} {
			r := run(t, in, "alpha", exec(sql))[0]
			t.Logf("%s: %s %s", sql, r.Kind, r.Error)
			if r.Error == "" {
				t.Errorf("%q was not refused", sql)
			}
		}
	}
	must(t, in, "alpha", exec("VACUUM"), exec("ANALYZE"), exec("CLUSTER"))
	// Everything is where and whose it was.
	rt := in.RT.Database().DB().DB
	var owners string
	if err := rt.QueryRow(`SELECT string_agg(n.nspname || ':' || r.rolname, ' ' ORDER BY n.nspname)
		FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE n.nspname LIKE 'plugin_%'`).Scan(&owners); err != nil {
		t.Fatal(err)
	}
	if want := "plugin_alpha:" + database.RoleName(db, "alpha") + " plugin_beta:" + betaRole; owners != want {
		t.Errorf("schemas and owners: %s, want %s", owners, want)
	}
	var tables string
	if err := rt.QueryRow(`SELECT string_agg(c.relnamespace::regnamespace::text || '.' || c.relname || ':' || c.relowner::regrole::text, ' ' ORDER BY c.relnamespace::regnamespace::text)
		FROM pg_class c WHERE c.relname IN ('notes', 'evil') AND c.relkind = 'r'`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if want := "plugin_alpha.notes:" + database.RoleName(db, "alpha") + " plugin_beta.notes:" + betaRole; tables != want {
		t.Errorf("tables and owners: %s, want %s", tables, want)
	}
	var vacuumed, analyzed int
	if err := rt.QueryRow("SELECT vacuum_count, analyze_count FROM pg_stat_all_tables WHERE relid = "+betaNotes).Scan(&vacuumed, &analyzed); err != nil {
		t.Fatal(err)
	}
	if vacuumed != 0 || analyzed != 0 {
		t.Errorf("alpha's VACUUM and ANALYZE reached beta's table: vacuumed %d, analyzed %d times", vacuumed, analyzed)
	}
	if r := must(t, in, "beta", query("SELECT note FROM notes"), query("SELECT last_value FROM bseq")); fmt.Sprint(r[0].Rows, r[1].Rows) != "[[beta secret]] [[1]]" {
		t.Errorf("beta reads %v %v", r[0].Rows, r[1].Rows)
	}
}

// The plugin cannot lift db_statement_timeout or leave its schema by
// changing the settings its sessions start with: not with SET or
// set_config in the call (the runtime cancels the statement from the
// client side too), nor with role defaults it sets on its own role from a
// DO block (ALTER ROLE CURRENT_USER SET ..., which PostgreSQL allows a
// role), which a new connection would start with were search_path and
// statement_timeout not startup parameters of the runtime's, which take
// precedence over a role's defaults.
func TestPGStatementTimeoutStaysThePlugins(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "good", "db_max_conns = 1\ndb_statement_timeout = \"1s\""))
	sleep := query("SELECT pg_sleep(3)")
	cancelled := func(label string, r result) {
		t.Helper()
		if r.Kind != "timeout" || !strings.Contains(r.Error, "db_statement_timeout of 1s") {
			t.Errorf("%s: pg_sleep(3) got %s %q, want cancelled at db_statement_timeout", label, r.Kind, r.Error)
		}
	}
	for _, lift := range []string{
		"SET statement_timeout = 0",
		"SELECT set_config('statement_timeout', '0', false)",
		"DO $$ BEGIN PERFORM set_config('statement_' || 'timeout', '0', false); END $$",
	} {
		r := run(t, in, "alpha", exec(lift), query("SHOW statement_timeout"), sleep)
		if r[0].Error != "" {
			t.Fatalf("%s: %s", lift, r[0].Error)
		}
		cancelled(lift, r[2])
		r = run(t, in, "alpha", step{Op: "begin"}, exec(strings.ReplaceAll(lift, "false", "true")), sleep, step{Op: "rollback"})
		cancelled(lift+" in a transaction", r[2])
	}
	// Role defaults, then a new connection (the plugin ends its own
	// backend, which PostgreSQL lets a role do).
	pid := must(t, in, "alpha", query("SELECT pg_backend_pid()"))[0].Rows[0][0]
	must(t, in, "alpha", exec(`DO $$ BEGIN
		EXECUTE 'ALTER ROLE ' || quote_ident(current_user) || ' SET statement_timeout = 0';
		EXECUTE 'ALTER ROLE ' || quote_ident(current_user) || ' SET search_path = plugin_beta, public';
	END $$`))
	run(t, in, "alpha", query("SELECT pg_terminate_backend(pg_backend_pid())"))
	r := run(t, in, "alpha", query("SELECT pg_backend_pid(), current_setting('statement_timeout'), current_setting('search_path')"), sleep)
	if r[0].Error != "" || len(r[0].Rows) != 1 {
		t.Fatalf("after the role defaults: %s %v", r[0].Error, r[0].Rows)
	}
	if got := r[0].Rows[0]; got[0] == pid || got[1] != "1s" || got[2] != "plugin_alpha" {
		t.Errorf("a new connection after the role defaults (pid, statement_timeout, search_path): %v, want a new pid than %v, 1s and plugin_alpha", got, pid)
	}
	cancelled("with the role's default statement_timeout = 0", r[1])
}
