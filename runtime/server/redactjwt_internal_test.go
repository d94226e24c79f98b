package server

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/logging"
)

// redactJWTs replaces exactly what this expression matches, leftmost
// first (it was this expression, which took about a millisecond on a
// hostile 16 KiB path of "eyJ" runs; a review).
var jwtShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)

func TestRedactJWTsAsTheExpression(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"eyJ", "e", "y", "J", "a", "Z", "0", "_", "-", ".", "/", "%", "eyJhbGciOi", ".."}
	for n := range 200000 {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		p := b.String()
		if got, want := redactJWTs(p), jwtShape.ReplaceAllString(p, logging.Redacted); got != want {
			t.Fatalf("case %d, %q: %q, want %q", n, p, got, want)
		}
	}
	tok := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJqYW5lIn0.c2lnbmF0dXJl"
	if got := redactJWTs("/api/hello/" + tok + "/x"); got != "/api/hello/"+logging.Redacted+"/x" {
		t.Errorf("a JWT in a path: %q", got)
	}
}

// A shutdown cut short names its requests in flight with their paths as
// the access log shows them: a config secret the client percent-encoded
// where no encoding is needed (%59 for Y, lower-case hex), which the log's
// redaction does not find as sent, decoded and [REDACTED]. It named the
// path as sent, the secret readable in the log and on stderr.
func TestInFlightPathRedactsEncodedSecrets(t *testing.T) {
	log, _, err := logging.New(&strings.Builder{}, "json", "info", []string{"YinflightSecret+42"})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{log: log, inflight: map[*reqState]struct{}{}}
	for _, path := range []string{"/api/x/%59inflightSecret%2b42", "/api/x/%59inflight%53ecret+42/eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln"} {
		clear(s.inflight)
		s.inflight[&reqState{method: "GET", path: path, id: "r1"}] = struct{}{}
		got := s.inFlight()
		if len(got) != 1 || !strings.Contains(got[0], "GET /api/x/"+logging.Redacted) || strings.Contains(got[0], "nflight") || strings.Contains(got[0], "eyJzdWIi") {
			t.Errorf("%s named in flight as %q, want the secret and the JWT [REDACTED]", path, got)
		}
	}
}

// A path decoded to redact what it hides keeps no control character: the
// shutdown's error goes to stderr as it is, where a decoded %1b or %0a
// wrote a terminal escape or a forged line.
func TestInFlightPathEscapesControls(t *testing.T) {
	log, _, err := logging.New(&strings.Builder{}, "json", "info", []string{"YinflightSecret+42"})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{log: log, inflight: map[*reqState]struct{}{}}
	for _, path := range []string{
		"/api/x/%1b%5b2J%0agreenroom:%20forged%7f/eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln",
		"/api/x/%1b%5b2J%0d%0aforged/%59inflightSecret%2b42",
	} {
		clear(s.inflight)
		s.inflight[&reqState{method: "GET", path: path, id: "r1"}] = struct{}{}
		got := s.inFlight()
		if len(got) != 1 || strings.ContainsAny(got[0], "\x1b\n\r\x7f") || !strings.Contains(got[0], logging.Redacted) {
			t.Errorf("%s named in flight as %q, want no control character and the secret [REDACTED]", path, got)
		}
	}
}
