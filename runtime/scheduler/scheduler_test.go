package scheduler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sirupsen/logrus"
	"github.com/uptrace/bun"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/internal/syncbuf"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

// quietLog is a log for schedulers under test.
func quietLog() *logrus.Entry {
	log := logrus.New()
	log.SetLevel(logrus.ErrorLevel)
	return logrus.NewEntry(log)
}

// A scheduler without a database (no plugin is granted it, so the runtime
// never opened one) has no history to tidy and says nothing about it; it
// used to warn "cannot tidy the task history" every minute.
func TestJanitorWithoutDatabaseIsQuiet(t *testing.T) {
	defer func(d time.Duration) { tidyFirst = d }(tidyFirst)
	tidyFirst = time.Millisecond
	log := logrus.New()
	var buf syncbuf.Buffer
	log.SetOutput(&buf)
	tidied := make(chan struct{}, 1)
	s := New(Config{Enabled: true, Log: logrus.NewEntry(log), Lease: time.Minute,
		DB: func(context.Context) (*bun.DB, error) {
			select {
			case tidied <- struct{}{}:
			default:
			}
			return nil, ErrNoDatabase
		}})
	s.Start()
	select {
	case <-tidied:
	case <-time.After(10 * time.Second):
		t.Fatal("the janitor never looked for the database")
	}
	time.Sleep(200 * time.Millisecond) // it would warn now, before Stop
	s.Stop(context.Background())
	if strings.Contains(buf.String(), "cannot tidy") {
		t.Errorf("a scheduler without a database warned:\n%s", buf.String())
	}
}

// refuseNUL is a store whose finish refuses a batch in which an error text
// holds a NUL byte, as PostgreSQL does: SQLite stores one.
type refuseNUL struct{ store }

func (r refuseNUL) finish(ctx context.Context, fs []finishItem) error {
	for _, f := range fs {
		if strings.ContainsRune(f.err, 0) {
			return &pgconn.PgError{Severity: "ERROR", Code: "22021", Message: "invalid byte sequence for encoding \"UTF8\": 0x00"}
		}
	}
	return r.store.finish(ctx, fs)
}

// A batch of completions the database refuses because of one run does not
// leave the other runs of the batch (other plugins' here) "running" with
// their leases held: each is recorded on its own.
func TestFlushRecordsRunsDespiteABadOne(t *testing.T) {
	eachStore(t, func(t *testing.T, st store) {
		ctx := context.Background()
		if _, ok := st.(*sqliteStore); ok {
			st = refuseNUL{st}
		}
		s := New(Config{Log: quietLog()})
		s.st = st
		items := []finishItem{
			{runID: "good1", plugin: "p1", task: "t", outcome: "succeeded"},
			// Raw, not through errorText: the store refuses it.
			{runID: "bad", plugin: "p2", task: "t", outcome: "failed", failure: "error", err: "nul \x00 byte"},
			{runID: "good2", plugin: "p3", task: "t", outcome: "failed", failure: "error", err: "it broke"},
		}
		var batch []*finishReq
		for _, it := range items {
			task, err := NewTask(it.plugin, hostfuncs.TaskSpec{ID: it.task, Cron: "@yearly"}, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.register(ctx, []registration{{task: &task, next: task.first(time.Now()), at: time.Now()}}); err != nil {
				t.Fatal(err)
			}
			res, err := st.claim(ctx, "a", time.Minute, []claimItem{{plugin: it.plugin, task: it.task, manual: true, runID: it.runID}})
			if err != nil || !res[0].claimed {
				t.Fatalf("claim %s: %+v %v", it.runID, res, err)
			}
			batch = append(batch, &finishReq{item: it, done: make(chan struct{})})
		}
		s.flush(batch)
		for _, req := range batch {
			select {
			case <-req.done:
			default:
				t.Errorf("%s: not done", req.item.runID)
			}
		}
		rows, _, err := st.tasks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			runs, err := st.runs(ctx, r.plugin, r.task, 10)
			if err != nil || len(runs) != 1 {
				t.Fatalf("%s/%s: runs %+v %v", r.plugin, r.task, runs, err)
			}
			run := runs[0]
			if run.RunID == "bad" {
				if run.Outcome != "running" || r.runID != "bad" {
					t.Errorf("the refused run: %+v, task row %+v", run, r)
				}
				continue
			}
			if run.Outcome == "running" || r.runID != "" || r.leaseOwner != "" || r.lastRunID != run.RunID {
				t.Errorf("%s was not recorded because another run of its batch was refused: run %+v, task row %+v", run.RunID, run, r)
			}
		}
	})
}

// cancelAfterClaim is a store whose manual claim, once its statement has
// committed and taken the lease, cancels the context of the request that
// triggered it (a client that disconnects at that moment), which the
// driver then reports as it reads the result. A claim that skipped the
// row (the scheduler's own sync held it for a moment, as on a starved
// machine) leaves the request alone: Trigger then tries again.
type cancelAfterClaim struct {
	store
	cancel context.CancelFunc
}

