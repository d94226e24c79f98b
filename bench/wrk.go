package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Round is what one load-generator run against one server measured.
type Round struct {
	Requests int64         `json:"requests"` // completed requests, whatever their status
	Elapsed  time.Duration `json:"elapsed"`
	RPS      float64       `json:"rps"` // completed requests per second
	P50      time.Duration `json:"p50"`
	P99      time.Duration `json:"p99"`
	// Non2xx counts responses with a status of 400 or more (wrk's
	// "Non-2xx or 3xx responses"; no route here redirects).
	Non2xx int64 `json:"non2xx"`
	// SocketErrors counts connect, read and write errors and timeouts.
	SocketErrors int64 `json:"socket_errors"`
	// Capped is set when the round stopped at its request bound rather
	// than at its duration; its RPS then understates the rate.
	Capped bool `json:"capped"`
	// CPU is the CPU time (user + system) the server used during the
	// round, read from /proc by the harness; 0 when unknown. The load
	// generator's and a database server's are not in it.
	CPU time.Duration `json:"cpu,omitempty"`
}

// Errors is every failed request of the round.
func (r Round) Errors() int64 { return r.Non2xx + r.SocketErrors }

var (
	wrkRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h),`)
	wrkRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkPct      = regexp.MustCompile(`(?m)^\s+(50|75|90|99)%\s+([0-9.]+)(us|ms|s|m|h)\s*$`)
	wrkSocket   = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx   = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses: (\d+)`)
)

// parseWrk reads what `wrk --latency` printed. The request count, the
// rate and the 50th and 99th percentiles must be there; error lines appear
// only when there were errors.
func parseWrk(out string) (Round, error) {
	var r Round
	m := wrkRequests.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output has no \"N requests in T\" line:\n%s", tail(out, 600))
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	d, err := wrkDuration(m[2], m[3])
	if err != nil {
		return r, err
	}
	r.Elapsed = d
	m = wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output has no Requests/sec line:\n%s", tail(out, 600))
	}
	if r.RPS, err = strconv.ParseFloat(m[1], 64); err != nil {
		return r, fmt.Errorf("wrk Requests/sec %q: %v", m[1], err)
	}
	for _, m := range wrkPct.FindAllStringSubmatch(out, -1) {
		d, err := wrkDuration(m[2], m[3])
		if err != nil {
			return r, err
		}
		switch m[1] {
		case "50":
			r.P50 = d
		case "99":
			r.P99 = d
		}
	}
	if r.P50 == 0 || r.P99 == 0 {
		return r, fmt.Errorf("wrk output has no latency distribution (run with --latency):\n%s", tail(out, 600))
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.SocketErrors += n
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return r, nil
}

// wrkDuration converts a number in one of wrk's time units.
func wrkDuration(num, unit string) (time.Duration, error) {
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("wrk time %q: %v", num+unit, err)
	}
	scale := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}[unit]
	return time.Duration(f * float64(scale)), nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// loadTarget is the one request a round repeats.
type loadTarget struct {
	Method string
	URL    string
	Body   []byte
	Header [][2]string
}

// loadGen drives one server for one round from a separate process.
type loadGen interface {
	// Describe names the generator and its settings for the report.
	Describe(conns int) string
	// Run sends t from conns connections, closed loop, for d or until max
	// requests were sent, whichever comes first.
	Run(ctx context.Context, t loadTarget, d time.Duration, conns int, max int64) (Round, error)
}

// wrkGen runs wrk (one thread, as `wrk -t1 -c64`) with a Lua script that
// sends the target request and stops the thread after max requests.
type wrkGen struct {
	path    string // the wrk executable
	version string
	dir     string // where scripts and bodies are written
	n       int
}

func newWrk(path, dir string) *wrkGen {
	out, _ := exec.Command(path, "--version").CombinedOutput() // exits 1 after printing
	v := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	if i := strings.Index(v, " Copyright"); i > 0 {
		v = v[:i]
	}
	return &wrkGen{path: path, version: v, dir: dir}
}

func (w *wrkGen) Describe(conns int) string {
	return fmt.Sprintf("%s, `-t1 -c%d --latency --timeout 10s` with a Lua script that stops after the round's request bound", w.version, conns)
}

// wrkScript is the Lua script of one target: the request is formatted
// once, and request() counts it so that a round is bounded in requests as
// well as in time (-d).
const wrkScript = `-- written by greenbench (bench/wrk.go)
wrk.method = %q
%s
local req, n, max = nil, 0, 0
function init(args)
  max = tonumber(args[1]) or 0
  req = wrk.format()
end
function request()
  n = n + 1
  if max > 0 and n > max then wrk.thread:stop() end
  return req
end
`

func (w *wrkGen) Run(ctx context.Context, t loadTarget, d time.Duration, conns int, max int64) (Round, error) {
	w.n++
	var body string
	if len(t.Body) > 0 {
		bodyPath := filepath.Join(w.dir, fmt.Sprintf("wrk-body-%d", w.n))
		if err := os.WriteFile(bodyPath, t.Body, 0o600); err != nil {
			return Round{}, err
		}
		body = fmt.Sprintf("local f = assert(io.open(%q, \"rb\"))\nwrk.body = f:read(\"*a\")\nf:close()", bodyPath)
	}
	script := filepath.Join(w.dir, fmt.Sprintf("wrk-%d.lua", w.n))
	if err := os.WriteFile(script, []byte(fmt.Sprintf(wrkScript, t.Method, body)), 0o600); err != nil {
		return Round{}, err
	}
	secs := int((d + time.Second - 1) / time.Second)
	args := []string{"-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", secs), "--latency", "--timeout", "10s", "-s", script}
	for _, h := range t.Header {
		args = append(args, "-H", h[0]+": "+h[1])
	}
	args = append(args, t.URL, "--", strconv.FormatInt(max, 10))
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.path, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return Round{}, fmt.Errorf("wrk did not stop: %w", ctx.Err())
		}
		return Round{}, fmt.Errorf("wrk: %v\n%s", err, tail(string(out), 600))
	}
	r, err := parseWrk(string(out))
	if err != nil {
		return r, err
	}
	r.Capped = max > 0 && r.Requests >= max-int64(conns)
	return r, nil
}

var errNoWrk = errors.New("wrk not found on PATH (install it with apt-get install -y wrk)")
