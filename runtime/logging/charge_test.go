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

// A record is charged once for what its line writes: log_write charges
// its encoded size before it decodes it (a 4090-byte message encodes to
// over 4 KiB, two tokens), and the line's top-up takes only what the
// line wrote past that. It subtracted the record's approximate size
// instead (one token), charging the line three tokens for its two.
func TestPluginRateLimitChargesALineOnce(t *testing.T) {
	const burst = 6
	pl, buf := newPlugin(t, "json", "debug", nil, PluginOptions{Rate: 0.001, Burst: burst, ReportEvery: time.Hour})
	rec := &hostfuncs.LogRecord{Level: hostfuncs.LevelInfo, Message: strings.Repeat("m", 4090)}
	const encoded = 4110 // what log_write would have charged: over 4 KiB
	if !pl.AllowBytes(encoded) {
		t.Fatal("the first line was refused")
	}
	pl.WriteAllowed(Call{RequestID: "0123456789ab-1"}, rec, encoded)
	if n := len(buf.String()); n <= TokenBytes || n > 2*TokenBytes {
		t.Fatalf("the line wrote %d bytes, want two tokens' worth", n)
	}
	// Two tokens taken of six: four are left.
	if !pl.AllowBytes(4 * TokenBytes) {
		t.Error("a line of four tokens was refused after one of two: the first line was charged more than it wrote")
	}
}
