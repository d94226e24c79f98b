package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/database"
	"github.com/greenroom-dev/greenroom/runtime/logging"
)

func migrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Show or apply database migrations (the runtime's and the plugins')",
	}
	var sfiles, ufiles []string
	status := &cobra.Command{
		Use:   "status",
		Short: "List the runtime's migrations (applied or pending) and every plugin migration applied",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(sfiles)
			if err != nil {
				return err
			}
			log, _, err := logging.New(os.Stderr, cfg.Log.Format, "warn", cfg.Secrets())
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			st, err := database.Status(ctx, runtime.DatabaseConfig(cfg), log)
			if err != nil {
				return err
			}
			return writeStatus(cmd.OutOrStdout(), st)
		},
	}
	addConfigFlag(status, &sfiles, []string{"config.toml"})
	up := &cobra.Command{
		Use:   "up",
		Short: "Apply the runtime's pending migrations, then load every plugin granted the database to apply its own",
		Long: `Apply the runtime's pending migrations, then load every plugin granted the
database to apply its pending migrations, and exit. This is how migrations
are applied when database.skip_migrations is set. Plugin paths that name Go
source directories are built first, as greenroom dev does.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(ufiles)
			if err != nil {
				return err
			}
			cfg.Database.SkipMigrations = false
			log, _, err := logging.New(os.Stderr, cfg.Log.Format, cfg.Log.Level, cfg.Secrets())
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			for id, pc := range cfg.Plugins {
				if !pc.Capabilities.Database {
					delete(cfg.Plugins, id)
				}
			}
			rt, err := runtime.New(cfg, log, runtime.Options{BuildSources: true})
			if err != nil {
				return err
			}
			ctx := context.Background()
			defer rt.Close(ctx)
			if err := rt.Database().Open(ctx); err != nil {
				return fmt.Errorf("database: %w", err)
			}
			rt.Load(ctx)
			// What this run applied: not what other replicas (or another
			// migrate up) applied meanwhile. Each migration applied is
			// logged (to stderr) as it is.
			applied := rt.Database().Applied()
			fmt.Fprintf(cmd.OutOrStdout(), "runtime: %s\n", appliedNow(applied[""]))
			failed := 0
			for _, id := range rt.IDs() {
				st, reason := rt.Slot(id).Status()
				if st != runtime.StateReady {
					failed++
					if !strings.HasPrefix(reason, "plugin "+id+": ") {
						reason = "plugin " + id + ": " + reason
					}
					// A load error may quote the config (a path or a pin
					// from ${VAR}), whose secrets the log redacts too.
					fmt.Fprintln(cmd.ErrOrStderr(), string(exitSecrets.Redact([]byte(reason))))
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "plugin %s: %s\n", id, appliedNow(applied[id]))
			}
			if failed > 0 {
				if failed == 1 {
					return fmt.Errorf("1 plugin could not be migrated")
				}
				return fmt.Errorf("%d plugins could not be migrated", failed)
			}
			return nil
		},
	}
	addConfigFlag(up, &ufiles, []string{"config.toml"})
	cmd.AddCommand(status, up)
	return cmd
}

// writeStatus prints migrate status's table. A plugin's migration names
// are its own, stored as it registered them: one that is not plain
// printable text (a newline that would forge a row, a terminal escape,
// U+202E; registering such names is refused now, but rows stored before
// remain) is printed quoted, with Go's escapes.
func writeStatus(out io.Writer, st []database.MigrationStatus) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "OWNER\tMIGRATION\tAPPLIED")
	for _, m := range st {
		owner, applied := "runtime", "pending"
		if m.Plugin != "" {
			owner = "plugin " + m.Plugin
		}
		if !m.AppliedAt.IsZero() {
			applied = m.AppliedAt.UTC().Format(time.RFC3339)
		}
		if m.Unconfirmed {
			applied += " (commit unconfirmed: settled at the plugin's next load)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", owner, printable(m.Name), applied)
	}
	return w.Flush()
}

// printable is s, or s quoted when it has anything strconv.Quote escapes:
// a character that is not printable, invalid UTF-8, or '"' and '\' (so
// that a name that looks quoted is told apart from one that is).
func printable(s string) string {
	if q := strconv.Quote(s); q[1:len(q)-1] != s {
		return q
	}
	return s
}

// appliedNow says how many migrations a run of migrate up applied.
func appliedNow(n int) string {
	switch n {
	case 0:
		return "migrations up to date (none to apply)"
	case 1:
		return "1 migration applied; up to date"
	}
	return fmt.Sprintf("%d migrations applied; up to date", n)
}
