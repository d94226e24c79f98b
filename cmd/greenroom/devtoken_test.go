package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// The binary as an outsider runs it (issue 6): `greenroom dev` prints a
// random admin token once at start, on stdout, which the admin API takes
// and the log (stderr) never shows; each run has its own. `greenroom
// serve` with the same config, which configures no credential, prints
// none, and its admin API answers nobody.
func TestDevPrintsAWorkingAdminToken(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte(fmt.Sprintf("[server]\nlisten = %q\n[runtime]\ncache_dir = %q\n", addr, filepath.Join(dir, "cache"))), 0o644)
	admin := func(token string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+"/.greenroom/plugins/v1/", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// run starts greenroom with args in dir, waits until it is ready, runs
	// check and stops it; it returns its stdout and stderr.
	run := func(check func(stdout string), args ...string) (string, string) {
		t.Helper()
		var mu sync.Mutex
		stdout, stderr := lockedBuffer{&mu, &bytes.Buffer{}}, lockedBuffer{&mu, &bytes.Buffer{}}
		cmd := exec.Command(greenroomBinary(t), args...)
		cmd.Dir, cmd.Stdout, cmd.Stderr = dir, stdout, stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		waitReady(t, addr)
		mu.Lock()
		out := stdout.b.String()
		mu.Unlock()
		check(out)
		cmd.Process.Kill()
		cmd.Wait()
		return stdout.b.String(), stderr.b.String()
	}
	tokenLine := regexp.MustCompile(`token for this run[^\n]*\n\n    (\S+)\n`)
	var tokens []string
	for i := 0; i < 2; i++ {
		var tok string
		out, log := run(func(out string) {
			m := tokenLine.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("greenroom dev printed no token:\n%s", out)
			}
			tok = m[1]
			if status := admin(tok); status != 200 {
				t.Errorf("admin API with the printed token: %d, want 200", status)
			}
			if status := admin(""); status != 401 {
				t.Errorf("admin API without a token: %d, want 401", status)
			}
		}, "dev")
		if n := strings.Count(out, "token for this run"); n != 1 {
			t.Errorf("token printed %d times, want once:\n%s", n, out)
		}
		if len(tok) < 32 || strings.Contains(log, tok) {
			t.Errorf("token %q: shorter than 32 characters, or in the log:\n%s", tok, log)
		}
		tokens = append(tokens, tok)
	}
	if tokens[0] == tokens[1] {
		t.Error("two runs of greenroom dev printed the same token")
	}
	out, log := run(func(string) {
		for _, tok := range append(tokens, "") {
			if status := admin(tok); status != 401 {
				t.Errorf("serve: admin API with token %q: %d, want 401", tok, status)
			}
		}
	}, "serve")
	if strings.Contains(out, "token for this run") || !strings.Contains(log, "NO CREDENTIALS ARE CONFIGURED") {
		t.Errorf("serve printed a token or did not warn:\nstdout:\n%s\nstderr:\n%s", out, log)
	}
}
