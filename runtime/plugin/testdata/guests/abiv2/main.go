// Command abiv2 declares an ABI version the runtime does not know.
package main

//go:wasmexport greenroom_abi_v2
func abiV2() {}

//go:wasmexport greenroom_handle
func handle(n uint32) uint32 { return 0 }

func main() {}
