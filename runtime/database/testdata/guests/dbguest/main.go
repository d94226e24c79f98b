// Command dbguest is a test plugin for the database capability: it runs the
// steps a test posts (statements, transactions, sleeps) and answers with
// each step's outcome, so that tests can send any SQL, hostile or not,
// through the real SDK and host functions.
package main

import (
	"context"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

//go:embed migrations
var migrations embed.FS

var initErr string

// kept is the transaction keep_begin keeps across requests; keptErr is
// the error of the Begin that keep_begin_at_end's goroutine ran.
var (
	kept    *sql.Tx
	keptErr error
)

// atEnd is the outcome of the statement exec_at_end's goroutine ran
// outside any transaction once the request's context had ended; nil
// until it has run.
var atEnd *result

func init() {
	// config migrations = NAME picks the set migrations/NAME; none by default.
	if set, ok := greenroom.Config("migrations"); ok {
		sub, _ := fs.Sub(migrations, "migrations/"+set)
		if err := greenroom.Migrations(sub); err != nil {
			initErr = err.Error()
		}
	}
	// config raw_migrations = "count,size,calls" registers count files of
	// size bytes of SQL in each of calls calls of db_migrations.
	if spec, ok := greenroom.Config("raw_migrations"); ok {
		initErr = rawRegister(spec)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /init", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"error": initErr})
	})
	mux.HandleFunc("POST /run", run)
	mux.HandleFunc("GET /parallel", parallel)
	rawRoutes(mux)
	greenroom.Handle(mux)
}

type step struct {
	Op   string `json:"op"` // exec, query, begin, commit, rollback, sleep, spin, cancel_iter, prepare, holders, hold, tx_each, query_loop, keep_begin, keep_begin_at_end, kept_exec, exec_at_end, at_end, kept_commit, kept_rollback, in_use
	SQL  string `json:"sql"`
	Args []any  `json:"args"`
	MS   int    `json:"ms"`
	// TimeoutMS, for exec and query, gives the statement a context with
	// that timeout.
	TimeoutMS int `json:"timeout_ms"`
	// ReadOnly and Isolation apply to begin.
	ReadOnly  bool `json:"read_only"`
	Isolation int  `json:"isolation"`
	// Background runs the step with context.Background(), as db.Exec
	// and db.Begin do, instead of the request's context.
	Background bool `json:"background"`
}

type result struct {
	Error    string   `json:"error,omitempty"`
	Kind     string   `json:"kind,omitempty"`
	Columns  []string `json:"columns,omitempty"`
	Types    []string `json:"types,omitempty"`
	Rows     [][]any  `json:"rows,omitempty"`
	GoTypes  []string `json:"go_types,omitempty"`
	Affected int64    `json:"affected,omitempty"`
	LastID   *int64   `json:"last_id,omitempty"`
	// TxDone: the error is sql.ErrTxDone.
	TxDone bool `json:"tx_done,omitempty"`
	// CtxDeadline: the error is the context's deadline too.
	CtxDeadline bool `json:"ctx_deadline,omitempty"`
	// SQLState is greenroom.SQLState of the error.
	SQLState string `json:"sqlstate,omitempty"`
}

