package urlreader

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// BenchmarkRead is one read of a 4 KiB document from a local test server
// (made reachable with the test-only option), through every check: URL
// parsing, allow rule and grant, address rules at connect time (kept-alive
// connections skip the dial), body limit; beside a plain net/http client
// reading the same URL. "conditional" is a revalidation that gets 304.
//
//	go test -run '^$' -bench Read -benchmem ./runtime/urlreader/
func BenchmarkRead(b *testing.B) {
	body := strings.Repeat("x", 4096)
	srv := newServer(b, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Write([]byte(body))
	})
	r, err := New(mustConfig(b, localConfig), Options{Resolver: mapResolver{"docs.test": {"127.0.0.1"}}, TestOnlyReachable: []netip.AddrPort{srv.addrPort()}})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	p := r.For("bench", localGrants)
	url := "http://docs.test:" + srv.port() + "/doc.md"
	b.Run("net-http-baseline", func(b *testing.B) {
		c := &http.Client{Transport: &http.Transport{}}
		direct := srv.URL + "/doc.md"
		b.ReportAllocs()
		for b.Loop() {
			resp, err := c.Get(direct)
			if err != nil {
				b.Fatal(err)
			}
			if n, _ := io.Copy(io.Discard, resp.Body); n != 4096 {
				b.Fatal(n)
			}
			resp.Body.Close()
		}
	})
	b.Run("get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if resp, err := p.Read(context.Background(), Request{URL: url}); err != nil || len(resp.Body) != 4096 {
				b.Fatal(err)
			}
		}
	})
	b.Run("conditional", func(b *testing.B) {
		b.ReportAllocs()
		req := Request{URL: url, Header: [][2]string{{"If-None-Match", `"v1"`}}}
		for b.Loop() {
			if _, err := p.Read(context.Background(), req); KindOf(err) != NotModified {
				b.Fatal(err)
			}
		}
	})
}
