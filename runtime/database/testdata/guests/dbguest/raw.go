package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"unsafe"
)

// Raw calls of the database host functions, for tests of hostile
// encodings and pointers that the SDK would never send.

//go:wasmimport greenroom db_query
func rawQuery(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom db_commit
func rawCommit(tx uint32) int32

//go:wasmimport greenroom db_begin
func rawBegin(flags uint32) int32

//go:wasmimport greenroom db_migrations
func rawMigrations(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom result_read
func rawResultRead(ptr unsafe.Pointer, size uint32) int32

func rawRoutes(mux *http.ServeMux) {
	// POST /raw/{fn} with the request bytes as body; answers the code and
	// the result slot's message.
	mux.HandleFunc("POST /raw/{fn}", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p unsafe.Pointer
		if len(body) > 0 {
			p = unsafe.Pointer(&body[0])
		}
		var code int32
		switch r.PathValue("fn") {
		case "query":
			code = rawQuery(p, uint32(len(body)))
		case "migrations":
			code = rawMigrations(p, uint32(len(body)))
		case "commit":
			n, _ := strconv.Atoi(string(body))
			code = rawCommit(uint32(n))
		case "begin":
			n, _ := strconv.Atoi(string(body))
			code = rawBegin(uint32(n))
		}
		msg := ""
		if code < 0 {
			buf := make([]byte, 4096)
			n := rawResultRead(unsafe.Pointer(&buf[0]), uint32(len(buf)))
			msg = string(buf[:n])
		}
		json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg})
	})
	// GET /badptr passes a buffer outside memory: the host must trap.
	mux.HandleFunc("GET /badptr", func(w http.ResponseWriter, r *http.Request) {
		rawQuery(unsafe.Pointer(uintptr(0xfffffff0)), 100)
	})
}
