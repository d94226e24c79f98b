-- timeout_ms is the timeout a local run started with (its replica's
-- registration): a run is declared lost that long (and a grace) after it
-- started, not by the task row's timeout_ms, which the last replica to
-- register wrote (replicas with different limits.timeout, a reload that
-- changed it). NULL for runs that hold the task's lease (they are lost when
-- the lease expires) and for rows written before this column.
ALTER TABLE scheduler_runs ADD COLUMN timeout_ms bigint;
