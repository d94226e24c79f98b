package scheduler

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

func TestNewTask(t *testing.T) {
	ok := []hostfuncs.TaskSpec{
		{ID: "a", Every: time.Second},
		{ID: "A.b_c-9", Cron: "*/5 * * * *", Timeout: time.Minute, InitialDelay: 10 * time.Second, Scope: hostfuncs.ScopeLocal},
		{ID: "h", Cron: "@hourly"},
		{ID: "tz", Cron: "CRON_TZ=Europe/Paris 30 8 * * 1-5"},
		{ID: strings.Repeat("x", 128), Every: 366 * 24 * time.Hour, Timeout: 24 * time.Hour},
	}
	for _, spec := range ok {
		task, err := NewTask("p", spec, 5*time.Second)
		if err != nil {
			t.Errorf("%+v: %v", spec, err)
			continue
		}
		if spec.Timeout == 0 && task.Timeout != 5*time.Second {
			t.Errorf("%+v: default timeout %s", spec, task.Timeout)
		}
	}
	bad := []struct {
		spec hostfuncs.TaskSpec
		want string
	}{
		{hostfuncs.TaskSpec{ID: "", Every: time.Second}, "invalid"},
		{hostfuncs.TaskSpec{ID: "-a", Every: time.Second}, "invalid"},
		{hostfuncs.TaskSpec{ID: "a b", Every: time.Second}, "invalid"},
		{hostfuncs.TaskSpec{ID: strings.Repeat("x", 129), Every: time.Second}, "invalid"},
		{hostfuncs.TaskSpec{ID: "a", Every: time.Second, Scope: 2}, "unknown scope 2"},
		{hostfuncs.TaskSpec{ID: "a"}, "set Cron or Every"},
		{hostfuncs.TaskSpec{ID: "a", Cron: "@hourly", Every: time.Second}, "not both"},
		{hostfuncs.TaskSpec{ID: "a", Every: -time.Second}, "between 1s"},
		{hostfuncs.TaskSpec{ID: "a", Every: 367 * 24 * time.Hour}, "between 1s"},
		{hostfuncs.TaskSpec{ID: "a", Every: time.Second, Timeout: -1}, "Timeout"},
		{hostfuncs.TaskSpec{ID: "a", Every: time.Second, InitialDelay: 25 * time.Hour}, "InitialDelay"},
	}
	for _, tc := range bad {
		_, err := NewTask("p", tc.spec, time.Second)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.spec, err, tc.want)
		}
	}
}

// Hostile or odd cron expressions get an error, never a panic.
func TestParseCron(t *testing.T) {
	good := []string{"* * * * *", "0 0 * * 0", "*/15 9-17 * * MON-FRI", "0 0 29 2 *", "@daily", "@midnight", "@annually", "TZ=UTC 0 * * * *", "5 4 * * ?"}
	for _, c := range good {
		if _, err := ParseCron(c); err != nil {
			t.Errorf("%q: %v", c, err)
		}
	}
	bad := []string{"", " ", "* * * *", "0 * * * * *", "61 * * * *", "* 24 * * *", "0 0 30 2 *", "@every 1m", "@every",
		"@sometimes", "TZ=", "CRON_TZ=UTC", "TZ=TZ=TZ=", "TZ=0", "CRON_TZ=../../etc/passwd * * * * *", "CRON_TZ=Nowhere/City * * * * *",
		"*/0 * * * *", "5-1 * * * *", "a b c d e", " * * * * *", "* * * * *\n", "* * * * *\x00", strings.Repeat("*", 300),
		"1-100000000000000000000 * * * *", "0-59/9999999999999999999 * * * *"}
	for _, c := range bad {
		if _, err := ParseCron(c); err == nil {
			t.Errorf("%q: accepted", c)
		}
	}
	// The schedule is stored as text: NUL and invalid UTF-8 are refused
	// before the parser sees them.
	for c, want := range map[string]string{
		"* * * * *\x00":          "control characters",
		"\xff * * * *":           "not valid UTF-8",
		"CRON_TZ=\xff 0 * * * *": "not valid UTF-8",
		"@hourly\xff":            "not valid UTF-8",
		"0 * * * mon\xc3":        "not valid UTF-8",
	} {
		if _, err := ParseCron(c); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", c, err, want)
		}
	}
}

