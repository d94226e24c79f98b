package logging

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

// A plugin's message, values, keys and group names cannot put a terminal
// escape sequence (ESC, CSI), a carriage return, a line break of any kind
// or another C0 control into a line as it is, in either format (DEL in
// JSON excepted): a log read
// on a terminal is not repainted, and no line looks like two.
func TestPluginControlCharactersEscaped(t *testing.T) {
	evil := "a\x1b[2J\x1b]0;title\x07\rb\nc\x00d\x08e\x7ff\u009b31m\u2028g\u2029h"
	for _, format := range []string{"text", "json"} {
		pl, buf := newPlugin(t, format, "debug", nil, PluginOptions{})
		pl.Write(Call{RequestID: "r"}, &hostfuncs.LogRecord{Level: 0, Message: evil, Attrs: []hostfuncs.LogAttr{
			attr("v", evil), attr("k"+evil, 1), attr("g"+evil+".in", evil), // a group named evil: keys arrive flattened
		}})
		out := buf.String()
		if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
			t.Errorf("%s: one record is not one line: %q", format, out)
		}
		body := strings.TrimSuffix(out, "\n")
		for _, c := range "\x1b\r\n\x00\x07\x08\x7f\u009b\u2028\u2029" {
			// JSON may hold DEL as it is (encoding/json does): a terminal
			// ignores it on output, it starts no sequence.
			if strings.ContainsRune(body, c) && !(format == "json" && c == 0x7f) {
				t.Errorf("%s: %U written as it is: %q", format, c, out)
			}
		}
		if format == "json" {
			var m map[string]any
			if err := json.Unmarshal([]byte(out), &m); err != nil || m["msg"] != evil || m["v"] != evil {
				t.Errorf("json: %v, msg %q", err, m["msg"])
			}
		}
	}
}

// A secret a plugin logs is redacted wherever the record puts it: the
// message, a value, a key, a group's name, inside a group, as an error's
// text, as part of a longer value.
func TestPluginSecretEverywhereInARecord(t *testing.T) {
	const secret = "op-secret-7f3a9c"
	for _, format := range []string{"text", "json"} {
		pl, buf := newPlugin(t, format, "debug", []string{secret}, PluginOptions{})
		pl.Write(Call{RequestID: "r"}, &hostfuncs.LogRecord{Level: 8, Message: "token " + secret + " rejected", Attrs: []hostfuncs.LogAttr{
			attr("err", "POST https://api.example/login?key="+secret+": 401"),
			attr(secret, "as a key"),
			attr(secret+".inner", "v"), // a group named by the secret (keys arrive flattened)
			attr("outer.k", secret),
			attr("outer."+secret+".x", secret),
			attr("quoted", `"`+secret+`"`),
		}})
		out := buf.String()
		if strings.Contains(out, secret) || strings.Contains(out, "7f3a9c") {
			t.Errorf("%s: leaks the secret: %s", format, out)
		}
		if n := strings.Count(out, "[REDACTED]"); n < 8 {
			t.Errorf("%s: %d redactions, want at least 8: %s", format, n, out)
		}
	}
}
