package logging

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/internal/secrettest"
)

// encodedSecret is a secret of 19 bytes whose base64 in an HTTP Basic
// header, base64("user:" + secret), has a '/' in the run of characters
// made of its bits alone (so its standard and URL-safe forms differ).
const encodedSecret = "Zq9-s3cr3t-Key/Val?"

// A secret is redacted in hex, in either case, and in base64 inside a
// longer text, at each of the three offsets of a 3-byte group it may
// start at, in both alphabets, padded or not: a plugin that logs the
// Authorization header it sends, "Basic " + base64("user:" + secret),
// leaks nothing but the characters at either end that mix the secret's
// bits with its neighbours'. The expected lines were worked out by hand
// (Python's base64), not by the code under test.
func TestRedactsBase64AndHex(t *testing.T) {
	_, r, err := New(&bytes.Buffer{}, "text", "info", []string{encodedSecret})
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		// "user:" is 5 bytes: the secret starts at offset 2 of a group.
		"Basic dXNlcjpacTktczNjcjN0LUtleS9WYWw/":         "Basic dXNlcjp" + Redacted,
		"Basic dXNlcjpacTktczNjcjN0LUtleS9WYWw_":         "Basic dXNlcjp" + Redacted,
		"Basic dXNlcjpacTktczNjcjN0LUtleS9WYWw/QGhvc3Q=": "Basic dXNlcjp" + Redacted + "QGhvc3Q=",
		// "user1:", 6 bytes: offset 0.
		"Basic dXNlcjE6WnE5LXMzY3IzdC1LZXkvVmFsPw==":     "Basic dXNlcjE6" + Redacted + "w==",
		"Basic dXNlcjE6WnE5LXMzY3IzdC1LZXkvVmFsPw":       "Basic dXNlcjE6" + Redacted + "w",
		"Basic dXNlcjE6WnE5LXMzY3IzdC1LZXkvVmFsP0Bob3N0": "Basic dXNlcjE6" + Redacted + "0Bob3N0",
		// "user12:", 7 bytes: offset 1.
		"Basic dXNlcjEyOlpxOS1zM2NyM3QtS2V5L1ZhbD8=":         "Basic dXNlcjEyOl" + Redacted + "8=",
		"Basic dXNlcjEyOlpxOS1zM2NyM3QtS2V5L1ZhbD9AaG9zdA==": "Basic dXNlcjEyOl" + Redacted + "9AaG9zdA==",
		// Hex, lower and upper case, inside other hex.
		"sent 757365723a5a71392d7333637233742d4b65792f56616c3f": "sent 757365723a" + Redacted,
		"SENT 5A71392D7333637233742D4B65792F56616C3F00":         "SENT " + Redacted + "00",
		// Query-escaped standard base64 (url.Values).
		"?auth=dXNlcjpacTktczNjcjN0LUtleS9WYWw%2F": "?auth=dXNlcjp" + Redacted,
	} {
		if got := string(r.Redact([]byte(in))); got != want {
			t.Errorf("Redact(%q)\n = %q\nwant %q", in, got, want)
		}
	}
}

// Whatever text surrounds the secret before it is encoded, no run of
// base64 or hex left in the line decodes, at any offset, to the secret
// less its first and last byte (all that the characters at the run's
// edges may hold of it), in either log format, in a message or a field;
// checked by decoding what is left, not with the redactor's forms.
func TestEncodedSecretLeftUndecodable(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	core := []byte(encodedSecret[1 : len(encodedSecret)-1])
	encs := map[string]func([]byte) string{
		"std": base64.StdEncoding.EncodeToString, "rawstd": base64.RawStdEncoding.EncodeToString,
		"url": base64.URLEncoding.EncodeToString, "rawurl": base64.RawURLEncoding.EncodeToString,
		"hex": hex.EncodeToString, "HEX": func(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) },
	}
	for _, format := range []string{"text", "json"} {
		var out bytes.Buffer
		log, _, err := New(&out, format, "info", []string{encodedSecret})
		if err != nil {
			t.Fatal(err)
		}
		for name, enc := range encs {
			for pre := range 7 {
				for _, suf := range []int{0, 1, 2, 5} {
					before, after := make([]byte, pre), make([]byte, suf)
					for i := range before {
						before[i] = byte(rng.IntN(256))
					}
					for i := range after {
						after[i] = byte(rng.IntN(256))
					}
					e := enc(append(append(append([]byte{}, before...), encodedSecret...), after...))
					out.Reset()
					log.WithField("auth", "Basic "+e).Info("sent " + e)
					if left := secrettest.EncodedRun(out.String(), core); left != "" {
						t.Errorf("%s, %s, %d bytes before, %d after: %q decodes to the secret in %s", format, name, pre, suf, left, out.String())
					}
				}
			}
		}
	}
}

