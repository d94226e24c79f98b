package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// linkChain follows links one step at a time: each link met, and where
// the chain ends, built on resolved directories.
func TestLinkChain(t *testing.T) {
	dir := t.TempDir()
	// t.TempDir may itself be under a link (/tmp -> /private/tmp): the
	// names below are built from where it really is.
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	j := func(p ...string) string { return filepath.Join(append([]string{real}, p...)...) }
	os.MkdirAll(j("..v1"), 0o755)
	os.WriteFile(j("..v1", "config.toml"), nil, 0o644)
	symlink(t, "..v1", j("..data"))
	symlink(t, filepath.Join("..data", "config.toml"), j("config.toml"))
	os.MkdirAll(j("rel"), 0o755)
	os.MkdirAll(j("sub"), 0o755)
	os.WriteFile(j("rel", "b.wasm"), nil, 0o644)
	symlink(t, filepath.Join("..", "rel", "b.wasm"), j("sub", "s.wasm"))
	symlink(t, j("rel"), j("abs"))
	symlink(t, "loop2", j("loop1"))
	symlink(t, "loop1", j("loop2"))
	symlink(t, "missing.wasm", j("dangling.wasm"))

	for _, tc := range []struct {
		name string
		path string
		want []string
	}{
		{"a plain file", j("rel", "b.wasm"), []string{j("rel", "b.wasm")}},
		{"a missing file", j("nothing", "x.wasm"), []string{j("nothing", "x.wasm")}},
		{"a link to a file", j("sub", "s.wasm"), []string{j("sub", "s.wasm"), j("rel", "b.wasm")}},
		{"a ConfigMap mount", j("config.toml"), []string{j("config.toml"), j("..data"), j("..v1", "config.toml")}},
		{"through a directory link", j("..data", "config.toml"), []string{j("..data", "config.toml"), j("..data"), j("..v1", "config.toml")}},
		{"an absolute link", j("abs", "b.wasm"), []string{j("abs", "b.wasm"), j("abs"), j("rel", "b.wasm")}},
		{"a dangling link", j("dangling.wasm"), []string{j("dangling.wasm"), j("missing.wasm")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := linkChain(tc.path); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("linkChain(%s)\n got %q\nwant %q", tc.path, got, tc.want)
			}
		})
	}
	t.Run("a loop of links ends", func(t *testing.T) {
		if got := linkChain(j("loop1")); len(got) > maxLinks+2 {
			t.Errorf("linkChain of a loop: %d names", len(got))
		}
	})
}
