package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/build"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// greenroomBinary builds the command once per test binary.
func greenroomBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "greenroom-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "greenroom")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// TestMain removes the binary greenroomBinary built (some 50 MB, left in
// the temporary directory by every run before).
func TestMain(m *testing.M) {
	// The parallel tests run greenroom processes and wait on them
	// (signals, drains, watchers): four at a time unless -parallel is
	// given (58 s for that phase on a two-core machine under other load,
	// against 82 s two at a time), as runtime/internal/testflags does for
	// the runtime's packages (internal to them).
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given && runtime.GOMAXPROCS(0) < 4 {
		flag.Set("test.parallel", "4")
	}
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// freeAddr returns a 127.0.0.1 address, free when picked, for a greenroom
// process to listen on. Tests run in parallel and each process binds its
// port a moment after it was picked, so the port is one the kernel does
// not hand out meanwhile (for ":0" or an outgoing connection: Linux's
// ip_local_port_range starts at 32768 by default) and that no other test
// of this process got: a port picked with ":0" and closed again could go
// to another test, whose process then answered this test's requests.
func freeAddr(t *testing.T) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		port := 20000 + rand.IntN(12000)
		if portsGiven[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		portsGiven[port] = true
		return ln.Addr().String()
	}
	t.Fatal("no free port in 127.0.0.1:20000-31999 after 1000 tries")
	return ""
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

const testToken = "shutdown-test-token-0123456789abcdef"

// process is a greenroom serve process under test.
type process struct {
	cmd     *exec.Cmd
	addr    string
	cfgPath string // its config file
	cfg     string // what startServe wrote there
	stderr  *bytes.Buffer
	mu      *sync.Mutex
	done    chan error
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

type lockedBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// startServe runs greenroom serve with the ver1 guest (GET /slow?ms=N),
// extra [server] settings and flags added to the serve command, and waits
// until it is ready.
func startServe(t *testing.T, server string, flags ...string) *process {
	t.Helper()
	p := startProcess(t, server, "", flags...)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + p.addr + "/.greenroom/health/v1/readiness"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("greenroom did not become ready within 60s")
	return nil
}

// startProcess runs greenroom serve as startServe does, with extra
// config after its own, and does not wait.
func startProcess(t *testing.T, server, extra string, flags ...string) *process {
	t.Helper()
	return startProcessEnv(t, server, extra, nil, flags...)
}

// startProcessEnv is startProcess with env added to the process's
// environment.
func startProcessEnv(t *testing.T, server, extra string, env []string, flags ...string) *process {
	t.Helper()
	cache := filepath.Join(os.TempDir(), "greenroom-test-guests")
	ver, _, err := build.Cached(context.Background(), filepath.Join("..", "..", "runtime", "server", "testdata", "guests", "ver1"), cache)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := fmt.Sprintf(`
[server]
listen = %q
%s
[log]
format = "json"
[runtime]
cache_dir = %q
[auth.tokens.test]
token = %q
subject = "service:test"
admin = true
[plugins.ver]
path = %q
limits = { timeout = "30s", instances = 2 }
%s`, addr, server, filepath.Join(cache, "cmd-test-cache"), testToken, ver, extra)
	return runServeEnv(t, dir, addr, cfg, env, flags...)
}

// runServe writes cfg to config.toml in dir and runs greenroom serve with
// it and flags, listening on addr; the process is killed when the test
// ends, and its standard error logged if the test failed.
func runServe(t *testing.T, dir, addr, cfg string, flags ...string) *process {
	t.Helper()
	return runServeEnv(t, dir, addr, cfg, nil, flags...)
}

// runServeEnv is runServe with env added to the process's environment.
func runServeEnv(t *testing.T, dir, addr, cfg string, env []string, flags ...string) *process {
	t.Helper()
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &process{addr: addr, cfgPath: cfgPath, cfg: cfg, stderr: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan error, 1)}
	p.cmd = exec.Command(greenroomBinary(t), append([]string{"serve", "--config", cfgPath}, flags...)...)
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stderr = lockedBuffer{p.mu, p.stderr}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("greenroom stderr:\n%s", p.log())
		}
	})
	return p
}

