package database_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// A replica held up (stopped, a paused VM, cut off) while it holds a
// cross-replica lock kept every other replica waiting for as long as that
// lasted (an audit: a replica stopped mid-migration kept another from
// starting for minutes). The server ends the lock's session once it has
// been idle for its bound, which the holder's heartbeat prevents while
// it is alive; a holder whose heartbeat fails has its critical section's
// context cancelled.
func TestPGHeldUpLockIsLetGo(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url := pgtest.URL(t)
	svc := database.New(database.Config{Client: database.ClientPG, Connection: url, Isolation: database.IsolationRole}, logrus.New())
	defer svc.Close()
	if err := svc.Open(ctx); err != nil {
		t.Fatal(err)
	}

	// Held up: no heartbeat. Another replica gets the lock once the
	// server has ended the idle session.
	database.SetLockTimings(t, url, time.Second, time.Hour)
	_, unlock, err := database.Lock(ctx, svc, "test:held-up")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	wait, cancelWait := context.WithTimeout(ctx, 10*time.Second)
	defer cancelWait()
	start := time.Now()
	_, unlock2, err := database.Lock(wait, svc, "test:held-up")
	if err != nil {
		t.Fatalf("the lock of a held-up replica was not let go: %v", err)
	}
	unlock2()
	t.Logf("taken over after %v", time.Since(start))

	// Alive: the heartbeat keeps the session past the idle bound.
	database.SetLockTimings(t, url, time.Second, 200*time.Millisecond)
	held, unlock3, err := database.Lock(ctx, svc, "test:alive")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock3()
	short, cancelShort := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer cancelShort()
	if _, _, err := database.Lock(short, svc, "test:alive"); err == nil {
		t.Fatal("a live replica's lock was taken from it")
	}
	if held.Err() != nil {
		t.Fatalf("a live replica's lock context ended: %v", context.Cause(held))
	}
	// Its session ended from outside: the critical section is told.
	if _, err := svc.DB().DB.ExecContext(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'greenroom lock' AND state = 'idle in transaction' AND datname = current_database()"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.Done():
		if !database.IsLockLost(context.Cause(held)) {
			t.Errorf("cause %v, want a lost lock", context.Cause(held))
		}
	case <-time.After(5 * time.Second):
		t.Error("the critical section was not told that its lock was lost")
	}
}

// A migration's transaction idle past its bound (the replica applying it
// held up between its statements) is ended by the server, so that the
// locks the migration took do not hold up every other replica; the
// held-up replica's load is retried, not failed for good, and nothing is
// recorded.
func TestPGHeldUpMigrationIsRetried(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	conf := backends[1].conf(t)
	database.SetMigrationIdleTimeout(t, connOf(t, conf), 500*time.Millisecond)
	database.SetMigrationCommitHook(t, connOf(t, conf), func(stage string) error {
		if stage == "before" {
			time.Sleep(1500 * time.Millisecond) // held up, the transaction idle
		}
		return nil
	})
	in := start(t, conf, plugin("alpha", true, "good", ""))
	database.SetMigrationCommitHook(t, connOf(t, conf), nil)
	st, reason := in.RT.Slot("alpha").Status()
	if st != "retrying" || !strings.Contains(reason, "held up") {
		t.Errorf("alpha: %s %q, want its load retried after it was held up", st, reason)
	}
	within(t, 15*time.Second, "alpha to load on its retry", func() bool {
		st, _ := in.RT.Slot("alpha").Status()
		return st == "ready"
	})
	if r := run(t, in, "alpha", query("SELECT count(*) FROM applied")); r[0].Error != "" || len(r[0].Rows) != 1 || r[0].Rows[0][0] != float64(1) {
		t.Errorf("002 applied %v (%s), want once", r[0].Rows, r[0].Error)
	}
}

// A plugin's transaction may sit idle on PostgreSQL until a second past
// its call's deadline, when the runtime rolls it back itself: only a
// replica held up with it open (stopped, a paused VM, cut off) leaves it
// idle longer, and its locks held up every other replica, the one that
// took over a global task among them, for as long as that lasted (an
// audit). Outside a transaction nothing is set.
func TestPGTransactionIdleBound(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	in := start(t, backends[1].conf(t), plugin("alpha", true, "", "timeout = \"7s\""))
	r := must(t, in, "alpha", step{Op: "begin"}, query("SHOW idle_in_transaction_session_timeout"), step{Op: "rollback"}, query("SHOW idle_in_transaction_session_timeout"))
	got, err := time.ParseDuration(r[1].Rows[0][0].(string))
	if err != nil {
		t.Fatalf("SHOW in the transaction: %v %q", err, r[1].Rows)
	}
	if got < 6*time.Second || got > 8*time.Second {
		t.Errorf("idle bound in a transaction of a 7s call: %v, want about 8s", got)
	}
	if v := r[3].Rows[0][0]; v != "0" {
		t.Errorf("idle bound outside a transaction: %v, want 0", v)
	}
	// The longest call (limits.timeout of 24h) sets its bound, under the
	// 2^31-1 ms (about 24.8 days) PostgreSQL takes, which setIdleBound
	// still cuts a longer one to.
	long := start(t, backends[1].conf(t), plugin("beta", true, "", "timeout = \"24h\""))
	r = must(t, long, "beta", step{Op: "begin"}, query("SHOW idle_in_transaction_session_timeout"), step{Op: "rollback"})
	if got, err := time.ParseDuration(r[1].Rows[0][0].(string)); err != nil || got < 23*time.Hour || got > 25*time.Hour {
		t.Errorf("idle bound in a transaction of a 24h call: %v %v, want about 24h", r[1].Rows[0][0], err)
	}
}

