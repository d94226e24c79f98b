package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"golang.org/x/time/rate"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/auth"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/logging"
	"github.com/greenroom-dev/greenroom/runtime/server"
)

func serveCmd() *cobra.Command {
	var files []string
	var watch bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the configured plugins (built .wasm files)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), files, runtime.Options{}, watch)
		},
	}
	addConfigFlag(cmd, &files, []string{"config.toml"})
	cmd.Flags().BoolVar(&watch, "watch", false, "reload a plugin when its .wasm file changes")
	return cmd
}

func devCmd() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Build plugins from their Go sources when they changed, serve ./config.toml, rebuild and reload on source changes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), files, runtime.Options{BuildSources: true}, true)
		},
	}
	addConfigFlag(cmd, &files, []string{"config.toml"})
	return cmd
}

// loadConfig reads the config files; its errors exit with code 2.
func loadConfig(files []string) (*config.Config, error) {
	cfg, err := config.Load(files, nil)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	exitSecrets.AddSecrets(cfg.Secrets())
	return cfg, nil
}

// run serves until SIGINT or SIGTERM, then shuts down gracefully: the
// scheduler stops (task runs in progress are cancelled, recorded and their
// leases released, so another replica can take over at once), readiness
// turns 503, the listener closes, requests in flight get
// server.shutdown_timeout to finish, then plugins and the database close.
// The database is opened first (runtime.Prepare): failing that is fatal,
// and SIGINT or SIGTERM while it opens stop the start. It returns an error
// (exit code 1) when the deadline cut something off.
func run(ctx context.Context, files []string, opts runtime.Options, watch bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	// From the start of serve, so that no signal from then on finds the
	// process without its handler (SIGHUP's default action is to exit);
	// one during Go's start-up and package initialization, before this,
	// still has that effect (docs/operations.md).
	sigs := notifySignals()
	defer sigs.stopNotify()
	stamps := configStamps(files) // before the read: the files the config in force was read from
	cfg, err := loadConfig(files)
	if err != nil {
		return err
	}
	devToken := ""
	if opts.BuildSources && !cfg.Auth.DangerouslyDisable {
		// Before the logger exists, so that the redactor knows it.
		if devToken, err = addDevToken(cfg); err != nil {
			return err
		}
	}
	log, redactor, err := logging.New(os.Stderr, cfg.Log.Format, cfg.Log.Level, cfg.Secrets())
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer routeStdLog(log).flush()
	rt, err := runtime.New(cfg, log, opts)
	if err != nil {
		return err
	}
	// The database (when a plugin is granted it) must open before anything
	// serves: a missing privilege stops startup with what to do about it.
	reloadPending, err := prepare(ctx, rt, sigs, log)
	if err != nil {
		rt.Close(context.Background())
		if errors.Is(err, errStopped) {
			log.Info("shut down cleanly")
			return nil
		}
		return err
	}
	// Tasks start as plugins load and register them.
	rt.StartScheduler()
	srv := server.New(rt, log)
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		rt.Close(context.Background())
		return fmt.Errorf("server.listen: %w", err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	var metricsSrv *http.Server
	if addr := cfg.Server.MetricsListen; addr != "" {
		mln, err := net.Listen("tcp", addr)
		if err != nil {
			srv.Shutdown(context.Background())
			rt.Close(context.Background())
			return fmt.Errorf("server.metrics_listen: %w", err)
		}
		// The handler answers every path itself (404 and 405, logged,
		// with a request id); a ServeMux in front answered an unclean
		// path (//metrics) with its own redirect, unlogged.
		var capped net.Listener
		metricsSrv, capped = srv.MetricsServer(mln)
		go metricsSrv.Serve(capped)
		log.WithField("listen", mln.Addr().String()).Info("metrics listening (no authentication: keep this address internal)")
	}
	log.WithFields(logrus.Fields{"listen": ln.Addr().String(), "plugins": len(cfg.Plugins)}).Info("greenroom listening")
	if devToken != "" {
		printDevToken(os.Stdout, devToken, ln.Addr().String(), cfg)
	}

	rl := &reloader{files: files, devToken: devToken, log: log, redactor: redactor, rt: rt, srv: srv, applied: stamps}
	// Every reload (the admin API's too, whose request context fasthttp
	// never cancels) ends when shutdown starts, so that a reload waiting
	// on a database that does not answer cannot hold the shutdown.
	reloadCtx, cancelReloads := context.WithCancel(ctx)
	defer cancelReloads()
	srv.SetReloader(func(context.Context) (*runtime.ReloadResult, error) { return rl.reload(reloadCtx) })

	loadCtx, cancelLoad := context.WithCancel(ctx)
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		start := time.Now()
		rt.Load(loadCtx)
		took := time.Since(start).Round(time.Millisecond).String()
		if loadCtx.Err() != nil || srv.Draining() {
			log.WithField("took", took).Info("plugin loading stopped: shutting down")
			return
		}
		var retrying []string
		for _, id := range rt.IDs() {
			if slot := rt.Slot(id); slot != nil && slot.RetryWhy() != "" {
				retrying = append(retrying, id)
			}
		}
		if len(retrying) > 0 {
			// Readiness stays 503 until their loads succeed (or fail
			// for good): "ready" would be false here.
			log.WithFields(logrus.Fields{"took": took, "retrying": retrying}).Warn("plugins loaded but for those retrying their load; not ready until they load")
			return
		}
		log.WithField("took", took).Info("plugins loaded; ready")
	}()

	var stopWatch func()
	if watch || opts.BuildSources {
		// Its reloads end when shutdown starts, as the others do.
		if stopWatch, err = startWatcher(reloadCtx, rl, opts.BuildSources); err != nil {
			log.WithError(err).Error("cannot watch plugin files; reload with SIGHUP or the admin API")
		}
	}

	if reloadPending {
		log.Info("SIGHUP came while the database opened: reloading the config and every plugin once they are loaded")
		go rl.reload(reloadCtx)
	}
	var serveFailure error
wait:
	for {
		select {
		case <-sigs.reload:
			log.Info("SIGHUP: reloading the config and every plugin")
			go rl.reload(reloadCtx)
			continue
		case sig := <-sigs.stop:
			log.WithField("signal", sig.String()).Info("shutting down")
		case err := <-serveErr:
			serveFailure = fmt.Errorf("serve: %w", err)
			log.WithError(err).Error("server stopped")
		case <-ctx.Done():
			log.Info("shutting down")
		}
		break wait
	}
	// The reloads in progress end (what served before serves on), and
	// none asked for from now on changes anything. The watcher is
	// stopped later, once the requests have drained: it waits for its
	// reload in progress to return, and a module being compiled then is
	// compiled to the end (a second, longer for a large module), which
	// held up readiness's 503, the second signal's handling and the
	// shutdown's deadline, counted only from after it.
	cancelReloads()

	// In order: readiness turns 503; running tasks are asked to stop
	// (their ctx cancelled) and given until the deadline to return (less a
	// second in which the ones still running are interrupted and recorded,
	// reported as cut off), their leases released as each ends (so another
	// replica takes them over at once); meanwhile requests are still
	// served, and after server.shutdown_delay the listener stops and
	// requests in flight finish; then instances and the database close.
	// One deadline, shutdown_timeout after the delay, bounds it all — also
	// the calls still running on versions a reload replaced, whose own
	// drain deadline no longer applies (BeginShutdown): what it cuts off is
	// reported whichever version ran it. Both are read now, so that a
	// reload's values apply.
	rt.BeginShutdown()
	runningCfg := rt.Config()
	running := runningCfg.Server
	timeout, delay := running.ShutdownTimeout.D(), running.ShutdownDelay.D()
	// As the log and the exit error tell them: one from the environment
	// is a secret, which the redaction of its text as written ("30000ms")
	// misses decoded ("30s").
	shownTimeout, shownDelay := timeout.String(), delay.String()
	if runningCfg.IsSecretPath("server.shutdown_timeout") {
		shownTimeout = logging.Redacted
	}
	if runningCfg.IsSecretPath("server.shutdown_delay") {
		shownDelay = logging.Redacted
	}
	start := time.Now()
	sctx, cancel := context.WithDeadline(context.Background(), start.Add(delay+timeout))
	defer cancel()
	// A second SIGINT or SIGTERM (an operator's second Ctrl-C) cuts the
	// drain short: what is still running is cut off and reported now.
	drainDone := make(chan struct{})
	defer close(drainDone)
	var forced atomic.Bool
	go func() {
		for {
			select {
			case <-sigs.reload:
				log.Info("SIGHUP during shutdown: ignored")
				continue
			case sig := <-sigs.stop:
				log.WithField("signal", sig.String()).Warn("second signal: cutting the shutdown short")
				forced.Store(true)
				cancel()
				return
			case <-drainDone:
				return
			}
		}
	}()
	var cut []error
	srv.Drain()
	// Task runs and requests finish side by side: a run that ignores its
	// ctx holds neither the delay nor the requests' drain.
	stopped := make(chan error, 1)
	go func() { stopped <- rt.StopScheduler(sctx) }()
	if left := delay - time.Since(start); left > 0 {
		log.WithField("delay", shownDelay).Info("readiness is 503; still serving for server.shutdown_delay")
		select {
		case <-time.After(left):
		case <-sctx.Done():
		}
	}
	if err := srv.Shutdown(sctx); err != nil {
		cut = append(cut, fmt.Errorf("requests in flight: %w", err))
	}
	if err := <-stopped; err != nil {
		cut = append(cut, err)
	}
	// metrics_listen serves through the drain, whose counts a scrape
	// should see (the main listener's /metrics answers 503 by then).
	if metricsSrv != nil {
		metricsSrv.Close()
	}
	if stopWatch != nil {
		stopWatch()
	}
	cancelLoad()
	<-loaded
	if err := rt.Close(sctx); err != nil {
		cut = append(cut, err)
	}
	// A request whose plugin call was left running (it did not come
	// back when interrupted) gets its access log line now: its handler
	// never returns.
	srv.LogCutOff()
	if len(cut) > 0 {
		err := errors.Join(cut...)
		if forced.Load() {
			log.WithError(err).Error("a second signal cut work off")
			return &exitError{code: 1, err: fmt.Errorf("shutdown cut short by a second signal after %s: %w", time.Since(start).Round(time.Millisecond), err)}
		}
		log.WithError(err).Error("shutdown deadline cut work off")
		return &exitError{code: 1, err: fmt.Errorf("shutdown after %s cut work off: %w", shownTimeout, err)}
	}
	log.Info("shut down cleanly")
	return serveFailure
}

