package main

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/logging"
	"github.com/greenroom-dev/greenroom/runtime/server"
)

// reloader re-reads the config files and moves the running runtime and
// server to them: SIGHUP, POST /.greenroom/plugins/v1/reload and the file
// watchers all come here, one at a time.
type reloader struct {
	files    []string
	devToken string
	log      *logrus.Logger
	redactor *logging.Redactor
	rt       *runtime.Runtime
	srv      *server.Server

	mu sync.Mutex
}

func (rl *reloader) reload(ctx context.Context) (*runtime.ReloadResult, error) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	start := time.Now()
	cfg, err := config.Load(rl.files, nil)
	if err != nil {
		rl.log.WithError(err).Error("reload: config is invalid; nothing changed")
		return nil, err
	}
	if rl.devToken != "" && !cfg.Auth.DangerouslyDisable {
		addDevTokenValue(cfg, rl.devToken)
	}
	rl.redactor.AddSecrets(cfg.Secrets())
	if lvl, err := logrus.ParseLevel(cfg.Log.Level); err == nil {
		rl.log.SetLevel(lvl)
	}
	res, err := rl.rt.Reload(ctx, cfg)
	if err != nil {
		rl.log.WithError(err).Error("reload failed")
		return nil, err
	}
	rl.srv.Reload(rl.rt.Config())
	counts := map[string]int{}
	for _, p := range res.Plugins {
		counts[p.Outcome]++
	}
	rl.log.WithFields(logrus.Fields{"took": time.Since(start).Round(time.Millisecond).String(), "plugins": counts}).Info("reloaded")
	return res, nil
}

// startWatcher reloads when a plugin's file changes: its .wasm (serve
// --watch), or with sources (greenroom dev) any file of its source
// directory, which the reload then rebuilds. The config files are watched
// too. Changes are gathered for a short while, so that a build writing
// many files causes one reload.
func startWatcher(ctx context.Context, rl *reloader, sources bool) (stop func(), err error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	watched := map[string]bool{}
	add := func(dir string) {
		if !watched[dir] {
			if err := w.Add(dir); err == nil {
				watched[dir] = true
			}
		}
	}
	// relevant reports whether an event on name should cause a reload.
	var targets map[string]bool
	var sourceDirs []string
	refresh := func() {
		targets = map[string]bool{}
		sourceDirs = nil
		for _, f := range rl.files {
			abs, _ := filepath.Abs(f)
			targets[abs] = true
			add(filepath.Dir(abs))
		}
		for _, p := range rl.rt.Paths() {
			abs, _ := filepath.Abs(p)
			if st, err := os.Stat(abs); err == nil && st.IsDir() && sources {
				sourceDirs = append(sourceDirs, abs)
				// Its parent too: a directory deleted and made again
				// (git checkout, git stash) is seen coming back.
				add(filepath.Dir(abs))
				filepath.WalkDir(abs, func(path string, d fs.DirEntry, err error) error {
					if err == nil && d.IsDir() {
						if name := d.Name(); path != abs && (strings.HasPrefix(name, ".") || name == "testdata") {
							return filepath.SkipDir
						}
						add(path)
					}
					return nil
				})
				continue
			}
			targets[abs] = true
			add(filepath.Dir(abs))
		}
	}
	refresh()
	relevant := func(name string) bool {
		if targets[name] {
			return true
		}
		for _, d := range sourceDirs {
			if name == d || strings.HasPrefix(name, d+string(filepath.Separator)) && !strings.HasSuffix(name, ".wasm") && !strings.HasSuffix(name, ".tmp") && !strings.HasSuffix(name, ".building") {
				return true
			}
		}
		return false
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		const settle = 300 * time.Millisecond
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		for {
			select {
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0 {
					// A watched directory that goes away loses its watch:
					// forgotten, so that refresh watches it again once it
					// is back.
					delete(watched, ev.Name)
				}
				if ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) != 0 && relevant(ev.Name) {
					timer.Reset(settle)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				rl.log.WithError(err).Warn("file watcher")
			case <-timer.C:
				rl.log.Info("plugin or config files changed: reloading")
				rl.reload(ctx)
				// Also after a failed reload: what is there now is watched.
				refresh()
			case <-done:
				return
			}
		}
	}()
	return func() {
		close(done)
		w.Close()
		wg.Wait()
	}, nil
}
