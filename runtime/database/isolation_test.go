package database_test

import (
	"database/sql"
	"strconv"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

// db_begin takes the isolation levels a database gives and refuses the
// others with ErrInvalid naming the level, the same on both databases
// (pgx refused them with its own error; SQLite's driver ignored them).
// The SDK refuses them before they reach the host (the SDK's
// TestIsolationLevels); this is a guest that sends them anyway.
func TestBeginIsolationLevels(t *testing.T) {
	t.Parallel() // see "Parallel tests" in helpers_test.go
	each(t, func(t *testing.T, _ backend, dbconf string) {
		in := start(t, dbconf, plugin("alpha", true, "good", ""))
		for level := sql.LevelDefault; level <= sql.LevelLinearizable; level++ {
			for _, ro := range []int{0, 1} {
				code, msg := rawCall(t, in, "alpha", "begin", []byte(strconv.Itoa(int(level)<<8|ro)))
				switch level {
				case sql.LevelWriteCommitted, sql.LevelLinearizable:
					if code != hostfuncs.ErrInvalid || !strings.Contains(msg, "isolation level "+level.String()+" is not supported") {
						t.Errorf("%s (read-only %d): code %d %q, want ErrInvalid naming the level", level, ro, code, msg)
					}
				default:
					if code <= 0 {
						t.Errorf("%s (read-only %d): code %d %q", level, ro, code, msg)
					}
				}
			}
		}
		must(t, in, "alpha", query("SELECT count(*) FROM notes"))
	})
}
