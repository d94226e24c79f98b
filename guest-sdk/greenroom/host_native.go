//go:build !wasip1

package greenroom

import (
	"compress/gzip"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
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

// Natively, Logger writes text to stderr.
func newLogHandler() slog.Handler { return slog.NewTextHandler(os.Stderr, nil) }

// emitRecord has no host to send to natively: the caller writes to stderr.
func emitRecord([]byte) bool { return false }

var (
	nativeTransportMu sync.RWMutex
	nativeTransport   http.RoundTripper = http.DefaultTransport
)

// SetURLTransport sets the transport ReadURL and HTTPClient use in a native
// (non-wasm) build, for unit tests of a plugin: point it at an
// httptest.Server's client transport, or at a fake RoundTripper. nil
// restores http.DefaultTransport. It does not exist in the wasip1 build,
// where the runtime reads.
func SetURLTransport(rt http.RoundTripper) {
	nativeTransportMu.Lock()
	defer nativeTransportMu.Unlock()
	if rt == nil {
		rt = http.DefaultTransport
	}
	nativeTransport = rt
}

// nativeMaxBytes is the runtime's default reading.max_bytes.
const nativeMaxBytes = 16 << 20

// nativeTimeout is the runtime's default reading.timeout: each read (each
// of HTTPClient's hops) ends there, or at its context's deadline if that
// is earlier. A variable for tests.
var nativeTimeout = 30 * time.Second

// nativeUserAgent is the runtime's User-Agent for a read whose plugin sets
// none (runtime/urlreader, defaultUserAgent).
const nativeUserAgent = "greenroom-urlreader"

// urlCall reads with net/http directly: GET and HEAD only, at most 5
// redirects (a hop's own included: the client's requests before it) and
// 16 MiB, 304 as ErrNotModified (but to read_hop_flags); the runtime's
// rules that do not depend on the operator's config, with its errors: the
// URL's (checkURL, on each redirect too), the request headers it refuses
// (checkHeader), no Referer on a redirect, the hop-by-hop response headers
// dropped (dropHopHeaders), a body decoded as the runtime decodes it and
// one still encoded refused; its defaults, reading.timeout (30s) and its
// User-Agent; no allow rules, grants or credentials. A hop's redirect is
// the response, as in the runtime.
func urlCall(ctx context.Context, req *urlRequest) (*urlResponse, error) {
	fail := func(code int32, format string, args ...any) (*urlResponse, error) {
		return nil, &Error{Op: "urlreader_call", Code: code, Message: fmt.Sprintf(format, args...)}
	}
	if req.method != http.MethodGet && req.method != http.MethodHead {
		return fail(errInvalid, "method %q is not supported: the URL reader reads with GET and HEAD only", req.method)
	}
	// A hop's error names the redirect, as the runtime's does.
	from := ""
	if len(req.via) > 0 {
		from = req.via[len(req.via)-1]
		if u, err := url.Parse(from); err == nil {
			from = u.Redacted()
		}
	}
	if err := checkURL(req.url); err != nil {
		if from != "" {
			err.Message = "redirect from " + from + ": " + err.Message
		}
		return nil, err
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, nativeTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, req.method, req.url, nil)
	if err != nil {
		return fail(errInvalid, "%v", err)
	}
	// The URL as the runtime reads it, and as ReadResponse.URL says it:
	// no fragment, a host name in lower case without a trailing dot.
	hreq.URL.Fragment, hreq.URL.RawFragment = "", ""
	if !strings.HasPrefix(hreq.URL.Host, "[") {
		host := strings.ToLower(strings.TrimSuffix(hreq.URL.Hostname(), "."))
		if port := hreq.URL.Port(); port != "" {
			host += ":" + port
		}
		hreq.URL.Host = host
	}
	// timedOut is the runtime's error for a read a deadline ended:
	// the plugin's (its context's), or reading.timeout's.
	timedOut := func() (*urlResponse, error) {
		if errors.Is(parent.Err(), context.DeadlineExceeded) {
			return fail(errTimeout, "%s: the plugin's deadline for this read passed", hreq.URL.Redacted())
		}
		return fail(errTimeout, "%s: read took longer than reading.timeout (%s)", hreq.URL.Redacted(), nativeTimeout)
	}
	// The headers the runtime refuses are refused here, with its errors
	// (they were sent: a unit test passed with a header the deployed
	// plugin's read is refused for).
	for _, k := range slices.Sorted(maps.Keys(req.header)) {
		for _, v := range req.header[k] {
			if err := checkHeader(k, v); err != nil {
				return nil, err
			}
		}
	}
	nativeTransportMu.RLock()
	rt := nativeTransport
	nativeTransportMu.RUnlock()
	if len(req.via) > 5 {
		return fail(errFailed, "redirect from %s: %s: stopped after 5 redirects", from, hreq.URL.Redacted())
	}
	client := &http.Client{Transport: rt, CheckRedirect: func(next *http.Request, via []*http.Request) error {
		if req.hop {
			return http.ErrUseLastResponse
		}
		if len(via) > 5 {
			return &Error{Op: "urlreader_call", Code: errFailed, Message: fmt.Sprintf("%s: stopped after 5 redirects", hreq.URL.Redacted())}
		}
		if err := checkURL(next.URL.String()); err != nil {
			err.Message = "redirect from " + via[len(via)-1].URL.Redacted() + ": " + err.Message
			return err
		}
		// Go's client names the previous URL in a redirect's Referer;
		// the runtime sends none.
		next.Header.Del("Referer")
		return nil
	}}
	hreq.Header = req.header.Clone()
	if from != "" {
		// HTTPClient's client set it, as for a redirect it follows: the
		// runtime drops it.
		hreq.Header.Del("Referer")
	}
	if hreq.Header.Get("User-Agent") == "" {
		hreq.Header.Set("User-Agent", nativeUserAgent)
	}
	resp, err := client.Do(hreq)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, e
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return timedOut()
		}
		return fail(errFailed, "%v", err)
	}
	defer resp.Body.Close()
	final := resp.Request.URL.Redacted()
	// As the runtime: one gzip layer, named by one Content-Encoding line,
	// of a GET's body is decoded, as the runtime asks for gzip on a GET
	// without Range; an http.Transport has decoded it already
	// (Uncompressed), a transport that does not decode has not. Any other
	// coding fails the read (below).
	decoded := resp.Uncompressed
	if ce := resp.Header.Values("Content-Encoding"); req.method == http.MethodGet && resp.ContentLength != 0 && len(ce) == 1 &&
		strings.EqualFold(strings.TrimSpace(ce[0]), "gzip") && hreq.Header.Get("Range") == "" {
		resp.Body = &lazyGzip{r: resp.Body}
		resp.Header.Del("Content-Encoding")
		resp.Header.Del("Content-Length")
		resp.ContentLength = -1
		decoded = true
	}
	codings := resp.Header.Values("Content-Encoding")
	dropHopHeaders(resp.Header)
	if resp.StatusCode == http.StatusNotModified && !req.flags {
		return fail(errNotModified, "%s: not modified (ETag %s)", final, resp.Header.Get("ETag"))
	}
	if resp.ContentLength > nativeMaxBytes && req.method != http.MethodHead {
		return fail(errTooLarge, "%s: body of %d bytes is over reading.max_bytes (%d)", final, resp.ContentLength, nativeMaxBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, nativeMaxBytes+1))
	if err != nil {
		// A deadline passing while the body arrives is a timeout, as
		// one passing before the headers is (and as in the runtime).
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return timedOut()
		}
		return fail(errFailed, "%s: %v", hreq.URL.Redacted(), err)
	}
	if len(body) > nativeMaxBytes {
		return fail(errTooLarge, "%s: body is over reading.max_bytes (%d); stopped reading", final, nativeMaxBytes)
	}
	for _, v := range codings {
		// An empty value names no coding.
		if v := strings.TrimSpace(v); len(body) > 0 && v != "" && !strings.EqualFold(v, "identity") {
			return fail(errFailed, "%s: refused: the response is encoded (Content-Encoding: %s), which the runtime does not decode; a plugin gets bodies decoded (the runtime asks for gzip itself)", final, v)
		}
	}
	return &urlResponse{
		status:       resp.StatusCode,
		url:          resp.Request.URL.String(),
		etag:         resp.Header.Get("ETag"),
		lastModified: resp.Header.Get("Last-Modified"),
		header:       resp.Header,
		body:         body,
		decoded:      req.flags && decoded,
	}, nil
}

