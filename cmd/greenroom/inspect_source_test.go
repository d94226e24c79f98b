package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/build"
)

// A config whose plugin path names a Go source directory (as the
// repository's config.toml does, for greenroom dev) uses the modules built
// from it: plugin inspect FILE --config matches `plugin build DIR`'s
// default output, the DIR/<id>.wasm serve's refusal says to build, and
// greenroom dev's build in runtime.cache_dir. It matched none of them ("no
// plugin in config.toml uses plugins/hello/hello.wasm", exit 1) right after
// `greenroom plugin build plugins/hello`.
func TestInspectMatchesBuildsOfASourceDirectory(t *testing.T) {
	cache := filepath.Join(os.TempDir(), "greenroom-test-guests")
	src, err := filepath.Abs(filepath.Join("..", "..", "plugins", "hello"))
	if err != nil {
		t.Fatal(err)
	}
	devBuild, _, err := build.Cached(context.Background(), src, cache)
	if err != nil {
		t.Fatal(err)
	}
	wasm, err := os.ReadFile(devBuild)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// A source directory of its own (its sources do not matter here) with
	// modules built into it under several names.
	own := filepath.Join(dir, "src", "hello")
	os.MkdirAll(own, 0o755)
	for _, name := range []string{"hello.wasm", "greet.wasm", "other.wasm"} {
		if err := os.WriteFile(filepath.Join(own, name), wasm, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
[runtime]
cache_dir = %q
[plugins.dev]
path = %q
[plugins.dev.capabilities]
database = true
[plugins.greet]
path = "src/hello"
`, cache, src)), 0o644)
	for _, tc := range []struct{ file, plugin string }{
		{devBuild, "dev"}, // greenroom dev's build
		{filepath.Join(own, "hello.wasm"), "greet"}, // plugin build DIR
		{filepath.Join(own, "greet.wasm"), "greet"}, // as serve says: DIR/<id>.wasm
		{filepath.Join(own, "other.wasm"), ""},      // another name: not the plugin's
	} {
		out, code := runCLI(t, nil, "plugin", "inspect", tc.file, "--config", cfg)
		if tc.plugin == "" {
			if code != 1 || !strings.Contains(out, "no plugin in "+cfg+" uses") {
				t.Errorf("plugin inspect %s: exit %d, want 1 and no plugin matched:\n%s", tc.file, code, out)
			}
			continue
		}
		if code != 0 || !strings.Contains(out, "config plugin: "+tc.plugin+"\n") || strings.Count(out, "config plugin:") != 1 {
			t.Errorf("plugin inspect %s: exit %d, want plugin %s alone:\n%s", tc.file, code, tc.plugin, out)
		}
		if tc.plugin == "dev" && !strings.Contains(out, "granted, not imported: database") {
			t.Errorf("plugin inspect of greenroom dev's build: the grants are not compared:\n%s", out)
		}
	}
}

// A limits.memory from the environment is a secret, and so is the
// retire_memory left to its default, 3/4 of it: plugin inspect --config
// showed "memory [REDACTED], ... retire_memory 24MiB" for MEM=32MiB.
func TestInspectRedactsRetireMemoryOfASecretMemory(t *testing.T) {
	dir := t.TempDir()
	// Not a module: the report (the plugin's limits) is printed all the
	// same, with exit status 1.
	os.WriteFile(filepath.Join(dir, "a.wasm"), []byte("not wasm"), 0o644)
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte("[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\nmemory = \"${INSPECT_TEST_MEM}\"\n"), 0o644)
	for _, args := range [][]string{{}, {"--json"}} {
		out, _ := runCLI(t, []string{"INSPECT_TEST_MEM=32MiB"}, append([]string{"plugin", "inspect", filepath.Join(dir, "a.wasm"), "--config", cfg}, args...)...)
		if !strings.Contains(out, "config plugin: a") && !strings.Contains(out, `"plugin": "a"`) || strings.Contains(out, "32MiB") || strings.Contains(out, "24MiB") {
			t.Errorf("plugin inspect %v:\n%s", args, out)
		}
	}
}

// The refusal plugin inspect --config foretells for a module that needs
// more memory at start than limits.memory does not tell a cap from the
// environment in bytes ("over plugins.a.limits.memory (1048576 bytes)"
// for "${M}" with M=1MiB, which the redaction of "1MiB" does not match),
// as serve's own refusal does not (TestMemoryCapFromTheEnvironmentNotQuoted).
func TestInspectHidesAMemoryCapFromTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	wasm := filepath.Join(dir, "a.wasm")
	if out, code := runCLI(t, nil, "plugin", "build", filepath.Join("..", "..", "plugins", "hello"), "-o", wasm); code != 0 {
		t.Fatalf("plugin build: %d %s", code, out)
	}
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte("[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\nmemory = \"${INSPECT_TEST_MEM}\"\n[plugins.b]\npath = \"a.wasm\"\n[plugins.b.limits]\nmemory = \"2MiB\"\n"), 0o644)
	for _, args := range [][]string{{}, {"--json"}} {
		out, code := runCLI(t, []string{"INSPECT_TEST_MEM=1MiB"}, append([]string{"plugin", "inspect", wasm, "--config", cfg}, args...)...)
		if code != 1 || !strings.Contains(out, "over plugins.a.limits.memory ([REDACTED])") || strings.Contains(out, "1048576") {
			t.Errorf("plugin inspect %v: exit %d\n%s", args, code, out)
		}
		// A cap written in the file is told.
		if !strings.Contains(out, "over plugins.b.limits.memory (2097152 bytes)") {
			t.Errorf("plugin inspect %v: b's cap is not told\n%s", args, out)
		}
	}
}

// plugin inspect --config shows a plugin's limits from the environment as
// [REDACTED], in text and JSON: it showed them decoded ("memory 32MiB" for
// "${M}" with M=33554432, "timeout 7.3s" for 7300ms), which the redaction
// of the secrets as written does not match, and limits.interruptible by
// its line. Limits written in the file are shown.
func TestInspectRedactsLimitsFromTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.wasm"), []byte("not wasm"), 0o644)
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte("[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\nmemory = \"${INSPECT_M}\"\ntimeout = \"${INSPECT_T}\"\ninstances = \"${INSPECT_I}\"\ninterruptible = \"${INSPECT_IN}\"\nmax_response = \"3200KiB\"\n"), 0o644)
	env := []string{"INSPECT_M=33554432", "INSPECT_T=7300ms", "INSPECT_I=13", "INSPECT_IN=false"}
	out, _ := runCLI(t, env, "plugin", "inspect", filepath.Join(dir, "a.wasm"), "--config", cfg)
	if !strings.Contains(out, "limits:               memory [REDACTED], timeout [REDACTED], instances [REDACTED], queue_timeout 1s, max_requests 10000, retire_memory [REDACTED], max_response 3200KiB") ||
		!strings.Contains(out, "interrupted at its timeout: [REDACTED]") {
		t.Errorf("plugin inspect:\n%s", out)
	}
	out, _ = runCLI(t, env, "plugin", "inspect", filepath.Join(dir, "a.wasm"), "--config", cfg, "--json")
	for _, want := range []string{`"memory": "[REDACTED]"`, `"timeout": "[REDACTED]"`, `"instances": "[REDACTED]"`, `"interruptible": "[REDACTED]"`, `"max_response": "3200KiB"`} {
		if !strings.Contains(out, want) {
			t.Errorf("plugin inspect --json has no %s:\n%s", want, out)
		}
	}
	for _, leak := range []string{"32MiB", "24MiB", "7.3s", ": 13", "NO ("} {
		if strings.Contains(out, leak) {
			t.Errorf("plugin inspect --json shows %q:\n%s", leak, out)
		}
	}
}
