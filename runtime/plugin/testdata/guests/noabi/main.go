// Command noabi declares no ABI version at all.
package main

//go:wasmexport greenroom_handle
func handle(n uint32) uint32 { return 0 }

func main() {}
