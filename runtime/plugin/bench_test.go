package plugin

import (
	"context"
	"encoding/binary"
	"io"
	goruntime "runtime"
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
	benchHandle(b, guesttest.Read(b, rawGuest), "/")
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

// rawGuest is the hand-written ABI guest (testdata/guests/raw).
const rawGuest = "runtime/plugin/testdata/guests/raw"

// BenchmarkAcquireRelease measures the pool handing out a warm instance and
// taking it back (pool.acquire + pool.release: the semaphore, the LIFO idle
// stack, the retirement checks), without calling the guest; "serial" from
// one goroutine, "parallel" from GOMAXPROCS goroutines with an instance for
// each, so that it measures contention on the pool rather than waits for
// an instance. It fails if any instance is created while it runs.
//
//	go test -run '^$' -bench AcquireRelease -benchmem ./runtime/plugin/
func BenchmarkAcquireRelease(b *testing.B) {
	lim := testLimits()
	lim.Instances = max(lim.Instances, goruntime.GOMAXPROCS(0))
	lim.Warm = lim.Instances
	lim.MaxRequests = 0
	p := loadSpec(b, Spec{Wasm: guesttest.Read(b, rawGuest), Limits: lim})
	ctx := context.Background()
	cycle := func() error {
		in, err := p.pool.acquire(ctx)
		if err != nil {
			return err
		}
		p.pool.release(in)
		return nil
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := cycle(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := cycle(); err != nil {
					b.Error(err) // not Fatal: this is not the benchmark's goroutine
					return
				}
			}
		})
	})
	if st := p.Stats(); st.Created != int64(lim.Warm) || st.Discarded != 0 || st.Retired != 0 {
		b.Fatalf("stats %+v: instances were created or dropped while measuring reuse", st)
	}
}

// BenchmarkNewInstance measures creating one instance as the pool does
// when it has no idle one (Plugin.newInstance: instantiate the compiled
// module with its memory, run the guest's _initialize, which for a Go guest
// is the Go runtime's start and every init function) and closing it:
// plugins/hello (the SDK and net/http) and the hand-written raw guest.
//
//	go test -run '^$' -bench NewInstance -benchmem ./runtime/plugin/
func BenchmarkNewInstance(b *testing.B) {
	for _, g := range []struct{ name, dir string }{
		{"hello", "plugins/hello"},
		{"raw", rawGuest},
	} {
		b.Run(g.name, func(b *testing.B) {
			p := loadSpec(b, Spec{Wasm: guesttest.Read(b, g.dir), Limits: testLimits()})
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				in, err := p.newInstance(ctx)
				if err != nil {
					b.Fatal(err)
				}
				in.close()
			}
		})
	}
}