// Encoded forms do not redact ordinary text: base64 and hex of other
// text, of the secret with one byte changed, of the secret's first half,
// numbers, hashes and words stay as they are; nor is a secret shorter
// than minEncodedSecret redacted encoded (its base64 runs would be 8 or 9
// characters, too common in other text by chance).
func TestEncodedFormsDoNotOverRedact(t *testing.T) {
	short := "Pw7!kq2" // 7 bytes: redacted as written only
	_, r, err := New(&bytes.Buffer{}, "json", "info", []string{encodedSecret, short, "tok-1234"})
	if err != nil {
		t.Fatal(err)
	}
	changed := []byte(encodedSecret)
	changed[len(changed)/2] ^= 1
	var lines []string
	for _, text := range [][]byte{changed, []byte(encodedSecret[:len(encodedSecret)/2]), []byte("user:other-credential-1234"), []byte(short)} {
		for _, pre := range []string{"", "u:", "us:"} {
			b := append([]byte(pre), text...)
			lines = append(lines, base64.StdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b), hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)))
		}
	}
	lines = append(lines,
		`{"level":"info","msg":"GET /api/docs/items?page=2 200","request_id":"0123456789ab-1","time":"2026-12-08T03:04:05.678Z"}`,
		"sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, uuid 123e4567-e89b-12d3-a456-426614174000",
		"The quick brown fox jumps over the lazy dog 1234567890 times; Authorization: Basic dXNlcjpwYXNzd29yZA==",
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJqYW5lIn0.c2lnbmF0dXJl 0x5a71392d 5A71392D",
	)
	for _, line := range lines {
		if got := string(r.Redact([]byte(line))); got != line {
			t.Errorf("Redact(%q) = %q, want it unchanged", line, got)
		}
	}
	// The short secret is still redacted as written.
	if got := string(r.Redact([]byte("pw " + short))); got != "pw "+Redacted {
		t.Errorf("short secret: %q", got)
	}
	if n := len(encodedForms(short)); n != 0 {
		t.Errorf("%d encoded forms of a %d-byte secret, want none", n, len(short))
	}
}

// FuzzMatcherAsEachForm: the one-pass matcher finds what searching the
// text for each form in turn finds, in Redact and RedactChecked alike.
func FuzzMatcherAsEachForm(f *testing.F) {
	f.Add("abcdefgh", "xxabcdefghabcdyy", "abcd")
	f.Add("zzzz", "zzzzzzzzz", "zzzzz")
	f.Add(encodedSecret, "Basic dXNlcjpacTktczNjcjN0LUtleS9WYWw/ "+encodedSecret, "s3cr")
	f.Fuzz(func(t *testing.T, s1, text, s2 string) {
		var r Redactor
		r.AddSecrets([]string{s1, s2})
		m := r.m.Load()
		if m == nil {
			return
		}
		want := naiveRedact([]byte(text), m.forms, false)
		if got := r.Redact([]byte(text)); !bytes.Equal(got, want) {
			t.Fatalf("Redact(%q) = %q, each form in turn gives %q", text, got, want)
		}
		want = naiveRedact([]byte(text), m.forms, true)
		if got := r.RedactChecked([]byte(text), func() {}); !bytes.Equal(got, want) {
			t.Fatalf("RedactChecked(%q) = %q, each form in turn gives %q", text, got, want)
		}
		if got, want := m.contains([]byte(text)), naiveContains([]byte(text), m.forms); got != want {
			t.Fatalf("contains(%q) = %v, want %v", text, got, want)
		}
	})
}

func naiveContains(b []byte, forms [][]byte) bool {
	for _, f := range forms {
		if bytes.Contains(b, f) {
			return true
		}
	}
	return false
}

// naiveRedact is Redact as it was before the matcher: each form searched
// for in turn, every match a span; spans that overlap are one run, and,
// with touching, spans that only touch too.
func naiveRedact(b []byte, forms [][]byte, touching bool) []byte {
	var spans [][2]int
	for _, f := range forms {
		for i := 0; i+len(f) <= len(b); i++ {
			if bytes.HasPrefix(b[i:], f) {
				spans = append(spans, [2]int{i, i + len(f)})
			}
		}
	}
	if spans == nil {
		return b
	}
	slices.SortFunc(spans, func(x, y [2]int) int { return x[0] - y[0] })
	var out []byte
	at := 0
	for k := 0; k < len(spans); {
		start, end := spans[k][0], spans[k][1]
		for k++; k < len(spans) && (spans[k][0] < end || touching && spans[k][0] == end); k++ {
			end = max(end, spans[k][1])
		}
		out = append(append(out, b[at:start]...), Redacted...)
		at = end
	}
	return append(out, b[at:]...)
}

