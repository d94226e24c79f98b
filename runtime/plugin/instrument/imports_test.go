package instrument

import (
	"slices"
	"strings"
	"testing"
)

// Imports lists every import of every kind, in order, from the same reader
// the rewrite and CheckSizes use.
func TestImports(t *testing.T) {
	name := func(b []byte, s string) []byte { return append(appendU32(b, uint32(len(s))), s...) }
	imps := []byte{6}
	imps = append(name(name(imps, "wasi_snapshot_preview1"), "fd_write"), 0x00, 0)
	imps = append(name(name(imps, "env"), "g"), 0x03, 0x7f, 0x01)
	imps = append(name(name(imps, "greenroom"), "table"), 0x01, 0x70, 0x01, 0x01, 0x02)
	imps = append(name(name(imps, "env"), "mem"), 0x02, 0x00, 0x01)
	imps = append(name(name(imps, "env"), "tag"), 0x04, 0x00, 0)
	imps = append(name(name(imps, "greenroom"), "log_write"), 0x00, 0)
	wasm := module(section(1, 1, 0x60, 0, 0), section(2, imps...), section(3, 1, 0), section(10, 1, 2, 0, 0x0b))
	got, err := Imports(wasm)
	if err != nil {
		t.Fatal(err)
	}
	want := []Import{
		{"wasi_snapshot_preview1", "fd_write", ImportFunction},
		{"env", "g", ImportGlobal},
		{"greenroom", "table", ImportTable},
		{"env", "mem", ImportMemory},
		{"env", "tag", ImportTag},
		{"greenroom", "log_write", ImportFunction},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Imports = %v, want %v", got, want)
	}
	var kinds []string
	for _, imp := range got {
		kinds = append(kinds, imp.Kind.String())
	}
	if s := strings.Join(kinds, " "); s != "function global table memory tag function" {
		t.Errorf("kinds %s", s)
	}
	if f, g, m, err := countImports(imps); f != 2 || g != 1 || m != 1 || err != nil {
		t.Errorf("countImports = %d functions, %d globals, %d memories, %v; want 2, 1, 1", f, g, m, err)
	}

	if got, err := Imports(module(section(1, 1, 0x60, 0, 0))); got != nil || err != nil {
		t.Errorf("no import section: %v, %v", got, err)
	}
	for what, tc := range map[string]struct {
		wasm []byte
		want string
	}{
		"overstated count": {module(section(2, 0xff, 0xff, 0xff, 0xff, 0x0f, 0)), "4294967295 imports declared in 1 bytes"},
		"unknown kind":     {module(section(2, append(name(name([]byte{1}, "env"), "x"), 0x07, 0)...)), "import 0: unknown kind 0x07"},
		"truncated":        {module(section(2, append(name(name([]byte{2}, "env"), "x"), 0x00, 0, 0, 0)...)), "truncated"},
		"not wasm":         {[]byte("\x7fELF"), "not a WebAssembly"},
	} {
		if _, err := Imports(tc.wasm); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", what, err, tc.want)
		}
	}
}
