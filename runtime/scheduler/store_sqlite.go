package scheduler

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// sqliteStore keeps the scheduler's state in the runtime's SQLite file.
// Every batch is one IMMEDIATE transaction (the runtime's DSN asks for
// them), which SQLite serialises, so the statements inside can check then
// write. Times are Unix microseconds; "now" is the host's clock, which
// every replica sharing the file shares.
type sqliteStore struct {
	db *sql.DB
	// now is the clock (tests may replace it).
	now func() time.Time
}

var _ store = (*sqliteStore)(nil)

func (s *sqliteStore) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// dbNow is the zero time: SQLite's leases go by the host's clock, which
// replicas sharing the file share.
func (s *sqliteStore) dbNow(context.Context) (time.Time, error) { return time.Time{}, nil }

// us encodes a time as stored: Unix microseconds, or NULL for the zero time.
func us(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func (s *sqliteStore) register(ctx context.Context, regs []registration) ([]time.Time, error) {
	out := make([]time.Time, len(regs))
	err := inTx(ctx, s.db, func(tx *sql.Tx) error {
		now := s.clock()
		for i, r := range regs {
			var next any
			if r.task.Scope == Global {
				next = us(r.next)
			}
			var shown any
			if !r.task.TimeoutSecret {
				shown = r.task.Timeout.Milliseconds()
			}
			var got time.Time
			err := tx.QueryRowContext(ctx, `
INSERT INTO scheduler_tasks AS t (plugin, task, scope, schedule, timeout_ms, timeout_shown_ms, next_run, registered_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (plugin, task) DO UPDATE SET
    next_run = CASE WHEN t.schedule <> excluded.schedule OR t.scope <> excluded.scope OR t.next_run IS NULL
                    THEN excluded.next_run
                    -- The clock was stepped back (the last run began
                    -- after now): the first due time from now.
                    WHEN t.last_start > excluded.registered_at + 1000000 AND excluded.next_run < t.next_run
                         AND (t.run_id IS NULL OR t.lease_until < excluded.registered_at)
                    THEN excluded.next_run
                    ELSE t.next_run END,
    scope = excluded.scope, schedule = excluded.schedule, timeout_ms = excluded.timeout_ms,
    timeout_shown_ms = excluded.timeout_shown_ms, registered_at = excluded.registered_at
RETURNING next_run`, r.task.Plugin, r.task.ID, string(r.task.Scope), r.task.Schedule(), r.task.Timeout.Milliseconds(), shown, next, now.UnixMicro()).
				Scan(dbTime{&got})
			if err != nil {
				return err
			}
			out[i] = got
		}
		return nil
	})
	return out, err
}

func (s *sqliteStore) claim(ctx context.Context, replica string, lease time.Duration, items []claimItem) ([]claimResult, error) {
	out := make([]claimResult, len(items))
	err := inTx(ctx, s.db, func(tx *sql.Tx) error {
		now := s.clock()
		for i, it := range items {
			var next, until time.Time
			var owner, oldRun sql.NullString
			err := tx.QueryRowContext(ctx, "SELECT next_run, lease_until, lease_owner, run_id FROM scheduler_tasks WHERE plugin = ? AND task = ?", it.plugin, it.task).
				Scan(dbTime{&next}, dbTime{&until}, &owner, &oldRun)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			r := claimResult{exists: true, nextRun: next, held: !until.IsZero() && !until.Before(now), holder: owner.String}
			if owner.Valid && owner.String == replica && oldRun.Valid && oldRun.String == it.runID {
				// This claim's own, sent before (store.claim): the lease
				// only is renewed.
				if _, err := tx.ExecContext(ctx, "UPDATE scheduler_tasks SET lease_until = ? WHERE plugin = ? AND task = ?",
					now.Add(lease).UnixMicro(), it.plugin, it.task); err != nil {
					return err
				}
				r.claimed = true
				out[i] = r
				continue
			}
			if r.held || (!it.manual && !next.Equal(it.due)) || (it.rescues != "" && oldRun.String != it.rescues) {
				if r.held && oldRun.Valid {
					var started time.Time
					err := tx.QueryRowContext(ctx, "SELECT started_at FROM scheduler_runs WHERE run_id = ?", oldRun.String).Scan(dbTime{&started})
					if err != nil && !errors.Is(err, sql.ErrNoRows) {
						return err
					}
					r.ahead = started.After(now)
				}
				out[i] = r
				continue
			}
			trigger, due, started := "schedule", us(it.due), later(now, it.due)
			if it.manual {
				trigger, due, started = "manual", nil, now
			}
			if _, err := tx.ExecContext(ctx, "UPDATE scheduler_tasks SET lease_owner = ?, lease_until = ?, run_id = ? WHERE plugin = ? AND task = ?",
				replica, now.Add(lease).UnixMicro(), it.runID, it.plugin, it.task); err != nil {
				return err
			}
			if oldRun.Valid {
				if err := sqliteMarkLost(ctx, tx, now, "run_id = ?", oldRun.String); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO scheduler_runs (run_id, plugin, task, replica, triggered_by, due_at, started_at, outcome, reads_cancel) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', 1)",
				it.runID, it.plugin, it.task, replica, trigger, due, started.UnixMicro()); err != nil {
				return err
			}
			r.claimed = true
			out[i] = r
		}
		return nil
	})
	return out, err
}

func (s *sqliteStore) unclaim(ctx context.Context, replica string, u unclaimItem) error {
	return inTx(ctx, s.db, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE scheduler_tasks SET lease_owner = NULL, lease_until = NULL, run_id = NULL WHERE plugin = ? AND task = ? AND run_id = ? AND lease_owner = ?",
			u.plugin, u.task, u.runID, replica)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM scheduler_runs WHERE run_id = ? AND outcome = 'running'", u.runID)
		return err
	})
}

