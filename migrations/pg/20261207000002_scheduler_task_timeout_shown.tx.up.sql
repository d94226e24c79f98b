-- timeout_shown_ms: the timeout_ms the replica that last registered the
-- task may show. NULL when that timeout is the plugin's limits.timeout
-- from the environment (a secret: the task sets none), and in rows written
-- before this column or inserted by a replica from before it. The admin
-- API lists a task that no plugin registers on the replica answering
-- (GET tasks?all=true) with timeout_ms only when it equals this column,
-- and as [REDACTED] otherwise: also once a replica from before this
-- column, which leaves it as it is, has written another timeout_ms.
ALTER TABLE scheduler_tasks ADD COLUMN timeout_shown_ms bigint;
