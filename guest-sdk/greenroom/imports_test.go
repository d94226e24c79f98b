package greenroom

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fileImports returns the import paths of the Go file f.
func fileImports(t *testing.T, fset *token.FileSet, f string) []string {
	t.Helper()
	src, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	af, err := parser.ParseFile(fset, f, src, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, imp := range af.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		paths = append(paths, path)
	}
	return paths
}

// inStandardLibrary says whether an import path is the standard
// library's: its first element has no dot.
func inStandardLibrary(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// The SDK must import nothing but the standard library, in every build
// (wasip1 and native): plugins pull it in, and the sandbox's promise is
// easier to keep with no third-party code inside every guest.
func TestImportsOnlyStandardLibrary(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		for _, path := range fileImports(t, fset, f) {
			if !inStandardLibrary(path) {
				t.Errorf("%s imports %s, which is not in the standard library", f, path)
			}
		}
		checked++
	}
	if checked < 3 {
		t.Fatalf("checked only %d files", checked)
	}
}

// The SDK's tests, and its internal packages, import only the standard
// library and the SDK's own packages: go mod tidy in a plugin's own
// module (require github.com/greenroom-dev/greenroom) loads the tests of
// every package the plugin imports, so a test of the SDK that imported
// the runtime (runtime/urlreader, runtime/config) made tidy list, and
// download, the runtime's dependencies (pgx, go-toml, ...) in every
// plugin's go.mod and go.sum, and fail offline. Compare with the runtime
// through a file the runtime's tests write instead
// (testdata/runtime_url_answers.json, urlparity_native_test.go).
func TestTestsImportOnlyStandardLibrary(t *testing.T) {
	const sdk = "github.com/greenroom-dev/greenroom/guest-sdk/"
	fset := token.NewFileSet()
	tests, internal := 0, 0
	err := filepath.WalkDir(".", func(f string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") && f != ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(f, ".go") {
			return nil
		}
		if filepath.Dir(f) == "." {
			if !strings.HasSuffix(f, "_test.go") {
				return nil // TestImportsOnlyStandardLibrary
			}
			tests++
		} else {
			internal++
		}
		for _, path := range fileImports(t, fset, f) {
			if !inStandardLibrary(path) && !strings.HasPrefix(path, sdk) {
				t.Errorf("%s imports %s, which is neither in the standard library nor the SDK's: go mod tidy in a plugin's module would list it and its dependencies", f, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if tests < 10 || internal < 1 {
		t.Fatalf("checked only %d test files and %d files of internal packages", tests, internal)
	}
}