// In a global task's run the idle bound follows the run's fence, its
// lease deadline: set at Begin, and set again after a statement once a
// renewal has moved the fence.
func TestPGTransactionIdleBoundFollowsTheFence(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	svc := database.New(database.Config{Client: database.ClientPG, Connection: pgtest.URL(t), Isolation: database.IsolationRole}, logrus.New())
	defer svc.Close()
	if err := svc.Open(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := svc.Plugin(ctx, "alpha", database.Limits{MaxConns: 2, StatementTimeout: 5 * time.Second, MaxResult: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	in := &hostfuncs.Instance{Cancel: hostfuncs.NewFencedCancelRequest(make(chan struct{}), time.Now)}
	defer in.EndCall()
	in.Cancel.SetFence(time.Now().Add(30 * time.Second))
	tx, err := p.Begin(ctx, in, hostfuncs.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stmt := &hostfuncs.Statement{Tx: tx, SQL: "SELECT 1"}
	if _, err := p.Exec(ctx, in, stmt); err != nil {
		t.Fatal(err)
	}
	// A renewal moves the fence (here nearer, to see it applied): the
	// next statement sets the bound anew, and the server ends the
	// transaction once it has been idle that long.
	in.Cancel.SetFence(time.Now().Add(time.Second))
	if _, err := p.Exec(ctx, in, stmt); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	in.Cancel.SetFence(time.Now().Add(30 * time.Second))
	if _, err := p.Exec(ctx, in, stmt); err == nil || !strings.Contains(err.Error(), "idle-in-transaction timeout") {
		t.Errorf("a statement after the transaction sat idle past its fence: %v, want the server's idle-in-transaction timeout", err)
	}
}

// A replica held up between recording a migration and committing it
// (stopped, a paused VM) while the server ended its transaction and its
// lock, and another replica settled the record (aborted), applied the
// migration again and recorded it, must not, when it goes on, delete the
// other replica's record: its COMMIT fails, and it settles its own
// transaction (aborted), whose record is gone already. It deleted the row
// by the migration's name: the migration stayed applied, unrecorded, and
// every later load applied it again (here CREATE TABLE failed: "relation
// \"applied\" already exists", and the plugin no longer loaded anywhere).
func TestPGHeldUpMigrationLeavesTheTakeoversRecord(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	conf := backends[1].conf(t)
	database.SetMigrationIdleTimeout(t, connOf(t, conf), 500*time.Millisecond)
	database.SetLockTimings(t, connOf(t, conf), time.Second, time.Hour) // held up: no heartbeat
	held, resume := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	database.SetMigrationCommitHook(t, connOf(t, conf), func(stage string) error {
		if stage == "before" && first.CompareAndSwap(false, true) {
			close(held)
			<-resume // held up, its transaction and lock idle
		}
		return nil
	})
	aStarted := make(chan *servertest.Instance, 1)
	go func() { aStarted <- start(t, conf, plugin("alpha", true, "good", "")) }()
	select {
	case <-held:
	case <-time.After(60 * time.Second):
		t.Fatal("the first replica did not reach its first migration's commit")
	}
	b := start(t, conf, plugin("alpha", true, "good", ""))
	if st, reason := b.RT.Slot("alpha").Status(); st != "ready" {
		t.Fatalf("alpha on the replica that took over: %s %q", st, reason)
	}
	close(resume)
	var a *servertest.Instance
	select {
	case a = <-aStarted:
	case <-time.After(60 * time.Second):
		t.Fatal("the held-up replica did not start once it went on")
	}
	database.SetMigrationCommitHook(t, connOf(t, conf), nil)
	within(t, 15*time.Second, "alpha to load on the held-up replica", func() bool {
		st, _ := a.RT.Slot("alpha").Status()
		return st == "ready" || st == "failed"
	})
	if st, reason := a.RT.Slot("alpha").Status(); st != "ready" {
		t.Errorf("alpha on the held-up replica: %s %q", st, reason)
	}
	c := start(t, conf, plugin("alpha", true, "good", ""))
	if st, reason := c.RT.Slot("alpha").Status(); st != "ready" {
		t.Errorf("alpha on a replica started afterwards: %s %q", st, reason)
	}
	if r := run(t, b, "alpha", query("SELECT count(*) FROM applied")); r[0].Error != "" || len(r[0].Rows) != 1 || r[0].Rows[0][0] != float64(1) {
		t.Errorf("002 applied %v (%s), want once", r[0].Rows, r[0].Error)
	}
}
