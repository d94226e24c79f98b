package greenroom

import (
	"fmt"
	"net/http"
	"os"
	"runtime/debug"
)

var handler http.Handler

// Handle registers h as the plugin's HTTP handler. Call it from an init
// function. The handler sees requests with the path relative to the plugin's
// mount: a request for /api/hello/ping arrives as /ping.
//
// Responses are buffered and sent when the handler returns; Flush and
// Hijack are not supported.
func Handle(h http.Handler) {
	handler = h
}

// Handler returns the handler registered with Handle, or nil. Native unit
// tests use it to drive a plugin's routes without the runtime.
func Handler() http.Handler {
	return handler
}

// Config returns the value of key in the plugin's own [plugins.<id>.config]
// table. Nested tables are reached with dotted keys ("db.host"); numbers and
// booleans come back as their TOML text, arrays as JSON. A plugin sees only
// its own table.
func Config(key string) (string, bool) {
	return hostConfig(key)
}

// Guest return codes of the greenroom_handle export (docs/abi.md).
const (
	handleOK       = 0
	handlePanicked = 1
	handleBadInput = 2
)

// serve runs the registered handler for one decoded request and reports
// whether it panicked. A panic is written to stderr with its stack, which
// the runtime logs; the runtime then discards this instance.
func serve(w *responseWriter, req *http.Request) (code uint32) {
	defer func() {
		if v := recover(); v != nil {
			fmt.Fprintf(os.Stderr, "panic serving %s %s: %v\n%s", req.Method, req.URL.Path, v, debug.Stack())
			code = handlePanicked
		}
	}()
	h := handler
	if h == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotImplemented)
		w.Write([]byte(`{"error":"plugin registered no HTTP handler (greenroom.Handle)"}`))
		return handleOK
	}
	h.ServeHTTP(w, req)
	return handleOK
}
