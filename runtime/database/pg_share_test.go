package database_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/database"
)

// A plugin's role owns its schema, and an owner may grant what it owns:
// to PUBLIC (every other plugin's role) or to another plugin's role. A
// plugin cannot: the statement filter refuses GRANT and ALTER DEFAULT
// PRIVILEGES, an event trigger refuses them from a DO block where the
// runtime is a superuser, and what a role did share (before these checks,
// or from a DO block where the runtime is not a superuser) is revoked
// when the runtime provisions the role again.
func TestPGPluginCannotShareItsObjects(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	for _, mode := range []struct {
		name  string
		conf  func(t *testing.T) string
		super bool
	}{
		{"superuser", func(t *testing.T) string { return backends[1].conf(t) }, true},
		{"createrole", func(t *testing.T) string {
			return fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", createroleURL(t))
		}, false},
	} {
		t.Run(mode.name, func(t *testing.T) {
			conf := mode.conf(t)
			alpha, beta := plugin("alpha", true, "good", ""), plugin("beta", true, "good", "")
			in := start(t, conf, alpha, beta)
			db := dbName(t, in)
			alphaRole, betaRole := database.RoleName(db, "alpha"), database.RoleName(db, "beta")
			must(t, in, "alpha", exec("INSERT INTO notes (note) VALUES ('alpha secret')"),
				exec("CREATE FUNCTION secret() RETURNS text LANGUAGE sql AS $$ SELECT 'alpha function' $$"),
				exec("CREATE SEQUENCE counter"),
				exec(`CREATE TYPE "Pair Q" AS (a int, b text)`))
			betaReads := func(label string, want bool) {
				t.Helper()
				for _, q := range []string{
					"SELECT note FROM plugin_alpha.notes",
					"SELECT most_common_vals::text FROM pg_stats WHERE schemaname = 'plugin_alpha'",
				} {
					r := run(t, in, "beta", query(q))[0]
					got := r.Error == "" && len(r.Rows) > 0
					if got != want {
						t.Errorf("%s: beta's %q: %s %q, rows %v; want readable %v", label, q, r.Kind, r.Error, r.Rows, want)
					}
					if !want {
						break // pg_stats shows nothing then: no error to check
					}
				}
			}
			// By statement: refused by the filter, on both.
			for _, q := range []string{
				"GRANT USAGE ON SCHEMA plugin_alpha TO PUBLIC",
				"GRANT SELECT ON notes TO PUBLIC",
				"GRANT SELECT ON notes TO " + betaRole,
				"GRANT SELECT (note) ON notes TO PUBLIC",
				"ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC",
			} {
				if r := run(t, in, "alpha", exec(q))[0]; r.Kind != "denied" || !strings.Contains(r.Error, "a plugin's objects are its own") {
					t.Errorf("%q: %s %q, want it refused by the statement filter", q, r.Kind, r.Error)
				}
			}
			// From a DO block: refused by the event trigger where the
			// runtime is a superuser; done where it is not (and taken
			// back at the next provisioning, below).
			shares := []string{
				"GRANT USAGE ON SCHEMA plugin_alpha TO PUBLIC",
				"GRANT SELECT ON notes TO " + betaRole,
				"GRANT INSERT (note) ON notes TO PUBLIC",
				"GRANT USAGE ON SEQUENCE counter TO PUBLIC",
				"GRANT EXECUTE ON FUNCTION secret() TO " + betaRole,
				"ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC",
				"ALTER DEFAULT PRIVILEGES IN SCHEMA plugin_alpha GRANT ALL ON SEQUENCES TO " + betaRole,
				`GRANT USAGE ON TYPE "Pair Q" TO ` + betaRole,
				// beta may pass this one on (below): revoking it must
				// take what beta passed on too, or fail
				"GRANT SELECT ON notes TO " + betaRole + " WITH GRANT OPTION",
			}
			for _, q := range shares {
				r := run(t, in, "alpha", exec("DO $$ BEGIN EXECUTE '"+strings.ReplaceAll(q, "'", "''")+"'; END $$"))[0]
				switch {
				case mode.super && (r.Error == "" || !strings.Contains(r.Error, "plugins cannot run")):
					t.Errorf("DO block %q: %s %q, want it refused by the event trigger", q, r.Kind, r.Error)
				case !mode.super && r.Error != "":
					t.Fatalf("DO block %q: %s %q (a CREATEROLE runtime has no event trigger: the grant should be made, to be revoked later)", q, r.Kind, r.Error)
				}
			}
			// The event trigger's check cannot be turned off from the
			// plugin's session: a function of its own named left (or an
			// operator =) first in a function's search_path.
			if mode.super {
				must(t, in, "alpha",
					exec("CREATE FUNCTION plugin_alpha.left(text, integer) RETURNS text LANGUAGE sql AS $$ SELECT 'nope'::text $$"),
					exec("CREATE FUNCTION share() RETURNS void LANGUAGE plpgsql SET search_path = plugin_alpha, pg_catalog AS $$ BEGIN EXECUTE 'GRANT SELECT ON plugin_alpha.notes TO PUBLIC'; END $$"))
				if r := run(t, in, "alpha", query("SELECT share()"))[0]; !strings.Contains(r.Error, "plugins cannot run") {
					t.Errorf("a GRANT with the plugin's own left() first in search_path: %s %q, want it refused by the event trigger", r.Kind, r.Error)
				}
			}
			must(t, in, "alpha", exec("ANALYZE notes"))
			betaReads("after the DO blocks", !mode.super)

			// What alpha's role granted, as if before these checks
			// existed (made by the runtime's user, as the role).
			rt := in.RT.Database().DB().DB
			if mode.super {
				for _, q := range shares {
					q = strings.ReplaceAll(q, " ON notes", " ON plugin_alpha.notes")
					q = strings.ReplaceAll(q, " ON SEQUENCE counter", " ON SEQUENCE plugin_alpha.counter")
					q = strings.ReplaceAll(q, " ON FUNCTION secret()", " ON FUNCTION plugin_alpha.secret()")
					q = strings.ReplaceAll(q, ` ON TYPE "Pair Q"`, ` ON TYPE plugin_alpha."Pair Q"`)
					q = strings.Replace(q, "ALTER DEFAULT PRIVILEGES ", "ALTER DEFAULT PRIVILEGES FOR ROLE "+alphaRole+" ", 1)
					if _, err := rt.Exec(q); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
				betaReads("after the runtime's user granted as alpha", true)
			}
			// beta passes on what it may: to the runtime's user, a role
			// that is not alpha's (a grant to a third plugin's role
			// would do the same).
			if _, err := rt.Exec("SET ROLE " + betaRole + "; GRANT SELECT ON plugin_alpha.notes TO CURRENT_USER; RESET ROLE"); err == nil {
				t.Log("beta passed its grant on")
			} else if _, err := rt.Exec("RESET ROLE"); err != nil {
				t.Fatal(err)
			}

			// Provisioned again: everything alpha's role shared is
			// revoked, and said so.
			again := start(t, conf, alpha, beta)
			in = again
			betaReads("after the roles were provisioned again", false)
			var left int
			if err := rt.QueryRow(`SELECT (SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname = 'plugin_alpha' AND a.grantee <> n.nspowner)
				+ (SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a WHERE c.relnamespace = 'plugin_alpha'::regnamespace AND a.grantee <> c.relowner)
				+ (SELECT count(*) FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid, aclexplode(t.attacl) a WHERE c.relnamespace = 'plugin_alpha'::regnamespace AND a.grantee <> c.relowner)
				+ (SELECT count(*) FROM pg_proc p, aclexplode(p.proacl) a WHERE p.pronamespace = 'plugin_alpha'::regnamespace AND a.grantee <> p.proowner)
				+ (SELECT count(*) FROM pg_type y, aclexplode(y.typacl) a WHERE y.typnamespace = 'plugin_alpha'::regnamespace AND a.grantee <> y.typowner)
				+ (SELECT count(*) FROM pg_default_acl d, aclexplode(d.defaclacl) a WHERE d.defaclrole = $1::regrole AND a.grantee <> d.defaclrole)`, alphaRole).Scan(&left); err != nil {
				t.Fatal(err)
			}
			if left != 0 {
				t.Errorf("%d privileges of alpha's role still granted to other roles", left)
			}
			if !strings.Contains(again.Log.String(), "had granted other roles privileges") {
				t.Error("the revocation was not logged")
			}
			must(t, again, "alpha", query("SELECT note FROM notes"), query("SELECT secret()"), query("SELECT nextval('counter')"))
		})
	}
}
