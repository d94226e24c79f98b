package runtime

import (
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/config"
)

// Every setting a reload cannot change keeps its running value: a reload
// of a config changing all of them, and then of the same config again,
// still lists them all as needing a restart (a setting withRunning forgot
// would be missing the second time, and its new value would pass for the
// running one).
func TestWithRunningKeepsEveryFixedSetting(t *testing.T) {
	running := config.Default()
	next := config.Default()
	next.Server.Listen = "127.0.0.1:1"
	next.Server.BodyLimit++
	next.Server.HeaderLimit++
	next.Server.ReadTimeout = config.Duration(time.Hour)
	next.Server.WriteTimeout = config.Duration(time.Hour)
	next.Server.IdleTimeout = config.Duration(time.Hour)
	next.Server.MetricsListen = "127.0.0.1:2"
	next.Server.MaxConnections++
	next.Server.RateBurst = 7
	next.Server.CORS.Origins = []string{"https://x.test"}
	next.Log.Format = "json"
	next.Runtime.CacheDir = "/elsewhere"
	next.Database.Client = "pg"
	next.Scheduler.Lease = config.Duration(time.Hour)
	next.Reading.MaxBytes++
	next.Integrations.GitHub = []config.Integration{{Host: "x.test"}}
	keys := restartNeeded(running, next)
	if len(keys) != len(fixedSettings)-1 { // all but rate_limit, left unchanged here
		t.Fatalf("restart needed for %v, want every fixed setting but server.rate_limit", keys)
	}
	kept := withRunning(next, running, keys)
	if again := restartNeeded(running, kept); len(again) != 0 {
		t.Errorf("withRunning did not keep the running value of %v", again)
	}
}