func (p *process) get(path string) (int, string, error) { return p.do("GET", path) }

func (p *process) do(method, path string) (int, string, error) {
	req, _ := http.NewRequest(method, "http://"+p.addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func (p *process) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(60 * time.Second):
		t.Fatal("greenroom did not exit within 60s of SIGTERM")
		return -1
	}
}

// SIGTERM with a slow request in flight: readiness turns 503 while the
// server still serves (shutdown_delay), the request completes, new
// connections are refused after, and the exit code is 0.
func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	t.Parallel()
	p := startServe(t, `shutdown_timeout = "20s"`+"\n"+`shutdown_delay = "1s"`)
	type result struct {
		status int
		body   string
		err    error
	}
	slow := make(chan result, 1)
	go func() {
		s, b, err := p.get("/api/ver/slow?ms=2500")
		slow <- result{s, b, err}
	}()
	time.Sleep(300 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	resp, err := http.Get("http://" + p.addr + "/.greenroom/health/v1/readiness")
	if err != nil {
		t.Fatalf("readiness during shutdown_delay: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("readiness during shutdown = %d, want 503", resp.StatusCode)
	}
	// Keep-alive clients are told to reconnect (elsewhere).
	if !resp.Close {
		t.Error("a response during shutdown does not carry Connection: close")
	}
	r := <-slow
	if r.err != nil || r.status != 200 || r.body != "v1" {
		t.Fatalf("in-flight request: %d %q %v", r.status, r.body, r.err)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if _, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
		t.Error("listener still accepts connections after exit")
	}
	if !strings.Contains(p.log(), "shut down cleanly") {
		t.Errorf("log lacks the clean shutdown line")
	}
}

// Without shutdown_delay (the default), while a slow request drains the
// server still answers: readiness 503, other requests 503 shutting_down
// with Connection: close; it used to close its listener at once, so a
// probe saw a refused connection, not readiness 503.
func TestSIGTERMDrainAnswers(t *testing.T) {
	t.Parallel()
	p := startServe(t, `shutdown_timeout = "20s"`)
	slow := make(chan string, 1)
	go func() {
		s, b, err := p.get("/api/ver/slow?ms=2500")
		slow <- fmt.Sprint(s, " ", b, " ", err)
	}()
	time.Sleep(300 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	resp, err := http.Get("http://" + p.addr + "/.greenroom/health/v1/readiness")
	if err != nil {
		t.Fatalf("readiness while a request drains: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || !resp.Close {
		t.Errorf("readiness while a request drains: %d (close %v), want 503 with Connection: close", resp.StatusCode, resp.Close)
	}
	if status, body, err := p.get("/api/ver/slow?ms=1"); status != 503 || !strings.Contains(body, `"code":"shutting_down"`) {
		t.Errorf("a new request while draining: %d %s %v, want 503 shutting_down", status, body, err)
	}
	if r := <-slow; r != "200 v1 <nil>" {
		t.Errorf("in-flight request: %s", r)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if _, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
		t.Error("listener still accepts connections after exit")
	}
	// The refused request is logged (and counted) under its plugin.
	refused := false
	for _, line := range strings.Split(p.log(), "\n") {
		if strings.Contains(line, `"msg":"request"`) && strings.Contains(line, `"path":"/api/ver/slow"`) && strings.Contains(line, `"status":503`) {
			refused = true
			if !strings.Contains(line, `"plugin":"ver"`) {
				t.Errorf("the refused request's access log line names no plugin: %s", line)
			}
		}
	}
	if !refused {
		t.Errorf("no access log line for the refused request:\n%s", p.log())
	}
}

// When shutdown_timeout cuts a request off, the exit code is not 0 and
// the log says what was cut off.
func TestSIGTERMTimeoutCutsOff(t *testing.T) {
	t.Parallel()
	p := startServe(t, `shutdown_timeout = "1s"`)
	go p.get("/api/ver/slow?ms=10000")
	time.Sleep(500 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code == 0 {
		t.Error("exit code 0 although the shutdown deadline cut a request off")
	}
	// The error names the request that was cut off.
	if log := p.log(); !strings.Contains(log, "cut work off") || !strings.Contains(log, "cut off: GET /api/ver/slow (request ") {
		t.Errorf("log does not say what was cut off:\n%s", log)
	}
}

// A second SIGINT or SIGTERM during the drain cuts it short, as a second
// Ctrl-C does elsewhere: what still runs is cut off and reported, exit 1
// (it was ignored, not even logged, until shutdown_timeout, which may be
// hours; an audit).
func TestSecondSignalCutsTheDrainShort(t *testing.T) {
	p := startServe(t, `shutdown_timeout = "60s"`)
	go p.get("/api/ver/slow?ms=30000")
	time.Sleep(500 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGINT)
	time.Sleep(500 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGHUP) // no reload now; logged
	// Sent at once, the two signals may be taken in either order, and the
	// SIGTERM's exit come before the SIGHUP's line.
	waitUntil(t, 5*time.Second, "the SIGHUP to be ignored", func() bool { return strings.Contains(p.log(), "SIGHUP during shutdown: ignored") })
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 1 {
		t.Errorf("exit code %d, want 1: the second signal cut a request off", code)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("exited %v after the second signal", took)
	}
	log := p.log()
	for _, want := range []string{"SIGHUP during shutdown: ignored", "second signal: cutting the shutdown short", "shutdown cut short by a second signal", "cut off: GET /api/ver/slow (request "} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// The shutdown's timeout is the one running when the signal comes: a
// reload that shortens it applies, as it does to replaced plugin versions.
func TestShutdownTimeoutFollowsReload(t *testing.T) {
	t.Parallel()
	p := startServe(t, `shutdown_timeout = "30s"`)
	cfg := strings.Replace(p.cfg, `shutdown_timeout = "30s"`, `shutdown_timeout = "1s"`, 1)
	if cfg == p.cfg {
		t.Fatal("config has no shutdown_timeout line")
	}
	if err := os.WriteFile(p.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.log(), `msg=reloaded`) && !strings.Contains(p.log(), `"msg":"reloaded"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no reload 60s after SIGHUP:\n%s", p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The reload's line counts its plugins in fields of their own, in
	// either format (not as a Go map printed by the text format).
	if log := p.log(); strings.Contains(log, "map[") || strings.Contains(log, `"plugins":{`) || !strings.Contains(log, `unchanged=1`) && !strings.Contains(log, `"unchanged":1`) {
		t.Errorf("the reload's line does not count its plugins in fields:\n%s", log)
	}
	go p.get("/api/ver/slow?ms=20000")
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code == 0 {
		t.Error("exit code 0 although the reloaded 1s deadline cut a request off")
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("shutdown took %s: the 30s timeout of the start applied, not the reloaded 1s", took)
	}
	if log := p.log(); !strings.Contains(log, "shutdown after 1s cut work off") {
		t.Errorf("log does not name the reloaded timeout:\n%s", log)
	}
}

// A server.shutdown_timeout or shutdown_delay from the environment is a
// secret: the shutdown's log lines and exit error named them decoded
// ("shutdown after 1s cut work off" for "${T}" with T=1000ms, "delay":
// "300ms" for 0.3s), which the redaction of the secrets as written does
// not match.
func TestShutdownHidesTimeoutsFromTheEnvironment(t *testing.T) {
	t.Parallel()
	p := startProcessEnv(t, `shutdown_timeout = "${GR_TEST_ST}"`+"\n"+`shutdown_delay = "${GR_TEST_SD}"`, "", []string{"GR_TEST_ST=1000ms", "GR_TEST_SD=0.3s"})
	for deadline := time.Now().Add(60 * time.Second); ; {
		if status, _, err := p.get("/.greenroom/health/v1/readiness"); err == nil && status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("greenroom did not become ready within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	go p.get("/api/ver/slow?ms=20000")
	// Until the request holds an instance.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, body, _ := p.get("/.greenroom/plugins/v1/"); strings.Contains(body, `"busy":1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow request never reached the plugin")
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code == 0 {
		t.Error("exit code 0 although the deadline cut a request off")
	}
	log := p.log()
	if !strings.Contains(log, "shutdown after [REDACTED] cut work off") || !strings.Contains(log, `"delay":"[REDACTED]"`) || strings.Contains(log, "300ms") || strings.Contains(log, "after 1s") {
		t.Errorf("the shutdown's lines tell a timeout from the environment:\n%s", log)
	}
}

// The addresses freeAddr hands out are distinct, free and outside the
// range the kernel picks ports from.
func TestFreeAddrNeverRepeats(t *testing.T) {
	seen := map[string]bool{}
	for range 300 {
		addr := freeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		if seen[addr] || port < "20000" || port > "31999" || len(port) != 5 {
			t.Fatalf("freeAddr gave %s (seen before: %v)", addr, seen[addr])
		}
		seen[addr] = true
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s is not free: %v", addr, err)
		}
		ln.Close()
	}
}

// A shutdown_timeout under a second is taken (the tests would set
// one to keep a cut-off short): with nothing in flight the shutdown exits
// 0, an idle keep-alive connection still open included (it exited 1,
// "requests in flight: context deadline exceeded", naming nothing: the
// HTTP server looks for its connections' end every 100 ms, so the
// deadline passed while one closed, and such values were refused as
// config errors since); a request the deadline cuts off still exits 1,
// named.
func TestSubSecondShutdownTimeout(t *testing.T) {
	t.Parallel()
	t.Run("nothing in flight", func(t *testing.T) {
		t.Parallel()
		p := startServe(t, `shutdown_timeout = "20ms"`)
		// A keep-alive connection left open, idle.
		if status, _, err := p.get("/api/ver/v"); err != nil || status != 200 {
			t.Fatalf("GET: %d %v", status, err)
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t); code != 0 {
			t.Errorf("exit code %d, want 0: nothing was in flight", code)
		}
		if !strings.Contains(p.log(), "shut down cleanly") {
			t.Error("log lacks the clean shutdown line")
		}
	})
	t.Run("a request cut off", func(t *testing.T) {
		t.Parallel()
		p := startServe(t, `shutdown_timeout = "300ms"`)
		go p.get("/api/ver/slow?ms=20000")
		waitBusy(t, p, "ver")
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t); code == 0 {
			t.Error("exit code 0 although the shutdown deadline cut a request off")
		}
		if log := p.log(); !strings.Contains(log, "shutdown after 300ms cut work off") || !strings.Contains(log, "cut off: GET /api/ver/slow (request ") {
			t.Errorf("log does not say what was cut off:\n%s", log)
		}
	})
}

// waitBusy waits until a call of plugin id is running, as the admin API's
// pool figures show.
func waitBusy(t *testing.T, p *process, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		_, body, err := p.get("/.greenroom/plugins/v1/")
		if err == nil {
			var v struct {
				Plugins []struct {
					ID   string `json:"id"`
					Pool struct {
						Busy int `json:"busy"`
					} `json:"pool"`
				} `json:"plugins"`
			}
			if json.Unmarshal([]byte(body), &v) == nil {
				for _, pl := range v.Plugins {
					if pl.ID == id && pl.Pool.Busy > 0 {
						return
					}
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no call of %s running after 30s", id)
}

// TestShutdownLogsRequestsCutOff: every request the shutdown's deadline
// cuts off gets its one access log line, also one whose plugin call is
// left running (limits.interruptible = false, a guest looping for ever),
// which never returns, and one whose body was still arriving, which never
// reached a handler: they got none. The first is logged 503, as a call
// interrupted at the deadline is; the second's read is ended, and it is
// answered and logged 408.
func TestShutdownLogsRequestsCutOff(t *testing.T) {
	t.Parallel()
	cache := filepath.Join(os.TempDir(), "greenroom-test-guests")
	hostile, _, err := build.Cached(context.Background(), filepath.Join("..", "..", "runtime", "plugin", "testdata", "guests", "hostile"), cache)
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cfg := fmt.Sprintf(`
[server]
listen = %q
shutdown_timeout = "1s"
[log]
format = "json"
[runtime]
cache_dir = %q
[auth.tokens.test]
token = %q
subject = "service:test"
admin = true
[plugins.stuck]
path = %q
limits = { timeout = "60s", interruptible = false }
[plugins.hostile]
path = %q
limits = { timeout = "60s" }
`, addr, filepath.Join(cache, "cmd-test-cache"), testToken, hostile, hostile)
	// A guest without checks never reaches a Go safe point: a garbage
	// collection would wait for it, and the whole process with it
	// (docs/sandbox.md); none is run.
	p := runServeEnv(t, t.TempDir(), addr, cfg, []string{"GOGC=off"})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if status, _, err := p.get("/.greenroom/health/v1/readiness"); err == nil && status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("greenroom did not become ready within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Once the plugins are loaded the runtime hands their garbage back
	// (debug.FreeOSMemory): a collection, the process's only one, which
	// the loop would hold up for ever. It is waited for.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, body, err := p.get("/metrics")
		if err == nil && regexp.MustCompile(`(?m)^go_gc_duration_seconds_count [1-9]`).MatchString(body) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no garbage collection within 30s of the plugins' load")
		}
	}
	// A call interrupted at the deadline. (Not a loop: on two cores,
	// one spinning in guest code beside the one left running kept
	// goroutines queued on the latter's processor from running.)
	go p.get("/api/hostile/ctxwait")
	waitBusy(t, p, "hostile")
	go p.get("/api/stuck/loop")
	waitBusy(t, p, "stuck")
	// And a request whose body is still arriving, which never reaches
	// a handler.
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/hostile/ok HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 100\r\n\r\nabc", testToken)
	time.Sleep(200 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 1 {
		t.Errorf("exit code %d, want 1: requests were cut off", code)
	}
	log := p.log()
	if !strings.Contains(log, "cut off: ") || !strings.Contains(log, "GET /api/stuck/loop (request ") || !strings.Contains(log, "(its body still arriving)") {
		t.Errorf("the log does not name the requests cut off:\n%s", log)
	}
	lines := map[string][]map[string]any{}
	for _, l := range strings.Split(log, "\n") {
		var v map[string]any
		if json.Unmarshal([]byte(l), &v) == nil && v["msg"] == "request" {
			path, _ := v["path"].(string)
			lines[path] = append(lines[path], v)
		}
	}
	// The one whose body was arriving: answered 408, its line without
	// method and path, as that of any request fasthttp refuses before
	// greenroom's handlers.
	if got := lines[""]; len(got) != 1 || got[0]["status"] != 408.0 {
		t.Errorf("access log lines without a path: %v, want one, 408, for the request whose body was arriving", got)
	}
	for path, plugin := range map[string]string{"/api/stuck/loop": "stuck", "/api/hostile/ctxwait": "hostile"} {
		got := lines[path]
		if len(got) != 1 {
			t.Errorf("%s: %d access log lines, want 1: %v", path, len(got), got)
			continue
		}
		if l := got[0]; l["status"] != 503.0 || l["plugin"] != plugin || l["principal"] != "service:test" || l["method"] != "GET" || l["request_id"] == "" {
			t.Errorf("%s: access log line %v, want status 503, plugin %s, principal service:test", path, l, plugin)
		}
	}
}
