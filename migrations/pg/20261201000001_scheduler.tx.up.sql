-- The scheduler's tables (docs/scheduler.md), in schema "greenroom".

-- scheduler_tasks holds one row per task a plugin registered (rows stay
-- when a plugin stops registering a task: its history is kept). For global
-- tasks, next_run is the next due time and lease_owner/lease_until/run_id
-- say which replica holds the task's lease and for which run; a replica
-- takes the lease with one atomic UPDATE that compares next_run and the
-- lease's expiry against the database's clock. last_* describe the last
-- run that ended, on any replica.
CREATE TABLE scheduler_tasks (
    plugin            text NOT NULL,
    task              text NOT NULL,
    scope             text NOT NULL,
    schedule          text NOT NULL,
    timeout_ms        bigint NOT NULL,
    next_run          timestamptz,
    lease_owner       text,
    lease_until       timestamptz,
    run_id            text,
    last_run_id       text,
    last_start        timestamptz,
    last_end          timestamptz,
    last_outcome      text,
    last_failure      text,
    last_error        text,
    last_duration_us  bigint,
    last_replica      text,
    registered_at     timestamptz NOT NULL,
    PRIMARY KEY (plugin, task)
) WITH (fillfactor = 50); -- room for HOT updates: each run updates its row twice

-- scheduler_runs keeps the last runs of every task (the runtime prunes the
-- older ones): a row is inserted with outcome 'running' when a run starts
-- and completed when it ends; a run whose replica died is marked failed
-- ('lost') once its lease has expired. Run ids start with the time, so
-- new rows go to the end of the primary key.
CREATE TABLE scheduler_runs (
    run_id        text PRIMARY KEY,
    plugin        text NOT NULL,
    task          text NOT NULL,
    replica       text NOT NULL,
    triggered_by  text NOT NULL,
    due_at        timestamptz,
    started_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    outcome       text NOT NULL,
    failure       text,
    error         text,
    duration_us   bigint
) WITH (fillfactor = 80); -- room for the HOT update that completes a run

CREATE INDEX scheduler_runs_task ON scheduler_runs (plugin, task, started_at);
