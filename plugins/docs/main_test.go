//go:build !wasip1

// These tests run the handlers natively (greenroom.SetDB, SetConfig, ...:
// the SDK's native-only helpers), not in the wasm build.

package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
	_ "modernc.org/sqlite"
)

// The plugin's handlers run natively: ReadURL goes to a local test server
// through greenroom.SetURLTransport.
func TestLatestAndHistory(t *testing.T) {
	var hits, notModified atomic.Int64
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if down.Load() {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "text/markdown")
		io.WriteString(w, "# Backstage")
	}))
	defer srv.Close()
	greenroom.SetURLTransport(srv.Client().Transport)
	defer greenroom.SetURLTransport(nil)
	greenroom.SetConfig(map[string]string{"url": srv.URL + "/README.md", "max_age": "1m"})

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a := newApp(freshStore(t), func() time.Time { return now })
	h := a.routes()
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec
	}

	rec := get("/latest")
	if rec.Code != 200 || rec.Body.String() != "# Backstage" || rec.Header().Get("ETag") != `"v1"` || rec.Header().Get("Content-Type") != "text/markdown" {
		t.Fatalf("first /latest: %d %q %v", rec.Code, rec.Body, rec.Header())
	}
	get("/latest") // within max_age: served from the store
	if hits.Load() != 1 {
		t.Errorf("%d fetches within max_age", hits.Load())
	}
	now = now.Add(2 * time.Minute) // past max_age: a conditional fetch
	if rec := get("/latest"); rec.Code != 200 || rec.Body.String() != "# Backstage" {
		t.Errorf("after 304: %d %q", rec.Code, rec.Body)
	}
	if rec := get("/latest?refresh=1"); rec.Code != 200 || notModified.Load() != 2 {
		t.Errorf("refresh: %d, %d not-modified answers", rec.Code, notModified.Load())
	}
	down.Store(true)
	rec = get("/latest?refresh=1")
	if rec.Code != 200 || rec.Body.String() != "# Backstage" || !strings.Contains(rec.Header().Get("X-Docs-Stale"), "HTTP 503") {
		t.Errorf("stale copy while the source fails: %d %q %v", rec.Code, rec.Body, rec.Header())
	}

	rec = get("/history?limit=10")
	var hist struct {
		URL     string
		Fetches []Fetch
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &hist); err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, f := range hist.Fetches {
		outcomes = append(outcomes, f.Outcome)
	}
	if got := strings.Join(outcomes, ","); got != "error,not_modified,not_modified,fetched" {
		t.Errorf("history = %s", got)
	}
	if hist.Fetches[0].Status != 503 || hist.Fetches[3].Bytes != len("# Backstage") || hist.URL != srv.URL+"/README.md" {
		t.Errorf("history = %+v", hist)
	}
	if rec := get("/history?limit=0"); rec.Code != 400 {
		t.Errorf("limit 0: %d", rec.Code)
	}

	// No copy and a failing source: 502 with the reason.
	fresh := newApp(freshStore(t), time.Now).routes()
	rec = httptest.NewRecorder()
	fresh.ServeHTTP(rec, httptest.NewRequest("GET", "/latest", nil))
	if rec.Code != 502 || !strings.Contains(rec.Body.String(), "503") {
		t.Errorf("no copy, source down: %d %q", rec.Code, rec.Body)
	}
}

func TestHistoryIsBounded(t *testing.T) {
	s := freshStore(t)
	for i := 0; i < maxHistory+10; i++ {
		s.AddFetch(t.Context(), Fetch{Bytes: i, At: time.Unix(int64(1000+i), 0)})
	}
	all, _ := s.History(t.Context(), 1000)
	if len(all) != maxHistory || all[0].Bytes != maxHistory+9 {
		t.Errorf("history of %d, newest %d", len(all), all[0].Bytes)
	}
}

func TestMissingURL(t *testing.T) {
	greenroom.SetConfig(nil)
	rec := httptest.NewRecorder()
	newApp(freshStore(t), time.Now).routes().ServeHTTP(rec, httptest.NewRequest("GET", "/latest", nil))
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), "config key url is not set") {
		t.Errorf("%d %q", rec.Code, rec.Body)
	}
}

// freshStore gives a test its own database (SQLite, with the plugin's
// migrations applied, as the runtime would) behind the plugin's Store.
func freshStore(t *testing.T) Store {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "docs.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { greenroom.SetDB(nil); db.Close() })
	if err := greenroom.SetDB(db); err != nil {
		t.Fatal(err)
	}
	return newStore()
}

