package scheduler

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
)

// pgStore keeps the scheduler's state on PostgreSQL. Arrays travel as
// statement parameters (pgx encodes Go slices), so a batch of any size is
// one statement. Rows of scheduler_tasks are always locked before rows of
// scheduler_runs, and batches lock tasks in (plugin, task) order or skip
// locked ones, so statements of different replicas never deadlock.
type pgStore struct {
	db *sql.DB
}

var _ store = (*pgStore)(nil)

func micros(d time.Duration) int64 { return d.Microseconds() }

func (s *pgStore) register(ctx context.Context, regs []registration) ([]time.Time, error) {
	n := len(regs)
	plugins, tasks, scopes, scheds := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	timeouts, nexts, secrets := make([]int64, n), make([]time.Time, n), make([]bool, n)
	for i, r := range regs {
		plugins[i], tasks[i], scopes[i], scheds[i] = r.task.Plugin, r.task.ID, string(r.task.Scope), r.task.Schedule()
		timeouts[i], nexts[i], secrets[i] = r.task.Timeout.Milliseconds(), r.next, r.task.TimeoutSecret
	}
	rows, err := s.db.QueryContext(ctx, `
INSERT INTO scheduler_tasks AS t (plugin, task, scope, schedule, timeout_ms, timeout_shown_ms, next_run, registered_at)
SELECT i.plugin, i.task, i.scope, i.schedule, i.timeout_ms, CASE WHEN NOT i.secret THEN i.timeout_ms END,
    CASE WHEN i.scope = 'global' THEN i.next END, now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[], $7::boolean[])
    AS i(plugin, task, scope, schedule, timeout_ms, next, secret)
ORDER BY i.plugin, i.task
ON CONFLICT (plugin, task) DO UPDATE SET
    next_run = CASE WHEN t.schedule <> excluded.schedule OR t.scope <> excluded.scope OR t.next_run IS NULL
                    THEN excluded.next_run
                    -- The clock was stepped back (the last run began
                    -- after now): the first due time from now.
                    WHEN t.last_start > now() + interval '1 second' AND excluded.next_run < t.next_run
                         AND (t.run_id IS NULL OR t.lease_until < now())
                    THEN excluded.next_run
                    ELSE t.next_run END,
    scope = excluded.scope, schedule = excluded.schedule, timeout_ms = excluded.timeout_ms,
    timeout_shown_ms = excluded.timeout_shown_ms, registered_at = excluded.registered_at
RETURNING t.plugin, t.task, t.next_run`, plugins, tasks, scopes, scheds, timeouts, nexts, secrets)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	got := map[[2]string]time.Time{}
	for rows.Next() {
		var p, t string
		var next time.Time
		if err := rows.Scan(&p, &t, dbTime{&next}); err != nil {
			return nil, err
		}
		got[[2]string{p, t}] = next
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]time.Time, n)
	for i, r := range regs {
		out[i] = got[[2]string{r.task.Plugin, r.task.ID}]
	}
	return out, nil
}