// 7 is Sunday in the day-of-week field, as in crontab(5) and Backstage's
// cron library: each spelling fires on the same days as its 0-6 form.
func TestCronSundayIsSevenToo(t *testing.T) {
	from := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC) // a Sunday
	for seven, same := range map[string]string{
		"0 3 * * 7":                        "0 3 * * 0",
		"0 3 * * 1-7":                      "0 3 * * *",
		"0 3 * * 5-7":                      "0 3 * * 0,5,6",
		"0 3 * * 1-7/2":                    "0 3 * * 0,1,3,5",
		"0 3 * * 2-7/2":                    "0 3 * * 2,4,6",
		"0 3 * * 7,3":                      "0 3 * * 0,3",
		"0 3 * * 7/3":                      "0 3 * * 0",
		"CRON_TZ=Europe/Paris 0 3 * * 6-7": "CRON_TZ=Europe/Paris 0 3 * * 0,6",
	} {
		a, err := ParseCron(seven)
		if err != nil {
			t.Errorf("%q: %v", seven, err)
			continue
		}
		b, err := ParseCron(same)
		if err != nil {
			t.Fatal(err)
		}
		for i, x, y := 0, from, from; i < 20; i++ {
			x, y = a.Next(x), b.Next(y)
			if !x.Equal(y) {
				t.Errorf("%q fires at %s where %q fires at %s", seven, x, same, y)
				break
			}
		}
	}
	for _, c := range []string{"0 3 * * 8", "0 3 * * 7-1", "0 3 * * 0-8"} {
		if _, err := ParseCron(c); err == nil {
			t.Errorf("%q: accepted", c)
		}
	}
}

func FuzzParseCron(f *testing.F) {
	for _, c := range []string{"* * * * *", "TZ=UTC 0 * * * *", "@hourly", "CRON_TZ=", "*/5 1-3,7 * JAN-MAR 1#2"} {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, c string) {
		s, err := ParseCron(c)
		if err == nil && s.Next(time.Now()).IsZero() {
			t.Errorf("%q: accepted but never fires", c)
		}
		if err == nil && (!utf8.ValidString(c) || strings.ContainsRune(c, 0)) {
			t.Errorf("%q: accepted, but PostgreSQL cannot store it as text", c)
		}
	})
}

