package database_test

import (
	"encoding/json"
	"net"
	neturl "net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
	"github.com/jackc/pgx/v5"
)

// A plugin that failed to load, or retries its load, on a database error
// answers its callers 503 with the kind of error, not pgx's text, which
// names the database's host and port, the user it connected as and the
// database, parts of database.connection (here from the environment, an
// operator's secret). The admin API's last_error keeps them.
func TestUnavailableReasonHidesDatabaseDetails(t *testing.T) {
	admin := pgtest.Admin(t)
	// Nothing listens on a port just closed: connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().(*net.TCPAddr).Port
	l.Close()
	nologin := createroleURL(t)
	nu, _ := neturl.Parse(nologin)
	if _, err := admin.Exec("ALTER ROLE " + pgx.Identifier{nu.User.Username()}.Sanitize() + " NOLOGIN"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, url, state, want string
	}{
		{"unreachable", "postgres://gr_hidden_user@127.0.0.1:" + strconv.Itoa(closed) + "/gr_hidden_db?sslmode=disable&connect_timeout=5", "retrying",
			"s): plugin alpha: database: connect to PostgreSQL: could not connect to the plugin's database (connection refused)"},
		{"role cannot log in", nologin, "failed",
			"plugin alpha failed to load: database: connect to PostgreSQL: could not connect to the plugin's database (the server refused it: the role may not log in or no pg_hba.conf entry allows it, SQLSTATE 28000)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := neturl.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			dbconf := "[database]\nclient = \"pg\"\nconnection = \"${GR_TEST_DATABASE_URL}\"\n"
			in := servertest.Start(t, dbconf+plugin("alpha", true, "", ""), servertest.Options{
				CacheDir: cacheDir, Env: map[string]string{"GR_TEST_DATABASE_URL": tc.url}})
			status, _, body := in.Do(t, "POST", "/api/alpha/run", strings.NewReader(`{"steps":[]}`))
			if status != 503 || !strings.Contains(body, "plugin_unavailable") || !strings.Contains(body, tc.want) {
				t.Errorf("caller got %d %s\nwant 503 with %q", status, body, tc.want)
			}
			infra := []string{u.Hostname(), u.Port(), u.User.Username(), strings.TrimPrefix(u.Path, "/"), "user=", "gr_hidden"}
			for _, leak := range infra {
				if strings.Contains(body, leak) {
					t.Errorf("the caller's 503 names %q: %s", leak, body)
				}
			}
			_, _, list := in.Do(t, "GET", "/.greenroom/plugins/v1/", nil)
			var out struct {
				Plugins []struct {
					State     string
					LastError string `json:"last_error"`
				}
			}
			json.Unmarshal([]byte(list), &out)
			if len(out.Plugins) != 1 || out.Plugins[0].State != tc.state {
				t.Fatalf("admin list: %s", list)
			}
			for _, want := range infra[:4] {
				if !strings.Contains(out.Plugins[0].LastError, want) {
					t.Errorf("last_error does not name %q: %s", want, out.Plugins[0].LastError)
				}
			}
		})
	}
}
