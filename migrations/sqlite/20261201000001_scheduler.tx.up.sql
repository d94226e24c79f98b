-- The scheduler's tables (docs/scheduler.md); see the PostgreSQL variant
-- for what each column means. Times are INTEGER Unix microseconds (UTC).

CREATE TABLE scheduler_tasks (
    plugin            TEXT NOT NULL,
    task              TEXT NOT NULL,
    scope             TEXT NOT NULL,
    schedule          TEXT NOT NULL,
    timeout_ms        INTEGER NOT NULL,
    next_run          INTEGER,
    lease_owner       TEXT,
    lease_until       INTEGER,
    run_id            TEXT,
    last_run_id       TEXT,
    last_start        INTEGER,
    last_end          INTEGER,
    last_outcome      TEXT,
    last_failure      TEXT,
    last_error        TEXT,
    last_duration_us  INTEGER,
    last_replica      TEXT,
    registered_at     INTEGER NOT NULL,
    PRIMARY KEY (plugin, task)
);

CREATE TABLE scheduler_runs (
    run_id        TEXT PRIMARY KEY,
    plugin        TEXT NOT NULL,
    task          TEXT NOT NULL,
    replica       TEXT NOT NULL,
    triggered_by  TEXT NOT NULL,
    due_at        INTEGER,
    started_at    INTEGER NOT NULL,
    ended_at      INTEGER,
    outcome       TEXT NOT NULL,
    failure       TEXT,
    error         TEXT,
    duration_us   INTEGER
);

CREATE INDEX scheduler_runs_task ON scheduler_runs (plugin, task, started_at);