// signals is what serve is told by signals: SIGINT and SIGTERM on stop,
// SIGHUP on reload. They have channels of their own: on one channel of
// one place, a SIGHUP waiting there made signal.Notify, which never
// blocks, drop a SIGTERM that came meanwhile, and the process went on
// serving (a SIGHUP storm followed by a SIGTERM, as a deploy script sends
// them: 2 runs in 12 under load). Several SIGHUPs while one waits are one
// reload (it reads the files as they are then); stop holds two, the
// signal and a second one that cuts the drain short.
type signals struct {
	stop   chan os.Signal
	reload chan os.Signal
}

// notifySignals starts delivering SIGINT, SIGTERM and SIGHUP to a new
// signals; stopNotify ends it.
func notifySignals() *signals {
	s := &signals{stop: make(chan os.Signal, 2), reload: make(chan os.Signal, 1)}
	signal.Notify(s.reload, syscall.SIGHUP)
	signal.Notify(s.stop, syscall.SIGINT, syscall.SIGTERM)
	return s
}

func (s *signals) stopNotify() {
	signal.Stop(s.stop)
	signal.Stop(s.reload)
}

// errStopped: SIGINT or SIGTERM came before the server started serving.
var errStopped = errors.New("stopped before serving")

// prepare runs rt.Prepare until it ends; SIGINT or SIGTERM meanwhile
// cancel it and make it return errStopped. It reports whether a SIGHUP came
// meanwhile (a reload is then due).
func prepare(ctx context.Context, rt *runtime.Runtime, sigs *signals, log *logrus.Logger) (reloadPending bool, err error) {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- rt.Prepare(pctx) }()
	stopped := false
	for {
		select {
		case err := <-done:
			if stopped {
				return reloadPending, errStopped
			}
			return reloadPending, err
		case <-sigs.reload:
			reloadPending = true
		case sig := <-sigs.stop:
			log.WithField("signal", sig.String()).Info("shutting down before serving: the database was still opening")
			stopped = true
			cancel()
		}
	}
}

