-- greenroom's own tables on SQLite, in greenroom.db beside the plugins'
-- files (plugins/<id>.db), which plugins cannot reach.

CREATE TABLE runtime_secrets (
    name       TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE plugin_migrations (
    plugin     TEXT NOT NULL,
    name       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (plugin, name)
);
