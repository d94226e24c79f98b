// Package floor measures the Go-in-wasm floor: the todo list's own Go work
// (100 rows through database/sql, scanned into items and encoded with
// encoding/json, as plugins/todo's GET /items does), run natively and as a
// wasip1 module under a plain wazero runtime, with no greenroom around it.
// The ratio of the two is what compiling a plugin's Go code to wasm costs
// by itself; no runtime can serve a route at a better ratio than that
// work's share allows (docs/benchmarks.md).
//
// The benchmark harness reports it beside the todo scenarios; the Go
// benchmarks in this package measure the same:
//
//	go test -run '^$' -bench . ./bench/floor/
package floor

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Item and nullTime are plugins/todo's, field for field.
type Item struct {
	ID        int64      `json:"id"`
	Title     string     `json:"title"`
	Done      bool       `json:"done"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	DoneAt    *time.Time `json:"done_at"`
}

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

// Rows is how many rows a listing returns: the harness's todo scenarios
// seed 100.
const Rows = 100

// The driver answers every query with the rows the harness seeds through
// plugins/todo's API: "benchmark item NNN", not done, created and updated
// a second apart, done_at NULL. The driver's own work (handing over values
// it already holds) is a small part of a listing; on the real route the
// host runs the query and the SDK's driver decodes its rows.
type fakeDriver struct{}
type fakeConn struct{}
type fakeStmt struct{}
type fakeRows struct{ i int }

var errReadOnly = errors.New("floor: the fake driver only lists")

func (fakeDriver) Open(string) (driver.Conn, error)         { return fakeConn{}, nil }
func (fakeConn) Prepare(string) (driver.Stmt, error)        { return fakeStmt{}, nil }
func (fakeConn) Close() error                               { return nil }
func (fakeConn) Begin() (driver.Tx, error)                  { return nil, errReadOnly }
func (fakeStmt) Close() error                               { return nil }
func (fakeStmt) NumInput() int                              { return -1 }
func (fakeStmt) Exec([]driver.Value) (driver.Result, error) { return nil, errReadOnly }
func (fakeStmt) Query([]driver.Value) (driver.Rows, error)  { return &fakeRows{}, nil }
func (*fakeRows) Close() error                              { return nil }
func (*fakeRows) Columns() []string {
	return []string{"id", "title", "done", "created_at", "updated_at", "done_at"}
}

var (
	seeded = time.Date(2026, 11, 30, 9, 0, 0, 123456000, time.UTC)
	titles = func() []string {
		t := make([]string, Rows)
		for i := range t {
			t[i] = fmt.Sprintf("benchmark item %03d", i)
		}
		return t
	}()
)

func (r *fakeRows) Next(dest []driver.Value) error {
	if r.i == Rows {
		return io.EOF
	}
	at := seeded.Add(time.Duration(r.i) * time.Second)
	dest[0], dest[1], dest[2], dest[3], dest[4], dest[5] = int64(r.i+1), titles[r.i], false, at, at, nil
	r.i++
	return nil
}

var db = func() *sql.DB {
	sql.Register("greenroom-floor", fakeDriver{})
	db, err := sql.Open("greenroom-floor", "")
	if err != nil {
		panic(err)
	}
	return db
}()

const query = "SELECT id, title, done, created_at, updated_at, done_at FROM items ORDER BY created_at, id LIMIT 1000"

// List runs the query and scans its rows, as plugins/todo's list does.
func List() ([]Item, error) {
	rows, err := db.QueryContext(context.Background(), query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	items := []Item{}
	for rows.Next() {
		var it Item
		if err := rows.Scan(&it.ID, &it.Title, &it.Done, &it.CreatedAt, &it.UpdatedAt, nullTime{&it.DoneAt}); err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, rows.Err()
}

var out bytes.Buffer

// Encode writes items as plugins/todo answers them and returns the length.
func Encode(items []Item) (int, error) {
	out.Reset()
	err := json.NewEncoder(&out).Encode(map[string]any{"items": items})
	return out.Len(), err
}

// Work is one listing: List, then Encode. It returns the encoded length.
func Work() (int, error) {
	items, err := List()
	if err != nil {
		return 0, err
	}
	return Encode(items)
}