// devTokenName is the [auth.tokens] name of the token `greenroom dev`
// generates (with a suffix if the config already uses it).
const devTokenName = "dev"

// addDevToken adds a random admin token for this run of `greenroom dev`
// to cfg, as a user principal allowed every plugin, and returns it.
func addDevToken(cfg *config.Config) (string, error) {
	tok, err := auth.GenerateToken()
	if err != nil {
		return "", err
	}
	addDevTokenValue(cfg, tok)
	return tok, nil
}

// addDevTokenValue adds tok as the development token to cfg (again, after
// a reload re-read the config).
func addDevTokenValue(cfg *config.Config, tok string) {
	name := devTokenName
	for i := 2; cfg.Auth.Tokens[name] != nil; i++ {
		name = fmt.Sprintf("%s-%d", devTokenName, i)
	}
	if cfg.Auth.Tokens == nil {
		cfg.Auth.Tokens = map[string]*config.Token{}
	}
	cfg.Auth.Tokens[name] = &config.Token{Token: tok, Subject: "user:development/dev", Type: "user", Admin: true}
}

// printDevToken shows the development token once, on stdout: the log
// (stderr) redacts it like every configured secret.
// Its example lists the plugins through the admin API, which answers
// whatever the plugins serve (a plugin's own routes are its business).
func printDevToken(w io.Writer, tok, addr string, cfg *config.Config) {
	fmt.Fprintf(w, "\ngreenroom dev: token for this run (admin, every plugin; shown once, never logged, gone at exit):\n\n    %s\n\n"+
		"    curl -H \"Authorization: Bearer %s\" http://%s/.greenroom/plugins/v1/\n\n", tok, tok, addr)
}

