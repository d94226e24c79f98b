package scheduler_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/greenroom-dev/greenroom/runtime/scheduler"
)

// TestBenchmarkThousandTasks runs 1000 global tasks with a one-second
// period on three replicas against one PostgreSQL database, and reports
// how late runs start (p50, p99: from the due time to the start of the
// guest call) and the database's load per second. It takes about a
// minute, so it runs only when GREENROOM_SCHED_BENCH is set (to the
// measuring window, e.g. 30s); docs/benchmarks.md records its results:
//
//	GREENROOM_SCHED_BENCH=30s DATABASE_URL=... go test -run TestBenchmarkThousandTasks -v ./runtime/scheduler/
func TestBenchmarkThousandTasks(t *testing.T) {
	window, err := time.ParseDuration(os.Getenv("GREENROOM_SCHED_BENCH"))
	if err != nil {
		t.Skip("set GREENROOM_SCHED_BENCH to the measuring window (e.g. 30s) to run this benchmark")
	}
	const tasks = 1000
	url := pgtest.URL(t)
	conf := fmt.Sprintf(`
[log]
level = "warn"
access_log = false
[plugins.bench]
path = %q
[plugins.bench.capabilities]
scheduler = true
[plugins.bench.config]
generate = %d
generate_every = "1s"
`, tasksWasm, tasks)
	ins := replicas(t, 3, url, conf)
	db := openPG(t, url)

	// Warm up until every task ran, then measure a window.
	var n int
	waitFor(t, 60*time.Second, "every task to run", func() bool {
		db.QueryRow("SELECT count(*) FROM greenroom.scheduler_tasks WHERE last_outcome = 'succeeded'").Scan(&n)
		return n == tasks
	})
	time.Sleep(3 * time.Second)

	type snap struct {
		at                               time.Time
		commits, fetched, ins, upd, dels int64
		samples                          []int
		runs                             []int64
	}
	take := func() snap {
		s := snap{at: time.Now()}
		if err := db.QueryRow(`SELECT xact_commit, tup_fetched, tup_inserted, tup_updated, tup_deleted
FROM pg_stat_database WHERE datname = current_database()`).Scan(&s.commits, &s.fetched, &s.ins, &s.upd, &s.dels); err != nil {
			t.Fatal(err)
		}
		for _, in := range ins {
			st := in.RT.Scheduler().Stats()
			s.samples = append(s.samples, len(in.RT.Scheduler().LatenessSamples()))
			s.runs = append(s.runs, st.Runs["succeeded"]+st.Runs["failed"])
		}
		return s
	}
	// pg_stat_database is updated at most once a second per backend.
	time.Sleep(1100 * time.Millisecond)
	a := take()
	time.Sleep(window)
	time.Sleep(1100 * time.Millisecond)
	b := take()
	secs := b.at.Sub(a.at).Seconds()

	var late []time.Duration
	var total int64
	var failures map[string]int64
	perReplica := ""
	for i, in := range ins {
		sched := in.RT.Scheduler()
		all := sched.LatenessSamples()
		if len(all) >= 1<<16 {
			t.Fatal("the window is too long for the lateness samples; shorten it")
		}
		late = append(late, all[a.samples[i]:]...)
		runs := b.runs[i] - a.runs[i]
		total += runs
		st := sched.Stats()
		failures = st.Failures
		perReplica += fmt.Sprintf(" %s:%.0f/s", sched.Replica(), float64(runs)/secs)
	}
	t.Logf("%d tasks every 1s on 3 replicas, measured for %.1fs", tasks, secs)
	t.Logf("runs: %.0f/s in total (%s), failures on the last replica: %v", float64(total)/secs, perReplica, failures)
	t.Logf("lateness: p50 %s, p90 %s, p99 %s, max %s (%d runs)",
		scheduler.Quantile(late, 0.5), scheduler.Quantile(late, 0.9), scheduler.Quantile(late, 0.99), scheduler.Quantile(late, 1), len(late))
	t.Logf("database: %.0f transactions/s, rows/s: %.0f fetched, %.0f inserted, %.0f updated, %.0f deleted",
		float64(b.commits-a.commits)/secs, float64(b.fetched-a.fetched)/secs, float64(b.ins-a.ins)/secs, float64(b.upd-a.upd)/secs, float64(b.dels-a.dels)/secs)
	if p99 := scheduler.Quantile(late, 0.99); p99 > 250*time.Millisecond {
		t.Logf("p99 lateness %s is over the 250ms target", p99)
	}
}
