package plugin

import (
	"context"
	"fmt"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/plugin/instrument"
)

// TestOutlineReadAsWazeroListsIt: compile describes a module from its
// sections (instrument.ReadOutline), which keeps wazero from building and
// keeping a definition of every function of the module (about 0.7 MB for
// a Go plugin); for the modules it compiles, that outline must be the one
// wazero lists.
func TestOutlineReadAsWazeroListsIt(t *testing.T) {
	ctx := context.Background()
	// The interpreter: it decodes and validates as the compiler does,
	// without the time compiling takes.
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	for _, path := range []string{"plugins/hello", "runtime/plugin/testdata/guests/hostile", "runtime/plugin/testdata/guests/raw", "runtime/plugin/testdata/guests/logurl"} {
		for _, opts := range []instrument.Options{{MaxMemoryPages: 1024}, {Interrupt: true, MaxMemoryPages: 1024, DataImage: true}} {
			out, _, err := instrument.Rewrite(guesttest.Read(t, path), opts)
			if err != nil {
				t.Fatal(err)
			}
			view := instrument.WithoutImage(out)
			cm, err := r.CompileModule(ctx, view)
			if err != nil {
				t.Fatal(err)
			}
			got, err := instrument.ReadOutline(view)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			// Compared as printed: an empty list of parameters is nil
			// in one and empty in the other, which describe does not
			// tell apart.
			if want := outlineOf(cm); fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
				t.Errorf("%s (interrupt %t): read\n%+v\nwazero lists\n%+v", path, opts.Interrupt, got, want)
			}
			cm.Close(ctx)
		}
	}
}
