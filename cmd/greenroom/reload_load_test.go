package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Continuous concurrent load on a plugin of the real binary while serve
// --watch reloads its changed .wasm, SIGHUP reloads it, and the reload
// endpoint meets a broken new version: no request fails (no error status,
// no connection reset), requests whose bodies are still arriving and long
// calls crossing the swaps included, responses switch to the new version, the broken
// one leaves the old serving, readiness stays 200 throughout, and the
// request metrics count every request, all 200.
func TestReloadUnderLoadByWatchSIGHUPAndEndpoint(t *testing.T) {
	cache, v1, v2 := verGuests(t)
	dir := t.TempDir()
	wasm := filepath.Join(dir, "ver.wasm")
	copyWasm(t, v1, wasm)
	addr := freeAddr(t)
	cfg := fmt.Sprintf(`[server]
listen = %q
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
limits = { instances = 2, queue_timeout = "10s" }
`, addr, filepath.Join(cache, "cmd-test-cache"), testToken, wasm)
	p := runServe(t, dir, addr, cfg, "--watch")
	waitReady(t, addr)

	var (
		mu       sync.Mutex
		failures []string
		sent     int
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	client := &http.Client{Timeout: 30 * time.Second}
	get := func() string {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/ver/v", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := client.Do(req)
		mu.Lock()
		sent++
		mu.Unlock()
		if err != nil {
			fail("%v", err)
			return ""
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || (string(b) != "v1" && string(b) != "v2") {
			fail("%d %q", resp.StatusCode, b)
		}
		return string(b)
	}
	// A body that arrives in pieces, so that it is still arriving when a
	// reload swaps the version, and a call that runs across the swap: each
	// is answered 200, by one version whole (the body's length counted by
	// the guest that answers).
	const bodySize, pieces = 64 << 10, 8
	posted, long := map[string]int{}, 0
	post := func() {
		pr, pw := io.Pipe()
		go func() {
			piece := bytes.Repeat([]byte("b"), bodySize/pieces)
			for range pieces {
				if _, err := pw.Write(piece); err != nil {
					return
				}
				time.Sleep(40 * time.Millisecond)
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", "http://"+addr+"/api/ver/echo", pr)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := client.Do(req)
		pr.CloseWithError(io.EOF)
		mu.Lock()
		sent++
		mu.Unlock()
		if err != nil {
			fail("POST with a body arriving: %v", err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf(":%d", bodySize); resp.StatusCode != 200 || (string(b) != "v1"+want && string(b) != "v2"+want) {
			fail("POST with a body arriving: %d %q", resp.StatusCode, b)
			return
		}
		mu.Lock()
		posted[string(b[:2])]++
		mu.Unlock()
	}
	slow := func() {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/ver/slow?ms=700", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := client.Do(req)
		mu.Lock()
		sent++
		mu.Unlock()
		if err != nil {
			fail("a long call: %v", err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || (string(b) != "v1" && string(b) != "v2") {
			fail("a long call: %d %q", resp.StatusCode, b)
			return
		}
		mu.Lock()
		long++
		mu.Unlock()
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for _, f := range []func(){post, post, slow} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				f()
			}
		}()
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				get()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			resp, err := client.Get("http://" + addr + "/.greenroom/health/v1/readiness")
			if err != nil {
				fail("readiness: %v", err)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				fail("readiness: %d", resp.StatusCode)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	switched := func(want string) {
		t.Helper()
		waitUntil(t, 60*time.Second, "the plugin to answer "+want, func() bool { return get() == want })
		for range 5 {
			if got := get(); got != want {
				t.Fatalf("answered %q after it switched to %q", got, want)
			}
		}
	}

	// The watcher sees the changed module.
	copyWasm(t, v2, wasm)
	switched("v2")
	// SIGHUP (the watcher sees the change too: either reload, or both),
	// while a body is half sent and a long call runs: the call is
	// answered whole, the body, once in, by v1.
	half := make(chan struct{})
	pr, pw := io.Pipe()
	crossing := make(chan string, 2)
	go func() {
		req, _ := http.NewRequest("POST", "http://"+addr+"/api/ver/echo", pr)
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.ContentLength = 2 * bodySize
		resp, err := client.Do(req)
		// An answer before the body was read whole (a failure) must not
		// leave the test's writes below blocked.
		pr.CloseWithError(io.ErrClosedPipe)
		if err != nil {
			crossing <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		crossing <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	go func() {
		close(half)
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/ver/slow?ms=1500", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := client.Do(req)
		if err != nil {
			crossing <- "long: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		crossing <- fmt.Sprintf("long: %d %s", resp.StatusCode, b)
	}()
	pw.Write(bytes.Repeat([]byte("h"), bodySize))
	<-half
	time.Sleep(100 * time.Millisecond) // the long call reaches v2
	copyWasm(t, v1, wasm)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	switched("v1")
	pw.Write(bytes.Repeat([]byte("h"), bodySize))
	pw.Close()
	got := []string{<-crossing, <-crossing}
	slices.Sort(got)
	// The long call ran on v2, or, when it waited for an instance
	// behind the load, was moved to v1: either way answered whole.
	if want := fmt.Sprintf("200 v1:%d", 2*bodySize); got[0] != want || (got[1] != "long: 200 v2" && got[1] != "long: 200 v1") {
		t.Errorf("across the SIGHUP reload: %q, want %q and a long call's 200", got, want)
	}
	mu.Lock()
	sent += 2
	mu.Unlock()
	// A broken new version, reloaded by the endpoint: the old one serves.
	if err := os.WriteFile(wasm+".tmp", []byte("not wasm at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(wasm+".tmp", wasm); err != nil {
		t.Fatal(err)
	}
	status, body, err := p.do("POST", "/.greenroom/plugins/v1/reload")
	var res struct {
		Plugins map[string]struct {
			Outcome string `json:"outcome"`
			Serving bool   `json:"serving"`
		} `json:"plugins"`
	}
	json.Unmarshal([]byte(body), &res)
	if err != nil || status != 422 || res.Plugins["ver"].Outcome != "failed" || !res.Plugins["ver"].Serving {
		t.Fatalf("reload of a broken module: %d %s %v", status, body, err)
	}
	for range 20 {
		if got := get(); got != "v1" {
			t.Fatalf("answered %q after its new version failed to load, want v1", got)
		}
	}
	// Fixed by the endpoint's reload.
	copyWasm(t, v2, wasm)
	if status, body, err := p.do("POST", "/.greenroom/plugins/v1/reload"); err != nil || status != 200 {
		t.Fatalf("reload: %d %s %v", status, body, err)
	}
	switched("v2")

	stop.Store(true)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed, e.g. %v", len(failures), sent, failures[:min(5, len(failures))])
	}
	status, body, err = p.get("/metrics")
	if err != nil || status != 200 {
		t.Fatalf("/metrics: %d %v", status, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	counted := 0.0
	for _, m := range fams["greenroom_http_requests_total"].GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.Label {
			labels[lp.GetName()] = lp.GetValue()
		}
		if labels["plugin"] != "ver" {
			continue
		}
		counted += m.GetCounter().GetValue()
		if labels["status"] != "200" {
			t.Errorf("greenroom_http_requests_total%v = %v", labels, m.GetCounter().GetValue())
		}
	}
	if counted != float64(sent) {
		t.Errorf("greenroom_http_requests_total{plugin=\"ver\"} sums to %v, %d requests were sent", counted, sent)
	}
	if posted["v1"] == 0 || posted["v2"] == 0 || long == 0 {
		t.Errorf("bodies answered by each version %v, long calls %d: the load did not cross the reloads", posted, long)
	}
	t.Logf("%d requests across the reloads, none failed (bodies answered by each version %v, %d long calls)", sent, posted, long)
}