func (c cancelAfterClaim) claim(ctx context.Context, replica string, lease time.Duration, items []claimItem) ([]claimResult, error) {
	res, err := c.store.claim(ctx, replica, lease, items)
	if err == nil && items[0].manual && len(res) > 0 && res[0].claimed {
		c.cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return res, err
}

// A client that disconnects while its trigger claims a global task: the
// claim took the lease, so the run starts anyway and releases it when it
// ends, rather than leaving it held until it expires.
func TestTriggerClaimOutlivesTheRequest(t *testing.T) {
	eachStore(t, func(t *testing.T, st store) {
		reqCtx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ran := make(chan struct{}, 1)
		s := New(Config{Enabled: true, Log: quietLog(), Lease: time.Minute,
			Run: func(ctx context.Context, _ string, c plugin.Call) (uint32, []byte, error) {
				c.Encode(nil, 0)
				ran <- struct{}{}
				return hostfuncs.HandleOK, nil, nil
			}})
		s.st = cancelAfterClaim{st, cancel}
		task, err := NewTask("p", hostfuncs.TaskSpec{ID: "t", Cron: "@yearly"}, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		s.SetTasks("p", []Task{task})
		s.Start()
		defer s.Stop(context.Background())
		run, err := s.Trigger(reqCtx, "p", "t")
		if err != nil {
			t.Fatalf("trigger: %v", err)
		}
		select {
		case <-ran:
		case <-time.After(10 * time.Second):
			t.Fatal("the triggered run did not run")
		}
		ctx := context.Background()
		deadline := time.Now().Add(10 * time.Second)
		for {
			runs, err := st.runs(ctx, "p", "t", 10)
			if err != nil {
				t.Fatal(err)
			}
			rows, _, err := st.tasks(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(runs) == 1 && runs[0].RunID == run.RunID && runs[0].Outcome == "succeeded" && rows[0].runID == "" && rows[0].leaseOwner == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the run did not end or release its lease: runs %+v, task row %+v", runs, rows)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// A run cut off by a reload's drain (its version closed under it, without
// Stop) says so; it read "interrupted in a host call at the call's
// deadline", which sounded like its own timeout.
func TestOutcomeOfARunCutByAReload(t *testing.T) {
	s := New(Config{Enabled: true, Log: quietLog(), Lease: time.Hour, Replica: "r"})
	r := &run{spec: Task{Timeout: time.Minute}}
	cut := &plugin.CallError{Plugin: "p", Kind: plugin.FailCanceled, Err: errors.New("interrupted in a host call at the call's deadline (recovered by wazero)")}
	outcome, failure, msg := s.outcome(r, 0, nil, cut, false, false)
	if outcome != "failed" || failure != "canceled" || !strings.Contains(msg, "a reload replaced the plugin version it ran on") || strings.Contains(msg, "deadline") {
		t.Errorf("%s %s %q", outcome, failure, msg)
	}
}

// A failing claim is logged at most every claimErrEvery, with how many
// were held back (a database down made one line per chunk of due tasks
// at every retry: 88 a second with 200 tasks).
func TestLineThrottle(t *testing.T) {
	var l lineThrottle
	start := time.Unix(1000, 0)
	if n, ok := l.take(start); !ok || n != 0 {
		t.Fatalf("first: %d %v", n, ok)
	}
	for i := range 10 {
		if _, ok := l.take(start.Add(time.Duration(i) * 100 * time.Millisecond)); ok {
			t.Fatalf("line %d within the interval let through", i)
		}
	}
	if n, ok := l.take(start.Add(claimErrEvery)); !ok || n != 10 {
		t.Errorf("after the interval: %d %v, want 10 held back", n, ok)
	}
}

// A run's end the database cannot take for a moment (a restart, a
// failover) is retried until the run's lease would be given up, not three
// quick attempts: an audit's PostgreSQL restart of 5 s left a succeeded
// run's end unrecorded, the run was marked lost when its lease expired,
// and its due time ran again. A run without a lease (a local run) waits
// no more than before: its task's next run waits for its end.
func TestFlushWaitsOutAShortOutage(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, st store) {
		ctx := context.Background()
		down := &reachable{store: st}
		s := New(Config{Log: quietLog(), Lease: 30 * time.Second})
		s.st = down
		task, err := NewTask("p", hostfuncs.TaskSpec{ID: "t", Cron: "@yearly"}, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.register(ctx, []registration{{task: &task, next: task.first(time.Now()), at: time.Now()}}); err != nil {
			t.Fatal(err)
		}
		if res, err := st.claim(ctx, "a", time.Minute, []claimItem{{plugin: "p", task: "t", manual: true, runID: "r1"}}); err != nil || !res[0].claimed {
			t.Fatalf("claim: %+v %v", res, err)
		}
		down.down.Store(true)
		req := &finishReq{item: finishItem{runID: "r1", plugin: "p", task: "t", outcome: "succeeded", leased: true}, done: make(chan struct{})}
		// A local run's end (no lease) in the same batch is not held
		// by the wait: its task would not run again meanwhile.
		local := &finishReq{item: finishItem{runID: "l1", plugin: "p", task: "l", outcome: "succeeded"}, done: make(chan struct{})}
		go s.flush([]*finishReq{req, local})
		select {
		case <-local.done:
		case <-time.After(2400 * time.Millisecond): // three attempts take 1.2 s
			t.Error("a local run's end waited with the leased run's for the database")
		}
		time.Sleep(2500 * time.Millisecond)
		down.down.Store(false)
		select {
		case <-req.done:
		case <-time.After(20 * time.Second):
			t.Fatal("flush did not return after the database came back")
		}
		runs, err := st.runs(ctx, "p", "t", 10)
		if err != nil || len(runs) != 1 || runs[0].Outcome != "succeeded" {
			t.Errorf("the run's end after a 2.5 s outage: %+v %v, want it recorded as succeeded", runs, err)
		}
	})
}
