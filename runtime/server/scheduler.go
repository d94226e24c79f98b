package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/scheduler"
)

// The scheduler's admin API (docs/scheduler.md), under
// /.greenroom/scheduler/v1/ behind requireAdmin:
//
//	GET  tasks[?all=true]                     every task with its state
//	GET  tasks/{plugin}/{task}[?runs=N]       one task and its last runs
//	POST tasks/{plugin}/{task}/trigger        run it now (409 while it runs)
//	POST tasks/{plugin}/{task}/cancel[?run_id=R] stop its run, on any replica

func (s *Server) schedulerRoutes(admin fiber.Router) {
	g := admin.Group("/scheduler/v1")
	g.Get("/tasks", s.listTasks)
	g.All("/tasks", methodNotAllowed(fiber.MethodGet))
	g.Get("/tasks/:plugin/:task", s.getTask)
	g.All("/tasks/:plugin/:task", methodNotAllowed(fiber.MethodGet))
	g.Post("/tasks/:plugin/:task/trigger", s.triggerTask)
	g.All("/tasks/:plugin/:task/trigger", methodNotAllowed(fiber.MethodPost))
	g.Post("/tasks/:plugin/:task/cancel", s.cancelTask)
	g.All("/tasks/:plugin/:task/cancel", methodNotAllowed(fiber.MethodPost))
}

func (s *Server) listTasks(c *fiber.Ctx) error {
	sched := s.rt.Scheduler()
	all := false
	v, err := onceQuery(c, "all")
	if err != nil {
		return err
	}
	switch v {
	case "", "false", "0":
	case "true", "1":
		all = true
	default:
		return apiErr(fiber.StatusBadRequest, "bad_request", fmt.Sprintf("all must be true or false, not %q", v))
	}
	tasks, err := sched.Tasks(c.UserContext(), all)
	if err != nil {
		return s.schedulerUnavailable(err)
	}
	return c.JSON(fiber.Map{"replica": sched.Replica(), "enabled": sched.Enabled(), "tasks": tasks})
}

// onceQuery returns the query parameter name, or a 400 when it is given
// more than once: readers differ on which of them counts (Fiber reads the
// first, other frameworks the last), so ?runs=1&runs=200 was read as 1
// here, where a proxy or client checking the query may have read 200.
func onceQuery(c *fiber.Ctx, name string) (string, error) {
	if vs := c.Context().QueryArgs().PeekMulti(name); len(vs) > 1 {
		return "", apiErr(fiber.StatusBadRequest, "bad_request", fmt.Sprintf("%s is given %d times; give it once", name, len(vs)))
	}
	return c.Query(name), nil
}

// taskParams returns the plugin and task of the path, or a 404 for
// values no task can have.
func taskParams(c *fiber.Ctx) (plugin, task string, err error) {
	plugin, task = c.Params("plugin"), c.Params("task")
	if !config.PluginIDPattern.MatchString(plugin) || !scheduler.TaskIDPattern.MatchString(task) {
		return "", "", unknownTask(plugin, task)
	}
	return plugin, task, nil
}

func unknownTask(plugin, task string) *APIError {
	return &APIError{Status: fiber.StatusNotFound, Code: "unknown_task", Message: fmt.Sprintf("no task %q of plugin %q", task, plugin)}
}

func (s *Server) getTask(c *fiber.Ctx) error {
	plugin, task, err := taskParams(c)
	if err != nil {
		return err
	}
	limit := 20
	v, err := onceQuery(c, "runs")
	if err != nil {
		return err
	}
	if v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100 {
			return apiErr(fiber.StatusBadRequest, "bad_request", "runs must be an integer from 0 to 100")
		}
		limit = n
	}
	st, runs, err := s.rt.Scheduler().Task(c.UserContext(), plugin, task, limit)
	if errors.Is(err, scheduler.ErrUnknownTask) {
		return unknownTask(plugin, task)
	}
	if err != nil {
		return s.schedulerUnavailable(err)
	}
	return c.JSON(fiber.Map{"task": st, "runs": runs})
}

// triggerTask runs a task now (POST .../trigger): 200 with the run once it
// started, 404 for a task not registered on this replica, 409 while it
// runs (a global task on any replica; a run of this replica's that has
// returned, its end being recorded, is waited for, 5s at most, and the
// task run then), 503 when this replica runs no tasks.
func (s *Server) triggerTask(c *fiber.Ctx) error {
	return s.taskAction(c, s.rt.Scheduler().Trigger, "task triggered through the admin API", fiber.StatusOK, nil)
}

