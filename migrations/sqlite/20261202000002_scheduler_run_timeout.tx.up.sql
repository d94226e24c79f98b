-- timeout_ms: see the PostgreSQL variant.
ALTER TABLE scheduler_runs ADD COLUMN timeout_ms INTEGER;
