package server_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"
	"github.com/valyala/fasthttp"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/authtest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
	"github.com/greenroom-dev/greenroom/runtime/logging"
	"github.com/greenroom-dev/greenroom/runtime/urlreader"
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

// warmUp sends concurrent requests until every instance of the pool
// exists, so that creating instances (tens of milliseconds each) is not
// timed: the route benchmarks measure the steady state.
func warmUp(b *testing.B, url string) {
	c := &fasthttp.Client{MaxConnsPerHost: 1024}
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(url)
			req.Header.Set("Authorization", "Bearer "+servertest.Token)
			for i := 0; i < 20; i++ {
				if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					b.Errorf("warm-up %s: %d %v", url, resp.StatusCode(), err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// startQuiet starts greenroom with cfgText and a JSON log to io.Discard
// (benchmarks write far too many lines to keep), with servertest's static
// token as the credential, as BenchmarkPing uses.
func startQuiet(b *testing.B, cfgText string, ropts runtime.Options) *servertest.Instance {
	override := "[server]\nlisten = \"127.0.0.1:0\"\n[runtime]\ncache_dir = \"" + cacheDir + "\"\n[log]\naccess_log = false\n"
	cfg, err := config.Read([]config.Source{{Name: "config.toml", Data: []byte(cfgText)}, {Name: "bench.toml", Data: []byte(override)}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Auth.Tokens = map[string]*config.Token{"bench": {Token: servertest.Token, Subject: "service:bench", Type: "service", Admin: true}}
	log, _, err := logging.New(io.Discard, "json", "info", cfg.Secrets())
	if err != nil {
		b.Fatal(err)
	}
	return servertest.StartConfig(b, cfg, log, nil, ropts)
}

// BenchmarkLogRoute serves a route that logs one line with two fields, as
// JSON through logrus to io.Discard: natively (a Fiber handler calling
// logrus) and through greenroom (the logurl guest's /log1, which calls
// greenroom.Logger().Info), and, to separate the log line's cost from the
// guest's, the same guest's route without it. Access logs are off.
//
//	go test -run '^$' -bench LogRoute -cpu 2 ./runtime/server/
func BenchmarkLogRoute(b *testing.B) {
	b.Run("native", func(b *testing.B) {
		log, _, err := logging.New(io.Discard, "json", "info", nil)
		if err != nil {
			b.Fatal(err)
		}
		app := fiber.New(fiber.Config{DisableStartupMessage: true})
		var n atomic.Int64
		app.Get("/api/logurl/log1", func(c *fiber.Ctx) error {
			log.WithFields(logrus.Fields{"plugin": "logurl", "request_id": fmt.Sprint(n.Add(1)), "user": "jane", "n": 1}).Info("handled")
			c.Set("Content-Type", "application/json")
			return c.SendString(`{"ok":true}`)
		})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go app.Listener(ln)
		defer app.Shutdown()
		warmUp(b, "http://"+ln.Addr().String()+"/api/logurl/log1")
		drive(b, "http://"+ln.Addr().String()+"/api/logurl/log1", servertest.Token)
	})
	for _, route := range []string{"log1", "nolog"} {
		name := "greenroom"
		if route == "nolog" {
			name = "greenroom-same-route-without-the-log-line"
		}
		b.Run(name, func(b *testing.B) {
			in := startQuiet(b, fmt.Sprintf("[plugins.logurl]\npath = %q\nlimits = { instances = 8, log_rate = 1e9, log_burst = 100000 }\n", logurlWasm), runtime.Options{})
			warmUp(b, in.URL+"/api/logurl/"+route)
			drive(b, in.URL+"/api/logurl/"+route, servertest.Token)
		})
	}
}

// BenchmarkReadRoute serves a route that reads a 4 KiB document from a
// local test server and answers with it: natively (a Fiber handler with a
// net/http client) and through greenroom (the logurl guest's /read, with
// greenroom.ReadURL and raw=1, which answers with the body as is; the test
// server is made reachable with the test-only option).
//
//	go test -run '^$' -bench ReadRoute -cpu 2 ./runtime/server/
func BenchmarkReadRoute(b *testing.B) {
	doc := strings.Repeat("x", 4096)
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, doc) }))
	defer src.Close()
	b.Run("native", func(b *testing.B) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		app := fiber.New(fiber.Config{DisableStartupMessage: true})
		app.Get("/api/logurl/read", func(c *fiber.Ctx) error {
			resp, err := client.Get(c.Query("url"))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			return c.Send(body)
		})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go app.Listener(ln)
		defer app.Shutdown()
		u := "http://" + ln.Addr().String() + "/api/logurl/read?url=" + url.QueryEscape(src.URL+"/doc")
		warmUp(b, u)
		drive(b, u, servertest.Token)
	})
	b.Run("greenroom", func(b *testing.B) {
		addr := netip.MustParseAddrPort(src.Listener.Addr().String())
		in := startQuiet(b, fmt.Sprintf(`
[reading]
allow = [{ host = "127.0.0.1", scheme = "http" }]
[plugins.logurl]
path = %q
limits = { instances = 8 }
capabilities = { urlreader = ["127.0.0.1"] }
`, logurlWasm), runtime.Options{URLReader: urlreader.Options{TestOnlyReachable: []netip.AddrPort{addr}}})
		u := in.URL + "/api/logurl/read?raw=1&url=" + url.QueryEscape(src.URL+"/doc")
		warmUp(b, u)
		drive(b, u, servertest.Token)
	})
}
