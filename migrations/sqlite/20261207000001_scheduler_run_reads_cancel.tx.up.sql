-- reads_cancel: see the PostgreSQL variant (1 or NULL).
ALTER TABLE scheduler_runs ADD COLUMN reads_cancel INTEGER;
