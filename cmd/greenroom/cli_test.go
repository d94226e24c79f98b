package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the greenroom binary with args (and env added to the test's)
// and returns its combined output and exit code.
func runCLI(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(greenroomBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode()
	}
	if err != nil {
		t.Fatalf("greenroom %v: %v", args, err)
	}
	return string(out), 0
}

// How a command is called wrongly is a usage error, exit code 2: never 0
// (a script running `migrate down` must not see success) nor 1. A group
// called alone lacks its command: it prints its help and exits 2 too, as
// help does for an unknown topic; asking for help is no error.
func TestCLIUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"nosuch"}, {"migrate", "down"}, {"plugin", "nosuch"}, {"config", "nosuch"},
		{"serve", "extra"}, {"plugin", "build"}, {"plugin", "build", "a", "b"},
		{"config", "check", "--config"}, {"--bogus"}, {"version", "--bogus"},
		{}, {"migrate"}, {"plugin"}, {"config"}, {"help", "bogus"}, {"completion"}, {"completion", "bogus"},
	} {
		if out, code := runCLI(t, nil, args...); code != 2 {
			t.Errorf("greenroom %s: exit %d, want 2:\n%s", strings.Join(args, " "), code, out)
		} else if group := len(args) == 0 || len(args) == 1 && strings.Contains("migrate plugin config", args[0]); group && !strings.Contains(out, "Usage:") {
			t.Errorf("greenroom %s: no help:\n%s", strings.Join(args, " "), out)
		}
	}
	for _, args := range [][]string{{"--help"}, {"help"}, {"help", "config"}, {"config", "--help"}, {"serve", "--help"}} {
		if out, code := runCLI(t, nil, args...); code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("greenroom %s: exit %d, want 0 with the help:\n%s", strings.Join(args, " "), code, out)
		}
	}
}

