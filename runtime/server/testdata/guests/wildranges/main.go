// Command wildranges calls each host function that takes a guest buffer
// with the pointer and length a request names, bypassing the SDK, for
// TestWildRangesTrapInEveryHostFunction.
package main

import (
	"fmt"
	"net/http"
	"strconv"
	"unsafe"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

//go:wasmimport greenroom request_read
func requestRead(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom response_write
func responseWrite(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom result_read
func resultRead(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom config_get
func configGet(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom public_route
func publicRoute(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom log_write
func logWrite(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom db_exec
func dbExec(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom db_query
func dbQuery(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom db_migrations
func dbMigrations(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom urlreader_call
func urlreaderCall(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom task_register
func taskRegister(ptr unsafe.Pointer, size uint32) int32

var fns = map[string]func(unsafe.Pointer, uint32) int32{
	"request_read": requestRead, "response_write": responseWrite, "result_read": resultRead,
	"config_get": configGet, "public_route": publicRoute, "log_write": logWrite,
	"db_exec": dbExec, "db_query": dbQuery, "db_migrations": dbMigrations,
	"urlreader_call": urlreaderCall, "task_register": taskRegister,
}

func u32(s string) uint32 {
	n, _ := strconv.ParseUint(s, 0, 32)
	return uint32(n)
}

// wild is an address the guest names as a number (never a Go pointer it
// dereferences itself).
func wild(addr uint32) unsafe.Pointer {
	return unsafe.Add(unsafe.Pointer(nil), uintptr(addr))
}

func init() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	// GET /call?fn=&ptr=&len= calls fn(ptr, len) once and answers its
	// code and the result slot's message.
	mux.HandleFunc("GET /call", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f := fns[q.Get("fn")]
		if f == nil {
			http.Error(w, "unknown fn", 400)
			return
		}
		code := f(wild(u32(q.Get("ptr"))), u32(q.Get("len")))
		buf := make([]byte, 1024)
		n := resultRead(unsafe.Pointer(&buf[0]), uint32(len(buf)))
		fmt.Fprintf(w, "%d %s", code, buf[:n])
	})
	greenroom.Handle(mux)
}

func main() {}
