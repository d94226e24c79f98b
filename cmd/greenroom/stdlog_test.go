package main

import (
	"bytes"
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
