package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/database"
)

// notQuoting wraps an error without quoting its text.
type notQuoting struct{ err error }

func (e notQuoting) Error() string { return "something failed" }
func (e notQuoting) Unwrap() error { return e.err }

// The reason a failed plugin's callers get keeps the runtime's words and
// the kind of each error, without the hosts, ports, users, database and
// role names, and paths the config holds (from the environment here),
// wherever the error quotes them; TestUnavailableReasonHidesDatabaseDetails
// has pgx's connect errors.
func TestCallerReasonHidesInfrastructure(t *testing.T) {
	env := map[string]string{
		"DB":    "postgres://svc_runtime:pw@db.internal.example:6543/prod_main?sslmode=disable",
		"CACHE": "/var/cache/gr-secret",
	}
	cfg, err := config.Read([]config.Source{{Name: "/etc/gr/config.toml", Data: []byte(`
[runtime]
cache_dir = "${CACHE}"
[database]
client = "pg"
connection = "${DB}"
[plugins.alpha]
path = "/srv/secret/plugins/alpha.wasm"
`)}}, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	r := &Runtime{}
	r.cfg.Store(cfg)
	addr := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 6543}
	role := database.RoleName("prod_main", "alpha")
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("plugin alpha: %w", &fs.PathError{Op: "open", Path: "/srv/secret/plugins/alpha.wasm", Err: fs.ErrNotExist}),
			"plugin alpha: open alpha.wasm: file does not exist"},
		{fmt.Errorf("plugin alpha: database: %w", fmt.Errorf("the runtime's database user %q lacks the CREATE privilege on database %q", "svc_runtime", "prod_main")),
			`plugin alpha: database: the runtime's database user "[user]" lacks the CREATE privilege on database "[database]"`},
		{fmt.Errorf("plugin alpha: database: create role %s: %w", role, &pgconn.PgError{Severity: "ERROR", Message: "permission denied to create role", Code: "42501"}),
			"plugin alpha: database: create role [plugin role]: ERROR: permission denied to create role (SQLSTATE 42501)"},
		// A migration's error is the plugin's own SQL's: kept, but what
		// the server names of the database is not.
		{fmt.Errorf("plugin alpha: database: migration 002_x.up.sql failed: line 3: %w", &pgconn.PgError{Severity: "ERROR", Message: "permission denied for database prod_main", Code: "42501"}),
			"plugin alpha: database: migration 002_x.up.sql failed: line 3: ERROR: permission denied for database [database] (SQLSTATE 42501)"},
		{fmt.Errorf("plugin alpha: database: migration 001_a.up.sql failed: %w (the runtime retries)", &net.OpError{Op: "read", Net: "tcp", Source: addr, Addr: addr, Err: syscall.ECONNRESET}),
			"plugin alpha: database: migration 001_a.up.sql failed: network error (connection reset) (the runtime retries)"},
		{fmt.Errorf("plugin alpha: %w", &net.DNSError{Err: "no such host", Name: "db.internal.example", Server: "10.0.0.53:53"}),
			"plugin alpha: network error (the database's host name could not be resolved)"},
		{fmt.Errorf("plugin alpha: %w", notQuoting{&net.OpError{Op: "dial", Net: "tcp", Addr: addr, Err: syscall.ECONNREFUSED}}),
			"(the runtime's log says why)"},
		{errors.New("plugin alpha: cache entry /var/cache/gr-secret/ab/cd.bin: permission denied; db.internal.example:6543, db.internal.example2, prod_main_x"),
			"plugin alpha: cache entry [runtime.cache_dir]/ab/cd.bin: permission denied; [host], db.internal.example2, prod_main_x"},
	} {
		got := r.callerReason(tc.err)
		if got != tc.want {
			t.Errorf("callerReason(%q)\n got %q\nwant %q", tc.err, got, tc.want)
		}
		for _, leak := range []string{"db.internal.example:", "10.1.2.3", "6543", "svc_runtime", "\"prod_main", " prod_main ", "gr-secret", "/srv/secret", role} {
			if strings.Contains(got, leak) {
				t.Errorf("callerReason(%q) names %q: %s", tc.err, leak, got)
			}
		}
	}
	// A database and user named like a plugin: the plugin's id is its
	// callers' already, and stays.
	env["DB"] = "postgres://alpha@db.internal.example:6543/alpha?sslmode=disable"
	cfg2, err := config.Read([]config.Source{{Name: "/etc/gr/config.toml", Data: []byte(`
[database]
client = "pg"
connection = "${DB}"
[plugins.alpha]
path = "/srv/secret/plugins/alpha.wasm"
`)}}, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	r.cfg.Store(cfg2)
	want := "plugin alpha: plugins.alpha.limits: [host]"
	if got := r.callerReason(errors.New("plugin alpha: plugins.alpha.limits: db.internal.example")); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// A module path with any part from the environment is a secret whole
// (docs/config.md): the reason its plugin's callers get does not tell
// even its base name, which render keeps of a file system error ("open
// gamma-7f3a.wasm: no such file" for path = "${MOD}"), nor the
// path where the runtime's words quote it; a path written in the file
// keeps its base name (TestCallerReasonHidesInfrastructure).
func TestCallerReasonHidesAPathFromTheEnvironment(t *testing.T) {
	env := map[string]string{"MOD": "/srv/plugins/gamma-7f3a.wasm", "DIR": "/srv/secret-dir"}
	cfg, err := config.Read([]config.Source{{Name: "/etc/gr/config.toml", Data: []byte(`
[plugins.gamma]
path = "${MOD}"
[plugins.delta]
path = "${DIR}/delta-build.wasm"
`)}}, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	r := &Runtime{}
	r.cfg.Store(cfg)
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("plugin gamma: path: %w", &fs.PathError{Op: "stat", Path: "/srv/plugins/gamma-7f3a.wasm", Err: fs.ErrNotExist}),
			"plugin gamma: path: stat [REDACTED]: file does not exist"},
		{errors.New("plugin gamma: /srv/plugins/gamma-7f3a.wasm is not a regular file"),
			"plugin gamma: [REDACTED] is not a regular file"},
		{fmt.Errorf("plugin delta: path: %w", &fs.PathError{Op: "open", Path: "/srv/secret-dir/delta-build.wasm", Err: fs.ErrPermission}),
			"plugin delta: path: open [REDACTED]: permission denied"},
	} {
		if got := r.callerReason(tc.err); got != tc.want {
			t.Errorf("callerReason(%q)\n got %q\nwant %q", tc.err, got, tc.want)
		}
	}
}

