package plugin

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// ReadModule reads regular files only, up to MaxModuleSize: a device, a
// FIFO (whose read would block for good), a directory and a larger
// (sparse) file are refused at once, without reading them.
func TestReadModuleRefusesWhatIsNotAModuleFile(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok.wasm")
	if err := os.WriteFile(ok, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadModule(ok); err != nil || len(b) != 8 {
		t.Fatalf("regular file: %d bytes, %v", len(b), err)
	}
	fifo := filepath.Join(dir, "fifo.wasm")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.wasm")
	if err := os.WriteFile(big, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, MaxModuleSize+1); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/dev/zero":                        "not a regular file (a character device)",
		fifo:                               "not a regular file (a named pipe)",
		dir:                                "not a regular file (a directory)",
		big:                                "more than 256 MiB",
		filepath.Join(dir, "missing.wasm"): "no such file",
	} {
		if _, err := ReadModule(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error containing %q", path, err, want)
		}
	}
}
