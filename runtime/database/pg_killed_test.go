package database_test

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/greenroom-dev/greenroom/runtime/internal/syncbuf"
)

var (
	serveOnce sync.Once
	serveBin  string
	serveErr  error
)

// greenroomBinary builds cmd/greenroom once per test binary, for tests
// that need a replica to be a process of its own (to SIGKILL it).
func greenroomBinary(t *testing.T) string {
	t.Helper()
	serveOnce.Do(func() {
		dir, err := os.MkdirTemp("", "greenroom-bin")
		if err != nil {
			serveErr = err
			return
		}
		serveBin = filepath.Join(dir, "greenroom")
		out, err := osexec.Command("go", "build", "-o", serveBin, "github.com/greenroom-dev/greenroom/cmd/greenroom").CombinedOutput()
		if err != nil {
			serveErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if serveErr != nil {
		t.Fatal(serveErr)
	}
	return serveBin
}

var (
	replicaPortsMu sync.Mutex
	replicaPorts   = map[int]bool{}
)

// replicaAddr returns a 127.0.0.1 address, free when picked, for a
// replica process to listen on a moment later. The tests that start
// replicas run beside other parallel tests, whose listeners on ":0" (and
// outgoing connections) get ports from the kernel's ephemeral range (from 32768 by
// default): a port picked there and closed again could go to one of them
// before the replica bound it. So the port is below that range, and one
// no other replica of this process got (as cmd/greenroom's freeAddr).
func replicaAddr(t *testing.T) string {
	t.Helper()
	replicaPortsMu.Lock()
	defer replicaPortsMu.Unlock()
	for range 1000 {
		port := 20000 + rand.IntN(12000)
		if replicaPorts[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		replicaPorts[port] = true
		return ln.Addr().String()
	}
	t.Fatal("no free port in 127.0.0.1:20000-31999 after 1000 tries")
	return ""
}

// serveReplica runs greenroom serve as a process of its own with the
// database at url and plugin alpha (dbguest, migration set migrations);
// it is killed when the test ends.
func serveReplica(t *testing.T, url, migrations string) (cmd *osexec.Cmd, addr string, stderr *syncbuf.Buffer) {
	t.Helper()
	addr = replicaAddr(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf("[server]\nlisten = %q\n[log]\nformat = \"json\"\n[runtime]\ncache_dir = %q\n[database]\nclient = \"pg\"\nconnection = %q\n%s",
		addr, cacheDir, url, plugin("alpha", true, migrations, ""))
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr = &syncbuf.Buffer{}
	cmd = osexec.Command(greenroomBinary(t), "serve", "--config", path)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("replica's log:\n%s", stderr.String())
		}
	})
	return cmd, addr, stderr
}

// A replica killed (SIGKILL: no shutdown, its connections just close)
// while it applies a plugin's migration leaves nothing half done, and the
// replica that was waiting for the plugin's lock applies every migration
// once and serves: killed in the migration's statements, its transaction
// never commits and the lock goes with its session; killed in its COMMIT
// (3 s of deferred trigger), after the runtime recorded the migration
// with the transaction's id, the waiting replica finds the record
// unconfirmed, waits for that backend (which the server ends within
// client_connection_check_interval of 1 s, its client gone), finds the
// transaction aborted, and applies the migration again.
// (TestPGMigrationCommitSettled stops a replica in process.)
func TestPGReplicaKilledDuringAMigration(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	for _, c := range []struct{ name, migrations, query, settled string }{
		{"in its statements", "pgslow", "%pg_sleep(3)%", ""},
		{"in its commit", "pgslowcommit", "commit%", "a migration was recorded but its transaction did not commit"},
	} {
		t.Run(c.name, func(t *testing.T) { killedDuringAMigration(t, c.migrations, c.query, c.settled) })
	}
}

// killedDuringAMigration kills a replica applying migrations while its
// session's query is like activity and sleeps, and checks what the next
// replica does; settled is the message it logs settling the migration's
// record ("" for none).
func killedDuringAMigration(t *testing.T, migrations, activity, settled string) {
	url := pgtest.URL(t)
	admin, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	a, _, _ := serveReplica(t, url, migrations)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var n int
		if err := admin.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE $1 AND wait_event = 'PgSleep' AND pid <> pg_backend_pid()", activity).Scan(&n); err == nil && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("replica a did not reach the migration's sleep within 60s")
		}
	}
	// Replica b starts meanwhile, and waits for the plugin's lock.
	_, addr, blog := serveReplica(t, url, migrations)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var n int
		if err := admin.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%runtime_locks%'").Scan(&n); err == nil && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("replica b did not wait for the plugin's lock within 60s")
		}
	}
	if err := a.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.Wait()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/.greenroom/health/v1/readiness"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("replica b was not ready within 60s")
		}
	}
	if settled != "" && !strings.Contains(blog.String(), settled) {
		t.Errorf("replica b did not log %q", settled)
	}
	var applied int
	if err := admin.QueryRow("SELECT count(*) FROM plugin_alpha.applied").Scan(&applied); err != nil {
		t.Fatalf("the plugin's tables after the next replica's start: %v", err)
	}
	if applied != 1 {
		t.Errorf("002 applied %d times, want once", applied)
	}
	rows, err := admin.Query("SELECT name || ' ' || coalesce(xact, '-') FROM greenroom.plugin_migrations WHERE plugin = 'alpha' ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var recs []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		recs = append(recs, s)
	}
	if got := strings.Join(recs, ", "); got != "001_notes.up.sql -, 002_applied.up.sql -" {
		t.Errorf("records %q, want both migrations confirmed", got)
	}
}