// The refresh task fetches conditionally and records the attempt.
func TestRefreshTask(t *testing.T) {
	var hits int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		w.Header().Set("ETag", `"r1"`)
		if r.Header.Get("If-None-Match") == `"r1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Write([]byte("doc"))
	}))
	defer srv.Close()
	greenroom.SetConfig(map[string]string{"url": srv.URL + "/doc"})
	defer greenroom.SetConfig(nil)
	a := newApp(freshStore(t), time.Now)
	for i := 0; i < 2; i++ {
		if err := a.refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	hist, _ := a.store.History(t.Context(), 10)
	if hits != 2 || len(hist) != 2 || hist[0].Outcome != "not_modified" || hist[1].Outcome != "fetched" {
		t.Errorf("hits %d, history %+v", hits, hist)
	}
	cur, _ := a.store.Latest(t.Context())
	if cur == nil || string(cur.Body) != "doc" {
		t.Errorf("copy = %+v", cur)
	}
}

// A document larger than the plugin keeps is refused (recorded as an
// error) and the copy there is keeps serving; a source slower than the
// request's time leaves the copy served, stale, rather than a 504.
func TestOversizeAndSlowSource(t *testing.T) {
	var mode atomic.Int64 // 0: small, 1: too large, 2: slow
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case 1:
			w.Write(make([]byte, maxCopy+1))
		case 2:
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		default:
			io.WriteString(w, "small")
		}
	}))
	defer srv.Close()
	greenroom.SetURLTransport(srv.Client().Transport)
	defer greenroom.SetURLTransport(nil)
	greenroom.SetConfig(map[string]string{"url": srv.URL + "/doc"})
	defer greenroom.SetConfig(nil)
	h := newApp(freshStore(t), time.Now).routes()
	get := func(ctx context.Context) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/latest?refresh=1", nil).WithContext(ctx))
		return rec
	}
	if rec := get(context.Background()); rec.Code != 200 || rec.Body.String() != "small" {
		t.Fatalf("first: %d %q", rec.Code, rec.Body)
	}
	mode.Store(1)
	rec := get(context.Background())
	if rec.Code != 200 || rec.Body.String() != "small" || !strings.Contains(rec.Header().Get("X-Docs-Stale"), "more than the") {
		t.Errorf("too large: %d %d bytes %v", rec.Code, rec.Body.Len(), rec.Header())
	}
	mode.Store(2)
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	rec = get(ctx)
	if rec.Code != 200 || rec.Body.String() != "small" || rec.Header().Get("X-Docs-Stale") == "" {
		t.Errorf("slow source: %d, %d bytes, %v", rec.Code, rec.Body.Len(), rec.Header())
	}
}

// A credential the operator put in the configured url (user info, a
// query) is not shown to clients: not in X-Docs-Source, the stale reason,
// the 502's error, nor the history, whose url and errors quote it. A url
// with user info is refused by the URL reader (natively too, as in the
// runtime), and its refusal shows it no more.
func TestConfiguredURLCredentialNotShown(t *testing.T) {
	up := atomic.Bool{}
	up.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("token") != "s3cret" {
			http.Error(w, "no token", http.StatusForbidden)
			return
		}
		io.WriteString(w, "# doc")
	}))
	greenroom.SetURLTransport(srv.Client().Transport)
	defer greenroom.SetURLTransport(nil)
	url := srv.URL + "/doc?token=s3cret"
	greenroom.SetConfig(map[string]string{"url": url, "max_age": "1m"})
	defer greenroom.SetConfig(nil)
	shown := srv.URL + "/doc?…"

	h := newApp(freshStore(t), time.Now).routes()
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec
	}
	leaks := func(what, s string) {
		t.Helper()
		for _, secret := range []string{"s3cret", "pa55word", "bob"} {
			if strings.Contains(s, secret) {
				t.Errorf("%s shows %q: %s", what, secret, s)
			}
		}
	}
	rec := get("/latest")
	if rec.Code != 200 || rec.Header().Get("X-Docs-Source") != shown {
		t.Fatalf("/latest: %d %q, X-Docs-Source %q, want %q", rec.Code, rec.Body, rec.Header().Get("X-Docs-Source"), shown)
	}
	srv.Close() // the source is gone: fetches fail with errors quoting the url
	rec = get("/latest?refresh=1")
	if rec.Code != 200 || rec.Header().Get("X-Docs-Stale") == "" {
		t.Fatalf("stale /latest: %d %v", rec.Code, rec.Header())
	}
	leaks("X-Docs-Stale", rec.Header().Get("X-Docs-Stale"))
	leaks("X-Docs-Source", rec.Header().Get("X-Docs-Source"))
	rec = get("/history")
	leaks("/history", rec.Body.String())
	if !strings.Contains(rec.Body.String(), `"url":"`+shown+`"`) {
		t.Errorf("/history does not show the url as %q: %s", shown, rec.Body)
	}
	fresh := newApp(freshStore(t), time.Now).routes()
	rec = httptest.NewRecorder()
	fresh.ServeHTTP(rec, httptest.NewRequest("GET", "/latest", nil))
	if rec.Code != 502 {
		t.Errorf("no copy, source gone: %d %q", rec.Code, rec.Body)
	}
	leaks("the 502", rec.Body.String())

	greenroom.SetConfig(map[string]string{"url": strings.Replace(url, "http://", "http://bob:pa55word@", 1), "max_age": "1m"})
	withUser := newApp(freshStore(t), time.Now).routes()
	rec = httptest.NewRecorder()
	withUser.ServeHTTP(rec, httptest.NewRequest("GET", "/latest", nil))
	if rec.Code != 502 || !strings.Contains(rec.Body.String(), "credentials in the URL are refused") {
		t.Errorf("url with user info: %d %q, want 502 and the URL reader's refusal", rec.Code, rec.Body)
	}
	leaks("the 502 of a url with user info", rec.Body.String())
	leaks("X-Docs-Source of a url with user info", rec.Header().Get("X-Docs-Source"))
	rec = httptest.NewRecorder()
	withUser.ServeHTTP(rec, httptest.NewRequest("GET", "/history", nil))
	leaks("/history of a url with user info", rec.Body.String())
}
