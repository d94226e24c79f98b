//go:build !linux

package scheduler

import "time"

// bootClock: only Linux has CLOCK_BOOTTIME; elsewhere realClock.Mono is
// Go's monotonic clock.
func bootClock() (time.Duration, bool) { return 0, false }
