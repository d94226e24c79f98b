package scheduler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// The scheduler keeps its state in the runtime's own database
// (migrations/*/..._scheduler.tx.up.sql): a row per task with its next due
// time and lease, and a row per run. On PostgreSQL every lease decision
// compares against the database's clock, in one statement, so replicas
// with skewed clocks cannot both hold a lease; claims, local starts,
// completions and renewals are batched (one statement for every task due
// at once). SQLite
// is for one node (or replicas on one host sharing the file): the same
// steps run in one IMMEDIATE transaction each, on the host's clock.

// store is the scheduler's view of its tables.
type store interface {
	// register upserts the rows of tasks registered at at. A global task
	// keeps the next_run its row already has, unless its schedule or scope
	// changed (or it has none), or its last run began over a second
	// after now (the clock was stepped back while no replica ran to see
	// it: stepBack) and next is earlier, no run holding its lease: then
	// next is stored. It returns each
	// task's next_run (zero for local tasks).
	register(ctx context.Context, regs []registration) ([]time.Time, error)
	// claim takes the lease of each item's task for replica, when the row
	// is still due at item.due (any due time for a manual item) and no
	// live lease holds it, marks a run left by an expired lease as lost,
	// and inserts the run's row (started at the due time when claimed
	// ahead of it). next_run stays: a scheduled run's finish moves it on,
	// so that a due time whose run was lost (its replica died, its lease
	// expired) is still due, and the next replica to claim runs it (as
	// Backstage does). One result per item, in order. A claim may be sent
	// again with the same run ids when its answer was lost (an error
	// after the database committed it: the connection dropped, a
	// failover): a task whose lease replica holds for that run id is
	// claimed again (its lease renewed; the run's row and the task's last
	// run as they are).
	claim(ctx context.Context, replica string, lease time.Duration, items []claimItem) ([]claimResult, error)
	// unclaim undoes a claim whose run never started (the replica shut
	// down, or the plugin stopped registering the task, before the due
	// time it was claimed ahead of): the lease is released (next_run is
	// still that due time, so that a replica runs it), and the run's row
	// is deleted. A claim no longer held (its lease expired and another
	// replica took the task) is left alone.
	unclaim(ctx context.Context, replica string, u unclaimItem) error
	// start inserts the rows of local tasks' runs, in one transaction.
	start(ctx context.Context, replica string, sts []localStart) error
	// finish completes runs: their rows, their tasks' last_* columns, and
	// releases the lease each still holds; a scheduled run that still
	// holds it moves next_run from its due time to its next (unless a
	// registration changed next_run meanwhile).
	finish(ctx context.Context, fs []finishItem) error
	// renew extends the leases replica holds for runIDs and reports which
	// it still held: each one's run id, mapped to whether an operator
	// asked another replica to cancel that run (requestCancel).
	renew(ctx context.Context, replica string, lease time.Duration, runIDs []string) (map[string]bool, error)
	// requestCancel records that an operator asked, through replica, that
	// the run of the task plugin/task in progress on another replica stop
	// (POST .../cancel): the run that holds the task's live lease, and is
	// still running, if its id is runID (any, for ""). The request is
	// kept on that run's row, so a later run of the task is not
	// affected; the replica holding the lease reads it between renewals
	// (cancelRequested) and as it renews (renew). It returns the run, and false when there is none (no run
	// holds a live lease, it is replica's own, or it is not runID). A
	// run whose replica does not read cancel requests (its row was
	// written by a replica from before reads_cancel: a rolling upgrade)
	// is returned with errCancelUnread, and nothing is recorded.
	requestCancel(ctx context.Context, plugin, task, replica, runID string) (Run, bool, error)
	// cancelRequested returns those of runIDs whose rows hold a cancel
	// request (requestCancel), in no order: the replica running them
	// reads them between renewals too (canceller).
	cancelRequested(ctx context.Context, runIDs []string) ([]string, error)
	// reschedule moves the next_run of global task plugin/task from from
	// to to, when the row still has from and no live lease holds the task
	// (after the clock due times go by was stepped back: stepBack), and
	// returns the row's next_run (zero when there is no row).
	reschedule(ctx context.Context, plugin, task string, from, to time.Time) (time.Time, error)
	// tidy marks runs whose replica is gone as lost, but for the runs
	// live (the calling replica's own, in progress), and keeps the last
	// keep runs of each task.
	tidy(ctx context.Context, keep int, live []string) error
	// orphans lists the global tasks whose lease has expired while
	// held by a triggered run still recorded as running: its replica
	// stopped renewing (it died, froze, or lost the database) and no
	// due time stays behind it, as one does behind a scheduled run, for
	// another replica to claim.
	orphans(ctx context.Context) ([]orphan, error)
	// tasks reads every task row, and the database's time.
	tasks(ctx context.Context) ([]taskRow, time.Time, error)
	// runs reads the last runs of a task, newest first.
	runs(ctx context.Context, plugin, task string, limit int) ([]Run, error)
	// run reads the row of run runID (false when there is none): by its
	// id, however many runs of its task other replicas began since.
	run(ctx context.Context, runID string) (Run, bool, error)
	// dbNow reads the database's clock, by which its leases (and claims)
	// go; the zero time when that is the host's (SQLite).
	dbNow(ctx context.Context) (time.Time, error)
}

