package scheduler_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
	"github.com/greenroom-dev/greenroom/runtime/scheduler"
)

// A single node on SQLite: a global task runs on its schedule and its
// history and state show through the admin API.
func TestSQLiteSingleNode(t *testing.T) {
	in := start(t, "one", sqliteConf(t), plugin("sched", true,
		def{ID: "tick", Every: "1s"},
		def{ID: "fail", Every: "1s", Action: "error"},
	))
	waitFor(t, 15*time.Second, "two runs of each task", func() bool {
		return len(ended(history(t, in, "sched", "tick"), "succeeded")) >= 2 && len(ended(history(t, in, "sched", "fail"), "failed")) >= 2
	})
	l := list(t, in, "")
	tick := find(l, "sched", "tick")
	if tick == nil || tick.Scope != "global" || tick.Schedule != "every 1s" || tick.NextRun == nil || tick.LastOutcome != "succeeded" || tick.LastStart == nil || tick.LastDurationMS == nil {
		t.Fatalf("tick: %+v", tick)
	}
	fail := find(l, "sched", "fail")
	if fail == nil || fail.LastOutcome != "failed" || fail.LastFailure != "error" || !strings.Contains(fail.LastError, "task failed on purpose") {
		t.Fatalf("fail: %+v", fail)
	}
	if l.Replica != "one" || !l.Enabled {
		t.Errorf("list: %+v", l)
	}
}

// InitialDelay holds the first run back that long after the plugin loaded;
// a task without one runs within its first period.
func TestInitialDelay(t *testing.T) {
	t.Parallel()
	loaded := time.Now()
	in := start(t, "one", sqliteConf(t), plugin("sched", true,
		def{ID: "late", Every: "1s", InitialDelay: "3s"},
		def{ID: "soon", Every: "1s"},
	))
	waitFor(t, 20*time.Second, "a run of the delayed task", func() bool {
		return len(ended(history(t, in, "sched", "late"), "succeeded")) >= 1
	})
	soon := ended(history(t, in, "sched", "soon"), "succeeded")
	late := ended(history(t, in, "sched", "late"), "succeeded")
	first := late[0]
	for _, r := range late {
		if r.Started.Before(first.Started) {
			first = r
		}
	}
	if d := first.Started.Sub(loaded); d < 3*time.Second {
		t.Errorf("the delayed task first ran %v after the test started loading the plugin, want at least 3s", d)
	}
	if len(soon) < 2 {
		t.Errorf("the undelayed task ran %d times meanwhile, want at least 2", len(soon))
	}
}

// A task stuck in a loop is interrupted at its timeout; the run is failed,
// and the next runs still happen.
func TestTimeoutInterruptsLoop(t *testing.T) {
	t.Parallel()
	eachDB(t, testTimeoutInterruptsLoop)
}

// A Run that honours its ctx and returns ctx.Err() at its timeout timed
// out, as a stuck one does: its ctx ends at the same instant as the call,
// and which of the two ended the run first was a race ("error" about half
// the time).
func TestRunEndingAtItsTimeout(t *testing.T) {
	t.Parallel()
	in := start(t, "one", sqliteConf(t), plugin("sched", true,
		def{ID: "coop", Every: "1s", Timeout: "300ms", Action: "sleep", MS: 60000}))
	var runs []scheduler.Run
	waitFor(t, 30*time.Second, "six ended runs", func() bool {
		runs = ended(history(t, in, "sched", "coop"), "")
		return len(runs) >= 6
	})
	for _, r := range runs {
		if r.Outcome != "failed" || r.Failure != "timeout" || !strings.Contains(r.Error, "timeout of 300ms") {
			t.Errorf("run: %+v, want failed at its timeout", r)
		}
	}
}

// eachDB runs test on SQLite and on PostgreSQL, in parallel.
func eachDB(t *testing.T, test func(t *testing.T, db string)) {
	for _, b := range []struct {
		name string
		conf func(testing.TB) string
	}{{"sqlite", sqliteConf}, {"pg", pgConf}} {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			test(t, b.conf(t))
		})
	}
}

