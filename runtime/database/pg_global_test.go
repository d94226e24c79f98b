package database_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/database"
)

// A plugin cannot create objects that belong to no schema, which would
// outlive its schema and could carry data to other plugins: large objects
// (created, written, read, granted), casts, prepared transactions. The
// runtime refuses each statement with ErrDenied saying what it refused;
// the server refuses the other such commands for lack of privilege; and
// with a superuser as the runtime's user (as here), PUBLIC cannot execute
// the functions that create large objects, so a DO block cannot either.
// Statements that merely mention these names run.
func TestPGHostileGlobalObjects(t *testing.T) {
	in := start(t, backends[1].conf(t), plugin("alpha", true, "good", ""), plugin("beta", true, "good", ""))
	rt := in.RT.Database().DB().DB
	// A large object another application of the database made readable
	// by every role.
	var shared uint32
	if err := rt.QueryRow("SELECT lo_from_bytea(0, 'shared secret')").Scan(&shared); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Exec(fmt.Sprintf("GRANT SELECT ON LARGE OBJECT %d TO PUBLIC", shared)); err != nil {
		t.Fatal(err)
	}
	must(t, in, "alpha", exec("CREATE TYPE mytype AS (a int)"),
		exec("CREATE FUNCTION f(mytype) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$"),
		exec("CREATE FUNCTION et() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$"))
	refusedByFilter := map[string]string{
		"SELECT lo_from_bytea(0, 'data'::bytea)":                                            "lo_from_bytea",
		"SELECT lo_create(424242)":                                                          "lo_create",
		"SELECT lo_creat(-1)":                                                               "lo_creat",
		"SELECT lo_import('/etc/passwd')":                                                   "lo_import",
		"SELECT pg_catalog.lo_create(424242)":                                               "lo_create",
		`SELECT "lo_create"(424242)`:                                                        "lo_create",
		"SELECT LO_CREATE /* c */ (424242)":                                                 "lo_create",
		fmt.Sprintf("SELECT lo_get(%d)", shared):                                            "lo_get",
		fmt.Sprintf("SELECT lo_put(%d, 0, 'x')", shared):                                    "lo_put",
		fmt.Sprintf("SELECT lo_unlink(%d)", shared):                                         "lo_unlink",
		fmt.Sprintf("SELECT loread(lo_open(%d, 262144), 100)", shared):                      "lo",
		fmt.Sprintf("GRANT SELECT ON LARGE OBJECT %d TO PUBLIC", shared):                    "GRANT ... ON LARGE OBJECT",
		fmt.Sprintf("ALTER LARGE OBJECT %d OWNER TO CURRENT_USER", shared):                  "ALTER LARGE OBJECT",
		fmt.Sprintf("COMMENT ON LARGE OBJECT %d IS 'x'", shared):                            "COMMENT ... ON LARGE OBJECT",
		"ALTER DEFAULT PRIVILEGES GRANT SELECT ON LARGE OBJECTS TO PUBLIC":                  "ON LARGE OBJECT",
		"CREATE OPERATOR ### (LEFTARG = oid, RIGHTARG = bytea, FUNCTION = lo_from_bytea)":   "lo_from_bytea",
		"CREATE OPERATOR ### (LEFTARG = oid, RIGHTARG = bytea, FUNCTION = 'lo_from_bytea')": "CREATE OPERATOR with a function named by a string",
		"CREATE AGGREGATE lagg(bytea) (SFUNC = lo_from_bytea, STYPE = oid, INITCOND = '0')": "lo_from_bytea",
		"CREATE CAST (mytype AS text) WITH FUNCTION f(mytype)":                              "CREATE CAST",
		"DROP CAST IF EXISTS (mytype AS text)":                                              "DROP CAST",
		"BEGIN; PREPARE TRANSACTION 'greenroom'":                                            "PREPARE TRANSACTION",
		"SELECT pg_advisory_lock(424242)":                                                   "pg_advisory_lock",
		"SELECT pg_try_advisory_lock_shared(1, 2)":                                          "pg_try_advisory_lock_shared",
	}
	for sql, what := range refusedByFilter {
		for _, op := range []string{"exec", "query"} {
			r := run(t, in, "alpha", step{Op: op, SQL: sql})[0]
			if r.Kind != "denied" || !strings.Contains(r.Error, "statement refused") || !strings.Contains(r.Error, what) {
				t.Errorf("%s %q: got %s %q, want denied naming %s", op, sql, r.Kind, r.Error, what)
			}
		}
	}
	// What the server refuses: superuser only, or a privilege the role
	// lacks (CREATE on the database, ownership), or nothing to use.
	refusedByServer := []string{
		"CREATE ACCESS METHOD evil TYPE TABLE HANDLER heap_tableam_handler",
		"CREATE EVENT TRIGGER evil ON ddl_command_start EXECUTE FUNCTION et()",
		"CREATE PUBLICATION evil FOR TABLE notes",
		"CREATE PUBLICATION evil FOR ALL TABLES",
		"CREATE SUBSCRIPTION evil CONNECTION 'dbname=x' PUBLICATION p WITH (connect = false)",
		"CREATE OPERATOR FAMILY evil USING btree",
		"CREATE OPERATOR CLASS evil FOR TYPE mytype USING btree AS STORAGE mytype",
		"CREATE COLLATION public.evil (locale = 'C')",
		"CREATE COLLATION plugin_beta.evil (locale = 'C')",
		"CREATE TRANSFORM FOR mytype LANGUAGE sql (FROM SQL WITH FUNCTION textlike_support(internal))",
		"CREATE TEXT SEARCH PARSER evil (START = prsd_start, GETTOKEN = prsd_nexttoken, END = prsd_end, LEXTYPES = prsd_lextype)",
		"CREATE TABLESPACE evil LOCATION '/tmp'",
		"CREATE LANGUAGE evil HANDLER plpgsql_call_handler",
		"SECURITY LABEL ON TABLE notes IS 'x'",
		"COMMENT ON DATABASE " + dbName(t, in) + " IS 'x'",
		"COMMENT ON ROLE " + database.RoleName(dbName(t, in), "alpha") + " IS 'x'",
		"COMMENT ON SCHEMA plugin_beta IS 'x'",
		// code the filter does not read: the role may not execute the
		// functions that create large objects
		"DO $$ BEGIN PERFORM lo_create(434343); END $$",
		"DO $$ BEGIN PERFORM lo_from_bytea(0, 'x'); END $$",
		"SELECT query_to_xml('SELECT lo_creat(-1)', true, false, '')",
		// nor the functions that take advisory locks, of which one
		// statement can take enough to fill the server's lock table (no
		// session of any database could connect), and which a pooled
		// connection would hold past the request (session-level ones)
		"DO $$ BEGIN PERFORM pg_advisory_lock(424242); END $$",
		"DO $$ BEGIN PERFORM count(pg_advisory_xact_lock(g)) FROM generate_series(1, 100) g; END $$",
		"DO $$ BEGIN PERFORM pg_try_advisory_xact_lock(1, 2); END $$",
		"DO $$ BEGIN PERFORM pg_advisory_xact_lock_shared(1); END $$",
		"SELECT query_to_xml('SELECT pg_try_advisory_xact_lock_shared(1)', true, false, '')",
		"DO $$ BEGIN PERFORM pg_try_advisory_lock(1, 2); END $$",
		"DO $$ BEGIN PERFORM pg_advisory_lock_shared(424242); END $$",
		"SELECT query_to_xml('SELECT pg_try_advisory_lock_shared(1)', true, false, '')",
	}
	for _, sql := range refusedByServer {
		r := run(t, in, "alpha", exec(sql))[0]
		t.Logf("%s: %s %s", sql, r.Kind, r.Error)
		if r.Error == "" {
			t.Errorf("%q was not refused", sql)
		}
		if strings.HasPrefix(sql, "DO") && (r.Kind != "denied" || !strings.Contains(r.Error, "permission denied for function")) {
			t.Errorf("%q: got %s %q, want permission denied", sql, r.Kind, r.Error)
		}
	}
	// Nothing was made outside alpha's schema, and the shared large object
	// is as it was.
	var objects, casts, prepared int
	var data string
	if err := rt.QueryRow(`SELECT (SELECT count(*) FROM pg_largeobject_metadata),
		(SELECT count(*) FROM pg_cast c JOIN pg_type t ON t.oid = c.castsource WHERE t.typname = 'mytype'),
		(SELECT count(*) FROM pg_prepared_xacts), convert_from(lo_get($1), 'UTF8')`, shared).Scan(&objects, &casts, &prepared, &data); err != nil {
		t.Fatal(err)
	}
	if objects != 1 || casts != 0 || prepared != 0 || data != "shared secret" {
		t.Errorf("after the attacks: %d large objects (want 1), %d casts of alpha's type, %d prepared transactions, shared object %q", objects, casts, prepared, data)
	}
	for _, kind := range []string{"pg_am WHERE amname", "pg_event_trigger WHERE evtname", "pg_publication WHERE pubname", "pg_opfamily WHERE opfname", "pg_collation WHERE collname", "pg_ts_parser WHERE prsname"} {
		var n int
		if err := rt.QueryRow("SELECT count(*) FROM " + kind + " = 'evil'").Scan(&n); err != nil || n != 0 {
			t.Errorf("%s = 'evil': %d %v", kind, n, err)
		}
	}
	// Names and literals that merely contain the words run.
	r := must(t, in, "alpha",
		exec("CREATE TABLE files (id int, lo_create_at timestamptz, lo_id oid, cast_count int)"),
		exec("INSERT INTO files (id, lo_create_at) VALUES (1, now())"),
		query("SELECT id, lo_create_at IS NOT NULL, 'create cast', 'lo_create(1)' FROM files -- lo_create(2)"),
		query("SELECT CAST(id AS text), id::text FROM files"),
		exec("COMMENT ON TABLE files IS 'large objects: GRANT SELECT ON LARGE OBJECT 1 TO PUBLIC'"),
		exec("CREATE COLLATION mine (locale = 'C')"),
		exec("CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq)"),
		query("SELECT 1 === 1"),
		exec("PREPARE transaction AS SELECT 1"),
	)
	if got := fmt.Sprint(r[2].Rows, r[7].Rows); got != "[[1 true create cast lo_create(1)]] [[true]]" {
		t.Errorf("allowed statements returned %s", got)
	}
	if log := in.Log.String(); !strings.Contains(log, "revoked EXECUTE from PUBLIC") || !strings.Contains(log, "pg_catalog.lo_create(oid)") || !strings.Contains(log, "pg_catalog.pg_try_advisory_lock_shared(integer, integer)") || !strings.Contains(log, "pg_catalog.pg_try_advisory_xact_lock_shared(integer, integer)") {
		t.Error("the runtime did not say it revoked EXECUTE on the large object and advisory lock functions")
	}
	// Unlocking takes no slot and is not refused.
	must(t, in, "alpha", query("SELECT pg_advisory_unlock_all()"))
}
