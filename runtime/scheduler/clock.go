package scheduler

import "time"

// clock is the scheduler's time source: due times (registration, the
// loop's wake-ups, the wait of a run claimed ahead of its due time,
// lateness) and the lease bookkeeping of global runs: when this replica
// last knew it held a lease (the claim, each renewal), the renewer's
// ticks, and each run's lease deadline and fence, all of these on Mono
// so that a step of the wall clock does not interrupt a run as lost. Run timeouts are the plugin
// call's, on the host's clock. Tests replace it with a fake one
// (Scheduler.clk, before SetTasks and Start).
type clock interface {
	Now() time.Time
	// Mono is the time elapsed since some fixed instant on a clock that
	// no step of the wall clock moves (the monotonic clock).
	Mono() time.Duration
	// NewTicker ticks every d, from now.
	NewTicker(d time.Duration) ticker
	// AfterFunc calls f in its own goroutine once d has passed; stop
	// cancels that if it has not happened yet.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// ticker is a time.Ticker. Its receiver calls Chan each time it waits for
// a tick (a fake clock relies on that to know the receiver is idle).
type ticker interface {
	Chan() <-chan time.Time
	Stop()
}

// realClock is the host's clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// monoStart is realClock's fixed instant.
var monoStart = time.Now()

// bootStart is CLOCK_BOOTTIME at monoStart, when it can be read.
var bootStart, useBoot = bootClock()

// Mono is CLOCK_BOOTTIME on Linux, which counts the time the host was
// suspended (a laptop asleep; Go's monotonic clock does not count it):
// a global run whose host was suspended past its lease deadline is past
// it when the host resumes (its lease may have expired in the database
// meanwhile, and another replica taken the task), as it was when the
// deadline went by the wall clock. Elsewhere, Go's monotonic clock.
func (realClock) Mono() time.Duration {
	if useBoot {
		if d, ok := bootClock(); ok {
			return d - bootStart
		}
	}
	return time.Since(monoStart)
}

func (realClock) NewTicker(d time.Duration) ticker { return realTicker{time.NewTicker(d)} }

func (realClock) AfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

type realTicker struct{ t *time.Ticker }

func (t realTicker) Chan() <-chan time.Time { return t.t.C }
func (t realTicker) Stop()                  { t.t.Stop() }
