// Command badsig exports the functions the host calls with the wrong types,
// and a version export that names no version: the load must refuse it.
package main

//go:wasmexport greenroom_abi_v1
func abiV1() {}

//go:wasmexport greenroom_abi_v01
func abiV01() {}

//go:wasmexport greenroom_handle
func handle(a, b uint32) uint32 { return 0 }

//go:wasmexport greenroom_task_run
func taskRun(n uint64) uint64 { return 0 }

func main() {}
