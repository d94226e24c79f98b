-- greenroom's own tables on PostgreSQL. They live in the schema "greenroom"
-- (the runtime's connections use search_path = greenroom); plugin roles have
-- no privilege on it.

-- runtime_secrets holds values every replica must agree on, created once by
-- whichever replica gets there first (INSERT ... ON CONFLICT DO NOTHING).
-- "plugin-role-key" derives the passwords of the plugins' login roles;
-- another row holds the key that signs the notifications announcing a
-- plugin's migration (runtime/database/pgdescribe.go, notifyKeyName).
CREATE TABLE runtime_secrets (
    name       text PRIMARY KEY,
    value      bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- plugin_migrations records every plugin migration applied, per plugin.
CREATE TABLE plugin_migrations (
    plugin     text NOT NULL,
    name       text NOT NULL,
    sha256     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (plugin, name)
);
