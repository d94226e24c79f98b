package main

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A request in flight on a plugin version that a reload replaced is in
// flight for the shutdown like any other: the shutdown's deadline, not the
// replaced version's own drain (shutdown_timeout from the reload), decides
// when it is cut off, and when it is, the exit code is not 0 and the log
// names it. Before, the drain cut it a moment before the shutdown's
// deadline: with the signal soon after the reload the process then said
// "shut down cleanly" and exited 0; right after it, it exited 1 without
// saying what was cut off.
func TestSIGTERMAfterReloadReportsCutOff(t *testing.T) {
	for _, tc := range []struct {
		name string
		gap  time.Duration // from the reload's answer to SIGTERM
	}{
		{"signal soon after the reload", 300 * time.Millisecond},
		{"signal right after the reload", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startServe(t, `shutdown_timeout = "2s"`)
			slow := make(chan int, 1)
			go func() {
				s, _, _ := p.get("/api/ver/slow?ms=20000")
				slow <- s
			}()
			time.Sleep(500 * time.Millisecond)
			cfg := strings.Replace(p.cfg, "instances = 2", "instances = 3", 1)
			if cfg == p.cfg {
				t.Fatal("config has no instances = 2")
			}
			if err := os.WriteFile(p.cfgPath, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			if s, body, err := p.do("POST", "/.greenroom/plugins/v1/reload"); s != 200 || !strings.Contains(body, `"ver":{"outcome":"reloaded"`) {
				t.Fatalf("reload: %d %s %v", s, body, err)
			}
			time.Sleep(tc.gap)
			p.cmd.Process.Signal(syscall.SIGTERM)
			if code := p.wait(t); code == 0 {
				t.Error("exit code 0 although the shutdown cut off a request in flight at the signal")
			}
			if s := <-slow; s == 200 {
				t.Error("the slow request completed; it should have been cut off")
			}
			log := p.log()
			if !strings.Contains(log, "cut work off") || !strings.Contains(log, "cut off: GET /api/ver/slow (request ") {
				t.Errorf("log does not say what was cut off:\n%s", log)
			}
			if strings.Contains(log, "shut down cleanly") {
				t.Error("log says the shutdown was clean")
			}
		})
	}
}