func (s *pgStore) claim(ctx context.Context, replica string, lease time.Duration, items []claimItem) ([]claimResult, error) {
	n := len(items)
	plugins, tasks, runIDs := make([]string, n), make([]string, n), make([]string, n)
	dues, manual, rescues := make([]time.Time, n), make([]bool, n), make([]string, n)
	for i, it := range items {
		plugins[i], tasks[i], runIDs[i] = it.plugin, it.task, it.runID
		dues[i], manual[i], rescues[i] = it.due, it.manual, it.rescues
	}
	rows, err := s.db.QueryContext(ctx, `
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::bool[], $9::text[])
        AS i(plugin, task, due, run_id, manual, rescues)
), cand AS (
    SELECT t.plugin, t.task, t.run_id AS old_run,
           (t.lease_owner = $6 AND t.run_id = i.run_id) IS TRUE AS own
    FROM scheduler_tasks t JOIN input i ON t.plugin = i.plugin AND t.task = i.task
    WHERE ((i.manual AND (i.rescues = '' OR t.run_id = i.rescues) OR t.next_run = i.due)
           AND (t.lease_until IS NULL OR t.lease_until < now()))
       OR (t.lease_owner = $6 AND t.run_id = i.run_id)
    FOR UPDATE OF t SKIP LOCKED
), upd AS (
    UPDATE scheduler_tasks t
    SET lease_owner = $6, lease_until = now() + $7::bigint * interval '1 microsecond', run_id = i.run_id,
        `+lastLost("lo", "now()", "$8")+`
    FROM cand c JOIN input i ON i.plugin = c.plugin AND i.task = c.task
        LEFT JOIN scheduler_runs lo ON lo.run_id = c.old_run AND lo.outcome = 'running' AND NOT c.own
    WHERE t.plugin = c.plugin AND t.task = c.task
    RETURNING t.plugin, t.task, c.own
), lost AS (
    UPDATE scheduler_runs r
    SET outcome = 'failed', failure = 'lost', ended_at = now(), error = $8
    FROM cand c
    WHERE r.run_id = c.old_run AND r.outcome = 'running' AND NOT c.own
), ins AS (
    INSERT INTO scheduler_runs (run_id, plugin, task, replica, triggered_by, due_at, started_at, outcome, reads_cancel)
    SELECT i.run_id, i.plugin, i.task, $6, CASE WHEN i.manual THEN 'manual' ELSE 'schedule' END,
           CASE WHEN i.manual THEN NULL ELSE i.due END,
           CASE WHEN i.manual THEN now() ELSE GREATEST(now(), i.due) END, 'running', true
    FROM upd u JOIN input i ON i.plugin = u.plugin AND i.task = u.task
    WHERE NOT u.own
)
SELECT i.plugin, i.task, u.task IS NOT NULL, t.plugin IS NOT NULL, t.next_run,
       COALESCE(t.lease_until >= now(), false), COALESCE(t.lease_owner, ''),
       COALESCE(t.lease_until >= now() AND hr.started_at > now(), false),
       now()
FROM input i
LEFT JOIN upd u ON u.plugin = i.plugin AND u.task = i.task
LEFT JOIN scheduler_tasks t ON t.plugin = i.plugin AND t.task = i.task
LEFT JOIN scheduler_runs hr ON hr.run_id = t.run_id`,
		plugins, tasks, dues, runIDs, manual, replica, micros(lease), lostMessage, rescues)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	got := make(map[[2]string]claimResult, n)
	for rows.Next() {
		var p, t string
		var r claimResult
		if err := rows.Scan(&p, &t, &r.claimed, &r.exists, dbTime{&r.nextRun}, &r.held, &r.holder, &r.ahead, dbTime{&r.dbNow}); err != nil {
			return nil, err
		}
		got[[2]string{p, t}] = r
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]claimResult, n)
	for i, it := range items {
		out[i] = got[[2]string{it.plugin, it.task}]
	}
	return out, nil
}

func (s *pgStore) unclaim(ctx context.Context, replica string, u unclaimItem) error {
	_, err := s.db.ExecContext(ctx, `
WITH t AS (
    UPDATE scheduler_tasks
    SET lease_owner = NULL, lease_until = NULL, run_id = NULL
    WHERE plugin = $1 AND task = $2 AND run_id = $3 AND lease_owner = $4
    RETURNING 1
)
DELETE FROM scheduler_runs WHERE run_id = $3 AND outcome = 'running' AND EXISTS (SELECT 1 FROM t)`,
		u.plugin, u.task, u.runID, replica)
	return err
}

func (s *pgStore) start(ctx context.Context, replica string, sts []localStart) error {
	n := len(sts)
	runIDs, plugins, tasks, triggers := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	dues, timeouts := make([]*time.Time, n), make([]int64, n)
	for i, st := range sts {
		runIDs[i], plugins[i], tasks[i], triggers[i], timeouts[i] = st.runID, st.plugin, st.task, "schedule", st.timeout.Milliseconds()
		if st.manual {
			triggers[i] = "manual"
		} else {
			dues[i] = &st.due
		}
	}
	_, err := s.db.ExecContext(ctx, `
INSERT INTO scheduler_runs (run_id, plugin, task, replica, triggered_by, due_at, started_at, outcome, timeout_ms, reads_cancel)
SELECT i.run_id, i.plugin, i.task, $5, i.trigger, i.due, now(), 'running', i.timeout_ms, true
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $6::timestamptz[], $7::bigint[])
    AS i(run_id, plugin, task, trigger, due, timeout_ms)`, runIDs, plugins, tasks, triggers, replica, dues, timeouts)
	return err
}

