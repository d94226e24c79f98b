//go:build linux

package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

func TestSumIndex(t *testing.T) {
	dir := t.TempDir()
	x := sumIndex{filepath.Join(dir, "sums")}
	path := filepath.Join(dir, "m.wasm")
	a := []byte("\x00asm\x01\x00\x00\x00 version A")
	if err := os.WriteFile(path, a, 0o644); err != nil {
		t.Fatal(err)
	}

	// A file that changed within settle is read and hashed, and not
	// remembered.
	defer func(s time.Duration) { settle = s }(settle)
	settle = time.Hour
	src, err := x.load(path)
	if err != nil || string(src.wasm) != string(a) || src.sum != plugin.SHA256(a) || src.size != len(a) {
		t.Fatalf("first load: %+v %v", src, err)
	}
	if entries, _ := os.ReadDir(x.dir); len(entries) != 0 {
		t.Fatal("a file changed within settle was remembered")
	}

	// Settled, it is remembered, and then not read again.
	settle = 0
	if src, err = x.load(path); err != nil || src.wasm == nil {
		t.Fatalf("second load: %+v %v", src, err)
	}
	src, err = x.load(path)
	if err != nil || src.wasm != nil || src.read == nil || src.sum != plugin.SHA256(a) || src.size != len(a) {
		t.Fatalf("third load: sum %s, bytes read: %v, %v; want the remembered sum without reading", src.sum, src.wasm != nil, err)
	}
	if b, err := src.read(); err != nil || string(b) != string(a) {
		t.Fatalf("read: %q %v", b, err)
	}

	// Same size, modification time put back: the change time still
	// tells, and the new bytes are hashed.
	b := []byte("\x00asm\x01\x00\x00\x00 version B")
	old := mtime(t, path)
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if src, err = x.load(path); err != nil || src.sum != plugin.SHA256(b) || string(src.wasm) != string(b) {
		t.Fatalf("after a rewrite: sum %s, want B's %s (%v)", src.sum, plugin.SHA256(b), err)
	}

	// A module that changes between lookup and read is refused.
	src, err = x.load(path)
	if err != nil || src.wasm != nil {
		t.Fatalf("remembered B: %+v %v", src, err)
	}
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(path, a, 0o644)
	if _, err := src.read(); err == nil || !strings.Contains(err.Error(), "changed while it was being loaded") {
		t.Errorf("read after a change: %v", err)
	}

	// A damaged entry is ignored.
	x.load(path)
	entries, _ := os.ReadDir(x.dir)
	if len(entries) != 1 {
		t.Fatalf("%d entries, want 1", len(entries))
	}
	os.WriteFile(filepath.Join(x.dir, entries[0].Name()), []byte("greenroom-sum-v1 junk\n"), 0o644)
	if src, err = x.load(path); err != nil || string(src.wasm) != string(a) {
		t.Errorf("damaged entry: %+v %v", src, err)
	}

	// A missing file is an error naming it.
	if _, err := x.load(filepath.Join(dir, "gone.wasm")); err == nil || !strings.Contains(err.Error(), "gone.wasm") {
		t.Errorf("missing file: %v", err)
	}
}

func mtime(t *testing.T, path string) time.Time {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}
