package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/logging"
)

// TaskStatus is one task as the admin API shows it: its registration,
// its next due time, whether it runs now and how its last run went.
type TaskStatus struct {
	Plugin string `json:"plugin"`
	ID     string `json:"id"`
	Scope  Scope  `json:"scope"`
	// Schedule is the cron expression, or "every <duration>".
	Schedule     string `json:"schedule"`
	Cron         string `json:"cron,omitempty"`
	Every        string `json:"every,omitempty"`
	Timeout      string `json:"timeout"`
	InitialDelay string `json:"initial_delay,omitempty"`
	// Registered is false for a task the plugin no longer registers on
	// this replica (listed with ?all=true: its history stays).
	Registered bool `json:"registered"`
	// NextRun is the next due time: the one all replicas share for a
	// global task, this replica's for a local one.
	NextRun *time.Time `json:"next_run"`
	// Running: a run is in progress (for a global task on any replica,
	// named by RunningOn; for a local task on this replica).
	Running   bool   `json:"running"`
	RunningOn string `json:"running_on,omitempty"`
	// The last run that ended, on any replica.
	LastRunID      string     `json:"last_run_id,omitempty"`
	LastOutcome    string     `json:"last_outcome,omitempty"`
	LastFailure    string     `json:"last_failure,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
	LastStart      *time.Time `json:"last_start,omitempty"`
	LastEnd        *time.Time `json:"last_end,omitempty"`
	LastDurationMS *float64   `json:"last_duration_ms,omitempty"`
	LastReplica    string     `json:"last_replica,omitempty"`
}

func statusOf(t *Task) TaskStatus {
	st := TaskStatus{Plugin: t.Plugin, ID: t.ID, Scope: t.Scope, Schedule: t.Schedule(), Cron: t.Cron, Timeout: t.toldTimeout(), Registered: true}
	if t.Every > 0 {
		st.Every = t.Every.String()
	}
	if t.InitialDelay > 0 {
		st.InitialDelay = t.InitialDelay.String()
	}
	return st
}

func (st *TaskStatus) fill(r *taskRow, now time.Time) {
	if st.Plugin == "" {
		st.Plugin, st.ID, st.Scope, st.Schedule = r.plugin, r.task, Scope(r.scope), r.schedule
		st.Timeout = r.shownTimeout()
		if d, ok := strings.CutPrefix(r.schedule, "every "); ok {
			st.Every = d
		} else {
			st.Cron = r.schedule
		}
	}
	if st.Scope == Global {
		st.NextRun = timePtr(r.nextRun)
		if r.runID != "" && !r.leaseUntil.Before(now) {
			st.Running, st.RunningOn = true, r.leaseOwner
		}
	}
	st.LastRunID, st.LastOutcome, st.LastFailure, st.LastError = r.lastRunID, r.lastOutcome, r.lastFailure, r.lastError
	st.LastStart, st.LastEnd, st.LastReplica = timePtr(r.lastStart), timePtr(r.lastEnd), r.lastReplica
	if r.lastDurationUS.Valid {
		ms := float64(r.lastDurationUS.Int64) / 1000
		st.LastDurationMS = &ms
	}
}

// shownTimeout is the row's timeout as the admin API tells it for a task
// no plugin registers on this replica: the replica that registered it
// wrote timeout_shown_ms, the timeout it may show, equal to timeout_ms
// but NULL for a plugin's limits.timeout from the environment (a secret).
// A row without it (written before runtime migration 20261207000002, or
// inserted by an older replica since), or whose timeout_ms an older
// replica's registration, which leaves that column as it is, has changed
// since, may hold a secret timeout too: logging.Redacted.
func (r *taskRow) shownTimeout() string {
	if !r.timeoutShownMS.Valid || r.timeoutShownMS.Int64 != r.timeoutMS {
		return logging.Redacted
	}
	return (time.Duration(r.timeoutMS) * time.Millisecond).String()
}

// Tasks lists the tasks registered on this replica, sorted by plugin and
// id, with their state; all adds the tasks the database knows that no
// plugin registers here any more (Registered false).
func (s *Scheduler) Tasks(ctx context.Context, all bool) ([]TaskStatus, error) {
	s.mu.Lock()
	out := make([]TaskStatus, 0, len(s.tasks))
	index := map[string]int{}
	prior := s.priorRuns()
	for k, t := range s.tasks {
		st := statusOf(&t.Task)
		if t.Scope == Local && s.cfg.Enabled {
			st.NextRun = timePtr(t.due)
		}
		// Also the run of a registration a reload dropped since, which
		// finishes on the plugin's old version (priorRuns).
		if t.run != nil && t.run.claimed || t.run != nil && t.Scope == Local || prior[k] {
			st.Running, st.RunningOn = true, s.cfg.Replica
		}
		index[k] = len(out)
		out = append(out, st)
	}
	hasTasks := len(s.tasks) > 0
	s.mu.Unlock()
	if hasTasks || all {
		rows, now, err := s.rows(ctx)
		if err != nil && hasTasks {
			return nil, err
		}
		for i := range rows {
			r := &rows[i]
			k := key(r.plugin, r.task)
			j, ok := index[k]
			if !ok {
				if !all {
					continue
				}
				out = append(out, TaskStatus{})
				j = len(out) - 1
			}
			running := out[j].Running
			out[j].fill(r, now)
			out[j].Running = out[j].Running || running
		}
	}
	slices.SortFunc(out, func(a, b TaskStatus) int {
		if c := strings.Compare(a.Plugin, b.Plugin); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// rows reads every task row; no database yet means no rows.
func (s *Scheduler) rows(ctx context.Context) ([]taskRow, time.Time, error) {
	st, err := s.store(ctx)
	if err != nil {
		return nil, time.Now(), err
	}
	return st.tasks(ctx)
}

// Task returns one task's status and its last runs (at most limit), newest
// first. A task the plugin no longer registers but the history holds is
// returned too. ErrUnknownTask when neither knows it.
func (s *Scheduler) Task(ctx context.Context, plugin, id string, limit int) (TaskStatus, []Run, error) {
	all, err := s.Tasks(ctx, true)
	if err != nil {
		return TaskStatus{}, nil, err
	}
	for _, st := range all {
		if st.Plugin == plugin && st.ID == id {
			store, err := s.store(ctx)
			if err != nil {
				return st, nil, err
			}
			runs, err := store.runs(ctx, plugin, id, limit)
			return st, runs, err
		}
	}
	return TaskStatus{}, nil, ErrUnknownTask
}

// Trigger runs a registered task now on this replica, outside its
// schedule (the schedule is unchanged). A global task's lease is taken
// first: a *RunningError (errors.Is ErrRunning) when a run holds it, on
// any replica; a local task may not be running on this replica. A run
// that has returned and whose end is being recorded is waited for
// (endWait at most). ErrUnknownTask when the task is not registered here; ErrDisabled when
// this replica runs no tasks. It returns once the run has started.
func (s *Scheduler) Trigger(ctx context.Context, plugin, id string) (Run, error) {
	return s.trigger(ctx, plugin, id, "")
}

// trigger is Trigger; rescues is the id of the lost triggered run this
// one runs again (rescuer), or "".
func (s *Scheduler) trigger(ctx context.Context, plugin, id, rescues string) (Run, error) {
	k := key(plugin, id)
	// sawAhead: the trigger came while a scheduled run was claimed and
	// had not begun (nothing ran): it waits for that run, which may be
	// short, for up to a second in all, before answering 409.
	sawAhead := false
	// endBy bounds the wait for runs that are ending (endingRun).
	var endBy time.Time
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		t := s.tasks[k]
		if !s.started || s.stopped {
			s.mu.Unlock()
			if t == nil && !s.stopped {
				// A replica that runs no task still knows which
				// tasks there are (it lists them): one that is not
				// is 404, as on any replica, not 503.
				return Run{}, ErrUnknownTask
			}
			return Run{}, ErrDisabled
		}
		switch {
		case t == nil:
			s.mu.Unlock()
			return Run{}, ErrUnknownTask
		case t.run != nil && !t.run.manual && (!t.run.started || sawAhead) && attempt < 20:
			// A scheduled run being claimed, or claimed ahead of its
			// due time, has not begun: the task is not running yet.
			// Wait for it to begin and end (a second in all at most),
			// then run, or answer 409 while it still runs.
			sawAhead = true
			s.mu.Unlock()
			time.Sleep(retryLocked)
			continue
		case t.run != nil || s.priorRuns()[k]:
			// Its run, or that of a registration a reload dropped
			// since, finishing on the plugin's old version.
			gone := s.endingRun(t)
			s.mu.Unlock()
			if gone == nil {
				return Run{}, &RunningError{Plugin: plugin, Task: id, Replica: s.cfg.Replica}
			}
			// The run has returned: its end is being recorded (and is
			// shown in the history before this replica lets the task
			// go, which answered 409 task_running then). Wait for it.
			if endBy.IsZero() {
				endBy = time.Now().Add(endWait)
			}
			if !waitGone(ctx, gone, endBy) {
				return Run{}, &RunningError{Plugin: plugin, Task: id, Replica: s.cfg.Replica,
					Why: fmt.Sprintf("ending: its run has returned, and its end was still being recorded after %s", endWait)}
			}
			continue
		case !t.synced && attempt == 0:
			s.mu.Unlock()
			s.sync(ctx, []*task{t})
			continue
		case !t.synced:
			s.mu.Unlock()
			return Run{}, errors.New("the task is not registered in the database yet; try again")
		}
		r := &run{id: newRunID(), task: t, spec: t.Task, gen: t.gen, manual: true, rescues: rescues}
		t.run = r
		s.mu.Unlock()
		return s.startManual(ctx, t, r, sawAhead)
	}
}

// endWait is how long a trigger waits at most for a run that is ending
// (endingRun) to let its task go.
const endWait = 5 * time.Second

// endingRun returns, when every run of t on this replica (its run, and
// that of a registration a reload dropped since) has returned and only
// its end is left to record, the gone channel of one of them; else nil
// (a run still runs, or has not begun). s.mu is held.
func (s *Scheduler) endingRun(t *task) chan struct{} {
	var gone chan struct{}
	for r := range s.active {
		if r.task.key != t.key {
			continue
		}
		if !r.returned.Load() || r.gone == nil {
			return nil
		}
		gone = r.gone
	}
	if r := t.run; r != nil {
		if _, active := s.active[r]; !active {
			return nil // claiming, or not launched yet
		}
	}
	return gone
}

// waitGone waits for gone to be closed, until by or ctx's end, and reports
// whether it was.
func waitGone(ctx context.Context, gone chan struct{}, by time.Time) bool {
	timer := time.NewTimer(time.Until(by))
	defer timer.Stop()
	select {
	case <-gone:
		return true
	case <-timer.C:
	case <-ctx.Done():
	}
	return false
}

// Cancel stops the run of a task in progress (see CancelRun).
func (s *Scheduler) Cancel(ctx context.Context, plugin, id string) (Run, error) {
	return s.CancelRun(ctx, plugin, id, "")
}

// CancelRun stops the run of a task in progress, the one of id runID
// (any, for ""). On this replica (also the run of a task a reload
// dropped, finishing on the old version) it is stopped as a shutdown
// does (cancelRun). A global task's run on another replica is asked to
// stop through the database (store.requestCancel): that replica cancels
// it when it next reads the requests for its runs (canceller), half a
// second at most later, or as it renews the run's lease. The run is recorded failed, canceled, and (scheduled) its due
// time is done with. It returns the run, without waiting for its end: its
// Replica says which replica runs it, this one or another. ErrUnknownTask
// when the task is neither registered nor running here, nor a global
// task whose run another replica holds (requestCancelUnregistered); ErrNotRunning
// when no run (of id runID) is in progress, on any replica; ErrDisabled
// when this replica runs no tasks and the run is not another replica's.
func (s *Scheduler) CancelRun(ctx context.Context, plugin, id, runID string) (Run, error) {
	s.mu.Lock()
	t := s.tasks[key(plugin, id)]
	if !s.started || s.stopped {
		// A replica that runs no task still asks the one that runs a
		// global task's run to cancel it, as it lists the task.
		s.mu.Unlock()
		if t == nil && !s.stopped {
			return s.requestCancelUnregistered(ctx, plugin, id, runID)
		}
		if t != nil && t.Scope == Global && !s.stopped {
			if run, err := s.requestCancel(ctx, plugin, id, runID); !errors.Is(err, ErrNotRunning) {
				return run, err
			}
		}
		return Run{}, ErrDisabled
	}
	// Among the runs in progress: also one of a task its plugin no
	// longer registers (a reload dropped it, or removed the plugin),
	// which finishes on the old version; and one launched that has not
	// begun yet (a trigger's, just answered; a global one claimed ahead of
	// its due time), which the listing shows running: it does not begin
	// (execute). Only launched ones were looked at once begun, so a
	// cancel right after a trigger, or while the listing said running,
	// answered 409 task_not_running.
	var r *run
	for a := range s.active {
		if a.spec.Plugin == plugin && a.spec.ID == id && a.stop != nil && (runID == "" || a.id == runID) {
			r = a
		}
	}
	if t == nil && r == nil {
		s.mu.Unlock()
		return s.requestCancelUnregistered(ctx, plugin, id, runID)
	}
	if r != nil {
		s.cancelRun(r)
		s.mu.Unlock()
		trigger := "schedule"
		if r.manual {
			trigger = "manual"
		}
		// Started as recorded: without it the answer said started_at
		// 0001-01-01T00:00:00Z for a run that had begun seconds before.
		return Run{RunID: r.id, Plugin: plugin, Task: id, Replica: s.cfg.Replica, Trigger: trigger, Due: timePtr(r.due), Started: s.recordedStartNow(ctx, r.id), Outcome: "running"}, nil
	}
	global := t.Scope == Global // r is nil, so t is not
	s.mu.Unlock()
	if global {
		return s.requestCancel(ctx, plugin, id, runID)
	}
	return Run{}, ErrNotRunning
}

// requestCancelUnregistered is CancelRun of a task no plugin registers on
// this replica and no run of which is in progress here: a global task
// that other replicas still register and run, during a rolling upgrade
// whose new version dropped it (or while a config change reaches the
// replicas one by one). An operator behind a load balancer cannot pick
// the replica, so its run is asked to stop through the database, as a
// registered task's run on another replica; it answered ErrUnknownTask
// (TestCancelOfATaskNotRegisteredHereRunningElsewhere). ErrUnknownTask
// still when no other replica holds a run of it (the store's request
// finds only a run holding a live lease, which local tasks never take).
func (s *Scheduler) requestCancelUnregistered(ctx context.Context, plugin, id, runID string) (Run, error) {
	run, err := s.requestCancel(ctx, plugin, id, runID)
	if errors.Is(err, ErrNotRunning) {
		return Run{}, ErrUnknownTask
	}
	return run, err
}

// requestCancel asks the replica running the global task plugin/id's run
// (of id runID, or any) to cancel it (store.requestCancel): the run, or
// ErrNotRunning when no other replica runs it.
func (s *Scheduler) requestCancel(ctx context.Context, plugin, id, runID string) (Run, error) {
	st, err := s.store(ctx)
	if err != nil {
		return Run{}, err
	}
	run, ok, err := st.requestCancel(ctx, plugin, id, s.cfg.Replica, runID)
	if errors.Is(err, errCancelUnread) {
		// An older replica (a rolling upgrade) never reads the request:
		// recorded and answered as requested, the run went on.
		return Run{}, &RunningError{Plugin: plugin, Task: id, Replica: run.Replica, Why: "which runs an older greenroom whose run rows do not say it reads cancel requests sent through another replica " +
			"(no reads_cancel, runtime migration 20261207000001; before 20261206000001 replicas never read them) and would never read this one: " +
			"nothing was recorded; send the cancel to that replica itself, or let the run end (upgrading that replica stops it, as a shutdown does)"}
	}
	if err != nil {
		return Run{}, fmt.Errorf("scheduler: request the cancel of task %s/%s: %w", plugin, id, err)
	}
	if !ok {
		return Run{}, ErrNotRunning
	}
	return run, nil
}

// cancelRun stops r, a run on this replica, for an operator: it is asked
// to stop (cancel_requested; the Go SDK cancels Run's ctx, a host call in
// progress is ended) and interrupted if it has not returned cancelGrace
// later; it is recorded canceled. s.mu is held.
func (s *Scheduler) cancelRun(r *run) {
	if r.canceled.Swap(true) {
		return // asked already: its grace runs from the first time
	}
	r.askStop()
	if cancel := r.cancel; cancel != nil {
		time.AfterFunc(cancelGrace, cancel)
	}
}

func (s *Scheduler) startManual(ctx context.Context, t *task, r *run, sawAhead bool) (Run, error) {
	release := func() {
		s.mu.Lock()
		if t.run == r {
			t.run = nil
		}
		s.mu.Unlock()
		s.wakeUp()
	}
	spec := r.spec
	if spec.Scope == Global {
		var sent time.Duration
		var res []claimResult
		// Not cancelled with the request (as in claimRuns): a claim that
		// took the lease must say so, so that the run starts and releases
		// it, even if the client went away meanwhile.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		st, err := s.store(cctx)
		// A row another statement holds for a moment (another replica's
		// claim or registration) is skipped by a claim: try again a few
		// times before answering that the task runs. A claim that failed
		// is sent again, twice at most, with the same run id: the
		// database may have committed it (the answer was lost with the
		// connection), and then finds the lease its own.
		failed := 0
		for attempt := 0; err == nil; attempt++ {
			sent = s.clk.Mono()
			res, err = st.claim(cctx, s.cfg.Replica, s.cfg.Lease, []claimItem{{plugin: spec.Plugin, task: spec.ID, manual: true, runID: r.id, rescues: r.rescues}})
			if err != nil && failed < 2 && cctx.Err() == nil {
				failed++
				err = nil
				time.Sleep(time.Duration(failed) * 100 * time.Millisecond)
				continue
			}
			// A run claimed ahead of its due time that has not begun
			// is not running yet: wait for it to begin and end (a
			// second in all at most), then run, or answer 409 while it
			// still runs.
			if err == nil && res[0].ahead {
				sawAhead = true
			}
			// A row locked by another statement (no run holds the lease)
			// is tried for up to 5 s: a replica starting registers its
			// tasks, and under load that held a trigger sent just then
			// past a second, which answered that the task was running.
			locked := err == nil && !res[0].claimed && !res[0].held && res[0].exists
			// A rescue is not tried again: the lost run no longer holds
			// the lease (another replica ran the task meanwhile), or
			// another replica's rescue holds the row; the next search
			// finds it again if it is still lost.
			if err != nil || res[0].claimed || res[0].held && !sawAhead || !res[0].exists || attempt >= 20 && !locked || attempt == 100 || ctx.Err() != nil || r.rescues != "" {
				break
			}
			time.Sleep(retryLocked)
		}
		if err != nil {
			release()
			return Run{}, fmt.Errorf("scheduler: claim task %s/%s: %w", spec.Plugin, spec.ID, err)
		}
		if !res[0].claimed {
			release()
			s.stats.claimed(0, 1)
			if !res[0].exists {
				return Run{}, ErrUnknownTask
			}
			return Run{}, &RunningError{Plugin: spec.Plugin, Task: spec.ID, Replica: res[0].holder}
		}
		s.mu.Lock()
		r.claimed, r.leaseOK = true, sent
		s.mu.Unlock()
		s.stats.claimed(1, 0)
	}
	if !s.launch(r) {
		// Stopped meanwhile: give back what the claim took.
		release()
		if spec.Scope == Global && !s.dead.Load() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if st, err := s.store(ctx); err == nil {
				st.finish(ctx, []finishItem{{runID: r.id, plugin: spec.Plugin, task: spec.ID, outcome: "failed", failure: "canceled", err: "the replica shut down as the run started"}})
			}
		}
		return Run{}, ErrDisabled
	}
	return Run{RunID: r.id, Plugin: spec.Plugin, Task: spec.ID, Replica: s.cfg.Replica, Trigger: "manual", Started: s.recordedStart(ctx, r.id), Outcome: "running"}, nil
}

// recordedStartNow is the start recorded for run runID of spec's task, if
// its row is written already, else now: a run canceled before it began
// starts, and ends, with its cancel. The row is read by its run id: it was
// looked for among the task's 5 newest, which a local task running on six
// replicas or more pushed it out of (TestCancelStartedAtWithManyReplicas).
func (s *Scheduler) recordedStartNow(ctx context.Context, runID string) time.Time {
	if st, err := s.store(ctx); err == nil {
		if r, ok, err := st.run(ctx, runID); err == nil && ok {
			return r.Started
		}
	}
	return time.Now().UTC()
}

// recordedStart returns the start of run runID as its history row has it
// (the database's clock and precision), so that the trigger's answer and
// the history agree. A global run's row is written by its claim, a local
// one's as the run begins: it waits a little for that, then falls back to
// now. The row is read by its run id, as in recordedStartNow
// (TestTriggerStartedAtWithManyReplicas).
func (s *Scheduler) recordedStart(ctx context.Context, runID string) time.Time {
	if st, err := s.store(ctx); err == nil {
		for range 50 {
			r, ok, err := st.run(ctx, runID)
			if err != nil {
				break
			}
			if ok {
				return r.Started
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return time.Now().UTC()
}
