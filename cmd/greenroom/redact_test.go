package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// What a command prints itself, not through the logger, redacts the
// secrets of the config it loaded too: the final error (a listener address
// from ${VAR} quoted by the system's error) and plugin inspect's report (a
// pin from ${VAR}).
func TestCommandOutputRedactsSecrets(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "listen.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[server]\nlisten = \"${GR_TEST_LISTEN}\"\n[auth]\ndangerously_disable = true\n[runtime]\ncache_dir = %q\n", filepath.Join(dir, "cache"))), 0o644)
	out, code := runCLI(t, []string{"GR_TEST_LISTEN=" + addr}, "serve", "--config", cfg)
	if code == 0 || !strings.Contains(out, "address already in use") || strings.Contains(out, addr) {
		t.Errorf("serve on a busy secret address: exit %d, output:\n%s\nwant a failure that does not show %s", code, out, addr)
	}

	wasm := filepath.Join(dir, "hello.wasm")
	if out, code := runCLI(t, nil, "plugin", "build", filepath.Join("..", "..", "plugins", "hello"), "-o", wasm); code != 0 {
		t.Fatalf("plugin build: %d %s", code, out)
	}
	pin := strings.Repeat("ab", 32)
	cfg = filepath.Join(dir, "pin.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[plugins.hello]\npath = %q\nsha256 = \"${GR_TEST_PIN}\"\n", wasm)), 0o644)
	for _, args := range [][]string{{"plugin", "inspect", wasm, "--config", cfg}, {"plugin", "inspect", wasm, "--config", cfg, "--json"}} {
		out, code := runCLI(t, []string{"GR_TEST_PIN=" + pin}, args...)
		if code != 1 || !strings.Contains(out, "pin mismatch") || strings.Contains(out, pin) {
			t.Errorf("%v with a secret pin that does not match: exit %d, output:\n%s\nwant exit 1 without the pin", args, code, out)
		}
	}
}
