package scheduler

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // CRON_TZ= works on hosts without a zoneinfo database
	"unicode/utf8"

	"github.com/robfig/cron/v3"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/logging"
)

// Scope says where a task runs.
type Scope string

const (
	// Global tasks run on one replica at a time, and each due time runs
	// once across all replicas.
	Global Scope = "global"
	// Local tasks run on every replica, on its own clock.
	Local Scope = "local"
)

// Bounds of a task's settings.
const (
	MinEvery        = time.Second
	MaxEvery        = 366 * 24 * time.Hour
	MinTimeout      = time.Millisecond
	MaxTimeout      = 24 * time.Hour
	MaxInitialDelay = 24 * time.Hour
	maxCron         = hostfuncs.MaxTaskCron
	// MaxTasks is how many tasks one plugin may register: a registration
	// past it is refused and fails the plugin's load.
	MaxTasks = 1000
)

// TaskIDPattern is the form of a task id: it appears in URL paths and logs.
// Its length, at most hostfuncs.MaxTaskID, is checked by
// TestTaskIDPatternBound.
var TaskIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// RunIDPattern is the form of a run id (newRunID): 24 lowercase hex
// digits. The admin API refuses a run_id of another form before it asks
// the database (PostgreSQL refuses a NUL byte or invalid UTF-8 in a
// parameter, and such a cancel answered 503 scheduler_unavailable).
var RunIDPattern = regexp.MustCompile(`^[0-9a-f]{24}$`)

// Task is one validated task of one plugin.
type Task struct {
	Plugin string
	ID     string
	// Exactly one of Cron and Every is set.
	Cron         string
	Every        time.Duration
	Timeout      time.Duration
	InitialDelay time.Duration
	Scope        Scope
	// TimeoutSecret: Timeout is the plugin's limits.timeout (the task set
	// none), which came from the environment: the admin API and the
	// run's errors tell it as logging.Redacted.
	TimeoutSecret bool

	cron cron.Schedule
}

// NewTask validates what plugin registered (task_register) and returns the
// task. A zero timeout becomes defaultTimeout (the plugin's
// limits.timeout). Errors name the task and say what is wrong.
func NewTask(plugin string, spec hostfuncs.TaskSpec, defaultTimeout time.Duration) (Task, error) {
	t := Task{Plugin: plugin, ID: spec.ID, Cron: spec.Cron, Every: spec.Every, Timeout: spec.Timeout, InitialDelay: spec.InitialDelay}
	if !TaskIDPattern.MatchString(spec.ID) {
		return t, fmt.Errorf("task id %q is invalid: want 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", truncate(spec.ID, 140))
	}
	fail := func(format string, args ...any) (Task, error) {
		return t, fmt.Errorf("task %q: %s", spec.ID, fmt.Sprintf(format, args...))
	}
	switch spec.Scope {
	case hostfuncs.ScopeGlobal:
		t.Scope = Global
	case hostfuncs.ScopeLocal:
		t.Scope = Local
	default:
		return fail("unknown scope %d", spec.Scope)
	}
	switch {
	case spec.Cron != "" && spec.Every != 0:
		return fail("set either Cron or Every, not both")
	case spec.Cron == "" && spec.Every == 0:
		return fail("set Cron or Every")
	case spec.Cron != "":
		sched, err := ParseCron(spec.Cron)
		if err != nil {
			return fail("%v", err)
		}
		t.cron = sched
	case spec.Every < MinEvery || spec.Every > MaxEvery:
		return fail("Every is %s; it must be between %s and %s", spec.Every, MinEvery, MaxEvery)
	}
	switch {
	case spec.Timeout < 0 || spec.Timeout > MaxTimeout || spec.Timeout > 0 && spec.Timeout < MinTimeout:
		// Under a millisecond (1ns) every run failed at its deadline.
		// The guest SDK's checkTask says the same.
		return fail("Timeout is %s; it must be 0 (the plugin's limits.timeout) or from %s to %s", spec.Timeout, MinTimeout, MaxTimeout)
	case spec.Timeout == 0:
		t.Timeout = defaultTimeout
	}
	if spec.InitialDelay < 0 || spec.InitialDelay > MaxInitialDelay {
		return fail("InitialDelay is %s; it must be between 0 and %s", spec.InitialDelay, MaxInitialDelay)
	}
	return t, nil
}

