package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/build"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/logging"
	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func versionString() string {
	v := version
	if v == "" {
		v = "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	return fmt.Sprintf("greenroom %s (ABI v%d)", v, hostfuncs.ABIVersion)
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print greenroom's version and the guest ABI it speaks",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), versionString())
		},
	}
}

func pluginCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "plugin", Short: "Build and inspect plugins"}
	var out string
	buildCmd := &cobra.Command{
		Use:   "build DIR",
		Short: "Build the Go plugin in DIR to WebAssembly (GOOS=wasip1 GOARCH=wasm -buildmode=c-shared)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if out == "" {
				var err error
				if out, err = build.DefaultOutput(dir); err != nil {
					return err
				}
			}
			if fi, err := os.Stat(out); err == nil && fi.IsDir() || strings.HasSuffix(out, "/") || strings.HasSuffix(out, string(filepath.Separator)) {
				return &exitError{code: 2, err: fmt.Errorf("-o %s is a directory: name the .wasm file to write", out)}
			}
			discard := false
			if fi, err := os.Stat(out); err == nil && !fi.Mode().IsRegular() {
				if out != os.DevNull {
					// Renamed over, a device or a pipe would be replaced
					// by a regular file (as root, /dev/null itself).
					return &exitError{code: 2, err: fmt.Errorf("-o %s is %s, not a regular file: name the .wasm file to write (it would be replaced by one)", out, plugin.FileKind(fi.Mode()))}
				}
				discard = true // -o /dev/null: build and check, keep nothing
			}
			// Built next to out and checked before it replaces out: a
			// module the runtime would refuse leaves the file there was (a
			// watching server keeps its plugin's file).
			tmp := out + ".building"
			if discard {
				d, err := os.MkdirTemp("", "greenroom-build-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(d)
				tmp = filepath.Join(d, "plugin.wasm")
			}
			if err := build.Build(cmd.Context(), dir, tmp); err != nil {
				os.Remove(tmp)
				return err
			}
			b, err := os.ReadFile(tmp)
			if err != nil {
				os.Remove(tmp)
				return err
			}
			// A Go main package builds whether or not it is a plugin: say
			// at once what the runtime would refuse.
			if _, err := plugin.Inspect(cmd.Context(), b, nil); err != nil {
				os.Remove(tmp)
				return fmt.Errorf("%s built, but it is not a greenroom plugin (not written to %s): %w", dir, out, err)
			}
			if discard {
				out = "(discarded)"
			} else if err := os.Rename(tmp, out); err != nil {
				os.Remove(tmp)
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s  %d bytes  sha256 %s\n", out, len(b), plugin.SHA256(b))
			return nil
		},
	}
	buildCmd.Flags().StringVarP(&out, "output", "o", "", "output file (default DIR/<DIR's base name>.wasm)")

	var cfgFiles []string
	var asJSON bool
	inspectCmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Describe a plugin module: ABI version, imports, exports, size, sha256, capabilities",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inspect(cmd, args[0], cfgFiles, asJSON)
		},
	}
	inspectCmd.Flags().StringArrayVarP(&cfgFiles, "config", "c", nil, "compare with the grants of the plugin that uses FILE in this config")
	inspectCmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(buildCmd, inspectCmd)
	return cmd
}

// inspection is what `plugin inspect` reports.
type inspection struct {
	File string `json:"file"`
	// SHA256 and ABIVersion repeat the module's at the top level, as the
	// admin API's plugin list has them.
	SHA256     string      `json:"sha256"`
	ABIVersion int         `json:"abi_version,omitempty"`
	Module     plugin.Info `json:"module"`
	Valid      bool        `json:"valid"`
	Error      string      `json:"error,omitempty"`
	// Grants has one entry per plugin of the config that uses the file
	// (several plugins may share one module).
	Grants []*grantReport `json:"grants,omitempty"`
}

type grantReport struct {
	Plugin    string   `json:"plugin"`
	Granted   []string `json:"granted"`
	Ungranted []string `json:"imported_not_granted"`
	Unused    []string `json:"granted_not_imported"`
	// Interruptible is limits.interruptible: false, the plugin's loops
	// are not interrupted at its timeout (the operator's opt-out);
	// config.Redacted when it comes from the environment.
	Interruptible any `json:"interruptible"`
	// Limits are the plugin's limits in effect, as the admin API shows
	// them: one from the environment (or computed from one) is
	// [REDACTED], which the redaction of the secret as written misses
	// decoded ("32MiB" for "33554432").
	Limits *config.ShownLimits `json:"limits"`
	pc     *config.Plugin
}

