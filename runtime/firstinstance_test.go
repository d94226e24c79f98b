package runtime_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// fpAdmin is the token of firstPublicConfig's admin.
const fpAdmin = "firstinstance-admin-token-0123456789abcdef"

// firstPublicConfig is the config of plugin fp, the firstpublic guest
// (wasm) reading its counter from counterURL, with up to two instances,
// an admin token, and the lines given for [plugins.fp], its capabilities
// and its config.
func firstPublicConfig(wasm, counterURL, plugin, caps, cfg string) string {
	return fmt.Sprintf(`[auth.tokens.admin]
token = %q
subject = "service:admin"
admin = true
[reading]
allow = [{ host = "127.0.0.1", scheme = "http", internal = true }]
[plugins.fp]
path = %q
%s
limits = { instances = 2, queue_timeout = "10s", timeout = "30s" }
[plugins.fp.capabilities]
urlreader = ["127.0.0.1"]
%s
[plugins.fp.config]
counter_url = %q
%s
`, fpAdmin, wasm, plugin, caps, counterURL+"/n", cfg)
}

// holdInstance holds an instance of fp for a second (a slow call), so
// that the next call makes another; release waits for the slow call.
func holdInstance(t *testing.T, in *servertest.Instance) (release func()) {
	slow := make(chan int, 1)
	go func() {
		s, _, _ := in.DoAnon(t, "GET", "/api/fp/slow?ms=1000", nil, "Authorization", "Bearer "+fpAdmin)
		slow <- s
	}()
	in.WaitBusy(t, "fp")
	return func() {
		if s := <-slow; s != 200 {
			t.Fatalf("slow call: %d", s)
		}
	}
}

// A version's public routes are what its first instance asked for: a
// route the operator lists that only a later instance asks for (here, the
// one the pool adds under load) stays protected. This is the runtime's
// wiring of the pool's first-instance hook to the host; without it the
// later instance's init opens its route.
func TestPublicRoutesFixedByFirstInstance(t *testing.T) {
	wasm := guesttest.Build(t, "runtime/testdata/guests/firstpublic")
	var reads atomic.Int64
	counter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if reads.Add(1) == 1 {
			w.Write([]byte("first"))
			return
		}
		w.Write([]byte("later"))
	}))
	defer counter.Close()
	in := servertest.Start(t, firstPublicConfig(wasm, counter.URL, `public_routes = ["/first", "/later"]`, "", ""), testOptions())
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d instances started at load, want 1", n)
	}
	// Hold the one instance so that the next call makes the second.
	release := holdInstance(t, in)
	if s, _, b := in.DoAnon(t, "GET", "/api/fp/first", nil); s != 200 || b != "/first" {
		t.Errorf("GET /first without a credential: %d %s, want 200 (the first instance asked for it)", s, b)
	}
	release()
	if n := reads.Load(); n != 2 {
		t.Fatalf("%d instances started, want 2 (the pool added one under load)", n)
	}
	for range 3 {
		if s, _, b := in.DoAnon(t, "GET", "/api/fp/later", nil); s != 401 {
			t.Fatalf("GET /later without a credential: %d %s, want 401 (only a later instance asked for it)", s, b)
		}
	}
	if s, _, b := in.DoAnon(t, "GET", "/api/fp/later", nil, "Authorization", "Bearer "+fpAdmin); s != 200 || b != "/later" {
		t.Errorf("GET /later with a credential: %d %s, want 200", s, b)
	}
}

// A version's tasks, too, are what its first instance registered, when a
// reload starts the new version with several instances (as many as the
// old one had live): those Load starts after the first register
// alongside it. The runtime fixed the tasks only once Load returned, so
// a warm instance registering a task the first did not added it to the
// version (and each of them up to scheduler.MaxTasks more: with
// limits.instances = 64, 64 000 tasks). Its tasks were fixed by the
// first instance for public routes only.
func TestTasksFixedByFirstInstance(t *testing.T) {
	wasm := guesttest.Build(t, "runtime/testdata/guests/firstpublic")
	var reads atomic.Int64
	counter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The first instance of each version: the load's, the reload's.
		if n := reads.Add(1); n == 1 || n == 3 {
			w.Write([]byte("first"))
			return
		}
		w.Write([]byte("later"))
	}))
	defer counter.Close()
	cfg := func(version int) string {
		return firstPublicConfig(wasm, counter.URL, "", "scheduler = true", fmt.Sprintf("tasks = \"yes\"\nversion = %d", version))
	}
	in := servertest.Start(t, cfg(1), testOptions())
	// Two live instances: hold the one so that the next call makes the
	// second (which registers "later", ignored: the version is loaded).
	release := holdInstance(t, in)
	if s, _, _ := in.DoAnon(t, "GET", "/api/fp/first", nil, "Authorization", "Bearer "+fpAdmin); s != 200 {
		t.Fatalf("GET /first: %d", s)
	}
	release()
	if n := reads.Load(); n != 2 {
		t.Fatalf("%d instances started, want 2", n)
	}
	tasks := func() []string {
		all, err := in.RT.Scheduler().Tasks(context.Background(), false)
		if err != nil {
			t.Fatalf("tasks: %v", err)
		}
		var ids []string
		for _, st := range all {
			if st.Plugin == "fp" {
				ids = append(ids, st.ID)
			}
		}
		slices.Sort(ids)
		return ids
	}
	if got := tasks(); !slices.Equal(got, []string{"first"}) {
		t.Fatalf("tasks after the load: %v, want [first]", got)
	}
	// The reload starts the new version with two instances.
	in.SetConfig(cfg(2))
	if pr := in.Reload(t).Plugins["fp"]; !pr.Serving || pr.Error != "" {
		t.Fatalf("reload: %+v", pr)
	}
	if n := reads.Load(); n != 4 {
		t.Fatalf("%d instances started, want 4 (two for each version)", n)
	}
	if got := tasks(); !slices.Equal(got, []string{"first"}) {
		t.Errorf("tasks after the reload: %v, want [first] (what its first instance registered)", got)
	}
}
