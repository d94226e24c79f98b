-- cancel_requested_at: see the PostgreSQL variant.
ALTER TABLE scheduler_runs ADD COLUMN cancel_requested_at INTEGER;