func testTimeoutInterruptsLoop(t *testing.T, db string) {
	in := start(t, "one", db, plugin("sched", true,
		def{ID: "loop", Every: "1s", Timeout: "300ms", Action: "loop"},
		def{ID: "tick", Every: "1s"},
	))
	var runs []scheduler.Run
	waitFor(t, 20*time.Second, "two timed-out runs", func() bool {
		runs = ended(history(t, in, "sched", "loop"), "")
		return len(runs) >= 2
	})
	for _, r := range runs {
		if r.Outcome != "failed" || r.Failure != "timeout" || !strings.Contains(r.Error, "timeout of 300ms") {
			t.Errorf("loop run: %+v", r)
		}
		if r.DurationMS == nil || *r.DurationMS > 5000 {
			t.Errorf("loop run took %v ms", r.DurationMS)
		}
	}
	// Each interrupted instance was discarded, as a request's is.
	if st := in.RT.Slot("sched").Plugin().Stats(); st.Discarded < int64(len(runs)) {
		t.Errorf("pool: %+v after %d timed-out runs, want each one's instance discarded", st, len(runs))
	}
	// The plugin is unharmed: its other task keeps succeeding.
	n := len(ended(history(t, in, "sched", "tick"), "succeeded"))
	waitFor(t, 10*time.Second, "another run of tick", func() bool {
		return len(ended(history(t, in, "sched", "tick"), "succeeded")) > n
	})
	// The metrics count the same runs.
	_, _, body := in.Get(t, "/metrics")
	for _, want := range []string{
		`greenroom_task_failures_total{kind="timeout"}`,
		`greenroom_task_runs_total{outcome="succeeded"}`,
		`greenroom_task_lateness_seconds_count`,
		`greenroom_tasks_registered 2`,
		// kinds that did not happen are listed at 0
		`greenroom_task_failures_total{kind="lost"} 0`,
		`greenroom_task_failures_total{kind="panic"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, `greenroom_task_failures_total{kind="timeout"} 0`) {
		t.Error("timed-out runs not counted")
	}
}

// A panic or a trap marks the run failed and discards the instance; the
// next due time runs anyway.
func TestPanicAndTrapDoNotStopTheSchedule(t *testing.T) {
	t.Parallel()
	in := start(t, "one", sqliteConf(t), plugin("sched", true,
		def{ID: "boom", Every: "1s", Action: "panic"},
		def{ID: "trap", Every: "1s", Action: "trap"}))
	for _, tc := range []struct{ task, failure, text string }{
		{"boom", "panic", "guest panicked"},
		{"trap", "trap", "greenroom.task_register: range [4294967280"},
	} {
		var runs []scheduler.Run
		waitFor(t, 20*time.Second, "two failed runs of "+tc.task, func() bool {
			runs = ended(history(t, in, "sched", tc.task), "")
			return len(runs) >= 2
		})
		for _, r := range runs {
			if r.Outcome != "failed" || r.Failure != tc.failure || !strings.Contains(r.Error, tc.text) {
				t.Errorf("%s run: %+v", tc.task, r)
			}
		}
	}
	// Each panic is one error line with its stack, as a handler's is (it
	// was stderr lines at info level, which a warn floor hid).
	panics := 0
	for _, l := range in.LogLines(t) {
		if l["level"] == "error" && l["task"] == "boom" && strings.HasPrefix(fmt.Sprint(l["msg"]), "panic in task boom: task panics on purpose") && strings.Contains(fmt.Sprint(l["stack"]), "main.") {
			panics++
		}
	}
	if panics < 2 {
		t.Errorf("%d error lines with the panic and its stack, want one per failed run:\n%s", panics, in.Log.String())
	}
	if st := in.RT.Slot("sched").Plugin().Stats(); st.Discarded < 4 {
		t.Errorf("pool: %+v, want the failed instances discarded", st)
	}
	st := in.RT.Scheduler().Stats()
	if st.Failures["panic"] < 2 || st.Failures["trap"] < 2 || st.Runs["failed"] < 4 || st.Lateness.Count < 4 || st.Tasks != 2 {
		t.Errorf("stats: %+v", st)
	}
}

// An error text holding a NUL byte (which PostgreSQL's text refuses) and
// invalid UTF-8 is recorded with U+FFFD in their place: the run ends, its
// lease is released, and the task runs again at its next due time.
func TestErrorTextWithNUL(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db string) {
		in := start(t, "one", db, plugin("sched", true, def{ID: "nul", Every: "1s", Action: "nul"}))
		const want = "nul \uFFFD byte, bad \uFFFD utf-8"
		var runs []scheduler.Run
		waitFor(t, 20*time.Second, "two ended runs", func() bool {
			runs = ended(history(t, in, "sched", "nul"), "")
			return len(runs) >= 2
		})
		for _, r := range runs {
			if r.Outcome != "failed" || r.Failure != "error" || r.Error != want {
				t.Errorf("run: %+v, want the error %q", r, want)
			}
		}
		if st := find(list(t, in, ""), "sched", "nul"); st == nil || st.LastError != want {
			t.Errorf("task: %+v, want the last error %q", st, want)
		}
	})
}

// A secret in a task's error is redacted before the error is cut to the
// history's 4096 bytes: cut first, a secret across the cut left its first
// bytes in the log and the history.
func TestErrorTextSecretAcrossCut(t *testing.T) {
	const secret = "s3cr3t-0123456789abcdef"
	conf := strings.Join([]string{sqliteConf(t), plugin("sched", true, def{ID: "secret", Every: "1s", Action: "secret"}),
		"[plugins.sched.config.secret]\nvalue = \"${SCHED_TEST_SECRET}\"\n"}, "\n")
	in := servertest.Start(t, conf, servertest.Options{CacheDir: cacheDir, Env: map[string]string{"SCHED_TEST_SECRET": secret},
		Runtime: runtime.Options{Replica: "one"}})
	var runs []scheduler.Run
	waitFor(t, 20*time.Second, "a failed run", func() bool {
		runs = ended(history(t, in, "sched", "secret"), "failed")
		return len(runs) >= 1
	})
	if e := runs[0].Error; strings.Contains(e, secret[:6]) || !strings.HasPrefix(e, "xxxx") {
		t.Errorf("history keeps part of the secret: ...%q", e[max(len(e)-40, 0):])
	}
	waitFor(t, 5*time.Second, "the failure in the log", func() bool { return strings.Contains(in.Log.String(), "task run failed") })
	if log := in.Log.String(); strings.Contains(log, secret[:6]) {
		t.Errorf("log keeps part of the secret:\n%s", log)
	}
}

// A secret the plugin encoded itself in a task's error (base64 of
// "user:" + secret, as an HTTP Basic header has it, URL-safe base64,
// hex) is redacted from the history, the task list's last error and the
// log, as the secret as written is: the run's error goes through the
// log's redactor.
func TestErrorTextEncodedSecretRedacted(t *testing.T) {
	const secret = "s3cr3t-0123456789abcdef"
	conf := strings.Join([]string{sqliteConf(t), plugin("sched", true, def{ID: "encoded", Every: "1s", Action: "encoded"}),
		"[plugins.sched.config.secret]\nvalue = \"${SCHED_TEST_SECRET}\"\n"}, "\n")
	in := servertest.Start(t, conf, servertest.Options{CacheDir: cacheDir, Env: map[string]string{"SCHED_TEST_SECRET": secret},
		Runtime: runtime.Options{Replica: "one"}})
	var runs []scheduler.Run
	waitFor(t, 20*time.Second, "a failed run", func() bool {
		runs = ended(history(t, in, "sched", "encoded"), "failed")
		return len(runs) >= 1
	})
	// "user:" is 5 bytes: the secret's base64 starts mid-group, and the
	// character before its run mixes it with the ':'.
	basic := base64.StdEncoding.EncodeToString([]byte("user:" + secret))
	want := "login refused: Authorization: Basic " + basic[:7] + "[REDACTED]" + basic[7+30:] + ", token "
	if e := runs[0].Error; !strings.HasPrefix(e, want) || strings.Count(e, "[REDACTED]") != 3 || strings.Contains(e, hex.EncodeToString([]byte(secret))[:16]) {
		t.Errorf("history: %q, want it to begin %q and hold 3 redactions", e, want)
	}
	if st := find(list(t, in, ""), "sched", "encoded"); st == nil || st.LastError != runs[0].Error {
		t.Errorf("task: %+v, want the last error %q", st, runs[0].Error)
	}
	waitFor(t, 5*time.Second, "the failure in the log", func() bool { return strings.Contains(in.Log.String(), "task run failed") })
	if log := in.Log.String(); strings.Contains(log, basic[7:7+30]) || strings.Contains(log, hex.EncodeToString([]byte(secret))[:16]) {
		t.Errorf("log keeps the encoded secret:\n%s", log)
	}
}

// A reload with a plugin version that no longer registers a task stops
// scheduling it; its history stays.
func TestReloadDropsTask(t *testing.T) {
	t.Parallel()
	eachDB(t, testReloadDropsTask)
}

func testReloadDropsTask(t *testing.T, db string) {
	in := start(t, "one", db, plugin("sched", true, def{ID: "keep", Every: "1s"}, def{ID: "drop", Every: "1s"}))
	waitFor(t, 15*time.Second, "runs of both tasks", func() bool {
		return len(ended(history(t, in, "sched", "drop"), "succeeded")) >= 1 && len(ended(history(t, in, "sched", "keep"), "succeeded")) >= 1
	})
	in.SetConfig(db + plugin("sched", true, def{ID: "keep", Every: "1s"}))
	if res := in.Reload(t); res.Plugins["sched"].Outcome != "reloaded" {
		t.Fatalf("reload: %+v", res)
	}
	time.Sleep(500 * time.Millisecond) // a run in progress when the reload came ends
	dropped := len(history(t, in, "sched", "drop"))
	kept := len(history(t, in, "sched", "keep"))
	time.Sleep(3 * time.Second)
	if n := len(history(t, in, "sched", "drop")); n != dropped {
		t.Errorf("the dropped task ran %d more times after the reload", n-dropped)
	}
	if n := len(history(t, in, "sched", "keep")); n <= kept {
		t.Errorf("the kept task stopped running after the reload")
	}
	l := list(t, in, "")
	if find(l, "sched", "drop") != nil || find(l, "sched", "keep") == nil {
		t.Errorf("after the reload, tasks: %+v", l.Tasks)
	}
	// Its history stays, listed with ?all=true.
	if st := find(list(t, in, "?all=true"), "sched", "drop"); st == nil || st.Registered || st.LastOutcome != "succeeded" {
		t.Errorf("dropped task with all=true: %+v", st)
	}
	// And a plugin removed from the config takes its tasks with it.
	in.SetConfig(db + plugin("other", true))
	in.Reload(t)
	if l := list(t, in, ""); len(l.Tasks) != 0 {
		t.Errorf("after removing the plugin: %+v", l.Tasks)
	}
}

// Without the scheduler grant, Schedule fails with an error naming the
// capability, the plugin still loads and serves, and nothing runs.
func TestScheduleWithoutCapability(t *testing.T) {
	t.Parallel()
	in := start(t, "one", sqliteConf(t), plugin("sched", false, def{ID: "tick", Every: "1s"}))
	status, _, body := in.Get(t, "/api/sched/init")
	if status != 200 || !strings.Contains(body, `capability \"scheduler\" not granted to plugin sched`) || !strings.Contains(body, "scheduler = true") {
		t.Fatalf("init: %d %s", status, body)
	}
	time.Sleep(2 * time.Second)
	if l := list(t, in, "?all=true"); len(l.Tasks) != 0 {
		t.Errorf("tasks: %+v", l.Tasks)
	}
	// A value all does not take is refused, as runs' are (it listed
	// only the registered tasks, silently).
	if status, _, body := in.Get(t, "/.greenroom/scheduler/v1/tasks?all=yes"); status != 400 || !strings.Contains(body, `all must be true or false, not \"yes\"`) {
		t.Errorf("?all=yes: %d %s", status, body)
	}
	if status, _ := trigger(t, in, "sched", "tick"); status != 404 {
		t.Errorf("trigger: %d", status)
	}
	if !strings.Contains(in.Log.String(), "not granted the scheduler") {
		t.Error("no warning in the log")
	}
}

