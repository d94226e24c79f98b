// Command raw implements ABI v1 directly, without net/http or the SDK: it
// answers every request with 200 "ok". Benchmarks use it to measure the
// host side of a call apart from the guest's HTTP stack.
package main

import "unsafe"

//go:wasmimport greenroom request_read
func requestRead(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom response_write
func responseWrite(ptr unsafe.Pointer, size uint32) int32

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

func main() {}
