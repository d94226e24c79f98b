package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

// plugin inspect is how an operator vets a file it does not trust: the
// module's names are printed escaped, so that one cannot clear the
// screen or forge a line ("valid: yes") of the report (an audit).
func TestInspectEscapesModuleNames(t *testing.T) {
	forged := "x\n\x1b[2Jvalid:         yes"
	var buf bytes.Buffer
	printInspection(&buf, inspection{File: "m.wasm", Error: "refused", Module: plugin.Info{
		Exports: []string{forged},
		Imports: []plugin.Import{{Module: forged, Name: forged}},
	}})
	out := buf.String()
	if strings.Contains(out, "\x1b") || strings.Contains(out, "\nvalid:         yes") {
		t.Errorf("a module's names reached the report unescaped:\n%s", out)
	}
}

// plugin build -o renamed the module over whatever the path named: a
// FIFO or a device became a regular file (as root, -o /dev/null replaced
// the system's /dev/null; an audit). A path that is not a regular file is
// refused before building.
func TestBuildRefusesAnIrregularOutput(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "out.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	out, code := runCLI(t, nil, "plugin", "build", filepath.Join("..", "..", "plugins", "hello"), "-o", fifo)
	if code != 2 || !strings.Contains(out, "is a named pipe, not a regular file") {
		t.Errorf("build -o FIFO: exit %d\n%s", code, out)
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the FIFO was replaced: %v %v", fi.Mode(), err)
	}
}
