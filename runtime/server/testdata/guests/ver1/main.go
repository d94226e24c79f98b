// Command ver1 is version 1 of a plugin the reload tests swap in and out.
package main

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

const version = "v1"

func init() {
	// A slow initialization, for the reload tests.
	if v, ok := greenroom.Config("init_sleep_ms"); ok {
		ms, _ := strconv.Atoi(v)
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(version))
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		w.Write([]byte(version))
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		// The version and the length of the body it read, for the tests
		// that send bodies across a reload.
		n, _ := io.Copy(io.Discard, r.Body)
		w.Write([]byte(version + ":" + strconv.FormatInt(n, 10)))
	})
	greenroom.Handle(mux)
	// Open only where the operator also lists it in public_routes.
	greenroom.Public("/v")
}

func main() {}
