//go:build wasip1

// Command logline is a benchmark plugin: GET /log writes one log line with
// two attributes through greenroom.Logger() and answers {"ok":true}. The
// benchmark harness (go run ./bench/...) serves it beside a native Fiber
// handler that writes the same line with logrus.
//
// It logs at warn level because the harness runs both servers with
// [log] level = "warn": an info line would be filtered before it is
// encoded, and the route would measure nothing.
//
// The build constraint keeps `go run ./bench/...` down to one main
// package; the harness builds this one for wasip1.
package main

import (
	"net/http"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

func init() {
	log := greenroom.Logger()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /log", func(w http.ResponseWriter, r *http.Request) {
		log.Warn("handled", "user", "jane", "n", 1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	})
	greenroom.Handle(mux)
}

func main() {}
