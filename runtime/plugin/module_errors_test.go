package plugin

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// A refused module's reason lists its first problems, not all of them: a
// module with 100 000 unknown imports made a 9 MB reason, repeated in
// every 503 and log line.
func TestModuleErrorsBounded(t *testing.T) {
	const imports = 40
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0, 1, 4, 1, 0x60, 0, 0} // type 0: func () -> ()
	var sec []byte
	sec = append(sec, imports)
	for i := range imports {
		name := fmt.Sprintf("f%02d", i)
		sec = append(sec, 3, 'e', 'n', 'v', byte(len(name)))
		sec = append(sec, name...)
		sec = append(sec, 0, 0) // a function of type 0
	}
	wasm = append(wasm, 2)
	for n := len(sec); ; n >>= 7 { // the section's size, LEB128
		if n < 0x80 {
			wasm = append(wasm, byte(n))
			break
		}
		wasm = append(wasm, byte(n&0x7f|0x80))
	}
	wasm = append(wasm, sec...)
	_, err := Inspect(context.Background(), wasm, nil)
	if err == nil {
		t.Fatal("a module importing env.* was accepted")
	}
	msg := err.Error()
	if n := strings.Count(msg, "module imports env."); n != maxModuleErrors-3 || !strings.Contains(msg, fmt.Sprintf("and %d more", imports+3-maxModuleErrors)) {
		t.Errorf("%d import errors listed, want the first %d and a count of the rest:\n%s", n, maxModuleErrors-3, msg)
	}
}
