//go:build wasip1

// Command readurl is a benchmark plugin: GET /read?url=U reads U with
// greenroom.ReadURL and answers with its body as is (502 with the error
// when the read fails). The benchmark harness (go run ./bench/...) points
// it at a local test server that only its config allows, and serves it
// beside a native Fiber handler that reads the same URL with net/http.
//
// The build constraint keeps `go run ./bench/...` down to one main
// package; the harness builds this one for wasip1.
package main

import (
	"net/http"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

func init() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		resp, err := greenroom.ReadURL(r.Context(), r.URL.Query().Get("url"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(resp.Body)
	})
	greenroom.Handle(mux)
}

func main() {}