// Invalid tasks fail the plugin's load with a reason naming the task,
// whatever the plugin does with Schedule's error.
func TestInvalidTaskFailsLoad(t *testing.T) {
	cases := []struct {
		name string
		defs []def
		want string
	}{
		{"cron out of range", []def{{ID: "a", Cron: "61 * * * *"}}, `task "a": cron "61 * * * *"`},
		{"cron seconds", []def{{ID: "a", Cron: "0 * * * * *"}}, "has 6 fields"},
		{"cron garbage", []def{{ID: "a", Cron: "every day"}}, `task "a": cron`},
		{"cron never", []def{{ID: "a", Cron: "0 0 30 2 *"}}, "never fires"},
		{"cron tz without space", []def{{ID: "a", Cron: "CRON_TZ=UTC"}}, "followed by a space"},
		{"cron bad zone", []def{{ID: "a", Cron: "CRON_TZ=Mars/Base 0 * * * *"}}, "bad location"},
		{"cron @every", []def{{ID: "a", Cron: "@every 5s"}}, "set Every instead"},
		{"both", []def{{ID: "a", Cron: "@hourly", Every: "1s"}}, "not both"},
		{"neither", []def{{ID: "a"}}, "set Cron or Every"},
		{"too often", []def{{ID: "a", Every: "100ms"}}, "between 1s"},
		{"negative timeout", []def{{ID: "a", Every: "1s", Timeout: "-1s"}}, "Timeout is -1s"},
		{"huge timeout", []def{{ID: "a", Every: "1s", Timeout: "48h"}}, "Timeout is 48h"},
		{"sub-millisecond timeout", []def{{ID: "a", Every: "1s", Timeout: "1ns"}}, `task "a": Timeout is 1ns; it must be 0 (the plugin's limits.timeout) or from 1ms`},
		{"negative delay", []def{{ID: "a", Every: "1s", InitialDelay: "-5s"}}, "InitialDelay"},
		{"duplicate", []def{{ID: "a", Every: "1s"}, {ID: "a", Every: "2s"}}, `task "a" is registered twice`},
		{"bad id", []def{{ID: "a/b", Every: "1s"}}, `task id "a/b" is invalid`},
		{"empty id", []def{{ID: "", Every: "1s"}}, `task id "" is invalid`},
		// Caught by the SDK itself, which panics in init for them.
		{"no run", []def{{ID: "a", Every: "1s", Action: "norun"}}, `task "a" has no Run function`},
		{"bad scope", []def{{ID: "a", Every: "1s", Scope: "bad"}}, `task "a": unknown scope 7`},
	}
	// One replica loads every case with a plugin that ignores Schedule's
	// error, and a few with one that panics on it.
	const strict = 3
	conf := []string{sqliteConf(t), plugin("ok", true, def{ID: "fine", Every: "1h"})}
	for i, tc := range cases {
		conf = append(conf, plugin(fmt.Sprintf("lax%d", i), true, tc.defs...))
		if i < strict {
			conf = append(conf, plugin(fmt.Sprintf("strict%d", i), true, tc.defs...)+fmt.Sprintf("[plugins.strict%d.config]\nstrict = true\n", i))
		}
	}
	in := start(t, "one", conf...)
	for i, tc := range cases {
		ids := []string{fmt.Sprintf("lax%d", i)}
		if i < strict {
			ids = append(ids, fmt.Sprintf("strict%d", i))
		}
		for _, id := range ids {
			state, reason := in.RT.Slot(id).Status()
			if state != "failed" || !strings.Contains(reason, tc.want) {
				t.Errorf("%s (%s): state %s, reason %q; want failed with %q", tc.name, id, state, reason, tc.want)
			}
		}
	}
	if state, _ := in.RT.Slot("ok").Status(); state != "ready" {
		t.Errorf("the valid plugin: %s", state)
	}
	if l := list(t, in, ""); len(l.Tasks) != 1 || l.Tasks[0].Plugin != "ok" {
		t.Errorf("tasks: %+v", l.Tasks)
	}
}

