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
)

// Build compiles the Go package in dir to a wasm file at out.
func Build(ctx context.Context, dir, out string) error {
	if err := IsSource(dir); err != nil {
		return err
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
	cmd := exec.CommandContext(ctx, goTool(), "build", "-buildmode=c-shared", "-trimpath", "-buildvcs=false", "-o", tmp, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("build %s: go build failed: %w\n%s", dir, err, strings.TrimSpace(stderr.String()))
	}
	if err := os.Rename(tmp, absOut); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("build %s: %w", dir, err)
	}
	return nil
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
// in dir: its files (recursively, skipping hidden directories and testdata),
// and the go.mod and go.sum of its module, and the SDK sources when the
// plugin lives in the greenroom module itself.
func SourceHash(dir string) (string, error) {
	h := sha256.New()
	roots := []string{dir}
	if mod, err := findModuleRoot(dir); err == nil {
		for _, f := range []string{"go.mod", "go.sum"} {
			roots = append(roots, filepath.Join(mod, f))
		}
		sdk := filepath.Join(mod, "guest-sdk")
		if _, err := os.Stat(sdk); err == nil {
			roots = append(roots, sdk)
		}
	}
	for _, root := range roots {
		var files []string
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.IsDir() {
				name := d.Name()
				if path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasSuffix(path, ".wasm") {
				return nil
			}
			files = append(files, path)
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("hash sources of %s: %w", dir, err)
		}
		slices.Sort(files)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return "", fmt.Errorf("hash sources of %s: %w", dir, err)
			}
			// Names relative to their root: the hash must not depend on
			// how the caller spelled dir.
			rel, err := filepath.Rel(root, f)
			if err != nil {
				rel = filepath.Base(f)
			}
			fmt.Fprintf(h, "%s\x00%s\x00%d\x00", filepath.Base(root), filepath.ToSlash(rel), len(b))
			h.Write(b)
		}
	}
	fmt.Fprintf(h, "go=%s", goVersion())
	return hex.EncodeToString(h.Sum(nil)), nil
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

// Cached builds the plugin in dir into cacheDir unless a build of the same
// sources is already there, and returns the wasm file's path and whether it
// was rebuilt.
func Cached(ctx context.Context, dir, cacheDir string) (path string, rebuilt bool, err error) {
	sum, err := SourceHash(dir)
	if err != nil {
		return "", false, err
	}
	abs, _ := filepath.Abs(dir)
	where := sha256.Sum256([]byte(abs))
	name := filepath.Base(abs) + "-" + hex.EncodeToString(where[:4])
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
