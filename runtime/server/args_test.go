package server_test

import (
	"fmt"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
)

// TestProgramName: a Go program can count on os.Args[0], its name, and
// ordinary code does at start-up (glog and klog name their files with
// filepath.Base(os.Args[0]), flag.Parse reads os.Args[1:]). A guest with
// no arguments at all failed to load, its init out of range.
func TestProgramName(t *testing.T) {
	wasm := guesttest.Build(t, "runtime/server/testdata/guests/args")
	in := start(t, fmt.Sprintf("[plugins.args]\npath = %q\n", wasm))
	status, _, body := in.Get(t, "/api/args/args")
	if status != 200 || body != `{"program":"plugin","args":1,"flags":0}` {
		t.Fatalf("got %d %s\nlog:\n%s", status, body, in.Log.String())
	}
}