func run(w http.ResponseWriter, r *http.Request) {
	var req struct{ Steps []step }
	d := json.NewDecoder(r.Body)
	d.UseNumber()
	if err := d.Decode(&req); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	db := greenroom.DB()
	ctx := r.Context()
	var tx *sql.Tx
	var held []*sql.Tx // "hold": rolled back when the request ends
	defer func() {
		for _, h := range held {
			h.Rollback()
		}
	}()
	var out []result
	for _, s := range req.Steps {
		var res result
		args := make([]any, len(s.Args))
		for i, a := range s.Args {
			args[i] = argValue(a)
		}
		var err error
		ctx := ctx
		if s.Background {
			ctx = context.Background()
		}
		if s.TimeoutMS > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(s.TimeoutMS)*time.Millisecond)
			defer cancel()
		}
		switch s.Op {
		case "keep_begin":
			// A transaction kept across requests (as a goroutine that
			// outlives its handler would use it).
			kept, err = db.Begin()
		case "keep_begin_at_end":
			// The kept transaction, begun by a goroutine once the
			// request's context has ended: in the SDK's yield at the end
			// of the call (when the call leaves a transaction open),
			// before the runtime rolls back what the call left open.
			// kept is nil until it has run.
			kept, keptErr = nil, nil
			done := ctx.Done()
			go func() {
				<-done
				kept, keptErr = db.Begin()
			}()
		case "exec_at_end":
			// s.SQL, run outside any transaction by a goroutine once the
			// request's context has ended: in the SDK's yield at the end
			// of the call (when the call leaves a transaction open). Its
			// outcome is at_end's.
			atEnd = nil
			done, q, qargs := ctx.Done(), s.SQL, args
			go func() {
				<-done
				var r result
				sr, err := db.Exec(q, qargs...)
				if err == nil {
					r.Affected, _ = sr.RowsAffected()
				} else {
					r.Error, r.Kind = err.Error(), kind(err)
				}
				atEnd = &r
			}()
		case "at_end":
			// exec_at_end's outcome, as this step's.
			if atEnd == nil {
				err = errors.New("the exec_at_end goroutine has not run")
			} else {
				res = *atEnd
			}
		case "kept_exec":
			if kept == nil && keptErr != nil {
				err = keptErr // the kept transaction's Begin failed
			} else if kept == nil {
				err = errors.New("no kept transaction")
			} else {
				var r sql.Result
				if r, err = kept.Exec(s.SQL, args...); err == nil {
					res.Affected, _ = r.RowsAffected()
				}
			}
		case "in_use":
			// The connections the SDK's pool counts in use, in Affected.
			res.Affected = int64(db.Stats().InUse)
		case "kept_commit", "kept_rollback":
			if kept == nil && keptErr != nil {
				err = keptErr // the kept transaction's Begin failed
			} else if kept == nil {
				err = errors.New("no kept transaction")
			} else if s.Op == "kept_commit" {
				err = kept.Commit()
			} else {
				err = kept.Rollback()
			}
		case "begin":
			// s.MS milliseconds of work first, past a short TimeoutMS.
			for start := time.Now(); time.Since(start) < time.Duration(s.MS)*time.Millisecond; {
			}
			tx, err = db.BeginTx(ctx, &sql.TxOptions{ReadOnly: s.ReadOnly, Isolation: sql.IsolationLevel(s.Isolation)})
		case "commit", "rollback":
			switch {
			case tx == nil:
				err = errors.New("no transaction")
			case s.Op == "commit":
				err = tx.Commit()
			default:
				err = tx.Rollback()
			}
		case "hold":
			// s.MS transactions, kept open to the end of the request.
			for range s.MS {
				var h *sql.Tx
				if h, err = db.BeginTx(ctx, &sql.TxOptions{ReadOnly: s.ReadOnly}); err != nil {
					break
				}
				held = append(held, h)
			}
		case "query_loop":
			// s.SQL's rows, with a statement run for each while they are
			// open; Affected counts the rows.
			var rows *sql.Rows
			if rows, err = db.QueryContext(ctx, s.SQL, args...); err == nil {
				for rows.Next() && err == nil {
					res.Affected++
					_, err = db.ExecContext(ctx, "SELECT 1")
				}
				rows.Close()
			}
		case "cancel_iter":
			// s.SQL's rows read after their context was cancelled;
			// Affected counts the rows Next still gave.
			qctx, cancel := context.WithCancel(ctx)
			var rows *sql.Rows
			if rows, err = db.QueryContext(qctx, s.SQL, args...); err == nil {
				cancel()
				for rows.Next() {
					res.Affected++
				}
				err = rows.Err()
				rows.Close()
			}
			cancel()
		case "sleep":
			time.Sleep(time.Duration(s.MS) * time.Millisecond)
		case "spin":
			// s.MS milliseconds of work that never blocks, as a handler
			// computing (or waiting in a host call) does: no timer of
			// the guest's runs meanwhile.
			for start := time.Now(); time.Since(start) < time.Duration(s.MS)*time.Millisecond; {
			}
		case "exec":
			var sr sql.Result
			if tx != nil {
				sr, err = tx.ExecContext(ctx, s.SQL, args...)
			} else {
				sr, err = db.ExecContext(ctx, s.SQL, args...)
			}
			if err == nil {
				res.Affected, _ = sr.RowsAffected()
				if id, e := sr.LastInsertId(); e == nil {
					res.LastID = &id
				}
			}
		case "holders":
			// s.MS goroutines share db: each holds a transaction across
			// a sleep (in the guest, where the others may run), then
			// runs s.SQL in it and rolls back. Affected counts the ones
			// that succeeded; the first error is the step's.
			var wg sync.WaitGroup
			var mu sync.Mutex
			for range s.MS {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tx, gerr := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: s.ReadOnly})
					if gerr == nil {
						time.Sleep(50 * time.Millisecond)
						_, gerr = tx.ExecContext(ctx, s.SQL, args...)
						tx.Rollback()
					}
					mu.Lock()
					defer mu.Unlock()
					if gerr == nil {
						res.Affected++
					} else if err == nil {
						err = gerr
					}
				}()
			}
			wg.Wait()
		case "tx_each":
			// s.MS transactions open together (so each on its own
			// connection), s.SQL queried in each, then all rolled back.
			// Rows has each one's outcome: its rows, or its error;
			// Affected counts the errors.
			txs := make([]*sql.Tx, 0, s.MS)
			for range s.MS {
				var t *sql.Tx
				if t, err = db.BeginTx(ctx, nil); err != nil {
					break
				}
				txs = append(txs, t)
			}
			for _, t := range txs {
				r, qerr := t.QueryContext(ctx, s.SQL, args...)
				var got result
				if qerr == nil {
					got, qerr = readRows(r)
				}
				if qerr != nil {
					res.Affected++
					res.Rows = append(res.Rows, []any{qerr.Error()})
				} else {
					res.Rows = append(res.Rows, []any{fmt.Sprint(got.Rows)})
				}
			}
			for _, t := range txs {
				t.Rollback()
			}
		case "prepare":
			var st *sql.Stmt
			if st, err = db.PrepareContext(ctx, s.SQL); err == nil {
				for i := 0; i < 3 && err == nil; i++ {
					_, err = st.ExecContext(ctx, args...)
				}
				st.Close()
			}
		case "query":
			var rows *sql.Rows
			if tx != nil {
				rows, err = tx.QueryContext(ctx, s.SQL, args...)
			} else {
				rows, err = db.QueryContext(ctx, s.SQL, args...)
			}
			if err == nil {
				res, err = readRows(rows)
			}
		default:
			err = fmt.Errorf("unknown op %q", s.Op)
		}
		if s.Op == "commit" || s.Op == "rollback" {
			tx = nil
		}
		if err != nil {
			res.Error = err.Error()
			res.Kind = kind(err)
			res.CtxDeadline = errors.Is(err, context.DeadlineExceeded)
			res.TxDone = errors.Is(err, sql.ErrTxDone)
			res.SQLState = greenroom.SQLState(err)
		}
		out = append(out, res)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"results": out})
}

