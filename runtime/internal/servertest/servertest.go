// Package servertest starts a greenroom runtime and its HTTP server
// in-process on a free loopback port, for tests that drive it over real
// HTTP.
package servertest

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/syncbuf"
	"github.com/greenroom-dev/greenroom/runtime/logging"
	"github.com/greenroom-dev/greenroom/runtime/server"
)

// Token is the admin token Start configures (as [auth.tokens.servertest])
// for a test whose config configures no authentication of its own.
const Token = "servertest-admin-token-0123456789abcdef"

// Instance is a running greenroom.
type Instance struct {
	opts Options
	text atomic.Pointer[string]

	URL    string
	Config *config.Config
	RT     *runtime.Runtime
	Server *server.Server
	Log    *Buffer
	// Client sends Authorization: Bearer <Token> with every request that
	// carries no Authorization header of its own, when Start added the
	// token; otherwise it is Anon.
	Client *http.Client
	// Anon sends requests exactly as given: no credential unless the
	// request has one.
	Anon *http.Client
	// Token is the harness's admin token, or "" when Start added none.
	Token string
}

// Buffer is a goroutine-safe log sink.
type Buffer = syncbuf.Buffer

// Options tune Start.
type Options struct {
	Env     map[string]string
	Runtime runtime.Options
	// CacheDir defaults to a directory shared by the test binary.
	CacheDir string
	// Anonymous leaves out the harness's admin token even when the
	// config configures no authentication: then nothing but public
	// routes answers.
	Anonymous bool
	// LogLevel is the log's level ([log] level), "debug" when empty.
	LogLevel string
}

// Start reads cfgText as config.toml (listen and cache_dir are overridden),
// loads every plugin and serves on a free port until the test ends.
func Start(t testing.TB, cfgText string, opts Options) *Instance {
	t.Helper()
	if opts.CacheDir == "" {
		opts.CacheDir = t.TempDir()
	}
	cfg, token, err := readConfig(cfgText, opts)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	buf := &Buffer{}
	level := opts.LogLevel
	if level == "" {
		level = "debug"
	}
	log, _, err := logging.New(buf, "json", level, cfg.Secrets())
	if err != nil {
		t.Fatal(err)
	}
	in := StartConfig(t, cfg, log, buf, opts.Runtime)
	in.opts = opts
	in.text.Store(&cfgText)
	in.Server.SetReloader(in.reload)
	if token != "" {
		in.Token = token
		in.Client.Transport = bearer{base: in.Client.Transport, token: token}
	}
	return in
}

// readConfig reads cfgText as config.toml with the harness's overrides.
// Tests of plugin behaviour configure no authentication: they get an admin
// token, which Client sends. Tests of authentication configure their own
// credentials (or turn it off) and get exactly those, so a request sent
// without a credential really has none.
func readConfig(cfgText string, opts Options) (*config.Config, string, error) {
	lookup := func(k string) (string, bool) {
		v, ok := opts.Env[k]
		return v, ok
	}
	override := "[server]\nlisten = \"127.0.0.1:0\"\n[runtime]\ncache_dir = \"" + opts.CacheDir + "\"\n"
	cfg, err := config.Read([]config.Source{{Name: "config.toml", Data: []byte(cfgText)}, {Name: "test-override.toml", Data: []byte(override)}}, lookup)
	if err != nil {
		return nil, "", err
	}
	a := cfg.Auth
	token := ""
	if !opts.Anonymous && len(a.Tokens) == 0 && a.JWT == nil && !a.DangerouslyDisable {
		token = Token
		cfg.Auth.Tokens = map[string]*config.Token{"servertest": {Token: Token, Subject: "service:servertest", Type: "service", Admin: true}}
	}
	return cfg, token, nil
}

// SetConfig replaces the config text that the next reload (Reload, or POST
// /.greenroom/plugins/v1/reload) reads.
func (in *Instance) SetConfig(cfgText string) { in.text.Store(&cfgText) }

// WaitBusy waits until one of plugin id's instances is busy.
func (in *Instance) WaitBusy(t testing.TB, id string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); in.RT.Slot(id).Plugin().Stats().Busy < 1; {
		if time.Now().After(deadline) {
			t.Fatalf("no call of plugin %s started", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Reload re-reads the config text (see SetConfig) as the reload endpoint
// does, failing the test on a config error.
func (in *Instance) Reload(t testing.TB) *runtime.ReloadResult {
	t.Helper()
	res, err := in.reload(context.Background())
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	return res
}

// ReloadContext is Reload under ctx, returning its error: a test that
// cancels or supersedes the reload (context.WithCancelCause with
// runtime.ErrSuperseded, as greenroom's reloader does) sees what it did.
func (in *Instance) ReloadContext(ctx context.Context) (*runtime.ReloadResult, error) {
	return in.reload(ctx)
}

// reload is what POST /.greenroom/plugins/v1/reload does in a test server.
func (in *Instance) reload(ctx context.Context) (*runtime.ReloadResult, error) {
	cfg, _, err := readConfig(*in.text.Load(), in.opts)
	if err != nil {
		return nil, err
	}
	res, err := in.RT.Reload(ctx, cfg)
	if err == nil {
		in.Server.Reload(ctx, in.RT.Config())
	}
	return res, err
}

// bearer adds a credential to requests that carry none.
type bearer struct {
	base  http.RoundTripper
	token string
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if _, ok := r.Header["Authorization"]; !ok {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return b.base.RoundTrip(r)
}

// StartConfig is Start for an already read config.
func StartConfig(t testing.TB, cfg *config.Config, log *logrus.Logger, buf *Buffer, ropts runtime.Options) *Instance {
	t.Helper()
	rt, err := runtime.New(cfg, log, ropts)
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(rt, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	rt.StartScheduler()
	rt.Load(context.Background())
	transport := &http.Transport{MaxIdleConnsPerHost: 256}
	in := &Instance{
		URL: "http://" + ln.Addr().String(), Config: cfg, RT: rt, Server: srv, Log: buf,
		Client: &http.Client{Timeout: 30 * time.Second, Transport: transport},
		Anon:   &http.Client{Timeout: 30 * time.Second, Transport: transport},
	}
	t.Cleanup(func() {
		if t.Failed() && buf != nil {
			t.Logf("greenroom log:\n%s", buf.String())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		rt.Close(ctx)
	})
	return in
}

// Do sends a request with Client and returns status, headers and body.
func (in *Instance) Do(t testing.TB, method, path string, body io.Reader, header ...string) (int, http.Header, string) {
	t.Helper()
	return in.DoWith(t, in.Client, method, path, body, header...)
}

// DoAnon is Do with the Anon client: the request carries only the headers
// given.
func (in *Instance) DoAnon(t testing.TB, method, path string, body io.Reader, header ...string) (int, http.Header, string) {
	t.Helper()
	return in.DoWith(t, in.Anon, method, path, body, header...)
}

// DoWith is Do with any client.
func (in *Instance) DoWith(t testing.TB, client *http.Client, method, path string, body io.Reader, header ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, in.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// Get is Do for GET without a body.
func (in *Instance) Get(t testing.TB, path string, header ...string) (int, http.Header, string) {
	t.Helper()
	return in.Do(t, http.MethodGet, path, nil, header...)
}

// LogLines parses the instance's JSON log, failing the test on a line that
// is not JSON.
func (in *Instance) LogLines(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(in.Log.String(), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		out = append(out, m)
	}
	return out
}
