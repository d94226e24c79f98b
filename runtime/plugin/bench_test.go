package plugin

import (
	"context"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

// BenchmarkHandle measures one request through the pool and the guest
// (plugins/hello's GET /ping), without HTTP, for each way of interrupting
// guests:
//
//	go test -run '^$' -bench Handle ./runtime/plugin/
func BenchmarkHandle(b *testing.B) {
	benchHandle(b, guesttest.Read(b, "plugins/hello"), "/ping")
}

// BenchmarkHandleRaw is BenchmarkHandle with a guest that implements the ABI
// by hand (no net/http, no SDK): what is left is the host's cost per call.
func BenchmarkHandleRaw(b *testing.B) {
	benchHandle(b, guesttest.Read(b, "runtime/plugin/testdata/guests/raw"), "/")
}

func benchHandle(b *testing.B, wasm []byte, path string) {
	for _, mode := range []Interruption{InterruptFlag, InterruptWazero, InterruptOff} {
		b.Run(string(mode), func(b *testing.B) {
			lim := testLimits()
			lim.NoInterrupt = mode == InterruptOff
			lim.MaxRequests = 0
			p := loadSpec(b, Spec{Wasm: wasm, Limits: lim, forceWazero: mode == InterruptWazero})
			req := &hostfuncs.Request{Method: []byte("GET"), Path: []byte(path), RequestID: "bench"}
			respond := func(r hostfuncs.Response) error {
				if r.Status != 200 {
					b.Fatalf("status %d", r.Status)
				}
				return nil
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := p.Handle(ctx, req, respond); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
