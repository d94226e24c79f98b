// Command tasks is a test plugin for the scheduler: it schedules the tasks
// its config lists ([[plugins.<id>.config.tasks]]) and each task does what
// its action says, so tests can make tasks succeed, fail, panic, loop or
// sleep through the real SDK and host functions.
package main

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

//go:wasmimport greenroom task_register
func taskRegister(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom result_read
func resultRead(ptr unsafe.Pointer, size uint32) int32

type taskDef struct {
	ID           string `json:"id"`
	Cron         string `json:"cron"`
	Every        string `json:"every"`
	Timeout      string `json:"timeout"`
	InitialDelay string `json:"initial_delay"`
	Scope        string `json:"scope"`
	// Action: ok (default), sleep (ms), loop, panic, trap, error, info,
	// log, db (insert a row into the plugin's database), opentx (insert a
	// row in a transaction and return without ending it), nul (an error
	// whose text holds a NUL byte and invalid UTF-8), long (an error of ms
	// bytes, with the config's secret.value at byte 500), encoded (an
	// error quoting secret.value in base64, as an HTTP Basic header's
	// "user:" + secret, in URL-safe base64 and in hex), cleanup (log
	// "task start", wait ms or until ctx ends; when ctx ends, log "task
	// ctx done" and insert a row "cleanup" into the plugin's database with
	// a context of its own, then return ctx's error), spin (log "task
	// start", then loop as loop does), slowsql (log "task start", then run
	// one SQLite statement counting to ms·1000, returning its error).
	Action string `json:"action"`
	MS     int    `json:"ms"`
}

// initErrors are what Schedule returned during init; /init reports them.
var (
	initErrors []string
	rawCode    int32
	rawMsg     string
)

func dur(s string) time.Duration {
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return d
}

func init() {
	var defs []taskDef
	if v, ok := greenroom.Config("tasks"); ok {
		if err := json.Unmarshal([]byte(v), &defs); err != nil {
			panic(err)
		}
	}
	if v, ok := greenroom.Config("generate"); ok {
		n, _ := strconv.Atoi(v)
		every, _ := greenroom.Config("generate_every")
		act, _ := greenroom.Config("generate_action")
		scope, _ := greenroom.Config("generate_scope")
		ms, _ := greenroom.Config("generate_ms")
		msn, _ := strconv.Atoi(ms)
		for i := 0; i < n; i++ {
			defs = append(defs, taskDef{ID: fmt.Sprintf("g%04d", i), Every: every, Action: act, Scope: scope, MS: msn})
		}
	}
	for _, d := range defs {
		t := greenroom.Task{
			ID: d.ID, Cron: d.Cron, Every: dur(d.Every), Timeout: dur(d.Timeout), InitialDelay: dur(d.InitialDelay),
			Run: action(d),
		}
		switch d.Scope {
		case "local":
			t.Scope = greenroom.Local
		case "bad":
			t.Scope = 7
		}
		if d.Action == "norun" {
			t.Run = nil
		}
		if err := greenroom.Schedule(t); err != nil {
			initErrors = append(initErrors, err.Error())
			if strict, _ := greenroom.Config("strict"); strict == "true" {
				panic(err)
			}
		}
	}
	if raw, ok := greenroom.Config("raw"); ok {
		rawCode, rawMsg = rawRegister(raw)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /init", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"errors": initErrors, "raw_code": rawCode, "raw_msg": rawMsg})
	})
	mux.HandleFunc("GET /raw", func(w http.ResponseWriter, r *http.Request) {
		code, msg := rawRegister(r.URL.Query().Get("case"))
		json.NewEncoder(w).Encode(map[string]any{"code": code, "msg": msg})
	})
	mux.HandleFunc("GET /rows", func(w http.ResponseWriter, r *http.Request) {
		var n int
		err := greenroom.DB().QueryRowContext(r.Context(), "SELECT count(*) FROM marks").Scan(&n)
		json.NewEncoder(w).Encode(map[string]any{"rows": n, "error": fmt.Sprint(err)})
	})
	greenroom.Handle(mux)
}