// The reason a failed plugin's callers get names no directory of the host
// wherever the text comes from (go build's output, an error that quotes a
// path resolved otherwise than the config names it, the SQLite
// directory), and no IP address outside the network errors told by their
// kind; the file's base name, the plugin's own words and what only looks
// like an address (a time, a line number, a version) are kept.
func TestCallerReasonHidesHostPathsAndAddresses(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	dataDir := filepath.Join(tmp, "data")
	cfg, err := config.Read([]config.Source{{Name: filepath.Join(wd, "config.toml"), Data: []byte(`
[database]
client = "sqlite"
connection = "file:` + dataDir + `"
[plugins.beta]
path = "plugins/beta/beta.wasm"
`)}}, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	r := &Runtime{}
	r.cfg.Store(cfg)
	for _, tc := range []struct{ err, want string }{
		// go build's output: its temporary work directory, the
		// toolchain's and the module's directories.
		{"plugin beta: build " + wd + "/plugins/beta: go build failed: exit status 1\n# example.com/beta\n/tmp/go-build2938471/b001/_pkg_.a(_go_.o): relocation target x not defined\nlink: open /tmp/go-build2938471/b001/exe/a.out: no space left on device",
			"plugin beta: build beta: go build failed: exit status 1\n# example.com/beta\n_pkg_.a(_go_.o): relocation target x not defined\nlink: open a.out: no space left on device"},
		{"plugin beta: build: " + filepath.Join(tmp, "gomod", "example.com", "lib@v1.2.0", "lib.go") + ":12:3: undefined: Foo",
			"plugin beta: build: lib.go:12:3: undefined: Foo"},
		{"plugin beta: go.mod at " + filepath.Join(wd, "go.mod") + ": missing go.sum entry",
			"plugin beta: go.mod at go.mod: missing go.sum entry"},
		// The module's path as resolved from the working directory, not
		// as the config names it.
		{"plugin beta: read \"" + filepath.Join(wd, "plugins", "beta", "beta.wasm") + "\": is a directory",
			"plugin beta: read \"beta.wasm\": is a directory"},
		// The SQLite directory reached another way (a link resolved).
		{"plugin beta: database: open " + tmp + "/./data/../data/beta.db: unable to open database file",
			"plugin beta: database: open beta.db: unable to open database file"},
		// Addresses in the runtime's or a library's words.
		{"plugin beta: url reader: 10.9.8.7:443 refused; tried 192.168.0.1 and [fe80::1%eth0]:5432, 2001:db8::5 and ::1.",
			"plugin beta: url reader: [address] refused; tried [address] and [address], [address] and [address]."},
		// What only looks like a path or an address is kept.
		{"plugin beta: route /items/{id} at 12:30:45: main.go:12:3: go1.26.1 v1.2.3.4 SQLSTATE 42501 ./x/y https://example.com/a/b 1.2.3",
			"plugin beta: route /items/{id} at 12:30:45: main.go:12:3: go1.26.1 v1.2.3.4 SQLSTATE 42501 ./x/y https://example.com/a/b 1.2.3"},
	} {
		got := r.callerReason(errors.New(tc.err))
		if got != tc.want {
			t.Errorf("callerReason(%q)\n got %q\nwant %q", tc.err, got, tc.want)
		}
		for _, leak := range []string{wd, tmp, "go-build", "10.9.8.7", "fe80", "2001:db8"} {
			if strings.Contains(got, leak) {
				t.Errorf("callerReason(%q) names %q: %s", tc.err, leak, got)
			}
		}
	}
}