// The matcher finds what searching for each form in turn finds, over
// random secrets and texts of a small alphabet (many near matches and
// overlaps), texts built from pieces of the secrets' forms.
func TestMatcherAsEachFormRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = "ab/+=%\"\\"[rng.IntN(8)]
		}
		return string(b)
	}
	for range 3000 {
		var secrets []string
		for range 1 + rng.IntN(4) {
			secrets = append(secrets, word(4+rng.IntN(30)))
		}
		var r Redactor
		r.AddSecrets(secrets)
		m := r.m.Load()
		var text []byte
		for range rng.IntN(12) {
			switch f := m.forms[rng.IntN(len(m.forms))]; rng.IntN(4) {
			case 0:
				text = append(text, f...)
			case 1:
				text = append(text, f[rng.IntN(len(f)):]...)
			case 2:
				text = append(text, f[:rng.IntN(len(f))]...)
			default:
				text = append(text, word(rng.IntN(20))...)
			}
		}
		if got, want := r.Redact(text), naiveRedact(text, m.forms, false); !bytes.Equal(got, want) {
			t.Fatalf("secrets %q: Redact(%q) = %q, want %q", secrets, text, got, want)
		}
		if got, want := r.RedactChecked(text, func() {}), naiveRedact(text, m.forms, true); !bytes.Equal(got, want) {
			t.Fatalf("secrets %q: RedactChecked(%q) = %q, want %q", secrets, text, got, want)
		}
	}
}

// Where many forms begin alike, a text made of their common beginning
// costs the matcher about what other text does: the forms that begin
// with a window's first 4 bytes are checked in one walk down a tree, not
// one comparison each. 20 PEM keys (their "-----BEGIN" in some 200
// forms: escaped, percent-encoded) and a 4-byte secret (a window of 4
// bytes, so every position is looked at) made a run of dashes, which a
// plugin prints in a banner, cost 0.65 s of CPU a MiB (1.5 to 2 s wall
// on a loaded machine), a comparison per form at every byte, against
// 16 ms for other text: a guest's write held a core that long between
// two checks of its call's deadline.
func TestMatcherManyFormsAlike(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	secrets := []string{"5432"}
	for range 20 {
		var key strings.Builder
		key.WriteString("-----BEGIN RSA PRIVATE KEY-----\n")
		for range 25 {
			for range 64 {
				key.WriteByte(b64[rng.IntN(64)])
			}
			key.WriteByte('\n')
		}
		key.WriteString("-----END RSA PRIVATE KEY-----")
		secrets = append(secrets, key.String())
	}
	var r Redactor
	r.AddSecrets(secrets)
	other := make([]byte, 1<<20)
	for i := range other {
		other[i] = b64[rng.IntN(62)]
		if rng.IntN(8) == 0 {
			other[i] = "- "[rng.IntN(2)]
		}
	}
	dashes := bytes.Repeat([]byte("-"), 1<<20)
	// The fastest of seven runs of each, taken in turns, so that both
	// see the machine as loaded (it is shared: a CI run's other packages).
	d, o := bestInTurns(7, func() { r.RedactChecked(dashes, func() {}) }, func() { r.RedactChecked(other, func() {}) })
	t.Logf("1 MiB of dashes %v, other text %v: %.1fx", d, o, float64(d)/float64(o))
	if d > 10*o {
		t.Errorf("1 MiB of dashes took %v to redact, other text %v", d, o)
	}
	if got := r.Redact(dashes); !bytes.Equal(got, dashes) {
		t.Errorf("dashes redacted")
	}
}

// A secret of 4 to 7 bytes (a port, a short password) does not take the
// matcher's skips from the other secrets: its forms, shorter than the
// others', are each looked for on their own rather than in the window,
// which they made 4 bytes (a move of a byte at most, every byte looked
// at): a line cost 1.4 µs instead of 70 ns, 1 MiB of text some 12 ms
// instead of a fraction of one, whatever the other secrets.
func TestShortSecretKeepsTheSkips(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var secrets []string
	for i := range 12 {
		secrets = append(secrets, fmt.Sprintf("s3cr3t-%02d-Zq9xKeyVal", i))
	}
	var long, both Redactor
	long.AddSecrets(secrets)
	both.AddSecrets(append(secrets, "5432"))
	text := make([]byte, 1<<20)
	for i := range text {
		text[i] = " abcdefghijklmnopqrstuvwxyz0123456789"[rng.IntN(37)]
	}
	l, b := bestInTurns(7, func() { long.RedactChecked(text, func() {}) }, func() { both.RedactChecked(text, func() {}) })
	t.Logf("1 MiB without the 4-byte secret %v, with it %v: %.1fx", l, b, float64(b)/float64(l))
	if b > 8*l+time.Millisecond {
		t.Errorf("1 MiB took %v to redact with a 4-byte secret among 12 longer ones, %v without it", b, l)
	}
	line := []byte("port 5432, s3cr3t-03-Zq9xKeyVal5432 and 543 5432")
	if got, want := string(both.Redact(line)), "port "+Redacted+", "+Redacted+Redacted+" and 543 "+Redacted; got != want {
		t.Errorf("Redact(%q) = %q, want %q", line, got, want)
	}
}

// bestInTurns runs a and b n times each, in turns, and returns the
// fastest run of each.
func bestInTurns(n int, a, b func()) (time.Duration, time.Duration) {
	bestA, bestB := time.Duration(1<<63-1), time.Duration(1<<63-1)
	for range n {
		t0 := time.Now()
		a()
		bestA = min(bestA, time.Since(t0))
		t0 = time.Now()
		b()
		bestB = min(bestB, time.Since(t0))
	}
	return bestA, bestB
}
