// Command nethttp serves handlers.New as a guest, for tests that compare
// it with the same handler served natively.
package main

import (
	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
	"github.com/greenroom-dev/greenroom/runtime/server/testdata/guests/nethttp/handlers"
)

func init() { greenroom.Handle(handlers.New()) }

func main() {}
