package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// vegetaGen is the load generator when wrk is not installed: vegeta, as a
// library, in a separate process (`greenbench load`, this same binary),
// closed loop with one worker per connection.
type vegetaGen struct {
	self string // this executable
	why  string // why vegeta and not wrk
	dir  string
	n    int
}

func (v *vegetaGen) Describe(conns int) string {
	return fmt.Sprintf("vegeta v12 as a library (%s), %d workers on %d keep-alive connections, each sending its next request when its answer comes", v.why, conns, conns)
}

func (v *vegetaGen) Run(ctx context.Context, t loadTarget, d time.Duration, conns int, max int64) (Round, error) {
	v.n++
	args := []string{"load", "-method", t.Method, "-url", t.URL, "-duration", d.String(), "-connections", strconv.Itoa(conns), "-max-requests", strconv.FormatInt(max, 10)}
	if len(t.Body) > 0 {
		p := filepath.Join(v.dir, fmt.Sprintf("vegeta-body-%d", v.n))
		if err := os.WriteFile(p, t.Body, 0o600); err != nil {
			return Round{}, err
		}
		args = append(args, "-body", p)
	}
	for _, h := range t.Header {
		args = append(args, "-H", h[0]+": "+h[1])
	}
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, v.self, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return Round{}, fmt.Errorf("greenbench load: %v\n%s", err, tail(stderr.String(), 600))
	}
	var r Round
	if err := json.Unmarshal(out, &r); err != nil {
		return Round{}, fmt.Errorf("greenbench load: %v in %q", err, tail(string(out), 300))
	}
	return r, nil
}

// headerFlags collects repeated -H "Name: value" flags.
type headerFlags [][2]string

func (h *headerFlags) String() string { return fmt.Sprint(*h) }
func (h *headerFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("header %q: want Name: value", s)
	}
	*h = append(*h, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	return nil
}

// runLoad is `greenbench load`: one round with vegeta, printed as the JSON
// of a Round on standard output.
func runLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	method := fs.String("method", "GET", "")
	url := fs.String("url", "", "")
	bodyPath := fs.String("body", "", "file holding the request body")
	d := fs.Duration("duration", 5*time.Second, "")
	conns := fs.Int("connections", 64, "")
	max := fs.Int64("max-requests", 0, "stop after this many requests (0: no bound)")
	var hdr headerFlags
	fs.Var(&hdr, "H", "request header, repeatable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	t := vegeta.Target{Method: *method, URL: *url, Header: http.Header{}}
	for _, h := range hdr {
		t.Header.Add(h[0], h[1])
	}
	if *bodyPath != "" {
		b, err := os.ReadFile(*bodyPath)
		if err != nil {
			return err
		}
		t.Body = b
	}
	n := uint64(*conns)
	atk := vegeta.NewAttacker(vegeta.Workers(n), vegeta.MaxWorkers(n), vegeta.Connections(*conns), vegeta.MaxConnections(*conns),
		vegeta.KeepAlive(true), vegeta.Timeout(10*time.Second))
	var m vegeta.Metrics
	var r Round
	start := time.Now()
	for res := range atk.Attack(vegeta.NewStaticTargeter(t), vegeta.ConstantPacer{}, *d, "greenbench") {
		m.Add(res)
		switch {
		case res.Code == 0:
			r.SocketErrors++
		case res.Code >= 400:
			r.Non2xx++
		}
		if r.Requests++; *max > 0 && r.Requests >= *max {
			atk.Stop()
			r.Capped = true
		}
	}
	m.Close()
	r.Elapsed = time.Since(start)
	r.RPS = float64(r.Requests) / r.Elapsed.Seconds()
	r.P50, r.P99 = m.Latencies.P50, m.Latencies.P99
	return json.NewEncoder(os.Stdout).Encode(r)
}
