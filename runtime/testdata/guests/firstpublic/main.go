// Command firstpublic asks for a different public route from its first
// instance than from later ones, which it tells apart by a counter it reads
// from a URL at init ([plugins.<id>.config] counter_url): the first read
// answers "first". The runtime's tests use it to check that a version's
// public routes are fixed by its first instance.
package main

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

func init() {
	mux := http.NewServeMux()
	for _, p := range []string{"/first", "/later"} {
		mux.HandleFunc("GET "+p, func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(p))
		})
	}
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		w.Write([]byte("slow"))
	})
	greenroom.Handle(mux)
	url, _ := greenroom.Config("counter_url")
	resp, err := greenroom.ReadURL(context.Background(), url)
	if err != nil {
		panic(err)
	}
	if string(resp.Body) == "first" {
		greenroom.Public("/first")
	} else {
		greenroom.Public("/later")
	}
}

func main() {}