// ParseCron parses a standard cron expression: five fields (minute, hour,
// day of month, month, day of week) or a descriptor (@yearly, @annually,
// @monthly, @weekly, @daily, @midnight, @hourly), optionally prefixed by
// CRON_TZ=<IANA zone> and a space; times are UTC otherwise. Seconds fields,
// @every (use Every), CRON_TZ=Local and an empty CRON_TZ= are refused. The
// expression must fire at some time (farSchedule): "0 0 30 2 *" is
// refused; "0 0 29 2 */7" (February 29th on a Sunday) is not, however far
// off its next match.
//
// In a zone with clock changes, an expression whose minute and hour are
// both fixed (neither field starts with '*'; every descriptor but @hourly)
// fires on wall times, as vixie cron runs such jobs: once per matching
// wall time, at its first occurrence when clocks go back, and at the first
// instant after the gap when clocks go forward past it (wallSchedule). Any
// other expression fires at every real instant whose wall time matches.
func ParseCron(spec string) (sched cron.Schedule, err error) {
	bad := func(format string, args ...any) (cron.Schedule, error) {
		return nil, fmt.Errorf("cron %q: %s", truncate(spec, maxCron), fmt.Sprintf(format, args...))
	}
	if len(spec) > maxCron {
		return bad("longer than %d bytes", maxCron)
	}
	if strings.TrimSpace(spec) != spec || strings.ContainsFunc(spec, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
		return bad("has leading or trailing space or control characters")
	}
	// The schedule is stored as text (PostgreSQL refuses invalid UTF-8,
	// like the NUL above).
	if !utf8.ValidString(spec) {
		return bad("is not valid UTF-8")
	}
	body := spec
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		// robfig/cron slices up to the first space without checking that
		// there is one (robfig/cron#554): make sure first.
		i := strings.IndexByte(spec, ' ')
		if i < 0 {
			return bad("a CRON_TZ= prefix must be followed by a space and the schedule")
		}
		prefix, _, _ := strings.Cut(spec[:i], "=")
		// time.LoadLocation takes "" for UTC and "Local" for the host's
		// zone: replicas in different zones would compute different due
		// times.
		switch zone := spec[len(prefix)+1 : i]; {
		case zone == "":
			return bad("%s= names no zone; name an IANA zone (%s=Europe/Paris), or leave the prefix out for UTC", prefix, prefix)
		case !ianaZoneName(zone):
			return bad("%s=%s is not an IANA zone name (parts of letters, digits, '_', '+' and '-', separated by '/'); name one (%s=Europe/Paris)", prefix, zone, prefix)
		case strings.EqualFold(zone, "Local"), strings.EqualFold(zone, "localtime"), strings.EqualFold(zone, "posixrules"):
			// "localtime" is the host's /etc/localtime under another name
			// (zoneinfo/localtime, $ZONEINFO/localtime), and "posixrules"
			// whatever zone the host's tzdata links it to: Local by
			// another name.
			return bad("%s=%s is not accepted: replicas in different zones would compute different due times; name an IANA zone (%s=Europe/Paris)", prefix, zone, prefix)
		}
		body = strings.TrimSpace(spec[i:])
	}
	if strings.HasPrefix(body, "@every") {
		return bad("@every is not accepted here; set Every instead")
	}
	parsed := spec
	if !strings.HasPrefix(body, "@") {
		f := strings.Fields(body)
		if n := len(f); n != 5 {
			return bad("has %d fields; want the standard 5 (minute hour day-of-month month day-of-week), no seconds field", n)
		}
		if dow := sundaySeven(f[4]); dow != f[4] {
			f[4] = dow
			parsed = spec[:len(spec)-len(body)] + strings.Join(f, " ")
		}
	}
	defer func() {
		// Defence in depth: the parser has panicked on odd input before.
		if v := recover(); v != nil {
			sched, err = bad("cannot be parsed (%v)", v)
		}
	}()
	s, err := cron.ParseStandard(parsed)
	if err != nil {
		return bad("%v", err)
	}
	// crontab(5) (vixie cron): a day field starting with '*' ("*/2") is
	// unrestricted, so the other day field alone decides (AND); robfig/cron
	// drops its star for a step over 1 and ORs the two fields instead.
	if ss, ok := s.(*cron.SpecSchedule); ok && !strings.HasPrefix(body, "@") {
		const starBit = 1 << 63
		f := strings.Fields(body)
		if strings.HasPrefix(f[2], "*") || strings.HasPrefix(f[2], "?") {
			ss.Dom |= starBit
		}
		if strings.HasPrefix(f[4], "*") || strings.HasPrefix(f[4], "?") {
			ss.Dow |= starBit
		}
	}
	if ss, ok := s.(*cron.SpecSchedule); ok && ss.Location != time.Local && ss.Location != time.UTC && fixedTime(body) {
		wall := *ss
		wall.Location = time.UTC
		s = wallSchedule{wall: &wall, loc: ss.Location}
	}
	s = farSchedule{s}
	if s.Next(time.Now().UTC()).IsZero() {
		return bad("never fires (no date matches it in the Gregorian calendar's 400-year cycle)")
	}
	return s, nil
}