// Hostile registrations: a pointer outside memory traps (and fails the
// load when it happens in init), malformed bytes and calls after init get
// ErrInvalid with a message.
func TestHostileRegistration(t *testing.T) {
	in := start(t, "one", sqliteConf(t),
		plugin("trap", true)+"[plugins.trap.config]\nraw = \"badptr\"\n",
		plugin("garbage", true)+"[plugins.garbage.config]\nraw = \"garbage\"\n",
		plugin("huge", true)+"[plugins.huge.config]\nraw = \"huge-id\"\n",
		plugin("late", true),
		plugin("denied", false),
	)
	if state, reason := in.RT.Slot("trap").Status(); state != "failed" || !strings.Contains(reason, "greenroom.task_register: range [4294967280") {
		t.Errorf("trap: %s %q", state, reason)
	}
	for _, id := range []string{"garbage", "huge"} {
		status, _, body := in.Get(t, "/api/"+id+"/init")
		if status != 200 || !strings.Contains(body, `"raw_code":-3`) || !strings.Contains(body, "task_register: malformed") {
			t.Errorf("%s: %d %s", id, status, body)
		}
	}
	status, _, body := in.Get(t, "/api/late/raw?case=valid")
	if status != 200 || !strings.Contains(body, `"code":-3`) || !strings.Contains(body, "only be registered while the plugin initializes") {
		t.Errorf("after init: %d %s", status, body)
	}
	// Without the grant every call is denied, whatever else is wrong.
	status, _, body = in.Get(t, "/api/denied/raw?case=garbage")
	if status != 200 || !strings.Contains(body, `"code":-2`) || !strings.Contains(body, `capability \"scheduler\" not granted`) {
		t.Errorf("not granted: %d %s", status, body)
	}
	if l := list(t, in, ""); len(l.Tasks) != 0 {
		t.Errorf("tasks: %+v", l.Tasks)
	}
}

