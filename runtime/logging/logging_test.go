package logging

import (
	"bytes"
	"encoding/json"
	"io"
	"net/url"
	"runtime"
	"slices"
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
	// The longest form of a"b<c>d: its JSON form, Go-quoted.
	if n, want := r.Longest(), len(`a\\\"b\\u003cc\\u003ed`); n != want {
		t.Errorf("Longest = %d, want %d", n, want)
	}
}

// Secrets that overlap in a line are redacted together: replaced one
// after the other, the part of one that the other's replacement did not
// cover stayed in the line (an audit: "AbcdEfgh[REDACTED]").
func TestRedactsOverlappingSecrets(t *testing.T) {
	_, r, err := New(&bytes.Buffer{}, "text", "info", []string{"AbcdEfgh1234", "1234Wxyz5678", "zzzz"})
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"a=AbcdEfgh1234Wxyz5678 b":   "a=" + Redacted + " b",
		"1234Wxyz5678AbcdEfgh1234":   Redacted + Redacted, // side by side: each its own
		"AbcdEfgh1234 and 1234Wxyz5": Redacted + " and 1234Wxyz5",
		"zzzzz yzzzzzzzy":            Redacted + " y" + Redacted + "y", // a secret overlapping itself
		"nothing here":               "nothing here",
	} {
		if got := string(r.Redact([]byte(in))); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// A secret escaped twice on its way into a line is redacted: a config
// table a plugin reads as JSON (so <, &, >, " and \ escaped) and logs, in
// the message or a field, in either format.
func TestRedactsTwiceEscaped(t *testing.T) {
	secret := `sekrit-<&>"\-0123456789`
	table, _ := json.Marshal(map[string]string{"pw": secret})
	var plain bytes.Buffer
	enc := json.NewEncoder(&plain)
	enc.SetEscapeHTML(false)
	enc.Encode([]string{secret})
	for _, format := range []string{"text", "json"} {
		var out bytes.Buffer
		log, _, err := New(&out, format, "info", []string{secret})
		if err != nil {
			t.Fatal(err)
		}
		log.WithField("cfg", string(table)).Info("table " + string(table))
		log.WithField("cfg", plain.String()).Info("array " + plain.String())
		if got := out.String(); strings.Contains(got, "sekrit") || strings.Count(got, Redacted) != 4 {
			t.Errorf("%s: %s", format, got)
		}
	}
}

// A secret is redacted percent-encoded too, as a query value or a path
// segment gives it (a plugin sending it in a URL it reads, a client
// putting it in the URL of a request, which the access log's path shows);
// a secret too short to redact is not redacted in these longer forms.
func TestRedactsPercentEncoded(t *testing.T) {
	const secret = "AbC+dEf/GhI9 jKl&=="
	// Python's quote(secret, safe=""), JavaScript's encodeURIComponent;
	// Python's quote(secret), which keeps '/'.
	const quoted, pyQuoted = "AbC%2BdEf%2FGhI9%20jKl%26%3D%3D", "AbC%2BdEf/GhI9%20jKl%26%3D%3D"
	for _, format := range []string{"text", "json"} {
		var out bytes.Buffer
		log, _, err := New(&out, format, "info", []string{secret, "a b"})
		if err != nil {
			t.Fatal(err)
		}
		log.WithField("url", "http://h/p?key="+url.QueryEscape(secret)).WithField("path", "/p/"+url.PathEscape(secret)).WithField("js", "?k="+quoted).WithField("py", "?k="+pyQuoted).Info("a%20b a+b")
		got := out.String()
		for _, leak := range []string{"AbC", "GhI9"} {
			if strings.Contains(got, leak) {
				t.Errorf("%s output leaks %q: %s", format, leak, got)
			}
		}
		if strings.Count(got, Redacted) != 4 || !strings.Contains(got, "a%20b a+b") {
			t.Errorf("%s: %s", format, got)
		}
	}
}

// A secret is redacted as net/url writes it in a URL's path, userinfo and
// fragment, which keep '/', ':', '@', ',' and the like as they are and
// escape the rest, and as JavaScript's encodeURIComponent writes it: a plugin that builds the URL it reads with url.URL
// logs it (and the "url read" line quotes it) so, in none of the query's
// or a path segment's forms.
func TestRedactsAsNetURLWritesIt(t *testing.T) {
	for _, secret := range []string{"pa/ss:w0rd!", "a b,cdef", "Xy9!k/L@m#2", "it's (a) b*"} {
		path := (&url.URL{Scheme: "https", Host: "hooks.example", Path: "/services/" + secret}).String()
		userinfo := (&url.URL{Scheme: "https", Host: "h", User: url.UserPassword("u", secret)}).String()
		fragment := (&url.URL{Scheme: "https", Host: "h", Fragment: secret}).String()
		for _, format := range []string{"text", "json"} {
			var out bytes.Buffer
			log, _, err := New(&out, format, "info", []string{secret})
			if err != nil {
				t.Fatal(err)
			}
			// JavaScript's encodeURIComponent leaves !'()* as they are.
			js := strings.NewReplacer("+", "%20", "%21", "!", "%27", "'", "%28", "(", "%29", ")", "%2A", "*").Replace(url.QueryEscape(secret))
			log.WithField("url", path).WithField("userinfo", userinfo).WithField("fragment", fragment).WithField("js", "?k="+js).Info("read " + path)
			if got := out.String(); strings.Count(got, Redacted) != 5 {
				t.Errorf("%s, secret %q: %s", format, secret, got)
			}
		}
	}
}

// A secret stays redacted after a reload drops it: the plugin version
// that read it may still be finishing calls.
func TestRedactsRetiredSecrets(t *testing.T) {
	var out bytes.Buffer
	log, r, err := New(&out, "text", "info", []string{"old-secret-1234"})
	if err != nil {
		t.Fatal(err)
	}
	r.AddSecrets([]string{"new-secret-5678"})
	n := len(r.m.Load().forms)
	r.AddSecrets([]string{"new-secret-5678"}) // a reload with the same set
	log.Info("old-secret-1234 new-secret-5678")
	if got := out.String(); strings.Contains(got, "secret") || strings.Count(got, Redacted) != 2 {
		t.Errorf("got %s", got)
	}
	if forms := r.m.Load().forms; len(forms) != n {
		t.Errorf("%d forms after adding a secret twice, want %d", len(forms), n)
	}
}

// In the JSON format a secret number logged as a number becomes the
// string "[REDACTED]", so the line stays JSON; other numbers stay numbers.
func TestJSONSecretNumbersStayJSON(t *testing.T) {
	var out bytes.Buffer
	log, _, err := New(&out, "json", "info", []string{"12345678", "98765432109876540"})
	if err != nil {
		t.Fatal(err)
	}
	log.WithFields(logrus.Fields{
		"pin": 12345678, "neg": -12345678, "float": 1.2345678e7, "inside": 9123456789,
		"big": float64(98765432109876543), "count": 42, "ratio": 0.5,
		"text": "pin 12345678 in a string", "list": []int{1, 12345678},
	}).Info("numbers")
	line := out.Bytes()
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, line)
	}
	for _, k := range []string{"pin", "neg", "float", "inside", "big"} {
		if m[k] != Redacted {
			t.Errorf("%s = %#v, want %q", k, m[k], Redacted)
		}
	}
	if m["count"] != 42.0 || m["ratio"] != 0.5 {
		t.Errorf("other numbers changed: count %#v, ratio %#v", m["count"], m["ratio"])
	}
	if m["text"] != "pin "+Redacted+" in a string" {
		t.Errorf("text = %#v", m["text"])
	}
	if l, _ := m["list"].([]any); len(l) != 2 || l[0] != 1.0 || l[1] != Redacted {
		t.Errorf("list = %#v", m["list"])
	}
	if bytes.Contains(line, []byte("12345678")) || bytes.Contains(line, []byte("9876543210987654")) {
		t.Errorf("a secret is in the line: %s", line)
	}
}

