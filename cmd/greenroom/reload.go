package main

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/build"
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
	// supersede cancels the reloads in progress (or waiting for mu) when
	// a newer one is asked for: the newer one re-reads every file anyway,
	// and its [auth] (a revoked token) must not wait for a slow plugin
	// load of an older one. Each reload's cancel is there until it
	// returns, all of them: several that read the same config (a second
	// SIGHUP) are there together, and a newer config cancels them all
	// (with only the last one's kept, the one loading went on, and the
	// newer one waited for it).
	supMu     sync.Mutex
	supersede map[*context.CancelCauseFunc]struct{}
	pending   *config.Config // the config the newest reload read first
	// applied is what the config files were like when the config in
	// force was read (serve sets it from before its first read, each reload applied after);
	// written under mu and supMu.
	applied []configStamp
}

func (rl *reloader) reload(ctx context.Context) (*runtime.ReloadResult, error) {
	return rl.reloadIf(ctx, nil)
}

// reloadIf is reload, which applies the config it read only when settled,
// called once it is read with the files' stamps from before the read and
// from the config in force, returns nil.
func (rl *reloader) reloadIf(ctx context.Context, settled func(read, applied []configStamp) error) (*runtime.ReloadResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Only a valid config that differs from the one the reload in
	// progress applies supersedes it: an invalid one changes nothing (and
	// must not cancel what the older one still had to load), and the
	// same one again (a storm of SIGHUPs) would only start its slow loads
	// over.
	preRead := configStamps(rl.files)
	pre, err := config.Load(rl.files, nil)
	if err != nil {
		rl.log.WithError(err).Error("reload: config is invalid; nothing changed")
		return nil, err
	}
	if settled != nil {
		// Nor does one the watcher would not apply (a file emptied or
		// changing while it is written): it cancelled the reload in
		// progress, then applied nothing.
		rl.supMu.Lock()
		applied := rl.applied
		rl.supMu.Unlock()
		if err := settled(preRead, applied); err != nil {
			return nil, err
		}
	}
	rl.supMu.Lock()
	if !reflect.DeepEqual(pre, rl.pending) {
		for c := range rl.supersede {
			(*c)(runtime.ErrSuperseded)
			delete(rl.supersede, c)
		}
	}
	if rl.supersede == nil {
		rl.supersede = map[*context.CancelCauseFunc]struct{}{}
	}
	key := &cancel
	rl.supersede[key], rl.pending = struct{}{}, pre
	rl.supMu.Unlock()
	defer func() {
		rl.supMu.Lock()
		delete(rl.supersede, key)
		rl.supMu.Unlock()
	}()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if errors.Is(context.Cause(ctx), runtime.ErrSuperseded) {
		// Superseded while it waited: the newer one reads the files.
		return nil, runtime.ErrSuperseded
	}
	if ctx.Err() != nil {
		// The shutdown has begun (serve cancels every reload's context
		// then): nothing changes, not even the credentials a reload
		// during the start-up load puts in force below, nor the log
		// level, as a SIGHUP then is ignored.
		return nil, runtime.ErrShuttingDown
	}
	start := time.Now()
	read := configStamps(rl.files)
	cfg, err := config.Load(rl.files, nil)
	if err != nil {
		rl.log.WithError(err).Error("reload: config is invalid; nothing changed")
		return nil, err
	}
	if settled != nil {
		if err := settled(read, rl.applied); err != nil {
			return nil, err
		}
	}
	if rl.devToken != "" && !cfg.Auth.DangerouslyDisable {
		addDevTokenValue(cfg, rl.devToken)
	}
	rl.redactor.AddSecrets(cfg.Secrets())
	exitSecrets.AddSecrets(cfg.Secrets())
	if lvl, err := logrus.ParseLevel(cfg.Log.Level); err == nil {
		rl.log.SetLevel(lvl)
	}
	if !rl.rt.Loaded() {
		// The start-up load holds the runtime until every plugin has
		// loaded (a slow initializer, long migrations), and the runtime's
		// reload waits for it: its credentials are put in force now, as a
		// reload puts them in force before it loads any plugin, so that a
		// token it revokes is not accepted meanwhile. (With the settings
		// that need a restart at their running values, as the reload
		// will apply them.)
		rl.srv.Reload(ctx, rl.rt.Effective(cfg))
	}
	res, err := rl.rt.Reload(ctx, cfg)
	if errors.Is(err, runtime.ErrShuttingDown) || errors.Is(err, runtime.ErrSuperseded) {
		// Not a failure: the shutdown, or a newer reload, decides.
		rl.log.WithError(err).Info("reload not applied")
		return nil, err
	}
	if err != nil {
		rl.log.WithError(err).Error("reload failed")
		return nil, err
	}
	rl.srv.Reload(ctx, rl.rt.Config())
	rl.supMu.Lock()
	rl.applied = read
	rl.supMu.Unlock()
	// One field per outcome (reloaded=1 unchanged=2), which the text
	// format prints as such (a map would print as Go's map[...]).
	fields := logrus.Fields{"took": time.Since(start).Round(time.Millisecond).String()}
	for _, p := range res.Plugins {
		n, _ := fields[p.Outcome].(int)
		fields[p.Outcome] = n + 1
	}
	if res.Canceled() && !res.Superseded {
		// Abandoned whole by the shutdown (runtime.Reload): nothing of
		// the plugins changed.
		rl.log.WithFields(fields).Info("reload not applied: the server is shutting down")
		return res, nil
	}
	rl.log.WithFields(fields).Info("reloaded")
	for _, w := range res.Warnings {
		rl.log.Warn("reload: " + w)
	}
	return res, nil
}