func (s *pgStore) finish(ctx context.Context, fs []finishItem) error {
	n := len(fs)
	runIDs, plugins, tasks := make([]string, n), make([]string, n), make([]string, n)
	outcomes, failures, errs, durs := make([]string, n), make([]string, n), make([]string, n), make([]int64, n)
	dues, nexts := make([]*time.Time, n), make([]*time.Time, n)
	for i, f := range fs {
		runIDs[i], plugins[i], tasks[i] = f.runID, f.plugin, f.task
		outcomes[i], failures[i], errs[i], durs[i] = f.outcome, f.failure, f.err, micros(f.duration)
		if !f.next.IsZero() {
			dues[i], nexts[i] = &f.due, &f.next
		}
	}
	return inTx(ctx, s.db, func(tx *sql.Tx) error {
		// Tasks first, in order: see pgStore.
		if _, err := tx.ExecContext(ctx, `
SELECT 1 FROM scheduler_tasks t
JOIN unnest($1::text[], $2::text[]) AS i(plugin, task) ON t.plugin = i.plugin AND t.task = i.task
ORDER BY t.plugin, t.task
FOR UPDATE OF t`, plugins, tasks); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `
WITH f AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[],
                         $8::timestamptz[], $9::timestamptz[])
        AS f(run_id, plugin, task, outcome, failure, error, duration_us, due, next)
), r AS (
    UPDATE scheduler_runs r
    SET ended_at = now(), outcome = f.outcome, failure = NULLIF(f.failure, ''), error = NULLIF(f.error, ''),
        duration_us = f.duration_us
    FROM f
    WHERE r.run_id = f.run_id AND r.outcome = 'running'
    RETURNING r.run_id, r.started_at, r.ended_at, r.replica
)
UPDATE scheduler_tasks t
SET next_run    = CASE WHEN t.run_id = f.run_id AND t.next_run = f.due THEN f.next ELSE t.next_run END,
    lease_owner = CASE WHEN t.run_id = f.run_id THEN NULL ELSE t.lease_owner END,
    lease_until = CASE WHEN t.run_id = f.run_id THEN NULL ELSE t.lease_until END,
    run_id      = CASE WHEN t.run_id = f.run_id THEN NULL ELSE t.run_id END,
    last_run_id      = CASE WHEN r.run_id IS NULL THEN t.last_run_id ELSE f.run_id END,
    last_start       = CASE WHEN r.run_id IS NULL THEN t.last_start ELSE r.started_at END,
    last_end         = CASE WHEN r.run_id IS NULL THEN t.last_end ELSE r.ended_at END,
    last_outcome     = CASE WHEN r.run_id IS NULL THEN t.last_outcome ELSE f.outcome END,
    last_failure     = CASE WHEN r.run_id IS NULL THEN t.last_failure ELSE NULLIF(f.failure, '') END,
    last_error       = CASE WHEN r.run_id IS NULL THEN t.last_error ELSE NULLIF(f.error, '') END,
    last_duration_us = CASE WHEN r.run_id IS NULL THEN t.last_duration_us ELSE f.duration_us END,
    last_replica     = CASE WHEN r.run_id IS NULL THEN t.last_replica ELSE r.replica END
FROM f LEFT JOIN r ON r.run_id = f.run_id
WHERE t.plugin = f.plugin AND t.task = f.task`, runIDs, plugins, tasks, outcomes, failures, errs, durs, dues, nexts)
		return err
	})
}