type registration struct {
	task *Task
	next time.Time // first due time, for a new row (zero for local)
	at   time.Time
}

type claimItem struct {
	plugin, task string
	manual       bool
	due          time.Time // zero for manual
	runID        string
	// rescues: a manual claim that runs again the lost triggered run
	// of this id (rescuer) takes the lease only while that run still
	// holds it, so that a task another replica has run again meanwhile
	// (and whose run may have ended, freeing the lease) is not run again
	// a second time.
	rescues string
}

type claimResult struct {
	claimed bool
	exists  bool      // the task has a row
	nextRun time.Time // the row's next_run as the claim saw it
	held    bool      // a live lease holds the task
	holder  string
	// ahead: the live lease is a scheduled run's, claimed ahead of its
	// due time, which has not come yet (the run has not begun).
	ahead bool
	// dbNow is the database's clock as the claim read it (zero on
	// SQLite: the host's).
	dbNow time.Time
}

// orphan is a task whose lease a lost triggered run (runID) left.
type orphan struct {
	plugin, task, runID string
}

type unclaimItem struct {
	runID, plugin, task string
}

type localStart struct {
	runID, plugin, task string
	manual              bool
	due                 time.Time
	started             time.Time
	timeout             time.Duration // the registration's it runs under
}

type finishItem struct {
	runID, plugin, task string
	outcome, failure    string
	err                 string
	duration            time.Duration
	// due and next, for a run of a scheduled global due time: the task's
	// next_run moves from due to next as the run releases its lease.
	// Zero for manual and local runs.
	due, next time.Time
	// leased: the run holds its task's lease (a global run, scheduled or
	// triggered), which its end releases.
	leased bool
}

// taskRow is a scheduler_tasks row.
type taskRow struct {
	plugin, task, scope, schedule string
	timeoutMS                     int64
	nextRun, leaseUntil           time.Time
	leaseOwner, runID             string
	lastRunID                     string
	lastStart, lastEnd            time.Time
	lastOutcome, lastFailure      string
	lastError, lastReplica        string
	lastDurationUS                sql.NullInt64
	// timeoutShownMS is timeout_shown_ms: the timeout the replica that
	// registered the task may show (see shownTimeout).
	timeoutShownMS sql.NullInt64
}

// errCancelUnread: the run requestCancel found was started by a replica
// that does not read cancel requests.
var errCancelUnread = errors.New("the replica running the run does not read cancel requests")

// lostMessage is the error of a run whose replica stopped renewing its
// lease.
const lostMessage = "the replica running it stopped renewing its lease before the run ended (it stopped abruptly or lost the database); the lease expired"

func newStore(db *bun.DB) (store, error) {
	switch db.Dialect().Name() {
	case dialect.PG:
		return &pgStore{db: db.DB}, nil
	case dialect.SQLite:
		return &sqliteStore{db: db.DB}, nil
	}
	return nil, fmt.Errorf("scheduler: unsupported database dialect %s", db.Dialect().Name())
}

// dbTime scans a time stored as timestamptz (PostgreSQL) or as INTEGER
// Unix microseconds (SQLite); NULL is the zero time.
type dbTime struct{ t *time.Time }

