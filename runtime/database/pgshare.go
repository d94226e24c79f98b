package database

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"
)

// A plugin's role owns its schema and everything in it, and an owner may
// grant what it owns: to PUBLIC, which every other plugin's role is a
// member of, or to another plugin's role by name. A plugin that did would
// let other plugins read or write its data, create objects in its schema,
// or read its columns' statistics through pg_stats. Three things keep
// what a plugin owns its own:
//   - the statement filter refuses GRANT in every form and ALTER DEFAULT
//     PRIVILEGES (deniedSharing, in session.go);
//   - where the runtime's user is a superuser, an event trigger refuses
//     them from code the filter does not read (a DO block, a function's
//     body) to every session of a plugin role (refusePluginGrants);
//   - whenever the runtime provisions a plugin's role (each start, each
//     replica, each reload that adds the plugin), it revokes whatever the
//     role's schema and objects grant to other roles, and the role's
//     default privileges for others (revokeShared): what a plugin shared
//     before these checks existed, or from a DO block where the runtime
//     is not a superuser, is taken back.

// grantTrigger is the event trigger that refuses GRANT and ALTER DEFAULT
// PRIVILEGES to plugin roles, and grantTriggerFunc its function, in the
// runtime's schema.
const (
	grantTrigger     = "greenroom_plugin_grants"
	grantTriggerFunc = RuntimeSchema + ".refuse_plugin_grants"
)

// refusePluginGrants creates (or replaces) the event trigger that refuses
// GRANT and ALTER DEFAULT PRIVILEGES to any session that logged in as one
// of this database's plugin roles (RolePrefix: session_user, which no
// SECURITY DEFINER function or SET ROLE changes). Only a superuser may
// create an event trigger; the caller checks. It runs at Open, under the
// runtime's lock.
func (b *pgBackend) refusePluginGrants(ctx context.Context, db *bun.DB) error {
	prefix := RolePrefix(b.dbname) // [a-z0-9_]: a plain literal
	// Its own search_path, and every name qualified: it runs in the
	// plugin's session, whose search_path (a function's SET, set_config
	// in a DO block) could otherwise put the plugin's own left or = first.
	fn := `CREATE OR REPLACE FUNCTION ` + grantTriggerFunc + `() RETURNS event_trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $greenroom$
BEGIN
	IF pg_catalog.left(pg_catalog.text(session_user), ` + fmt.Sprint(len(prefix)) + `) OPERATOR(pg_catalog.=) '` + prefix + `'::pg_catalog.text THEN
		RAISE EXCEPTION 'plugins cannot run % (a plugin''s objects are its own: a grant to PUBLIC or to another role would let other plugins read or write them)', tg_tag
			USING ERRCODE = 'insufficient_privilege';
	END IF;
END
$greenroom$`
	if err := execCatalog(ctx, db, fn); err != nil {
		return fmt.Errorf("create function %s: %w", grantTriggerFunc, err)
	}
	var exists bool
	if err := db.DB.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = $1)", grantTrigger).Scan(&exists); err != nil {
		return fmt.Errorf("look up event trigger %s: %w", grantTrigger, err)
	}
	if !exists {
		stmt := "CREATE EVENT TRIGGER " + grantTrigger + " ON ddl_command_start WHEN TAG IN ('GRANT', 'ALTER DEFAULT PRIVILEGES') EXECUTE PROCEDURE " + grantTriggerFunc + "()"
		if err := execCatalog(ctx, db, stmt); err != nil {
			return fmt.Errorf("create event trigger %s: %w", grantTrigger, err)
		}
	}
	// An operator may have disabled it (ALTER EVENT TRIGGER ... DISABLE);
	// the runtime's isolation needs it.
	if err := execCatalog(ctx, db, "ALTER EVENT TRIGGER "+grantTrigger+" ENABLE"); err != nil {
		return fmt.Errorf("enable event trigger %s: %w", grantTrigger, err)
	}
	return nil
}