func (s *pgStore) renew(ctx context.Context, replica string, lease time.Duration, runIDs []string) (map[string]bool, error) {
	rows, err := s.db.QueryContext(ctx, `
WITH l AS (
    SELECT plugin, task FROM scheduler_tasks
    WHERE lease_owner = $1 AND run_id = ANY($2::text[])
    ORDER BY plugin, task
    FOR UPDATE
)
UPDATE scheduler_tasks t SET lease_until = now() + $3::bigint * interval '1 microsecond'
FROM l WHERE t.plugin = l.plugin AND t.task = l.task
RETURNING t.run_id,
    EXISTS (SELECT 1 FROM scheduler_runs r WHERE r.run_id = t.run_id AND r.cancel_requested_at IS NOT NULL)`, replica, runIDs, micros(lease))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	held := map[string]bool{}
	for rows.Next() {
		var id string
		var cancel bool
		if err := rows.Scan(&id, &cancel); err != nil {
			return nil, err
		}
		held[id] = cancel
	}
	return held, rows.Err()
}

func (s *pgStore) requestCancel(ctx context.Context, plugin, task, replica, runID string) (Run, bool, error) {
	// Only the run's row is written (locked): a completion, which locks
	// the task's row then the run's, cannot deadlock with it, and one
	// that committed first leaves the run no longer running.
	run, ok, err := oneRun(s.db.QueryContext(ctx, `
UPDATE scheduler_runs r SET cancel_requested_at = COALESCE(r.cancel_requested_at, now())
FROM scheduler_tasks t
WHERE t.plugin = $1 AND t.task = $2 AND r.run_id = t.run_id AND t.lease_until >= now() AND t.lease_owner <> $3
  AND r.outcome = 'running' AND ($4 = '' OR r.run_id = $4) AND r.reads_cancel
RETURNING `+runColumnsOf("r"), plugin, task, replica, runID))
	if err != nil || ok {
		return run, ok, err
	}
	// None recorded: is the run one whose replica does not read them?
	run, ok, err = oneRun(s.db.QueryContext(ctx, `
SELECT `+runColumnsOf("r")+` FROM scheduler_runs r JOIN scheduler_tasks t ON r.run_id = t.run_id
WHERE t.plugin = $1 AND t.task = $2 AND t.lease_until >= now() AND t.lease_owner <> $3
  AND r.outcome = 'running' AND ($4 = '' OR r.run_id = $4) AND r.reads_cancel IS NOT TRUE`, plugin, task, replica, runID))
	if err == nil && ok {
		err = errCancelUnread
	}
	return run, ok, err
}

func (s *pgStore) cancelRequested(ctx context.Context, runIDs []string) ([]string, error) {
	return scanIDs(s.db.QueryContext(ctx, `
SELECT run_id FROM scheduler_runs WHERE run_id = ANY($1::text[]) AND cancel_requested_at IS NOT NULL`, runIDs))
}

// lastLost is the SET list of an UPDATE of scheduler_tasks t that records
// the run lo, about to be marked lost (its row still "running", or no row:
// NULL), as the task's last run, at ended, unless the task recorded a
// later one: a run that ended lost is the last outcome GET tasks shows
// until the next run ends. errArg is the lost message's parameter.
func lastLost(lo, ended, errArg string) string {
	when := "CASE WHEN " + lo + ".run_id IS NOT NULL AND (t.last_start IS NULL OR t.last_start <= " + lo + ".started_at) THEN "
	set := func(col, v string) string { return col + " = " + when + v + " ELSE t." + col + " END" }
	return strings.Join([]string{
		set("last_run_id", lo+".run_id"),
		set("last_start", lo+".started_at"),
		set("last_end", ended),
		set("last_outcome", "'failed'"),
		set("last_failure", "'lost'"),
		set("last_error", errArg),
		set("last_duration_us", "GREATEST((extract(epoch FROM "+ended+" - "+lo+".started_at) * 1000000)::bigint, 0)"),
		set("last_replica", lo+".replica"),
	}, ",\n        ")
}

