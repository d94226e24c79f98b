package database_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	neturl "net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
)

// warnings records the warnings (and worse) a logger writes.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (w *warnings) Fire(e *logrus.Entry) error {
	s := e.Message
	if err, ok := e.Data[logrus.ErrorKey]; ok {
		s += ": " + fmt.Sprint(err)
	}
	w.mu.Lock()
	w.msgs = append(w.msgs, s)
	w.mu.Unlock()
	return nil
}

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs...)
}

// Several replicas sharing one database, each loading its plugins in
// parallel (the runtime loads up to 8 at once), on a database where PUBLIC
// has no CONNECT: every plugin role gets CONNECT and every plugin
// connects, with no warning. Every plugin's GRANT CONNECT ON DATABASE
// updates the same pg_database row, and concurrent ones failed with
// "tuple concurrently updated" (XX000): the runtime warned that the role
// "relies on PUBLIC's CONNECT", and the plugin then failed to connect
// (FATAL: permission denied for database). With and without a superuser
// as the runtime's user (a CREATEROLE user owning the database, as
// docs/database.md asks for, also grants each role to itself).
func TestPGConcurrentProvisioning(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	for _, user := range []string{"superuser", "createrole"} {
		t.Run(user, func(t *testing.T) {
			admin := pgtest.Admin(t)
			var url string
			if user == "createrole" {
				url = createroleURL(t)
			} else {
				url = pgtest.URL(t)
			}
			u, err := neturl.Parse(url)
			if err != nil {
				t.Fatal(err)
			}
			dbname := strings.TrimPrefix(u.Path, "/")
			qdb := pgx.Identifier{dbname}.Sanitize()
			if _, err := admin.Exec("REVOKE CONNECT ON DATABASE " + qdb + " FROM PUBLIC"); err != nil {
				t.Fatal(err)
			}
			provisionConcurrently(t, url, dbname, 2, 8)
		})
	}
}

// createroleURL makes a new runtime user with CREATEROLE (not a
// superuser) the owner of a new database, as docs/database.md asks, and
// returns the database's URL with that user.
func createroleURL(t *testing.T) string {
	return ownerURL(t, "LOGIN CREATEROLE")
}

// schemaUserURL makes a new runtime user with LOGIN only, owning a new
// database: the user isolation = "schema" asks for.
func schemaUserURL(t *testing.T) string {
	return ownerURL(t, "LOGIN")
}

// ownerURL makes a new user with the role options attrs and a new
// database it owns, and returns the database's URL with that user.
func ownerURL(t *testing.T, attrs string) string {
	u, qdb, runtimeUser := newRuntimeUserWith(t, attrs)
	admin := pgtest.Admin(t)
	if _, err := admin.Exec("ALTER DATABASE " + qdb + " OWNER TO " + runtimeUser); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec("ALTER DATABASE " + qdb + " OWNER TO CURRENT_USER") })
	return u.String()
}

// newRuntimeUser makes a new user with LOGIN CREATEROLE (not a superuser)
// and a new database, and returns the database's URL with that user, the
// database's quoted name and the user.
func newRuntimeUser(t *testing.T) (u *neturl.URL, qdb, user string) {
	return newRuntimeUserWith(t, "LOGIN CREATEROLE")
}

// newRuntimeUserWith is newRuntimeUser with the role options attrs.
func newRuntimeUserWith(t *testing.T, attrs string) (u *neturl.URL, qdb, user string) {
	admin := pgtest.Admin(t)
	var b [6]byte
	rand.Read(b[:])
	user = "gr_test_runtime_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE ROLE " + user + " " + attrs); err != nil {
		t.Fatal(err)
	}
	// Registered before the database's: runs after the database and its
	// plugin roles are dropped.
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP ROLE IF EXISTS " + user); err != nil {
			t.Errorf("drop the test's runtime user: %v", err)
		}
	})
	u, err := neturl.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	qdb = pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()
	u.User = neturl.User(user)
	return u, qdb, user
}

