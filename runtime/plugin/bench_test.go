package plugin

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	goruntime "runtime"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

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

// BenchmarkHandleEcho is BenchmarkHandle with plugins/hello's POST /echo
// and a 16 KiB body (the harness's echo scenario): the body into the
// guest, io.Copy to the response, and back, with interruption as loads
// do by default.
func BenchmarkHandleEcho(b *testing.B) {
	lim := testLimits()
	lim.MaxRequests = 0
	p := loadSpec(b, Spec{Wasm: guesttest.Read(b, "plugins/hello"), Limits: lim})
	body := bytes.Repeat([]byte("0123456789abcdef"), 1024)
	benchCalls(b, p, &hostfuncs.Request{Method: []byte("POST"), Path: []byte("/echo"), RequestID: "bench", Body: body}, len(body))
}

func benchHandle(b *testing.B, wasm []byte, path string) {
	for _, mode := range []Interruption{InterruptFlag, InterruptWazero, InterruptOff} {
		b.Run(string(mode), func(b *testing.B) {
			lim := testLimits()
			lim.NoInterrupt = mode == InterruptOff
			lim.MaxRequests = 0
			p := loadSpec(b, Spec{Wasm: wasm, Limits: lim, forceWazero: mode == InterruptWazero})
			benchCalls(b, p, &hostfuncs.Request{Method: []byte("GET"), Path: []byte(path), RequestID: "bench"}, -1)
		})
	}
}

