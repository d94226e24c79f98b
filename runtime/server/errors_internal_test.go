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

// A panic in greenroom's own handling of a request is a 500 with the
// request id, and its stack goes to the log; the server goes on serving.
func TestPanicIsInternalError(t *testing.T) {
	var buf bytes.Buffer
	log := logrus.New()
	log.SetOutput(&buf)
	log.SetFormatter(&logrus.JSONFormatter{})
	s := &Server{log: log}
	app := fiber.New(fiber.Config{ErrorHandler: s.errorHandler})
	app.Use(func(c *fiber.Ctx) error {
		rs := &reqState{id: "req-1", method: c.Method()}
		c.Locals(stateKey, rs)
		return s.next(c, rs)
	})
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
