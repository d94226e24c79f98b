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

// A plugin's key cannot pass for one of the runtime's fields, in either
// format: not spelled with look-alike characters (Cyrillic 'р' and 'і',
// fullwidth letters, a zero-width space before, inside or after it), nor
// in another case (a log pipeline or a consumer that matches keys
// case-insensitively, as Go's encoding/json does, takes "Plugin" for
// "plugin"). Keys are written in ASCII: a character outside it as its \u
// escape, so the look-alike shows, and a runtime field's name in any
// case under "fields.". Ordinary keys (ASCII letters, digits, _ . - and
// the like) are written as they are.
func TestPluginKeysCannotImpersonateRuntimeFields(t *testing.T) {
	want := map[string]string{
		"\u0440lugin":       `\u0440lugin`,                          // Cyrillic р
		"ｐｌｕｇｉｎ":            `\uff50\uff4c\uff55\uff47\uff49\uff4e`, // fullwidth
		"plugin\u200b":      `plugin\u200b`,                         // zero-width space after
		"\u200bplugin":      `\u200bplugin`,                         // and before
		"request\u200b_id":  `request\u200b_id`,                     // and inside
		"t\u0456me":         `t\u0456me`,                            // Cyrillic і
		"\ufeffaudit":       `\ufeffaudit`,                          // a byte order mark
		"Plugin":            "fields.Plugin",                        // another case
		"REQUEST_ID":        "fields.REQUEST_ID",                    //
		"Level":             "fields.Level",                         // logrus's own, in another case
		"MSG":               "fields.MSG",                           //
		"Task":              "fields.Task",                          //
		"plugin\n":          "plugin_",                              // a control character, as before
		"ユーザー":              `\u30e6\u30fc\u30b6\u30fc`,             // any other non-ASCII key
		"emoji\U0001F600":   `emoji\U0001f600`,                      // past U+FFFF
		"user.name-1_x":     "user.name-1_x",                        // ordinary keys as they are
		"!BADKEY":           "!BADKEY",                              //
		"http.route/v1:x@y": "http.route/v1:x@y",                    //
		"fields.plugin":     "fields.plugin",                        // the plugin's own, as before
	}
	for _, format := range []string{"text", "json"} {
		pl, buf := newPlugin(t, format, "debug", nil, PluginOptions{})
		var attrs []hostfuncs.LogAttr
		for k := range want {
			attrs = append(attrs, attr(k, "forged"))
		}
		pl.Write(Call{RequestID: "r", Task: ""}, &hostfuncs.LogRecord{Level: 0, Message: "m", Attrs: attrs})
		out := buf.String()
		if format == "json" {
			var line map[string]any
			if err := json.Unmarshal([]byte(out), &line); err != nil {
				t.Fatalf("not JSON: %v: %s", err, out)
			}
			for k, w := range want {
				if line[w] != "forged" {
					t.Errorf("json: key %q written as %q? line: %s", k, w, out)
				}
			}
			if line["plugin"] != "docs" || line["request_id"] != "r" || line["level"] != "info" || line["msg"] != "m" {
				t.Errorf("json: the runtime's fields changed: %s", out)
			}
			for k := range line {
				for i := 0; i < len(k); i++ {
					if k[i] < 0x20 || k[i] >= 0x7f {
						t.Errorf("json: key %q is not ASCII", k)
						break
					}
				}
			}
			continue
		}
		for k, w := range want {
			if !strings.Contains(out, " "+w+"=forged") {
				t.Errorf("text: key %q not written as %q: %s", k, w, out)
			}
		}
		// Outside the quoted message and values, the line is ASCII.
		for _, r := range out {
			if r >= 0x7f {
				t.Errorf("text: %U written as it is: %s", r, out)
				break
			}
		}
	}
}
