// Command todo is greenroom's example plugin with a database: a small REST
// API over todo items, in its own isolated database, with its own
// migrations.
//
//	GET    /items[?done=true|false]   list items, oldest first (at most 1000)
//	POST   /items                     create: {"title": "...", "done": false}
//	GET    /items/{id}                one item
//	PATCH  /items/{id}                change title and/or done
//	PUT    /items/{id}                the same as PATCH
//	DELETE /items/{id}                delete
//
// Bad input gets 400 with {"error": "..."}; an unknown id gets 404.
// The operator grants the database: [plugins.todo.capabilities] database = true.
//
// A global task, purge-done, deletes the items marked done more than
// done_retention ago ([plugins.todo.config] done_retention, a Go duration,
// default 24h), every purge_every (default 10m, from 1s to 366 days; a
// bad value of either fails the load, naming it). It needs scheduler = true
// under [plugins.todo.capabilities]; without it the plugin serves all the
// same and done items stay.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

//go:embed migrations/*.up.sql
var migrations embed.FS

func init() {
	if err := greenroom.Migrations(migrations); err != nil {
		panic(err)
	}
	// Both settings are checked here, so that a bad one fails the load
	// naming its key: purge_every = "0s" failed it naming only the task
	// ("set Cron or Every"), and a done_retention that is not a duration
	// loaded, then failed every run.
	every, err := durationConfig("purge_every", 10*time.Minute, time.Second, 366*24*time.Hour)
	if err != nil {
		panic(err)
	}
	if _, err := durationConfig("done_retention", 24*time.Hour, 0, 0); err != nil {
		panic(err)
	}
	err = greenroom.Schedule(greenroom.Task{
		ID:      purgeTask,
		Every:   every,
		Timeout: time.Minute,
		Scope:   greenroom.Global, // one replica purges, once per period
		Run:     purgeDone,
	})
	if err != nil {
		// Without the scheduler grant the plugin serves all the same.
		fmt.Fprintf(os.Stderr, "todo: done items will not be purged: %v\n", err)
	}
	greenroom.Handle(newMux())
}

// purgeTask is the id of the task that deletes old done items.
const purgeTask = "purge-done"

// durationConfig reads a Go duration from the plugin's config, from lo
// to hi (no upper bound when hi is 0).
func durationConfig(key string, def, lo, hi time.Duration) (time.Duration, error) {
	v, ok := greenroom.Config(key)
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || hi > 0 && d > hi {
		want := fmt.Sprintf("at least %s", lo)
		if hi > 0 {
			want = fmt.Sprintf("from %s to %s", lo, hi)
		}
		return 0, fmt.Errorf("todo: config %s = %q is not a Go duration %s, such as \"24h\"", key, v, want)
	}
	return d, nil
}

