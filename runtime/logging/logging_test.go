package logging

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestRedactsEverywhere(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var out bytes.Buffer
			secret := `pa"ss word\with-quotes`
			log, _, err := New(&out, format, "debug", []string{secret, "tok-1234567890", "abc"})
			if err != nil {
				t.Fatal(err)
			}
			log.WithField("api_key", secret).WithField("tok-1234567890", "as a key").Info("message holds " + secret + " and tok-1234567890")
			got := out.String()
			for _, leak := range []string{"tok-1234567890", "pa\"ss", `pa\"ss`, "with-quotes"} {
				if strings.Contains(got, leak) {
					t.Errorf("%s output leaks %q: %s", format, leak, got)
				}
			}
			if strings.Count(got, Redacted) < 3 {
				t.Errorf("%s output redacted fewer than 3 places: %s", format, got)
			}
			// Too short to redact without shredding every line.
			if !strings.Contains(got, "level") {
				t.Errorf("line mangled: %s", got)
			}
		})
	}
}

func TestBadSettings(t *testing.T) {
	if _, _, err := New(&bytes.Buffer{}, "xml", "info", nil); err == nil {
		t.Error("format xml accepted")
	}
	if _, _, err := New(&bytes.Buffer{}, "text", "loud", nil); err == nil {
		t.Error("level loud accepted")
	}
}

func TestLongest(t *testing.T) {
	log, r, err := New(&bytes.Buffer{}, "text", "info", []string{"abc", "tok-1234", `a"b<c>d`})
	if err != nil {
		t.Fatal(err)
	}
	if RedactorOf(log) != r || RedactorOf(logrus.New()) != nil {
		t.Error("RedactorOf does not find the logger's redactor")
	}
	// The JSON form of a"b<c>d, a\"b\u003cc\u003ed, is the longest.
	if n := r.Longest(); n != len(`a\"b\u003cc\u003ed`) {
		t.Errorf("Longest = %d", n)
	}
	r.SetSecrets([]string{"abc"})
	if n := r.Longest(); n != 0 {
		t.Errorf("Longest with no secret to redact = %d", n)
	}
}
