package instrument

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
)

// Rewrite and CheckSizes parse modules from builders, who are not trusted
// to send valid ones: whatever they get, they return a module or an error,
// never panic, and a module wazero accepts stays one CheckSizes and wazero
// accept after the rewrite. Only modules CheckSizes accepts reach wazero,
// as in the runtime: wazero alone can be made to allocate without bound.
// `go test` runs the seeds; `go test -fuzz FuzzRewrite
// ./runtime/plugin/instrument/` searches further.
func FuzzRewrite(f *testing.F) {
	for _, m := range [][]byte{loopModule(), fibModule(), growModule(0, 1), growModule(1, 1, 100), tableModule(2), tableModule(2, 9)} {
		f.Add(m, true, uint32(0))
		f.Add(m, false, uint32(2))
	}
	f.Add([]byte{0, 'a', 's', 'm', 1, 0, 0, 0, 10, 0xff, 0xff, 0xff, 0xff, 0x0f}, true, uint32(0))
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	f.Cleanup(func() { r.Close(ctx) })
	valid := func(b []byte) error {
		m, err := r.CompileModule(ctx, b)
		if err == nil {
			m.Close(ctx)
		}
		return err
	}
	f.Fuzz(func(t *testing.T, wasm []byte, interrupt bool, maxPages uint32) {
		opts := Options{Interrupt: interrupt, MaxMemoryPages: maxPages % 70000}
		if maxPages%2 == 0 {
			opts.MaxTableEntries = 1 << 20
		}
		out, _, err := Rewrite(wasm, opts)
		if CheckSizes(wasm) != nil || err != nil || valid(wasm) != nil {
			return
		}
		if err := CheckSizes(out); err != nil {
			t.Fatalf("valid module refused by CheckSizes after the rewrite: %v", err)
		}
		if err := valid(out); err != nil {
			t.Fatalf("valid module invalid after the rewrite: %v", err)
		}
	})
}
