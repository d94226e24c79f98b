-- Written to run unchanged on SQLite and PostgreSQL (see plugins/todo).
-- The latest copy of the document: at most one row, id 1.
CREATE TABLE copy (
    id            INTEGER PRIMARY KEY,
    url           TEXT NOT NULL,
    body          BYTEA NOT NULL,
    content_type  TEXT NOT NULL,
    etag          TEXT NOT NULL,
    last_modified TIMESTAMP,
    fetched_at    TIMESTAMP NOT NULL,
    checked_at    TIMESTAMP NOT NULL
);

-- Every fetch attempt, the newest kept (the plugin prunes to 100); ids
-- count up, so fetches within one clock tick keep their order.
CREATE TABLE fetches (
    id          BIGINT PRIMARY KEY,
    at          TIMESTAMP NOT NULL,
    outcome     TEXT NOT NULL,
    status      INTEGER NOT NULL,
    etag        TEXT NOT NULL,
    bytes       BIGINT NOT NULL,
    error       TEXT NOT NULL,
    duration_ms BIGINT NOT NULL
);

CREATE INDEX fetches_at ON fetches (at, id);
