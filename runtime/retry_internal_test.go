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
