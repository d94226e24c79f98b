// Package testflags sets go test's flags that a test package's TestMain
// chooses for itself.
package testflags

import (
	"flag"
	"runtime"
	"strconv"
)

// Parallel lets n parallel tests run at once, unless -parallel was given
// or GOMAXPROCS is already n or more. Call it from TestMain before m.Run.
//
// go test's default, GOMAXPROCS, suits tests that keep a core busy; it
// ran two at a time on a two-core machine, where the packages whose
// parallel tests spend their seconds waiting (for timeouts, locks, due
// times, reaps) took most of their wall time in that phase.
func Parallel(n int) {
	if !flag.Parsed() {
		flag.Parse()
	}
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given && runtime.GOMAXPROCS(0) < n {
		flag.Set("test.parallel", strconv.Itoa(n))
	}
}