func kind(err error) string {
	for name, k := range map[string]error{"denied": greenroom.ErrDenied, "invalid": greenroom.ErrInvalid, "failed": greenroom.ErrFailed,
		"timeout": greenroom.ErrTimeout, "too_large": greenroom.ErrTooLarge, "not_found": greenroom.ErrNotFound} {
		if errors.Is(err, k) {
			return name
		}
	}
	return "other"
}

func readRows(rows *sql.Rows) (result, error) {
	defer rows.Close()
	var res result
	cols, err := rows.ColumnTypes()
	if err != nil {
		return res, err
	}
	for _, c := range cols {
		res.Columns = append(res.Columns, c.Name())
		res.Types = append(res.Types, c.DatabaseTypeName())
	}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return res, err
		}
		row := make([]any, len(vals))
		res.GoTypes = res.GoTypes[:0]
		for i, v := range vals {
			res.GoTypes = append(res.GoTypes, fmt.Sprintf("%T", v))
			switch x := v.(type) {
			case []byte:
				row[i] = map[string]string{"bytes": base64.StdEncoding.EncodeToString(x)}
			case time.Time:
				row[i] = map[string]string{"time": x.Format(time.RFC3339Nano)}
			default:
				row[i] = x
			}
		}
		res.Rows = append(res.Rows, row)
	}
	return res, rows.Err()
}

// argValue turns a JSON argument into a Go value: integers to int64, other
// numbers to float64, {"bytes": base64} to []byte, {"time": RFC3339} to
// time.Time, {"float": "NaN"} (or "+Inf", "-Inf") to float64, {"uint64":
// "18446744073709551615"} to uint64.
func argValue(a any) any {
	switch x := a.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		if b, ok := x["bytes"].(string); ok {
			v, _ := base64.StdEncoding.DecodeString(b)
			return v
		}
		if t, ok := x["time"].(string); ok {
			v, _ := time.Parse(time.RFC3339Nano, t)
			return v
		}
		if f, ok := x["float"].(string); ok { // NaN and the infinities, which JSON cannot hold
			v, _ := strconv.ParseFloat(f, 64)
			return v
		}
		if u, ok := x["uint64"].(string); ok { // a Go uint64, which database/sql converts
			v, _ := strconv.ParseUint(u, 10, 64)
			return v
		}
	}
	return a
}

func main() {}
