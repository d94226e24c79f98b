package runtime

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/scheduler"
)

// schedHost is the host of a plugin granted the scheduler, logging to a
// test hook.
func schedHost() (*host, *logtest.Hook) {
	log, hook := logtest.NewNullLogger()
	pc := &config.Plugin{Capabilities: config.Capabilities{Scheduler: true}}
	return newHost("p", pc, logrus.NewEntry(log), nil, nil), hook
}

// initInstance runs the registrations of one instance's initializer.
func initInstance(h *host, specs []hostfuncs.TaskSpec) (errs []error) {
	in := &hostfuncs.Instance{Host: h, Initializing: true}
	for _, spec := range specs {
		if err := h.RegisterTask(in, spec); err != nil {
			errs = append(errs, err)
		}
	}
	in.Initializing = false
	in.EndCall()
	return errs
}

func every(id string, d time.Duration) hostfuncs.TaskSpec {
	return hostfuncs.TaskSpec{ID: id, Every: d}
}

// Instances created after the version loaded (after a panic, after
// max_requests) repeat its registrations; those that register other
// tasks, or the same ones differently, are ignored, and reported in one
// warning per version however many instances do it, with how many
// registrations the instance made that were ignored.
func TestRegisterTaskAfterLoad(t *testing.T) {
	loaded := []hostfuncs.TaskSpec{every("a", time.Second), every("b", time.Second)}
	repeat := func(n int, specs ...hostfuncs.TaskSpec) [][]hostfuncs.TaskSpec {
		return slices.Repeat([][]hostfuncs.TaskSpec{specs}, n)
	}
	for _, tc := range []struct {
		name    string
		later   [][]hostfuncs.TaskSpec
		ignored int // in the warning; 0: no warning
	}{
		{"same tasks", repeat(5, loaded...), 0},
		{"fewer tasks", repeat(5, loaded[0]), 0},
		{"a new task", repeat(5, append(slices.Clone(loaded), every("c", time.Second))...), 1},
		{"a changed task", repeat(5, every("a", 2*time.Second), loaded[1]), 1},
		{"new and changed", repeat(50, every("a", 2*time.Second), loaded[1], every("c", time.Second), every("d", time.Second)), 3},
		{"one instance differs", [][]hostfuncs.TaskSpec{loaded, append(slices.Clone(loaded), every("c", time.Second)), loaded}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, hook := schedHost()
			if errs := initInstance(h, loaded); errs != nil {
				t.Fatal(errs)
			}
			tasks, err := h.fixTasks()
			if err != nil || len(tasks) != 2 {
				t.Fatalf("fixTasks: %v %v", tasks, err)
			}
			for _, specs := range tc.later {
				if errs := initInstance(h, specs); errs != nil {
					t.Fatal(errs)
				}
			}
			var warns []*logrus.Entry
			for _, e := range hook.AllEntries() {
				if e.Level <= logrus.WarnLevel {
					warns = append(warns, e)
				}
			}
			switch {
			case tc.ignored == 0 && len(warns) != 0:
				t.Errorf("warnings: %v", warns)
			case tc.ignored > 0 && len(warns) != 1:
				t.Errorf("%d warnings, want 1 for the version", len(warns))
			case tc.ignored > 0 && (warns[0].Data["ignored"] != tc.ignored || !strings.Contains(warns[0].Message, fmt.Sprintf("registered %d task", tc.ignored))):
				t.Errorf("warning %q %v, want %d ignored", warns[0].Message, warns[0].Data, tc.ignored)
			}
			if len(h.tasks) != 2 || !h.tasks[0].Equal(&tasks[0]) || !h.tasks[1].Equal(&tasks[1]) {
				t.Errorf("the version's tasks changed: %+v", h.tasks)
			}
		})
	}
}

