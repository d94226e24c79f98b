package runtime_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

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
	const admin = "firstinstance-admin-token-0123456789abcdef"
	in := servertest.Start(t, fmt.Sprintf(`[auth.tokens.admin]
token = %q
subject = "service:admin"
admin = true
[reading]
allow = [{ host = "127.0.0.1", scheme = "http", internal = true }]
[plugins.fp]
path = %q
public_routes = ["/first", "/later"]
limits = { instances = 2, queue_timeout = "10s", timeout = "30s" }
[plugins.fp.capabilities]
urlreader = ["127.0.0.1"]
[plugins.fp.config]
counter_url = %q
`, admin, wasm, counter.URL+"/n"), testOptions())
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d instances started at load, want 1", n)
	}
	// Hold the one instance so that the next call makes the second.
	slow := make(chan int, 1)
	go func() {
		s, _, _ := in.DoAnon(t, "GET", "/api/fp/slow?ms=1000", nil, "Authorization", "Bearer "+admin)
		slow <- s
	}()
	in.WaitBusy(t, "fp")
	if s, _, b := in.DoAnon(t, "GET", "/api/fp/first", nil); s != 200 || b != "/first" {
		t.Errorf("GET /first without a credential: %d %s, want 200 (the first instance asked for it)", s, b)
	}
	if s := <-slow; s != 200 {
		t.Fatalf("slow call: %d", s)
	}
	if n := reads.Load(); n != 2 {
		t.Fatalf("%d instances started, want 2 (the pool added one under load)", n)
	}
	for range 3 {
		if s, _, b := in.DoAnon(t, "GET", "/api/fp/later", nil); s != 401 {
			t.Fatalf("GET /later without a credential: %d %s, want 401 (only a later instance asked for it)", s, b)
		}
	}
	if s, _, b := in.DoAnon(t, "GET", "/api/fp/later", nil, "Authorization", "Bearer "+admin); s != 200 || b != "/later" {
		t.Errorf("GET /later with a credential: %d %s, want 200", s, b)
	}
}