// cancelAnswer is the answer of POST .../cancel: the run, and how it is
// stopped.
type cancelAnswer struct {
	scheduler.Run
	// Cancel is "asked" when this replica runs the run and asked it to
	// stop, "requested" when another replica runs it and was asked
	// through the database, which it reads within half a second (at its
	// next lease renewal, for a replica of an older greenroom).
	Cancel  string `json:"cancel"`
	Message string `json:"message"`
}

// cancelTask stops a task's run in progress (POST .../cancel, the run of
// id run_id if given): 202 with the run once it is asked to stop on this
// replica, or once its cancel is recorded for the replica running it,
// 404 for a task not registered on this replica (unless it is a global
// task whose run another replica holds: a rolling upgrade's new version
// dropped it, the old one runs it), 409 task_not_running
// when no run (of that id) is in progress, 503 when this replica runs no
// tasks and no other replica runs the task.
func (s *Server) cancelTask(c *fiber.Ctx) error {
	runID, err := onceQuery(c, "run_id")
	if err != nil {
		return err
	}
	// Only a run id can name a run: anything else (a NUL byte, invalid
	// UTF-8, which PostgreSQL refuses as a parameter) answered 503
	// scheduler_unavailable, with an error line saying the database could
	// not be reached, when the task was global and not running here.
	if runID != "" && !scheduler.RunIDPattern.MatchString(runID) {
		if len(runID) > 40 {
			runID = runID[:40] + "..."
		}
		return apiErr(fiber.StatusBadRequest, "bad_request", fmt.Sprintf("run_id %q is not a run id: want 24 lowercase hex digits, as run_id in the task's runs", runID))
	}
	sched := s.rt.Scheduler()
	cancel := func(ctx context.Context, plugin, task string) (scheduler.Run, error) {
		return sched.CancelRun(ctx, plugin, task, runID)
	}
	return s.taskAction(c, cancel, "task run canceled through the admin API", fiber.StatusAccepted, func(run scheduler.Run) any {
		if run.Replica == sched.Replica() {
			return cancelAnswer{Run: run, Cancel: "asked", Message: "the run was asked to stop; it is interrupted if it has not returned 5s later"}
		}
		return cancelAnswer{Run: run, Cancel: "requested", Message: fmt.Sprintf(
			"replica %s runs it: the cancel is recorded for it, and it asks the run to stop when it reads it, within half a second (a replica of an earlier greenroom, which does not read it between renewals, reads it at its next renewal of the run's lease, every third of [scheduler] lease)", run.Replica)}
	})
}

// taskAction answers a POST on one task (trigger, cancel): act's run with
// status (answer's body for it, if answer is not nil), and its errors:
// 404 unknown_task, 409 task_running when a replica's run stands in the
// way, 409 task_not_running, 503 scheduler_disabled or
// scheduler_unavailable.
func (s *Server) taskAction(c *fiber.Ctx, act func(ctx context.Context, plugin, task string) (scheduler.Run, error), done string, status int, answer func(scheduler.Run) any) error {
	plugin, task, err := taskParams(c)
	if err != nil {
		return err
	}
	run, err := act(c.UserContext(), plugin, task)
	var running *scheduler.RunningError
	switch {
	case err == nil:
		s.log.WithFields(logrus.Fields{"plugin": plugin, "task": task, "run_id": run.RunID, "replica": run.Replica}).Info(done)
		if answer != nil {
			return c.Status(status).JSON(answer(run))
		}
		return c.Status(status).JSON(run)
	case errors.Is(err, scheduler.ErrUnknownTask):
		return unknownTask(plugin, task)
	case errors.As(err, &running):
		return &APIError{Status: fiber.StatusConflict, Code: "task_running", Plugin: plugin, Message: running.Error()}
	case errors.Is(err, scheduler.ErrNotRunning):
		return &APIError{Status: fiber.StatusConflict, Code: "task_not_running", Plugin: plugin,
			Message: fmt.Sprintf("task %s/%s has no run in progress", plugin, task) + ofRun(c.Query("run_id"))}
	case errors.Is(err, scheduler.ErrDisabled):
		return &APIError{Status: fiber.StatusServiceUnavailable, Code: "scheduler_disabled", Plugin: plugin, Message: err.Error()}
	}
	return s.schedulerUnavailable(err)
}

// ofRun qualifies "no run in progress" for a cancel naming run id.
func ofRun(id string) string {
	if id == "" {
		return ""
	}
	return fmt.Sprintf(" of id %q (it ended, or never ran)", id)
}

func (s *Server) schedulerUnavailable(err error) error {
	s.log.WithError(err).Error("scheduler admin API: the scheduler's tables cannot be read")
	return &APIError{Status: fiber.StatusServiceUnavailable, Code: "scheduler_unavailable", RetryAfter: 5,
		Message: "the scheduler's database cannot be reached: " + err.Error()}
}
