package plugin

import (
	"context"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/logging"
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

// logHost is a Host whose Log is the runtime's PluginLogger.
type logHost struct {
	testHost
	pl *logging.PluginLogger
}

func (h logHost) LogEnabled(level int32) bool { return h.pl.Enabled(level) }
func (h logHost) Log(in *hostfuncs.Instance, rec *hostfuncs.LogRecord) int32 {
	return h.pl.Write(logging.CallOf(in), rec)
}

// BenchmarkLogWrite measures one Logger().Info("bench", "i", i, "user",
// "jane") in a guest, round trip: slog and the SDK's encoding in the guest,
// log_write, decoding, the level and rate checks, and logrus's JSON
// formatting with redaction, to io.Discard. "filtered" is a record below
// the plugin's level floor (one log_enabled call, nothing encoded);
// "dropped" is a record over the rate limit.
//
//	go test -run '^$' -bench LogWrite -benchmem ./runtime/plugin/
func BenchmarkLogWrite(b *testing.B) {
	wasm := guesttest.Read(b, "runtime/plugin/testdata/guests/logurl")
	for _, tc := range []struct {
		name string
		opts logging.PluginOptions
	}{
		{"written", logging.PluginOptions{Rate: 1e12, Burst: 1 << 30}},
		{"filtered", logging.PluginOptions{Level: "error", Rate: 1e12, Burst: 1 << 30}},
		{"dropped", logging.PluginOptions{Rate: 1e-9, Burst: 1, ReportEvery: time.Hour}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			log, _, err := logging.New(io.Discard, "json", "info", []string{"a-secret-value"})
			if err != nil {
				b.Fatal(err)
			}
			pl, err := logging.NewPluginLogger(log, "bench", tc.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer pl.Close()
			lim := testLimits()
			lim.Timeout = 10 * time.Minute
			p := loadSpec(b, Spec{Wasm: wasm, Limits: lim, Host: logHost{pl: pl}})
			run := func(n int) {
				code, _, err := p.Run(context.Background(), Call{Export: "bench_log", RequestID: "r", Encode: func(dst []byte, _ int64) []byte {
					return binary.LittleEndian.AppendUint32(dst, uint32(n))
				}})
				if err != nil || code != 0 {
					b.Fatalf("bench_log: %d %v", code, err)
				}
			}
			run(100) // warm up the instance
			b.ReportAllocs()
			b.ResetTimer()
			run(b.N)
		})
	}
}