func (d dbTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*d.t = time.Time{}
	case time.Time:
		*d.t = x.UTC()
	case int64:
		*d.t = time.UnixMicro(x).UTC()
	default:
		return fmt.Errorf("scheduler: unexpected time value of type %T", v)
	}
	return nil
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// Run is one run of a task, as the history keeps it.
type Run struct {
	RunID   string `json:"run_id"`
	Plugin  string `json:"plugin"`
	Task    string `json:"task"`
	Replica string `json:"replica"`
	// Trigger is "schedule" or "manual" (POST .../trigger).
	Trigger string     `json:"trigger"`
	Due     *time.Time `json:"due_at,omitempty"`
	Started time.Time  `json:"started_at"`
	Ended   *time.Time `json:"ended_at,omitempty"`
	// Outcome is "running", "succeeded" or "failed".
	Outcome string `json:"outcome"`
	// Failure says how a failed run failed: error (Run returned one),
	// timeout, panic, trap, memory_limit, exit, busy, canceled, lost, ...
	Failure    string   `json:"failure,omitempty"`
	Error      string   `json:"error,omitempty"`
	DurationMS *float64 `json:"duration_ms,omitempty"`
}

const runColumns = "run_id, plugin, task, replica, triggered_by, due_at, started_at, ended_at, outcome, failure, error, duration_us"

// runColumnsOf is runColumns qualified by the table name or alias t.
func runColumnsOf(t string) string { return t + "." + strings.ReplaceAll(runColumns, ", ", ", "+t+".") }

// oneRun scans the run rows may hold (requestCancel's).
func oneRun(rows *sql.Rows, err error) (Run, bool, error) {
	if err != nil {
		return Run{}, false, err
	}
	runs, err := scanRuns(rows)
	if err != nil || len(runs) == 0 {
		return Run{}, false, err
	}
	return runs[0], true, nil
}

func scanRuns(rows *sql.Rows) ([]Run, error) {
	defer rows.Close()
	out := []Run{}
	for rows.Next() {
		var r Run
		var due, ended time.Time
		var failure, msg sql.NullString
		var dur sql.NullInt64
		if err := rows.Scan(&r.RunID, &r.Plugin, &r.Task, &r.Replica, &r.Trigger, dbTime{&due}, dbTime{&r.Started}, dbTime{&ended},
			&r.Outcome, &failure, &msg, &dur); err != nil {
			return nil, err
		}
		r.Due, r.Ended = timePtr(due), timePtr(ended)
		r.Failure, r.Error = failure.String, msg.String
		if dur.Valid {
			ms := float64(dur.Int64) / 1000
			r.DurationMS = &ms
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

const taskColumns = "plugin, task, scope, schedule, timeout_ms, timeout_shown_ms, next_run, lease_owner, lease_until, run_id, " +
	"last_run_id, last_start, last_end, last_outcome, last_failure, last_error, last_duration_us, last_replica"

func scanTasks(rows *sql.Rows) ([]taskRow, error) {
	defer rows.Close()
	var out []taskRow
	for rows.Next() {
		var r taskRow
		var owner, run, lastRun, outcome, failure, msg, replica sql.NullString
		if err := rows.Scan(&r.plugin, &r.task, &r.scope, &r.schedule, &r.timeoutMS, &r.timeoutShownMS, dbTime{&r.nextRun}, &owner, dbTime{&r.leaseUntil}, &run,
			&lastRun, dbTime{&r.lastStart}, dbTime{&r.lastEnd}, &outcome, &failure, &msg, &r.lastDurationUS, &replica); err != nil {
			return nil, err
		}
		r.leaseOwner, r.runID, r.lastRunID = owner.String, run.String, lastRun.String
		r.lastOutcome, r.lastFailure, r.lastError, r.lastReplica = outcome.String, failure.String, msg.String, replica.String
		out = append(out, r)
	}
	return out, rows.Err()
}

// inTx runs f in a transaction.
func inTx(ctx context.Context, db *sql.DB, f func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// scanIDs scans rows of one text column.
func scanIDs(rows *sql.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

func scanOrphans(rows *sql.Rows) ([]orphan, error) {
	defer rows.Close()
	var out []orphan
	for rows.Next() {
		var o orphan
		if err := rows.Scan(&o.plugin, &o.task, &o.runID); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}
