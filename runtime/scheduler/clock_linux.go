package scheduler

import (
	"time"

	"golang.org/x/sys/unix"
)

// bootClock reads CLOCK_BOOTTIME: like the monotonic clock Go's time
// uses (CLOCK_MONOTONIC), no step of the wall clock moves it, but it
// also counts the time the host was suspended, which a lease in the
// database does not stop for. ok is false when it cannot be read.
func bootClock() (d time.Duration, ok bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
