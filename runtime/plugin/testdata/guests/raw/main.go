// Command raw implements ABI v1 directly, without net/http or the SDK: it
// answers every request with 200 "ok". Benchmarks use it to measure the
// host side of a call apart from the guest's HTTP stack, and its bench_host
// export calls one host function in a loop (BenchmarkHostCall).
package main

import "unsafe"

//go:wasmimport greenroom request_read
func requestRead(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom response_write
func responseWrite(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom result_read
func resultRead(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom config_get
func configGet(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom log_enabled
func logEnabled(level int32) int32

//go:wasmimport greenroom log_write
func logWrite(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom db_exec
func dbExec(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom db_query
func dbQuery(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom db_begin
func dbBegin(flags int32) int32

//go:wasmimport greenroom db_commit
func dbCommit(tx int32) int32

//go:wasmimport greenroom urlreader_call
func urlreaderCall(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom gc_memory_limit
func gcMemoryLimit() int32

//go:wasmimport greenroom gc_percent
func gcPercent() int32

//go:wasmimport greenroom db_rollback
func dbRollback(tx int32) int32

//go:wasmimport greenroom db_max_conns
func dbMaxConns() int32

//go:wasmimport greenroom db_statement_timeout
func dbStatementTimeout() int32

//go:wasmimport greenroom cancel_requested
func cancelRequested() int32

//go:wasmexport greenroom_abi_v1
func abiV1() {}

var buf [4096]byte

// status 200, no headers, body "ok"
var response = []byte{200, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 'o', 'k'}

//go:wasmexport greenroom_handle
func handle(n uint32) uint32 {
	if n > uint32(len(buf)) {
		return 2
	}
	requestRead(unsafe.Pointer(&buf[0]), n)
	responseWrite(unsafe.Pointer(&response[0]), uint32(len(response)))
	return 0
}

// What bench_host calls in its loop: the first u32 of its input envelope.
// Must match the constants of runtime/plugin/bench_test.go. Functions that
// leave a result in the slot are followed by result_read of it, as the SDK
// does. The registration functions (public_route, db_migrations,
// task_register) are not here: they are accepted only while the plugin
// initializes, so they cannot be called in a loop from an export.
const (
	opConfigGet      = 1  // config_get(payload), result_read
	opResultRead     = 2  // result_read alone, of one config_get(payload) made before the loop
	opLogEnabled     = 3  // log_enabled(arg)
	opLogWrite       = 4  // log_write(payload)
	opDBExec         = 5  // db_exec(payload), result_read
	opDBQuery        = 6  // db_query(payload), result_read
	opDBBeginCommit  = 7  // db_begin(arg), then db_commit of the handle it returned
	opURLReaderRead  = 8  // urlreader_call(payload), result_read
	opGCMemoryLimit  = 9  // gc_memory_limit()
	opGCPercent      = 10 // gc_percent()
	opDBBeginRollbk  = 11 // db_begin(arg), then db_rollback of the handle it returned
	opDBMaxConns     = 12 // db_max_conns()
	opDBStmtTimeout  = 13 // db_statement_timeout()
	opCancelReq      = 14 // cancel_requested()
	benchEnvelopeLen = 16
)

// Where bench_host saw a wrong result: the first u32 of its output.
const (
	stageCall   = 1 // the host function returned other than want
	stageResult = 2 // result_read copied other than want bytes
	stageCommit = 3 // db_commit did not return 0
)

var (
	benchIn  [64 << 10]byte
	benchOut [64 << 10]byte
)

// benchHost calls one host function count times and checks each result.
// Its input envelope (little-endian) is u32 op, u32 count, i32 arg, i32
// want, then the payload: the buffer passed to functions that take one.
// want is the result every call must return (a length, a handle, 0 or 1).
// It returns 0 when every call returned want, 2 for a malformed envelope,
// and 3 on the first wrong result, with u32 stage, i32 result and, for an
// error code, the host's message as its output.
//
//go:wasmexport bench_host
func benchHost(n uint32) uint32 {
	if n < benchEnvelopeLen || n > uint32(len(benchIn)) || requestRead(unsafe.Pointer(&benchIn[0]), n) != int32(n) {
		return 2
	}
	op, count := le32(benchIn[0:]), le32(benchIn[4:])
	arg, want := int32(le32(benchIn[8:])), int32(le32(benchIn[12:]))
	if want < 0 || want > int32(len(benchOut)) {
		return 2
	}
	p, size := unsafe.Pointer(&benchIn[benchEnvelopeLen]), n-benchEnvelopeLen
	out := unsafe.Pointer(&benchOut[0])
	if op == opResultRead {
		if got := configGet(p, size); got != want {
			return benchFail(stageCall, got)
		}
	}
	for i := uint32(0); i < count; i++ {
		var got int32
		read := false
		switch op {
		case opConfigGet:
			got, read = configGet(p, size), true
		case opResultRead:
			got = resultRead(out, uint32(want))
		case opLogEnabled:
			got = logEnabled(arg)
		case opLogWrite:
			got = logWrite(p, size)
		case opDBExec:
			got, read = dbExec(p, size), true
		case opDBQuery:
			got, read = dbQuery(p, size), true
		case opDBBeginCommit:
			if got = dbBegin(arg); got == want {
				if rc := dbCommit(got); rc != 0 {
					return benchFail(stageCommit, rc)
				}
			}
		case opURLReaderRead:
			got, read = urlreaderCall(p, size), true
		case opGCMemoryLimit:
			got = gcMemoryLimit()
		case opGCPercent:
			got = gcPercent()
		case opDBBeginRollbk:
			if got = dbBegin(arg); got == want {
				if rc := dbRollback(got); rc != 0 {
					return benchFail(stageCommit, rc)
				}
			}
		case opDBMaxConns:
			got = dbMaxConns()
		case opDBStmtTimeout:
			got = dbStatementTimeout()
		case opCancelReq:
			got = cancelRequested()
		default:
			return 2
		}
		if got != want {
			return benchFail(stageCall, got)
		}
		if read {
			if got := resultRead(out, uint32(want)); got != want {
				return benchFail(stageResult, got)
			}
		}
	}
	return 0
}

// benchFail writes stage and result, and the result slot's message when
// result is an error code, as bench_host's output, and returns 3.
func benchFail(stage uint32, result int32) uint32 {
	head := [8]byte{byte(stage), byte(stage >> 8), byte(stage >> 16), byte(stage >> 24),
		byte(result), byte(result >> 8), byte(result >> 16), byte(result >> 24)}
	responseWrite(unsafe.Pointer(&head[0]), 8)
	if result < 0 {
		if m := resultRead(unsafe.Pointer(&benchOut[0]), 4096); m > 0 {
			responseWrite(unsafe.Pointer(&benchOut[0]), uint32(m))
		}
	}
	return 3
}

// le32 decodes a little-endian u32 (no encoding/binary: this guest stays
// as small as it can).
func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func main() {}
