-- Written to run unchanged on SQLite and PostgreSQL: ids come from the
-- plugin, not from an autoincrement, whose syntax differs.
CREATE TABLE items (
    id         BIGINT PRIMARY KEY,
    title      TEXT NOT NULL,
    done       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE INDEX items_created ON items (created_at, id);
