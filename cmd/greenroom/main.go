// Command greenroom runs backend plugins compiled to WebAssembly.
//
//	greenroom serve [--config FILE]... [--watch]   production: run built .wasm plugins
//	greenroom dev [--config FILE]...               build plugins from source, then serve
//	greenroom plugin build DIR [-o FILE]
//	greenroom plugin inspect FILE [--config FILE]
//	greenroom config check|print [--config FILE]...
//	greenroom migrate status|up [--config FILE]...
//	greenroom version
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "greenroom:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// newRoot builds the command tree. The CLI uses cobra: nested commands with
// repeated flags and generated help are what it is good at, and it is the
// most used Go CLI library.
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "greenroom",
		Short:         "Run backend plugins compiled to WebAssembly, sandboxed",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(), devCmd(), pluginCmd(), configCmd(), migrateCmd(), versionCmd())
	return root
}

func addConfigFlag(cmd *cobra.Command, files *[]string, def []string) {
	cmd.Flags().StringArrayVarP(files, "config", "c", def, "config file; repeat to merge several, later ones win key by key")
}
