package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/internal/authtest"
	"github.com/greenroom-dev/greenroom/runtime/internal/syncbuf"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// warnLines returns the lines of out that hold msg.
func warnLines(out, msg string) []string {
	var lines []string
	for l := range strings.SplitSeq(out, "\n") {
		if strings.Contains(l, msg) {
			lines = append(lines, l)
		}
	}
	return lines
}

// A JWKS that cannot be fetched logs its failure once a minute at most,
// however often a flood of unknown key ids fetches it again; the next line
// says how many failures it did not log. (Each fetch, once a second, used
// to log its own line.)
func TestJWKSWarningsCoalesced(t *testing.T) {
	idp := authtest.New(t)
	idp.Status.Store(500)
	clock := &fakeClock{t: time.Now()}
	var logged syncbuf.Buffer
	a := newAuth(t, &config.Auth{JWT: jwtConfig(idp)}, Options{Log: logTo(&logged), Now: clock.now, UnknownKIDInterval: time.Millisecond})
	const msg = "could not fetch the JWKS"
	if n := len(warnLines(logged.String(), msg)); n != 1 {
		t.Fatalf("the failed first fetch logged %d warnings, want 1:\n%s", n, logged.String())
	}
	flood := func(n int) {
		for i := range n {
			tok := authtest.SignWith(t, jwt.SigningMethodRS256, idp.RSA, fmt.Sprintf("made-up-%d", i), authtest.Claims("user:default/x"))
			if _, err := a.Authenticate(context.Background(), []byte("Bearer "+tok)); err == nil {
				t.Fatal("a token was accepted with the JWKS unavailable")
			}
		}
	}
	flood(20)
	fetches := idp.Fetches.Load()
	if fetches < 20 {
		t.Fatalf("%d fetches for 20 unknown kids: the test proves nothing", fetches)
	}
	if lines := warnLines(logged.String(), msg); len(lines) != 1 {
		t.Errorf("%d fetches within a minute logged %d warnings, want 1:\n%s", fetches, len(lines), strings.Join(lines, "\n"))
	}

	clock.add(warnEvery)
	flood(1)
	lines := warnLines(logged.String(), msg)
	if len(lines) != 2 {
		t.Fatalf("a fetch a minute later: %d warnings in all, want 2:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if want := fmt.Sprintf("repeated=%d", fetches-1); !strings.Contains(lines[1], want) || !strings.Contains(lines[1], `jwks_url="`+idp.JWKSURL+`"`) {
		t.Errorf("the warning after a minute: %s\nwant %s and the URL", lines[1], want)
	}
}

// A warner remembers at most warnKeys distinct warnings: a JWKS with
// thousands of distinct bad keys, fetched again and again, neither grows
// its memory nor logs more than warnKeys lines and one line for the rest,
// per minute. A minute later what it remembered is forgotten as room is
// needed.
func TestWarnerBounded(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	var logged syncbuf.Buffer
	w := newWarner(logrus.NewEntry(logTo(&logged)), clock.now)
	bad := errors.New("bad key")
	for round := range 3 {
		for i := range 10 * warnKeys {
			w.warn(logrus.Fields{"kid": fmt.Sprintf("k%d-%s", i, strings.Repeat("x", 1000))}, bad, "ignoring a key")
		}
		if n := len(w.seen); n > warnKeys {
			t.Fatalf("round %d: %d warnings remembered, want at most %d", round, n, warnKeys)
		}
	}
	lines := warnLines(logged.String(), "level=warn")
	if len(lines) != warnKeys+1 || !strings.Contains(lines[warnKeys], "further distinct warnings about the JWKS were not logged") {
		t.Fatalf("%d lines logged within a minute, want %d and one for the rest; the last: %.300s", len(lines), warnKeys+1, lines[len(lines)-1])
	}
	for _, l := range lines[:warnKeys] {
		if len(l) > 400 {
			t.Fatalf("a warning quotes all of a long kid: %.500s", l)
			break
		}
	}
	clock.add(warnEvery)
	w.warn(logrus.Fields{"kid": "new"}, bad, "ignoring a key")
	w.warn(logrus.Fields{"kid": "k0-x"}, bad, "another") // room is made: logged
	lines = warnLines(logged.String(), "level=warn")
	if len(lines) != warnKeys+3 || !strings.Contains(lines[warnKeys+1], "kid=new") || len(w.seen) > warnKeys {
		t.Errorf("a minute later: %d lines (want %d), %d remembered; the last: %q", len(lines), warnKeys+3, len(w.seen), lines[len(lines)-1])
	}
	w.warn(nil, errors.New("read tcp 127.0.0.1:50001: connection reset by peer"), "could not fetch")
	w.warn(nil, errors.New("read tcp 127.0.0.1:50002: connection reset by peer"), "could not fetch")
	if lines := warnLines(logged.String(), "could not fetch"); len(lines) != 1 {
		t.Errorf("a warning whose error differs was logged %d times within a minute, want once", len(lines))
	}
	w.warn(nil, nil, "later still")
	if lines := warnLines(logged.String(), "further distinct warnings"); len(lines) != 1 {
		t.Errorf("the overflow line was logged %d times", len(lines))
	}
}

// A long kid in a warning is cut on a character's boundary, never inside
// one (which the log would show as an invalid byte).
func TestWarnerCutsKidOnACharacter(t *testing.T) {
	var logged syncbuf.Buffer
	w := newWarner(logrus.NewEntry(logTo(&logged)), (&fakeClock{t: time.Unix(1e9, 0)}).now)
	fields := logrus.Fields{"kid": strings.Repeat("x", maxQuoted-1) + strings.Repeat("é", 10)}
	w.warn(fields, nil, "ignoring a key")
	kid := fields["kid"].(string)
	if want := strings.Repeat("x", maxQuoted-1) + "..."; kid != want {
		t.Errorf("kid logged as %q, want %q", kid, want)
	}
}
