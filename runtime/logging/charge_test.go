package logging

import (
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

// A line costs what it writes: a control byte is written escaped (6
// bytes in JSON, \u0001; 4 in text, \x01), a C1 or format character as
// one or two \u escapes, while the rate limit charged the record's
// bytes, so that 4000 control bytes (one token) wrote 24 KB and the
// limit let six times its bytes into the log. Whatever a plugin logs,
// what reaches the log within a burst is at most the burst's bytes and
// one line more.
func TestPluginRateLimitChargesWhatIsWritten(t *testing.T) {
	const burst = 40
	for _, tc := range []struct{ name, format, text string }{
		{"json control bytes", "json", strings.Repeat("\x01", 4000)},
		{"text control bytes", "text", strings.Repeat("\x01", 4000)},
		{"json html", "json", strings.Repeat("<", 4000)},
		{"json invisible", "json", strings.Repeat("\u200b", 1300)},
		{"json invalid utf-8", "json", strings.Repeat("\xff", 4000)},
		{"text invalid utf-8", "text", strings.Repeat("\xff", 4000)},
		{"json secret", "json", strings.Repeat("ab1x", 1000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl, buf := newPlugin(t, tc.format, "debug", []string{"ab1x"}, PluginOptions{Rate: 0.001, Burst: burst, ReportEvery: time.Hour})
			written := 0
			for range 200 {
				rec := &hostfuncs.LogRecord{Level: hostfuncs.LevelInfo, Message: "m", Attrs: []hostfuncs.LogAttr{attr("v", tc.text)}}
				if pl.Write(Call{RequestID: "0123456789ab-1"}, rec) == hostfuncs.LogWritten {
					written++
				}
			}
			// One line writes at most 6 times its 4 KB (4 tokens'
			// worth of its own, with the runtime's fields): the burst
			// and one such line more.
			if limit := (burst + 7) * TokenBytes; len(buf.String()) > limit {
				t.Errorf("%d lines wrote %d bytes within a burst of %d tokens, over %d", written, len(buf.String()), burst, limit)
			}
			if written == 0 {
				t.Error("nothing written")
			}
		})
	}
}
