package server_test

import (
	"fmt"
	"net"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/greenroom-dev/greenroom/runtime/internal/authtest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// BenchmarkPing serves the same /ping handler natively with Fiber and
// through the runtime (plugins/hello), driven by the same in-process client
// with parallel connections. The ratio of the two ns/op is the sandbox's
// cost; docs/benchmarks.md records it.
//
//	go test -run '^$' -bench Ping -cpu 2 ./runtime/server/
func BenchmarkPing(b *testing.B) {
	b.Run("native", func(b *testing.B) {
		app := fiber.New(fiber.Config{DisableStartupMessage: true})
		app.Get("/api/hello/ping", func(c *fiber.Ctx) error {
			c.Set("Content-Type", "application/json")
			return c.SendString(`{"ok":true}`)
		})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go app.Listener(ln)
		defer app.Shutdown()
		drive(b, "http://"+ln.Addr().String()+"/api/hello/ping", servertest.Token)
	})
	b.Run("greenroom", func(b *testing.B) {
		in := servertest.Start(b, fmt.Sprintf("[log]\naccess_log = false\n[plugins.hello]\npath = %q\nlimits = { instances = 8 }\n", helloWasm), servertest.Options{CacheDir: cacheDir})
		drive(b, in.URL+"/api/hello/ping", in.Token)
	})
	// The same with a JWT (ES256) instead of a static token: after the
	// first request its verification is remembered.
	b.Run("greenroom-jwt", func(b *testing.B) {
		idp := authtest.New(b)
		in := servertest.Start(b, fmt.Sprintf("[log]\naccess_log = false\n[auth.jwt]\njwks_url = %q\nissuer = %q\naudience = %q\n[plugins.hello]\npath = %q\nlimits = { instances = 8 }\n",
			idp.JWKSURL, authtest.Issuer, authtest.Audience, helloWasm), servertest.Options{CacheDir: cacheDir})
		drive(b, in.URL+"/api/hello/ping", idp.Sign(b, "ES256", authtest.Claims("user:default/bench")))
	})
}

// drive sends the same request, with a bearer token (checked by
// greenroom, ignored by the native handler), from parallel connections.
func drive(b *testing.B, url, token string) {
	c := &fasthttp.Client{MaxConnsPerHost: 1024}
	check := func() {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(url)
		req.Header.Set("Authorization", "Bearer "+token)
		if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			b.Fatalf("%s: %v %d %s", url, err, resp.StatusCode(), resp.Body())
		}
	}
	check()
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(url)
		req.Header.Set("Authorization", "Bearer "+token)
		for pb.Next() {
			if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Errorf("%v %d", err, resp.StatusCode())
				return
			}
		}
	})
}
