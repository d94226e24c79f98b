package greenroom

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
)

// reportPanic logs a handler's or a task's panic as one error record with the stack as
// an attribute, or, when there is no runtime to take it (a native build),
// writes it to stderr. A message over 16 KiB is dropped (it could hold a
// secret, which a cut would split); the stack, which holds no values, is
// cut at 32 KiB.
func reportPanic(where string, v any, stack []byte) {
	msg := fmt.Sprintf("panic %s: %v", where, v)
	rec := appendRecordHead(nil, levelError, dropString(msg, 16<<10))
	if stack != nil {
		rec = appendStringAttr(rec, "stack", truncate(string(stack), 32<<10))
	}
	if !emitRecord(rec) {
		fmt.Fprintf(os.Stderr, "%s\n%s", msg, stack)
	}
}

var handler http.Handler

// Handle registers h as the plugin's HTTP handler. Call it from an init
// function: a plugin's main function never runs. Without a handler every
// request gets 501 (code plugin_no_handler), and the log a warning. The
// handler sees requests with the path relative to the plugin's mount: a
// request for /api/hello/ping arrives as /ping.
//
// Responses are buffered and sent when the handler returns. The
// ResponseWriter is an http.Flusher (also for http.ResponseController),
// but a flush only writes the status and the header, as
// httptest.ResponseRecorder's does: nothing is streamed. Its
// SetReadDeadline, SetWriteDeadline and EnableFullDuplex (for
// http.ResponseController) succeed: no read or write waits on the client.
// It is an http.CloseNotifier, whose channel receives when r.Context()
// ends. Hijack is not supported.
func Handle(h http.Handler) {
	handler = h
}

// noHandlerMsg is the answer of a plugin that registered no handler; a
// plugin of scheduled tasks only has none to register.
const noHandlerMsg = "plugin registered no HTTP handler: call greenroom.Handle from an init function (a plugin's main function never runs)"

var noHandlerOnce sync.Once

// noHandler answers req for a plugin that registered no handler: 501, in
// the runtime's error shape, and a warning in the log the first time.
func noHandler(w http.ResponseWriter, req *http.Request) {
	noHandlerOnce.Do(func() { logLine(levelWarn, noHandlerMsg) })
	answerError(w, req, http.StatusNotImplemented, "plugin_no_handler", noHandlerMsg)
}

// logLine logs msg at level, or, when there is no runtime to take it (a
// native build), writes it to stderr. Not through Logger(): slog's
// machinery would be linked into every plugin for the SDK's few lines
// (0.25 MB of a plugin that does not log, which each start-up validates).
func logLine(level int32, msg string) {
	if !emitRecord(appendRecordHead(nil, level, msg)) {
		fmt.Fprintln(os.Stderr, msg)
	}
}

// answerError answers req with status in the runtime's error shape.
func answerError(w http.ResponseWriter, req *http.Request, status int, code, msg string) {
	body, _ := json.Marshal(map[string]string{"error": msg, "code": code, "request_id": RequestID(req.Context())})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
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
// whether it panicked. A panic is logged at error level with its stack
// (without one for http.ErrAbortHandler, a handler's deliberate abort, as
// net/http logs none); the runtime then discards this instance.
func serve(w *responseWriter, req *http.Request) (code uint32) {
	defer func() {
		if v := recover(); v != nil {
			var stack []byte
			if v != http.ErrAbortHandler {
				stack = debug.Stack()
			}
			reportPanic("serving "+req.Method+" "+req.URL.Path, v, stack)
			code = handlePanicked
		}
	}()
	h := handler
	if h == nil {
		noHandler(w, req)
		return handleOK
	}
	h.ServeHTTP(w, req)
	if msg := w.badResponse(); msg != "" {
		// Said here, where the handler's own counts are known: the
		// answer is the runtime's for a malformed response, and the
		// instance is kept.
		logLine(levelError, msg)
		w.reset()
		answerError(w, req, http.StatusBadGateway, "plugin_bad_response", msg)
	}
	return handleOK
}
