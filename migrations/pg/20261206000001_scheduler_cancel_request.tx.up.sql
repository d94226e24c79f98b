-- cancel_requested_at: an operator asked, through a replica other than the
-- one running it (POST .../cancel), that this run stop. The replica running
-- it reads it every 500 ms at most (a third of the lease when shorter; the
-- lease renewal reads it too) and cancels the run. On the
-- run's row, so that it names that run alone: a later run of the task has
-- a row of its own, and a run that has ended is not running to be stopped.
ALTER TABLE scheduler_runs ADD COLUMN cancel_requested_at timestamptz;
