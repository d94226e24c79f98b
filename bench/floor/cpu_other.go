//go:build !unix

package floor

import "time"

// cpuTime is not known here: Measure falls back to wall time.
func cpuTime() time.Duration { return 0 }
