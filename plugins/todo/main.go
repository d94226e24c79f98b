// Command todo is greenroom's example plugin with a database: a small REST
// API over todo items, in its own isolated database, with its own
// migrations.
//
//	GET    /items[?done=true|false]   list items, oldest first (at most 1000)
//	POST   /items                     create: {"title": "...", "done": false}
//	GET    /items/{id}                one item
//	PATCH  /items/{id}                change title and/or done
//	DELETE /items/{id}                delete
//
// Bad input gets 400 with {"error": "..."}; an unknown id gets 404.
// The operator grants the database: [plugins.todo.capabilities] database = true.
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
	greenroom.Handle(newMux())
}

func main() {}

// Item is one todo item as the API shows it.
type Item struct {
	ID        int64     `json:"id"`
	Title     string    `json:"title"`
	Done      bool      `json:"done"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
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
	mux.HandleFunc("DELETE /items/{id}", remove)
	return mux
}

func list(w http.ResponseWriter, r *http.Request) {
	q := "SELECT id, title, done, created_at, updated_at FROM items"
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
		if err := rows.Scan(&it.ID, &it.Title, &it.Done, &it.CreatedAt, &it.UpdatedAt); err != nil {
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
	_, err := greenroom.DB().ExecContext(r.Context(),
		"INSERT INTO items (id, title, done, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
		it.ID, it.Title, it.Done, it.CreatedAt, it.UpdatedAt)
	if err != nil {
		dbFail(w, err)
		return
	}
	w.Header().Set("Location", fmt.Sprintf("/api/todo/items/%d", it.ID))
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
	err := q.QueryRowContext(r.Context(), "SELECT id, title, done, created_at, updated_at FROM items WHERE id = ?", id).
		Scan(&it.ID, &it.Title, &it.Done, &it.CreatedAt, &it.UpdatedAt)
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
	// Read and write in one transaction, so concurrent updates of one item
	// do not lose each other's fields.
	tx, err := greenroom.DB().BeginTx(r.Context(), nil)
	if err != nil {
		dbFail(w, err)
		return
	}
	defer tx.Rollback()
	it, err := load(r, tx, id)
	if errors.Is(err, sql.ErrNoRows) {
		fail(w, http.StatusNotFound, "no item %d", id)
		return
	}
	if err != nil {
		dbFail(w, err)
		return
	}
	if in.Title != nil {
		it.Title = *in.Title
	}
	if in.Done != nil {
		it.Done = *in.Done
	}
	it.UpdatedAt = time.Now().UTC().Truncate(time.Microsecond)
	if _, err := tx.ExecContext(r.Context(), "UPDATE items SET title = ?, done = ?, updated_at = ? WHERE id = ?", it.Title, it.Done, it.UpdatedAt, id); err != nil {
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
