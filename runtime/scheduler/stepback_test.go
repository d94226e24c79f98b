package scheduler

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
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

// steppedDBClock is a PostgreSQL store whose server's clock, as the
// replica reads it, is off by off: the database host's clock stepped.
// (The server's leases still go by its own clock; the due times the
// replica reckons go by what it reads.)
type steppedDBClock struct {
	store
	off *atomic.Int64
}

func (s steppedDBClock) dbNow(ctx context.Context) (time.Time, error) {
	t, err := s.store.dbNow(ctx)
	return t.Add(time.Duration(s.off.Load())), err
}

func (s steppedDBClock) claim(ctx context.Context, replica string, lease time.Duration, items []claimItem) ([]claimResult, error) {
	res, err := s.store.claim(ctx, replica, lease, items)
	for i := range res {
		res[i].dbNow = res[i].dbNow.Add(time.Duration(s.off.Load()))
	}
	return res, err
}

// A clock stepped back an hour (NTP correcting a host whose clock ran
// ahead) while a task due every second runs: the host's clock on SQLite,
// the database server's as the replica reads it on PostgreSQL. Due times
// are absolute, on the clock stepped: reckoned as they were, every task
// waited the hour out, local and global alike, its next due time an hour
// ahead. The scheduler sees the step (the clock's reading against its
// monotonic clock) and moves each task's next due time by it: two more
// runs follow within a few seconds.
func TestClockSteppedBackKeepsTasksRunning(t *testing.T) {
	for _, c := range []struct {
		name  string
		pg    bool
		scope uint8
	}{
		{"sqlite-global", false, hostfuncs.ScopeGlobal},
		{"sqlite-local", false, hostfuncs.ScopeLocal},
		{"pg-global", true, hostfuncs.ScopeGlobal},
		{"pg-local", true, hostfuncs.ScopeLocal},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			off := new(atomic.Int64)
			var st store
			var clk clock = realClock{}
			if c.pg {
				st = steppedDBClock{openStore(t, database.Config{Client: database.ClientPG, Connection: pgtest.URL(t), Isolation: database.IsolationRole}), off}
			} else {
				sc := skewedClock{off: off}
				sq := openStore(t, database.Config{Client: database.ClientSQLite, Connection: t.TempDir()}).(*sqliteStore)
				sq.now = sc.Now // the host's clock is SQLite's
				st, clk = sq, sc
			}
			log := logrus.New()
			log.SetOutput(io.Discard)
			var mu sync.Mutex
			var dues []time.Time
			s := New(Config{Enabled: true, Log: logrus.NewEntry(log), Lease: testLease, Replica: "r",
				Run: func(ctx context.Context, p string, call plugin.Call) (uint32, []byte, error) {
					enc := call.Encode(nil, 0) // ... u64 due_ns, u8 flags
					mu.Lock()
					dues = append(dues, time.Unix(0, int64(binary.LittleEndian.Uint64(enc[len(enc)-9:]))).UTC())
					mu.Unlock()
					return 0, nil, nil
				}})
			startWithTask(t, s, st, clk, hostfuncs.TaskSpec{ID: "t", Every: time.Second, Scope: c.scope})
			count := func() int {
				mu.Lock()
				defer mu.Unlock()
				return len(dues)
			}
			deadline := time.Now().Add(10 * time.Second)
			for count() < 1 {
				if time.Now().After(deadline) {
					t.Fatal("no first run in 10 s")
				}
				time.Sleep(10 * time.Millisecond)
			}
			off.Store(int64(-time.Hour))
			// The replica finds the step at its next claim, whose reading of the
			// database's clock is off its reckoning (or at its next reading,
			// every 30 s).
			n := count()
			deadline = time.Now().Add(6 * time.Second)
			for count() < n+3 {
				if time.Now().After(deadline) {
					mu.Lock()
					t.Fatalf("%d runs in the 6 s after the clock was stepped back an hour, want 3 (due times %v)", len(dues)-n, dues)
				}
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			for i := n + 2; i < len(dues); i++ { // the first may be one reckoned before the step
				if !dues[i].After(dues[i-1]) {
					t.Errorf("due times %s then %s after the step: not increasing", dues[i-1], dues[i])
				}
			}
		})
	}
}