// Inside Run a task knows its run (TaskRunFrom) and its deadline, and its
// output is logged with the task's id.
func TestTaskContext(t *testing.T) {
	t.Parallel()
	in := start(t, "one", sqliteConf(t), plugin("sched", true,
		def{ID: "info", Cron: "@yearly", Timeout: "7s", Action: "info"},
		def{ID: "talk", Every: "1s", Action: "log"},
	))
	status, body := trigger(t, in, "sched", "info")
	var started scheduler.Run
	if status != 200 || json.Unmarshal([]byte(body), &started) != nil {
		t.Fatalf("trigger: %d %s", status, body)
	}
	var runs []scheduler.Run
	waitFor(t, 10*time.Second, "the triggered run", func() bool {
		runs = ended(history(t, in, "sched", "info"), "")
		return len(runs) == 1
	})
	want := "info ok=true task=info run=" + runs[0].RunID + " manual=true due=false deadline=true left=7s"
	if runs[0].Error != want {
		t.Errorf("run saw %q, want %q", runs[0].Error, want)
	}
	// The trigger's answer is the run the history keeps.
	if started.RunID != runs[0].RunID || !started.Started.Equal(runs[0].Started) {
		t.Errorf("trigger answered run %s started at %v; the history has %s started at %v", started.RunID, started.Started, runs[0].RunID, runs[0].Started)
	}
	waitFor(t, 10*time.Second, "a log line of the task", func() bool {
		for _, line := range strings.Split(in.Log.String(), "\n") {
			if strings.Contains(line, "hello from task talk") && strings.Contains(line, `"task":"talk"`) && strings.Contains(line, `"plugin":"sched"`) {
				return true
			}
		}
		return false
	})
}

