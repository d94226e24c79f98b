-- timeout_shown_ms: see the PostgreSQL variant.
ALTER TABLE scheduler_tasks ADD COLUMN timeout_shown_ms INTEGER;
