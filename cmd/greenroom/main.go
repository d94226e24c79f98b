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
	"strings"

	"github.com/spf13/cobra"

	"github.com/greenroom-dev/greenroom/runtime/logging"
)

// exitError carries a process exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

// exitSecrets redacts the secrets of every config a command loaded from
// what the command prints itself: its final error (a listener address,
// a cache directory from ${VAR} quoted by the system's error) and the
// report of plugin inspect.
var exitSecrets logging.Redactor

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "greenroom: %s\n", exitSecrets.Redact([]byte(err.Error())))
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
	// Cobra adds its completion command when it runs: added now, it
	// follows the usage-error rules like every other command.
	root.InitDefaultCompletionCmd()
	usageErrors(root)
	return root
}

// usageErrors makes every mistake in how a command is called — an unknown
// command or subcommand, a wrong number of arguments, an unknown or
// incomplete flag — exit with code 2, like a config error, and not 0 (a
// script running `greenroom migrate down` must not see success) or 1 (a
// failure of the work itself). A command group called alone (greenroom,
// greenroom config) prints its help on stderr and exits 2 too, as the go
// command does: its subcommand is missing. So does help for an unknown
// topic.
func usageErrors(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 2, err: err} })
	if cmd.HasSubCommands() && cmd.Run == nil && cmd.RunE == nil {
		cmd.Args = cobra.NoArgs
		cmd.RunE = func(c *cobra.Command, _ []string) error {
			c.SetOut(c.ErrOrStderr())
			c.Help()
			return &exitError{code: 2, err: fmt.Errorf("%s needs a command (see above)", c.CommandPath())}
		}
	}
	if !cmd.HasParent() {
		cmd.SetHelpCommand(&cobra.Command{
			Use:   "help [command]",
			Short: "Help about any command",
			RunE: func(c *cobra.Command, args []string) error {
				target, rest, err := c.Root().Find(args)
				if err != nil || target == nil || len(rest) > 0 {
					return &exitError{code: 2, err: fmt.Errorf("unknown help topic %q (see %s --help)", strings.Join(args, " "), c.Root().Name())}
				}
				return target.Help()
			},
		})
	}
	if validate := cmd.Args; validate != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := validate(c, args); err != nil {
				return &exitError{code: 2, err: fmt.Errorf("%w (see %s --help)", err, c.CommandPath())}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		usageErrors(sub)
	}
}

func addConfigFlag(cmd *cobra.Command, files *[]string, def []string) {
	cmd.Flags().StringArrayVarP(files, "config", "c", def, "config file; repeat to merge several, later ones win key by key")
}
