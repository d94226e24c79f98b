-- A connection setting a migration changes: it must not reach the
-- plugin's pooled connections.
PRAGMA recursive_triggers = 1;
CREATE TABLE s (x INTEGER);