// The CLI the spine names: version, config check, config print, plugin
// build and plugin inspect, with and without a config.
func TestCLI(t *testing.T) {
	out, code := runCLI(t, nil, "version")
	if code != 0 || !strings.Contains(out, "ABI v1") {
		t.Errorf("version: %d %q", code, out)
	}

	dir := t.TempDir()
	wasm := filepath.Join(dir, "hello.wasm")
	if out, code := runCLI(t, nil, "plugin", "build", filepath.Join("..", "..", "plugins", "hello"), "-o", wasm); code != 0 {
		t.Fatalf("plugin build: %d %s", code, out)
	}
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte(fmt.Sprintf(`
[auth.tokens.ci]
token = "${CLI_TEST_TOKEN}"
subject = "service:ci"
[plugins.hello]
path = %q
[plugins.hello.capabilities]
database = true
`, wasm)), 0o644)
	env := []string{"CLI_TEST_TOKEN=cli-secret-0123456789abcdef0123456789"}
	if out, code := runCLI(t, env, "config", "check", "--config", good); code != 0 || !strings.Contains(out, "config OK") {
		t.Errorf("config check (good): %d %q", code, out)
	}
	// A token scoped to a plugin the config lacks: valid, with a warning.
	scoped := filepath.Join(dir, "scoped.toml")
	os.WriteFile(scoped, []byte(fmt.Sprintf("[auth.tokens.ci]\ntoken = \"${CLI_TEST_TOKEN}\"\nsubject = \"service:ci\"\nplugins = [\"helo\"]\n[plugins.hello]\npath = %q\n", wasm)), 0o644)
	if out, code := runCLI(t, env, "config", "check", "--config", scoped); code != 0 || !strings.Contains(out, "config OK") ||
		!strings.Contains(out, "warning: "+scoped+":4: auth.tokens.ci.plugins[0]: names plugin \"helo\"") {
		t.Errorf("config check (token scoped to an unknown plugin): %d %q", code, out)
	}
	// The id from the environment is a secret: the warning does not show it.
	os.WriteFile(scoped, []byte(fmt.Sprintf("[auth.tokens.ci]\ntoken = \"${CLI_TEST_TOKEN}\"\nsubject = \"service:ci\"\nplugins = [\"${CLI_TEST_SCOPE}\"]\n[plugins.hello]\npath = %q\n", wasm)), 0o644)
	if out, code := runCLI(t, append(env, "CLI_TEST_SCOPE=hiddenplugin"), "config", "check", "--config", scoped); code != 0 ||
		!strings.Contains(out, "names plugin \"[REDACTED]\"") || strings.Contains(out, "hiddenplugin") {
		t.Errorf("config check (token scoped to a secret unknown plugin): %d %q", code, out)
	}
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[server]\nlisten = 5\nbogus = 1\n[plugins.x]\npath = \"${CLI_TEST_UNSET}\"\n"), 0o644)
	out, code = runCLI(t, nil, "config", "check", "--config", bad)
	for _, want := range []string{"3 errors", "bad.toml:2: server.listen", "bad.toml:3: server.bogus: unknown key", "bad.toml:5: plugins.x.path: environment variable CLI_TEST_UNSET is not set"} {
		if code == 0 || !strings.Contains(out, want) {
			t.Errorf("config check (bad): exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
	// A valid config whose plugin files cannot load: named with the line
	// that set each path, resolved against the config's directory (the
	// test runs elsewhere); a source directory passes (greenroom dev).
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not wasm"), 0o644)
	files := filepath.Join(dir, "files.toml")
	// A pin that does not name the file is found too (serve refuses the
	// plugin: an audit's config check passed it).
	pin := strings.Repeat("a", 64)
	// A module larger than any load takes (sparse: 300 MiB of zeros after
	// the wasm header): serve refused it, config check passed it.
	huge, err := os.Create(filepath.Join(dir, "huge.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	huge.Write([]byte("\x00asm\x01\x00\x00\x00"))
	huge.Truncate(300 << 20)
	huge.Close()
	os.WriteFile(files, []byte("[plugins.gone]\npath = \"gone.wasm\"\n[plugins.text]\npath = \"notes.txt\"\n[plugins.src]\npath = \".\"\n[plugins.hello]\npath = \"hello.wasm\"\n[plugins.pinned]\npath = \"hello.wasm\"\nsha256 = \""+pin+"\"\n[plugins.huge]\npath = \"huge.wasm\"\n"), 0o644)
	out, code = runCLI(t, nil, "config", "check", "--config", files)
	for _, want := range []string{"4 plugin files cannot be loaded", "files.toml:13: plugins.huge.path: " + filepath.Join(dir, "huge.wasm") + ": 314572800 bytes, more than 256 MiB", "files.toml:11: plugins.pinned.sha256: sha256 pin mismatch: config pins " + pin + ", " + filepath.Join(dir, "hello.wasm") + " is ", "files.toml:2: plugins.gone.path: stat " + filepath.Join(dir, "gone.wasm") + ": no such file", "files.toml:4: plugins.text.path: " + filepath.Join(dir, "notes.txt") + " is not a WebAssembly module"} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("config check (plugin files): exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
	// By file and line, as the config's own errors (not by plugin id).
	if a, b, c := strings.Index(out, "files.toml:2:"), strings.Index(out, "files.toml:4:"), strings.Index(out, "files.toml:11:"); a < 0 || a > b || b > c {
		t.Errorf("config check (plugin files): not ordered by line:\n%s", out)
	}
	if strings.Contains(out, "plugins.src") || strings.Contains(out, "plugins.hello") {
		t.Errorf("config check (plugin files) named a source directory or a module:\n%s", out)
	}
	// The right pin (upper case, as an operator may paste it) passes.
	helloSum, err := os.ReadFile(filepath.Join(dir, "hello.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(helloSum)
	pinned := filepath.Join(dir, "pinned.toml")
	os.WriteFile(pinned, []byte("[plugins.pinned]\npath = \"hello.wasm\"\nsha256 = \""+strings.ToUpper(hex.EncodeToString(sum[:]))+"\"\n"), 0o644)
	if out, code := runCLI(t, nil, "config", "check", "--config", pinned); code != 0 || !strings.Contains(out, "config OK") {
		t.Errorf("config check (the right pin): %d %q", code, out)
	}

	out, code = runCLI(t, env, "config", "print", "--config", good)
	if code != 0 || !strings.Contains(out, "[REDACTED]") || strings.Contains(out, "cli-secret") || !strings.Contains(out, "[plugins.hello]") {
		t.Errorf("config print: %d\n%s", code, out)
	}

	out, code = runCLI(t, nil, "plugin", "inspect", "--json", wasm)
	var info struct {
		Module struct {
			SHA256     string `json:"sha256"`
			ABIVersion int    `json:"abi_version"`
		} `json:"module"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || len(info.Module.SHA256) != 64 || info.Module.ABIVersion != 1 {
		t.Errorf("plugin inspect --json: %d %.300s", code, out)
	}
	var top struct {
		SHA256     string `json:"sha256"`
		ABIVersion int    `json:"abi_version"`
	}
	if json.Unmarshal([]byte(out), &top) != nil || top.SHA256 != info.Module.SHA256 || top.ABIVersion != 1 {
		t.Errorf("plugin inspect --json: no sha256 and abi_version at the top level, as the admin API has them: %.300s", out)
	}
	out, code = runCLI(t, env, "plugin", "inspect", wasm, "--config", good)
	for _, want := range []string{"abi version:   1", "config plugin: hello", "granted, not imported: database", "imported, not granted: none", "interrupted at its timeout: yes", "limits:               memory 64MiB, timeout 5s, instances 4"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("plugin inspect --config: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
	// The operator's opt-out is loud in inspection too (issue 8).
	optOut := filepath.Join(dir, "optout.toml")
	os.WriteFile(optOut, []byte(fmt.Sprintf("[plugins.hello]\npath = %q\nlimits = { interruptible = false }\n", wasm)), 0o644)
	out, code = runCLI(t, nil, "plugin", "inspect", wasm, "--config", optOut)
	if code != 0 || !strings.Contains(out, "interrupted at its timeout: NO (limits.interruptible = false") {
		t.Errorf("plugin inspect of a plugin that opted out: exit %d:\n%s", code, out)
	}
	out, _ = runCLI(t, nil, "plugin", "inspect", "--json", wasm, "--config", optOut)
	if !strings.Contains(out, `"interruptible": false`) || !strings.Contains(out, `"limits": {`) || !strings.Contains(out, `"queue_timeout": "1s"`) {
		t.Errorf("plugin inspect --json of a plugin that opted out (with its limits):\n%s", out)
	}
	// The file under another name (a link) is the plugin's file too.
	link := filepath.Join(dir, "link.wasm")
	if err := os.Symlink(wasm, link); err != nil {
		t.Fatal(err)
	}
	if out, code := runCLI(t, nil, "plugin", "inspect", link, "--config", optOut); code != 0 || !strings.Contains(out, "config plugin: hello") {
		t.Errorf("plugin inspect of a link to the configured file: exit %d:\n%s", code, out)
	}
	// One module used by two plugins: each plugin's grants, and a refusal
	// that only the second's cap causes names that plugin.
	shared := filepath.Join(dir, "shared.toml")
	os.WriteFile(shared, []byte(fmt.Sprintf(`
[plugins.hello]
path = %q
[plugins.hello.capabilities]
database = true
[plugins.second]
path = %q
limits = { memory = "1MiB" }
[plugins.second.capabilities]
scheduler = true
`, wasm, wasm)), 0o644)
	out, code = runCLI(t, nil, "plugin", "inspect", wasm, "--config", shared)
	for _, want := range []string{"config plugin: hello\n  granted:              database", "config plugin: second\n  granted:              scheduler", "plugin second: module needs"} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("plugin inspect --config with two plugins on one module: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
	if strings.Contains(out, "plugin hello: module needs") {
		t.Errorf("plugin inspect --config blamed hello for second's memory cap:\n%s", out)
	}
	// A plugin granted nothing has an empty list in the JSON, not null.
	none := filepath.Join(dir, "none.toml")
	os.WriteFile(none, []byte(fmt.Sprintf("[plugins.hello]\npath = %q\n", wasm)), 0o644)
	if out, _ := runCLI(t, nil, "plugin", "inspect", "--json", wasm, "--config", none); !strings.Contains(out, `"granted": []`) || strings.Contains(out, "null") {
		t.Errorf("plugin inspect --json of a plugin granted nothing:\n%s", out)
	}
	// A Go main package that is no plugin builds, but is not kept; an
	// output that is a directory is a usage error.
	plain := filepath.Join(dir, "plain")
	os.MkdirAll(plain, 0o755)
	os.WriteFile(filepath.Join(plain, "go.mod"), []byte("module plain\n\ngo 1.24\n"), 0o644)
	os.WriteFile(filepath.Join(plain, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644)
	plainOut := filepath.Join(dir, "plain.wasm")
	if out, code := runCLI(t, nil, "plugin", "build", plain, "-o", plainOut); code != 1 || !strings.Contains(out, "not a greenroom plugin") {
		t.Errorf("plugin build of a non-plugin: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(plainOut); err == nil {
		t.Error("the non-plugin's module was kept")
	}
	// Over an existing plugin module, the non-plugin leaves it as it was.
	kept := filepath.Join(dir, "kept.wasm")
	goodWasm, _ := os.ReadFile(wasm)
	os.WriteFile(kept, goodWasm, 0o644)
	if _, code := runCLI(t, nil, "plugin", "build", plain, "-o", kept); code != 1 {
		t.Errorf("plugin build of a non-plugin over a module: exit %d", code)
	}
	if b, err := os.ReadFile(kept); err != nil || !bytes.Equal(b, goodWasm) {
		t.Errorf("the module at -o was not left as it was: %v", err)
	}
	if leftover, _ := filepath.Glob(filepath.Join(dir, "*.building")); len(leftover) > 0 {
		t.Errorf("left behind: %v", leftover)
	}
	if out, code := runCLI(t, nil, "plugin", "build", plain, "-o", dir); code != 2 || !strings.Contains(out, "is a directory") {
		t.Errorf("plugin build -o DIR: exit %d\n%s", code, out)
	}
	newDir := filepath.Join(dir, "newdir") + "/"
	if out, code := runCLI(t, nil, "plugin", "build", plain, "-o", newDir); code != 2 || !strings.Contains(out, "is a directory") {
		t.Errorf("plugin build -o newdir/: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "newdir")); err == nil {
		t.Error("plugin build -o newdir/ left a file named newdir")
	}
	if tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), "*.tmp")); len(tmps) > 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
	// With a config, what serve would refuse too: a wrong pin, a memory
	// cap below what the module needs at start.
	for name, extra := range map[string]string{
		"sha256 pin mismatch: config pins 0000": "sha256 = \"" + strings.Repeat("0", 64) + "\"\n",
		"over plugins.hello.limits.memory":      "limits = { memory = \"1MiB\" }\n",
	} {
		refused := filepath.Join(dir, "refused.toml")
		os.WriteFile(refused, []byte(fmt.Sprintf("[plugins.hello]\npath = %q\n%s", wasm, extra)), 0o644)
		if out, code := runCLI(t, nil, "plugin", "inspect", wasm, "--config", refused); code != 1 || !strings.Contains(out, name) {
			t.Errorf("plugin inspect --config, want %q: exit %d\n%s", name, code, out)
		}
	}
	notWasm := filepath.Join(dir, "not.wasm")
	os.WriteFile(notWasm, []byte("#!/bin/sh\n"), 0o644)
	if out, code := runCLI(t, nil, "plugin", "inspect", notWasm); code == 0 || !strings.Contains(out, "not a WebAssembly module") {
		t.Errorf("plugin inspect of a non-module: %d %q", code, out)
	}
	if out, _ := runCLI(t, nil, "plugin", "inspect", "--json", notWasm); strings.Contains(out, "null") || !strings.Contains(out, `"imports": []`) {
		t.Errorf("plugin inspect --json of a non-module has null lists: %s", out)
	}
	// Declares 4 294 967 295 globals in 5 bytes: refused before wazero
	// would try to allocate them all.
	bomb := filepath.Join(dir, "bomb.wasm")
	os.WriteFile(bomb, []byte{0, 'a', 's', 'm', 1, 0, 0, 0, 6, 5, 0xff, 0xff, 0xff, 0xff, 0x0f}, 0o644)
	if out, code := runCLI(t, nil, "plugin", "inspect", bomb); code == 0 || !strings.Contains(out, "malformed module: global section at byte 8: 4294967295 globals declared in 0 bytes") {
		t.Errorf("plugin inspect of a module declaring more than it holds: %d %q", code, out)
	}
	// One function of 1001 empty loops: past the limit that keeps
	// compiling a function short.
	body := []byte{0}
	for range 1001 {
		body = append(body, 0x03, 0x40, 0x0b)
	}
	body = append(body, 0x0b)
	sec := binary.AppendUvarint([]byte{1}, uint64(len(body)))
	sec = append(sec, body...)
	loops := []byte{0, 'a', 's', 'm', 1, 0, 0, 0, 1, 4, 1, 0x60, 0, 0, 3, 2, 1, 0, 5, 3, 1, 0, 1, 10}
	loops = append(binary.AppendUvarint(loops, uint64(len(sec))), sec...)
	slow := filepath.Join(dir, "loops.wasm")
	os.WriteFile(slow, loops, 0o644)
	if out, code := runCLI(t, nil, "plugin", "inspect", slow); code == 0 || !strings.Contains(out, "function 0: more than 1000 loops (memory.fill and table.fill included) in one function") {
		t.Errorf("plugin inspect of a module over the loop limit: %d %q", code, out)
	}
}
