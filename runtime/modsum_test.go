//go:build linux

package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

func TestSumIndex(t *testing.T) {
	dir := t.TempDir()
	x := sumIndex{dir: filepath.Join(dir, "sums")}
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

	// A module that changes between lookup and read: read returns the
	// new bytes (plugin.Load hashes them and goes on under their sum),
	// and the entry, right for the file it was made for, is not blamed.
	log, hook := logtest.NewNullLogger()
	x.log = log
	src, err = x.load(path)
	if err != nil || src.wasm != nil {
		t.Fatalf("remembered B: %+v %v", src, err)
	}
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(path, a, 0o644)
	if got, err := src.read(); err != nil || string(got) != string(a) {
		t.Errorf("read after a change: %q %v", got, err)
	}
	if len(hook.AllEntries()) != 0 {
		t.Errorf("logged %q for a file that changed", hook.LastEntry().Message)
	}

	// A damaged entry is deleted with a warning naming it, and is a miss.
	x.load(path)
	entries, _ := os.ReadDir(x.dir)
	if len(entries) != 1 {
		t.Fatalf("%d entries, want 1", len(entries))
	}
	entry := filepath.Join(x.dir, entries[0].Name())
	os.WriteFile(entry, []byte("greenroom-sum-v2 junk\n"), 0o644)
	if src, err = x.load(path); err != nil || string(src.wasm) != string(a) {
		t.Errorf("damaged entry: %+v %v", src, err)
	}
	if e := hook.LastEntry(); e == nil || e.Level != logrus.WarnLevel || e.Data["entry"] != entry {
		t.Errorf("damaged entry: logged %+v, want a warning naming %s", e, entry)
	}

	// An entry copied from another module path does not vouch for this
	// one: its checksum covers the path.
	hook.Reset()
	other := filepath.Join(dir, "other.wasm")
	id, _ := fileIdentity(path)
	x.store(other, id.key, plugin.SHA256(b))
	otherEntry, _ := x.entry(other)
	good, _ := os.ReadFile(entry)
	copied, _ := os.ReadFile(otherEntry)
	os.WriteFile(entry, copied, 0o644)
	if src, err = x.load(path); err != nil || string(src.wasm) != string(a) || src.sum != plugin.SHA256(a) {
		t.Errorf("copied entry: %+v %v", src, err)
	}
	if e := hook.LastEntry(); e == nil || e.Level != logrus.WarnLevel {
		t.Errorf("copied entry: logged %+v, want a warning", e)
	}

	// An entry of the earlier format is a plain miss, rewritten.
	hook.Reset()
	os.WriteFile(entry, []byte("greenroom-sum-v1 "+id.key+" "+plugin.SHA256(a)+"\n"), 0o644)
	if src, err = x.load(path); err != nil || src.wasm == nil {
		t.Errorf("old entry: %+v %v", src, err)
	}
	if now, _ := os.ReadFile(entry); string(now) != string(good) || len(hook.AllEntries()) != 0 {
		t.Errorf("old entry: now %q, want %q; logged %d", now, good, len(hook.AllEntries()))
	}

	// A well-formed entry with a sum that is not the file's (only a writer
	// of the cache directory makes one): read returns the bytes, and the
	// entry is replaced, with a warning naming it.
	x.store(path, id.key, plugin.SHA256(b))
	if src, err = x.load(path); err != nil || src.wasm != nil || src.sum != plugin.SHA256(b) {
		t.Fatalf("forged entry: %+v %v", src, err)
	}
	if got, err := src.read(); err != nil || string(got) != string(a) {
		t.Errorf("forged entry read: %q %v", got, err)
	}
	if e := hook.LastEntry(); e == nil || e.Level != logrus.WarnLevel || e.Data["entry"] != entry {
		t.Errorf("forged entry: logged %+v, want a warning naming %s", e, entry)
	}
	if now, _ := os.ReadFile(entry); string(now) != string(good) {
		t.Errorf("forged entry: now %q, want %q", now, good)
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