// A secret that is a JSON literal ("true", "false", "null": a flag from an
// environment variable) becomes the string "[REDACTED]" where the line has
// that literal, and the line stays JSON.
func TestJSONSecretLiteralsStayJSON(t *testing.T) {
	for _, secret := range []string{"true", "false", "null"} {
		var out bytes.Buffer
		log, _, err := New(&out, "json", "info", []string{secret})
		if err != nil {
			t.Fatal(err)
		}
		log.WithFields(logrus.Fields{"flag": true, "off": false, "none": nil, "list": []any{true, false, nil, 1}, "text": "it is " + secret}).Info("literals")
		var m map[string]any
		if err := json.Unmarshal(out.Bytes(), &m); err != nil {
			t.Fatalf("secret %q: not JSON: %v\n%s", secret, err, out.Bytes())
		}
		if m["text"] != "it is "+Redacted || bytes.Contains(out.Bytes(), []byte(secret)) {
			t.Errorf("secret %q is in the line: %s", secret, out.Bytes())
		}
	}
}

// A secret that is a URL is redacted in the forms reading it quotes it:
// host lower-cased, without its trailing dot or fragment, password
// masked (an audit: the URL reader's error and the SDK's StatusError
// logged an access_token in clear).
func TestRedactsURLsAsReadingQuotesThem(t *testing.T) {
	_, r, err := New(&bytes.Buffer{}, "text", "info", []string{
		"http://Docs.test.:18510/readme?access_token=QueryTok3nS3cret#top",
		"https://user:Passw0rd@Internal.test/x?access_token=T0k3n",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`error="http://docs.test:18510/readme?access_token=QueryTok3nS3cret: resolve docs.test"`,
		`error="greenroom: read http://docs.test:18510/readme?access_token=QueryTok3nS3cret#top: HTTP 404"`,
		`error="http://Docs.test.:18510/readme?access_token=QueryTok3nS3cret: HTTP 500"`,
		`error="https://user:xxxxx@internal.test/x?access_token=T0k3n: refused"`,
	} {
		if got := string(r.Redact([]byte(line))); strings.Contains(got, "S3cret") || strings.Contains(got, "T0k3n") {
			t.Errorf("Redact(%q) = %q", line, got)
		}
	}
}

// TestNoInvisibleCharactersWritten: characters a viewer acts on rather
// than shows reach neither format's output as they are, in a message, a
// value, and in JSON a key; the JSON line still decodes to what was
// logged, and other non-ASCII text is left alone. (The text format
// writes keys unquoted; a plugin's keys are made safe before they get
// there, TestPluginKeysCannotForgeText.)
//   - C1 controls: U+009B starts a terminal control sequence on some
//     terminals.
//   - Unicode's invisible format characters (category Cf): bidirectional
//     overrides and isolates (U+202E shows "exe.gnp" as "png.exe" in a
//     viewer that applies them, and can make a line's fields read in
//     another order), zero-width characters (U+200B, U+2060, U+FEFF) that
//     hide text between the characters one reads, and the tag characters
//     (U+E0000 to U+E007F) that spell ASCII no one sees. The text format
//     quotes them (strconv); JSON wrote them raw, whoever logged them: a
//     plugin, or any client through the access log's path.
func TestNoInvisibleCharactersWritten(t *testing.T) {
	c1 := []rune{}
	for c := rune(0x80); c <= 0x9f; c++ {
		c1 = append(c1, c)
	}
	for _, tc := range []struct {
		name, evil, keep string
		invisible        []rune
	}{
		{"C1 controls", "a\u009b31mred\u0085b é€", "é€", c1},
		{
			"format characters",
			"a\u202egnp.exe\u202c b\u2066c\u2069 d\u200be\u2060f\ufeffg\U000e0041\U000e007fh\u00adi\u061cj é€ 日本 \U0001F600",
			"é€ 日本 \U0001F600",
			[]rune{0x202e, 0x202c, 0x2066, 0x2069, 0x200b, 0x2060, 0xfeff, 0xe0041, 0xe007f, 0xad, 0x61c},
		},
	} {
		for _, format := range []string{"text", "json"} {
			for _, secrets := range [][]string{nil, {"a-secret-value"}} {
				var out bytes.Buffer
				log, _, err := New(&out, format, "debug", secrets)
				if err != nil {
					t.Fatal(err)
				}
				e := log.WithField("v", tc.evil).WithField("s", "a-secret-value")
				if format == "json" {
					e = e.WithField("k"+tc.evil, 1)
				}
				e.Info(tc.evil)
				got := out.Bytes()
				for _, c := range tc.invisible {
					if bytes.ContainsRune(got, c) {
						t.Errorf("%s, %s (secrets %v): %U written as it is: %q", tc.name, format, secrets, c, got)
					}
				}
				if !bytes.Contains(got, []byte(tc.keep)) {
					t.Errorf("%s, %s: other non-ASCII text changed: %q", tc.name, format, got)
				}
				if format != "json" {
					continue
				}
				var line map[string]any
				if err := json.Unmarshal(got, &line); err != nil {
					t.Fatalf("%s: not JSON: %v: %q", tc.name, err, got)
				}
				if line["msg"] != tc.evil || line["v"] != tc.evil || line["k"+tc.evil] != 1.0 {
					t.Errorf("%s: decodes to %v", tc.name, line)
				}
			}
		}
	}
}

// RedactChecked finds what Redact finds, secrets straddling the pieces it
// scans between checks included, and calls its check as it goes.
func TestRedactCheckedFindsWhatRedactFinds(t *testing.T) {
	secret := "-----BEGIN KEY-----\nabcdefgh\n-----END KEY-----"
	_, r, err := New(io.Discard, "text", "info", []string{secret, "tok-1234567890"})
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Repeat([]byte("x"), 3*redactPiece+100)
	// Each across a piece's end, but the first and the last.
	for _, at := range []int{0, redactPiece - 20, 2*redactPiece - 1, len(b) - len(secret)} {
		copy(b[at:], secret)
	}
	copy(b[3*redactPiece-5:], "tok-1234567890")
	checks := 0
	got := r.RedactChecked(bytes.Clone(b), func() { checks++ })
	want := r.Redact(bytes.Clone(b))
	if !bytes.Equal(got, want) {
		t.Errorf("RedactChecked and Redact differ: %d and %d bytes", len(got), len(want))
	}
	if n := bytes.Count(want, []byte(Redacted)); n != 5 || bytes.Contains(want, []byte("abcdefgh")) || bytes.Contains(want, []byte("1234567890")) {
		t.Errorf("%d redactions, want 5", n)
	}
	if checks < 4 {
		t.Errorf("%d checks over %d bytes", checks, len(b))
	}
}

// RedactChecked (a guest's output, up to its whole memory) takes memory
// in proportion to its input whatever the input: each run of bytes that
// secrets cover becomes one Redacted. 64 MiB of a 4-byte secret over and
// over allocated 2.2 GB (a span of 16 bytes a match, grown by doubling)
// and came out as 160 MiB of Redacted.
func TestRedactCheckedBounded(t *testing.T) {
	_, r, err := New(io.Discard, "text", "info", []string{"-----BEGIN KEY-----\nabc\n-----END KEY-----", "k3y!"})
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Repeat([]byte("k3y!"), 64<<20/4)
	b = append(append([]byte("before "), b...), " after k3y!k3y! end"...)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	out := r.RedactChecked(b, func() {})
	runtime.ReadMemStats(&m1)
	if want := "before " + Redacted + " after " + Redacted + " end"; string(out) != want {
		t.Errorf("redacted to %d bytes %.80q, want %q", len(out), out, want)
	}
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > uint64(len(b))*5/4 {
		t.Errorf("redacting %d MiB allocated %d MiB", len(b)>>20, alloc>>20)
	}
}

// Spans gives every secret that begins before the limit, overlapping ones
// included, in the order they begin: a line writer cuts raw text by them.
func TestSpansOverlapping(t *testing.T) {
	_, r, err := New(io.Discard, "text", "info", []string{"AAAA-BBBB", "BBBB-CCCC"})
	if err != nil {
		t.Fatal(err)
	}
	b := []byte("..AAAA-BBBB-CCCC..AAAA-BB")
	var got [][2]int
	r.Spans(b, len(b), func(start, end int) { got = append(got, [2]int{start, end}) })
	if want := [][2]int{{2, 11}, {7, 16}}; !slices.Equal(got, want) {
		t.Errorf("spans %v, want %v", got, want)
	}
	got = nil
	r.Spans(b, 7, func(start, end int) { got = append(got, [2]int{start, end}) })
	if want := [][2]int{{2, 11}}; !slices.Equal(got, want) {
		t.Errorf("spans before 7: %v, want %v", got, want)
	}
}
