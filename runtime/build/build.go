// Package build compiles Go plugin sources to WebAssembly with the standard
// Go toolchain (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared) and caches the
// result by a hash of the sources.
package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Build compiles the Go package in dir to a wasm file at out.
func Build(ctx context.Context, dir, out string) error {
	if err := IsSource(dir); err != nil {
		return err
	}
	// The go command finds the module from its working directory as
	// named: a plugin directory reached through a link is built where
	// it is, inside its module.
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(absOut), 0o755); err != nil {
		return fmt.Errorf("build %s: %w", dir, err)
	}
	// A unique temporary name: concurrent builds of one plugin (two test
	// binaries, two replicas) must not write into each other's file.
	f, err := os.CreateTemp(filepath.Dir(absOut), filepath.Base(absOut)+".*.tmp")
	if err != nil {
		return fmt.Errorf("build %s: %w", dir, err)
	}
	tmp := f.Name()
	f.Close()
	cmd := exec.CommandContext(ctx, goTool(), append(append([]string{"build"}, buildFlags...), "-o", tmp, ".")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), buildEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		out := strings.TrimSpace(stderr.String())
		return fmt.Errorf("build %s: go build failed: %w\n%s%s", dir, err, out, buildHint(out))
	}
	if err := os.Rename(tmp, absOut); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("build %s: %w", dir, err)
	}
	return nil
}

// buildEnv and buildFlags make the go command build a plugin, the same
// bytes from the same sources anywhere (README.md, docs/abi.md and the
// SDK's package doc give the command: TestDocumentedBuildCommand).
var (
	buildEnv   = []string{"GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0"}
	buildFlags = []string{"-buildmode=c-shared", "-trimpath", "-buildvcs=false"}
)

// sdkModule is the module the guest SDK is a package of.
const sdkModule = "github.com/greenroom-dev/greenroom"

// buildHint is what to add to go build's output (out) when it says that
// the plugin has no module, or that its module does not get the SDK: the
// two first steps of a plugin outside greenroom's repository, which the go
// command's own words do not explain; or that the plugin is no main
// package, which -buildmode=c-shared says in its own terms.
func buildHint(out string) string {
	const setup = "go mod init <module path>` in the plugin's directory, then `go mod edit -require=" + sdkModule + "@v0.0.0 -replace=" + sdkModule + "=<a checkout of greenroom>` (README.md, \"A plugin in its own module\")"
	switch {
	case strings.Contains(out, "-buildmode=c-shared requires exactly one main package"):
		return "\nhint: a plugin is a main package: `package main` with an empty `func main() {}`, registering its handler with greenroom.Handle from an init function (README.md, \"A plugin in ten lines\")"
	case strings.Contains(out, "go.mod file not found"):
		return "\nhint: a plugin is built as a Go module: run `" + setup
	case strings.Contains(out, sdkModule) && (strings.Contains(out, "no required module provides package") ||
		strings.Contains(out, "reading https://") || strings.Contains(out, "missing go.sum entry") || strings.Contains(out, "cannot find module")):
		return "\nhint: the guest SDK comes from a checkout of greenroom: in the plugin's module run `go mod edit -require=" + sdkModule + "@v0.0.0 -replace=" + sdkModule + "=<a checkout of greenroom>` (README.md, \"A plugin in its own module\")"
	case strings.Contains(out, sdkModule+"@") && (strings.Contains(out, "replacement directory") || strings.Contains(out, "(replaced by ")):
		// A replace naming guest-sdk/ (where the package is) or a
		// directory that is not there: the go command says what it
		// could not read, not what the directory should be.
		return "\nhint: the replace directive for " + sdkModule + " names the top directory of a checkout of greenroom, the one holding its go.mod (not guest-sdk/): `go mod edit -replace=" + sdkModule + "=<a checkout of greenroom>` (README.md, \"A plugin in its own module\")"
	}
	return ""
}

// goTool returns the go command of the toolchain running us, so that a
// `go run` or `go test` builds plugins with the same Go.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// IsSource reports, as a nil error, whether dir is a directory of Go
// sources (a plugin's source tree rather than a built .wasm file).
func IsSource(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	if len(matches) == 0 {
		return fmt.Errorf("%s contains no Go files", dir)
	}
	return nil
}

// SourceHash hashes everything that decides the build output of the plugin
// in dir: the files of its Inputs (skipping what Go ignores: names
// starting with . or _, and testdata) and the Go version.
func SourceHash(dir string) (string, error) {
	h := sha256.New()
	for _, r := range Inputs(dir) {
		if p, err := filepath.EvalSymlinks(r.Path); err == nil {
			r.Path = p // a plugin directory that is a link hashes as its target
		}
		files, err := sourceFiles(r.Path, r.Recurse)
		if err != nil {
			return "", fmt.Errorf("hash sources of %s: %w", dir, err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return "", fmt.Errorf("hash sources of %s: %w", dir, err)
			}
			// Names relative to their root: the hash must not depend on
			// how the caller spelled dir.
			rel, err := filepath.Rel(r.Path, f)
			if err != nil {
				rel = filepath.Base(f)
			}
			fmt.Fprintf(h, "%s\x00%s\x00%d\x00", filepath.Base(r.Path), filepath.ToSlash(rel), len(b))
			h.Write(b)
		}
	}
	fmt.Fprintf(h, "go=%s", goVersion())
	return hex.EncodeToString(h.Sum(nil)), nil
}

