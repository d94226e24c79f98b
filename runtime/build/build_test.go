package build

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The hash of a plugin's sources must not depend on how its directory is
// spelled: callers with a relative and an absolute path share one build.
func TestSourceHashIgnoresSpelling(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\nfunc main() {}\n"), 0o644)
	abs, err := SourceHash(dir)
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := SourceHash(rel); got != abs {
		t.Errorf("relative %q hashes to %s, absolute to %s", rel, got, abs)
	}
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\nfunc main() { println() }\n"), 0o644)
	if changed, _ := SourceHash(dir); changed == abs {
		t.Error("a changed source does not change the hash")
	}
}

// The hash covers the packages of the plugin's module that it imports
// from outside its directory (an edit there must rebuild it), and ignores
// what Go ignores: an editor's lock file (a dangling .#main.go link) does
// not fail it. A plugin directory that is a symbolic link hashes as its
// target does.
func TestSourceHashModuleDepsAndIgnoredFiles(t *testing.T) {
	mod := t.TempDir()
	write := func(rel, text string) {
		t.Helper()
		p := filepath.Join(mod, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.test/m\n\ngo 1.26\n")
	write("lib/shared/shared.go", "package shared\n\nconst V = \"one\"\n")
	write("plugins/p/main.go", "package main\n\nimport \"example.test/m/lib/shared\"\n\nvar _ = shared.V\n\nfunc main() {}\n")
	write("unrelated/u.go", "package unrelated\n")
	dir := filepath.Join(mod, "plugins", "p")
	before, err := SourceHash(dir)
	if err != nil {
		t.Fatal(err)
	}
	write("unrelated/u.go", "package unrelated\n\nconst X = 1\n")
	if got, _ := SourceHash(dir); got != before {
		t.Error("an edit in a package the plugin does not import changed the hash")
	}
	write("lib/shared/shared.go", "package shared\n\nconst V = \"two\"\n")
	after, err := SourceHash(dir)
	if err != nil || after == before {
		t.Errorf("an edit in an imported package of the module left the hash as it was (%v)", err)
	}
	if err := os.Symlink("user@host.123:1700000000", filepath.Join(dir, ".#main.go")); err != nil {
		t.Fatal(err)
	}
	if got, err := SourceHash(dir); err != nil || got != after {
		t.Errorf("an editor's lock link: %v, hash changed %v", err, got != after)
	}
	link := filepath.Join(mod, "plugins", "linked")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if got, err := SourceHash(link); err != nil || got != after {
		t.Errorf("a symlinked plugin directory: %v, same hash %v", err, got == after)
	}
	// An imported package being edited into an import error stays an
	// input (go list fails without -e), so that the fix is seen.
	write("lib/shared/shared.go", "package shared\n\nimport \"example.test/m/nothere\"\n\nconst V = nothere.V\n")
	listed := false
	for _, in := range Inputs(dir) {
		listed = listed || in.Path == filepath.Join(mod, "lib", "shared")
	}
	if !listed {
		t.Errorf("a package with an import error is not among the inputs: %v", Inputs(dir))
	}
}

// The go command's words for a plugin without a module, or whose module
// does not get the SDK (its replace directive naming guest-sdk/ or no
// directory included: the go command's words said what it could not read),
// or that is no main package, come with the steps that fix them.
func TestBuildHint(t *testing.T) {
	for _, tc := range []struct {
		out, want string
	}{
		{"go: go.mod file not found in current directory or any parent directory; see 'go help modules'", "go mod init"},
		{"main.go:5:2: no required module provides package github.com/greenroom-dev/greenroom/guest-sdk/greenroom; to add it:", "-replace=github.com/greenroom-dev/greenroom="},
		{"go: github.com/greenroom-dev/greenroom@v0.0.1: reading https://proxy.golang.org/github.com/greenroom-dev/greenroom/@v/v0.0.1.mod: 403 Forbidden", "-replace="},
		// A replace naming guest-sdk/, or a directory not there.
		{"main.go:12:2: github.com/greenroom-dev/greenroom@v0.0.0 (replaced by /src/greenroom/guest-sdk): reading /src/greenroom/guest-sdk/go.mod: open /src/greenroom/guest-sdk/go.mod: no such file or directory", "the one holding its go.mod (not guest-sdk/)"},
		{"main.go:12:2: github.com/greenroom-dev/greenroom@v0.0.0: replacement directory /src/nonexist does not exist", "names the top directory of a checkout of greenroom"},
		// A plugin written as a library package.
		{"-buildmode=c-shared requires exactly one main package", "a plugin is a main package"},
		{"main.go:3:1: syntax error: non-declaration statement outside function body", ""},
		{"no required module provides package example.com/other/pkg", ""},
	} {
		got := buildHint(tc.out)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("buildHint(%q) = %q, want it to contain %q", tc.out, got, tc.want)
		}
	}
}

// The go build command the docs give a builder makes the bytes
// `greenroom plugin build` makes: the SDK's package doc gave one without
// -trimpath and -buildvcs=false, whose module matched no sha256 pin taken
// from the other.
func TestDocumentedBuildCommand(t *testing.T) {
	for _, f := range []string{"../../README.md", "../../docs/abi.md", "../../guest-sdk/greenroom/doc.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// A command continued on the next line (README.md's, in a
		// comment) is one line.
		text := regexp.MustCompile(`\\\n[#\s]*`).ReplaceAllString(string(b), " ")
		n := 0
		for _, line := range strings.Split(text, "\n") {
			if !strings.Contains(line, "GOOS=wasip1") || !strings.Contains(line, "go build") {
				continue
			}
			n++
			for _, want := range append(append([]string{}, buildEnv...), buildFlags...) {
				if !strings.Contains(line, want) {
					t.Errorf("%s: %q lacks %s, which greenroom plugin build gives", f, strings.TrimSpace(line), want)
				}
			}
		}
		if n == 0 {
			t.Errorf("%s gives no go build command for a plugin", f)
		}
	}
}
