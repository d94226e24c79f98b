package scheduler

import (
	"context"
	"encoding/binary"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

// skewedClock is the host's clock off by off: the clock of a replica
// whose time is wrong (no NTP).
type skewedClock struct {
	realClock
	off *atomic.Int64 // nanoseconds
}

func (c skewedClock) Now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

// fakeDBClock is a store whose clock due times go by is the scheduler's
// own (a fake clock's, in tests), as SQLite's is: it reads no clock from
// PostgreSQL, whose leases still go by its own.
type fakeDBClock struct{ store }

func (fakeDBClock) dbNow(context.Context) (time.Time, error) { return time.Time{}, nil }

func (f fakeDBClock) claim(ctx context.Context, replica string, lease time.Duration, items []claimItem) ([]claimResult, error) {
	res, err := f.store.claim(ctx, replica, lease, items)
	for i := range res {
		res[i].dbNow = time.Time{}
	}
	return res, err
}

// skewStart is one run as its guest call began: on which replica, when
// (the host's clock, which is the database's: it runs on this host), and
// for which due time.
type skewStart struct {
	replica string
	at, due time.Time
}

// startSkewedReplica starts replica name, whose clock is off by off, on
// st with one global task p/t due every second; each run's start is
// appended to starts.
func startSkewedReplica(t *testing.T, name string, off *atomic.Int64, st store, mu *sync.Mutex, starts *[]skewStart) *Scheduler {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	s := New(Config{Enabled: true, Log: logrus.NewEntry(log), Lease: testLease, Replica: name,
		Run: func(ctx context.Context, p string, c plugin.Call) (uint32, []byte, error) {
			at := time.Now()
			enc := c.Encode(nil, 0) // ... u64 due_ns, u8 flags
			due := time.Unix(0, int64(binary.LittleEndian.Uint64(enc[len(enc)-9:])))
			mu.Lock()
			*starts = append(*starts, skewStart{name, at, due})
			mu.Unlock()
			return 0, nil, nil
		}})
	startWithTask(t, s, st, skewedClock{off: off}, hostfuncs.TaskSpec{ID: "t", Every: time.Second})
	return s
}

// Replicas on one PostgreSQL database, one on time, one whose clock is
// 20 s ahead, one 20 s behind, and one whose clock is stepped 20 s ahead
// after 2 s (after it read the database's clock), share a global task due
// every second. Leases go by the database's clock, and so must due times:
// a replica that reckoned them by its own clock ran every due time 20 s
// before it was due (the one ahead claimed each as soon as its clock
// reached it, and skipped the 19 after the one the replica on time had
// stored). Each due time runs once, not before it is due, whoever runs
// it: the stepped replica's claim, sent early, begins its run at the due
// time by the database's clock as the claim read it, and the replica
// reads that clock again.
func TestPGSkewedReplicasRunDueTimesOnTheDatabasesClock(t *testing.T) {
	t.Parallel()
	st := openStore(t, database.Config{Client: database.ClientPG, Connection: pgtest.URL(t), Isolation: database.IsolationRole})
	var mu sync.Mutex
	var starts []skewStart
	var reps []*Scheduler
	stepped := new(atomic.Int64)
	for _, r := range []struct {
		name string
		off  time.Duration
	}{{"on-time", 0}, {"ahead", 20 * time.Second}, {"behind", -20 * time.Second}, {"stepped", 0}} {
		off := stepped
		if r.name != "stepped" {
			off = new(atomic.Int64)
			off.Store(int64(r.off))
		}
		reps = append(reps, startSkewedReplica(t, r.name, off, st, &mu, &starts))
	}
	time.Sleep(2 * time.Second)
	stepped.Store(int64(20 * time.Second))
	time.Sleep(3 * time.Second)
	for _, s := range reps {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.Stop(ctx)
		cancel()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(starts) < 3 {
		t.Fatalf("%d runs in 5 s of a task due every second: %+v", len(starts), starts)
	}
	seen := map[time.Time]string{}
	for i, r := range starts {
		// The guest call begins at the due time by the database's
		// clock, as the claim read it, or later (5 ms for the
		// database's rounding and the clocks' reading).
		if early := r.due.Sub(r.at); early > 5*time.Millisecond {
			t.Errorf("run %d on %s began %s before its due time %s", i, r.replica, early, r.due.UTC())
		}
		if other, ok := seen[r.due]; ok {
			t.Errorf("due time %s ran twice, on %s and %s", r.due.UTC(), other, r.replica)
		}
		seen[r.due] = r.replica
		if i > 0 {
			if gap := r.due.Sub(starts[i-1].due); gap <= 0 || gap%time.Second != 0 {
				t.Errorf("runs %d and %d: due times %s apart, want whole seconds of the task's grid", i-1, i, gap)
			}
		}
	}
	for _, r := range starts {
		t.Logf("%s ran due time %s at %+.3fs", r.replica, r.due.UTC().Format("15:04:05.000"), r.at.Sub(r.due).Seconds())
	}
}

// A replica alone on its database whose clock is stepped 20 s back while
// it runs a task due every second (NTP correcting it, an operator setting
// it) goes on running each due time when it comes: between two readings
// of the database's clock it counts time by its monotonic clock, which
// no step moves. Reckoned from its wall clock, it waited for the
// database's clock to be read again, 30 s, and for 20 s ran nothing.
func TestPGReplicaWhoseClockIsSteppedBackKeepsRunning(t *testing.T) {
	t.Parallel()
	st := openStore(t, database.Config{Client: database.ClientPG, Connection: pgtest.URL(t), Isolation: database.IsolationRole})
	var mu sync.Mutex
	var starts []skewStart
	off := new(atomic.Int64)
	s := startSkewedReplica(t, "stepped", off, st, &mu, &starts)
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(starts)
	}
	waitUntil("a first run", func() bool { return count() >= 1 })
	off.Store(int64(-20 * time.Second))
	n := count()
	stepped := time.Now()
	waitUntil("two more runs after the step", func() bool { return count() >= n+2 })
	if d := time.Since(stepped); d > 5*time.Second {
		t.Errorf("two more runs took %s after the step", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Stop(ctx)
	mu.Lock()
	defer mu.Unlock()
	for i, r := range starts {
		if early := r.due.Sub(r.at); early > 5*time.Millisecond {
			t.Errorf("run %d began %s before its due time %s", i, early, r.due.UTC())
		}
	}
}

// A cron task whose next match is over five years after the one it runs
// (February 29th on a Sunday, Tuesday, Thursday or Saturday: 2032, then
// 2048) runs that due time once, local or global, on a replica whose
// clock reads 2032-02-28T23:59:58.5Z. The parser looks five years ahead
// at most, and its zero time as the next due time made the task run back
// to back: 4901 global runs and 8250 local ones in these 4 s.
func TestCronWhoseNextMatchIsOverFiveYearsAway(t *testing.T) {
	for name, scope := range map[string]uint8{"global": hostfuncs.ScopeGlobal, "local": hostfuncs.ScopeLocal} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			off := new(atomic.Int64)
			off.Store(int64(time.Until(time.Date(2032, 2, 28, 23, 59, 58, 500e6, time.UTC))))
			clk := skewedClock{off: off}
			sq := openStore(t, database.Config{Client: database.ClientSQLite, Connection: t.TempDir()}).(*sqliteStore)
			sq.now = clk.Now // the host's clock is SQLite's
			log := logrus.New()
			log.SetOutput(io.Discard)
			var mu sync.Mutex
			var dues []time.Time
			s := New(Config{Enabled: true, Log: logrus.NewEntry(log), Lease: testLease, Replica: "r",
				Run: func(ctx context.Context, p string, c plugin.Call) (uint32, []byte, error) {
					enc := c.Encode(nil, 0) // ... u64 due_ns, u8 flags
					mu.Lock()
					dues = append(dues, time.Unix(0, int64(binary.LittleEndian.Uint64(enc[len(enc)-9:]))).UTC())
					mu.Unlock()
					return 0, nil, nil
				}})
			startWithTask(t, s, sq, clk, hostfuncs.TaskSpec{ID: "t", Cron: "0 0 29 2 */2", Scope: scope})
			time.Sleep(4 * time.Second)
			mu.Lock()
			defer mu.Unlock()
			if want := time.Date(2032, 2, 29, 0, 0, 0, 0, time.UTC); len(dues) != 1 || !dues[0].Equal(want) {
				t.Errorf("%d runs in the 4 s around %s (due times %v ...), want 1", len(dues), want, dues[:min(len(dues), 3)])
			}
		})
	}
}