// provisionConcurrently opens replicas Services on the database at url and
// has each provision the same plugins, all at once, and checks that every
// plugin connects as its role and nothing was warned about.
func provisionConcurrently(t *testing.T, url, dbname string, replicas, plugins int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	warned := &warnings{}
	log := logrus.New()
	log.SetOutput(testWriter{t})
	log.AddHook(warned)
	cfg := database.Config{Client: database.ClientPG, Connection: url, Isolation: database.IsolationRole}
	lim := database.Limits{MaxConns: 1, StatementTimeout: 10 * time.Second, MaxResult: 1 << 20}
	svcs := make([]*database.Service, replicas)
	for i := range svcs {
		svcs[i] = database.New(cfg, log)
		defer svcs[i].Close()
	}
	// Every replica opens first (they wait for each other on the
	// runtime's lock), then all provision together.
	var wg sync.WaitGroup
	errs := make(chan error, replicas*(plugins+1))
	for _, svc := range svcs {
		wg.Go(func() {
			if err := svc.Open(ctx); err != nil {
				errs <- fmt.Errorf("open: %w", err)
			}
		})
	}
	wg.Wait()
	start := make(chan struct{})
	for r, svc := range svcs {
		for p := range plugins {
			wg.Go(func() {
				<-start
				if _, err := svc.Plugin(ctx, fmt.Sprintf("p%d", p), lim); err != nil {
					errs <- fmt.Errorf("replica %d: %w", r, err)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, w := range warned.all() {
		t.Errorf("warned: %s", w)
	}
	for r, svc := range svcs {
		for p := range plugins {
			id := fmt.Sprintf("p%d", p)
			pdb := svc.PluginDB(id)
			if pdb == nil {
				continue // its error is above
			}
			var who string
			if err := pdb.SQL().QueryRowContext(ctx, "SELECT current_user").Scan(&who); err != nil {
				t.Errorf("replica %d: plugin %s cannot connect: %v", r, id, err)
			} else if who != database.RoleName(dbname, id) {
				t.Errorf("replica %d: plugin %s connects as %s", r, id, who)
			}
		}
	}
}

// testWriter sends a logger's output to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// A plugin's role is a member of no role: a membership granted by hand
// (pg_read_all_data here) would let the plugin SET ROLE to its privileges
// from a DO block, which the statement filter does not see. The runtime
// revokes such memberships when it provisions the role, and a role taken
// with SET ROLE ends with the call (RESET ALL leaves it; the session
// reset runs RESET ROLE first). With and without a superuser as the
// runtime's user.
func TestPGRoleMemberships(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	for _, user := range []string{"superuser", "createrole"} {
		t.Run(user, func(t *testing.T) {
			admin := pgtest.Admin(t)
			url := pgtest.URL(t)
			if user == "createrole" {
				url = createroleURL(t)
			}
			dbconf := "[database]\nclient = \"pg\"\nconnection = \"" + url + "\"\n"
			alpha := plugin("alpha", true, "good", "db_max_conns = 1")
			in := start(t, dbconf, alpha)
			role := database.RoleName(dbName(t, in), "alpha")
			if _, err := admin.Exec("GRANT pg_read_all_data TO " + pgx.Identifier{role}.Sanitize()); err != nil {
				t.Fatal(err)
			}
			must(t, in, "alpha", exec("DO $$ BEGIN EXECUTE 'SET ROLE pg_read_all_data'; END $$"))
			if r := must(t, in, "alpha", query("SELECT current_user::text"))[0]; r.Rows[0][0] != role {
				t.Errorf("the next call runs as %v, want %s: a SET ROLE outlived its call", r.Rows[0][0], role)
			}
			stop(t, in)
			in = start(t, dbconf, alpha)
			var n int
			if err := admin.QueryRow("SELECT count(*) FROM pg_auth_members WHERE member = (SELECT oid FROM pg_roles WHERE rolname = $1)", role).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("the plugin's role is still a member of %d roles", n)
			}
			if !strings.Contains(in.Log.String(), "revoked a membership a plugin's role must not have") {
				t.Error("the revoked membership was not logged")
			}
			if r := run(t, in, "alpha", exec("DO $$ BEGIN EXECUTE 'SET ROLE pg_read_all_data'; END $$"))[0]; r.Error == "" {
				t.Error("SET ROLE pg_read_all_data worked after the restart")
			}
			if user != "createrole" {
				return
			}
			// Membership of a superuser role a CREATEROLE user cannot
			// revoke: the plugin does not load, and the reason says what
			// to run.
			stop(t, in)
			su := role + "_su"
			if _, err := admin.Exec("CREATE ROLE " + pgx.Identifier{su}.Sanitize() + " SUPERUSER NOLOGIN"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { admin.Exec("DROP ROLE IF EXISTS " + pgx.Identifier{su}.Sanitize()) })
			if _, err := admin.Exec("GRANT " + pgx.Identifier{su}.Sanitize() + " TO " + pgx.Identifier{role}.Sanitize()); err != nil {
				t.Fatal(err)
			}
			in = start(t, dbconf, alpha)
			want := "run REVOKE " + pgx.Identifier{su}.Sanitize() + " FROM " + pgx.Identifier{role}.Sanitize() + " as a superuser"
			if st, reason := in.RT.Slot("alpha").Status(); st == "ready" || !strings.Contains(reason, want) {
				t.Errorf("alpha with a membership the runtime cannot revoke: %s: %s, want a reason saying %q", st, reason, want)
			}
		})
	}
}

// A runtime user that may create roles and schemas but neither owns the
// database nor holds CONNECT WITH GRANT OPTION grants nothing with GRANT
// CONNECT: PostgreSQL only warns. The runtime says so (the plugin then
// relies on PUBLIC's CONNECT) instead of taking the warning for a grant.
func TestPGGrantConnectGrantedNothing(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	u, qdb, runtimeUser := newRuntimeUser(t)
	admin := pgtest.Admin(t)
	if _, err := admin.Exec("GRANT CREATE ON DATABASE " + qdb + " TO " + runtimeUser); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec("REVOKE CREATE ON DATABASE " + qdb + " FROM " + runtimeUser) })
	in := start(t, "[database]\nclient = \"pg\"\nconnection = \""+u.String()+"\"\n", plugin("alpha", true, "good", ""))
	must(t, in, "alpha", query("SELECT 1")) // through PUBLIC's CONNECT
	if !strings.Contains(in.Log.String(), "granted nothing: the runtime's user is neither the database's owner nor holds CONNECT WITH GRANT OPTION") {
		t.Errorf("no warning that CONNECT was not granted:\n%s", in.Log.String())
	}
}
