package main

import (
	"bytes"
	"fmt"
	stdlog "log"
	"os"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

// net/http's transport writes the bytes a server sent past the end of a
// response to Go's standard logger: up to 4 KiB of the server's choice,
// an integration token it echoed among them. They went to stderr as
// they were, past the runtime's format and redaction (an audit). The
// standard logger now writes through the runtime's log, without them.
func TestStdLogGoesThroughTheLog(t *testing.T) {
	t.Cleanup(func() { stdlog.SetOutput(os.Stderr); stdlog.SetFlags(stdlog.LstdFlags) })
	var buf bytes.Buffer
	log := logrus.New()
	log.SetOutput(&buf)
	log.SetFormatter(&logrus.JSONFormatter{})
	routeStdLog(log)
	stdlog.Printf("Unsolicited response received on idle HTTP channel starting with %q; err=%v", "you sent: sk_live_echoed_0123456789\r\n", nil)
	stdlog.Print("http: some other complaint")
	out := buf.String()
	if strings.Contains(out, "sk_live_echoed") {
		t.Errorf("the server's bytes reached the log: %s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"component":"go"`) || !strings.Contains(lines[0], `"level":"warning"`) ||
		!strings.Contains(lines[0], "its bytes are not logged") || !strings.Contains(lines[1], "http: some other complaint") {
		t.Errorf("standard logger lines through the log:\n%s", out)
	}
}

// A plugin granted a host whose server sends bytes past the end of each
// response made net/http write one "Unsolicited response" line per read,
// through no plugin's log rate limit: a plugin reading in a loop filled
// the log with the runtime's warnings (50 reads, 50 lines). Go's standard
// logger's lines are now under a rate limit of their own, and what it
// drops is counted in a summary line, never silently lost.
func TestStdLogRateLimited(t *testing.T) {
	t.Cleanup(func() { stdlog.SetOutput(os.Stderr); stdlog.SetFlags(stdlog.LstdFlags) })
	var buf bytes.Buffer
	log := logrus.New()
	log.SetOutput(&buf)
	log.SetFormatter(&logrus.JSONFormatter{})
	w := routeStdLog(log)
	const n = 5000
	for range n {
		stdlog.Printf("Unsolicited response received on idle HTTP channel starting with %q; err=%v", "x", nil)
	}
	w.flush()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	written := 0
	for _, l := range lines {
		if strings.Contains(l, "Unsolicited response") {
			written++
		}
	}
	// The burst, and what the rate refills while the loop runs (well
	// under a second's worth on any machine that runs it in under ten).
	if written < stdLogBurst || written > stdLogBurst+10*stdLogRate {
		t.Errorf("%d of %d lines written, want about the burst (%d)", written, n, stdLogBurst)
	}
	last := lines[len(lines)-1]
	want := fmt.Sprintf(`"dropped":%d`, n-written)
	if !strings.Contains(last, want) || !strings.Contains(last, "Go's standard logger") || !strings.Contains(last, `"component":"go"`) {
		t.Errorf("summary line %s, want it to count %s", last, want)
	}
	// Nothing is left to report.
	buf.Reset()
	w.flush()
	if buf.Len() != 0 {
		t.Errorf("second flush wrote %s", buf.String())
	}
}
