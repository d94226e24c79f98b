package server

import (
	"bytes"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"
)

// errorApp is a Fiber app with the server's error handling, each request
// given its state (request id req-1) and run by Server.next, and the
// buffer its JSON log goes to.
func errorApp() (*fiber.App, *bytes.Buffer) {
	buf := &bytes.Buffer{}
	log := logrus.New()
	log.SetOutput(buf)
	log.SetFormatter(&logrus.JSONFormatter{})
	s := &Server{log: log}
	app := fiber.New(fiber.Config{ErrorHandler: s.errorHandler})
	app.Use(func(c *fiber.Ctx) error {
		rs := &reqState{id: "req-1", method: c.Method()}
		c.Locals(stateKey, rs)
		return s.next(c, rs)
	})
	return app, buf
}

// A panic in greenroom's own handling of a request is a 500 with the
// request id, and its stack goes to the log; the server goes on serving.
func TestPanicIsInternalError(t *testing.T) {
	app, buf := errorApp()
	app.Get("/boom", func(c *fiber.Ctx) error {
		var b []byte
		_ = b[len(c.Path())] // index out of range
		return nil
	})
	app.Get("/fine", func(c *fiber.Ctx) error { return c.SendString("ok") })
	for range 2 {
		resp, err := app.Test(httptest.NewRequest("GET", "/boom", nil))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 500 || !strings.Contains(string(body), `"code":"internal"`) || !strings.Contains(string(body), `"request_id":"req-1"`) {
			t.Errorf("panic answered %d %s, want 500 internal with the request id", resp.StatusCode, body)
		}
	}
	if resp, err := app.Test(httptest.NewRequest("GET", "/fine", nil)); err != nil || resp.StatusCode != 200 {
		t.Errorf("after the panics: %v %v", resp, err)
	}
	out := buf.String()
	for _, want := range []string{"panic serving a request", "index out of range", `"request_id":"req-1"`, `"path":"/boom"`, "errors_internal_test.go"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// forwardRequestHeader looks names up in a buffer of maxDroppedHeader
// bytes: every dropped name must fit, or a longer one added to the list
// would silently reach guests.
func TestDroppedRequestHeadersFit(t *testing.T) {
	for name := range droppedRequestHeaders {
		if len(name) > maxDroppedHeader {
			t.Errorf("%q is longer than maxDroppedHeader (%d)", name, maxDroppedHeader)
		}
		if forwardRequestHeader([]byte(strings.ToUpper(name))) || forwardRequestHeader([]byte(strings.ReplaceAll(name, "-", "_"))) {
			t.Errorf("%q reaches guests", name)
		}
	}
}

// An error of greenroom's own (neither an APIError nor Fiber's) is logged
// with the request's path as the access log shows it: a JWT in it
// [REDACTED]. It logged the path as sent.
func TestInternalErrorPathRedacted(t *testing.T) {
	app, buf := errorApp()
	app.Get("/x/*", func(c *fiber.Ctx) error { return io.ErrUnexpectedEOF })
	const jwtShaped = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
	resp, err := app.Test(httptest.NewRequest("GET", "/x/"+jwtShaped, nil))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 500 || !strings.Contains(buf.String(), "internal error") || strings.Contains(buf.String(), "eyJzdWIi") {
		t.Errorf("%d, log:\n%s\nwant a 500 logged with the JWT [REDACTED]", resp.StatusCode, buf.String())
	}
}

// An anonymous caller's rate-limit budget is its IPv4 address's, or its
// IPv6 /64's: one host may use any address of its /64, and keyed by
// address it had 2^64 budgets.
func TestAnonymousKey(t *testing.T) {
	for ip, want := range map[string]string{
		"192.0.2.7":            "ip:192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "ip:2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "ip:2001:db8:1:2::/64",
		"2001:db8:1:3::1":      "ip:2001:db8:1:3::/64",
		"fe80::1%eth0":         "ip:fe80::/64",
		"::1":                  "ip:::/64",
		"::ffff:192.0.2.7":     "ip:::ffff:192.0.2.7",
		"not an address":       "ip:not an address",
	} {
		if got := anonymousKey(ip); got != want {
			t.Errorf("%s: %q, want %q", ip, got, want)
		}
	}
}