// startWatcher reloads when a plugin's file changes: its .wasm (serve
// --watch), or with sources (greenroom dev) any file of its source
// directory or of the other inputs of its build (build.Inputs), which the
// reload then rebuilds. The config files are watched
// too. A watched file reached through symbolic links is watched where
// each link is and where the chain ends (see linkChain), so a link's
// target replaced, or the link pointed elsewhere (a Kubernetes ConfigMap
// update), is seen. Changes are gathered for a short while, so that a
// build writing many files causes one reload.
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
	// sourceDirs are watched with their subdirectories, flatDirs (the
	// other local packages a plugin imports) only for their own files.
	var sourceDirs, flatDirs []string
	watchFile := func(abs string) {
		for _, name := range linkChain(abs) {
			targets[name] = true
			dir := filepath.Dir(name)
			add(dir)
			// A directory that is not there (deleted, to be made again):
			// its nearest existing ancestor is watched, and each missing
			// directory on the way is a target, so that its coming back
			// brings a refresh, which watches it, and a reload.
			for !watched[dir] {
				if _, err := os.Stat(dir); err == nil {
					break // there, but cannot be watched
				}
				targets[dir] = true
				parent := filepath.Dir(dir)
				if parent == dir {
					break
				}
				dir = parent
				add(dir)
			}
		}
	}
	// walk watches root's directories. A root reached through symbolic
	// links is walked where it ends, where the watcher reports its
	// events: that name is a source directory too, and the links on the
	// way are watched as files are.
	walk := func(root string) {
		if real, err := filepath.EvalSymlinks(root); err == nil && real != root {
			watchFile(root)
			sourceDirs = append(sourceDirs, real)
			root = real
		}
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
					return filepath.SkipDir
				}
				add(path)
			}
			return nil
		})
	}
	refresh := func() {
		targets = map[string]bool{}
		sourceDirs, flatDirs = nil, nil
		for _, f := range rl.files {
			abs, _ := filepath.Abs(f)
			watchFile(abs)
		}
		for _, p := range rl.rt.Paths() {
			abs, _ := filepath.Abs(p)
			if st, err := os.Stat(abs); err == nil && st.IsDir() && sources {
				sourceDirs = append(sourceDirs, abs)
				// Its parent too: a directory deleted and made again
				// (git checkout, git stash) is seen coming back.
				add(filepath.Dir(abs))
				walk(abs)
				// What else decides its build: go.mod and go.sum, the
				// SDK in greenroom's own module, the other local
				// packages it imports.
				for _, in := range build.Inputs(abs)[1:] {
					in.Path, _ = filepath.Abs(in.Path)
					switch st, err := os.Stat(in.Path); {
					case err == nil && st.IsDir() && in.Recurse:
						sourceDirs = append(sourceDirs, in.Path)
						walk(in.Path)
					case err == nil && st.IsDir():
						if real, err := filepath.EvalSymlinks(in.Path); err == nil {
							in.Path = real
						}
						flatDirs = append(flatDirs, in.Path)
						add(in.Path)
					default:
						watchFile(in.Path)
					}
				}
				continue
			}
			watchFile(abs)
		}
	}
	refresh()
	relevant := func(name string) bool {
		if targets[name] {
			return true
		}
		output := strings.HasSuffix(name, ".wasm") || strings.HasSuffix(name, ".tmp") || strings.HasSuffix(name, ".building")
		for _, d := range sourceDirs {
			if name == d || strings.HasPrefix(name, d+string(filepath.Separator)) && !output {
				return true
			}
		}
		for _, d := range flatDirs {
			if filepath.Dir(name) == d && !output {
				return true
			}
		}
		return false
	}

	// holdsTarget reports whether name is a directory on the way to a
	// watched file.
	holdsTarget := func(name string) bool {
		for t := range targets {
			if strings.HasPrefix(t, name+string(filepath.Separator)) {
				return true
			}
		}
		return false
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	// Each reload runs beside the event loop, which goes on seeing
	// changes meanwhile: a change while a reload loads a slow plugin
	// starts the next, which supersedes it (reloadIf) when the config
	// differs. Run in the loop, a reload held every later change (a
	// revoked token) until it had ended. ended tells the loop that a
	// reload returned, for refresh.
	ended := make(chan struct{}, 1)
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
				moved := false
				if ev.Op&(fsnotify.Remove|fsnotify.Rename|fsnotify.Create) != 0 {
					// A watched directory that goes away loses its watch,
					// and one whose name now is a new directory or link
					// (a link swapped by a rename) watches the old one:
					// forgotten, so that refresh watches what is there.
					// Renamed away (a deploy swapping directories), it
					// reports no event for the files in it: its own
					// event, or one for a directory on the way to a
					// target, is the change, and refresh then watches
					// the directory now under that name.
					moved = watched[ev.Name] || holdsTarget(ev.Name)
					delete(watched, ev.Name)
				}
				if ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) != 0 && (moved || relevant(ev.Name)) {
					timer.Reset(settle)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				rl.log.WithError(err).Warn("file watcher")
			case <-timer.C:
				if ctx.Err() != nil {
					// The shutdown has begun (the watcher runs on
					// through the drain): no reload would be applied.
					continue
				}
				rl.log.Info("plugin or config files changed: reloading")
				// Before the reload too: a link that now points elsewhere
				// is followed before the reload reads the files, so a
				// change there after the read is not missed.
				refresh()
				wg.Add(1)
				go func() {
					defer wg.Done()
					rl.reloadWatched(ctx)
					select {
					case ended <- struct{}{}:
					default: // a refresh is due already
					}
				}()
			case <-ended:
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

// reloadWatched is the file watcher's reload. A config file caught while
// it is being written is not applied: one that is empty now but was not
// when the config in force was read (an editor or a generator that
// truncates it first, or failed: "cmd > config.toml"), or one that changed
// while it was read. Either is valid TOML more often than not, and applied
// it would remove every plugin and credential until the write ends. A
// change while it was read brings its own event, and the reload after it;
// a file emptied on purpose is applied by SIGHUP or the reload endpoint.
// A file that was already empty (an overlay kept for local settings) is
// no reason to skip a reload: a plugin's new .wasm is still applied.
func (rl *reloader) reloadWatched(ctx context.Context) {
	rl.reloadIf(ctx, func(read, applied []configStamp) error {
		for i, st := range read {
			if st.ok && st.size == 0 && (i >= len(applied) || !applied[i].ok || applied[i].size != 0) {
				rl.log.WithField("file", rl.files[i]).Warn("config file is empty: the file watcher's reload does not apply it (a file being written?); write config files whole (a temporary file renamed over the old one), and send SIGHUP or POST /.greenroom/plugins/v1/reload to apply an empty config on purpose")
				return errors.New("config file is empty")
			}
		}
		after := configStamps(rl.files)
		for i := range read {
			if read[i] != after[i] {
				rl.log.WithField("file", rl.files[i]).Info("config file changed while it was read: reloading once the change settles")
				return errors.New("config file changed while it was read")
			}
		}
		return nil
	})
}

// configStamp is what reloadWatched compares of a config file before and
// after reading it.
type configStamp struct {
	ok   bool
	size int64
	mod  int64 // modification time, Unix nanoseconds
}

func configStamps(files []string) []configStamp {
	out := make([]configStamp, len(files))
	for i, f := range files {
		if st, err := os.Stat(f); err == nil {
			out[i] = configStamp{ok: true, size: st.Size(), mod: st.ModTime().UnixNano()}
		}
	}
	return out
}

// maxLinks bounds the links linkChain follows for one path, as the kernel
// bounds them: a loop of links ends there.
const maxLinks = 40

// linkChain returns the names whose change changes what the absolute,
// clean path names: path itself, each symbolic link met on the way to the
// file — a link to the file, or a directory component such as a
// Kubernetes ConfigMap's ..data — and the name the chain ends at. The
// links are resolved one step at a time, as the kernel does, and each
// name after path is built on its directory's resolved name, which is
// how the watcher reports events in that directory. A component that does
// not exist (yet) is taken as written. Without links it is just path.
func linkChain(path string) []string {
	const sep = string(filepath.Separator)
	names := []string{path}
	root := filepath.VolumeName(path) + sep
	done, rest := root, strings.TrimPrefix(path, root)
	for links := 0; rest != ""; {
		comp := rest
		rest = ""
		if i := strings.Index(comp, sep); i >= 0 {
			comp, rest = comp[:i], comp[i+1:]
		}
		switch comp {
		case "", ".":
			continue
		case "..":
			// done has no links left in it: its parent is its name's.
			done = filepath.Dir(done)
			continue
		}
		next := filepath.Join(done, comp)
		target, err := readLink(next)
		if err != nil || links == maxLinks {
			done = next
			continue
		}
		links++
		if !slices.Contains(names, next) {
			names = append(names, next)
		}
		if filepath.IsAbs(target) {
			root = filepath.VolumeName(target) + sep
			done, target = root, strings.TrimPrefix(target, root)
		}
		// The link's target stands for it; the rest follows it.
		rest = target + sep + rest
	}
	if !slices.Contains(names, done) {
		names = append(names, done)
	}
	return names
}

// readLink returns the target of the symbolic link name, and an error when
// name is not one (or is missing).
func readLink(name string) (string, error) {
	fi, err := os.Lstat(name)
	if err != nil {
		return "", err
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return "", fs.ErrInvalid
	}
	return os.Readlink(name)
}
