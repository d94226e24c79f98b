package scheduler

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/logging"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

// slowFinish is a store whose recording of run ends waits until release
// is closed: a database slowed down (an audit's 1000 tasks on SQLite).
type slowFinish struct {
	store
	release chan struct{}
}

func (s *slowFinish) finish(ctx context.Context, fs []finishItem) error {
	<-s.release
	return s.store.finish(ctx, fs)
}

// A run whose call returned before the shutdown's deadline, and that only
// waits for its end to be recorded, was not cut off: Stop does not name
// it (it reported runs that had succeeded as "still running", and the
// process exited 1; an audit), and its end is recorded before Stop
// returns.
func TestStopDoesNotCountRecordingAsRunning(t *testing.T) {
	t.Parallel()
	st := &slowFinish{store: openStore(t, database.Config{Client: database.ClientSQLite, Connection: "file:" + t.TempDir()}), release: make(chan struct{})}
	s := oneLocalRun(t, st, nil)
	time.Sleep(100 * time.Millisecond) // its end waits for the store
	go func() { time.Sleep(1500 * time.Millisecond); close(st.release) }()
	stopRecorded(t, s, st, 500*time.Millisecond)
}

// A run that returned but had not yet handed its end to the writer when
// the deadline passed (its goroutine slow between the two: a loaded
// machine) is waited for too: the writer stopped before the end reached
// it, and Stop returned nil with the run never recorded (a review).
func TestStopRecordsARunNotYetQueued(t *testing.T) {
	t.Parallel()
	st := openStore(t, database.Config{Client: database.ClientSQLite, Connection: "file:" + t.TempDir()})
	// Slow between the return and the hand-off.
	s := oneLocalRun(t, st, func(string) *logging.PluginLogger { time.Sleep(1500 * time.Millisecond); return nil })
	stopRecorded(t, s, st, 300*time.Millisecond)
}

// oneLocalRun starts a scheduler on st with one local task p/t whose run
// returns at once, triggers it, and waits until the run has returned.
func oneLocalRun(t *testing.T, st store, pluginLog func(string) *logging.PluginLogger) *Scheduler {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	log.SetLevel(logrus.DebugLevel) // a succeeded run's line is debug: logRun asks PluginLog
	returned := make(chan struct{}, 1)
	s := New(Config{Enabled: true, Log: logrus.NewEntry(log), Lease: testLease, Replica: "one", PluginLog: pluginLog,
		Run: func(ctx context.Context, p string, c plugin.Call) (uint32, []byte, error) {
			c.Encode(nil, 0)
			returned <- struct{}{}
			return 0, nil, nil
		}})
	s.st = st
	task, err := NewTask("p", hostfuncs.TaskSpec{ID: "t", Cron: "@yearly", Scope: hostfuncs.ScopeLocal}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s.SetTasks("p", []Task{task})
	s.Start()
	if _, err := s.Trigger(context.Background(), "p", "t"); err != nil {
		t.Fatal(err)
	}
	<-returned
	return s
}

// stopRecorded stops s with a deadline of d, which must cut nothing off,
// and checks that p/t's one run is recorded as succeeded.
func stopRecorded(t *testing.T, s *Scheduler, st store, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Errorf("stop: %v; want nil, the run returned before the deadline", err)
	}
	runs, err := st.runs(context.Background(), "p", "t", 10)
	if err != nil || len(runs) != 1 || runs[0].Outcome != "succeeded" {
		t.Errorf("runs after the stop: %+v %v; want the one recorded as succeeded", runs, err)
	}
}
