// Package guesttest builds guest plugins for tests, once per source tree,
// into a cache shared by every test binary of the module.
package guesttest

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/build"
)

var mu sync.Mutex

// Root returns the repository root (the directory of go.mod).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// CacheDir is where test builds of guests are kept.
func CacheDir() string {
	return filepath.Join(os.TempDir(), "greenroom-test-guests")
}

// Build builds the guest in dir (relative to the repository root) and
// returns the path of its .wasm file, failing the test on error.
func Build(tb testing.TB, dir string) string {
	tb.Helper()
	p, err := BuildErr(dir)
	if err != nil {
		tb.Fatalf("build guest %s: %v", dir, err)
	}
	return p
}

// BuildErr is Build for TestMain, where there is no testing.TB.
func BuildErr(dir string) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, _, err := build.Cached(ctx, filepath.Join(Root(), dir), CacheDir())
	return p, err
}

// Read builds the guest in dir and returns its bytes.
func Read(tb testing.TB, dir string) []byte {
	tb.Helper()
	b, err := os.ReadFile(Build(tb, dir))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