// [scheduler] enabled = false: the replica runs nothing, lists its tasks,
// and refuses triggers with 503.
func TestDisabledReplica(t *testing.T) {
	t.Parallel()
	in := start(t, "off", sqliteConf(t), "[scheduler]\nenabled = false\n", plugin("sched", true, def{ID: "tick", Every: "1s"}))
	time.Sleep(1500 * time.Millisecond)
	l := list(t, in, "")
	if l.Enabled || len(l.Tasks) != 1 || l.Tasks[0].ID != "tick" || l.Tasks[0].LastOutcome != "" {
		t.Errorf("tasks: %+v", l)
	}
	if status, body := trigger(t, in, "sched", "tick"); status != 503 || !strings.Contains(body, "scheduler_disabled") {
		t.Errorf("trigger: %d %s", status, body)
	}
	// A task no plugin registers is 404 there too, as on any replica
	// (it answered 503 scheduler_disabled, as if it existed).
	if status, body := trigger(t, in, "sched", "nope"); status != 404 || !strings.Contains(body, "unknown_task") {
		t.Errorf("trigger of an unknown task: %d %s", status, body)
	}
	if status, body := cancelTask(t, in, "nope"); status != 404 || !strings.Contains(body, "unknown_task") {
		t.Errorf("cancel of an unknown task: %d %s", status, body)
	}
	if runs := history(t, in, "sched", "tick"); len(runs) != 0 {
		t.Errorf("runs: %+v", runs)
	}
}

// A task has the plugin's other capabilities, as a request does: here its
// database.
func TestTaskUsesPluginDatabase(t *testing.T) {
	t.Parallel()
	conf := strings.Replace(plugin("sched", true, def{ID: "mark", Every: "1s", Action: "db"}), "scheduler = true\n", "scheduler = true\ndatabase = true\n", 1)
	in := start(t, "one", sqliteConf(t), conf)
	waitFor(t, 15*time.Second, "two rows written by the task", func() bool {
		_, _, body := in.Get(t, "/api/sched/rows")
		return strings.Contains(body, `"rows":2`) || strings.Contains(body, `"rows":3`)
	})
}

// A transaction a task leaves open is rolled back when the run ends: what
// it wrote is gone and the next run is not blocked by it (on SQLite by its
// write lock; on PostgreSQL by its connection: five runs are more than
// the default db_max_conns of 4).
func TestTaskOpenTransactionRolledBack(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db string) {
		conf := strings.Replace(plugin("sched", true, def{ID: "leak", Every: "1s", Action: "opentx"}), "scheduler = true\n", "scheduler = true\ndatabase = true\n", 1)
		in := start(t, "one", db, conf)
		waitFor(t, 30*time.Second, "five runs of the leaking task", func() bool {
			return len(ended(history(t, in, "sched", "leak"), "")) >= 5
		})
		for _, r := range ended(history(t, in, "sched", "leak"), "") {
			if r.Outcome != "succeeded" {
				t.Errorf("run: %+v (a transaction left open by an earlier run blocked it?)", r)
			}
		}
		_, _, body := in.Get(t, "/api/sched/rows")
		if !strings.Contains(body, `"rows":0`) {
			t.Errorf("rows written in transactions left open are visible: %s", body)
		}
	})
}

