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
	long := strings.Repeat("x", maxErrorText-1) + "é" + "tail"
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain", "it broke", "it broke"},
		{"nul", "a\x00b\x00", "a\uFFFDb\uFFFD"},
		{"invalid utf-8", "a\xffb\xc3", "a\uFFFDb\uFFFD"},
		{"both", "\x00\xfe", "\uFFFD\uFFFD"},
		{"long", strings.Repeat("y", maxErrorText+10), strings.Repeat("y", maxErrorText) + "..."},
		{"cut inside a rune", long, strings.Repeat("x", maxErrorText-1) + "..."},
		{"long multibyte", strings.Repeat("é", 5000), strings.Repeat("é", maxErrorText/2) + "..."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := errorText([]byte(tc.in))
			if got != tc.want {
				t.Errorf("errorText(%q) = %q, want %q", truncate(tc.in, 20), truncate(got, 20), truncate(tc.want, 20))
			}
			if !utf8.ValidString(got) || strings.ContainsRune(got, 0) {
				t.Errorf("errorText(%q) = %q: invalid UTF-8 or NUL", truncate(tc.in, 20), truncate(got, 20))
			}
		})
	}
}
