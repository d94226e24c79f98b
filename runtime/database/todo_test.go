package database_test

import (
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/valyala/fasthttp"

	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

func todoConfig(dbconf string) string {
	return dbconf + fmt.Sprintf(`
[log]
access_log = false
[plugins.todo]
path = %q
[plugins.todo.capabilities]
database = true
[plugins.todo.limits]
instances = 8
queue_timeout = "30s"
`, todoWasm)
}

// plugins/todo, built and served by the runtime, on both databases.
func TestTodoPlugin(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, todoConfig(dbconf))
		status, h, body := in.Do(t, "POST", "/api/todo/items", strings.NewReader(`{"title":"try greenroom"}`), "Content-Type", "application/json")
		var item map[string]any
		json.Unmarshal([]byte(body), &item)
		if status != 201 || item["title"] != "try greenroom" || !strings.HasPrefix(h.Get("Location"), "/api/todo/items/") {
			t.Fatalf("create: %d %s", status, body)
		}
		loc := h.Get("Location")
		if status, _, body := in.Do(t, "PATCH", loc, strings.NewReader(`{"done":true}`)); status != 200 || !strings.Contains(body, `"done":true`) {
			t.Errorf("update: %d %s", status, body)
		}
		status, _, body = in.Get(t, "/api/todo/items")
		var list struct{ Items []map[string]any }
		json.Unmarshal([]byte(body), &list)
		if status != 200 || len(list.Items) != 1 || list.Items[0]["done"] != true {
			t.Errorf("list: %d %s", status, body)
		}
		for _, bad := range []string{`{"title": 42}`, `{"title":"nul\u0000byte"}`} {
			status, h, body = in.Do(t, "POST", "/api/todo/items", strings.NewReader(bad))
			if status != 400 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") || !strings.Contains(body, `"error"`) {
				t.Errorf("bad input %s: %d %s", bad, status, body)
			}
		}
		if status, _, _ := in.Do(t, "DELETE", loc, nil); status != 204 {
			t.Errorf("delete: %d", status)
		}
		if status, _, _ := in.Get(t, loc); status != 404 {
			t.Errorf("get deleted: %d", status)
		}
	})
}

// Two PATCHes of one item at once, one changing its title and one its
// done flag, both land: the second waits for the first's row lock (on
// PostgreSQL a SELECT in a READ COMMITTED transaction locks nothing, and
// the audit lost one of the two changes 16 times in 20).
func TestTodoConcurrentPatches(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, b backend, dbconf string) {
		in := start(t, todoConfig(dbconf))
		for i := range 10 {
			status, h, body := in.Do(t, "POST", "/api/todo/items", strings.NewReader(`{"title":"c0"}`))
			if status != 201 {
				t.Fatalf("create: %d %s", status, body)
			}
			loc := h.Get("Location")
			var wg sync.WaitGroup
			for _, patch := range []string{`{"title":"renamed"}`, `{"done":true}`} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if status, _, body := in.Do(t, "PATCH", loc, strings.NewReader(patch)); status != 200 {
						t.Errorf("patch %s: %d %s", patch, status, body)
					}
				}()
			}
			wg.Wait()
			_, _, body = in.Get(t, loc)
			var it map[string]any
			json.Unmarshal([]byte(body), &it)
			if it["title"] != "renamed" || it["done"] != true || it["done_at"] == nil {
				t.Fatalf("round %d: %s, want both changes", i, body)
			}
		}
	})
}

// item is a row of plugins/todo's items table, for the native handler.
type item struct {
	bun.BaseModel `bun:"table:items"`
	ID            int64     `bun:"id,pk" json:"id"`
	Title         string    `bun:"title" json:"title"`
	Done          bool      `bun:"done" json:"done"`
	CreatedAt     time.Time `bun:"created_at" json:"created_at"`
	UpdatedAt     time.Time `bun:"updated_at" json:"updated_at"`
}

// BenchmarkTodoList serves GET /api/todo/items (100 rows, JSON) through
// plugins/todo in greenroom, and natively with a Fiber handler running the
// same query with bun on the same database (the plugin's own pool), side
// by side, on SQLite and PostgreSQL. It reports ns/op (the inverse of
// throughput with 32×GOMAXPROCS clients) and the p99 latency;
// docs/benchmarks.md records both and the ratio.
//
//	go test -run '^$' -bench TodoList -benchtime 3s ./runtime/database/
func BenchmarkTodoList(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			dbconf := be.conf(b)
			in := servertest.Start(b, todoConfig(dbconf), servertest.Options{CacheDir: cacheDir})
			for i := 0; i < 100; i++ {
				status, _, body := in.Do(b, "POST", "/api/todo/items", strings.NewReader(fmt.Sprintf(`{"title":"item %03d"}`, i)))
				if status != 201 {
					b.Fatalf("seed: %d %s", status, body)
				}
			}
			sqldb := in.RT.Database().PluginDB("todo").SQL()
			var db *bun.DB
			if be.name == "pg" {
				db = bun.NewDB(sqldb, pgdialect.New())
			} else {
				db = bun.NewDB(sqldb, sqlitedialect.New())
			}
			app := fiber.New(fiber.Config{DisableStartupMessage: true})
			app.Get("/api/todo/items", func(c *fiber.Ctx) error {
				items := []item{}
				if err := db.NewSelect().Model(&items).Order("created_at", "id").Limit(1000).Scan(c.UserContext()); err != nil {
					return err
				}
				return c.JSON(fiber.Map{"items": items})
			})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go app.Listener(ln)
			defer app.Shutdown()
			b.Run("native", func(b *testing.B) { drive(b, "http://"+ln.Addr().String()+"/api/todo/items") })
			b.Run("greenroom", func(b *testing.B) { drive(b, in.URL+"/api/todo/items") })
		})
	}
}

// drive runs GETs of url from 32×GOMAXPROCS parallel clients, checks that
// each returns 100 items, and reports the p99 latency.
func drive(b *testing.B, url string) {
	c := &fasthttp.Client{MaxConnsPerHost: 1024}
	get := func(req *fasthttp.Request, resp *fasthttp.Response) error {
		if err := c.Do(req, resp); err != nil {
			return err
		}
		if resp.StatusCode() != 200 {
			return fmt.Errorf("%d %s", resp.StatusCode(), resp.Body())
		}
		return nil
	}
	// Both servers get the same credential header; only greenroom checks it.
	auth := "Bearer " + servertest.Token
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI(url)
	req.Header.Set("Authorization", auth)
	if err := get(req, resp); err != nil {
		b.Fatal(err)
	}
	var list struct{ Items []json.RawMessage }
	if err := json.Unmarshal(resp.Body(), &list); err != nil || len(list.Items) != 100 {
		b.Fatalf("%s: %d items, %v", url, len(list.Items), err)
	}
	fasthttp.ReleaseRequest(req)
	fasthttp.ReleaseResponse(resp)
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(url)
		req.Header.Set("Authorization", auth)
		var mine []time.Duration
		for pb.Next() {
			start := time.Now()
			if err := get(req, resp); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}