func inspect(cmd *cobra.Command, file string, cfgFiles []string, asJSON bool) error {
	wasm, err := plugin.ReadModule(file)
	if err != nil {
		return err
	}
	info, verr := plugin.Inspect(cmd.Context(), wasm, nil)
	// Lists are lists in the JSON, empty ones too (not null).
	if info.Imports == nil {
		info.Imports = []plugin.Import{}
	}
	if info.Exports == nil {
		info.Exports = []string{}
	}
	if info.Capabilities == nil {
		info.Capabilities = []string{}
	}
	rep := inspection{File: file, SHA256: info.SHA256, ABIVersion: info.ABIVersion, Module: info, Valid: verr == nil}
	if verr != nil {
		rep.Error = verr.Error()
	}
	if len(cfgFiles) > 0 {
		cfg, err := loadConfig(cfgFiles)
		if err != nil {
			return err
		}
		ids := pluginsForFile(cfg, file, info.SHA256)
		if len(ids) == 0 {
			return fmt.Errorf("no plugin in %s uses %s (matched by path, sha256 pin, or as the build of a plugin's source directory: DIR/<name>.wasm or greenroom dev's)", strings.Join(cfgFiles, ", "), file)
		}
		// What serve would also refuse with this config, for each plugin
		// that uses the file: the module's bytes against the pin, its
		// memory at start against the cap.
		var cerrs []string
		for _, id := range ids {
			pc := cfg.Plugins[id]
			rep.Grants = append(rep.Grants, compareGrants(id, pc, info.Capabilities))
			if pc.SHA256 != "" && !strings.EqualFold(pc.SHA256, info.SHA256) {
				cerrs = append(cerrs, fmt.Sprintf("plugin %s: sha256 pin mismatch: config pins %s, file is %s", id, pc.SHA256, info.SHA256))
			}
			if need := uint64(info.MemoryMinPages) * 65536; pc.Limits.Memory > 0 && need > uint64(pc.Limits.Memory) {
				// A cap from the environment is not told decoded (the
				// redaction below matches "1MiB", not "1048576").
				limit := strconv.FormatUint(uint64(pc.Limits.Memory), 10) + " bytes"
				if cfg.IsSecretPath("plugins." + id + ".limits.memory") {
					limit = logging.Redacted
				}
				cerrs = append(cerrs, fmt.Sprintf("plugin %s: module needs %d bytes of memory at start, over plugins.%s.limits.memory (%s)", id, need, id, limit))
			}
		}
		if len(cerrs) > 0 {
			if verr != nil {
				cerrs = append([]string{verr.Error()}, cerrs...)
			}
			verr = errors.New(strings.Join(cerrs, "; "))
			rep.Valid, rep.Error = false, verr.Error()
		}
	}
	// The report quotes the config (a pin, grants), whose ${VAR} values
	// are secrets.
	var out bytes.Buffer
	redact := exitSecrets.Redact
	if asJSON {
		enc := json.NewEncoder(&out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
		redact = exitSecrets.RedactJSON
	} else {
		printInspection(&out, rep)
	}
	if _, err := cmd.OutOrStdout().Write(redact(out.Bytes())); err != nil {
		return err
	}
	if verr != nil {
		return &exitError{code: 1, err: fmt.Errorf("%s would be refused: %w", file, verr)}
	}
	return nil
}

// pluginsForFile returns the ids, sorted, of the plugins in cfg whose
// module is file: by its sha256 pin, by its path, or as the same file
// under another name (a symbolic or hard link). A plugin whose path is a
// Go source directory (for greenroom dev, as the repository's config.toml
// has them) uses the modules built from it: `plugin build DIR`'s default
// output DIR/<base name>.wasm, the DIR/<id>.wasm that serve's refusal of
// a source directory says to build, and greenroom dev's builds in
// runtime.cache_dir. Such a file was not matched: the operator who built
// it as serve said could not inspect it against the config.
func pluginsForFile(cfg *config.Config, file, sum string) []string {
	abs, _ := filepath.Abs(file)
	fi, ferr := os.Stat(file)
	cacheDir := cfg.Resolve("runtime.cache_dir", cfg.Runtime.CacheDir)
	var ids []string
	for id, pc := range cfg.Plugins {
		if pc.SHA256 != "" && strings.EqualFold(pc.SHA256, sum) {
			ids = append(ids, id)
			continue
		}
		path := runtime.PluginPath(cfg, id)
		if pa, _ := filepath.Abs(path); pa == abs {
			ids = append(ids, id)
			continue
		}
		pi, err := os.Stat(path)
		if err != nil || ferr != nil || !fi.Mode().IsRegular() {
			continue
		}
		if pi.Mode().IsRegular() && os.SameFile(fi, pi) || pi.IsDir() && builtFrom(path, id, file, fi, cacheDir) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// builtFrom reports whether file (fi) is a module built from the plugin
// sources in dir for plugin id (see pluginsForFile).
func builtFrom(dir, id, file string, fi os.FileInfo, cacheDir string) bool {
	outs := []string{filepath.Join(dir, id+".wasm")}
	if out, err := build.DefaultOutput(dir); err == nil {
		outs = append(outs, out)
	}
	for _, out := range outs {
		if oi, err := os.Stat(out); err == nil && os.SameFile(fi, oi) {
			return true
		}
	}
	return build.IsCachedBuild(dir, cacheDir, file)
}

func compareGrants(id string, pc *config.Plugin, imported []string) *grantReport {
	g := &grantReport{Plugin: id, Granted: pc.Granted(), Ungranted: []string{}, Unused: []string{}, Interruptible: pc.Limits.Interruptible, Limits: pc.ShownLimits(), pc: pc}
	if pc.LimitSecret("interruptible") {
		g.Interruptible = config.Redacted
	}
	if g.Granted == nil {
		g.Granted = []string{} // a list in the JSON, as in the admin API
	}
	for _, c := range imported {
		if !slices.Contains(g.Granted, c) {
			g.Ungranted = append(g.Ungranted, c)
		}
	}
	for _, c := range g.Granted {
		if !slices.Contains(imported, c) {
			g.Unused = append(g.Unused, c)
		}
	}
	return g
}

func printInspection(w interface{ Write([]byte) (int, error) }, r inspection) {
	m := r.Module
	fmt.Fprintf(w, "file:          %s\n", r.File)
	fmt.Fprintf(w, "size:          %d bytes\n", m.Size)
	fmt.Fprintf(w, "sha256:        %s\n", m.SHA256)
	if m.ABIVersion > 0 {
		fmt.Fprintf(w, "abi version:   %d\n", m.ABIVersion)
	} else {
		fmt.Fprintf(w, "abi version:   none declared\n")
	}
	fmt.Fprintf(w, "capabilities:  %s\n", listOrNone(m.Capabilities))
	exports := make([]string, len(m.Exports))
	for i, e := range m.Exports {
		exports[i] = plugin.ShownName(e)
	}
	fmt.Fprintf(w, "exports:       %s\n", listOrNone(exports))
	fmt.Fprintf(w, "imports:\n")
	for _, imp := range m.Imports {
		c := ""
		if imp.Capability != "" {
			c = "  (" + imp.Capability + ")"
		}
		if imp.Kind != "" {
			c += "  (" + imp.Kind + ")"
		}
		fmt.Fprintf(w, "  %s.%s%s\n", plugin.ShownName(imp.Module), plugin.ShownName(imp.Name), c)
	}
	for _, g := range r.Grants {
		fmt.Fprintf(w, "config plugin: %s\n", g.Plugin)
		fmt.Fprintf(w, "  granted:              %s\n", listOrNone(g.Granted))
		fmt.Fprintf(w, "  imported, not granted: %s\n", listOrNone(g.Ungranted))
		fmt.Fprintf(w, "  granted, not imported: %s\n", listOrNone(g.Unused))
		switch g.Interruptible {
		case true:
			fmt.Fprintf(w, "  interrupted at its timeout: yes\n")
		case false:
			fmt.Fprintf(w, "  interrupted at its timeout: NO (limits.interruptible = false: its loops run on past limits.timeout; only for vetted plugins)\n")
		default:
			fmt.Fprintf(w, "  interrupted at its timeout: %s (limits.interruptible comes from the environment)\n", config.Redacted)
		}
		l := g.pc.Limits
		shown := func(key string, v any) any {
			if g.pc.LimitSecret(key) {
				return config.Redacted
			}
			return v
		}
		fmt.Fprintf(w, "  limits:               memory %v, timeout %v, instances %v, queue_timeout %v, max_requests %v, retire_memory %v, max_response %v\n",
			shown("memory", l.Memory), shown("timeout", l.Timeout), shown("instances", l.Instances), shown("queue_timeout", l.QueueTimeout),
			shown("max_requests", l.MaxRequests), shown("retire_memory", l.RetireMemory), shown("max_response", l.MaxResponse))
	}
	if r.Valid {
		fmt.Fprintf(w, "valid:         yes\n")
	} else {
		fmt.Fprintf(w, "valid:         no: %s\n", r.Error)
	}
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// pluginFileProblems says which plugins' files config check can already
// tell will not load: missing, unreadable, not a WebAssembly module, or
// not the module its sha256 pin names. A directory passes (greenroom dev
// builds a Go source directory; serve then says to build it). Each problem
// starts with the file:line that set the path (the pin's, for a pin), and
// they come ordered by file and line, as the config's own errors.
func pluginFileProblems(cfg *config.Config) []string {
	var problems config.Errors
	for _, id := range slices.Sorted(maps.Keys(cfg.Plugins)) {
		key := "plugins." + id + ".path"
		problem := func(format string, args ...any) {
			problems = append(problems, &config.Error{Origin: cfg.Origin(key), Key: key, Msg: fmt.Sprintf(format, args...)})
		}
		path := runtime.PluginPath(cfg, id)
		fi, err := os.Stat(path)
		switch {
		case err != nil:
			problem("%v", err)
			continue
		case fi.IsDir():
			continue
		case !fi.Mode().IsRegular():
			problem("%s is not a regular file", path)
			continue
		case fi.Size() > plugin.MaxModuleSize:
			problem("%s: %d bytes, more than %d MiB, the largest module greenroom loads", path, fi.Size(), plugin.MaxModuleSize>>20)
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			problem("%v", err)
			continue
		}
		head := make([]byte, 8)
		n, _ := io.ReadFull(f, head)
		if !bytes.Equal(head[:n], []byte("\x00asm\x01\x00\x00\x00")) {
			f.Close()
			problem("%s is not a WebAssembly module (a .wasm file starts with \\0asm, version 1)", path)
			continue
		}
		pin := strings.ToLower(strings.TrimSpace(cfg.Plugins[id].SHA256))
		if pin == "" {
			f.Close()
			continue
		}
		h := sha256.New()
		h.Write(head[:n])
		_, err = io.Copy(h, f)
		f.Close()
		switch sum := hex.EncodeToString(h.Sum(nil)); {
		case err != nil:
			problem("%v", err)
		case sum != pin:
			key = "plugins." + id + ".sha256"
			problem("sha256 pin mismatch: config pins %s, %s is %s", pin, path, sum)
		}
	}
	problems.Sort(cfg.Files)
	out := make([]string, len(problems))
	for i, p := range problems {
		out[i] = p.Error()
	}
	return out
}

func configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Check or print the effective config"}
	var files []string
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the config files and report their errors at once (the first 100)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(files)
			if err != nil {
				return err
			}
			if problems := pluginFileProblems(cfg); len(problems) > 0 {
				files := "plugin files cannot"
				if len(problems) == 1 {
					files = "plugin file cannot"
				}
				return fmt.Errorf("config: %d %s be loaded (the config itself is valid):\n  %s", len(problems), files, strings.Join(problems, "\n  "))
			}
			for _, w := range cfg.Warnings() {
				// A plugin id may come from ${VAR}: a secret.
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", exitSecrets.Redact([]byte(w)))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "config OK: %s (%d plugins)\n", strings.Join(cfg.Files, ", "), len(cfg.Plugins))
			return nil
		},
	}
	addConfigFlag(check, &files, []string{"config.toml"})
	var pfiles []string
	print := &cobra.Command{
		Use:   "print",
		Short: "Print the effective merged config, secrets shown as [REDACTED]",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(pfiles)
			if err != nil {
				return err
			}
			b, err := cfg.Print()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	addConfigFlag(print, &pfiles, []string{"config.toml"})
	cmd.AddCommand(check, print)
	return cmd
}
