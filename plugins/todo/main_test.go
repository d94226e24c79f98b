//go:build !wasip1

// These tests run the handlers natively (greenroom.SetDB, SetConfig, ...:
// the SDK's native-only helpers), not in the wasm build.

package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // a real database for the handlers, natively

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

// The handlers run natively against a SQLite file with the plugin's own
// migrations applied (greenroom.SetDB); the runtime's tests drive the
// built plugin over HTTP.
func TestItemsCRUD(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "todo.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := greenroom.SetDB(db); err != nil {
		t.Fatal(err)
	}
	defer greenroom.SetDB(nil)
	h := greenroom.Handler()
	do := func(method, path, body string) (int, map[string]any) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		var m map[string]any
		json.Unmarshal(rec.Body.Bytes(), &m)
		return rec.Code, m
	}
	code, item := do("POST", "/items", `{"title":"write docs"}`)
	if code != http.StatusCreated || item["title"] != "write docs" || item["done"] != false {
		t.Fatalf("create: %d %v", code, item)
	}
	id := fmt.Sprint(int64(item["id"].(float64)))
	if code, got := do("PATCH", "/items/"+id, `{"done":true}`); code != 200 || got["done"] != true || got["title"] != "write docs" {
		t.Errorf("update: %d %v", code, got)
	}
	if code, got := do("PUT", "/items/"+id, `{"title":"write more docs","done":true}`); code != 200 || got["done"] != true || got["title"] != "write more docs" {
		t.Errorf("update with PUT: %d %v", code, got)
	}
	if code, got := do("GET", "/items?done=true", ""); code != 200 || len(got["items"].([]any)) != 1 {
		t.Errorf("list done: %d %v", code, got)
	}
	if code, got := do("GET", "/items?done=false", ""); code != 200 || len(got["items"].([]any)) != 0 {
		t.Errorf("list not done: %d %v", code, got)
	}
	// The mux's own answers are JSON errors too.
	for _, c := range []struct {
		method, path string
		code         int
	}{{"POST", "/items/" + id, 405}, {"DELETE", "/items", 405}, {"GET", "/items/", 404}, {"GET", "/nothing", 404}} {
		if code, got := do(c.method, c.path, ""); code != c.code || got["error"] == nil {
			t.Errorf("%s %s: %d %v, want %d with a JSON error", c.method, c.path, code, got, c.code)
		}
	}
	for _, bad := range []struct{ method, path, body string }{
		{"POST", "/items", `{"title":""}`},
		{"POST", "/items", `{"done":true}`},
		{"POST", "/items", `{"title":"x","extra":1}`},
		{"POST", "/items", `not json`},
		{"POST", "/items", `{"title":"` + strings.Repeat("x", 501) + `"}`},
		{"PATCH", "/items/" + id, `{}`},
		{"PUT", "/items/" + id, `{"title":""}`},
		{"PATCH", "/items/abc", `{"done":true}`},
		{"GET", "/items?done=maybe", ""},
	} {
		if code, got := do(bad.method, bad.path, bad.body); code != http.StatusBadRequest || got["error"] == "" {
			t.Errorf("%s %s %s: %d %v, want 400 with an error", bad.method, bad.path, bad.body, code, got)
		}
	}
	if code, _ := do("DELETE", "/items/"+id, ""); code != http.StatusNoContent {
		t.Errorf("delete: %d", code)
	}
	if code, _ := do("GET", "/items/"+id, ""); code != http.StatusNotFound {
		t.Errorf("get deleted: %d", code)
	}
	if code, _ := do("DELETE", "/items/"+id, ""); code != http.StatusNotFound {
		t.Errorf("delete again: %d", code)
	}
}

// purge-done deletes the items done more than done_retention ago, and
// nothing else.
func TestPurgeDone(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "todo.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := greenroom.SetDB(db); err != nil {
		t.Fatal(err)
	}
	defer greenroom.SetDB(nil)
	greenroom.SetConfig(map[string]string{"done_retention": "24h"})
	defer greenroom.SetConfig(nil)
	h := greenroom.Handler()
	create := func(body string) string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/items", strings.NewReader(body)))
		var m map[string]any
		json.Unmarshal(rec.Body.Bytes(), &m)
		if rec.Code != http.StatusCreated {
			t.Fatalf("create: %d %s", rec.Code, rec.Body)
		}
		return fmt.Sprint(int64(m["id"].(float64)))
	}
	old, recent, open := create(`{"title":"old","done":true}`), create(`{"title":"recent"}`), create(`{"title":"open"}`)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("PATCH", "/items/"+recent, strings.NewReader(`{"done":true}`)))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"done_at":"`) {
		t.Fatalf("mark done: %d %s", rec.Code, rec.Body)
	}
	if _, err := db.Exec("UPDATE items SET done_at = ? WHERE id = ?", time.Now().UTC().Add(-48*time.Hour), old); err != nil {
		t.Fatal(err)
	}

	tasks := greenroom.ScheduledTasks()
	if len(tasks) != 1 || tasks[0].ID != "purge-done" || tasks[0].Scope != greenroom.Global || tasks[0].Every != 10*time.Minute {
		t.Fatalf("scheduled: %+v", tasks)
	}
	if err := greenroom.RunTask(context.Background(), "purge-done"); err != nil {
		t.Fatal(err)
	}
	var left []string
	rows, err := db.Query("SELECT title FROM items ORDER BY title")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		left = append(left, s)
	}
	rows.Close()
	if strings.Join(left, ",") != "open,recent" {
		t.Errorf("after the purge: %v (open=%s)", left, open)
	}

	greenroom.SetConfig(map[string]string{"done_retention": "forever"})
	if err := greenroom.RunTask(context.Background(), "purge-done"); err == nil || !strings.Contains(err.Error(), "done_retention") {
		t.Errorf("bad retention: %v", err)
	}
}