// benchCalls calls p with req b.N times; each answer must be a 200, with
// a body of size bytes unless size is -1.
func benchCalls(b *testing.B, p *Plugin, req *hostfuncs.Request, size int) {
	respond := func(r hostfuncs.Response) error {
		if r.Status != 200 || (size >= 0 && len(r.Body) != size) {
			b.Fatalf("status %d, %d bytes", r.Status, len(r.Body))
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
}

// logHost is a Host whose Log is the runtime's PluginLogger, a
// LogLimiter like the runtime's host.
type logHost struct {
	testHost
	pl *logging.PluginLogger
}

func (h logHost) LogEnabled(level int32) bool { return h.pl.Enabled(level) }
func (h logHost) Log(in *hostfuncs.Instance, rec *hostfuncs.LogRecord) int32 {
	return h.pl.Write(logging.CallOf(in), rec)
}
func (h logHost) LogAllow(size int) bool { return h.pl.AllowBytes(size) }
func (h logHost) LogAllowed(in *hostfuncs.Instance, rec *hostfuncs.LogRecord, charged int) int32 {
	return h.pl.WriteAllowed(logging.CallOf(in), rec, charged)
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
		in, _, err := p.pool.acquire(ctx, time.Second)
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

// Operations of the raw guest's bench_host export (the first u32 of its
// input envelope); they must match testdata/guests/raw/main.go.
const (
	opConfigGet     = 1
	opResultRead    = 2
	opLogEnabled    = 3
	opLogWrite      = 4
	opDBExec        = 5
	opDBQuery       = 6
	opDBBeginCommit = 7
	opURLReaderRead = 8
	opGCMemoryLimit = 9
	opGCPercent     = 10
	opDBBeginRollbk = 11
	opDBMaxConns    = 12
	opDBStmtTimeout = 13
	opCancelReq     = 14
)

// What BenchmarkHostCall's guest sends and its fake providers expect.
const (
	benchConfigKey = "catalog.base_url"
	benchLogMsg    = "request handled"
	benchExecSQL   = "UPDATE todos SET done = $1 WHERE id = $2"
	benchQuerySQL  = "SELECT id, owner, title, done, created_at, updated_at FROM todos WHERE owner = $1 ORDER BY id LIMIT $2"
	benchTx        = 7
	benchURL       = "https://raw.githubusercontent.com/example/catalog/main/catalog-info.yaml"
)

// benchHost is the Host of BenchmarkHostCall: in memory, no I/O, so that
// what is measured is the crossing and the host side's codecs. Log
// discards; Database and ReadURL are fakes. Each checks what the host
// function decoded and fails the call (a result the guest does not expect)
// when it is not what the guest sent.
type benchHost struct {
	testHost
	db  *benchDB
	url *hostfuncs.URLResponse
}

func (h benchHost) Database() (hostfuncs.Database, error) { return h.db, nil }
func (h benchHost) LogEnabled(level int32) bool           { return level >= hostfuncs.LevelInfo }
func (h benchHost) Log(_ *hostfuncs.Instance, rec *hostfuncs.LogRecord) int32 {
	if rec.Stream == "" && (rec.Message != benchLogMsg || len(rec.Attrs) != 4) {
		return hostfuncs.LogDropped // bench_host expects LogWritten
	}
	return hostfuncs.LogWritten
}
func (h benchHost) ReadURL(_ context.Context, _ *hostfuncs.Instance, req *hostfuncs.URLRequest) (*hostfuncs.URLResponse, error) {
	if req == nil {
		return nil, nil // granted
	}
	if req.Op != hostfuncs.URLOpRead || req.URL != benchURL || req.Method != "GET" || len(req.Header) != 1 {
		return nil, hostfuncs.Failf(hostfuncs.ErrInvalid, "unexpected request %+v", req)
	}
	return h.url, nil
}

// benchDB is an in-memory Database: Exec affects one row, Query writes the
// first LIMIT ($2) of its rows, Begin always opens transaction benchTx.
type benchDB struct {
	names, types []string
	rows         [][]any
}

func (d *benchDB) Exec(_ context.Context, _ *hostfuncs.Instance, st *hostfuncs.Statement) (hostfuncs.ExecResult, error) {
	if st.Tx != 0 || st.SQL != benchExecSQL || len(st.Args) != 2 || st.Args[0] != true {
		return hostfuncs.ExecResult{}, hostfuncs.Failf(hostfuncs.ErrInvalid, "unexpected statement %+v", st)
	}
	return hostfuncs.ExecResult{RowsAffected: 1}, nil
}

func (d *benchDB) Query(_ context.Context, _ *hostfuncs.Instance, st *hostfuncs.Statement, w *hostfuncs.RowWriter) error {
	if st.SQL != benchQuerySQL || len(st.Args) != 2 || st.Args[0] != "user:default/jane.doe" {
		return hostfuncs.Failf(hostfuncs.ErrInvalid, "unexpected statement %+v", st)
	}
	limit, ok := st.Args[1].(int64)
	if !ok || limit < 0 || limit > int64(len(d.rows)) {
		return hostfuncs.Failf(hostfuncs.ErrInvalid, "unexpected statement %+v", st)
	}
	w.Columns(d.names, d.types)
	for _, r := range d.rows[:limit] {
		if err := w.Row(r); err != nil {
			return err
		}
	}
	return nil
}

func (d *benchDB) Begin(_ context.Context, _ *hostfuncs.Instance, opts hostfuncs.TxOptions) (uint32, error) {
	return benchTx, nil
}

func (d *benchDB) Commit(_ context.Context, _ *hostfuncs.Instance, tx uint32) error {
	if tx != benchTx {
		return hostfuncs.Failf(hostfuncs.ErrNotFound, "no transaction %d", tx)
	}
	return nil
}

func (d *benchDB) Rollback(ctx context.Context, in *hostfuncs.Instance, tx uint32, _ bool) error {
	return d.Commit(ctx, in, tx)
}

// MaxConns and StatementTimeout are the plugin's pool limits, for
// db_max_conns and db_statement_timeout.
func (d *benchDB) MaxConns() int                   { return 4 }
func (d *benchDB) StatementTimeout() time.Duration { return 5 * time.Second }

func (d *benchDB) RegisterMigrations(*hostfuncs.Instance, []hostfuncs.MigrationFile) error {
	return errors.New("no migrations in this benchmark")
}

// newBenchDB returns a benchDB of 100 todo rows of 6 columns.
func newBenchDB() *benchDB {
	d := &benchDB{
		names: []string{"id", "owner", "title", "done", "created_at", "updated_at"},
		types: []string{"INT8", "TEXT", "TEXT", "BOOL", "TIMESTAMPTZ", "TIMESTAMPTZ"},
	}
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for i := int64(1); i <= 100; i++ {
		d.rows = append(d.rows, []any{i, "user:default/jane.doe", fmt.Sprintf("todo item number %d", i), i%3 == 0,
			t0.Add(time.Duration(i) * time.Minute), t0.Add(time.Duration(i) * time.Hour)})
	}
	return d
}

// queryResultLen is the length of the db_query result of the first n rows.
func (d *benchDB) queryResultLen(n int) int32 {
	var w hostfuncs.RowWriter
	w.Reset(0)
	w.Columns(d.names, d.types)
	for _, r := range d.rows[:n] {
		w.Row(r)
	}
	return int32(len(w.Bytes()))
}

// Encoders of the guest's side of the wire formats (docs/abi.md), for the
// payloads bench_host passes to the host functions as they are.
func appendLP(b []byte, s string) []byte {
	return append(binary.LittleEndian.AppendUint32(b, uint32(len(s))), s...)
}

func encStatement(sql string, args ...any) []byte {
	b := appendLP(binary.LittleEndian.AppendUint32(nil, 0), sql) // tx 0: none
	b = binary.LittleEndian.AppendUint32(b, uint32(len(args)))
	for _, a := range args {
		b = hostfuncs.AppendValue(b, a)
	}
	return b
}

// encLogRecord encodes a record of msg with the attributes method (string),
// status (int64), took (duration) and user (string).
func encLogRecord(level int32, msg string) []byte {
	b := appendLP(binary.LittleEndian.AppendUint32(nil, uint32(level)), msg)
	b = appendLP(append(b, hostfuncs.LogKindString), "method")
	b = appendLP(b, "GET")
	b = appendLP(append(b, hostfuncs.LogKindInt64), "status")
	b = binary.LittleEndian.AppendUint64(b, 200)
	b = appendLP(append(b, hostfuncs.LogKindDuration), "took")
	b = binary.LittleEndian.AppendUint64(b, uint64(1500*time.Microsecond))
	b = appendLP(append(b, hostfuncs.LogKindString), "user")
	return appendLP(b, "user:default/jane.doe")
}

// encURLRead encodes a read of url with one header.
func encURLRead(url, header, value string) []byte {
	b := appendLP([]byte{hostfuncs.URLOpRead}, url)
	b = appendLP(b, "GET")
	b = binary.LittleEndian.AppendUint64(b, 0) // no deadline of the guest's own
	b = binary.LittleEndian.AppendUint32(b, 1)
	return appendLP(appendLP(b, header), value)
}

// BenchmarkHostCall measures one guest→host→guest crossing per host
// function of the request path, with the host side's decoding and
// encoding: the raw guest's bench_host export calls the function b.N times
// in one call into the guest and checks every result (a length, a handle,
// a flag); functions that leave a result in the slot are followed by
// result_read of it, as the SDK does ("result_read" alone copies a config
// value). The providers are in memory (benchHost, benchDB): the database's
// and the network's own costs are measured elsewhere (runtime/database,
// runtime/urlreader). Not measured: request_read and response_write (every
// call of BenchmarkHandleRaw makes them), and public_route, db_migrations
// and task_register, which are accepted only while a plugin initializes.
// gc_memory_limit, gc_percent, db_max_conns and db_statement_timeout,
// which the SDK calls once per instance, are here as the bare crossing
// with a number computed at load; cancel_requested (polled by the SDK
// every 100 ms while a task runs) answers 0 here, as for any call nobody
// asked to stop.
//
//	go test -run '^$' -bench HostCall -benchmem ./runtime/plugin/
func BenchmarkHostCall(b *testing.B) {
	db := newBenchDB()
	const configValue = "https://catalog.example.com/api/catalog"
	urlResp := &hostfuncs.URLResponse{
		Status: 200, URL: benchURL, ETag: `"5f3a9c0e"`, LastModified: "Sun, 29 Nov 2026 11:58:00 GMT",
		Header: [][2]string{{"Content-Type", "text/plain; charset=utf-8"}, {"Cache-Control", "max-age=300"}},
		Body:   bytes.Repeat([]byte("apiVersion: backstage.io/v1alpha1\nkind: Component\n"), 4<<10/50),
	}
	host := benchHost{
		testHost: testHost{config: map[string]string{benchConfigKey: configValue}, log: logrus.NewEntry(logrus.New())},
		db:       db,
		url:      urlResp,
	}
	lim := testLimits()
	lim.Timeout = 10 * time.Minute
	lim.MaxRequests = 0
	lim.GCPercent = 250 // so that gc_percent's check sees the value passed
	counters := hostfuncs.NewCounters()
	p := loadSpec(b, Spec{Wasm: guesttest.Read(b, rawGuest), Limits: lim, Host: host, HostCounters: counters})

	for _, tc := range []struct {
		name    string
		fn      string // the host function whose calls are counted
		op      uint32
		arg     int32
		want    int32 // what every call must return
		payload []byte
	}{
		{"config_get", "config_get", opConfigGet, 0, int32(len(configValue)), []byte(benchConfigKey)},
		{"result_read", "result_read", opResultRead, 0, int32(len(configValue)), []byte(benchConfigKey)},
		{"log_enabled", "log_enabled", opLogEnabled, hostfuncs.LevelInfo, 1, nil},
		{"log_write", "log_write", opLogWrite, 0, hostfuncs.LogWritten, encLogRecord(hostfuncs.LevelInfo, benchLogMsg)},
		{"db_exec", "db_exec", opDBExec, 0, 17, encStatement(benchExecSQL, true, int64(42))},
		{"db_query/rows=1", "db_query", opDBQuery, 0, db.queryResultLen(1), encStatement(benchQuerySQL, "user:default/jane.doe", int64(1))},
		{"db_query/rows=100", "db_query", opDBQuery, 0, db.queryResultLen(100), encStatement(benchQuerySQL, "user:default/jane.doe", int64(100))},
		{"db_begin+db_commit", "db_commit", opDBBeginCommit, 0, benchTx, nil},
		{"urlreader_call", "urlreader_call", opURLReaderRead, 0, int32(len(hostfuncs.AppendURLResponse(nil, urlResp))), encURLRead(benchURL, "If-None-Match", `"0"`)},
		{"gc_memory_limit", "gc_memory_limit", opGCMemoryLimit, 0, int32(p.GC().MemoryLimit >> 10), nil},
		{"gc_percent", "gc_percent", opGCPercent, 0, int32(lim.GCPercent), nil},
		{"db_begin+db_rollback", "db_rollback", opDBBeginRollbk, 0, benchTx, nil},
		{"db_max_conns", "db_max_conns", opDBMaxConns, 0, 4, nil},
		{"db_statement_timeout", "db_statement_timeout", opDBStmtTimeout, 0, 5000, nil},
		{"cancel_requested", "cancel_requested", opCancelReq, 0, 0, nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			fn := -1
			for i, f := range hostfuncs.Functions() {
				if f.Name == tc.fn {
					fn = i
				}
			}
			run := func(n int) {
				before, _ := counters.Calls(fn)
				code, out, err := p.Run(context.Background(), Call{Export: "bench_host", RequestID: "bench", Encode: func(dst []byte, _ int64) []byte {
					for _, v := range []uint32{tc.op, uint32(n), uint32(tc.arg), uint32(tc.want)} {
						dst = binary.LittleEndian.AppendUint32(dst, v)
					}
					return append(dst, tc.payload...)
				}})
				if err != nil {
					b.Fatalf("bench_host: %v", err)
				}
				if code != hostfuncs.HandleOK {
					if len(out) < 8 {
						b.Fatalf("bench_host returned %d with output %q", code, out)
					}
					b.Fatalf("bench_host: stage %d: result %d, want %d: %s", binary.LittleEndian.Uint32(out), int32(binary.LittleEndian.Uint32(out[4:])), tc.want, out[8:])
				}
				if after, _ := counters.Calls(fn); after-before != int64(n) {
					b.Fatalf("%s called %d times, want %d", tc.fn, after-before, n)
				}
			}
			run(100) // warm up the instance and its buffers
			b.ReportAllocs()
			b.ResetTimer()
			run(b.N)
		})
	}
}
