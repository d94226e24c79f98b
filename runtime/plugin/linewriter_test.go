package plugin

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/logging"
)

// lineHost records the lines a lineWriter emits, redacted as the log's
// formatter redacts them.
type lineHost struct {
	testHost
	redact *logging.Redactor
	lines  *[]string
}

func (h lineHost) Log(in *hostfuncs.Instance, rec *hostfuncs.LogRecord) int32 {
	*h.lines = append(*h.lines, string(h.redact.Redact([]byte(rec.Message))))
	return hostfuncs.LogWritten
}

// newLineWriter returns a stderr writer whose log redacts secrets, and the
// lines it emits.
func newLineWriter(t *testing.T, secrets ...string) (*lineWriter, *[]string) {
	t.Helper()
	_, r, err := logging.New(io.Discard, "text", "info", secrets)
	if err != nil {
		t.Fatal(err)
	}
	lines := new([]string)
	in := &instance{}
	in.state.Host = lineHost{redact: r, lines: lines}
	return &lineWriter{in: in, stream: "stderr", redact: r}, lines
}

// Every line is at most maxLine bytes, whether or not its newline has come,
// and what the writer buffers stays bounded.
func TestLineWriterBoundsLines(t *testing.T) {
	w, lines := newLineWriter(t)
	big := strings.Repeat("x", 40<<10)
	w.Write([]byte(big + "\nshort\n"))
	w.Write([]byte(strings.Repeat("y", 4<<20)))
	if cap(w.buf) > 2*maxLine {
		t.Errorf("writer buffers %d bytes", cap(w.buf))
	}
	w.flush()
	total := 0
	for _, l := range *lines {
		if len(l) > maxLine {
			t.Errorf("line of %d bytes", len(l))
		}
		total += len(l)
	}
	if total != len(big)+len("short")+4<<20 {
		t.Errorf("%d bytes in lines", total)
	}
	if len(*lines) != 3+1+256 || (*lines)[3] != "short" {
		t.Errorf("%d lines, the fourth %.10q", len(*lines), (*lines)[3])
	}
	// A line of exactly maxLine bytes, in one write or two, is one line.
	*lines = nil
	w.Write([]byte(strings.Repeat("z", maxLine) + "\n"))
	w.Write([]byte(strings.Repeat("z", maxLine)))
	w.Write([]byte("\n\n"))
	if len(*lines) != 3 || len((*lines)[0]) != maxLine || len((*lines)[1]) != maxLine || (*lines)[2] != "" {
		t.Errorf("%d lines for two of maxLine bytes and an empty one", len(*lines))
	}
}

// A secret that straddles a cut is never split between two lines, whether
// it arrives in one write or byte by byte, with or without a newline.
func TestLineWriterKeepsSecretsWhole(t *testing.T) {
	const secret = "s3cr3t-value-0123456789"
	for pad := maxLine - len(secret) - 2; pad <= maxLine+2; pad++ {
		for _, mode := range []string{"one write", "bytewise", "no newline"} {
			w, lines := newLineWriter(t, secret, "other-secret")
			text := strings.Repeat("x", pad) + secret + strings.Repeat("x", 10)
			switch mode {
			case "one write":
				w.Write([]byte(text + "\n"))
			case "bytewise":
				for i := range len(text) {
					w.Write([]byte{text[i]})
				}
				w.Write([]byte("\n"))
			case "no newline":
				w.Write([]byte(text + strings.Repeat("x", maxLine)))
				w.flush()
			}
			for _, l := range *lines {
				if strings.Trim(strings.ReplaceAll(l, logging.Redacted, ""), "x") != "" {
					t.Fatalf("%s, secret at %d: line holds part of the secret: ...%q", mode, pad, l[max(len(l)-40, 0):])
				}
				if len(l) > maxLine {
					t.Fatalf("%s: line of %d bytes", mode, len(l))
				}
			}
			if n := strings.Count(strings.Join(*lines, ""), logging.Redacted); n != 1 {
				t.Fatalf("%s, secret at %d: %d redactions", mode, pad, n)
			}
		}
	}
}