// sourceFiles lists, sorted, the files under root (root itself when it is
// a file; its subdirectories too when recurse) that can decide a build:
// not the names Go ignores (starting with . or _, an editor's lock or
// swap file among them), not testdata, not .wasm outputs. A root that is a
// symbolic link is followed; a link inside it to a directory, or to
// nothing, is skipped.
func sourceFiles(root string, recurse bool) ([]string, error) {
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	} else if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (!recurse || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) || strings.HasSuffix(path, ".wasm") {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
				return nil
			}
		}
		files = append(files, path)
		return nil
	})
	slices.Sort(files)
	return files, err
}

// Input is a file or directory whose content decides a build.
type Input struct {
	Path string
	// Recurse: the directory's subdirectories count too (else only its
	// own files).
	Recurse bool
}

// Inputs are what decides a build of the plugin in dir (dir first), and what
// SourceHash reads: dir (recursively), the go.mod and go.sum of its
// module, the SDK sources when the plugin lives in the greenroom module
// itself, and the directory of every other package it imports that is
// not the standard library's or in the module cache (its own module's
// packages, and modules replaced by a local directory).
func Inputs(dir string) []Input {
	roots := []Input{{dir, true}}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real // its module is where it is, not where a link to it is
	}
	if mod, err := findModuleRoot(dir); err == nil {
		for _, f := range []string{"go.mod", "go.sum"} {
			roots = append(roots, Input{filepath.Join(mod, f), false})
		}
		sdk := filepath.Join(mod, "guest-sdk")
		if _, err := os.Stat(sdk); err == nil {
			roots = append(roots, Input{sdk, true})
		}
		// Every other local package the plugin imports: its files
		// decide the build as much as the plugin's own.
		for _, d := range localDeps(dir) {
			if !within(d, dir) && !within(d, sdk) {
				roots = append(roots, Input{d, false})
			}
		}
	}
	return roots
}

// localDeps returns the directories of the packages that the package in
// dir imports, directly or not (go list -deps, for wasip1), other than the
// standard library's and those in the module cache, or nil when go list
// fails (the build then reports why).
func localDeps(dir string) []string {
	// Bounded: go list may try the network for a module it lacks (the
	// build then fails and says so).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// -e: a package with an import error (being edited) is still listed,
	// so that it stays watched and hashed.
	cmd := exec.CommandContext(ctx, goTool(), "list", "-e", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		return nil
	}
	cache := goModCache()
	var dirs []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" && (cache == "" || !within(l, cache)) {
			dirs = append(dirs, l)
		}
	}
	return dirs
}

// goModCache is the module cache's directory, whose modules never change.
var goModCache = sync.OnceValue(func() string {
	out, err := exec.Command(goTool(), "env", "GOMODCACHE").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
})

// within reports whether path is dir or lies under it.
func within(path, dir string) bool {
	a, err1 := filepath.Abs(path)
	b, err2 := filepath.Abs(dir)
	if err1 != nil || err2 != nil {
		return false
	}
	if r, err := filepath.EvalSymlinks(a); err == nil {
		a = r
	}
	if r, err := filepath.EvalSymlinks(b); err == nil {
		b = r
	}
	rel, err := filepath.Rel(b, a)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

var goVersion = sync.OnceValue(func() string {
	out, err := exec.Command(goTool(), "env", "GOVERSION").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
})

func findModuleRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("no go.mod found")
		}
		d = parent
	}
}

// cacheName is how Cached names the builds of the plugin in dir, before
// "-<source hash>.wasm": the directory's base name and a hash of its
// absolute path.
func cacheName(dir string) string {
	abs, _ := filepath.Abs(dir)
	where := sha256.Sum256([]byte(abs))
	return filepath.Base(abs) + "-" + hex.EncodeToString(where[:4])
}

// DefaultOutput is where `greenroom plugin build DIR` writes the module
// without -o: DIR/<base name of DIR>.wasm.
func DefaultOutput(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(abs)+".wasm"), nil
}

// IsCachedBuild reports whether file is a build that Cached made in
// cacheDir of the plugin in dir (of any version of its sources).
func IsCachedBuild(dir, cacheDir, file string) bool {
	rest, ok := strings.CutPrefix(filepath.Base(file), cacheName(dir)+"-")
	if !ok {
		return false
	}
	sum, ok := strings.CutSuffix(rest, ".wasm")
	if _, err := hex.DecodeString(sum); !ok || err != nil || len(sum) != 16 {
		return false
	}
	fi, ferr := os.Stat(filepath.Dir(file))
	ci, cerr := os.Stat(filepath.Join(cacheDir, "plugins"))
	return ferr == nil && cerr == nil && os.SameFile(fi, ci)
}

// Cached builds the plugin in dir into cacheDir unless a build of the same
// sources is already there, and returns the wasm file's path and whether it
// was rebuilt.
func Cached(ctx context.Context, dir, cacheDir string) (path string, rebuilt bool, err error) {
	sum, err := SourceHash(dir)
	if err != nil {
		return "", false, err
	}
	name := cacheName(dir)
	path = filepath.Join(cacheDir, "plugins", name+"-"+sum[:16]+".wasm")
	if _, err := os.Stat(path); err == nil {
		return path, false, nil
	}
	if err := Build(ctx, dir, path); err != nil {
		return "", false, err
	}
	// Old builds of the same plugin are no longer needed.
	olds, _ := filepath.Glob(filepath.Join(cacheDir, "plugins", name+"-*.wasm"))
	for _, o := range olds {
		if o != path {
			os.Remove(o)
		}
	}
	return path, true, nil
}
