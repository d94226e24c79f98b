package database_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
	"github.com/greenroom-dev/greenroom/runtime/internal/testflags"
)

var (
	dbguestWasm string
	helloWasm   string
	todoWasm    string
	cacheDir    string
)

// Parallel tests: the tests that spend seconds waiting (timeouts, locks,
// reaps) call t.Parallel, so that go test runs them after the serial ones,
// -parallel of them at a time (4 unless given: testflags.Parallel).
// A test may do so only when it changes no process-wide state the others
// read: not t.Setenv, not database.sqlite_memory (SQLite's heap limit is
// the process's), and when it measures nothing the process shares
// (runtime.MemStats), nor ends sessions other than its own databases' and
// roles'. The timings and hooks a test sets with database.Set* and
// FailReapChecks are its own database's (named by its connection, connOf)
// until it ends: other tests' Services keep the defaults, so such a test
// may run in parallel. Serial tests that change process-wide state
// restore it before they return, so the parallel ones, which start only
// after every serial one has ended, see it as it was. A statement
// PostgreSQL does not interrupt (array containment over large arrays)
// holds up every DROP DATABASE on the server while it runs, and with it
// the cleanup of every test then ending: a test that keeps one running
// for long runs alone (TestPGSurvivorStaysCountedThroughFailedChecks).
func TestMain(m *testing.M) {
	if dsn := os.Getenv(deadClientEnv); dsn != "" {
		deadClient(dsn)
	}
	var err error
	if dbguestWasm, err = guesttest.BuildErr("runtime/database/testdata/guests/dbguest"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if helloWasm, err = guesttest.BuildErr("plugins/hello"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if todoWasm, err = guesttest.BuildErr("plugins/todo"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cacheDir = filepath.Join(guesttest.CacheDir(), "database-test-cache")
	testflags.Parallel(4)
	code := pgtest.Main(m)
	if serveBin != "" {
		os.RemoveAll(filepath.Dir(serveBin)) // greenroomBinary's
	}
	os.Exit(code)
}

// backend is one database client the tests run against.
type backend struct {
	name string
	// conf returns a fresh [database] table for one test; the same table
	// twice names the same database (restarts, replicas).
	conf func(t testing.TB) string
}

var backends = []backend{
	{"sqlite", func(t testing.TB) string {
		return fmt.Sprintf("[database]\nclient = \"sqlite\"\nconnection = \"file:%s\"\n", t.TempDir())
	}},
	{"pg", func(t testing.TB) string {
		return fmt.Sprintf("[database]\nclient = \"pg\"\nconnection = %q\n", pgtest.URL(t))
	}},
}

// connOf is the connection of the [database] table conf (a backend's
// conf), which names the database in database.Set* and the like.
func connOf(t testing.TB, conf string) string {
	t.Helper()
	for _, l := range strings.Split(conf, "\n") {
		if v, ok := strings.CutPrefix(l, "connection = "); ok {
			c, err := strconv.Unquote(v)
			if err != nil {
				t.Fatalf("connection in %q: %v", conf, err)
			}
			return c
		}
	}
	t.Fatalf("no connection in %q", conf)
	return ""
}

// each runs f once per backend, as subtests named after it.
func each(t *testing.T, f func(t *testing.T, b backend, dbconf string)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b, b.conf(t)) })
	}
}

// plugin is a [plugins.<id>] table running dbguest.
func plugin(id string, granted bool, migrations string, limits string) string {
	s := fmt.Sprintf("[plugins.%s]\npath = %q\n", id, dbguestWasm)
	if granted {
		s += fmt.Sprintf("[plugins.%s.capabilities]\ndatabase = true\n", id)
	}
	if migrations != "" {
		s += fmt.Sprintf("[plugins.%s.config]\nmigrations = %q\n", id, migrations)
	}
	if limits != "" {
		s += fmt.Sprintf("[plugins.%s.limits]\n%s\n", id, limits)
	}
	return s
}

func start(t *testing.T, conf ...string) *servertest.Instance {
	t.Helper()
	return servertest.Start(t, strings.Join(conf, "\n"), servertest.Options{CacheDir: cacheDir})
}

// step is one step of dbguest's /run.
type step struct {
	Op        string `json:"op"`
	SQL       string `json:"sql,omitempty"`
	Args      []any  `json:"args,omitempty"`
	MS        int    `json:"ms,omitempty"`
	TimeoutMS int    `json:"timeout_ms,omitempty"`
	ReadOnly  bool   `json:"read_only,omitempty"`
	// Background runs the step with context.Background() in the guest.
	Background bool `json:"background,omitempty"`
	Isolation  int  `json:"isolation,omitempty"`
}

type result struct {
	Error    string   `json:"error"`
	Kind     string   `json:"kind"`
	Columns  []string `json:"columns"`
	Types    []string `json:"types"`
	Rows     [][]any  `json:"rows"`
	GoTypes  []string `json:"go_types"`
	Affected int64    `json:"affected"`
	LastID   *int64   `json:"last_id"`
	// TxDone: errors.Is(err, sql.ErrTxDone) in the guest.
	TxDone bool `json:"tx_done"`
	// CtxDeadline: errors.Is(err, context.DeadlineExceeded) in the guest.
	CtxDeadline bool `json:"ctx_deadline"`
	// SQLState: greenroom.SQLState(err) in the guest.
	SQLState string `json:"sqlstate"`
}

func exec(sql string, args ...any) step  { return step{Op: "exec", SQL: sql, Args: args} }
func query(sql string, args ...any) step { return step{Op: "query", SQL: sql, Args: args} }

// run posts steps to plugin id and returns each step's result.
func run(t testing.TB, in *servertest.Instance, id string, steps ...step) []result {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"steps": steps})
	status, _, resp := in.Do(t, "POST", "/api/"+id+"/run", bytes.NewReader(body))
	if status != 200 {
		t.Fatalf("POST /api/%s/run: %d %s", id, status, resp)
	}
	var out struct{ Results []result }
	if err := json.Unmarshal([]byte(resp), &out); err != nil {
		t.Fatalf("bad response %q: %v", resp, err)
	}
	return out.Results
}

// must runs steps and fails the test if any failed.
func must(t testing.TB, in *servertest.Instance, id string, steps ...step) []result {
	t.Helper()
	res := run(t, in, id, steps...)
	for i, r := range res {
		if r.Error != "" {
			t.Fatalf("%s step %d (%s %s): %s", id, i, steps[i].Op, steps[i].SQL, r.Error)
		}
	}
	return res
}

// count returns SELECT count(*) FROM table as plugin id sees it.
func count(t testing.TB, in *servertest.Instance, id, table string) int {
	t.Helper()
	r := must(t, in, id, query("SELECT count(*) FROM "+table))[0]
	return int(r.Rows[0][0].(float64))
}
