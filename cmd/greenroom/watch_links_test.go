package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/build"
)

// testGuests builds the ver1 and ver2 test guests (cached) and copies them
// into dir, so that the watcher sees no other test's builds.
func testGuests(t *testing.T, dir string) (v1, v2 string) {
	t.Helper()
	cache := filepath.Join(os.TempDir(), "greenroom-test-guests")
	guests := filepath.Join("..", "..", "runtime", "server", "testdata", "guests")
	for _, g := range []struct {
		name string
		dst  *string
	}{{"ver1", &v1}, {"ver2", &v2}} {
		built, _, err := build.Cached(context.Background(), filepath.Join(guests, g.name), cache)
		if err != nil {
			t.Fatal(err)
		}
		*g.dst = filepath.Join(dir, g.name+".wasm")
		copyWasm(t, built, *g.dst)
	}
	return v1, v2
}

func symlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}

// serve --watch follows a plugin path that is a symbolic link: the file it
// points to, replaced atomically, is reloaded.
func TestServeWatchFollowsLinkedModule(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	v1, v2 := testGuests(t, t.TempDir())
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.MkdirAll(filepath.Join(dir, "rel"), 0o755)
	copyWasm(t, v1, filepath.Join(dir, "rel", "b.wasm"))
	symlink(t, filepath.Join("..", "rel", "b.wasm"), filepath.Join(dir, "sub", "ver.wasm"))
	addr := freeAddr(t)
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte(watchConfig(addr, filepath.Join(dir, "cache"), filepath.Join("sub", "ver.wasm"))), 0o644)
	runGreenroom(t, dir, addr, "serve", "--watch")
	url := "http://" + addr + "/api/ver/v"
	waitBody(t, url, "v1", 10*time.Second)
	copyWasm(t, v2, filepath.Join(dir, "rel", "b.wasm"))
	waitBody(t, url, "v2", 60*time.Second)

	// The link pointed elsewhere is seen, and then the file it points to
	// now, replaced: the watcher follows the link where it points now.
	os.MkdirAll(filepath.Join(dir, "rel2"), 0o755)
	copyWasm(t, v1, filepath.Join(dir, "rel2", "c.wasm"))
	swapLink(t, filepath.Join("..", "rel2", "c.wasm"), filepath.Join(dir, "sub", "ver.wasm"))
	waitBody(t, url, "v1", 60*time.Second)
	copyWasm(t, v2, filepath.Join(dir, "rel2", "c.wasm"))
	waitBody(t, url, "v2", 60*time.Second)
}

// swapLink points the link name at target atomically, as kubelet swaps a
// ConfigMap's ..data: a new link renamed over the old one.
func swapLink(t *testing.T, target, name string) {
	t.Helper()
	tmp := name + "_tmp"
	symlink(t, target, tmp)
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

// serve --watch follows a config file mounted from a Kubernetes ConfigMap:
// config.toml -> ..data/config.toml, ..data -> ..<version>, and an update
// swaps ..data to a new version directory, then removes the old one.
func TestServeWatchFollowsConfigMapSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	v1, v2 := testGuests(t, t.TempDir())
	addr := freeAddr(t)
	cache := filepath.Join(dir, "cache")
	version := func(name, wasm string) {
		os.MkdirAll(filepath.Join(dir, name), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name, "config.toml"), []byte(watchConfig(addr, cache, wasm)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", v1)
	symlink(t, "..v1", filepath.Join(dir, "..data"))
	symlink(t, filepath.Join("..data", "config.toml"), filepath.Join(dir, "config.toml"))
	runGreenroom(t, dir, addr, "serve", "--watch", "--config", "config.toml")
	url := "http://" + addr + "/api/ver/v"
	waitBody(t, url, "v1", 10*time.Second)

	version("..v2", v2)
	swapLink(t, "..v2", filepath.Join(dir, "..data"))
	os.RemoveAll(filepath.Join(dir, "..v1"))
	waitBody(t, url, "v2", 60*time.Second)

	// The next update too: the watcher follows where ..data points now.
	version("..v3", v1)
	swapLink(t, "..v3", filepath.Join(dir, "..data"))
	os.RemoveAll(filepath.Join(dir, "..v2"))
	waitBody(t, url, "v1", 60*time.Second)
}

// serveWatchedDir runs serve --watch in a new directory dir whose plugin
// ver is plugins/ver.wasm, first v1 (answering "v1" at url), and returns
// the two test guests' files.
func serveWatchedDir(t *testing.T) (dir, plugins, url, v1, v2 string) {
	dir = t.TempDir()
	v1, v2 = testGuests(t, t.TempDir())
	plugins = filepath.Join(dir, "plugins")
	os.MkdirAll(plugins, 0o755)
	copyWasm(t, v1, filepath.Join(plugins, "ver.wasm"))
	addr := freeAddr(t)
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte(watchConfig(addr, filepath.Join(dir, "cache"), filepath.Join("plugins", "ver.wasm"))), 0o644)
	runGreenroom(t, dir, addr, "serve", "--watch")
	url = "http://" + addr + "/api/ver/v"
	waitBody(t, url, "v1", 10*time.Second)
	return dir, plugins, url, v1, v2
}

// serve --watch keeps watching a plugin whose directory is deleted and,
// after a while, made again (a deploy that replaces the directory, git
// checkout): its .wasm in the new directory is loaded, and later changes
// to it are seen.
func TestServeWatchSeesDirectoryComeBack(t *testing.T) {
	t.Parallel()
	_, plugins, url, v1, v2 := serveWatchedDir(t)
	if err := os.RemoveAll(plugins); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // past the watcher's settling: the failed reload happens
	os.MkdirAll(plugins, 0o755)
	copyWasm(t, v2, filepath.Join(plugins, "ver.wasm"))
	waitBody(t, url, "v2", 60*time.Second)
	copyWasm(t, v1, filepath.Join(plugins, "ver.wasm"))
	waitBody(t, url, "v1", 60*time.Second)
}

// serve --watch keeps watching a plugin whose directory is renamed away
// and replaced by another (a deploy swapping directories by rename): a
// renamed directory reports no event for the files in it, and the
// watcher used to see none of that plugin's changes again (an audit).
func TestServeWatchSeesDirectoryRenamedAway(t *testing.T) {
	t.Parallel()
	dir, plugins, url, v1, v2 := serveWatchedDir(t)
	rename := func(from, to string) {
		t.Helper()
		if err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
			t.Fatal(err)
		}
	}
	// Swapped at once.
	os.MkdirAll(filepath.Join(dir, "new"), 0o755)
	copyWasm(t, v2, filepath.Join(dir, "new", "ver.wasm"))
	rename("plugins", "old")
	rename("new", "plugins")
	waitBody(t, url, "v2", 60*time.Second)
	copyWasm(t, v1, filepath.Join(plugins, "ver.wasm"))
	waitBody(t, url, "v1", 60*time.Second)
	// Renamed away, and a new one made a while later.
	rename("plugins", "older")
	time.Sleep(time.Second) // past the watcher's settling: the failed reload happens
	os.MkdirAll(plugins, 0o755)
	copyWasm(t, v2, filepath.Join(plugins, "ver.wasm"))
	waitBody(t, url, "v2", 60*time.Second)
}