// purgeDone deletes the items marked done more than done_retention ago.
func purgeDone(ctx context.Context) error {
	keep, err := durationConfig("done_retention", 24*time.Hour, 0, 0)
	if err != nil {
		return err
	}
	cutoff := time.Now().UTC().Add(-keep).Truncate(time.Microsecond)
	res, err := greenroom.DB().ExecContext(ctx, "DELETE FROM items WHERE done = ? AND COALESCE(done_at, updated_at) <= ?", true, cutoff)
	if err != nil {
		return fmt.Errorf("purge done items: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		fmt.Printf("todo: purged %d items done more than %s ago\n", n, keep)
	}
	return nil
}

func main() {}

// Item is one todo item as the API shows it.
type Item struct {
	ID        int64     `json:"id"`
	Title     string    `json:"title"`
	Done      bool      `json:"done"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// DoneAt is when the item was marked done (null when it is not).
	DoneAt *time.Time `json:"done_at"`
}

const itemColumns = "id, title, done, created_at, updated_at, done_at"

func (it *Item) scanTargets() []any {
	return []any{&it.ID, &it.Title, &it.Done, &it.CreatedAt, &it.UpdatedAt, nullTime{&it.DoneAt}}
}

// nullTime scans a nullable timestamp into a *time.Time (nil for NULL).
type nullTime struct{ p **time.Time }

func (n nullTime) Scan(v any) error {
	var nt sql.NullTime
	if err := nt.Scan(v); err != nil {
		return err
	}
	*n.p = nil
	if nt.Valid {
		t := nt.Time.UTC()
		*n.p = &t
	}
	return nil
}

const (
	maxTitle = 500
	maxList  = 1000
)

func newMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items", list)
	mux.HandleFunc("POST /items", create)
	mux.HandleFunc("GET /items/{id}", get)
	mux.HandleFunc("PATCH /items/{id}", update)
	// PUT updates too, as PATCH does (the fields sent change, the others
	// stay): a client that updates with PUT is not refused.
	mux.HandleFunc("PUT /items/{id}", update)
	mux.HandleFunc("DELETE /items/{id}", remove)
	// Every error is JSON, the mux's own too: a path with no route, or
	// a method its route does not take (these patterns without a method
	// match what the ones above do not).
	mux.HandleFunc("/items", notAllowed("GET, POST"))
	mux.HandleFunc("/items/{id}", notAllowed("GET, PATCH, PUT, DELETE"))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, "no route %s", r.URL.Path)
	})
	return mux
}

// notAllowed answers 405 with the methods a route takes.
func notAllowed(methods string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", methods)
		fail(w, http.StatusMethodNotAllowed, "method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, methods)
	}
}

func list(w http.ResponseWriter, r *http.Request) {
	q := "SELECT " + itemColumns + " FROM items"
	var args []any
	if v := r.URL.Query().Get("done"); v != "" {
		done, err := strconv.ParseBool(v)
		if err != nil {
			fail(w, http.StatusBadRequest, "done must be true or false, got %q", v)
			return
		}
		q += " WHERE done = ?"
		args = append(args, done)
	}
	q += " ORDER BY created_at, id LIMIT " + strconv.Itoa(maxList)
	rows, err := greenroom.DB().QueryContext(r.Context(), q, args...)
	if err != nil {
		dbFail(w, err)
		return
	}
	defer rows.Close()
	items := []Item{}
	for rows.Next() {
		var it Item
		if err := rows.Scan(it.scanTargets()...); err != nil {
			dbFail(w, err)
			return
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		dbFail(w, err)
		return
	}
	reply(w, http.StatusOK, map[string]any{"items": items})
}

// input is a create or update request; nil fields were not sent.
type input struct {
	Title *string `json:"title"`
	Done  *bool   `json:"done"`
}

func decode(w http.ResponseWriter, r *http.Request) (input, bool) {
	var in input
	d := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	d.DisallowUnknownFields()
	if err := d.Decode(&in); err != nil {
		fail(w, http.StatusBadRequest, "body must be a JSON object with title (string) and done (boolean): %v", err)
		return in, false
	}
	if d.More() {
		fail(w, http.StatusBadRequest, "body must hold one JSON object")
		return in, false
	}
	if in.Title != nil {
		t := strings.TrimSpace(*in.Title)
		if t == "" || utf8.RuneCountInString(t) > maxTitle {
			fail(w, http.StatusBadRequest, "title must be 1 to %d characters", maxTitle)
			return in, false
		}
		// PostgreSQL's text cannot hold NUL (SQLite's can): refused on
		// both, so that the two databases answer alike.
		if strings.ContainsRune(t, 0) {
			fail(w, http.StatusBadRequest, "title must not contain the NUL character")
			return in, false
		}
		in.Title = &t
	}
	return in, true
}

func create(w http.ResponseWriter, r *http.Request) {
	in, ok := decode(w, r)
	if !ok {
		return
	}
	if in.Title == nil {
		fail(w, http.StatusBadRequest, "title is required")
		return
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	it := Item{ID: newID(), Title: *in.Title, Done: in.Done != nil && *in.Done, CreatedAt: now, UpdatedAt: now}
	if it.Done {
		it.DoneAt = &now
	}
	_, err := greenroom.DB().ExecContext(r.Context(),
		"INSERT INTO items (id, title, done, created_at, updated_at, done_at) VALUES (?, ?, ?, ?, ?, ?)",
		it.ID, it.Title, it.Done, it.CreatedAt, it.UpdatedAt, timeArg(it.DoneAt))
	if err != nil {
		dbFail(w, err)
		return
	}
	// Relative to the mount: greenroom puts /api/todo in front.
	w.Header().Set("Location", fmt.Sprintf("/items/%d", it.ID))
	reply(w, http.StatusCreated, it)
}

func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		fail(w, http.StatusBadRequest, "item id must be a positive integer, got %q", r.PathValue("id"))
		return 0, false
	}
	return id, true
}

// rowQuerier is a *sql.DB or a *sql.Tx.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func load(r *http.Request, q rowQuerier, id int64) (Item, error) {
	var it Item
	err := q.QueryRowContext(r.Context(), "SELECT "+itemColumns+" FROM items WHERE id = ?", id).Scan(it.scanTargets()...)
	return it, err
}

func get(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	it, err := load(r, greenroom.DB(), id)
	if errors.Is(err, sql.ErrNoRows) {
		fail(w, http.StatusNotFound, "no item %d", id)
		return
	}
	if err != nil {
		dbFail(w, err)
		return
	}
	reply(w, http.StatusOK, it)
}

func update(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	in, ok := decode(w, r)
	if !ok {
		return
	}
	if in.Title == nil && in.Done == nil {
		fail(w, http.StatusBadRequest, "nothing to change: send title and/or done")
		return
	}
	// Read and write in one transaction that first locks the item's row
	// (a no-op UPDATE, which both databases accept), so that concurrent
	// updates of one item wait for each other and do not lose each
	// other's fields: on PostgreSQL a plain SELECT in a READ COMMITTED
	// transaction locks nothing.
	tx, err := greenroom.DB().BeginTx(r.Context(), nil)
	if err != nil {
		dbFail(w, err)
		return
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(r.Context(), "UPDATE items SET id = id WHERE id = ?", id); err != nil {
		dbFail(w, err)
		return
	}
	it, err := load(r, tx, id)
	if errors.Is(err, sql.ErrNoRows) {
		fail(w, http.StatusNotFound, "no item %d", id)
		return
	}
	if err != nil {
		dbFail(w, err)
		return
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	if in.Title != nil {
		it.Title = *in.Title
	}
	if in.Done != nil {
		switch {
		case *in.Done && !it.Done:
			it.DoneAt = &now
		case !*in.Done:
			it.DoneAt = nil
		}
		it.Done = *in.Done
	}
	it.UpdatedAt = now
	if _, err := tx.ExecContext(r.Context(), "UPDATE items SET title = ?, done = ?, updated_at = ?, done_at = ? WHERE id = ?",
		it.Title, it.Done, it.UpdatedAt, timeArg(it.DoneAt), id); err != nil {
		dbFail(w, err)
		return
	}
	if err := tx.Commit(); err != nil {
		dbFail(w, err)
		return
	}
	reply(w, http.StatusOK, it)
}

func remove(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	res, err := greenroom.DB().ExecContext(r.Context(), "DELETE FROM items WHERE id = ?", id)
	if err != nil {
		dbFail(w, err)
		return
	}
	if n, _ := res.RowsAffected(); n == 0 {
		fail(w, http.StatusNotFound, "no item %d", id)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// timeArg is a nullable time as a statement argument.
func timeArg(t *time.Time) any {
	if t == nil {
		return nil
	}
	return *t
}

// newID returns a random id that JavaScript numbers hold exactly (< 2^53).
func newID() int64 {
	var b [8]byte
	rand.Read(b[:])
	return int64(binary.LittleEndian.Uint64(b[:])>>11) | 1
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, format string, args ...any) {
	reply(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}

// dbFail answers 503 when the database is busy or slow and 500 otherwise;
// the details go to the plugin's log, not to the client.
func dbFail(w http.ResponseWriter, err error) {
	fmt.Fprintf(os.Stderr, "todo: database: %v\n", err)
	if errors.Is(err, greenroom.ErrTimeout) {
		fail(w, http.StatusServiceUnavailable, "the database is busy; try again")
		return
	}
	fail(w, http.StatusInternalServerError, "database error")
}
