package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	"github.com/sirupsen/logrus"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	_ "modernc.org/sqlite" // registers "sqlite"
)

// nativePGEnv carries the native server's PostgreSQL URL (not an argument,
// so that a password in it does not show in the process list).
const nativePGEnv = "GREENBENCH_NATIVE_PG"

// item is a row of plugins/todo's items table (plugins/todo/migrations).
type item struct {
	bun.BaseModel `bun:"table:items"`
	ID            int64     `bun:"id,pk" json:"id"`
	Title         string    `bun:"title" json:"title"`
	Done          bool      `bun:"done" json:"done"`
	CreatedAt     time.Time `bun:"created_at" json:"created_at"`
	UpdatedAt     time.Time `bun:"updated_at" json:"updated_at"`
	// DoneAt is plugins/todo's Item.DoneAt: the same column and field.
	DoneAt *time.Time `bun:"done_at" json:"done_at"`
}

// runNative is `greenbench native`: the comparison server, the plugins'
// handlers written natively with Fiber (and bun, logrus, net/http), on the
// same paths as under greenroom. It takes no credential: the harness sends
// the same Authorization header to both servers, and only greenroom checks
// it.
func runNative(args []string) error {
	fs := flag.NewFlagSet("native", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on")
	sqlitePath := fs.String("sqlite", "", "plugins/todo's SQLite file, as greenroom keeps it")
	logPath := fs.String("log", os.DevNull, "file the log route writes to")
	dbConns := fs.Int("db-conns", 4, "database connections (plugins/todo's limits.db_max_conns)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var db *bun.DB
	switch pg := os.Getenv(nativePGEnv); {
	case pg != "" && *sqlitePath != "":
		return errors.New("native: -sqlite and " + nativePGEnv + " both set")
	case pg != "":
		sdb, err := sql.Open("pgx", pg)
		if err != nil {
			return err
		}
		db = bun.NewDB(sdb, pgdialect.New())
	case *sqlitePath != "":
		// The DSN greenroom opens plugin databases with
		// (runtime/database/sqlite.go), minus the sandbox's own settings.
		sdb, err := sql.Open("sqlite", "file:"+*sqlitePath+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_txlock=immediate&_time_format=sqlite")
		if err != nil {
			return err
		}
		db = bun.NewDB(sdb, sqlitedialect.New())
	}
	if db != nil {
		defer db.Close()
		db.SetMaxOpenConns(*dbConns)
		db.SetMaxIdleConns(*dbConns)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("native: database: %w", err)
		}
	}
	logFile, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	// As greenroom's [log] format = "json", level = "warn".
	log := logrus.New()
	log.SetOutput(logFile)
	log.SetLevel(logrus.WarnLevel)
	log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: "2006-01-02T15:04:05.000Z07:00"})

	app := nativeApp(db, log)
	errc := make(chan error, 1)
	go func() { errc <- app.Listen(*listen) }()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errc:
		return err
	case <-sigs:
		return app.ShutdownWithTimeout(10 * time.Second)
	}
}

// nativeApp has the routes; db may be nil (no database routes then).
func nativeApp(db *bun.DB, log *logrus.Logger) *fiber.App {
	// greenroom's server settings with the default config
	// (runtime/server/server.go): 4 MiB bodies, 30s read and write
	// timeouts, 2m idle.
	app := fiber.New(fiber.Config{
		BodyLimit:             4 << 20,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           2 * time.Minute,
		DisableStartupMessage: true,
	})
	app.Get("/.native/ready", func(c *fiber.Ctx) error { return c.SendString("ready") })
	// plugins/hello
	app.Get("/api/hello/ping", func(c *fiber.Ctx) error {
		c.Set("Content-Type", "application/json")
		return c.SendString(`{"ok":true}`)
	})
	app.Post("/api/hello/echo", func(c *fiber.Ctx) error {
		if ct := c.Get("Content-Type"); ct != "" {
			c.Set("Content-Type", ct)
		}
		return c.Send(c.Body())
	})
	// plugins/todo's GET /items: the same query, with bun.
	app.Get("/api/todo/items", func(c *fiber.Ctx) error {
		if db == nil {
			return c.Status(http.StatusNotFound).SendString("no database")
		}
		items := []item{}
		if err := db.NewSelect().Model(&items).Order("created_at", "id").Limit(1000).Scan(c.UserContext()); err != nil {
			return err
		}
		return c.JSON(fiber.Map{"items": items})
	})
	// bench/plugins/logline: one warn line with the fields greenroom adds
	// to a plugin's line (plugin, request_id) and the plugin's own.
	var n atomic.Int64
	app.Get("/api/logline/log", func(c *fiber.Ctx) error {
		log.WithFields(logrus.Fields{"plugin": "logline", "request_id": strconv.FormatInt(n.Add(1), 10), "user": "jane", "n": 1}).Warn("handled")
		c.Set("Content-Type", "application/json")
		return c.SendString(`{"ok":true}`)
	})
	// bench/plugins/readurl: GET the url parameter with net/http, keeping
	// as many idle connections per host as greenroom's URL reader (32).
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 32, IdleConnTimeout: 90 * time.Second}}
	app.Get("/api/readurl/read", func(c *fiber.Ctx) error {
		req, err := http.NewRequestWithContext(c.UserContext(), "GET", c.Query("url"), nil)
		if err != nil {
			return c.Status(http.StatusBadGateway).SendString(err.Error())
		}
		resp, err := client.Do(req)
		if err != nil {
			return c.Status(http.StatusBadGateway).SendString(err.Error())
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		if err != nil || resp.StatusCode/100 != 2 {
			return c.Status(http.StatusBadGateway).SendString(strings.TrimSpace(fmt.Sprint(resp.Status, " ", err)))
		}
		c.Set("Content-Type", "text/plain; charset=utf-8")
		return c.Send(body)
	})
	return app
}
