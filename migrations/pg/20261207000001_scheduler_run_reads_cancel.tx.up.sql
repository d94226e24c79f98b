-- reads_cancel: the replica that wrote this run's row reads cancel
-- requests (cancel_requested_at) while the run lasts. Replicas
-- from before this migration leave it NULL: during a rolling upgrade a
-- cancel sent through a newer replica for a run on an older one, which
-- would never read it, is refused (409) rather than recorded and
-- answered as requested.
ALTER TABLE scheduler_runs ADD COLUMN reads_cancel boolean;
