package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// silentDatabase accepts TCP connections and never answers on them, like
// a PostgreSQL server that hangs or a firewall that drops replies. Its
// connection string sets a connect_timeout far past what the tests wait,
// so that only greenroom's own handling can end a wait on it.
func silentDatabase(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return fmt.Sprintf("\n[database]\nclient = \"pg\"\nconnection = \"postgres://greenroom@%s/greenroom?sslmode=disable&connect_timeout=600\"\n", ln.Addr())
}

// waitLog waits until the process's log contains text.
func (p *process) waitLog(t *testing.T, text string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(p.log(), text); {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log within 60s", text)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// grantDatabaseInConfig starts greenroom serve (with flags) beside a
// database that does not answer, and rewrites its config to add a plugin
// granted the database: the reload that loads it waits on the connection.
func grantDatabaseInConfig(t *testing.T, flags ...string) *process {
	t.Helper()
	p := startServe(t, "shutdown_timeout = \"2s\"\n"+silentDatabase(t), flags...)
	ver := p.cfg[strings.Index(p.cfg, "[plugins.ver]\npath = ")+len("[plugins.ver]\n"):]
	ver = ver[:strings.IndexByte(ver, '\n')]
	cfg := p.cfg + "[plugins.dbp]\n" + ver + "\n[plugins.dbp.capabilities]\ndatabase = true\n"
	if err := os.WriteFile(p.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// terminateWithinTimeout sends SIGTERM and wants exit code 0 well before
// the connection's own timeout (shutdown_timeout is 2s).
func (p *process) terminateWithinTimeout(t *testing.T) {
	t.Helper()
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	code := p.wait(t)
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("exit %s after SIGTERM with shutdown_timeout 2s", took)
	}
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// A reload through the admin API that waits on a database that does not
// answer (it grants a plugin the database for the first time) does not
// hold the shutdown: SIGTERM ends the reload and the process exits within
// shutdown_timeout, not after the connection's own timeout.
func TestSIGTERMEndsAReloadWaitingOnTheDatabase(t *testing.T) {
	t.Parallel()
	p := grantDatabaseInConfig(t)
	answered := make(chan int, 1)
	go func() {
		s, _, _ := p.do("POST", "/.greenroom/plugins/v1/reload")
		answered <- s
	}()
	time.Sleep(500 * time.Millisecond) // the reload is connecting
	p.terminateWithinTimeout(t)
	select {
	case s := <-answered:
		if s == 0 || s == 200 {
			t.Errorf("the reload answered %d, want a failure (it was cut off)", s)
		}
	case <-time.After(10 * time.Second):
		t.Error("the reload request got no answer")
	}
}

// The same through serve --watch: the config file's change starts the
// reload, and SIGTERM ends it as it ends the admin API's.
func TestSIGTERMEndsAWatcherReloadWaitingOnTheDatabase(t *testing.T) {
	p := grantDatabaseInConfig(t, "--watch")
	p.waitLog(t, "plugin or config files changed: reloading")
	time.Sleep(300 * time.Millisecond) // the reload is connecting
	p.terminateWithinTimeout(t)
}

// While the database does not answer at start-up: the log says so, SIGHUP
// does not kill the process, SIGTERM stops the start cleanly (exit 0).
func TestSignalsWhileTheDatabaseOpens(t *testing.T) {
	p := startProcess(t, silentDatabase(t), "[plugins.ver.capabilities]\ndatabase = true\n")
	p.waitLog(t, "opening the database")
	p.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-p.done:
		t.Fatalf("SIGHUP while the database opened ended the process: %v", err)
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if !strings.Contains(p.log(), "shutting down before serving") {
		t.Errorf("log does not say why it stopped:\n%s", p.log())
	}
}
