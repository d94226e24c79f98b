package build

import (
	"os"
	"path/filepath"
	"testing"
)

// The hash of a plugin's sources must not depend on how its directory is
// spelled: callers with a relative and an absolute path share one build.
func TestSourceHashIgnoresSpelling(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\nfunc main() {}\n"), 0o644)
	abs, err := SourceHash(dir)
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := SourceHash(rel); got != abs {
		t.Errorf("relative %q hashes to %s, absolute to %s", rel, got, abs)
	}
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\nfunc main() { println() }\n"), 0o644)
	if changed, _ := SourceHash(dir); changed == abs {
		t.Error("a changed source does not change the hash")
	}
}
