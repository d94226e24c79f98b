package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/build"
)

// SIGHUP re-reads the config and every plugin: a new module path is
// swapped in without a failed request.
func TestSIGHUPReloads(t *testing.T) {
	p := startServe(t, "")
	if s, b, err := p.get("/api/ver/v"); err != nil || s != 200 || b != "v1" {
		t.Fatalf("before: %d %q %v", s, b, err)
	}
	cache := filepath.Join(os.TempDir(), "greenroom-test-guests")
	ver2, _, err := build.Cached(context.Background(), filepath.Join("..", "..", "runtime", "server", "testdata", "guests", "ver2"), cache)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(p.cfg, "[plugins.ver]\npath = ")
	if i < 0 {
		t.Fatal("config has no [plugins.ver] path")
	}
	line := p.cfg[i+len("[plugins.ver]\n"):]
	line = line[:strings.IndexByte(line, '\n')]
	cfg := strings.Replace(p.cfg, line, "path = \""+ver2+"\"", 1)
	if err := os.WriteFile(p.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(60 * time.Second)
	for {
		s, b, err := p.get("/api/ver/v")
		if err != nil || s != 200 {
			t.Fatalf("during the reload: %d %q %v", s, b, err)
		}
		if b == "v2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %q 60s after SIGHUP", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(p.log(), "SIGHUP: reloading the config and every plugin") {
		t.Errorf("log does not mention the reload:\n%s", p.log())
	}
}

// SIGINT shuts down like SIGTERM: exit code 0 when nothing was cut off.
func TestSIGINTShutsDown(t *testing.T) {
	p := startServe(t, "")
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if !strings.Contains(p.log(), "shut down cleanly") {
		t.Errorf("log lacks the clean shutdown line:\n%s", p.log())
	}
}

// [server] metrics_listen serves /metrics without a credential on its own
// address; the main listener's /metrics still asks for an admin one.
func TestMetricsListen(t *testing.T) {
	t.Parallel()
	maddr := freeAddr(t)
	p := startServe(t, `metrics_listen = "`+maddr+`"`)
	if s, _, err := p.get("/api/ver/v"); err != nil || s != 200 {
		t.Fatalf("request: %d %v", s, err)
	}
	// Its requests carry an id (the caller's when valid) and get an
	// access log line, as the main listener's do.
	req, _ := http.NewRequest("GET", "http://"+maddr+"/metrics", nil)
	req.Header.Set("X-Request-Id", "scrape-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `greenroom_http_requests_total{plugin="ver",route="/v",status="200"} 1`) {
		t.Errorf("metrics_listen: %d\n%.2000s", resp.StatusCode, body)
	}
	if id := resp.Header.Get("X-Request-Id"); id != "scrape-1" {
		t.Errorf("metrics_listen answered X-Request-Id %q, want the one sent", id)
	}

	// Anything else gets the main listener's answers, logged too (it
	// got net/http's 404 page, and every method the metrics).
	for _, tc := range []struct {
		method, path string
		status       int
	}{{"GET", "/other", 404}, {"POST", "/metrics", 405}, {"DELETE", "/metrics", 405},
		// Unclean paths too (they got a ServeMux's redirect, unlogged).
		{"GET", "//metrics", 404}, {"GET", "/x/../metrics", 404}, {"GET", "/./metrics", 404}} {
		req, _ := http.NewRequest(tc.method, "http://"+maddr+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), `"request_id"`) || resp.Header.Get("X-Request-Id") == "" || bytes.Contains(body, []byte("greenroom_http")) {
			t.Errorf("metrics_listen %s %s: %d %s", tc.method, tc.path, resp.StatusCode, body)
		}
	}

	resp, err = http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("main listener /metrics without a credential: %d, want 401", resp.StatusCode)
	}

	// It keeps serving while a shutdown drains requests (it closed first:
	// nothing could be scraped for up to shutdown_timeout), and its
	// counts include the drain's.
	slow := make(chan int, 1)
	go func() {
		s, _, _ := p.get("/api/ver/slow?ms=2500")
		slow <- s
	}()
	time.Sleep(300 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	p.get("/api/ver/v") // refused: the server is shutting down
	resp, err = http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics_listen while requests drain: %v", err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `greenroom_http_requests_total{plugin="ver",route="-",status="503"} 1`) {
		t.Errorf("metrics_listen while requests drain: %d\n%.2000s", resp.StatusCode, body)
	}
	if s := <-slow; s != 200 {
		t.Errorf("in-flight request: %d", s)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if !strings.Contains(p.log(), `"listener":"metrics_listen","method":"GET","msg":"request","path":"/metrics","request_id":"scrape-1","status":200`) {
		t.Errorf("no access line for the scrape:\n%s", p.log())
	}
	if !strings.Contains(p.log(), `"listener":"metrics_listen","method":"POST","msg":"request","path":"/metrics"`) || !strings.Contains(p.log(), `"path":"/other"`) {
		t.Errorf("no access line for the refused requests:\n%s", p.log())
	}
}

// A SIGTERM after a storm of SIGHUPs that serve has not read yet (its
// goroutine busy, or not scheduled on a loaded machine) still shuts it
// down: on one channel, the SIGHUP waiting there made signal.Notify drop
// the SIGTERM, and the process served on (2 runs in 12 under load).
func TestSIGTERMAfterAStormOfSIGHUPs(t *testing.T) {
	sigs := notifySignals()
	defer sigs.stopNotify()
	for range 200 {
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	// Read by nobody yet: the SIGHUPs have arrived and wait.
	waitUntil(t, 5*time.Second, "a SIGHUP to arrive", func() bool { return len(sigs.reload) > 0 })
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case sig := <-sigs.stop:
			if sig == syscall.SIGTERM {
				// Leave the handlers a moment for any late delivery.
				time.Sleep(100 * time.Millisecond)
				return
			}
			t.Logf("on stop: %v", sig)
		case <-timeout:
			t.Fatal("the SIGTERM sent after 200 SIGHUPs was lost: serve would never shut down")
		}
	}
}
