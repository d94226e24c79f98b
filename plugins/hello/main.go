// Command hello is greenroom's example plugin: GET /ping, GET /healthz,
// GET /echo (the query, headers and remote address back as JSON), POST /echo (the body
// back) and GET /whoami (who is calling, as JSON). It asks for /ping,
// /healthz and /whoami to be public; the operator decides.
package main

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

func init() {
	// Only asks: the operator decides with plugins.hello.public_routes.
	// On a public /whoami an anonymous caller is PrincipalNone.
	greenroom.Public("/ping", "/healthz", "/whoami")
	greenroom.Handle(newMux())
}

func newMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /echo", func(w http.ResponseWriter, r *http.Request) {
		greeting, _ := greenroom.Config("greeting")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"method":   r.Method,
			"path":     r.URL.Path,
			"query":    r.URL.Query(),
			"headers":  r.Header,
			"remote":   r.RemoteAddr,
			"greeting": greeting,
		})
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		io.Copy(w, r.Body)
	})
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(greenroom.PrincipalFrom(r))
	})
	return mux
}

func main() {}
