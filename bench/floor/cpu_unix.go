//go:build unix

package floor

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time (user + system, all threads) this process has
// used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
