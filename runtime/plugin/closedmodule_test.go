package plugin

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

// stdoutBlockingHost is testHost whose Log blocks on the line "hello from
// stdout" (the hostile guest's /stdout) until release is closed: a host
// call that does not come back when the call is interrupted, so that the
// instance is still in its call when its version closes.
type stdoutBlockingHost struct {
	testHost
	entered chan struct{}
	release chan struct{}
}

func (h stdoutBlockingHost) Log(in *hostfuncs.Instance, rec *hostfuncs.LogRecord) int32 {
	if rec.Message == "hello from stdout" {
		select {
		case h.entered <- struct{}{}:
		default:
		}
		<-h.release
	}
	return h.testHost.Log(in, rec)
}

// A version closed (a reload replaced it) while one of its instances is
// still in a call that the interrupt did not bring back (here a host call
// that blocks; with limits.interruptible = false, a guest loop) gives its
// compiled module back: closed in wazero, and dropped from the engine,
// while the instance still runs. That is safe: wazero's Close of a
// compiled module only forgets it (its machine code is unmapped by a
// finalizer once nothing refers to it, and the running instance does), and
// a trap's stack trace is built from the instance's own module then. The
// instance comes back later, after collections that would have run that
// finalizer, executes its module's code again, and ends; the process
// lives on and the new version serves. Run in a child process, whose crash
// (a SIGSEGV in the guest's code, were the code unmapped) would otherwise
// take the whole test binary with it.
func TestVersionClosedUnderAStuckInstance(t *testing.T) {
	if os.Getenv("GREENROOM_TEST_CLOSED_MODULE") == "1" {
		closedModuleChild()
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestVersionClosedUnderAStuckInstance$", "-test.count=1")
	cmd.Env = append(os.Environ(), "GREENROOM_TEST_CLOSED_MODULE=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil || !strings.Contains(out.String(), "the stuck instance came back under its closed module") {
		t.Fatalf("the child process: %v\n%s", err, firstLines(out.String(), 30))
	}
	t.Logf("the child process:\n%s", firstLines(out.String(), 5))
}

func closedModuleChild() {
	fail := func(code int, msg string) {
		println(msg)
		os.Exit(code)
	}
	ctx := context.Background()
	eng := NewEngine(testCache, "")
	l := logrus.New()
	l.SetLevel(logrus.ErrorLevel)
	log := logrus.NewEntry(l)
	host := stdoutBlockingHost{testHost: testHost{log: log}, entered: make(chan struct{}, 1), release: make(chan struct{})}
	lim := testLimits()
	lim.Timeout = 200 * time.Millisecond
	old, err := Load(ctx, Spec{ID: "stuck", Wasm: hostileWasm, Limits: lim, Log: log, Host: host, Engine: eng})
	if err != nil {
		fail(3, "load: "+err.Error())
	}
	type answer struct {
		status int
		err    error
	}
	stuck := make(chan answer, 1)
	go func() {
		s, _, err := get(old, "/stdout")
		stuck <- answer{s, err}
	}()
	select {
	case <-host.entered:
	case <-time.After(10 * time.Second):
		fail(4, "the call never reached the blocking host call")
	}
	// The reload: a new version of another module (another memory cap
	// compiles anew), then the old one closed with a short drain. Its
	// call is interrupted, does not come back within interruptWait, and
	// is left running.
	lim2 := lim
	lim2.Memory = 48 << 20
	next, err := Load(ctx, Spec{ID: "stuck", Wasm: hostileWasm, Limits: lim2, Log: log, Host: testHost{log: log}, Engine: eng})
	if err != nil {
		fail(5, "load of the new version: "+err.Error())
	}
	eng.mu.Lock()
	before := len(eng.modules)
	eng.mu.Unlock()
	cctx, ccancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer ccancel()
	if err := old.Close(cctx); err == nil {
		fail(6, "close: the stuck call was not reported as still running")
	}
	eng.mu.Lock()
	after := len(eng.modules)
	eng.mu.Unlock()
	if before != 2 || after != 1 {
		println("compiled modules before the close:", before, "after:", after)
		fail(7, "the old version's compiled module was not released at its close")
	}
	// Collections that would run the finalizer unmapping the closed
	// module's machine code, were nothing else referring to it.
	for range 5 {
		goruntime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	close(host.release)
	select {
	case a := <-stuck:
		if a.err == nil && a.status != 200 {
			println("status:", a.status)
			fail(8, "the stuck call came back with neither an answer nor an error")
		}
		if a.err != nil {
			println("the stuck call ended:", a.err.Error())
		}
	case <-time.After(10 * time.Second):
		fail(9, "the stuck call never came back once its host call returned")
	}
	for range 3 {
		goruntime.GC()
	}
	if s, body, err := get(next, "/ok"); err != nil || s != 200 {
		println("new version:", s, body)
		fail(10, "the new version does not serve after the old one's stuck instance ended")
	}
	next.Close(ctx)
	eng.Close(ctx)
	println("the stuck instance came back under its closed module")
	os.Exit(0)
}
