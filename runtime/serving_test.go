package runtime_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// The serving version and the config it was loaded with are read
// together: a reload installing a new version never pairs it with the
// previous version's config (the admin listing computes a plugin's
// ungranted imports from the two). Each reload changes limits.timeout,
// which each version keeps in its own limits. Before, the two were
// written one after the other without a lock the reader took (a data
// race, which `go test -race` reports here).
func TestServingPairsVersionAndConfig(t *testing.T) {
	v1 := guesttest.Build(t, "runtime/server/testdata/guests/ver1")
	cfg := func(timeout int) string {
		return fmt.Sprintf("[plugins.ver]\npath = %q\n[plugins.ver.limits]\ntimeout = \"%ds\"\n", v1, timeout)
	}
	in := servertest.Start(t, cfg(5), testOptions())
	slot := in.RT.Slot("ver")
	var stop atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				p, pc := slot.Serving()
				if p == nil || pc == nil {
					t.Error("no version serving during the reloads")
					return
				}
				if got, want := p.Limits().Timeout, time.Duration(pc.Limits.Timeout); got != want {
					t.Errorf("the serving version runs with timeout %s, the config read with it says %s", got, want)
					return
				}
				if slot.Config() == nil {
					t.Error("Config is nil while a version serves")
					return
				}
				reads.Add(1)
			}
		}()
	}
	for i := range 10 {
		in.SetConfig(cfg(6 + i%2))
		if res := in.Reload(t); res.Plugins["ver"].Outcome != runtime.OutcomeReloaded {
			t.Fatalf("reload %d: %+v", i, res.Plugins["ver"])
		}
	}
	stop.Store(true)
	wg.Wait()
	if reads.Load() == 0 {
		t.Fatal("no read during the reloads")
	}
}
