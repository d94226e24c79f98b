// Command firstpublic asks for a different public route from its first
// instance than from later ones, which it tells apart by a counter it reads
// from a URL at init ([plugins.<id>.config] counter_url): the first read
// answers "first". The runtime's tests use it to check that a version's
// public routes, and its tasks, are fixed by its first instance: when
// [plugins.<id>.config] tasks is set, it also schedules a task of that
// name ("first" or "later"; the scheduler may refuse it, which it
// ignores), first run an hour after the load.
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
	which := "later"
	if string(resp.Body) == "first" {
		which = "first"
	}
	greenroom.Public("/" + which)
	if _, ok := greenroom.Config("tasks"); ok {
		// Not run during a test: a run at load took the one instance for a
		// moment, and the tests' holdInstance, which waits for the
		// instance to be busy, took that for its own call (then the next
		// call found the instance free and the pool made no second one).
		greenroom.Schedule(greenroom.Task{ID: which, Every: time.Hour, InitialDelay: time.Hour, Run: func(context.Context) error { return nil }})
	}
}

func main() {}
