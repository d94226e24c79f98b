package instrument

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

// loopShape is a module for TestHostileLoopsInterrupted: defined
// functions of type 0 () -> () or 1 (i32) -> (i32), an optional import
// env.host () -> () (function 0, before the defined ones), an optional
// table holding every function in order, an optional start function, and
// "run", the function called.
type loopShape struct {
	host  bool
	table bool
	start int // the start section's function, or -1: none
	run   int // the exported function, called with 60 when of type 1
	types []byte
	funcs [][]byte // bodies: locals and instructions
}

func (s loopShape) module() []byte {
	secs := [][]byte{section(1, 2, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7f)}
	n := len(s.funcs)
	if s.host {
		secs = append(secs, section(2, 1, 3, 'e', 'n', 'v', 4, 'h', 'o', 's', 't', 0, 0))
		n++
	}
	secs = append(secs, section(3, append(appendU32(nil, uint32(len(s.types))), s.types...)...))
	if s.table {
		secs = append(secs, section(4, 1, 0x70, 0, byte(n)))
	}
	secs = append(secs, section(5, 1, 0, 1), section(7, 1, 3, 'r', 'u', 'n', 0, byte(s.run)))
	if s.start >= 0 {
		secs = append(secs, section(8, byte(s.start)))
	}
	if s.table {
		elems := []byte{1, 0, 0x41, 0, 0x0b, byte(n)}
		for i := range n {
			elems = append(elems, byte(i))
		}
		secs = append(secs, section(9, elems...))
	}
	code := appendU32(nil, uint32(len(s.funcs)))
	for _, f := range s.funcs {
		code = append(appendU32(code, uint32(len(f))), f...)
	}
	return module(append(secs, section(10, code...))...)
}

// Each shape would run for ever, or for hours, without the checks. Set
// the flag and the fuel as the host does at a call's deadline
// (callctx.go), it ends in the checks' trap within seconds, not in a
// stack overflow or any other way. TestInterruptsLoop,
// TestInterruptsRecursion, TestStartSectionBecomesAnExport (a start
// function recursing without a loop) and TestFuelByWork (memory.fill in a
// loop) cover the simplest shapes.
func TestHostileLoopsInterrupted(t *testing.T) {
	const (
		void = 0 // type () -> ()
		i32  = 1 // type (i32) -> (i32)
	)
	// tree is (i32) -> (i32) with no loop: n == 0 ? 0 : f(n-1) + f(n-1),
	// each call through call (self) or, with indirect, call_indirect of
	// table entry self.
	tree := func(self byte, indirect bool) []byte {
		call := []byte{0x10, self}
		if indirect {
			call = []byte{0x41, self, 0x11, i32, 0}
		}
		b := []byte{0, 0x20, 0, 0x45, 0x04, 0x7f, 0x41, 0, 0x05}
		for range 2 {
			b = append(append(b, 0x20, 0, 0x41, 1, 0x6b), call...)
		}
		return append(b, 0x6a, 0x0b, 0x0b)
	}
	for _, tc := range []struct {
		name  string
		shape loopShape
	}{
		{"nested loops, the inner endless", loopShape{start: -1, types: []byte{void},
			// (loop (loop (br 0)) (br 0))
			funcs: [][]byte{{0, 0x03, 0x40, 0x03, 0x40, 0x0c, 0, 0x0b, 0x0c, 0, 0x0b, 0x0b}}}},
		{"nested loops, the outer endless", loopShape{start: -1, types: []byte{void},
			// (local i32) (loop (local.set 0 (i32.const 0))
			//   (loop (br_if 0 (i32.lt_u (local.tee 0 (i32.add (local.get 0) (i32.const 1))) (i32.const 10))))
			//   (br 0))
			funcs: [][]byte{{1, 1, 0x7f, 0x03, 0x40, 0x41, 0, 0x21, 0,
				0x03, 0x40, 0x20, 0, 0x41, 1, 0x6a, 0x22, 0, 0x41, 10, 0x49, 0x0d, 0, 0x0b,
				0x0c, 0, 0x0b, 0x0b}}}},
		{"loop in a block, br_table back to it", loopShape{start: -1, types: []byte{void},
			// (block (loop (br_table 0 1 0 (i32.const 0))))
			funcs: [][]byte{{0, 0x02, 0x40, 0x03, 0x40, 0x41, 0, 0x0e, 2, 0, 1, 0, 0x0b, 0x0b, 0x0b}}}},
		{"loop left by br_if at its end", loopShape{start: -1, types: []byte{void},
			// (loop (nop) (br_if 0 (i32.const 1)))
			funcs: [][]byte{{0, 0x03, 0x40, 0x01, 0x41, 1, 0x0d, 0, 0x0b, 0x0b}}}},
		{"back edge from inside an if", loopShape{start: -1, types: []byte{void},
			// (loop (if (i32.const 1) (then (br 1))))
			funcs: [][]byte{{0, 0x03, 0x40, 0x41, 1, 0x04, 0x40, 0x0c, 1, 0x0b, 0x0b, 0x0b}}}},
		{"back edge from a block inside the loop", loopShape{start: -1, types: []byte{void},
			// (loop (block (br 1)))
			funcs: [][]byte{{0, 0x03, 0x40, 0x02, 0x40, 0x0c, 1, 0x0b, 0x0b, 0x0b}}}},
		{"loop calling a host function", loopShape{host: true, start: -1, run: 1, types: []byte{void},
			// (loop (call $host) (br 0))
			funcs: [][]byte{{0, 0x03, 0x40, 0x10, 0, 0x0c, 0, 0x0b, 0x0b}}}},
		{"loop calling a leaf without checks", loopShape{start: -1, types: []byte{void, void},
			// (loop (call 1) (br 0)); 1: (nop)
			funcs: [][]byte{{0, 0x03, 0x40, 0x10, 1, 0x0c, 0, 0x0b, 0x0b}, {0, 0x01, 0x0b}}}},
		{"loop in the start function", loopShape{start: 0, types: []byte{void},
			funcs: [][]byte{{0, 0x03, 0x40, 0x0c, 0, 0x0b, 0x0b}}}},
		{"recursion 60 deep, each call twice", loopShape{start: -1, types: []byte{i32},
			funcs: [][]byte{tree(0, false)}}},
		{"mutual recursion through a table", loopShape{table: true, start: -1, types: []byte{i32, i32},
			funcs: [][]byte{tree(1, true), tree(0, true)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := Interruptible(tc.shape.module())
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
			defer r.Close(ctx)
			if tc.shape.host {
				_, err := r.NewHostModuleBuilder("env").NewFunctionBuilder().
					WithFunc(func(context.Context) {}).Export("host").Instantiate(ctx)
				if err != nil {
					t.Fatal(err)
				}
			}
			m, err := r.Instantiate(ctx, out)
			if err != nil {
				t.Fatal(err)
			}
			run := m.ExportedFunction("run")
			if tc.shape.start >= 0 {
				run = m.ExportedFunction(StartName)
			}
			var args []uint64
			if len(run.Definition().ParamTypes()) == 1 {
				args = []uint64{60}
			}
			fuel, flag := globals(t, m)
			done := make(chan error, 1)
			go func() {
				_, err := run.Call(ctx, args...)
				done <- err
			}()
			select {
			case err := <-done:
				t.Fatalf("returned before the deadline: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
			flag.Set(1)
			fuel.Set(1)
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "unreachable") {
					t.Fatalf("ended with %v, want the checks' unreachable trap", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("not interrupted within 10s of the deadline")
			}
		})
	}
}