// A plugin may register at most scheduler.MaxTasks tasks: one more fails
// the load with an error saying so, and is refused to later instances.
func TestRegisterTaskLimit(t *testing.T) {
	specs := func(n int) []hostfuncs.TaskSpec {
		out := make([]hostfuncs.TaskSpec, n)
		for i := range out {
			out[i] = every(fmt.Sprintf("t%d", i), time.Minute)
		}
		return out
	}
	const want = "registers more than 1000 tasks"
	for _, tc := range []struct {
		name   string
		n      int
		refuse bool
	}{
		{"at the limit", scheduler.MaxTasks, false},
		{"over the limit", scheduler.MaxTasks + 1, true},
		{"far over the limit", 3 * scheduler.MaxTasks, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := schedHost()
			errs := initInstance(h, specs(tc.n))
			tasks, err := h.fixTasks()
			if !tc.refuse {
				if errs != nil || err != nil || len(tasks) != tc.n {
					t.Fatalf("%d tasks: %v %v", len(tasks), errs, err)
				}
				// A later instance registering more is refused too.
				if errs := initInstance(h, specs(tc.n+1)); len(errs) != 1 || !strings.Contains(errs[0].Error(), want) {
					t.Errorf("later instance: %v", errs)
				}
				return
			}
			if len(errs) != tc.n-scheduler.MaxTasks || len(errs) == 0 || !strings.Contains(errs[0].Error(), want) {
				t.Errorf("%d refusals (%v), want %d saying %q", len(errs), errs[:min(len(errs), 1)], tc.n-scheduler.MaxTasks, want)
			}
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("fixTasks: %v, want an error saying %q", err, want)
			}
		})
	}
}

// The routes a plugin asks to make public are bounded: a hostile init that
// asks for a new route each time (every instance runs it) could otherwise
// grow the host's memory and the log without end.
func TestPublicRouteLimit(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	pc := &config.Plugin{PublicRoutes: []string{"/listed"}}
	h := newHost("p", pc, logrus.NewEntry(log), nil, nil)
	for i := range MaxPublicRoutes - 1 {
		if err := h.PublicRoute(fmt.Sprintf("/r%d", i)); err != nil {
			t.Fatalf("route %d: %v", i, err)
		}
	}
	if err := h.PublicRoute("/listed"); err != nil {
		t.Fatalf("the %dth route: %v", MaxPublicRoutes, err)
	}
	if err := h.PublicRoute("/r0"); err != nil {
		t.Errorf("a route asked before, asked again: %v", err)
	}
	for i := range 1000 {
		if err := h.PublicRoute(fmt.Sprintf("/more%d", i)); err == nil || !strings.Contains(err.Error(), "at most 100 public routes") {
			t.Fatalf("route %d past the limit: %v", MaxPublicRoutes+i, err)
		}
	}
	if n := len(hook.AllEntries()); n > MaxPublicRoutes {
		t.Errorf("%d log lines for %d routes", n, MaxPublicRoutes)
	}
	if !h.isPublic([]byte("/listed")) || h.isPublic([]byte("/r1")) {
		t.Error("the listed route is not public, or an unlisted one is")
	}
}

// The public routes are what the version's first instance asked for: a
// listed route a later instance's init asks for first stays protected,
// as the operator was told at load (an audit's plugin opened one from an
// instance the pool added later).
func TestPublicRoutesSettleAfterFirstInstance(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	pc := &config.Plugin{PublicRoutes: []string{"/ping", "/secret"}}
	h := newHost("p", pc, logrus.NewEntry(log), nil, nil)
	if err := h.PublicRoute("/ping"); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if un := h.unasked(); !slices.Equal(un, []string{"/secret"}) {
		t.Fatalf("unasked = %q", un)
	}
	for _, p := range []string{"/ping", "/secret"} { // a later instance's init
		if err := h.PublicRoute(p); err != nil {
			t.Fatal(err)
		}
	}
	if !h.isPublic([]byte("/ping")) || h.isPublic([]byte("/secret")) {
		t.Errorf("public: /ping %t, /secret %t; want only /ping", h.isPublic([]byte("/ping")), h.isPublic([]byte("/secret")))
	}
	if e := hook.LastEntry(); e == nil || e.Level != logrus.WarnLevel || !strings.Contains(e.Message, "stays protected") {
		t.Errorf("last log line %+v, want the warning", e)
	}
}

// public_route refuses, uncopied, a path over hostfuncs.MaxPublicRoute:
// it must be the longest route the config takes, or a route the operator
// may list could never be asked for.
func TestPublicRouteBoundsAgree(t *testing.T) {
	if hostfuncs.MaxPublicRoute != config.MaxRouteLength {
		t.Fatalf("hostfuncs.MaxPublicRoute = %d, config.MaxRouteLength = %d", hostfuncs.MaxPublicRoute, config.MaxRouteLength)
	}
}