// sharedGrants lists, as the statements that revoke them, the privileges
// that plugin role $2 gave other roles (or PUBLIC) on its schema $1 and on
// what is in it (tables and their columns, views, sequences, routines,
// types, standalone composite types included), and its default
// privileges for other roles, each once. Revoking a table's privileges
// revokes its columns' too; CASCADE also revokes what a grantee passed on
// with a grant option (without it the REVOKE fails, and the plugin would
// not load).
const sharedGrants = `
WITH s AS (SELECT oid FROM pg_namespace WHERE nspname = $1),
r AS (SELECT oid FROM pg_roles WHERE rolname = $2),
g AS (
	SELECT 'SCHEMA ' || quote_ident(n.nspname) AS obj, a.grantee
		FROM s JOIN pg_namespace n ON n.oid = s.oid, aclexplode(n.nspacl) a WHERE a.grantee <> n.nspowner
	UNION SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END || c.oid::regclass::text, a.grantee
		FROM s JOIN pg_class c ON c.relnamespace = s.oid, aclexplode(c.relacl) a
		WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND a.grantee <> c.relowner
	UNION SELECT 'TABLE ' || c.oid::regclass::text, a.grantee
		FROM s JOIN pg_class c ON c.relnamespace = s.oid JOIN pg_attribute t ON t.attrelid = c.oid, aclexplode(t.attacl) a
		WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.grantee <> c.relowner
	UNION SELECT 'ROUTINE ' || p.oid::regprocedure::text, a.grantee
		FROM s JOIN pg_proc p ON p.pronamespace = s.oid, aclexplode(p.proacl) a WHERE a.grantee <> p.proowner
	UNION SELECT 'TYPE ' || y.oid::regtype::text, a.grantee
		FROM s JOIN pg_type y ON y.typnamespace = s.oid, aclexplode(y.typacl) a
		WHERE y.typtype IN ('b', 'c', 'd', 'e', 'r', 'm') AND a.grantee <> y.typowner
		AND (y.typrelid = 0 OR EXISTS (SELECT 1 FROM pg_class k WHERE k.oid = y.typrelid AND k.relkind = 'c'))
)
SELECT 'REVOKE ALL ON ' || obj || ' FROM ' || CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(grantee)) END || ' CASCADE' FROM g
UNION
SELECT DISTINCT 'ALTER DEFAULT PRIVILEGES FOR ROLE ' || quote_ident($2)
	|| CASE WHEN d.defaclnamespace <> 0 THEN ' IN SCHEMA ' || d.defaclnamespace::regnamespace::text ELSE '' END
	|| ' REVOKE ALL ON ' || CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' ELSE 'LARGE OBJECTS' END
	|| ' FROM ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END || ' CASCADE'
	FROM r JOIN pg_default_acl d ON d.defaclrole = r.oid, aclexplode(d.defaclacl) a WHERE a.grantee <> r.oid`

// revokeShared takes back what plugin role role shared from its schema
// (sharedGrants), as the runtime's user (a superuser, or a member of the
// role, which may revoke what the role granted). Nothing is run when it
// shared nothing. It fails rather than let a plugin load with its data
// shared. The caller holds the plugin's lock.
func (b *pgBackend) revokeShared(ctx context.Context, db *bun.DB, role, schema string) error {
	rows, err := db.DB.QueryContext(ctx, sharedGrants, schema, role)
	if err != nil {
		return fmt.Errorf("look up what role %s shared from schema %s: %w", role, schema, err)
	}
	var stmts []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return fmt.Errorf("look up what role %s shared from schema %s: %w", role, schema, err)
		}
		stmts = append(stmts, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("look up what role %s shared from schema %s: %w", role, schema, err)
	}
	for _, s := range stmts {
		if err := execCatalog(ctx, db, s); err != nil {
			return fmt.Errorf("take back what plugin role %s granted to other roles (%s): %w", role, s, err)
		}
	}
	if len(stmts) > 0 {
		b.log.WithField("role", role).WithField("revoked", len(stmts)).Warnf("plugin role %s had granted other roles privileges on its schema %s or its objects (or default privileges): revoked, so that no other plugin can read or write them", role, pgx.Identifier{schema}.Sanitize())
	}
	return nil
}
