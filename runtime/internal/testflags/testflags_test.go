package testflags

import (
	"flag"
	"runtime"
	"strconv"
	"testing"
)

// Parallel raises test.parallel above GOMAXPROCS, and leaves a value the
// command line gave alone.
func TestParallel(t *testing.T) {
	f := flag.Lookup("test.parallel")
	was := f.Value.String()
	t.Cleanup(func() { f.Value.Set(was) })
	want := runtime.GOMAXPROCS(0) + 3
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	Parallel(want)
	if given {
		if got := f.Value.String(); got != was {
			t.Errorf("-parallel %s was given, Parallel made it %s", was, got)
		}
		return
	}
	if got := f.Value.String(); got != strconv.Itoa(want) {
		t.Errorf("test.parallel %s after Parallel(%d), want %d", got, want, want)
	}
	Parallel(1) // not below GOMAXPROCS: no change
	if got := f.Value.String(); got != strconv.Itoa(want) {
		t.Errorf("test.parallel %s after Parallel(1), want %d unchanged", got, want)
	}
}
