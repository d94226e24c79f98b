package database

import (
	"strings"
	"testing"
)

// The statement filter refuses what creates or reaches objects of no
// schema (large objects, casts, prepared transactions), however it is
// written, and lets statements that merely mention them in literals,
// comments or longer names through.
func TestDeniedGlobalObjects(t *testing.T) {
	denied := map[string]string{
		// large objects: creating, writing, reading, by any route
		"SELECT lo_from_bytea(0, 'data'::bytea)":              "lo_from_bytea",
		"SELECT lo_create(424242)":                            "lo_create",
		"select LO_CREAT(-1)":                                 "lo_creat",
		"SELECT lo_import('/etc/passwd')":                     "lo_import",
		"SELECT lo_import('/etc/passwd', 424243)":             "lo_import",
		"SELECT lo_export(19417, '/tmp/x')":                   "lo_export",
		"SELECT pg_catalog.lo_create(424242)":                 "lo_create",
		"SELECT pg_catalog . lo_create (424242)":              "lo_create",
		`SELECT "lo_create"(424242)`:                          "lo_create",
		`SELECT pg_catalog."lo_from_bytea"(0, '\x00')`:        "lo_from_bytea",
		`SELECT U&"lo\005fcreate"(424242)`:                    "lo_create",
		"SELECT lo_create/**/(424242)":                        "lo_create",
		"SELECT lo_create -- c\n(424242)":                     "lo_create",
		"SELECT 1; SELECT lo_create(424242)":                  "lo_create",
		"SELECT lo_put(19417, 0, 'x')":                        "lo_put",
		"SELECT lo_get(19417)":                                "lo_get",
		"SELECT lo_get(19417, 0, 10)":                         "lo_get",
		"SELECT lo_unlink(19417)":                             "lo_unlink",
		"SELECT lo_open(19417, 131072)":                       "lo_open",
		"SELECT lowrite(0, 'x')":                              "lowrite",
		"SELECT loread(0, 10)":                                "loread",
		"SELECT lo_truncate(0, 1)":                            "lo_truncate",
		"SELECT lo_truncate64(0, 1)":                          "lo_truncate64",
		"SELECT lo_lseek64(0, 0, 0), lo_tell64(0)":            "lo_lseek64",
		"SELECT lo_close(0)":                                  "lo_close",
		"EXPLAIN ANALYZE SELECT lo_create(424242)":            "lo_create",
		"WITH x AS (SELECT lo_create(424242)) SELECT 1":       "lo_create",
		"CREATE VIEW v AS SELECT lo_create(424242)":           "lo_create",
		"CREATE TABLE t (id oid DEFAULT lo_creat(-1))":        "lo_creat",
		"CREATE DOMAIN d AS oid CHECK (lo_unlink(VALUE) = 1)": "lo_unlink",
		"CREATE FUNCTION f() RETURNS oid LANGUAGE sql BEGIN ATOMIC SELECT lo_create(0); END": "lo_create",
		// through an operator or an aggregate that names the function
		"CREATE OPERATOR ### (LEFTARG = oid, RIGHTARG = bytea, FUNCTION = lo_from_bytea)":             "lo_from_bytea",
		"CREATE OPERATOR ### (LEFTARG = oid, RIGHTARG = bytea, PROCEDURE = pg_catalog.lo_from_bytea)": "lo_from_bytea",
		"CREATE OPERATOR ### (LEFTARG = oid, RIGHTARG = bytea, FUNCTION = 'lo_from_bytea')":           "CREATE OPERATOR with a function named by a string",
		"create operator ### (rightarg = oid, procedure = E'lo_create')":                              "CREATE OPERATOR with a function named by a string",
		`CREATE OPERATOR public.### (RIGHTARG = oid, FUNCTION = $$lo_create$$)`:                       "CREATE OPERATOR with a function named by a string",
		"CREATE AGGREGATE a(bytea) (SFUNC = lo_from_bytea, STYPE = oid, INITCOND = '0')":              "lo_from_bytea",
		"CREATE AGGREGATE a(bytea) (SFUNC = 'lo_from_bytea', STYPE = oid, INITCOND = '0')":            "CREATE AGGREGATE",
		// privileges and other commands on large objects
		"GRANT SELECT ON LARGE OBJECT 19417 TO PUBLIC":                     "GRANT ... ON LARGE OBJECT",
		"grant all on large object 19417, 19418 to public":                 "GRANT ... ON LARGE OBJECT",
		"REVOKE UPDATE ON LARGE OBJECT 19417 FROM PUBLIC":                  "REVOKE ... ON LARGE OBJECT",
		"ALTER LARGE OBJECT 19417 OWNER TO someone":                        "ALTER LARGE OBJECT",
		"COMMENT ON LARGE OBJECT 19417 IS 'x'":                             "COMMENT ... ON LARGE OBJECT",
		"SECURITY LABEL FOR selinux ON LARGE OBJECT 19417 IS 'x'":          "SECURITY ... ON LARGE OBJECT",
		"ALTER DEFAULT PRIVILEGES GRANT SELECT ON LARGE OBJECTS TO PUBLIC": "ALTER ... ON LARGE OBJECT",
		"/* x */ GRANT SELECT ON /* y */ LARGE -- z\n OBJECT 1 TO PUBLIC":  "GRANT ... ON LARGE OBJECT",
		// casts
		"CREATE CAST (mytype AS text) WITH FUNCTION f(mytype)": "CREATE CAST",
		"create cast (mytype as text) with inout as implicit":  "CREATE CAST",
		`CREATE "cast" (mytype AS text) WITHOUT FUNCTION`:      "CREATE CAST",
		"SELECT 1; CREATE CAST (a AS b) WITH INOUT":            "CREATE CAST",
		"DROP CAST (mytype AS text)":                           "DROP CAST",
		"DROP CAST IF EXISTS (mytype AS text) CASCADE":         "DROP CAST",
		// advisory locks of either level, however named
		"SELECT pg_advisory_lock(1)": "pg_advisory_lock",
		"SELECT count(pg_advisory_lock(g)) FROM generate_series(1, 2000000) g":    "pg_advisory_lock",
		"select PG_TRY_ADVISORY_LOCK(1, 2)":                                       "pg_try_advisory_lock",
		`SELECT pg_catalog."pg_advisory_lock_shared" /* c */ (1)`:                 "pg_advisory_lock_shared",
		"SELECT pg_try_advisory_lock_shared(1)":                                   "pg_try_advisory_lock_shared",
		"CREATE OPERATOR ### (RIGHTARG = bigint, FUNCTION = pg_advisory_lock)":    "pg_advisory_lock",
		"SELECT pg_advisory_xact_lock(1)":                                         "pg_advisory_xact_lock",
		"SELECT count(pg_advisory_xact_lock(g)) FROM generate_series(1, 13380) g": "pg_advisory_xact_lock",
		"SELECT pg_try_advisory_xact_lock_shared(1, 2)":                           "pg_try_advisory_xact_lock_shared",
		`SELECT "pg_advisory_xact_lock_shared"(1)`:                                "pg_advisory_xact_lock_shared",
		"select PG_TRY_ADVISORY_XACT_LOCK(1)":                                     "pg_try_advisory_xact_lock",
		// privileges on the database or a tablespace, which lock its
		// catalog row even when they grant nothing
		"GRANT CONNECT ON DATABASE d TO PUBLIC":            "GRANT ... ON DATABASE",
		"grant all privileges on database \"d\" to public": "GRANT ... ON DATABASE",
		"REVOKE TEMPORARY ON DATABASE d FROM PUBLIC":       "REVOKE ... ON DATABASE",
		"GRANT CREATE ON TABLESPACE pg_default TO PUBLIC":  "GRANT ... ON TABLESPACE",
		// sharing the plugin's own objects with other roles
		"GRANT SELECT ON TABLE large TO PUBLIC":                            "GRANT (a plugin's objects are its own",
		"GRANT SELECT ON database TO PUBLIC":                               "GRANT (",
		`GRANT SELECT ON "database" TO PUBLIC`:                             "GRANT (",
		"GRANT SELECT ON database, other TO PUBLIC":                        "GRANT (",
		"GRANT SELECT ON TABLE database TO PUBLIC":                         "GRANT (",
		"grant usage on schema plugin_a to gr_3cab26ec_b":                  "GRANT (",
		"GRANT SELECT (title), INSERT ON items TO gr_3cab26ec_b":           "GRANT (",
		"GRANT EXECUTE ON FUNCTION f() TO PUBLIC":                          "GRANT (",
		"/* c */ Grant all ON ALL TABLES IN SCHEMA plugin_a TO public":     "GRANT (",
		"SELECT 1; GRANT CREATE ON SCHEMA plugin_a TO PUBLIC":              "GRANT (",
		"ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC":        "ALTER DEFAULT PRIVILEGES (",
		"alter default privileges revoke execute on functions from public": "ALTER DEFAULT PRIVILEGES (",
		// prepared transactions
		"PREPARE TRANSACTION 'x'":                                  "PREPARE TRANSACTION",
		"BEGIN; INSERT INTO t VALUES (1); prepare transaction 'x'": "PREPARE TRANSACTION",
	}
	for q, want := range denied {
		for _, backslashes := range []bool{false, true} {
			if got := deniedCommand(q, backslashes); !strings.Contains(got, want) {
				t.Errorf("%q (backslashes %v): refused as %q, want %q", q, backslashes, got, want)
			}
		}
	}
	allowed := []string{
		// names that contain the words, literals and comments
		"CREATE TABLE files (lo_create_at timestamptz, lo_id oid, loread_count int, cast_id int)",
		"SELECT lo_create_at, my_lo_get FROM files", "SELECT 'create cast', 'lo_create(1)'",
		"SELECT 1 -- lo_create(424242)", "SELECT $$ GRANT SELECT ON LARGE OBJECT 1 TO PUBLIC $$",
		"INSERT INTO notes (note) VALUES ('CREATE CAST (a AS b) WITH INOUT; SELECT lo_from_bytea(0, ''x'')')",
		"SELECT x$lo_create FROM t", "SELECT lo_create$ FROM t",
		// casts are fine, and so are the words large and object
		"SELECT CAST(x AS text), x::int FROM t", "SELECT cast('1' AS int)",
		"CREATE TABLE large (object int)", "SELECT object FROM large", "SELECT large, object FROM t",
		"REVOKE SELECT ON TABLE large FROM PUBLIC", "COMMENT ON TABLE large IS 'large object store'",
		// tables named database and tablespace (ON DATABASE names a database next)
		"REVOKE SELECT ON database FROM PUBLIC", `REVOKE SELECT ON "database" FROM PUBLIC`, "REVOKE ALL ON tablespace FROM PUBLIC",
		"REVOKE SELECT ON database, other FROM PUBLIC",
		"REVOKE SELECT ON database_users FROM PUBLIC", "REVOKE SELECT ON TABLE database FROM PUBLIC",
		// the words grant and privileges as names and in literals
		"SELECT grant_id, privileges FROM grants", "INSERT INTO t (note) VALUES ('GRANT SELECT ON t TO PUBLIC')",
		"UPDATE grants SET privileges = 'all'",
		// operators and aggregates over other functions, by name
		"CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq)",
		"CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq, RESTRICT = eqsel)",
		// unlocking takes no slot of the lock table
		"SELECT pg_advisory_unlock_all()", "SELECT 'pg_advisory_lock(1)'", "SELECT pg_advisory_lock_count FROM t",
		// a prepared statement named transaction
		"PREPARE transaction AS SELECT 1", "PREPARE transaction (int) AS SELECT $1", "EXECUTE transaction",
	}
	for _, q := range allowed {
		if cmd := deniedCommand(q, false); cmd != "" {
			t.Errorf("%q refused as %s", q, cmd)
		}
	}
}
