package runtime

import (
	"os"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/internal/pgtest"
)

// TestMain stops the throwaway PostgreSQL cluster pgtest starts when
// DATABASE_URL is not set (TestPinStopThenDatabaseBack's); it was left running.
func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m))
}
