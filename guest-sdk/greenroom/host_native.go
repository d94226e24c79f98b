//go:build !wasip1

package greenroom

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"sync"
)

// On the host platform there is no runtime to ask; native tests set values.

var (
	nativeMu     sync.RWMutex
	nativeConfig map[string]string
	nativePublic []string
)

// SetConfig replaces the values Config returns in a native (non-wasm) build,
// for unit tests of a plugin. It does not exist in the wasip1 build.
func SetConfig(values map[string]string) {
	nativeMu.Lock()
	defer nativeMu.Unlock()
	nativeConfig = make(map[string]string, len(values))
	for k, v := range values {
		nativeConfig[k] = v
	}
}

func hostConfig(key string) (string, bool) {
	nativeMu.RLock()
	defer nativeMu.RUnlock()
	v, ok := nativeConfig[key]
	return v, ok
}

func hostPublic(path string) error {
	nativeMu.Lock()
	defer nativeMu.Unlock()
	nativePublic = append(nativePublic, path)
	return nil
}

// PublicRoutes returns the routes passed to Public so far, in a native
// (non-wasm) build, for unit tests of a plugin. It does not exist in the
// wasip1 build.
func PublicRoutes() []string {
	nativeMu.RLock()
	defer nativeMu.RUnlock()
	return append([]string(nil), nativePublic...)
}

// WithPrincipal returns a copy of r that PrincipalFrom reports as made by
// p, in a native (non-wasm) build, for unit tests of a plugin's handlers.
// It does not exist in the wasip1 build: there the runtime says who calls.
func WithPrincipal(r *http.Request, p Principal) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
}

// Natively there is no runtime to send statements to: DB returns the
// database given to SetDB, or one whose every call fails with errNoRuntime.

var (
	nativeDBValue    *sql.DB
	nativeMigrations []Migration
	errNoRuntime     = errors.New("greenroom: no database outside the greenroom runtime (in unit tests, give one with greenroom.SetDB)")
)

// SetDB makes DB return db in a native (non-wasm) build, for unit tests of
// a plugin, after applying to db the migrations registered with Migrations,
// in order, each in a transaction. Statements go to db unchanged, so use
// placeholders its driver understands (`?` for SQLite). It does not exist
// in the wasip1 build. SetDB(nil) restores the failing default.
func SetDB(db *sql.DB) error {
	nativeMu.Lock()
	migs := append([]Migration(nil), nativeMigrations...)
	nativeMu.Unlock()
	if db != nil {
		for _, m := range migs {
			tx, err := db.Begin()
			if err != nil {
				return err
			}
			if _, err := tx.Exec(m.SQL); err != nil {
				tx.Rollback()
				return fmt.Errorf("greenroom: migration %s: %w", m.Name, err)
			}
			if err := tx.Commit(); err != nil {
				return err
			}
		}
	}
	nativeMu.Lock()
	nativeDBValue = db
	nativeMu.Unlock()
	return nil
}

// RegisteredMigrations returns what Migrations registered, in a native
// build.
func RegisteredMigrations() []Migration {
	nativeMu.RLock()
	defer nativeMu.RUnlock()
	return append([]Migration(nil), nativeMigrations...)
}

func nativeDB() *sql.DB {
	nativeMu.RLock()
	defer nativeMu.RUnlock()
	return nativeDBValue
}

func registerMigrations(_ []byte, list []Migration) error {
	nativeMu.Lock()
	defer nativeMu.Unlock()
	nativeMigrations = list
	return nil
}

type noRuntime struct{}

func newDBTransport() dbTransport { return noRuntime{} }

func (noRuntime) exec([]byte) (string, error)  { return "", errNoRuntime }
func (noRuntime) query([]byte) (string, error) { return "", errNoRuntime }
func (noRuntime) begin(uint32) (uint32, error) { return 0, errNoRuntime }
func (noRuntime) commit(uint32) error          { return errNoRuntime }
func (noRuntime) rollback(uint32) error        { return errNoRuntime }
func (noRuntime) migrations([]byte) error      { return errNoRuntime }

// Natively Schedule checks what it can of a task (the runtime parses cron
// expressions fully) and keeps it, for RunTask.

func registerTask(_ []byte, t Task) error {
	if err := checkTask(t); err != nil {
		return err
	}
	tasksMu.Lock()
	defer tasksMu.Unlock()
	if _, dup := tasks[t.ID]; dup {
		return &Error{Op: "task_register", Code: ErrInvalid.Code, Message: fmt.Sprintf("task %q is registered twice", t.ID)}
	}
	return nil
}

// ScheduledTasks returns the tasks registered with Schedule, sorted by
// ID, in a native (non-wasm) build, for unit tests of a plugin. It does not
// exist in the wasip1 build.
func ScheduledTasks() []Task { return scheduledTasks() }

// RunTask runs the registered task id once, as the runtime would, in a
// native (non-wasm) build, for unit tests of a plugin: ctx gets the task's
// timeout (or keeps its own deadline when the task has none), TaskRunFrom
// reports a manual run, and a panic in Run comes back as an error. It does
// not exist in the wasip1 build.
func RunTask(ctx context.Context, id string) error {
	tasksMu.Lock()
	t, ok := tasks[id]
	tasksMu.Unlock()
	if !ok {
		return fmt.Errorf("greenroom: no task %q is registered (greenroom.Schedule)", id)
	}
	if t.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.Timeout)
		defer cancel()
	}
	ctx = context.WithValue(ctx, taskRunKey{}, TaskRun{Task: id, RunID: "native", Manual: true})
	err, _ := callTask(ctx, t)
	return err
}
