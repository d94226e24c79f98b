package database_test

import (
	"context"
	"database/sql"
	neturl "net/url"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/greenroom-dev/greenroom/runtime/internal/syncbuf"
)

// A database whose pg_stats_ext views lack the fix of CVE-2024-4317 (a
// cluster created before the fixed minor releases and never patched:
// every role reads the statistics objects' most common values, so one
// plugin another's) has SELECT on them revoked from PUBLIC when the
// runtime connects as a superuser, and is named in a warning when it
// cannot; a patched database is left as it is, with no warning. The old
// views are made here as an unpatched cluster has them: the fixed
// definitions without their owner check.
func TestPGStatsExtLeakClosed(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	views := []string{"pg_catalog.pg_stats_ext", "pg_catalog.pg_stats_ext_exprs"}
	for _, tc := range []struct {
		name             string
		super, unpatched bool
	}{{"superuser", true, true}, {"CREATEROLE user", false, true}, {"patched", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			u := pgtest.URL(t)
			if !tc.super {
				u = createroleURL(t)
			}
			admin := superuserTo(t, u)
			if tc.unpatched {
				for _, v := range views {
					if _, err := admin.Exec(`SET allow_system_table_mods = on; DO $$ BEGIN
						EXECUTE 'CREATE OR REPLACE VIEW ` + v + ` AS ' || replace(pg_get_viewdef('` + v + `'::regclass), 'pg_has_role(c.relowner, ''USAGE''::text) AND ', '');
						END $$; RESET allow_system_table_mods`); err != nil {
						t.Fatal(err)
					}
				}
			}
			var out syncbuf.Buffer
			log := logrus.New()
			log.SetOutput(&out)
			svc := database.New(database.Config{Client: database.ClientPG, Connection: u, Isolation: database.IsolationRole}, log)
			defer svc.Close()
			if err := svc.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, v := range views {
				var public bool
				if err := admin.QueryRow("SELECT has_table_privilege('public', $1, 'SELECT')", v).Scan(&public); err != nil {
					t.Fatal(err)
				}
				warned := strings.Contains(out.String(), "this database's "+v+" lacks the fix of CVE-2024-4317")
				switch {
				case tc.unpatched && tc.super && public:
					t.Errorf("%s: PUBLIC may still read it", v)
				case tc.unpatched && !warned:
					t.Errorf("%s: no warning; log:\n%s", v, out.String())
				case !tc.unpatched && (warned || !public):
					t.Errorf("%s of a patched database: warned %v, PUBLIC may read it %v", v, warned, public)
				}
			}
		})
	}
}

// superuserTo returns a superuser's connection to the database of u.
func superuserTo(t *testing.T, u string) *sql.DB {
	admin, err := pgtest.Available()
	if err != nil {
		t.Fatal(err)
	}
	au, err := neturl.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	du, err := neturl.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	au.Path = du.Path
	db, err := sql.Open("pgx", au.String())
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}