// farSchedule is a parsed cron schedule whose next match is looked for
// however far ahead it is. robfig/cron looks no further than the end of
// the fifth year after the time it is given, and returns the zero time
// past it; but an expression may match, then not again for longer (the
// day-of-week AND of "0 0 29 2 */2", February 29th on a Sunday, Tuesday,
// Thursday or Saturday: 2032, then 2048). The zero time as a next due
// time left the run's due time due (a global run's end moved next_run
// only to a due time it had) or made the task due at once (a local one),
// and the task ran back to back for ever, thousands of times a second
// (TestCronWhoseNextMatchIsOverFiveYearsAway). The Gregorian calendar,
// its days of the week included, repeats every 400 years, so an
// expression that matches at all matches within 400 years of any time.
type farSchedule struct{ cron.Schedule }

// farYears is how far ahead farSchedule looks: the calendar's cycle, and
// a step of the search to spare.
const farYears = 400 + farStep

// farStep is how many years farSchedule moves its search on when the
// parser found nothing: less than the five it looked through, whatever
// the year is in the expression's zone.
const farStep = 4

func (s farSchedule) Next(after time.Time) time.Time {
	for from := after; from.Year() <= after.Year()+farYears; from = from.AddDate(farStep, 0, 0) {
		if n := s.Schedule.Next(from); !n.IsZero() {
			return n
		}
	}
	return time.Time{}
}

// sundaySeven rewrites a day-of-week field so that 7 is Sunday, as in
// crontab(5) and the cron library Backstage uses, for robfig/cron, which
// takes 0-6 only: "7" is "0", "5-7" is "5-6,0", "1-7/2" is "1-6/2,0"
// (1, 3, 5, 7). Other items (names, *, ranges below 7) are left as they
// are, and so is anything the parser is to refuse.
func sundaySeven(dow string) string {
	items := strings.Split(dow, ",")
	for i, item := range items {
		base, step, hasStep := strings.Cut(item, "/")
		lo, hi, isRange := strings.Cut(base, "-")
		if !isRange {
			lo, hi = base, base
		}
		a, errA := strconv.Atoi(lo)
		b, errB := strconv.Atoi(hi)
		if errA != nil || errB != nil || b != 7 || a < 0 || a > 7 {
			continue
		}
		n, suffix := 1, ""
		if hasStep {
			if n, errA = strconv.Atoi(step); errA != nil || n <= 0 {
				continue
			}
			suffix = "/" + step
		}
		if a == 7 {
			items[i] = "0"
			continue
		}
		items[i] = strconv.Itoa(a) + "-6" + suffix
		if (7-a)%n == 0 {
			items[i] += ",0"
		}
	}
	return strings.Join(items, ",")
}

// fixedTime reports whether the cron expression body (without CRON_TZ=)
// has a fixed minute and hour: vixie cron's rule, neither field starts
// with '*' (nor '?', robfig/cron's other wildcard). Of the descriptors only
// @hourly has a wildcard.
func fixedTime(body string) bool {
	if strings.HasPrefix(body, "@") {
		return body != "@hourly"
	}
	f := strings.Fields(body)
	wild := func(s string) bool { return strings.HasPrefix(s, "*") || strings.HasPrefix(s, "?") }
	return len(f) == 5 && !wild(f[0]) && !wild(f[1])
}

// wallSchedule is a cron schedule with a fixed minute and hour in a zone
// with clock changes: it fires once per matching wall time. When clocks go
// back, a repeated wall time fires at its first occurrence only; when they
// go forward, a wall time in the gap fires at the first instant after it
// (02:30 in Europe/Paris on the last Sunday of March fires at 03:00 CEST).
// Several wall times in one gap fire once.
type wallSchedule struct {
	wall *cron.SpecSchedule // the schedule on wall times written as UTC
	loc  *time.Location
}

func (s wallSchedule) Next(after time.Time) time.Time {
	w := wallTime(after, s.loc)
	// A wall time at or before after already fired, in the first pass of
	// a repeated stretch: skip it (at most a day of minutes in the
	// longest stretches the zone database knows).
	for range 4 * 24 * 60 {
		w = s.wall.Next(w)
		if w.IsZero() {
			return w
		}
		if at := instantOf(w, s.loc); at.After(after) {
			return at.In(after.Location())
		}
	}
	return time.Time{}
}

// wallTime is t's wall clock in loc, written as a UTC time.
func wallTime(t time.Time, loc *time.Location) time.Time {
	l := t.In(loc)
	return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), time.UTC)
}

