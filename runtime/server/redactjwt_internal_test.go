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
