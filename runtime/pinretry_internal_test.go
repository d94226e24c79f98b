package runtime

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

// A reload whose pin stops the serving version, and whose new version
// failed on a database error that may pass, leaves the plugin retrying
// its load in the background, as a plugin with no version serving is:
// the new version serves once the database answers (a review found it
// failed for good until the next reload).
func TestPinStopThenDatabaseBack(t *testing.T) {
	defer func(first time.Duration) { retryFirst = first }(retryFirst)
	retryFirst = 200 * time.Millisecond
	target, err := url.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	v1 := guesttest.Build(t, "runtime/server/testdata/guests/ver1")
	v2 := guesttest.Build(t, "runtime/server/testdata/guests/ver2")
	b, err := os.ReadFile(v2)
	if err != nil {
		t.Fatal(err)
	}
	// The database is reached through addr, where nothing listens yet.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	via := *target
	via.Host = addr
	q := via.Query()
	q.Set("connect_timeout", "2")
	via.RawQuery = q.Encode()
	cache := filepath.Join(guesttest.CacheDir(), "runtime-test-cache")
	read := func(plugin string) *config.Config {
		text := fmt.Sprintf("[runtime]\ncache_dir = %q\n[scheduler]\nenabled = false\n[database]\nclient = \"pg\"\nconnection = %q\n%s", cache, via.String(), plugin)
		cfg, err := config.Read([]config.Source{{Name: "config.toml", Data: []byte(text)}}, func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	log, _ := logtest.NewNullLogger()
	rt, err := New(read(fmt.Sprintf("[plugins.ver]\npath = %q\n", v1)), log, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	rt.Load(context.Background())
	if rt.Slot("ver").Plugin() == nil {
		t.Fatal("v1 does not serve")
	}
	res, err := rt.Reload(context.Background(), read(fmt.Sprintf("[plugins.ver]\npath = %q\nsha256 = %q\n[plugins.ver.capabilities]\ndatabase = true\n", v2, plugin.SHA256(b))))
	if err != nil {
		t.Fatal(err)
	}
	if pr := res.Plugins["ver"]; pr.Serving {
		t.Fatalf("v1 serves on, pinned to v2: %+v", pr)
	}
	if st, why := rt.Slot("ver").Status(); st != StateRetrying {
		t.Errorf("with the database away: %s %q, want %s", st, why, StateRetrying)
	}
	// The database answers.
	pl, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	go func() {
		for {
			c, err := pl.Accept()
			if err != nil {
				return
			}
			go func() {
				s, err := net.Dial("tcp", target.Host)
				if err != nil {
					c.Close()
					return
				}
				go func() { io.Copy(s, c); s.Close() }()
				io.Copy(c, s)
				c.Close()
			}()
		}
	}()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && rt.Slot("ver").Plugin() == nil; {
		time.Sleep(100 * time.Millisecond)
	}
	if p := rt.Slot("ver").Plugin(); p == nil || p.Info().SHA256 != plugin.SHA256(b) {
		st, why := rt.Slot("ver").Status()
		t.Errorf("pinned v2 does not serve after the database came back: %s %q", st, why)
	}
}
