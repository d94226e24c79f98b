//go:build !wasip1

package greenroom

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The SDK and the example plugins are built for wasip1: go vet must pass
// for them as they are built, not only natively, where their native-only
// tests (the *_native_test.go files, the plugins' main_test.go, all
// tagged !wasip1) are compiled in and the wasip1 files left out. A test
// that uses a native-only helper (SetDB, SetConfig, WithPrincipal, ...)
// without that tag breaks the wasip1 vet, and this test.
func TestVetWasip1(t *testing.T) { vetFor(t, "wasip1", "wasm") }

// The SDK compiles natively so that plugins can be unit-tested on the
// builder's machine, which may be a 32-bit one (GOARCH=386, arm: a
// Raspberry Pi): there int is 32 bits, and a test that passes an untyped
// constant over 2^31 as an int (9|1<<31, a rollback handle with
// txCallEnded) did not compile, so the SDK's tests failed to build there.
func TestVet32Bit(t *testing.T) { vetFor(t, "linux", "386") }

// vetFor runs go vet on the SDK and the example plugins built for goos
// and goarch, failing t with its report.
func vetFor(t *testing.T, goos, goarch string) {
	t.Helper()
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool: %v", err)
	}
	cmd := exec.Command(gotool, "vet", "./guest-sdk/...", "./plugins/...")
	cmd.Dir = "../.." // the module's root
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch)
	out, err := cmd.CombinedOutput()
	var report []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// Fetching a module the cache lacks is not a finding.
		if line != "" && !strings.HasPrefix(line, "go: downloading ") {
			report = append(report, line)
		}
	}
	if err != nil || len(report) > 0 {
		t.Fatalf("GOOS=%s GOARCH=%s go vet ./guest-sdk/... ./plugins/...: %v\n%s", goos, goarch, err, strings.Join(report, "\n"))
	}
}