// routeStdLog sends what Go's standard logger is given (net/http's
// transport writes to it) through log: formatted, with fields, redacted,
// at warning level, under a rate limit of its own (stdLogWriter). The
// caller flushes the returned writer before it exits, so that what it
// dropped is reported.
func routeStdLog(log *logrus.Logger) *stdLogWriter {
	w := &stdLogWriter{log: log, limiter: rate.NewLimiter(stdLogRate, stdLogBurst)}
	stdlog.SetFlags(0)
	stdlog.SetOutput(w)
	return w
}

// Go's standard logger may write stdLogRate lines a second on average,
// stdLogBurst at once; what it writes past that is counted and reported
// in one summary line a second at most (stdLogReport).
const (
	stdLogRate   = 10
	stdLogBurst  = 100
	stdLogReport = time.Second
)

// stdLogWriter sends the lines of Go's standard logger to the runtime's
// log. net/http's transport writes to it the bytes a server sent past the
// end of a response ("Unsolicited response received on idle HTTP channel
// starting with ..."): up to 4 KiB a URL reader's server chose, possibly
// an integration token it echoed, cut where no redactor finds it whole.
// They are withheld.
//
// Such a line comes from a transport goroutine that knows no plugin, so
// no plugin's log rate limit bounds it: a plugin reading in a loop from a
// server that sends bytes past each response made one runtime warning a
// read. The writer has a rate limit of its own; the lines over it are
// counted, and reported in a summary line within stdLogReport.
type stdLogWriter struct {
	log     *logrus.Logger
	limiter *rate.Limiter
	dropped atomic.Int64
	pending atomic.Bool // a summary is scheduled
}

func (w *stdLogWriter) Write(b []byte) (int, error) {
	if !w.limiter.Allow() {
		w.dropped.Add(1)
		if w.pending.CompareAndSwap(false, true) {
			time.AfterFunc(stdLogReport, func() {
				w.pending.Store(false)
				w.flush()
			})
		}
		return len(b), nil
	}
	msg := strings.TrimRight(string(b), "\n")
	if strings.HasPrefix(msg, "Unsolicited response received on idle HTTP channel") {
		if i := strings.Index(msg, " starting with "); i >= 0 {
			msg = msg[:i] + " (its bytes are not logged)"
		}
	}
	w.log.WithField("component", "go").Warn(msg)
	return len(b), nil
}

// flush writes the summary of the lines dropped since the last one, if
// any.
func (w *stdLogWriter) flush() {
	if n := w.dropped.Swap(0); n > 0 {
		w.log.WithFields(logrus.Fields{"component": "go", "dropped": n}).Warnf(
			"dropped %d lines of Go's standard logger over its rate limit (%d/s, burst %d)", n, stdLogRate, stdLogBurst)
	}
}