// After a step back of the clock, an Every task's due time moves back by
// the step; a cron task's becomes the next match, but for a fixed-time
// expression and a step of at most three hours, whose wall times already
// run are not run again (vixie cron).
func TestSteppedDue(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		spec      hostfuncs.TaskSpec
		due       string
		back      time.Duration
		now, want string
	}{
		{hostfuncs.TaskSpec{Every: time.Hour}, "2027-01-01T11:00:00Z", time.Hour, "2027-01-01T09:00:30Z", "2027-01-01T10:00:00Z"},
		{hostfuncs.TaskSpec{Cron: "*/5 * * * *"}, "2027-01-01T10:10:00Z", time.Hour, "2027-01-01T09:05:30Z", "2027-01-01T09:10:00Z"},
		{hostfuncs.TaskSpec{Cron: "CRON_TZ=Europe/Paris */5 * * * *"}, "2027-01-01T10:10:00Z", time.Hour, "2027-01-01T09:05:30Z", "2027-01-01T09:10:00Z"},
		{hostfuncs.TaskSpec{Cron: "0 3 * * *"}, "2027-01-02T03:00:00Z", time.Hour, "2027-01-01T02:00:30Z", "2027-01-02T03:00:00Z"},
		{hostfuncs.TaskSpec{Cron: "CRON_TZ=Europe/Paris 0 3 * * *"}, "2027-01-02T02:00:00Z", time.Hour, "2027-01-01T01:00:30Z", "2027-01-02T02:00:00Z"},
		{hostfuncs.TaskSpec{Cron: "0 3 * * *"}, "2027-01-02T03:00:00Z", 48 * time.Hour, "2026-12-30T03:00:30Z", "2026-12-31T03:00:00Z"},
		{hostfuncs.TaskSpec{Cron: "@hourly"}, "2027-01-01T11:00:00Z", 90 * time.Minute, "2027-01-01T08:40:00Z", "2027-01-01T09:00:00Z"},
	} {
		c.spec.ID = "t"
		task, err := NewTask("p", c.spec, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if got := task.steppedDue(at(c.due), c.back, at(c.now)); !got.Equal(at(c.want)) {
			t.Errorf("%s, due %s, stepped back %s to %s: %s, want %s", task.Schedule(), c.due, c.back, c.now, got.Format(time.RFC3339), c.want)
		}
	}
}

