package config

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// valueError is the error of a value that does not parse as a size, a
// duration or a rate: msg quotes the value, hidden (for a value with a part
// from the environment) shows neither it nor anything computed from it.
type valueError struct{ msg, hidden string }

func (e *valueError) Error() string { return e.msg }

// Size is a number of bytes, written in config as an integer or a string
// with a unit: "512KiB", "64MiB", "1GiB", "16MB", "4096B".
type Size uint64

var sizeUnits = []struct {
	suffix string
	mult   uint64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30},
	{"B", 1},
}

// ParseSize parses a size such as "64MiB".
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	mult := uint64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			mult = u.mult
			break
		}
	}
	// Exactly, as a fraction: "4.1MB" is 4 100 000 bytes, which a float64
	// product misses by a rounding error.
	n, ok := new(big.Rat).SetString(t)
	if !ok || n.Sign() < 0 || !plainNumber(t) {
		const want = `(want e.g. "512KiB", "64MiB", "1GiB" or a number of bytes)`
		return 0, &valueError{fmt.Sprintf("invalid size %q %s", s, want), `invalid size "[REDACTED]" ` + want}
	}
	v := n.Mul(n, new(big.Rat).SetUint64(mult))
	if !v.IsInt() {
		return 0, &valueError{fmt.Sprintf("size %q is not a whole number of bytes (%s)", s, v.FloatString(3)), `size "[REDACTED]" is not a whole number of bytes`}
	}
	if !v.Num().IsInt64() {
		return 0, &valueError{fmt.Sprintf("size %q is too large", s), `size "[REDACTED]" is too large`}
	}
	return Size(v.Num().Int64()), nil
}

// plainNumber reports whether t is a decimal number as a size is written
// ("4", "2.5", "1e6"): not a fraction ("1/2") or a hexadecimal or other
// form big.Rat also reads, and with an exponent of at most two digits
// (big.Rat would compute 10^999999999 exactly).
func plainNumber(t string) bool {
	mant, exp, hasExp := strings.Cut(strings.ToLower(t), "e")
	if len(mant) == 0 || len(mant) > 64 || strings.Count(mant, ".") > 1 {
		return false
	}
	for _, r := range mant {
		if (r < '0' || r > '9') && r != '.' {
			return false
		}
	}
	if hasExp {
		if strings.HasPrefix(exp, "+") || strings.HasPrefix(exp, "-") {
			exp = exp[1:]
		}
		if len(exp) == 0 || len(exp) > 2 || strings.Trim(exp, "0123456789") != "" {
			return false
		}
	}
	return true
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText writes the size with the largest binary unit that divides it.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s Size) String() string {
	v := uint64(s)
	for _, u := range []struct {
		suffix string
		mult   uint64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v >= u.mult && v%u.mult == 0 {
			return fmt.Sprintf("%d%s", v/u.mult, u.suffix)
		}
	}
	return fmt.Sprintf("%dB", v)
}

// Duration is a time.Duration written as a Go duration string ("5s",
// "1m30s", "250ms").
type Duration time.Duration

// durationForm is what time.ParseDuration reads: numbers, each with a
// unit.
var durationForm = regexp.MustCompile(`^[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+$`)

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	t := strings.TrimSpace(string(b))
	v, err := time.ParseDuration(t)
	if err != nil && durationForm.MatchString(t) {
		// Written right, but past what a Go duration holds: time's
		// error says "invalid" for both.
		const why = `: too long (a duration is at most 2562047h47m16.854775807s)`
		return &valueError{fmt.Sprintf("invalid duration %q%s", string(b), why), `invalid duration "[REDACTED]"` + why}
	}
	if err != nil {
		const want = `(want a Go duration such as "5s", "250ms", "1m30s")`
		return &valueError{fmt.Sprintf("invalid duration %q %s", string(b), want), `invalid duration "[REDACTED]" ` + want}
	}
	if v < 0 {
		return &valueError{fmt.Sprintf("invalid duration %q: negative", string(b)), `invalid duration "[REDACTED]": negative`}
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// Rate is an event rate written as "N/s", "N/m" or "N/h" ("100/s").
type Rate struct {
	N   float64
	Per time.Duration
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Rate) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "" || s == "off" {
		*r = Rate{}
		return nil
	}
	num, unit, ok := strings.Cut(s, "/")
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	per := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[strings.TrimSpace(unit)]
	if !ok || err != nil || per == 0 || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		const want = `(want e.g. "100/s", "600/m")`
		return &valueError{fmt.Sprintf("invalid rate %q %s", s, want), `invalid rate "[REDACTED]" ` + want}
	}
	if n > maxRate {
		return &valueError{fmt.Sprintf("rate %q: at most %d per period (leave it unset for no limit)", s, int64(maxRate)),
			fmt.Sprintf(`rate "[REDACTED]": at most %d per period (leave it unset for no limit)`, int64(maxRate))}
	}
	*r = Rate{N: n, Per: per}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (r Rate) MarshalText() ([]byte, error) {
	if r.Per == 0 {
		return []byte(""), nil
	}
	unit := map[time.Duration]string{time.Second: "s", time.Minute: "m", time.Hour: "h"}[r.Per]
	return []byte(strconv.FormatFloat(r.N, 'f', -1, 64) + "/" + unit), nil
}

// maxRate bounds a rate's count: a limiter's burst is an int, and a
// larger count limits nothing a server could serve anyway.
const maxRate = 1e9

// PerSecond returns the rate in events per second, 0 when unset.
func (r Rate) PerSecond() float64 {
	if r.Per == 0 {
		return 0
	}
	return r.N / r.Per.Seconds()
}
