package main

import (
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"

	"github.com/greenroom-dev/greenroom/runtime/config"
)

// The configs the harness writes are valid greenroom configs, with what
// the report says about them.
func TestConfigText(t *testing.T) {
	h := &harness{opt: options{instances: 8}, token: "greenbench-" + strings.Repeat("ab", 24), wasm: map[string]string{}}
	// A directory of the test's own: the config's directories are checked
	// against the file system (a file /x left by something else failed it).
	x := t.TempDir()
	for name := range pluginSources {
		h.wasm[name] = x + "/" + name + ".wasm"
	}
	for _, c := range []grConfig{
		{listen: "127.0.0.1:1234", cacheDir: x + "/cache", dataDir: x + "/data", plugins: modules(fivePlugins...), tuned: true},
		{listen: "127.0.0.1:1234", cacheDir: x + "/cache", pg: true, plugins: modules("todo"), tuned: true},
		{listen: "127.0.0.1:1234", cacheDir: x + "/cache", plugins: []plugin{{"hello", "hello"}, {"hello-2", "hello"}}},
		{listen: "127.0.0.1:1234", cacheDir: x + "/cache", plugins: []plugin{{"hello-off", "hello"}}, tuned: true, uninterruptible: true},
	} {
		text := h.configText(c)
		env := func(k string) (string, bool) {
			if k == "GREENBENCH_DATABASE_URL" {
				return "postgres://postgres@127.0.0.1:5432/x?sslmode=disable", true
			}
			return "", false
		}
		cfg, err := config.Read([]config.Source{{Name: "bench.toml", Data: []byte(text)}}, env)
		if err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		if cfg.Log.AccessLog || cfg.Log.Level != "warn" {
			t.Errorf("access log %v, level %s: both servers run without an access log, at warn", cfg.Log.AccessLog, cfg.Log.Level)
		}
		if tok := cfg.Auth.Tokens["bench"]; tok == nil || tok.Token != h.token || !tok.Admin {
			t.Errorf("token %+v", tok)
		}
		if len(cfg.Plugins) != len(c.plugins) {
			t.Errorf("%d plugins, want %d", len(cfg.Plugins), len(c.plugins))
		}
		for _, p := range c.plugins {
			pc := cfg.Plugins[p.id]
			if pc == nil {
				t.Fatalf("no plugin %s", p.id)
			}
			if pc.Path != h.wasm[p.module] {
				t.Errorf("%s: path %s", p.id, pc.Path)
			}
			if c.tuned && pc.Limits.Instances != 8 {
				t.Errorf("%s: instances %d", p.id, pc.Limits.Instances)
			}
			if pc.Limits.Interruptible == c.uninterruptible {
				t.Errorf("%s: interruptible %v", p.id, pc.Limits.Interruptible)
			}
			if db := p.module == "todo" || p.module == "docs"; pc.Capabilities.Database != db {
				t.Errorf("%s: database granted %v", p.id, pc.Capabilities.Database)
			}
		}
		if c.pg && cfg.Database.Client != "pg" {
			t.Errorf("database %+v", cfg.Database)
		}
	}
}

// The native server's routes answer what the plugins answer.
func TestNativeRoutes(t *testing.T) {
	dir := t.TempDir()
	sdb, err := sql.Open("sqlite", filepath.Join(dir, "todo.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	// plugins/todo's migrations, in order, as greenroom applies them.
	ups, err := filepath.Glob("../plugins/todo/migrations/*.up.sql")
	if err != nil || len(ups) == 0 {
		t.Fatalf("plugins/todo's migrations: %v %v", ups, err)
	}
	for _, up := range ups {
		migration, err := os.ReadFile(up)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sdb.Exec(string(migration)); err != nil {
			t.Fatalf("%s: %v", up, err)
		}
	}
	now := time.Now().UTC()
	for i := 1; i <= 3; i++ {
		if _, err := sdb.Exec("INSERT INTO items (id, title, done, created_at, updated_at) VALUES (?, ?, ?, ?, ?)", i, "item", false, now, now); err != nil {
			t.Fatal(err)
		}
	}
	logPath := filepath.Join(dir, "route.log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	log := logrus.New()
	log.SetOutput(lf)
	log.SetLevel(logrus.WarnLevel)
	log.SetFormatter(&logrus.JSONFormatter{})
	doc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "the document") }))
	defer doc.Close()
	app := nativeApp(bun.NewDB(sdb, sqlitedialect.New()), log)

	do := func(method, path, body string) (int, string) {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := app.Test(req, 10000)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if s, b := do("GET", "/api/hello/ping", ""); s != 200 || b != `{"ok":true}` {
		t.Errorf("ping: %d %s", s, b)
	}
	if s, b := do("POST", "/api/hello/echo", "sixteen KiB"); s != 200 || b != "sixteen KiB" {
		t.Errorf("echo: %d %s", s, b)
	}
	s, b := do("GET", "/api/todo/items", "")
	var list struct{ Items []item }
	if err := json.Unmarshal([]byte(b), &list); s != 200 || err != nil || len(list.Items) != 3 || list.Items[0].CreatedAt.IsZero() {
		t.Errorf("todo: %d %s %v", s, b, err)
	}
	var fields struct{ Items []map[string]json.RawMessage }
	if err := json.Unmarshal([]byte(b), &fields); err != nil || sameItemFields(fields.Items) != nil {
		t.Errorf("todo items do not have plugins/todo's fields: %s (%v)", b, sameItemFields(fields.Items))
	}
	if s, b := do("GET", "/api/logline/log", ""); s != 200 || b != `{"ok":true}` {
		t.Errorf("log: %d %s", s, b)
	}
	if line, _ := os.ReadFile(logPath); !strings.Contains(string(line), `"msg":"handled"`) || !strings.Contains(string(line), `"plugin":"logline"`) {
		t.Errorf("log line %s", line)
	}
	if s, b := do("GET", "/api/readurl/read?url="+url.QueryEscape(doc.URL+"/doc"), ""); s != 200 || b != "the document" {
		t.Errorf("read: %d %s", s, b)
	}
	if s, _ := do("GET", "/api/readurl/read?url="+url.QueryEscape("http://127.0.0.1:1/"), ""); s != http.StatusBadGateway {
		t.Errorf("failed read: %d", s)
	}
}

func TestHundredItemsWantsTheSameFields(t *testing.T) {
	list := func(item string) []byte {
		return []byte(`{"items":[` + strings.TrimSuffix(strings.Repeat(item+",", 100), ",") + `]}`)
	}
	const full = `{"id":1,"title":"t","done":false,"created_at":"2026-11-29T23:16:35Z","updated_at":"2026-11-29T23:16:35Z","done_at":null}`
	if err := hundredItems(list(full)); err != nil {
		t.Errorf("plugins/todo's item refused: %v", err)
	}
	// The native handler once left done_at out: less work than the plugin.
	if err := hundredItems(list(`{"id":1,"title":"t","done":false,"created_at":"2026-11-29T23:16:35Z","updated_at":"2026-11-29T23:16:35Z"}`)); err == nil || !strings.Contains(err.Error(), "done_at") {
		t.Errorf("an item without done_at passed: %v", err)
	}
	if err := hundredItems([]byte(`{"items":[` + full + `]}`)); err == nil {
		t.Error("one item passed for a hundred")
	}
}
