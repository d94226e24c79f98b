//go:build wasip1

// Command guest is package floor's listing as a wasip1 module
// (-buildmode=c-shared): work(n) runs floor.Work n times and returns the
// bytes encoded in all, or -1 on an error. It uses no greenroom SDK; the
// floor measures Go compiled to wasm, not greenroom.
//
// The build constraint keeps `go run ./bench/...` down to one main
// package; the harness and the tests build this one for wasip1 with
// runtime/build.
package main

import "github.com/greenroom-dev/greenroom/bench/floor"

//go:wasmexport work
func work(n int32) int64 {
	var total int64
	for range n {
		k, err := floor.Work()
		if err != nil {
			return -1
		}
		total += int64(k)
	}
	return total
}

func main() {}