// The admin API needs an admin credential.
func TestAdminAPINeedsCredential(t *testing.T) {
	in := start(t, "one", sqliteConf(t), plugin("sched", true, def{ID: "tick", Cron: "@yearly"}))
	for _, r := range []struct{ method, path string }{
		{"GET", "/.greenroom/scheduler/v1/tasks"},
		{"GET", "/.greenroom/scheduler/v1/tasks/sched/tick"},
		{"POST", "/.greenroom/scheduler/v1/tasks/sched/tick/trigger"},
	} {
		if status, _, _ := in.DoAnon(t, r.method, r.path, nil); status != 401 {
			t.Errorf("%s %s without a credential: %d", r.method, r.path, status)
		}
	}
	if runs := history(t, in, "sched", "tick"); len(runs) != 0 {
		t.Errorf("runs: %+v", runs)
	}
	if status, _, body := in.Get(t, "/.greenroom/scheduler/v1/tasks/sched/nope"); status != 404 || !strings.Contains(body, "unknown_task") {
		t.Errorf("unknown task: %d %s", status, body)
	}
}

// Triggers racing with a stop neither panic nor hang, and leave no lease
// behind.
func TestTriggerDuringStop(t *testing.T) {
	in := start(t, "one", sqliteConf(t), plugin("sched", true,
		def{ID: "g", Cron: "@yearly", Action: "sleep", MS: 50},
		def{ID: "l", Cron: "@yearly", Scope: "local", Action: "sleep", MS: 50}))
	sched := in.RT.Scheduler()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sched.Trigger(context.Background(), "sched", []string{"g", "l"}[i%2])
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sched.Stop(ctx); err != nil {
		t.Error(err)
	}
	close(stop)
	wg.Wait()
	if _, err := sched.Trigger(context.Background(), "sched", "g"); !errors.Is(err, scheduler.ErrDisabled) {
		t.Errorf("trigger after stop: %v", err)
	}
	for _, st := range list(t, in, "").Tasks {
		if st.Running {
			t.Errorf("still running after stop: %+v", st)
		}
	}
	for _, id := range []string{"g", "l"} {
		for _, r := range history(t, in, "sched", id) {
			if r.Outcome == "running" {
				t.Errorf("%s: run left running: %+v", id, r)
			}
		}
	}
}

// Run's ctx ends at the task's timeout and the call is interrupted a
// little later (a tenth of it): a Run that watches its ctx returns
// ctx.Err() every time. With both at the same instant it was interrupted
// first in about half the runs, its return never seen. The timeout is 2s,
// so that the guest has 200 ms to return: with 400ms (40 ms) one run in
// six was interrupted first when the package's tests ran on two busy
// cores.
func TestRunSeesItsTimeout(t *testing.T) {
	t.Parallel()
	in := start(t, "one", sqliteConf(t), plugin("sched", true, def{ID: "wait", Every: "1s", Timeout: "2s", Action: "sleep", MS: 10000}))
	var runs []scheduler.Run
	waitFor(t, 60*time.Second, "six timed-out runs", func() bool {
		runs = ended(history(t, in, "sched", "wait"), "")
		return len(runs) >= 6
	})
	for _, r := range runs {
		if r.Outcome != "failed" || r.Failure != "timeout" || r.Error != "ended at its timeout of 2s: context deadline exceeded" {
			t.Errorf("run: %s %s %q, want Run's own ctx.Err() at its timeout", r.Outcome, r.Failure, r.Error)
		}
	}
}