func (s *sqliteStore) start(ctx context.Context, replica string, sts []localStart) error {
	return inTx(ctx, s.db, func(tx *sql.Tx) error {
		now := s.clock().UnixMicro()
		for _, st := range sts {
			trigger, due := "schedule", us(st.due)
			if st.manual {
				trigger, due = "manual", nil
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO scheduler_runs (run_id, plugin, task, replica, triggered_by, due_at, started_at, outcome, timeout_ms, reads_cancel) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, 1)",
				st.runID, st.plugin, st.task, replica, trigger, due, now, st.timeout.Milliseconds()); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *sqliteStore) finish(ctx context.Context, fs []finishItem) error {
	return inTx(ctx, s.db, func(tx *sql.Tx) error {
		now := s.clock()
		for _, f := range fs {
			// Release the lease this run holds, whatever became of its row,
			// and (a scheduled run) move next_run past its due time,
			// unless a registration changed it meanwhile.
			var due, next any
			if !f.next.IsZero() {
				due, next = us(f.due), us(f.next)
			}
			if _, err := tx.ExecContext(ctx, `
UPDATE scheduler_tasks SET lease_owner = NULL, lease_until = NULL, run_id = NULL,
    next_run = CASE WHEN ? IS NOT NULL AND next_run = ? THEN ? ELSE next_run END
WHERE plugin = ? AND task = ? AND run_id = ?`,
				due, due, next, f.plugin, f.task, f.runID); err != nil {
				return err
			}
			var started time.Time
			var replica string
			err := tx.QueryRowContext(ctx, `
UPDATE scheduler_runs SET ended_at = ?, outcome = ?, failure = ?, error = ?, duration_us = ?
WHERE run_id = ? AND outcome = 'running'
RETURNING started_at, replica`, now.UnixMicro(), f.outcome, nullString(f.failure), nullString(f.err), micros(f.duration), f.runID).
				Scan(dbTime{&started}, &replica)
			if errors.Is(err, sql.ErrNoRows) {
				continue // already marked lost: the history keeps that
			}
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `
UPDATE scheduler_tasks SET last_run_id = ?, last_start = ?, last_end = ?, last_outcome = ?, last_failure = ?, last_error = ?,
    last_duration_us = ?, last_replica = ?
WHERE plugin = ? AND task = ?`, f.runID, started.UnixMicro(), now.UnixMicro(), f.outcome, nullString(f.failure), nullString(f.err),
				micros(f.duration), replica, f.plugin, f.task); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *sqliteStore) renew(ctx context.Context, replica string, lease time.Duration, runIDs []string) (map[string]bool, error) {
	held := map[string]bool{}
	err := inTx(ctx, s.db, func(tx *sql.Tx) error {
		until := s.clock().Add(lease).UnixMicro()
		for _, id := range runIDs {
			res, err := tx.ExecContext(ctx, "UPDATE scheduler_tasks SET lease_until = ? WHERE lease_owner = ? AND run_id = ?", until, replica, id)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				continue
			}
			var cancel bool
			if err := tx.QueryRowContext(ctx, "SELECT cancel_requested_at IS NOT NULL FROM scheduler_runs WHERE run_id = ?", id).Scan(&cancel); err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			held[id] = cancel
		}
		return nil
	})
	return held, err
}

func (s *sqliteStore) cancelRequested(ctx context.Context, runIDs []string) ([]string, error) {
	var out []string
	for len(runIDs) > 0 {
		n := min(len(runIDs), maxBatch)
		args := make([]any, n)
		for i, id := range runIDs[:n] {
			args[i] = id
		}
		runIDs = runIDs[n:]
		ids, err := scanIDs(s.db.QueryContext(ctx, "SELECT run_id FROM scheduler_runs WHERE cancel_requested_at IS NOT NULL AND run_id IN (?"+
			strings.Repeat(", ?", n-1)+")", args...))
		if err != nil {
			return nil, err
		}
		out = append(out, ids...)
	}
	return out, nil
}

func (s *sqliteStore) requestCancel(ctx context.Context, plugin, task, replica, runID string) (Run, bool, error) {
	now := s.clock().UnixMicro()
	run, ok, err := oneRun(s.db.QueryContext(ctx, `
UPDATE scheduler_runs SET cancel_requested_at = COALESCE(cancel_requested_at, ?)
WHERE outcome = 'running' AND (? = '' OR run_id = ?) AND reads_cancel = 1 AND run_id = (
    SELECT run_id FROM scheduler_tasks WHERE plugin = ? AND task = ? AND lease_until >= ? AND lease_owner <> ?)
RETURNING `+runColumns, now, runID, runID, plugin, task, now, replica))
	if err != nil || ok {
		return run, ok, err
	}
	// None recorded: is the run one whose replica does not read them?
	run, ok, err = oneRun(s.db.QueryContext(ctx, `
SELECT `+runColumns+` FROM scheduler_runs
WHERE outcome = 'running' AND (? = '' OR run_id = ?) AND reads_cancel IS NOT 1 AND run_id = (
    SELECT run_id FROM scheduler_tasks WHERE plugin = ? AND task = ? AND lease_until >= ? AND lease_owner <> ?)`,
		runID, runID, plugin, task, now, replica))
	if err == nil && ok {
		err = errCancelUnread
	}
	return run, ok, err
}

// sqliteMarkLost records the running runs that where (a condition on
// scheduler_runs, with args) selects as lost, and each as its task's last
// run unless the task recorded a later one: a run that ended lost is the
// last outcome GET tasks shows until the next run ends.
func sqliteMarkLost(ctx context.Context, tx *sql.Tx, now time.Time, where string, args ...any) error {
	rows, err := tx.QueryContext(ctx, `
UPDATE scheduler_runs SET outcome = 'failed', failure = 'lost', ended_at = ?, error = ?
WHERE outcome = 'running' AND (`+where+`)
RETURNING run_id, plugin, task, started_at, replica`, append([]any{now.UnixMicro(), lostMessage}, args...)...)
	if err != nil {
		return err
	}
	type lost struct {
		runID, plugin, task, replica string
		started                      time.Time
	}
	var all []lost
	for rows.Next() {
		var l lost
		if err := rows.Scan(&l.runID, &l.plugin, &l.task, dbTime{&l.started}, &l.replica); err != nil {
			rows.Close()
			return err
		}
		all = append(all, l)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	for _, l := range all {
		if _, err := tx.ExecContext(ctx, `
UPDATE scheduler_tasks SET last_run_id = ?, last_start = ?, last_end = ?, last_outcome = 'failed', last_failure = 'lost', last_error = ?,
    last_duration_us = ?, last_replica = ?
WHERE plugin = ? AND task = ? AND (last_start IS NULL OR last_start <= ?)`,
			l.runID, l.started.UnixMicro(), now.UnixMicro(), lostMessage, max(now.Sub(l.started), 0).Microseconds(), l.replica,
			l.plugin, l.task, l.started.UnixMicro()); err != nil {
			return err
		}
	}
	return nil
}

func (s *sqliteStore) tidy(ctx context.Context, keep int, live []string) error {
	now := s.clock()
	ids, err := json.Marshal(append([]string{}, live...)) // [], not null, for none
	if err != nil {
		return err
	}
	if err := inTx(ctx, s.db, func(tx *sql.Tx) error {
		return sqliteMarkLost(ctx, tx, now, `run_id NOT IN (SELECT value FROM json_each(?)) AND EXISTS (
    SELECT 1 FROM scheduler_tasks t
    WHERE t.plugin = scheduler_runs.plugin AND t.task = scheduler_runs.task
      AND ((t.scope = 'global' AND t.run_id = scheduler_runs.run_id AND t.lease_until < ? - ? * 1000)
        OR ((t.scope = 'local' OR t.run_id IS NULL OR t.run_id <> scheduler_runs.run_id)
            AND scheduler_runs.started_at < ? - (COALESCE(scheduler_runs.timeout_ms, t.timeout_ms) + ?) * 1000)))`,
			string(ids), now.UnixMicro(), lostGrace.Milliseconds(), now.UnixMicro(), lostGrace.Milliseconds())
	}); err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `
DELETE FROM scheduler_runs WHERE run_id IN (
    SELECT run_id FROM (
        SELECT run_id, outcome, row_number() OVER (PARTITION BY plugin, task ORDER BY started_at DESC) AS rn
        FROM scheduler_runs
    ) WHERE rn > ? AND outcome <> 'running'
)`, keep)
	return err
}

func (s *sqliteStore) orphans(ctx context.Context) ([]orphan, error) {
	rows, err := s.db.QueryContext(ctx, `
SELECT t.plugin, t.task, t.run_id FROM scheduler_tasks t JOIN scheduler_runs r ON r.run_id = t.run_id
WHERE t.scope = 'global' AND t.lease_until < ? AND r.outcome = 'running' AND r.triggered_by = 'manual'
ORDER BY t.plugin, t.task`, s.clock().UnixMicro())
	if err != nil {
		return nil, err
	}
	return scanOrphans(rows)
}

func (s *sqliteStore) tasks(ctx context.Context) ([]taskRow, time.Time, error) {
	now := s.clock().UTC()
	rows, err := s.db.QueryContext(ctx, "SELECT "+taskColumns+" FROM scheduler_tasks ORDER BY plugin, task")
	if err != nil {
		return nil, now, err
	}
	out, err := scanTasks(rows)
	return out, now, err
}

func (s *sqliteStore) runs(ctx context.Context, plugin, task string, limit int) ([]Run, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+runColumns+" FROM scheduler_runs WHERE plugin = ? AND task = ? ORDER BY started_at DESC, run_id LIMIT ?",
		plugin, task, limit)
	if err != nil {
		return nil, err
	}
	return scanRuns(rows)
}

func (s *sqliteStore) run(ctx context.Context, runID string) (Run, bool, error) {
	return oneRun(s.db.QueryContext(ctx, "SELECT "+runColumns+" FROM scheduler_runs WHERE run_id = ?", runID))
}

func (s *sqliteStore) reschedule(ctx context.Context, plugin, task string, from, to time.Time) (time.Time, error) {
	var got time.Time
	err := inTx(ctx, s.db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `
UPDATE scheduler_tasks SET next_run = ?
WHERE plugin = ? AND task = ? AND scope = 'global' AND next_run = ? AND (run_id IS NULL OR lease_until < ?)`,
			us(to), plugin, task, us(from), us(s.clock())); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, "SELECT next_run FROM scheduler_tasks WHERE plugin = ? AND task = ?", plugin, task).Scan(dbTime{&got})
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	})
	return got, err
}
