package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

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
	if code, got := do("GET", "/items?done=true", ""); code != 200 || len(got["items"].([]any)) != 1 {
		t.Errorf("list done: %d %v", code, got)
	}
	if code, got := do("GET", "/items?done=false", ""); code != 200 || len(got["items"].([]any)) != 0 {
		t.Errorf("list not done: %d %v", code, got)
	}
	for _, bad := range []struct{ method, path, body string }{
		{"POST", "/items", `{"title":""}`},
		{"POST", "/items", `{"done":true}`},
		{"POST", "/items", `{"title":"x","extra":1}`},
		{"POST", "/items", `not json`},
		{"POST", "/items", `{"title":"` + strings.Repeat("x", 501) + `"}`},
		{"PATCH", "/items/" + id, `{}`},
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