// instantOf is the first instant whose wall clock in loc reads w (a wall
// time written as UTC), or, when none does (clocks jumped past w), the
// first instant after the jump.
func instantOf(w time.Time, loc *time.Location) time.Time {
	// An instant reading w is w minus the offset in effect then: one of
	// the offsets around it.
	var found, gap time.Time
	for _, probe := range []time.Duration{-48 * time.Hour, 0, 48 * time.Hour} {
		_, off := w.Add(probe).In(loc).Zone()
		c := w.Add(-time.Duration(off) * time.Second)
		switch cw := wallTime(c, loc); {
		case cw.Equal(w):
			if found.IsZero() || c.Before(found) {
				found = c
			}
		case cw.Before(w):
			// c is before a jump past w: the jump is where c's zone
			// period ends.
			if _, end := c.In(loc).ZoneBounds(); !end.IsZero() && !wallTime(end, loc).Before(w) && (gap.IsZero() || end.Before(gap)) {
				gap = end
			}
		}
	}
	if !found.IsZero() {
		return found
	}
	return gap
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Schedule is the task's schedule as text: the cron expression, or
// "every <duration>". Replicas compare it to notice a changed schedule.
func (t *Task) Schedule() string {
	if t.Cron != "" {
		return t.Cron
	}
	return "every " + t.Every.String()
}

// Equal reports whether t and u are the same registration.
func (t *Task) Equal(u *Task) bool {
	return t.Plugin == u.Plugin && t.ID == u.ID && t.Cron == u.Cron && t.Every == u.Every &&
		t.Timeout == u.Timeout && t.InitialDelay == u.InitialDelay && t.Scope == u.Scope
}

// first is the first due time of a task registered at at: after its
// initial delay, at once for Every tasks, at the next match for cron ones.
func (t *Task) first(at time.Time) time.Time {
	start := at.Add(t.InitialDelay)
	if t.Every > 0 {
		return trunc(start)
	}
	return t.nextCron(start)
}

// next returns the due time that follows due, skipping those already past
// at now: a replica that falls behind, or a task nobody ran for a while,
// runs once for what it missed rather than once per missed due time. Every
// tasks keep their grid (due + k·Every).
func (t *Task) next(due, now time.Time) time.Time {
	if t.Every > 0 {
		n := due.Add(t.Every)
		if n.After(now) {
			return trunc(n)
		}
		gap := now.Sub(due)
		k := gap/t.Every + 1
		if k > (1<<62)/t.Every {
			return trunc(now.Add(t.Every))
		}
		return trunc(due.Add(k * t.Every))
	}
	if now.After(due) {
		due = now
	}
	return t.nextCron(due)
}

func (t *Task) nextCron(after time.Time) time.Time {
	n := t.cron.Next(after.UTC())
	if n.IsZero() {
		return n
	}
	return trunc(n)
}

// trunc rounds a time to what both databases store exactly (microseconds),
// in UTC, so that a due time read back compares equal.
func trunc(t time.Time) time.Time { return t.Truncate(time.Microsecond).UTC() }

// ianaZoneName reports whether zone is spelt as an IANA zone name: parts
// of letters, digits, '_', '+' and '-' separated by single '/'. It keeps
// out the host's own zone under a file-system spelling ("./localtime",
// ".//posixrules"), which time.LoadLocation resolves in the host's
// zoneinfo directory.
func ianaZoneName(zone string) bool {
	for _, part := range strings.Split(zone, "/") {
		if part == "" || strings.Trim(part, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-") != "" {
			return false
		}
	}
	return true
}

// steppedDue is due, a due time reckoned before the clock due times go by
// was stepped back by back, as it stands now (now, after the step): an
// Every task's due time moves back by the step, so that its next run
// comes as long after the last one as it would have; a cron task's
// becomes the next match after now, when that is earlier, but for an
// expression with a fixed minute and hour and a step of at most three
// hours (vixie cron's rule), whose wall times already run are not run
// again: it keeps its next match.
func (t *Task) steppedDue(due time.Time, back time.Duration, now time.Time) time.Time {
	if due.IsZero() {
		return due
	}
	if t.Every > 0 {
		return trunc(due.Add(-back))
	}
	body := t.Cron
	if strings.HasPrefix(body, "TZ=") || strings.HasPrefix(body, "CRON_TZ=") {
		_, body, _ = strings.Cut(body, " ")
	}
	if back <= maxFixedStepBack && fixedTime(strings.TrimSpace(body)) {
		return due
	}
	if n := t.nextCron(now); !n.IsZero() && n.Before(due) {
		return n
	}
	return due
}

// maxFixedStepBack: a step back of the clock up to this long does not run
// again the wall times a fixed-time cron task already ran (vixie cron's
// rule); a longer one goes by the clock as it reads.
const maxFixedStepBack = 3 * time.Hour

// toldTimeout is the task's timeout as the admin API and a run's error
// tell it (see TimeoutSecret).
func (t *Task) toldTimeout() string {
	if t.TimeoutSecret {
		return logging.Redacted
	}
	return t.Timeout.String()
}
