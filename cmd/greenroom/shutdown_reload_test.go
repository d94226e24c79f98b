package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/build"
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
	t.Parallel()
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

// A reload asked for while another is still loading a plugin (a slow
// initialization, a long migration) supersedes it, rather than wait for
// it before it even reads the config: a token it revokes is refused from
// its start, not once the older reload has finished (an audit: 24 s
// late, behind a plugin's 25 s init). The superseded reload's plugin is
// loaded by the newer one; what served before serves meanwhile. So also
// when the slow reload was asked for twice (a second SIGHUP, or a SIGHUP
// and the watcher's reload after one write): the second, waiting for the
// first, took its place as the reload to cancel, so the revocation
// cancelled only the waiting one and waited for the first's 20 s load.
func TestReloadSupersedesOneInProgress(t *testing.T) {
	t.Parallel()
	for _, asks := range []int{1, 2} {
		t.Run(fmt.Sprintf("slow reload asked for %d times", asks), func(t *testing.T) { supersedeSlowReload(t, asks) })
	}
}

func supersedeSlowReload(t *testing.T, asks int) {
	const victim = "reload-victim-token-0123456789abcdef0123"
	tokens := "[auth.tokens.victim]\ntoken = \"" + victim + "\"\nsubject = \"service:victim\"\n"
	p := startServe(t, "")
	base := p.cfg
	write := func(cfg string) {
		t.Helper()
		if err := os.WriteFile(p.cfgPath, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	asVictim := func() int { return p.statusAs(victim, "/api/ver/v") }
	write(base + tokens)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, 20*time.Second, "the victim's token to work", func() bool { return asVictim() == 200 })
	// A slow reload: the plugin's new version takes 20 s to initialize.
	write(base + tokens + "[plugins.ver.config]\ninit_sleep_ms = \"20000\"\n")
	for range asks {
		p.cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(time.Second)
	}
	// The revocation, while that reload loads.
	write(base)
	revoked := time.Now()
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, 5*time.Second, "the revoked token to be refused", func() bool { return asVictim() == 401 })
	t.Logf("refused %v after the revoking SIGHUP", time.Since(revoked))
	if s, body, _ := p.get("/api/ver/v"); s != 200 || body != "v1" {
		t.Errorf("the plugin meanwhile: %d %s", s, body)
	}
	waitUntil(t, 20*time.Second, "the superseded reload to be logged", func() bool {
		return strings.Contains(p.log(), "reload superseded by a newer one")
	})
}

// A reload that points [auth.jwt] at another JWKS URL waits for that
// URL's first fetch (up to 10 s); a newer reload asked for meanwhile
// supersedes it at once, and a token it revokes is refused from its
// start. The runtime called the server's credentials hook without the
// reload's context, so the superseded reload could not stop waiting:
// the newer one waited behind it, and the revoked token was accepted for
// as long as the identity provider took to answer (an attack pass: 7 s
// of an 8 s answer). The newer reload starts from the keys in force
// before (a token they verify is accepted meanwhile) and fetches its
// own URL itself.
func TestReloadSupersedesAJWKSFetch(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		w.Write([]byte(`{"keys":[]}`))
	}))
	t.Cleanup(idp.Close)
	t.Cleanup(func() { close(release) })
	const victim = "jwks-victim-token-0123456789abcdef0123"
	tokens := "[auth.tokens.victim]\ntoken = \"" + victim + "\"\nsubject = \"service:victim\"\n"
	jwt := func(path string) string {
		return fmt.Sprintf("[auth.jwt]\njwks_url = %q\nissuer = \"https://idp/\"\naudience = \"greenroom\"\n", idp.URL+path)
	}
	p := startServe(t, "")
	base := p.cfg
	asVictim := func() int { return p.statusAs(victim, "/api/ver/v") }
	p.replaceConfig(t, base+tokens+jwt("/fast"))
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, 20*time.Second, "the victim's token to work", func() bool { return asVictim() == 200 })
	// The slow reload: its new JWKS URL does not answer.
	p.replaceConfig(t, base+tokens+jwt("/slow"))
	p.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(time.Second)
	// The revocation, while that reload waits for the fetch.
	p.replaceConfig(t, base+jwt("/slow"))
	revoked := time.Now()
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, 3*time.Second, "the revoked token to be refused", func() bool { return asVictim() == 401 })
	t.Logf("refused %v after the revoking SIGHUP", time.Since(revoked))
	if !strings.Contains(p.log(), "the first fetch of the JWKS was abandoned") {
		t.Errorf("the superseded reload's fetch was not abandoned:\n%s", p.log())
	}
}