// The instance's writers use the redactor of the plugin's log.
func TestLineWriterUsesLogRedactor(t *testing.T) {
	log, r, err := logging.New(io.Discard, "json", "info", []string{"s3cr3t-value"})
	if err != nil {
		t.Fatal(err)
	}
	p := loadSpec(t, Spec{Wasm: hostileWasm, Limits: testLimits()})
	p.log = logrus.NewEntry(log)
	in, err := p.newInstance(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer in.close()
	if in.stdout.redact != r || in.stderr.redact != r {
		t.Error("the instance's output is not redacted with the log's redactor")
	}
}

// A secret with line breaks (a PEM key) printed whole in one write is
// redacted before the write is cut into lines: each line alone holds only
// a part of it, which no form of the secret matches.
func TestLineWriterRedactsMultilineSecrets(t *testing.T) {
	const key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEILMc8IHv93p33JH0AW5w\n-----END PRIVATE KEY-----"
	for _, secret := range []string{key, strings.ReplaceAll(key, "\n", "\r\n")} {
		w, lines := newLineWriter(t, secret)
		w.Write([]byte("key: " + secret + "\nnext line\n"))
		w.flush()
		out := strings.Join(*lines, "\n")
		if strings.Contains(out, "MC4CAQAw") || !strings.Contains(out, logging.Redacted) || !strings.Contains(out, "next line") {
			t.Errorf("lines %q", *lines)
		}
	}
}

// A write to stdout or stderr is redacted whole before it is cut into
// lines when a secret holds a line break (a PEM key), and a guest may
// write its whole memory at once: that redaction checks the call's
// deadline as it goes. It did not, and a guest's 128 MiB write of text
// that begins the secrets' forms over and over held its host call for
// seconds past the deadline (64 MiB took 0.86 s with a PEM key and two
// tokens configured: about 55 s for 4 GiB).
func TestMultilineRedactionInterrupted(t *testing.T) {
	var secrets []string
	for i := range 4 {
		secrets = append(secrets, fmt.Sprintf("-----BEGIN PRIVATE KEY-----\n%s%d\n-----END PRIVATE KEY-----\n", strings.Repeat("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n", 20), i))
	}
	w, lines := newLineWriter(t, secrets...)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the call's deadline has passed
	w.in.callCtx = ctx
	big := bytes.Repeat([]byte("-----BEGIN PRIVATE KEY-----\n"), 128<<20/28)
	start := time.Now()
	func() {
		defer func() {
			if r := recover(); r != errInterrupted {
				t.Errorf("Write ended with %v, want the errInterrupted panic", r)
			}
		}()
		w.Write(big)
	}()
	if took := time.Since(start); took > time.Second {
		t.Errorf("Write past the deadline took %v", took)
	}
	if len(*lines) != 0 {
		t.Errorf("%d lines written past the deadline", len(*lines))
	}
}

// A write of one long line is cut into lines of maxLine bytes in time
// linear in its length. The writer looked for the newline in the whole
// rest of the write for each piece: 64 MiB without a newline, 4 096
// pieces, scanned 128 GiB (seconds of a core, in a host call). The lines
// are not logged here (the log's level is over info), so that the test
// times the cutting alone.
func TestLineWriterLongLineLinear(t *testing.T) {
	w := &lineWriter{in: &instance{}, stream: "stdout"}
	w.in.state.Host = quietHost{}
	big := bytes.Repeat([]byte("x"), 64<<20)
	start := time.Now()
	w.Write(big)
	w.Write([]byte("\n"))
	if took := time.Since(start); took > time.Second {
		t.Errorf("a write of 64 MiB in one line took %v", took)
	}
	if len(w.buf) != 0 {
		t.Errorf("%d bytes left in the writer", len(w.buf))
	}
}

// quietHost logs nothing: its level is over info.
type quietHost struct{ testHost }

func (quietHost) LogEnabled(int32) bool { return false }

// Secrets that overlap (one's end is the next one's start) printed as one
// run, plain, in hex or in base64, are redacted whole wherever the line is
// cut, in one write or byte by byte, with or without a newline: redacting
// the buffer before the cut replaced the first secret with the bytes it
// shares with the second, whose rest ("-CCCC") then matched nothing and
// stayed in the line. The cut is walked over every offset around the run,
// with and without a secret early in the line (which moves the cut in the
// redacted text away from where the raw text was cut).
func TestLineWriterOverlappingSecretsAcrossCut(t *testing.T) {
	secrets := []string{"AAAA-BBBB", "BBBB-CCCC", "CCCC-DDDD", "WXYZ-WXYZ-WXYZ"}
	runs := map[string]string{
		"pair":  "AAAA-BBBB-CCCC",
		"chain": "AAAA-BBBB-CCCC-DDDD",
		"self":  "WXYZ-WXYZ-WXYZ-WXYZ-WXYZ",
	}
	forms := map[string]func(string) string{
		"plain":  func(s string) string { return s },
		"hex":    func(s string) string { return fmt.Sprintf("%x", s) },
		"base64": func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
	}
	_, r, err := logging.New(io.Discard, "text", "info", secrets)
	if err != nil {
		t.Fatal(err)
	}
	hold := r.Longest() - 1
	residue := func(s string) string { return strings.ReplaceAll(s, logging.Redacted, "") }
	for rname, run := range runs {
		for fname, form := range forms {
			printed := form(run)
			for _, lead := range []string{"", form(secrets[0]) + "."} {
				for pad := maxLine - len(lead) - len(printed) - 2; pad <= maxLine-len(lead)+hold+2; pad++ {
					text := lead + strings.Repeat(".", pad) + printed + strings.Repeat(".", 10)
					want := residue(string(r.Redact([]byte(text + strings.Repeat(".", maxLine)))))
					if strings.Trim(want, ".") != "" && fname != "base64" {
						t.Fatalf("%s %s: the redactor leaves %q", rname, fname, strings.Trim(want, "."))
					}
					for _, mode := range []string{"one write", "bytewise", "no newline"} {
						w, lines := newLineWriter(t, secrets...)
						switch mode {
						case "one write":
							w.Write([]byte(text + strings.Repeat(".", maxLine) + "\n"))
						case "bytewise":
							for i := range len(text) {
								w.Write([]byte{text[i]})
								if n := len(w.out) + len(w.buf); n >= maxLine+hold+1 {
									t.Fatalf("%s %s: the writer holds %d bytes", rname, fname, n)
								}
							}
							w.Write([]byte(strings.Repeat(".", maxLine) + "\n"))
						case "no newline":
							w.Write([]byte(text + strings.Repeat(".", maxLine)))
							w.flush()
						}
						for _, l := range *lines {
							if len(l) > maxLine {
								t.Fatalf("%s %s %s, run at %d: line of %d bytes", rname, fname, mode, len(lead)+pad, len(l))
							}
						}
						if got := residue(strings.Join(*lines, "")); got != want {
							t.Fatalf("%s %s %s, run at %d: lines leave %q of the run, the redactor %q", rname, fname, mode, len(lead)+pad,
								strings.Trim(got, "."), strings.Trim(want, "."))
						}
					}
				}
			}
		}
	}
}

// A "[REDACTED]" already in the text (a multiline secret's, replaced
// before the write was cut into lines, or one the guest printed) that
// would straddle a cut moves whole to the next line.
func TestLineWriterKeepsPrintedRedactedWhole(t *testing.T) {
	for pad := maxLine - len(logging.Redacted) - 1; pad <= maxLine+1; pad++ {
		w, lines := newLineWriter(t, "s3cr3t-value")
		w.Write([]byte(strings.Repeat("x", pad) + logging.Redacted + strings.Repeat("x", maxLine) + "\n"))
		for _, l := range *lines {
			if strings.Trim(strings.ReplaceAll(l, logging.Redacted, ""), "x") != "" || len(l) > maxLine {
				t.Fatalf("[REDACTED] at %d: a line of %d bytes ends %q", pad, len(l), l[max(len(l)-12, 0):])
			}
		}
	}
}
