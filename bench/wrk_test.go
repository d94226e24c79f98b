package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// Outputs of wrk 4.1.0 (Debian), as printed with --latency.
const wrkClean = `Running 5s test @ http://127.0.0.1:41873/api/hello/ping
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.61ms    8.28ms  70.12ms   87.20%
    Req/Sec    10.03k     1.49k   12.54k    70.00%
  Latency Distribution
     50%    3.80ms
     75%    8.26ms
     90%   16.75ms
     99%   36.61ms
  49931 requests in 5.00s, 5.95MB read
Requests/sec:   9980.53
Transfer/sec:      1.19MB
`

const wrkErrors = `Running 1m test @ http://127.0.0.1:18181/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.24ms    9.49ms  65.93ms   92.02%
    Req/Sec    20.81k     9.34k   33.03k    50.00%
  Latency Distribution
     50%  206.00us
     75%  528.00us
     90%    8.55ms
     99%     1.20s
  1240652 requests in 1.00m, 2.64MB read
  Socket errors: connect 1, read 12, write 0, timeout 3
  Non-2xx or 3xx responses: 20652
Requests/sec:  20637.43
Transfer/sec:      2.64MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkClean)
	if err != nil {
		t.Fatal(err)
	}
	want := Round{Requests: 49931, Elapsed: 5 * time.Second, RPS: 9980.53, P50: 3800 * time.Microsecond, P99: 36610 * time.Microsecond}
	if r != want {
		t.Errorf("got %+v\nwant %+v", r, want)
	}
	if r.Errors() != 0 {
		t.Errorf("errors %d", r.Errors())
	}

	r, err = parseWrk(wrkErrors)
	if err != nil {
		t.Fatal(err)
	}
	want = Round{Requests: 1240652, Elapsed: time.Minute, RPS: 20637.43, P50: 206 * time.Microsecond, P99: 1200 * time.Millisecond, Non2xx: 20652, SocketErrors: 16}
	if r != want {
		t.Errorf("got %+v\nwant %+v", r, want)
	}
	if r.Errors() != 20652+16 {
		t.Errorf("errors %d", r.Errors())
	}
}

func TestParseWrkRefusesIncompleteOutput(t *testing.T) {
	for name, out := range map[string]string{
		"connection refused": "unable to connect to 127.0.0.1:1 Connection refused\n",
		"no --latency":       strings.Replace(wrkClean, "     50%    3.80ms\n", "", 1),
		"no rate":            strings.Replace(wrkClean, "Requests/sec:   9980.53\n", "", 1),
	} {
		if _, err := parseWrk(out); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestWrkDurationUnits(t *testing.T) {
	for in, want := range map[[2]string]time.Duration{
		{"850.00", "us"}: 850 * time.Microsecond,
		{"1.50", "ms"}:   1500 * time.Microsecond,
		{"2.00", "s"}:    2 * time.Second,
		{"1.50", "m"}:    90 * time.Second,
		{"1.00", "h"}:    time.Hour,
	} {
		got, err := wrkDuration(in[0], in[1])
		if err != nil || got != want {
			t.Errorf("%s%s: %v %v, want %v", in[0], in[1], got, err, want)
		}
	}
}

func TestParseStatus(t *testing.T) {
	const status = "Name:\tgreenroom\nVmPeak:\t 2412340 kB\nVmSize:\t 2410000 kB\nVmHWM:\t  314496 kB\nVmRSS:\t  306900 kB\nThreads:\t9\n"
	rss, hwm, err := parseStatus(status)
	if err != nil || rss != 306900 || hwm != 314496 {
		t.Errorf("got %d %d %v", rss, hwm, err)
	}
	if _, _, err := parseStatus("Name:\tx\n"); err == nil {
		t.Error("no error without VmRSS")
	}
	if _, _, err := parseStatus("VmRSS:\t 12 MB\nVmHWM:\t 12 kB\n"); err == nil {
		t.Error("no error for an unknown unit")
	}
}

func TestParseStatCPU(t *testing.T) {
	// A command name with a space and a parenthesis, then 1234 + 56 ticks.
	const stat = "4242 (green room) x) S 1 4242 4242 0 -1 4194560 9107 0 0 0 1234 56 0 0 20 0 9 0 1000 2410000000 76725 18446744073709551615\n"
	got, err := parseStatCPU(stat)
	if want := 12900 * time.Millisecond; err != nil || got != want {
		t.Errorf("got %v %v, want %v", got, err, want)
	}
	for _, bad := range []string{"4242 greenroom S 1", "4242 (greenroom) S 1 2 3", "4242 (g) S 1 4242 4242 0 -1 4194560 9107 0 0 0 12x 56 0"} {
		if _, err := parseStatCPU(bad); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
	// This process has used some CPU, and the figure does not go back.
	a, err := cpuTime(os.Getpid())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	for i := 0; i < 1e7; i++ {
		sink += i
	}
	if b, err := cpuTime(os.Getpid()); err != nil || b < a {
		t.Errorf("cpu time went from %v to %v (%v)", a, b, err)
	}
}

var sink int
