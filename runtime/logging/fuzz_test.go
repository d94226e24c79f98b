package logging

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzRedact: whatever text a plugin or a client puts around a secret,
// in a log line's message, a field's value or a field's name, in either
// format, the line shows neither the secret nor its quoted or JSON forms;
// nor does Redact or RedactChecked of the text itself. (A secret with [
// or ] may overlap the [REDACTED] that replaces another match of it.)
func FuzzRedact(f *testing.F) {
	f.Add("tok-1234567890", "Bearer ", "\n", false)
	f.Add("p@ss word/é", "https://u:", "@h/?q=", true)
	f.Add("abab", "ab", "abab", false)
	f.Add("1234", "\u202e", "\x9b\xff", true)
	f.Add("a\"b\\c<d>", "", "", true)
	f.Fuzz(func(t *testing.T, secret, before, after string, json bool) {
		if len(secret) < minSecret || strings.ContainsAny(secret, "[]") {
			return
		}
		format := "text"
		if json {
			format = "json"
		}
		var out bytes.Buffer
		log, r, err := New(&out, format, "info", []string{secret})
		if err != nil {
			t.Fatal(err)
		}
		text := before + secret + after
		log.WithField("f", text).WithField(text, 1).Info(text)
		forms := []string{secret}
		for _, esc := range escapes {
			forms = append(forms, esc(secret))
		}
		for _, form := range forms {
			if strings.Contains(out.String(), form) {
				t.Fatalf("secret %q, form %q, shown in %s line %q", secret, form, format, out.String())
			}
		}
		if got := r.Redact([]byte(text)); bytes.Contains(got, []byte(secret)) {
			t.Fatalf("Redact(%q) = %q", text, got)
		}
		if got := r.RedactChecked([]byte(text), func() {}); bytes.Contains(got, []byte(secret)) {
			t.Fatalf("RedactChecked(%q) = %q", text, got)
		}
	})
}
