package runtime

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"time"

	"github.com/tetratelabs/wazero/experimental"

	"github.com/greenroom-dev/greenroom/runtime/database"
)

// A plugin whose load fails on a database error that may pass by itself
// (database.Transient: the server unreachable, at its connection limit,
// restarting or failing over) and that has no version serving is not
// failed for good: it is retrying, loaded again in the background after
// retryFirst, then twice as long after each failure up to retryMax, until
// it loads, fails on another error (then it is failed), the next reload
// decides anew, or the runtime closes. Meanwhile its routes answer 503
// with the reason and when it tries next, and readiness is 503: a replica
// whose plugins cannot reach the database is not ready.
var (
	retryFirst = time.Second
	retryMax   = 30 * time.Second
)

// loadRetry is one plugin's retrying load.
type loadRetry struct{ cancel context.CancelFunc }

// retryLoad has slot s, whose load failed with err (database.Transient),
// loaded again in the background. Called under reloadMu.
func (r *Runtime) retryLoad(s *Slot, err error) {
	r.retryMu.Lock()
	defer r.retryMu.Unlock()
	if r.retriesDone {
		s.set(StateFailed, err)
		return
	}
	if old := r.retries[s]; old != nil {
		old.cancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	lr := &loadRetry{cancel: cancel}
	if r.retries == nil {
		r.retries = map[*Slot]*loadRetry{}
	}
	r.retries[s] = lr
	delay := retryFirst
	r.noteRetry(s, err, delay)
	r.retryWG.Add(1)
	go func() {
		defer r.retryWG.Done()
		defer r.forgetRetry(s, lr)
		ctx := experimental.WithCompilationWorkers(ctx, goruntime.NumCPU())
		for {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			delay = min(2*delay, retryMax)
			if !r.retryOnce(ctx, s, delay) {
				return
			}
		}
	}()
}

// retryOnce loads s again, and reports whether to try again after delay.
// All of it is decided under reloadMu, which reloads and Close take too:
// nothing is done once ctx ended (a reload or Close took over the slot),
// nor for a slot that is no longer the plugin's or that serves already,
// and the state it sets cannot overwrite what a reload decided.
func (r *Runtime) retryOnce(ctx context.Context, s *Slot, delay time.Duration) bool {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	cfg := r.cfg.Load()
	if ctx.Err() != nil || r.Slot(s.ID) != s || s.cur.Load() != nil || cfg.Plugins[s.ID] == nil {
		return false
	}
	// A runtime database that failed to open on the same error opens now.
	r.db.RetryOpen()
	err := r.loadSlot(ctx, cfg, s)
	switch {
	case ctx.Err() != nil:
		return false
	case err == nil:
		r.log.WithField("plugin", s.ID).Info("plugin loaded after retrying its load; it serves")
		return false
	case errors.Is(err, errUnchanged):
		return false // serving what the config asks for
	}
	err = fmt.Errorf("plugin %s: %w", s.ID, err)
	if !database.Transient(err) {
		s.set(StateFailed, err)
		r.log.WithField("plugin", s.ID).WithError(err).Error("plugin failed to load on retrying; its routes answer 503")
		return false
	}
	r.noteRetry(s, err, delay)
	return true
}

// noteRetry records and logs that s's load failed with err and is tried
// again in delay.
func (r *Runtime) noteRetry(s *Slot, err error, delay time.Duration) {
	s.setRetrying(err, time.Now().Add(delay))
	r.log.WithField("plugin", s.ID).WithError(err).WithField("retry_in", delay.String()).
		Warn("plugin failed to load; its load is retried " + database.RetryWhy(err) +
			"; its routes answer 503 and readiness is 503 meanwhile")
}

// forgetRetry drops lr, s's retry, once it ended.
func (r *Runtime) forgetRetry(s *Slot, lr *loadRetry) {
	lr.cancel()
	r.retryMu.Lock()
	defer r.retryMu.Unlock()
	if r.retries[s] == lr {
		delete(r.retries, s)
	}
}

// stopRetries cancels every retrying load: a reload decides anew, Close
// (final) also waits for them and allows no more. A load in progress is
// cancelled; the slot's state is then the caller's to set.
func (r *Runtime) stopRetries(final bool) {
	r.retryMu.Lock()
	for _, lr := range r.retries {
		lr.cancel()
	}
	if final {
		r.retriesDone = true
	}
	r.retryMu.Unlock()
	if final {
		r.retryWG.Wait()
	}
}
