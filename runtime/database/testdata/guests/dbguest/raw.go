package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
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

//go:wasmimport greenroom db_rollback
func rawRollback(tx uint32) int32

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
		case "rollback":
			// "N" rolls back handle N; "begun+N" begins a transaction
			// and rolls back its handle plus N.
			s, begun := strings.CutPrefix(string(body), "begun+")
			n, _ := strconv.ParseUint(s, 10, 32)
			if !begun {
				code = rawRollback(uint32(n))
			} else if code = rawBegin(0); code > 0 {
				code = rawRollback(uint32(code) + uint32(n))
			}
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

// rawRegister registers migrations as raw_migrations = "count,size,calls"
// says (see init) and returns the first refusal, as "call N: code C:
// message", or "".
func rawRegister(spec string) string {
	var count, size, calls int
	if _, err := fmt.Sscanf(spec, "%d,%d,%d", &count, &size, &calls); err != nil {
		return err.Error()
	}
	sql := "SELECT 1;"
	sql += strings.Repeat(" ", max(size-len(sql), 0))
	for c := 0; c < calls; c++ {
		buf := binary.LittleEndian.AppendUint32(nil, uint32(count))
		for i := 0; i < count; i++ {
			name := fmt.Sprintf("%03d_%06d.up.sql", c, i)
			buf = binary.LittleEndian.AppendUint32(buf, uint32(len(name)))
			buf = append(buf, name...)
			buf = binary.LittleEndian.AppendUint32(buf, uint32(len(sql)))
			buf = append(buf, sql...)
		}
		if code := rawMigrations(unsafe.Pointer(&buf[0]), uint32(len(buf))); code < 0 {
			msg := make([]byte, 4096)
			n := rawResultRead(unsafe.Pointer(&msg[0]), uint32(len(msg)))
			return fmt.Sprintf("call %d: code %d: %s", c+1, code, msg[:n])
		}
	}
	return ""
}
