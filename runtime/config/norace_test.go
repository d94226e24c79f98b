//go:build !race

package config

// raceEnabled reports whether the tests run under the race detector, which
// makes code several times slower: wall-clock bounds allow for it.
const raceEnabled = false