// lazyGzip decodes a gzip body from its first Read, as the runtime's
// does: an empty body is an empty body, not a malformed gzip stream.
type lazyGzip struct {
	r  io.ReadCloser
	zr *gzip.Reader
}

func (g *lazyGzip) Read(b []byte) (int, error) {
	if g.zr == nil {
		zr, err := gzip.NewReader(g.r)
		if err != nil {
			return 0, err
		}
		g.zr = zr
	}
	return g.zr.Read(b)
}

func (g *lazyGzip) Close() error { return g.r.Close() }

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

// RegisteredMigrations returns what Migrations registered, by all its
// calls, in name order (the order SetDB applies them in), in a native
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

// registerMigrations adds list to what earlier calls registered, as the
// runtime does over an init's calls: the files of every call are one list,
// in name order, and a call with a name already registered is refused
// whole (ErrInvalid). A second call replaced the first's files here, so
// that SetDB left out the tables of all but the last package to register.
func registerMigrations(_ []byte, list []Migration) error {
	nativeMu.Lock()
	defer nativeMu.Unlock()
	seen := make(map[string]bool, len(nativeMigrations))
	for _, r := range nativeMigrations {
		seen[r.Name] = true
	}
	for _, m := range list {
		if seen[m.Name] {
			return &Error{Op: "db_migrations", Code: errInvalid, Message: fmt.Sprintf("migration %q registered twice", m.Name)}
		}
	}
	all := append(slices.Clip(nativeMigrations), list...)
	slices.SortStableFunc(all, func(a, b Migration) int { return strings.Compare(a.Name, b.Name) })
	nativeMigrations = all
	return nil
}

type noRuntime struct{}

// dbMaxConns: outside the runtime, no bound (SetDB's database decides).
func dbMaxConns() int { return 0 }

func dbStatementTimeout() time.Duration { return 0 }

func newDBTransport() dbTransport { return noRuntime{} }

func (noRuntime) exec([]byte) (string, error)  { return "", errNoRuntime }
func (noRuntime) query([]byte) (string, error) { return "", errNoRuntime }
func (noRuntime) begin(uint32) (uint32, error) { return 0, errNoRuntime }
func (noRuntime) commit(uint32) error          { return errNoRuntime }
func (noRuntime) rollback(uint32) error        { return errNoRuntime }
func (noRuntime) migrations([]byte) error      { return errNoRuntime }

// refuseTask is a registration the SDK itself refuses; natively (unit
// tests) Schedule returns the error.
func refuseTask(err error) error { return err }

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
	if len(tasks) >= maxTasks {
		return &Error{Op: "task_register", Code: ErrInvalid.Code, Message: fmt.Sprintf("task %q: the plugin registers more than %d tasks, the most one plugin may register", t.ID, maxTasks)}
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
