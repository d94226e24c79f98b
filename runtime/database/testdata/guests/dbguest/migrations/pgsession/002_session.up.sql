-- Session settings a migration changes: they must not reach the plugin's
-- pooled connections.
SET statement_timeout = 0;
SET work_mem = '64MB';
CREATE TABLE s (x int);