// A reload whose config is invalid (a typo while editing) supersedes
// nothing: the reload in progress goes on and its plugin loads (the
// invalid one cancelled it, and its change was never made, a review);
// nor does one that reads the same config again (a storm of SIGHUPs kept
// restarting a slow load, which never finished).
func TestReloadSupersededOnlyByANewValidConfig(t *testing.T) {
	t.Parallel()
	p := startServe(t, "")
	write := func(cfg string) {
		t.Helper()
		if err := os.WriteFile(p.cfgPath, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	loaded := func() int { return strings.Count(p.log(), `"msg":"plugin loaded"`) }
	slow := p.cfg + "[plugins.ver.config]\ninit_sleep_ms = \"2500\"\n"
	write(slow)
	p.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(500 * time.Millisecond)
	write(slow + "[[[\n")
	if s, body, _ := p.do("POST", "/.greenroom/plugins/v1/reload"); s != 400 {
		t.Errorf("the invalid reload: %d %s, want 400", s, body)
	}
	write(slow)
	waitUntil(t, 15*time.Second, "the slow version to load", func() bool { return loaded() >= 2 })
	// The same config, again and again, while a slow version loads.
	write(p.cfg + "[plugins.ver.config]\ninit_sleep_ms = \"2000\"\n")
	for range 5 {
		p.cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(700 * time.Millisecond)
	}
	waitUntil(t, 15*time.Second, "the version to load through the storm", func() bool { return loaded() >= 3 })
	if strings.Contains(p.log(), "reload superseded") {
		t.Errorf("a reload was superseded by an invalid config or by the same one:\n%s", p.log())
	}
}

// statusAs returns the status p answers a GET of path with token as
// credential (0 when no answer came).
func (p *process) statusAs(token, path string) int {
	req, _ := http.NewRequest("GET", "http://"+p.addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// replaceConfig replaces p's config file with cfg whole, as a watched
// file should be: written beside it, then renamed over it.
func (p *process) replaceConfig(t *testing.T, cfg string) {
	t.Helper()
	if err := os.WriteFile(p.cfgPath+".new", []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p.cfgPath+".new", p.cfgPath); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("waited %v for %s", d, what)
		}
	}
}

// A reload asked for while the start-up load is still going on (a slow
// initializer, long migrations) puts its credentials in force at once, as
// any reload does before it loads a plugin: a token it revokes was
// accepted until the start-up load had ended (15 s here).
func TestReloadDuringStartupLoadRevokesAtOnce(t *testing.T) {
	t.Parallel()
	for _, earlier := range []bool{false, true} {
		t.Run(fmt.Sprintf("an earlier reload waiting: %v", earlier), func(t *testing.T) {
			t.Parallel()
			revokeDuringStartupLoad(t, earlier)
		})
	}
}

// revokeDuringStartupLoad revokes a token by a reload during the start-up
// load; with earlier, another reload (of another config) is waiting for
// that load already: the revoking one supersedes it, and does not wait
// behind it for the start-up load (it did until the waiting one gave up
// its wait when superseded).
func revokeDuringStartupLoad(t *testing.T, earlier bool) {
	const victim = "startup-victim-token-0123456789abcdef012"
	tokens := "[auth.tokens.victim]\ntoken = \"" + victim + "\"\nsubject = \"service:victim\"\n"
	slow := "[plugins.ver.config]\ninit_sleep_ms = \"15000\"\n"
	p := startProcess(t, "", tokens+slow)
	// The admin API answers a valid credential without the admin flag 403,
	// and one it does not know 401.
	asVictim := func() int { return p.statusAs(victim, "/.greenroom/plugins/v1/") }
	waitUntil(t, 20*time.Second, "the victim's token to be known", func() bool { return asVictim() == 403 })
	if earlier {
		p.replaceConfig(t, p.cfg+"[plugins.ver.config.other]\n")
		p.cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(time.Second)
	}
	p.replaceConfig(t, strings.Replace(p.cfg, tokens, "", 1))
	revoked := time.Now()
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, 5*time.Second, "the revoked token to be refused", func() bool { return asVictim() == 401 })
	t.Logf("refused %v after the revoking SIGHUP", time.Since(revoked))
	waitUntil(t, 30*time.Second, "the reload to end", func() bool { return strings.Contains(p.log(), `"msg":"reloaded"`) })
	if s, body, _ := p.get("/api/ver/v"); s != 200 || body != "v1" {
		t.Errorf("the plugin after the reload: %d %s", s, body)
	}
}

// A request for a public route that waits, at start-up, for its plugin's
// load (which routes the plugin opens is known only then) is answered
// 503 shutting_down when a shutdown cuts the wait short: it was answered
// 401, as if it had lacked a credential.
func TestPublicRouteWaitingForTheLoadAtShutdown(t *testing.T) {
	p := startProcess(t, "", "public_routes = [\"/v\"]\n[plugins.ver.config]\ninit_sleep_ms = \"15000\"\n")
	waitUntil(t, 20*time.Second, "the server to listen", func() bool {
		s, _, _ := p.get("/.greenroom/health/v1/liveness")
		return s == 200
	})
	type answer struct {
		status int
		body   string
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Get("http://" + p.addr + "/api/ver/v")
		if err != nil {
			got <- answer{0, err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- answer{resp.StatusCode, string(b)}
	}()
	time.Sleep(500 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if a := <-got; a.status != 503 || !strings.Contains(a.body, "shutting_down") {
		t.Errorf("the public route's request cut short by the shutdown: %d %s, want 503 shutting_down", a.status, a.body)
	}
	// The load the shutdown cut short is not logged as the plugin's
	// failure (it was, at level error, for every plugin still loading).
	waitUntil(t, 20*time.Second, "the load's end to be logged", func() bool {
		return strings.Contains(p.log(), "plugin load canceled")
	})
	if strings.Contains(p.log(), "plugin failed to load") {
		t.Errorf("a load cut short by the shutdown was logged as a failure:\n%s", p.log())
	}
}

// A reload asked for once the shutdown has begun changes nothing: during
// server.shutdown_delay the server still serves, the admin API's reload
// included, and a reload then was applied (a SIGHUP then is ignored): a
// config without the plugin removed it, and the calls a load balancer
// still sent for the delay got 404 unknown_plugin. It is answered 503
// shutting_down, and what served at the signal serves on.
func TestReloadDuringShutdownDelayChangesNothing(t *testing.T) {
	t.Parallel()
	p := startServe(t, `shutdown_delay = "5s"`)
	p.cmd.Process.Signal(syscall.SIGTERM)
	waitUntil(t, 5*time.Second, "readiness to turn 503", func() bool {
		s, _, _ := p.get("/.greenroom/health/v1/readiness")
		return s == 503
	})
	i := strings.Index(p.cfg, "[plugins.ver]")
	if err := os.WriteFile(p.cfgPath, []byte(p.cfg[:i]), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, body, err := p.do("POST", "/.greenroom/plugins/v1/reload"); s != 503 || !strings.Contains(body, `"shutting_down"`) {
		t.Errorf("reload during the shutdown delay: %d %s %v, want 503 shutting_down", s, body, err)
	}
	if s, body, err := p.get("/api/ver/v"); s != 200 || body != "v1" {
		t.Errorf("the plugin after that reload, during the delay: %d %s %v", s, body, err)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// SIGTERM while serve --watch reloads a changed plugin turns readiness 503
// at once: the shutdown waited for the watcher to stop, and so for its
// reload in progress, whose module is compiled to the end (cancelling
// stops the loads, not a compilation: a second here, longer for a larger
// module or a busy machine); readiness stayed 200 meanwhile, a second
// signal was not handled, and the shutdown's deadline counted from after
// it. The reload's compilation (of limits.memory never used before, so
// the cache does not have it) is far longer than the polls of readiness.
func TestSIGTERMDuringAWatcherReloadTurnsReadinessAtOnce(t *testing.T) {
	p := startServe(t, "", "--watch")
	mem := 128 + time.Now().UnixNano()%3968
	cfg := strings.Replace(p.cfg, "instances = 2", fmt.Sprintf("instances = 2, memory = \"%dMiB\"", mem), 1)
	p.replaceConfig(t, cfg)
	waitUntil(t, 10*time.Second, "the watcher's reload to begin", func() bool {
		return strings.Contains(p.log(), "plugin or config files changed: reloading")
	})
	p.cmd.Process.Signal(syscall.SIGTERM)
	waitUntil(t, 30*time.Second, "readiness to turn 503", func() bool {
		s, _, err := p.get("/.greenroom/health/v1/readiness")
		return s == 503 || err != nil
	})
	log := p.log()
	reloaded := strings.Index(log, `"msg":"reloaded"`)
	if reloaded >= 0 && reloaded < strings.Index(log, `"msg":"shutting down"`) {
		t.Skip("the reload ended before the signal (its module was in the compilation cache)")
	}
	if reloaded >= 0 {
		t.Errorf("readiness turned 503 only once the watcher's reload had ended:\n%s", log)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// With serve --watch, a config change while the watcher's own reload is
// still loading a plugin (a slow initialization) supersedes it, as a
// SIGHUP's does: the watcher ran its reload in its event loop, so it saw
// the next change only once that reload had ended, and a token the change
// revoked was accepted until then (20 s here).
func TestWatcherReloadSupersedesItsOwnInProgress(t *testing.T) {
	t.Parallel()
	const victim = "watch-victim-token-0123456789abcdef01234"
	tokens := "[auth.tokens.victim]\ntoken = \"" + victim + "\"\nsubject = \"service:victim\"\n"
	p := startProcess(t, "", tokens, "--watch")
	asVictim := func() int { return p.statusAs(victim, "/api/ver/v") }
	waitUntil(t, 60*time.Second, "the victim's token to work", func() bool { return asVictim() == 200 })
	write := func(cfg string) { p.replaceConfig(t, cfg) }
	// A slow reload: the plugin's new version takes 20 s to initialize.
	write(p.cfg + "[plugins.ver.config]\ninit_sleep_ms = \"20000\"\n")
	waitUntil(t, 10*time.Second, "the watcher's reload to begin", func() bool {
		return strings.Contains(p.log(), "plugin or config files changed: reloading")
	})
	time.Sleep(time.Second)
	// The revocation, while that reload loads.
	write(strings.Replace(p.cfg, tokens, "", 1))
	revoked := time.Now()
	waitUntil(t, 8*time.Second, "the revoked token to be refused", func() bool { return asVictim() == 401 })
	t.Logf("refused %v after the revoking write", time.Since(revoked))
	if s, body, _ := p.get("/api/ver/v"); s != 200 || body != "v1" {
		t.Errorf("the plugin meanwhile: %d %s", s, body)
	}
}

// A config file the watcher does not apply (emptied, as by a writer that
// truncates it first) supersedes nothing: it changes nothing, as an
// invalid one does not, and cancelled the reload in progress (a slow
// plugin load), whose work the next reload then did again.
func TestWatcherSkippedConfigSupersedesNothing(t *testing.T) {
	t.Parallel()
	p := startServe(t, "", "--watch")
	slow := p.cfg + "[plugins.ver.config]\ninit_sleep_ms = \"8000\"\n"
	p.replaceConfig(t, slow)
	waitUntil(t, 10*time.Second, "the watcher's reload to begin", func() bool {
		return strings.Contains(p.log(), "plugin or config files changed: reloading")
	})
	if err := os.WriteFile(p.cfgPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the empty file to be skipped", func() bool {
		return strings.Contains(p.log(), "config file is empty")
	})
	if err := os.WriteFile(p.cfgPath, []byte(slow), 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 40*time.Second, "the slow version to load", func() bool {
		return strings.Contains(p.log(), `"reloaded":1`)
	})
	if strings.Contains(p.log(), "reload superseded") {
		t.Errorf("the empty config file superseded the reload in progress:\n%s", p.log())
	}
}

// A reload asked for while the start-up load still runs (a slow
// initializer) waits for it, and a shutdown meanwhile ends that wait: the
// reload is answered 503 shutting_down and the process exits 0 once the
// drain is done. The reload waited for the start-up load, which the
// shutdown stops only after its drain, and the drain waited for the
// reload's request: the shutdown ran to its deadline and exited 1, naming
// the reload as cut off.
func TestSIGTERMWhileAReloadWaitsForTheStartupLoad(t *testing.T) {
	p := startProcess(t, `shutdown_timeout = "5s"`, "[plugins.ver.config]\ninit_sleep_ms = \"20000\"\n")
	waitUntil(t, 20*time.Second, "the server to listen", func() bool { return strings.Contains(p.log(), "greenroom listening") })
	type answer struct {
		status int
		body   string
	}
	reloaded := make(chan answer, 1)
	go func() {
		s, body, _ := p.do("POST", "/.greenroom/plugins/v1/reload")
		reloaded <- answer{s, body}
	}()
	time.Sleep(time.Second) // the reload waits for the start-up load
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d, want 0:\n%s", code, p.log())
	}
	if a := <-reloaded; a.status != 503 || !strings.Contains(a.body, `"shutting_down"`) {
		t.Errorf("the reload: %d %s, want 503 shutting_down", a.status, a.body)
	}
	if log := p.log(); strings.Contains(log, "cut off") || strings.Contains(log, `"reload failed"`) {
		t.Errorf("log:\n%s", log)
	}
}

// With serve --watch, a change during the shutdown's drain starts no
// reload: the watcher runs on through the drain (it stops after it), and
// logged "plugin or config files changed: reloading" for a reload that
// then changed nothing.
func TestWatcherReloadsNothingDuringTheDrain(t *testing.T) {
	t.Parallel()
	p := startServe(t, `shutdown_delay = "3s"`, "--watch")
	p.cmd.Process.Signal(syscall.SIGTERM)
	waitUntil(t, 5*time.Second, "readiness to turn 503", func() bool {
		s, _, _ := p.get("/.greenroom/health/v1/readiness")
		return s == 503
	})
	p.replaceConfig(t, strings.Replace(p.cfg, "instances = 2", "instances = 3", 1))
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
	log := p.log()
	if strings.Contains(log[strings.Index(log, `"msg":"shutting down"`):], "reloading") {
		t.Errorf("the watcher reloaded during the drain:\n%s", log)
	}
}

// A reload that SIGTERM cuts short (here while it initializes a plugin it
// adds) is abandoned whole: the plugin it had already moved to a new
// version serves its old version through the drain, and the plugin its
// config dropped is not removed. Before, the reload stopped where it was
// but applied the rest: the new version loaded before the signal served,
// and the dropped plugin answered 404 to the calls a load balancer still
// sent during shutdown_delay.
func TestSIGTERMDuringAReloadAbandonsItWhole(t *testing.T) {
	t.Parallel()
	p := startServe(t, `shutdown_delay = "4s"`)
	v1 := regexp.MustCompile(`(?m)^path = (".*")$`).FindStringSubmatch(p.cfg)
	if v1 == nil {
		t.Fatal("no plugin path in the config")
	}
	v2, _, err := build.Cached(context.Background(), filepath.Join("..", "..", "runtime", "server", "testdata", "guests", "ver2"), filepath.Join(os.TempDir(), "greenroom-test-guests"))
	if err != nil {
		t.Fatal(err)
	}
	p.replaceConfig(t, p.cfg+"[plugins.zgone]\npath = "+v1[1]+"\n")
	if s, body, err := p.do("POST", "/.greenroom/plugins/v1/reload"); s != 200 || !strings.Contains(body, `"zgone":{"outcome":"added"`) {
		t.Fatalf("reload adding zgone: %d %s %v", s, body, err)
	}
	// ver moves to ver2 (loaded at once), yslow is added (initializing
	// for 8 s), zgone is dropped.
	next := strings.Replace(p.cfg, "path = "+v1[1], fmt.Sprintf("path = %q", v2), 1) +
		"[plugins.yslow]\npath = " + v1[1] + "\nlimits = { timeout = \"30s\" }\n[plugins.yslow.config]\ninit_sleep_ms = \"8000\"\n"
	p.replaceConfig(t, next)
	loaded := strings.Count(p.log(), `"msg":"plugin loaded"`)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, 20*time.Second, "ver's new version to load", func() bool {
		return strings.Count(p.log(), `"msg":"plugin loaded"`) > loaded
	})
	time.Sleep(500 * time.Millisecond) // into yslow's initialization
	p.cmd.Process.Signal(syscall.SIGTERM)
	waitUntil(t, 5*time.Second, "readiness to turn 503", func() bool {
		s, _, _ := p.get("/.greenroom/health/v1/readiness")
		return s == 503
	})
	reloaded := func() int { return strings.Count(p.log(), `"msg":"reloaded"`) }
	waitUntil(t, 5*time.Second, "the reload to end", func() bool {
		return strings.Contains(p.log(), "reload not applied") || reloaded() > 1
	})
	for _, c := range []struct{ path, want string }{{"/api/ver/v", "v1"}, {"/api/zgone/v", "v1"}} {
		if s, body, err := p.get(c.path); s != 200 || body != c.want {
			t.Errorf("GET %s during the drain: %d %s %v, want 200 %s", c.path, s, body, err, c.want)
		}
	}
	if s, body, _ := p.get("/api/yslow/v"); s != 404 {
		t.Errorf("GET /api/yslow/v during the drain: %d %s, want 404", s, body)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if reloaded() != 1 {
		t.Errorf("the abandoned reload was logged as reloaded:\n%s", p.log())
	}
}