// reschedule moves a global task's next_run only from the due time given,
// and not while a run holds its lease; it answers the row's next_run.
func TestStoreReschedule(t *testing.T) {
	for name, cfg := range map[string]database.Config{
		"sqlite": {Client: database.ClientSQLite, Connection: t.TempDir()},
		"pg":     {Client: database.ClientPG, Connection: pgtest.URL(t), Isolation: database.IsolationRole},
	} {
		t.Run(name, func(t *testing.T) {
			st := openStore(t, cfg)
			ctx := context.Background()
			task, err := NewTask("p", hostfuncs.TaskSpec{ID: "t", Every: time.Hour}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			now := trunc(time.Now())
			first := now.Add(time.Hour)
			if _, err := st.register(ctx, []registration{{task: &task, next: first, at: now}}); err != nil {
				t.Fatal(err)
			}
			earlier := now.Add(time.Minute)
			if got, err := st.reschedule(ctx, "p", "t", first.Add(time.Second), earlier); err != nil || !got.Equal(first) {
				t.Fatalf("reschedule from a due time the row does not have: %s, %v; want the row's %s unmoved", got, err, first)
			}
			if got, err := st.reschedule(ctx, "p", "t", first, earlier); err != nil || !got.Equal(earlier) {
				t.Fatalf("reschedule: %s, %v; want %s", got, err, earlier)
			}
			res, err := st.claim(ctx, "r", time.Minute, []claimItem{{plugin: "p", task: "t", due: earlier, runID: newRunID()}})
			if err != nil || !res[0].claimed {
				t.Fatalf("claim: %+v, %v", res, err)
			}
			if got, err := st.reschedule(ctx, "p", "t", earlier, now); err != nil || !got.Equal(earlier) {
				t.Fatalf("reschedule while a run holds the lease: %s, %v; want %s unmoved", got, err, earlier)
			}
			if got, err := st.reschedule(ctx, "p", "none", earlier, now); err != nil || !got.IsZero() {
				t.Fatalf("reschedule of a task without a row: %s, %v", got, err)
			}
		})
	}
}

// A replica that registers a global task whose last run began after now
// (the clock due times go by was stepped back while no replica ran to see
// it) stores its first due time from now when that is earlier than the
// row's: the row's, an hour ahead, kept it idle for the hour. A row whose
// last run began before now keeps its due time, as does one whose lease
// a run holds.
func TestStoreRegisterAfterClockSteppedBack(t *testing.T) {
	for name, cfg := range map[string]database.Config{
		"sqlite": {Client: database.ClientSQLite, Connection: t.TempDir()},
		"pg":     {Client: database.ClientPG, Connection: pgtest.URL(t), Isolation: database.IsolationRole},
	} {
		t.Run(name, func(t *testing.T) {
			st := openStore(t, cfg)
			var db *sql.DB
			var stamp func(time.Time) any
			switch x := st.(type) {
			case *pgStore:
				db, stamp = x.db, func(v time.Time) any { return v }
			case *sqliteStore:
				db, stamp = x.db, func(v time.Time) any { return v.UnixMicro() }
			}
			ctx := context.Background()
			task, err := NewTask("p", hostfuncs.TaskSpec{ID: "t", Every: time.Hour}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			now := trunc(time.Now())
			ahead := now.Add(2 * time.Hour)
			if _, err := st.register(ctx, []registration{{task: &task, next: ahead, at: now}}); err != nil {
				t.Fatal(err)
			}
			set := func(lastStart time.Time) {
				t.Helper()
				if _, err := db.ExecContext(ctx, rebind(st, "UPDATE scheduler_tasks SET last_start = ?, next_run = ? WHERE plugin = 'p' AND task = 't'"), stamp(lastStart), stamp(ahead)); err != nil {
					t.Fatal(err)
				}
			}
			set(now.Add(-time.Minute))
			if got, err := st.register(ctx, []registration{{task: &task, next: now, at: now}}); err != nil || !got[0].Equal(ahead) {
				t.Fatalf("register, the last run begun a minute ago: %v, %v; want the row's %s", got, err, ahead)
			}
			set(now.Add(time.Hour))
			if got, err := st.register(ctx, []registration{{task: &task, next: now, at: now}}); err != nil || !got[0].Equal(now) {
				t.Fatalf("register, the last run begun an hour after now: %v, %v; want the first due time from now, %s", got, err, now)
			}
			set(now.Add(time.Hour))
			res, err := st.claim(ctx, "r", time.Minute, []claimItem{{plugin: "p", task: "t", due: ahead, runID: newRunID()}})
			if err != nil || !res[0].claimed {
				t.Fatalf("claim: %+v, %v", res, err)
			}
			if got, err := st.register(ctx, []registration{{task: &task, next: now, at: now}}); err != nil || !got[0].Equal(ahead) {
				t.Fatalf("register while a run holds the lease: %v, %v; want the row's %s", got, err, ahead)
			}
		})
	}
}

// rebind writes ? placeholders as $n for PostgreSQL.
func rebind(st store, q string) string {
	if _, ok := st.(*pgStore); !ok {
		return q
	}
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// monoDBClock is a store whose database clock is clk's monotonic one (the
// database's own clock, which no step of this host's moves), counting its
// readings.
type monoDBClock struct {
	store
	clk   *fakeClock
	reads *atomic.Int32
}

func (m monoDBClock) dbNow(context.Context) (time.Time, error) {
	m.reads.Add(1)
	return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).Add(m.clk.Mono()), nil
}

// A replica reads the database's clock again every 30 s on its monotonic
// clock: with the host's clock stepped back an hour it went an hour
// without a reading (when the last was taken went by the wall clock), and
// a step of the database's clock in that hour went unseen by a replica
// running only local tasks, which no claim made read it.
func TestDatabaseClockReadAgainAfterHostClockStep(t *testing.T) {
	clk := newFakeClock(t)
	reads := new(atomic.Int32)
	log := logrus.New()
	log.SetOutput(io.Discard)
	s := New(Config{Enabled: true, Log: logrus.NewEntry(log), Lease: testLease, Replica: "r"})
	s.clk = clk
	s.st = monoDBClock{openStore(t, database.Config{Client: database.ClientSQLite, Connection: t.TempDir()}), clk, reads}
	ctx := context.Background()
	if err := s.dbClock(ctx); err != nil {
		t.Fatal(err)
	}
	n := reads.Load()
	clk.stepWall(-time.Hour)
	clk.AdvanceTo(clk.now.Add(clockEvery + time.Second))
	if err := s.dbClock(ctx); err != nil {
		t.Fatal(err)
	}
	if reads.Load() == n {
		t.Errorf("the database's clock was not read again %s after the last reading, the host's clock stepped back an hour meanwhile", clockEvery+time.Second)
	}
}