// A task that sets no timeout runs under the plugin's limits.timeout:
// one from the environment is a secret, which the admin API listed as the
// task's "timeout" ("2s" for "${T}" with T=2000ms) and its runs' errors
// quoted ("ended at its timeout of 2s"). A timeout the task sets is
// shown.
func TestTaskTimeoutFromTheEnvironmentNotTold(t *testing.T) {
	t.Parallel()
	conf := strings.Replace(plugin("sched", true, def{ID: "wait", Every: "1s", Action: "sleep", MS: 10000}, def{ID: "own", Cron: "@yearly", Timeout: "3s"}),
		`timeout = "10s"`, `timeout = "${GR_TEST_TASK_TIMEOUT}"`, 1)
	in := servertest.Start(t, sqliteConf(t)+"\n"+conf, servertest.Options{CacheDir: cacheDir, Runtime: runtime.Options{Replica: "one"},
		Env: map[string]string{"GR_TEST_TASK_TIMEOUT": "2000ms"}})
	l := list(t, in, "")
	if w, o := find(l, "sched", "wait"), find(l, "sched", "own"); w == nil || w.Timeout != "[REDACTED]" || o == nil || o.Timeout != "3s" {
		t.Errorf("tasks: wait %+v, own %+v; want wait's timeout [REDACTED], own's 3s", w, o)
	}
	var runs []scheduler.Run
	waitFor(t, 60*time.Second, "a timed-out run", func() bool {
		runs = ended(history(t, in, "sched", "wait"), "")
		return len(runs) >= 1
	})
	if r := runs[0]; r.Failure != "timeout" || r.Error != "ended at its timeout of [REDACTED]: context deadline exceeded" {
		t.Errorf("run: %s %s %q, want the timeout [REDACTED]", r.Outcome, r.Failure, r.Error)
	}
	if log := in.Log.String(); strings.Contains(log, "timeout of 2s") {
		t.Errorf("the log tells the timeout:\n%s", log)
	}
}

// A query parameter of the admin API given twice is a 400, whichever
// value comes first: readers differ on which counts (Fiber took the
// first, and ?runs=1&runs=200 answered 200 with one run).
func TestAdminQueryGivenTwice(t *testing.T) {
	in := start(t, "one", sqliteConf(t), plugin("sched", true, def{ID: "tick", Cron: "@yearly"}))
	for _, path := range []string{
		"/.greenroom/scheduler/v1/tasks/sched/tick?runs=1&runs=200",
		"/.greenroom/scheduler/v1/tasks/sched/tick?runs=5&runs=5",
		"/.greenroom/scheduler/v1/tasks?all=true&all=yes",
		"/.greenroom/scheduler/v1/tasks?all=1&all",
	} {
		if status, _, body := in.Get(t, path); status != 400 || !strings.Contains(body, `"bad_request"`) || !strings.Contains(body, "give it once") {
			t.Errorf("GET %s: %d %s", path, status, body)
		}
	}
	if status, _, body := in.Do(t, "POST", "/.greenroom/scheduler/v1/tasks/sched/tick/cancel?run_id=a&run_id=b", nil); status != 400 || !strings.Contains(body, "give it once") {
		t.Errorf("cancel with run_id twice: %d %s", status, body)
	}
	if status, _, body := in.Get(t, "/.greenroom/scheduler/v1/tasks/sched/tick?runs=5&all=true"); status != 200 {
		t.Errorf("two parameters once each: %d %s", status, body)
	}
}

// A cancel's run_id that is not a run id (24 lowercase hex digits) is a
// 400 naming it, on both databases, before any database is asked: on
// PostgreSQL a NUL byte or invalid UTF-8 in it made the statement fail,
// and the cancel of a global task answered 503 scheduler_unavailable
// (the database "cannot be reached") with an error line in the log.
func TestCancelRunIDThatIsNotARunID(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db string) {
		in := start(t, "one", db, plugin("sched", true, def{ID: "tick", Cron: "@yearly"}, def{ID: "near", Cron: "@yearly", Scope: "local"}))
		for _, task := range []string{"tick", "near"} {
			for _, q := range []string{"%00", "%ff", "0006617%00eb5c0d4b93f1a6c2", "00066171EB5C0D4B93F1A6C2", "..%2F..", strings.Repeat("a", 5000)} {
				status, _, body := in.Do(t, "POST", "/.greenroom/scheduler/v1/tasks/sched/"+task+"/cancel?run_id="+q, nil)
				if status != 400 || !strings.Contains(body, `"bad_request"`) || !strings.Contains(body, "is not a run id") || len(body) > 400 {
					t.Errorf("cancel %s with run_id=%.40s: %d %.500s", task, q, status, body)
				}
			}
			// A well-formed id of no run is still a 409.
			if status, _, body := in.Do(t, "POST", "/.greenroom/scheduler/v1/tasks/sched/"+task+"/cancel?run_id=00066171eb5c0d4b93f1a6c2", nil); status != 409 || !strings.Contains(body, `"task_not_running"`) {
				t.Errorf("cancel %s of an unknown run id: %d %s", task, status, body)
			}
		}
	})
}
