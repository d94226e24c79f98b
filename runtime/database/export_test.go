package database

import "github.com/jackc/pgx/v5"

// PluginConnConfig returns the configuration plugin id's PostgreSQL
// connections open with, for tests that connect as the plugin does from
// another process.
func PluginConnConfig(s *Service, id string) *pgx.ConnConfig {
	return s.pluginConnector(id).conf.Copy()
}

// SetMigrationCommitHook sets what runs before ("before") and after
// ("after") a migration's transaction commits; an error stops the
// migration there, as if the process had stopped. nil removes it.
func SetMigrationCommitHook(f func(stage string) error) { testHookMigrationCommit = f }
