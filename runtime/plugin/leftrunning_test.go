package plugin

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// busyLoopModule is a loadable module whose greenroom_handle loops for
// ever adding one to the i32 at address 0 of its memory: with
// limits.interruptible = false nothing stops it.
func busyLoopModule() []byte {
	// (loop (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1))) (br 0)) unreachable
	handle := []byte{0, 0x03, 0x40, 0x41, 0, 0x41, 0, 0x28, 2, 0, 0x41, 1, 0x6a, 0x36, 2, 0, 0x0c, 0, 0x0b, 0x00, 0x0b}
	return rawModule(false, handle, "")
}

// An instance left running at shutdown (limits.interruptible = false, a
// guest that never returns) keeps its memory: closing the engine, the
// last step of the runtime's Close, closed every module in it, and the
// running instance's memory was unmapped under its loop, which then
// crashed the whole process (SIGSEGV in the guest's code) in its last
// moments, before the databases and the logs were closed. The child
// process here does what shutdown does and must live on.
func TestShutdownKeepsMemoryOfInstancesLeftRunning(t *testing.T) {
	if os.Getenv("GREENROOM_TEST_LEFT_RUNNING") == "1" {
		leftRunningChild()
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestShutdownKeepsMemoryOfInstancesLeftRunning$", "-test.count=1")
	cmd.Env = append(os.Environ(), "GREENROOM_TEST_LEFT_RUNNING=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil || !strings.Contains(out.String(), "survived the engine's close") {
		t.Fatalf("the child process: %v\n%s", err, firstLines(out.String(), 12))
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

func leftRunningChild() {
	// A guest without checks never reaches a Go safe point: a garbage
	// collection would wait for it for ever (docs/sandbox.md), and this
	// process with it.
	debug.SetGCPercent(-1)
	ctx := context.Background()
	eng := NewEngine(testCache, "")
	lim := testLimits()
	lim.NoInterrupt = true
	lim.Timeout = 100 * time.Millisecond
	l := logrus.New()
	l.SetLevel(logrus.ErrorLevel)
	log := logrus.NewEntry(l)
	p, err := Load(ctx, Spec{ID: "stuck", Wasm: busyLoopModule(), Limits: lim, Log: log, Host: testHost{log: log}, Engine: eng})
	if err != nil {
		println("load:", err.Error())
		os.Exit(3)
	}
	go get(p, "/")
	time.Sleep(200 * time.Millisecond)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := p.Close(cctx); err == nil {
		println("close: the looping call was not left running")
		os.Exit(4)
	}
	eng.Close(ctx)
	time.Sleep(500 * time.Millisecond) // the loop goes on meanwhile
	println("survived the engine's close")
	os.Exit(0)
}