// rawRegister calls task_register directly with hostile input.
func rawRegister(c string) (int32, string) {
	var code int32
	switch c {
	case "badptr":
		code = taskRegister(unsafe.Pointer(uintptr(0xfffffff0)), 4096)
	case "garbage":
		b := []byte{1, 2, 3}
		code = taskRegister(unsafe.Pointer(&b[0]), uint32(len(b)))
	case "huge-id":
		// An id length far past the buffer.
		b := []byte{0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0}
		code = taskRegister(unsafe.Pointer(&b[0]), uint32(len(b)))
	case "valid":
		// A well-formed registration of "raw" every 1s.
		b := []byte{3, 0, 0, 0, 'r', 'a', 'w', 0, 0, 0, 0}
		b = append(b, 0, 0xca, 0x9a, 0x3b, 0, 0, 0, 0) // every = 1e9 ns
		b = append(b, make([]byte, 16)...)
		b = append(b, 0)
		code = taskRegister(unsafe.Pointer(&b[0]), uint32(len(b)))
	default:
		return 0, "unknown case"
	}
	if code >= 0 {
		return code, ""
	}
	buf := make([]byte, 1024)
	n := resultRead(unsafe.Pointer(&buf[0]), uint32(len(buf)))
	return code, string(buf[:max(n, 0)])
}

var sink int

// leaked keeps the transactions opentx leaves open.
var leaked []*sql.Tx

func action(d taskDef) func(context.Context) error {
	return func(ctx context.Context) error {
		switch d.Action {
		case "sleep":
			select {
			case <-time.After(time.Duration(d.MS) * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		case "cleanup":
			log := greenroom.Logger()
			log.Info("task start")
			select {
			case <-time.After(time.Duration(d.MS) * time.Millisecond):
				return nil
			case <-ctx.Done():
			}
			log.Info("task ctx done", "err", ctx.Err().Error())
			bg := context.Background()
			if _, err := greenroom.DB().ExecContext(bg, "CREATE TABLE IF NOT EXISTS marks (at TEXT)"); err != nil {
				return err
			}
			if _, err := greenroom.DB().ExecContext(bg, "INSERT INTO marks (at) VALUES ('cleanup')"); err != nil {
				return err
			}
			return ctx.Err()
		case "busy":
			// Works for ms whatever its ctx says (it never looks).
			greenroom.Logger().Info("task start")
			time.Sleep(time.Duration(d.MS) * time.Millisecond)
		case "spin":
			greenroom.Logger().Info("task start")
			for i := 0; ; i++ {
				sink += i
			}
		case "loop":
			for i := 0; ; i++ {
				sink += i
			}
		case "panic":
			panic("task panics on purpose")
		case "trap":
			// ABI misuse: a buffer outside memory traps.
			taskRegister(unsafe.Pointer(uintptr(0xfffffff0)), 4096)
		case "error":
			return errors.New("task failed on purpose")
		case "secret":
			// The operator's secret, just past the 4096 bytes the
			// history keeps of an error.
			v, _ := greenroom.Config("secret.value")
			return errors.New(strings.Repeat("x", 4090) + v)
		case "encoded":
			// The operator's secret as the plugin encoded it itself: an
			// HTTP Basic header, URL-safe base64, hex.
			v, _ := greenroom.Config("secret.value")
			return fmt.Errorf("login refused: Authorization: Basic %s, token %s, hex %s",
				base64.StdEncoding.EncodeToString([]byte("user:"+v)), base64.RawURLEncoding.EncodeToString([]byte("t:"+v)), hex.EncodeToString([]byte(v)))
		case "long":
			v, _ := greenroom.Config("secret.value")
			return errors.New(strings.Repeat("y", 500) + v + strings.Repeat("y", max(d.MS-500-len(v), 0)))
		case "nul":
			return errors.New("nul \x00 byte, bad \xff utf-8")
		case "info":
			run, ok := greenroom.TaskRunFrom(ctx)
			dl, hasDL := ctx.Deadline()
			return fmt.Errorf("info ok=%v task=%s run=%s manual=%v due=%v deadline=%v left=%s",
				ok, run.Task, run.RunID, run.Manual, !run.Due.IsZero(), hasDL, time.Until(dl).Round(time.Second))
		case "log":
			fmt.Println("hello from task", d.ID)
		case "opentx":
			if _, err := greenroom.DB().ExecContext(ctx, "CREATE TABLE IF NOT EXISTS marks (at TEXT)"); err != nil {
				return err
			}
			tx, err := greenroom.DB().BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO marks (at) VALUES ('left open')"); err != nil {
				return err
			}
			leaked = append(leaked, tx) // neither committed nor rolled back
		case "slowsql":
			// One statement that counts to ms·1000: seconds of SQLite's
			// time in one host call.
			greenroom.Logger().Info("task start")
			var n int64
			return greenroom.DB().QueryRowContext(ctx, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < ?) SELECT count(*) FROM c", d.MS*1000).Scan(&n)
		case "db":
			if _, err := greenroom.DB().ExecContext(ctx, "CREATE TABLE IF NOT EXISTS marks (at TEXT)"); err != nil {
				return err
			}
			if _, err := greenroom.DB().ExecContext(ctx, "INSERT INTO marks (at) VALUES (?)", time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
				return err
			}
		}
		return nil
	}
}

func main() {}