func TestNextDueTime(t *testing.T) {
	base := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	every := Task{Every: time.Second}
	for _, tc := range []struct {
		due, now, want time.Time
	}{
		{base, base, base.Add(time.Second)},
		{base, base.Add(300 * time.Millisecond), base.Add(time.Second)},
		// Late by more than a period: missed due times are skipped, the
		// grid kept.
		{base, base.Add(3500 * time.Millisecond), base.Add(4 * time.Second)},
		{base, base.Add(4 * time.Second), base.Add(5 * time.Second)},
	} {
		if got := every.next(tc.due, tc.now); !got.Equal(tc.want) {
			t.Errorf("every 1s next(%s, %s) = %s, want %s", tc.due, tc.now, got, tc.want)
		}
	}
	// A task nobody ran for ages does not overflow.
	if got := every.next(time.Unix(0, 0), base); !got.After(base) || got.After(base.Add(time.Second)) {
		t.Errorf("far past: %s", got)
	}
	hourly, err := NewTask("p", hostfuncs.TaskSpec{ID: "h", Cron: "0 * * * *"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := hourly.next(base, base.Add(90*time.Minute)); !got.Equal(base.Add(2 * time.Hour)) {
		t.Errorf("hourly: %s", got)
	}
	if got := hourly.first(base.Add(time.Minute)); !got.Equal(base.Add(time.Hour)) {
		t.Errorf("hourly first: %s", got)
	}
	delayed := Task{Every: time.Minute, InitialDelay: 10 * time.Second}
	if got := delayed.first(base); !got.Equal(base.Add(10 * time.Second)) {
		t.Errorf("delayed first: %s", got)
	}
	// Times are kept to the microsecond, as both databases store them.
	if got := every.first(base.Add(1234 * time.Nanosecond)); got.Nanosecond()%1000 != 0 {
		t.Errorf("not truncated: %s", got)
	}
	paris, err := NewTask("p", hostfuncs.TaskSpec{ID: "p", Cron: "CRON_TZ=Europe/Paris 0 9 * * *"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := paris.first(base); got.Hour() != 8 || got.Location() != time.UTC { // 9:00 in Paris in winter
		t.Errorf("paris: %s", got)
	}
}

// The error text a run keeps is valid UTF-8 without NUL bytes, which
// PostgreSQL's text columns refuse (SQLSTATE 22021), and at most
// maxErrorText bytes.
func TestErrorText(t *testing.T) {
	long := strings.Repeat("x", maxErrorText-4) + "é" + "tail"
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain", "it broke", "it broke"},
		{"nul", "a\x00b\x00", "a\uFFFDb\uFFFD"},
		{"invalid utf-8", "a\xffb\xc3", "a\uFFFDb\uFFFD"},
		{"both", "\x00\xfe", "\uFFFD\uFFFD"},
		{"long", strings.Repeat("y", maxErrorText+10), strings.Repeat("y", maxErrorText-3) + "..."},
		{"just fits", strings.Repeat("y", maxErrorText), strings.Repeat("y", maxErrorText)},
		{"cut inside a rune", long, strings.Repeat("x", maxErrorText-4) + "..."},
		{"long multibyte", strings.Repeat("é", 5000), strings.Repeat("é", maxErrorText/2-2) + "..."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := errorText([]byte(tc.in))
			if got != tc.want {
				t.Errorf("errorText(%q) = %q, want %q", truncate(tc.in, 20), truncate(got, 20), truncate(tc.want, 20))
			}
			if !utf8.ValidString(got) || strings.ContainsRune(got, 0) {
				t.Errorf("errorText(%q) = %q: invalid UTF-8 or NUL", truncate(tc.in, 20), truncate(got, 20))
			}
			if len(got) > maxErrorText {
				t.Errorf("errorText(%q) is %d bytes, more than %d", truncate(tc.in, 20), len(got), maxErrorText)
			}
		})
	}
}

// dues walks a task's due times from from (exclusive) to to (inclusive),
// each run on time.
func dues(t *testing.T, cron string, from, to time.Time) []string {
	t.Helper()
	task, err := NewTask("p", hostfuncs.TaskSpec{ID: "t", Cron: cron}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for due := task.first(from); !due.IsZero() && !due.After(to); due = task.next(due, due) {
		if len(out) > 1000 {
			t.Fatalf("%q: more than 1000 due times from %s to %s", cron, from, to)
		}
		out = append(out, due.Format("01-02T15:04Z"))
	}
	return out
}

// Daylight saving time in a CRON_TZ zone, as vixie cron does it: a job
// with a fixed minute and hour runs once a day, at the first occurrence
// of a wall time that repeats when clocks go back, and at the first
// instant after the gap for a wall time that does not exist when clocks go
// forward; a job whose minute or hour is a wildcard runs at every real
// instant that matches. Paris: 2027-03-28 02:00 CET becomes 03:00 CEST
// (01:00Z); 2027-10-31 03:00 CEST becomes 02:00 CET (01:00Z).
func TestCronDaylightSavingTime(t *testing.T) {
	spring0, spring1 := time.Date(2027, 3, 27, 12, 0, 0, 0, time.UTC), time.Date(2027, 3, 29, 12, 0, 0, 0, time.UTC)
	fall0, fall1 := time.Date(2027, 10, 30, 12, 0, 0, 0, time.UTC), time.Date(2027, 11, 1, 12, 0, 0, 0, time.UTC)
	hourly := func(from, to time.Time) []string {
		var out []string
		for at := from.Truncate(time.Hour).Add(time.Hour); !at.After(to); at = at.Add(time.Hour) {
			out = append(out, at.Format("01-02T15:04Z"))
		}
		return out
	}
	for _, c := range []struct {
		cron     string
		from, to time.Time
		want     []string
	}{
		// Spring forward: 02:30 does not exist on 03-28; it runs at 03:00
		// CEST, the first instant after the gap.
		{"CRON_TZ=Europe/Paris 30 2 * * *", spring0, spring1, []string{"03-28T01:00Z", "03-29T00:30Z"}},
		// 03:00 and 03:30 exist: unchanged (03:00 runs once).
		{"CRON_TZ=Europe/Paris 0 3 * * *", spring0, spring1, []string{"03-28T01:00Z", "03-29T01:00Z"}},
		{"CRON_TZ=Europe/Paris 30 3 * * *", spring0, spring1, []string{"03-28T01:30Z", "03-29T01:30Z"}},
		// Both times of a job fall in the gap: one run after it.
		{"CRON_TZ=Europe/Paris 0,30 2 * * *", spring0, spring1, []string{"03-28T01:00Z", "03-29T00:00Z", "03-29T00:30Z"}},
		// Fall back: 02:30 happens twice on 10-31; it runs the first time.
		{"CRON_TZ=Europe/Paris 30 2 * * *", fall0, fall1, []string{"10-31T00:30Z", "11-01T01:30Z"}},
		{"CRON_TZ=Europe/Paris 0 2 * * *", fall0, fall1, []string{"10-31T00:00Z", "11-01T01:00Z"}},
		{"CRON_TZ=Europe/Paris 0 3 * * *", fall0, fall1, []string{"10-31T02:00Z", "11-01T02:00Z"}},
		{"CRON_TZ=Europe/Paris 0 1 * * *", fall0, fall1, []string{"10-30T23:00Z", "11-01T00:00Z"}},
		// A fixed hour written as a range or list is fixed too.
		{"CRON_TZ=Europe/Paris 0 1-3 * * *", fall0, fall0.Add(15 * time.Hour), []string{"10-30T23:00Z", "10-31T00:00Z", "10-31T02:00Z"}},
		// @daily is 0 0 * * *: once a day.
		{"CRON_TZ=America/Sao_Paulo @daily", time.Date(2018, 11, 3, 12, 0, 0, 0, time.UTC), time.Date(2018, 11, 5, 12, 0, 0, 0, time.UTC),
			[]string{"11-04T03:00Z", "11-05T02:00Z"}}, // 11-04 00:00 -03 did not exist: 01:00 -02
		// Wildcard hour: every real hour, 25 on fall-back day, 23 on
		// spring-forward day; the repeated 02:00 runs twice, the missing
		// one not at all.
		{"CRON_TZ=Europe/Paris 0 * * * *", spring0, spring1, hourly(spring0, spring1)},
		{"CRON_TZ=Europe/Paris 0 * * * *", fall0, fall1, hourly(fall0, fall1)},
		{"CRON_TZ=Europe/Paris @hourly", fall0, fall1, hourly(fall0, fall1)},
		// Wildcard minute: every real instant that matches.
		{"CRON_TZ=Europe/Paris */30 2 * * *", fall0, fall1, []string{"10-31T00:00Z", "10-31T00:30Z", "10-31T01:00Z", "10-31T01:30Z", "11-01T01:00Z", "11-01T01:30Z"}},
		{"CRON_TZ=Europe/Paris */30 2 * * *", spring0, spring1, []string{"03-29T00:00Z", "03-29T00:30Z"}},
		// UTC has no clock changes.
		{"30 2 * * *", fall0, fall1, []string{"10-31T02:30Z", "11-01T02:30Z"}},
	} {
		got := dues(t, c.cron, c.from, c.to)
		if strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%q from %s to %s:\n got %v\nwant %v", c.cron, c.from.Format(time.RFC3339), c.to.Format(time.RFC3339), got, c.want)
		}
	}
	// Every five minutes across the repeated hour: every real 5 minutes.
	got := dues(t, "CRON_TZ=Europe/Paris */5 * * * *", time.Date(2027, 10, 30, 23, 57, 0, 0, time.UTC), time.Date(2027, 10, 31, 2, 3, 0, 0, time.UTC))
	if len(got) != 25 || got[0] != "10-31T00:00Z" || got[24] != "10-31T02:00Z" {
		t.Errorf("*/5 across fall-back: %d due times %v, want 25 from 00:00Z to 02:00Z", len(got), got)
	}
	got = dues(t, "CRON_TZ=Europe/Paris */5 * * * *", time.Date(2027, 3, 27, 23, 57, 0, 0, time.UTC), time.Date(2027, 3, 28, 2, 3, 0, 0, time.UTC))
	if len(got) != 25 || got[0] != "03-28T00:00Z" || got[24] != "03-28T02:00Z" {
		t.Errorf("*/5 across spring-forward: %d due times %v, want 25 from 00:00Z to 02:00Z", len(got), got)
	}
	// A late run: the next due time after now, still once a day.
	task, err := NewTask("p", hostfuncs.TaskSpec{ID: "t", Cron: "CRON_TZ=Europe/Paris 30 2 * * *"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	first := time.Date(2027, 10, 31, 0, 30, 0, 0, time.UTC)
	for _, now := range []time.Time{first.Add(10 * time.Minute), first.Add(time.Hour), first.Add(70 * time.Minute)} {
		if got := task.next(first, now); !got.Equal(time.Date(2027, 11, 1, 1, 30, 0, 0, time.UTC)) {
			t.Errorf("next after the 02:30 of 10-31 at %s = %s, want 11-01T01:30Z", now.Format(time.RFC3339), got)
		}
	}
}

// CRON_TZ names an IANA zone: not Local, by that name or another
// (replicas in different zones would compute different due times), not
// nothing.
func TestCronTZMustNameAZone(t *testing.T) {
	for c, want := range map[string]string{
		"CRON_TZ=Local 0 9 * * *": "CRON_TZ=Local",
		"CRON_TZ=local 0 9 * * *": "CRON_TZ=local",
		"TZ=Local 0 9 * * *":      "TZ=Local",
		// The host's zone by other names: zoneinfo/localtime links to
		// /etc/localtime, posixrules to whatever the host's tzdata says.
		"CRON_TZ=localtime 0 9 * * *":  "CRON_TZ=localtime",
		"TZ=LocalTime 0 9 * * *":       "TZ=LocalTime",
		"CRON_TZ=posixrules 0 9 * * *": "CRON_TZ=posixrules",
		// ... and by file-system spellings of those names.
		"CRON_TZ=./localtime 0 9 * * *":    "CRON_TZ=./localtime",
		"CRON_TZ=.//posixrules 0 9 * * *":  "CRON_TZ=.//posixrules",
		"CRON_TZ=Europe//Paris 0 9 * * *":  "CRON_TZ=Europe//Paris",
		"CRON_TZ=Europe/./Paris 0 9 * * *": "CRON_TZ=Europe/./Paris",
		"CRON_TZ= 0 9 * * *":               "names no zone",
		"TZ= 0 9 * * *":                    "names no zone",
	} {
		_, err := ParseCron(c)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "IANA") {
			t.Errorf("%q: %v, want an error with %q naming an IANA zone", c, err, want)
		}
		if _, err := NewTask("p", hostfuncs.TaskSpec{ID: "t", Cron: c}, time.Second); err == nil {
			t.Errorf("NewTask %q: accepted", c)
		}
	}
	for _, c := range []string{"CRON_TZ=UTC 0 9 * * *", "CRON_TZ=Europe/Paris 0 9 * * *", "TZ=America/New_York @daily", "CRON_TZ=Etc/GMT+5 0 9 * * *", "CRON_TZ=America/Port-au-Prince 0 9 * * *"} {
		if _, err := ParseCron(c); err != nil {
			t.Errorf("%q: %v", c, err)
		}
	}
}

// Fixed-time schedules in zones with odd clock changes (half-hour DST,
// a skipped day, two-hour DST, offsets with minutes): a daily job's due
// times are a day apart, give or take the clock change, except around a
// run at the end of a gap (Apia skipped 2011-12-30: its run comes at the
// first instant of 12-31, then 12-31's own).
func TestCronWallTimeOddZones(t *testing.T) {
	for _, zone := range []string{"Australia/Lord_Howe", "Pacific/Apia", "Antarctica/Troll", "Asia/Kathmandu", "America/St_Johns", "America/Sao_Paulo", "Europe/Dublin"} {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		for _, expr := range []string{"30 2 * * *", "0 0 * * *", "59 23 * * *", "0 1 * * *"} {
			task, err := NewTask("p", hostfuncs.TaskSpec{ID: "t", Cron: "CRON_TZ=" + zone + " " + expr}, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			prev := task.first(time.Date(2008, 1, 1, 0, 0, 0, 0, time.UTC))
			for prev.Year() < 2028 {
				due := task.next(prev, prev)
				// A run at the end of a gap may come soon after the one
				// before it, or before the one after it.
				prevStart, _ := prev.In(loc).ZoneBounds()
				dueStart, _ := due.In(loc).ZoneBounds()
				atGap := prevStart.Equal(prev) || dueStart.Equal(due)
				if gap := due.Sub(prev); gap <= 0 || gap > 51*time.Hour || gap < 21*time.Hour && !atGap {
					t.Errorf("%s %q: %s then %s, %s apart", zone, expr, prev, due, gap)
				}
				prev = due
			}
		}
	}
}

// The two day fields combine as crontab(5) says: when both are
// restricted (neither starts with '*'), a day matching either runs; when
// one starts with '*' — "*/2" too, which robfig/cron read as restricted —
// both must match (an audit's "0 0 */2 * MON" ran on every odd day as
// well as every Monday).
func TestCronDayFieldsAsCrontab(t *testing.T) {
	for _, tc := range []struct {
		spec string
		ok   func(time.Time) bool
	}{
		{"0 0 */2 * MON", func(d time.Time) bool { return d.Weekday() == time.Monday && d.Day()%2 == 1 }},
		{"0 0 13 * */5", func(d time.Time) bool {
			return d.Day() == 13 && (d.Weekday() == time.Sunday || d.Weekday() == time.Friday)
		}},
		{"0 0 ?/10 * 1-5", func(d time.Time) bool {
			return d.Day()%10 == 1 && d.Weekday() >= time.Monday && d.Weekday() <= time.Friday
		}},
		{"0 0 1,15 * MON", func(d time.Time) bool { return d.Day() == 1 || d.Day() == 15 || d.Weekday() == time.Monday }},
		{"0 0 * * MON", func(d time.Time) bool { return d.Weekday() == time.Monday }},
	} {
		s, err := ParseCron(tc.spec)
		if err != nil {
			t.Fatalf("%s: %v", tc.spec, err)
		}
		// Every day of two years: the ones the schedule gives are the
		// ones crontab(5) runs on.
		want := map[string]bool{}
		from := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		for d := from; d.Year() < 2029; d = d.AddDate(0, 0, 1) {
			if tc.ok(d) {
				want[d.Format(time.DateOnly)] = true
			}
		}
		got := 0
		for x := s.Next(from.Add(-time.Second)); x.Year() < 2029; x = s.Next(x) {
			if !want[x.Format(time.DateOnly)] {
				t.Errorf("%s: runs on %s (%s)", tc.spec, x.Format(time.DateOnly), x.Weekday())
				break
			}
			got++
		}
		if got != len(want) {
			t.Errorf("%s: runs on %d days, crontab(5) on %d", tc.spec, got, len(want))
		}
	}
}

// TaskIDPattern takes ids of at most hostfuncs.MaxTaskID bytes, the bound
// task_register refuses a longer one by, uncopied.
func TestTaskIDPatternBound(t *testing.T) {
	if id := strings.Repeat("a", hostfuncs.MaxTaskID); !TaskIDPattern.MatchString(id) {
		t.Errorf("an id of %d bytes is refused", len(id))
	}
	if id := strings.Repeat("a", hostfuncs.MaxTaskID+1); TaskIDPattern.MatchString(id) {
		t.Errorf("an id of %d bytes is taken", len(id))
	}
}

// The next match of a cron expression is found however far it is:
// robfig/cron looks five years ahead at most, and its zero time was taken
// for a due time (TestCronWhoseNextMatchIsOverFiveYearsAway). An
// expression whose first match is over five years away is accepted; one
// that matches no date of the calendar's 400-year cycle is still refused.
func TestCronNextMatchPastTheParsersFiveYears(t *testing.T) {
	day := func(y int) time.Time { return time.Date(y, 2, 29, 0, 0, 0, 0, time.UTC) }
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	for c, want := range map[string][]time.Time{
		// February 29th on a Sunday, Tuesday, Thursday or Saturday.
		"0 0 29 2 */2": {day(2028), day(2032), day(2048), day(2052), day(2056), day(2060), day(2076)},
		// On a Sunday: first in 2032, over five years from 2026.
		"0 0 29 2 */7": {day(2032), day(2060), day(2088), day(2128)},
		"CRON_TZ=Europe/Paris 0 0 29 2 */2": {
			time.Date(2028, 2, 29, 0, 0, 0, 0, paris), time.Date(2032, 2, 29, 0, 0, 0, 0, paris),
			time.Date(2048, 2, 29, 0, 0, 0, 0, paris)},
	} {
		task, err := NewTask("p", hostfuncs.TaskSpec{ID: "t", Cron: c}, time.Second)
		if err != nil {
			t.Errorf("%q: %v", c, err)
			continue
		}
		due := task.first(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
		for i, w := range want {
			if !due.Equal(w) {
				t.Errorf("%q: due time %d is %s, want %s", c, i, due, w.UTC())
				break
			}
			due = task.next(due, due.Add(time.Second))
		}
	}
	for _, c := range []string{"0 0 30 2 *", "* * 31 4,6,9,11 *", "CRON_TZ=Europe/Paris 0 0 31 2 */2"} {
		if _, err := ParseCron(c); err == nil || !strings.Contains(err.Error(), "never fires") {
			t.Errorf("%q: %v, want never fires", c, err)
		}
	}
}

// A Timeout under a millisecond (1ns) was accepted and made every run fail
// at its deadline: refused, naming the task, in the SDK's words
// (guest-sdk's TestSubMillisecondTaskTimeout). 0 (the plugin's
// limits.timeout) and 1ms are accepted, and so is any InitialDelay from 0
// to 24h (1ns is "at once": harmless).
func TestSubMillisecondTaskTimeout(t *testing.T) {
	for _, d := range []time.Duration{time.Nanosecond, 999 * time.Microsecond} {
		_, err := NewTask("p", hostfuncs.TaskSpec{ID: "tiny", Every: time.Minute, Timeout: d}, 5*time.Second)
		want := `task "tiny": Timeout is ` + d.String() + `; it must be 0 (the plugin's limits.timeout) or from 1ms to 24h0m0s`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Timeout %s: %v, want %q", d, err, want)
		}
	}
	for _, spec := range []hostfuncs.TaskSpec{
		{ID: "zero", Every: time.Minute},
		{ID: "ms", Every: time.Minute, Timeout: time.Millisecond},
		{ID: "delay", Every: time.Minute, Timeout: time.Second, InitialDelay: time.Nanosecond},
	} {
		if _, err := NewTask("p", spec, 5*time.Second); err != nil {
			t.Errorf("%s: %v", spec.ID, err)
		}
	}
}
