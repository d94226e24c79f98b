package instrument

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

func TestX(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("N"))
	body := []byte{0}
	for i := 0; i < n; i++ {
		switch os.Getenv("SHAPE") {
		case "seq":
			body = append(body, 0x02, 0x40, 0x0b)
		case "br":
			// block (br 0) end: each a branch target
			body = append(body, 0x02, 0x40, 0x0c, 0x00, 0x0b)
		case "loop":
			body = append(body, 0x03, 0x40, 0x0b)
		}
	}
	body = append(body, 0x0b)
	code := appendU32([]byte{1}, uint32(len(body)))
	wasm := module(section(1, 1, 0x60, 0, 0), section(3, 1, 0), section(5, 1, 0, 1), section(10, append(code, body...)...))
	out, _, err := Interruptible(wasm)
	if os.Getenv("RAW") != "" {
		out = wasm
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	s := time.Now()
	_, err = r.CompileModule(ctx, out)
	t.Logf("%s %d: %v in %v", os.Getenv("SHAPE"), n, err, time.Since(s))
}