func (s *pgStore) tidy(ctx context.Context, keep int, live []string) error {
	if err := inTx(ctx, s.db, func(tx *sql.Tx) error {
		// Tasks first, in order, as a completion locks them (see finish).
		if _, err := tx.ExecContext(ctx, `
SELECT 1 FROM scheduler_tasks t
WHERE EXISTS (SELECT 1 FROM scheduler_runs r WHERE r.plugin = t.plugin AND r.task = t.task AND r.outcome = 'running')
ORDER BY t.plugin, t.task
FOR UPDATE OF t`); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `
WITH lost AS (
    UPDATE scheduler_runs r
    SET outcome = 'failed', failure = 'lost', ended_at = now(), error = $1
    FROM scheduler_tasks t
    WHERE r.outcome = 'running' AND t.plugin = r.plugin AND t.task = r.task AND r.run_id <> ALL(COALESCE($3::text[], '{}'))
      AND ((t.scope = 'global' AND t.run_id = r.run_id AND t.lease_until < now() - $2 * interval '1 millisecond')
        OR ((t.scope = 'local' OR t.run_id IS DISTINCT FROM r.run_id)
            AND r.started_at < now() - (COALESCE(r.timeout_ms, t.timeout_ms) + $2) * interval '1 millisecond'))
    RETURNING r.run_id, r.plugin, r.task, r.started_at, r.replica
), lo AS (
    SELECT DISTINCT ON (plugin, task) * FROM lost ORDER BY plugin, task, started_at DESC
)
UPDATE scheduler_tasks t
SET `+lastLost("lo", "now()", "$1")+`
FROM lo WHERE t.plugin = lo.plugin AND t.task = lo.task`,
			lostMessage, lostGrace.Milliseconds(), live)
		return err
	}); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `
DELETE FROM scheduler_runs WHERE run_id IN (
    SELECT run_id FROM (
        SELECT run_id, outcome, row_number() OVER (PARTITION BY plugin, task ORDER BY started_at DESC) AS rn
        FROM scheduler_runs
    ) x WHERE x.rn > $1 AND x.outcome <> 'running'
)`, keep)
	return err
}

func (s *pgStore) orphans(ctx context.Context) ([]orphan, error) {
	rows, err := s.db.QueryContext(ctx, `
SELECT t.plugin, t.task, t.run_id FROM scheduler_tasks t JOIN scheduler_runs r ON r.run_id = t.run_id
WHERE t.scope = 'global' AND t.lease_until < now() AND r.outcome = 'running' AND r.triggered_by = 'manual'
ORDER BY t.plugin, t.task`)
	if err != nil {
		return nil, err
	}
	return scanOrphans(rows)
}

func (s *pgStore) tasks(ctx context.Context) ([]taskRow, time.Time, error) {
	var now time.Time
	if err := s.db.QueryRowContext(ctx, "SELECT now()").Scan(&now); err != nil {
		return nil, now, err
	}
	rows, err := s.db.QueryContext(ctx, "SELECT "+taskColumns+" FROM scheduler_tasks ORDER BY plugin, task")
	if err != nil {
		return nil, now, err
	}
	out, err := scanTasks(rows)
	return out, now.UTC(), err
}

func (s *pgStore) dbNow(ctx context.Context) (time.Time, error) {
	var now time.Time
	err := s.db.QueryRowContext(ctx, "SELECT clock_timestamp()").Scan(&now)
	return now, err
}

func (s *pgStore) runs(ctx context.Context, plugin, task string, limit int) ([]Run, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+runColumns+" FROM scheduler_runs WHERE plugin = $1 AND task = $2 ORDER BY started_at DESC, run_id LIMIT $3",
		plugin, task, limit)
	if err != nil {
		return nil, err
	}
	return scanRuns(rows)
}

func (s *pgStore) run(ctx context.Context, runID string) (Run, bool, error) {
	return oneRun(s.db.QueryContext(ctx, "SELECT "+runColumns+" FROM scheduler_runs WHERE run_id = $1", runID))
}

func (s *pgStore) reschedule(ctx context.Context, plugin, task string, from, to time.Time) (time.Time, error) {
	var got time.Time
	err := s.db.QueryRowContext(ctx, `
WITH u AS (
    UPDATE scheduler_tasks SET next_run = $4
    WHERE plugin = $1 AND task = $2 AND scope = 'global' AND next_run = $3 AND (run_id IS NULL OR lease_until < now())
    RETURNING next_run
)
SELECT next_run FROM u
UNION ALL
SELECT next_run FROM scheduler_tasks WHERE plugin = $1 AND task = $2 AND NOT EXISTS (SELECT 1 FROM u)`,
		plugin, task, from, to).Scan(dbTime{&got})
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	return got, err
}
