package runtime

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
)

// A retry begun while a reload waits for the lock (Load hit a transient
// error as a SIGHUP came) is stopped by that reload: it once survived it,
// and when the reload removed the plugin, the retry loaded a plugin the
// config no longer had (a nil dereference: the process crashed); when the
// reload loaded it, the retry marked the serving plugin failed.
func TestReloadStopsRetriesBegunWhileItWaited(t *testing.T) {
	defer func(first time.Duration) { retryFirst = first }(retryFirst)
	retryFirst = 20 * time.Millisecond
	with := verConfig(t, "", "")
	cache := filepath.Join(guesttest.CacheDir(), "runtime-test-cache")
	without, err := config.Read([]config.Source{{Name: "config.toml", Data: []byte(fmt.Sprintf("[runtime]\ncache_dir = %q\n", cache))}}, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	for _, next := range []*config.Config{without, with(2)} {
		log, _ := logtest.NewNullLogger()
		rt, err := New(with(1), log, Options{})
		if err != nil {
			t.Fatal(err)
		}
		rt.Load(context.Background())
		s := rt.Slot("ver")
		// As Load would: a retry is begun while the reload waits.
		rt.reloadMu.Lock()
		done := make(chan error, 1)
		go func() {
			_, err := rt.Reload(context.Background(), next)
			done <- err
		}()
		time.Sleep(50 * time.Millisecond) // the reload waits for the lock
		old := s.cur.Swap(nil)
		rt.retryLoad(s, errors.New("plugin ver: too many connections"))
		s.cur.Store(old)
		rt.reloadMu.Unlock()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * retryFirst) // past the retry's first attempt
		if len(next.Plugins) > 0 {
			if st, reason := rt.Slot("ver").Status(); st != StateReady {
				t.Errorf("after a reload that loaded it: %s %q, want ready", st, reason)
			}
		}
		if err := rt.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// A reload does not wait for a retrying plugin's load attempt in progress:
// it decides anew about that plugin, so it stops the attempt rather than
// queue behind it. An attempt can take long (a connect that waits its
// connect_timeout, a wait for the plugin's migration lock of up to twice
// limits.migration_timeout), and the reload's new credentials are in force
// only once it has the lock: a token it revoked stayed valid that long
// (here, behind an initializer of 30 s, the reload took as long).
func TestReloadStopsARetryInProgress(t *testing.T) {
	defer func(first time.Duration) { retryFirst = first }(retryFirst)
	retryFirst = 20 * time.Millisecond
	ver := guesttest.Build(t, "runtime/server/testdata/guests/ver1")
	cache := filepath.Join(guesttest.CacheDir(), "runtime-test-cache")
	read := func(path, sleep string) *config.Config {
		text := fmt.Sprintf("[runtime]\ncache_dir = %q\n[plugins.ver]\npath = %q\n[plugins.ver.config]\ninit_sleep_ms = %q\n", cache, path, sleep)
		cfg, err := config.Read([]config.Source{{Name: "config.toml", Data: []byte(text)}}, func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	log, _ := logtest.NewNullLogger()
	// Failed at start: no version serves, as for a plugin whose load hit
	// a database error that may pass.
	rt, err := New(read(filepath.Join(t.TempDir(), "missing.wasm"), "0"), log, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	rt.Load(context.Background())
	s := rt.Slot("ver")
	// Its retry's attempt loads a version whose initializer takes 30 s
	// (the reload loads one of its own, compiled or from the cache: on a
	// loaded CI run that took 4.2 s, past the 4 s an initializer of 8 s
	// left it).
	rt.reloadMu.Lock()
	rt.cfg.Store(read(ver, "30000"))
	rt.retryLoad(s, errors.New("plugin ver: too many connections"))
	rt.reloadMu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if rt.reloadMu.TryLock() {
			rt.reloadMu.Unlock()
		} else {
			break // the attempt holds the lock
		}
		if time.Now().After(deadline) {
			t.Fatal("the retry's attempt never began")
		}
	}
	time.Sleep(200 * time.Millisecond) // well inside its initializer
	start := time.Now()
	res, err := rt.Reload(context.Background(), read(ver, "0"))
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if took > 20*time.Second {
		t.Errorf("the reload took %s: it waited for the retry's attempt", took.Round(time.Millisecond))
	}
	if pr := res.Plugins["ver"]; !pr.Serving {
		t.Errorf("reload: %+v, want the plugin serving", pr)
	}
	if st, reason := rt.Slot("ver").Status(); st != StateReady {
		t.Errorf("after the reload: %s %q, want ready", st, reason)
	}
}
