//go:build wasip1

package greenroom

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"time"
	"unsafe"
)

// Raw imports from the host module "greenroom". Every pointer/length pair
// names a range of this module's linear memory; negative results are the
// error codes of docs/abi.md, with a message waiting in the result slot.

//go:wasmimport greenroom request_read
func hostRequestRead(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom response_write
func hostResponseWrite(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom result_read
func hostResultRead(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom config_get
func hostConfigGet(keyPtr unsafe.Pointer, keyLen uint32) int32

//go:wasmimport greenroom public_route
func hostPublicRoute(pathPtr unsafe.Pointer, pathLen uint32) int32

//go:wasmimport greenroom log_enabled
func hostLogEnabled(level int32) int32

//go:wasmimport greenroom log_write
func hostLogWrite(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom urlreader_call
func hostURLReaderCall(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom gc_memory_limit
func hostGCMemoryLimit() int32

//go:wasmimport greenroom gc_percent
func hostGCPercent() int32

// init applies the garbage-collector tuning the runtime gives this plugin
// (docs/abi.md, "Garbage collector"): a soft memory limit below the size at
// which the runtime retires an instance, so that the collector works
// harder before the instance grows past it, and the operator's
// limits.gc_percent. Package initialization runs before the plugin's own
// init functions, so these hold for everything the plugin allocates.
func init() {
	if kib := hostGCMemoryLimit(); kib > 0 {
		debug.SetMemoryLimit(int64(kib) << 10)
	}
	if p := hostGCPercent(); p != 0 {
		debug.SetGCPercent(int(p))
	}
	noDefaultNetwork()
	noTempFiles()
}

// noTempDir is the TMPDIR a plugin gets: no directory, but the reason,
// which the error of whatever would create a temporary file quotes.
const noTempDir = "/(greenroom: a plugin has no filesystem, so no temporary files; give r.ParseMultipartForm a maxMemory as large as server.body_limit)"

// noTempFiles makes code that spills to temporary files fail with an
// error that says why: r.ParseMultipartForm with a form larger than its
// maxMemory (mime/multipart writes the rest to os.CreateTemp), and
// os.CreateTemp and os.MkdirTemp themselves. Without it they failed with
// wasip1's own "open /tmp/multipart-3877424964: Bad file number", which
// names neither the cause nor the way out. It sets TMPDIR, which
// os.TempDir reads (a guest gets no environment of its own), unless the
// plugin's environment has one.
func noTempFiles() {
	if _, ok := os.LookupEnv("TMPDIR"); !ok {
		os.Setenv("TMPDIR", noTempDir)
	}
}

// noDefaultNetwork makes a plugin's attempts to reach the network by name
// (http.Get, http.DefaultClient, a zero http.Client, net.Dial) fail with
// an error that says what to use instead: a plugin has no network, and
// its lookup otherwise failed with a DNS error from wasip1's stub network
// ("lookup example.com on [::1]:53: ... connection reset by peer"), which
// reads like a resolver fault. It sets the dial of net's default resolver,
// not net/http's default transport: a reference to the transport would
// link its client, TLS and HTTP/2 code into every plugin (2.5 MB of the 9
// of a plugin that uses no client), which each start-up validates and each
// instance's memory holds.
func noDefaultNetwork() {
	net.DefaultResolver.Dial = func(_ context.Context, _, _ string) (net.Conn, error) {
		return nil, &Error{Op: "dial", Code: errDenied, Message: "a plugin has no network: it cannot look up or dial a host itself; read URLs with the client greenroom.HTTPClient() returns (or greenroom.ReadURL), under the URL reader's rules"}
	}
}

// greenroomABIv1 declares that this module speaks ABI v1. The runtime reads
// the export's name and never calls it.
//
//go:wasmexport greenroom_abi_v1
func greenroomABIv1() {}

// The response's buffers, reused from one request to the next: a request's
// writer has them only while its handler runs (see responseWriter).
var headBuf, bodyBuf []byte

// greenroomHandle serves one HTTP request: it reads the request envelope of
// reqLen bytes, runs the handler and writes the response envelope.
//
//go:wasmexport greenroom_handle
func greenroomHandle(reqLen uint32) uint32 {
	serving = true
	dbCallBegins()
	if reqLen == 0 {
		return handleBadInput
	}
	// The envelope is read into memory of its own and never written again,
	// so it can be viewed as a string without a copy: every decoded field
	// (and the body) is a substring of it, alive as long as the handler
	// keeps any of them.
	buf := make([]byte, reqLen)
	if got := requestRead(buf); got != int32(reqLen) {
		fmt.Fprintf(os.Stderr, "greenroom: request_read returned %d, want %d\n", got, reqLen)
		return handleBadInput
	}
	env := unsafe.String(&buf[0], len(buf))
	req, w, err := decodeRequest(env)
	if err != nil {
		fmt.Fprintf(os.Stderr, "greenroom: %v\n", err)
		return handleBadInput
	}
	w.head, w.body = headBuf[:0], bodyBuf[:0]
	code := serve(w, req)
	if c := requestContextFrom(req.Context()); c != nil {
		c.finish()
	}
	dbCallEnded()
	if code == handleOK {
		w.finish(req.Pattern)
		slotMu.Lock()
		writeAll(w.head)
		writeAll(w.body)
		for _, m := range w.more {
			writeAll(m)
		}
		slotMu.Unlock()
	}
	headBuf, bodyBuf = w.head[:0], w.body[:0]
	w.retire()
	return code
}

func writeAll(b []byte) {
	if len(b) > 0 {
		hostResponseWrite(unsafe.Pointer(&b[0]), uint32(len(b)))
	}
}

// slotMu makes a host call and the result_read that empties the result
// slot it filled one step for the plugin's goroutines. The slot is one per
// instance, and between the two calls the SDK allocates the buffer to read
// into, which can park the goroutine (a garbage-collection assist) and let
// another one run, whose host call would replace the slot: a *sql.DB used
// from several goroutines got another goroutine's rows or error. Every
// host call that can fill the slot (an error message counts) holds slotMu;
// a host call stops the whole module while it runs anyway, so this
// serialises nothing that could run in parallel.
var slotMu sync.Mutex

// slotCall makes the host call f, which returns an error code with a
// message in the result slot, or a non-negative result.
func slotCall(op string, f func() int32) (int32, error) {
	slotMu.Lock()
	defer slotMu.Unlock()
	n := f()
	if n < 0 {
		return n, hostError(op, n)
	}
	return n, nil
}

// slotResult makes the host call f, which returns an error code with a
// message in the result slot, or the length of its result there, and
// returns the result.
func slotResult(op string, f func() int32) ([]byte, error) {
	slotMu.Lock()
	defer slotMu.Unlock()
	n := f()
	if n < 0 {
		return nil, hostError(op, n)
	}
	return takeResult(op, n)
}

// takeResult copies the n bytes of the result slot (slotMu held).
func takeResult(op string, n int32) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	b := make([]byte, n)
	if got := hostResultRead(unsafe.Pointer(&b[0]), uint32(n)); got != n {
		// Only a goroutine that outlived the call it made the host call
		// in gets here: the host empties the slot for every call.
		return nil, &Error{Op: op, Code: errFailed, Message: fmt.Sprintf(
			"its result of %d bytes was gone (%d left) when read: the goroutine outlived the request or task run it was made in", n, got)}
	}
	return b, nil
}

// requestRead reads the call's envelope into buf.
func requestRead(buf []byte) int32 {
	slotMu.Lock()
	defer slotMu.Unlock()
	return hostRequestRead(unsafe.Pointer(&buf[0]), uint32(len(buf)))
}

func hostConfig(key string) (string, bool) {
	b, err := slotResult("config_get", func() int32 {
		return hostConfigGet(unsafe.Pointer(unsafe.StringData(key)), uint32(len(key)))
	})
	return string(b), err == nil
}

func newLogHandler() slog.Handler {
	return &logHandler{
		enabled: func(level int32) bool { return hostLogEnabled(level) == 1 },
		write:   func(rec []byte) { emitRecord(rec) },
	}
}

// emitRecord sends an encoded log record (never empty) to the host and
// reports whether the host took it (written, filtered or counted as
// dropped).
func emitRecord(rec []byte) bool {
	slotMu.Lock()
	defer slotMu.Unlock()
	return hostLogWrite(unsafe.Pointer(&rec[0]), uint32(len(rec))) >= 0
}

func urlCall(_ context.Context, req *urlRequest) (*urlResponse, error) {
	b := appendURLRequest(nil, req)
	res, err := slotResult("urlreader_call", func() int32 {
		return hostURLReaderCall(unsafe.Pointer(&b[0]), uint32(len(b)))
	})
	if err != nil {
		return nil, err
	}
	return decodeURLResponse(res, req.flags)
}

func hostPublic(path string) error {
	_, err := slotCall("public_route", func() int32 {
		return hostPublicRoute(unsafe.Pointer(unsafe.StringData(path)), uint32(len(path)))
	})
	return err
}

// Database host functions (docs/abi.md, "Database"). They are referenced
// only from hostDB, which only DB and Migrations reach: a plugin that calls
// neither does not import them.

//go:wasmimport greenroom db_exec
func hostDBExec(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom db_query
func hostDBQuery(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom db_begin
func hostDBBegin(flags uint32) int32

//go:wasmimport greenroom db_commit
func hostDBCommit(tx uint32) int32

//go:wasmimport greenroom db_rollback
func hostDBRollback(tx uint32) int32

//go:wasmimport greenroom db_migrations
func hostDBMigrations(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom db_max_conns
func hostDBMaxConns() int32

// dbMaxConns is the plugin's limits.db_max_conns, 0 when unknown (the
// capability not granted: every statement then fails anyway).
func dbMaxConns() int {
	n, err := slotCall("db_max_conns", hostDBMaxConns)
	if err != nil {
		return 0
	}
	return int(n)
}

//go:wasmimport greenroom db_statement_timeout
func hostDBStatementTimeout() int32

// dbStatementTimeout is the plugin's limits.db_statement_timeout, 0 when
// unknown (the capability not granted: every statement then fails anyway).
func dbStatementTimeout() time.Duration {
	ms, err := slotCall("db_statement_timeout", hostDBStatementTimeout)
	if err != nil {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

func nativeDB() *sql.DB { return nil }

type hostDB struct{}

func newDBTransport() dbTransport { return hostDB{} }

func bufPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

// hostError reads the message the host left in the result slot for code
// (slotMu held).
func hostError(op string, code int32) error {
	buf := make([]byte, 4096)
	n := hostResultRead(unsafe.Pointer(&buf[0]), uint32(len(buf)))
	if n == int32(len(buf)) {
		buf = make([]byte, 64<<10)
		n = hostResultRead(unsafe.Pointer(&buf[0]), uint32(len(buf)))
	}
	return &Error{Op: op, Code: code, Message: string(buf[:max(n, 0)])}
}

// resultString views a result as a string without a second copy (nothing
// writes the buffer again).
func resultString(b []byte, err error) (string, error) {
	if len(b) == 0 {
		return "", err
	}
	return unsafe.String(&b[0], len(b)), err
}

func (hostDB) exec(req []byte) (string, error) {
	return resultString(slotResult("db_exec", func() int32 { return hostDBExec(bufPtr(req), uint32(len(req))) }))
}

func (hostDB) query(req []byte) (string, error) {
	return resultString(slotResult("db_query", func() int32 { return hostDBQuery(bufPtr(req), uint32(len(req))) }))
}

func (hostDB) begin(flags uint32) (uint32, error) {
	n, err := slotCall("db_begin", func() int32 { return hostDBBegin(flags) })
	if err != nil {
		return 0, err
	}
	return uint32(n), nil
}

func (hostDB) commit(tx uint32) error {
	_, err := slotCall("db_commit", func() int32 { return hostDBCommit(tx) })
	return err
}

func (hostDB) rollback(tx uint32) error {
	_, err := slotCall("db_rollback", func() int32 { return hostDBRollback(tx) })
	return err
}

func (hostDB) migrations(req []byte) error {
	_, err := slotCall("db_migrations", func() int32 { return hostDBMigrations(bufPtr(req), uint32(len(req))) })
	return err
}

func registerMigrations(req []byte, _ []Migration) error {
	return newDBTransport().migrations(req)
}

// The scheduler's host function (docs/abi.md, "Scheduler"). It is
// referenced only from registerTask, which only Schedule reaches: a plugin
// that schedules nothing does not import it.

//go:wasmimport greenroom task_register
func hostTaskRegister(ptr unsafe.Pointer, size uint32) int32

// cancel_requested (docs/abi.md, "Cancellation") is referenced only from
// registerTask too: a task run's ctx is cancelled when it answers 1.
//
//go:wasmimport greenroom cancel_requested
func hostCancelRequested() int32

func registerTask(req []byte, _ Task) error {
	// It neither fails nor touches the result slot: no slotMu.
	cancelRequested = func() bool { return hostCancelRequested() == 1 }
	_, err := slotCall("task_register", func() int32 { return hostTaskRegister(bufPtr(req), uint32(len(req))) })
	return err
}

// serving is set by the first call into the plugin after its initializer:
// before it, the plugin's init functions run.
var serving bool

// refuseTask is a registration the SDK itself refuses (no Run function,
// an unknown scope), which the runtime never sees: during init it panics
// with the reason, so that the plugin's load fails as it does for the
// runtime's refusals, whatever the plugin does with Schedule's error.
func refuseTask(err error) error {
	if !serving {
		panic(err)
	}
	return err
}

// greenroomTaskRun runs one scheduled task: it reads the task envelope of
// envLen bytes, runs the task's Run function and, when it returns an
// error, writes the error's text as the output.
//
//go:wasmexport greenroom_task_run
func greenroomTaskRun(envLen uint32) uint32 {
	serving = true
	dbCallBegins()
	buf := make([]byte, envLen)
	if envLen > 0 {
		if got := requestRead(buf); got != int32(envLen) {
			fmt.Fprintf(os.Stderr, "greenroom: request_read returned %d, want %d\n", got, envLen)
			return handleBadInput
		}
	}
	code, msg := runTask(string(buf))
	dbCallEnded()
	if code == handleError {
		slotMu.Lock()
		writeAll([]byte(msg))
		slotMu.Unlock()
	}
	return code
}
