package server_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/internal/authtest"
)

// rawMethod sends "method target" as the request line, byte for byte,
// with header lines extra, and returns the answer.
func rawMethod(t *testing.T, base, method, target string, extra ...string) (int, http.Header, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	head := method + " " + target + " HTTP/1.1\r\nHost: greenroom.test\r\nConnection: close\r\nContent-Length: 0\r\n"
	for _, h := range extra {
		head += h + "\r\n"
	}
	if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestRoutingIsCaseSensitive: the server routes on the path as sent,
// letter case included. /API/hello/ping, /.GREENROOM/plugins/v1/ and
// /METRICS were served as /api/hello/ping, /.greenroom/plugins/v1/ and
// /metrics (Fiber matches routes in any case by default), so a public
// route answered under spellings public_routes does not list; now every
// other spelling of a prefix gets the answer of any unknown path, 404
// not_found, with or without a credential. A variant under /.greenroom/
// (one segment after it in another case) is the admin API's unknown
// path: 401 without a credential, 403 without an admin one, 404 with
// one. The table also tries //, trailing slashes, percent-encoded
// letters and dot segments, without a credential, with one that is not
// an admin's and with an admin's: nothing is served without a credential
// but the public route as listed and the health endpoints.
func TestRoutingIsCaseSensitive(t *testing.T) {
	idp := authtest.New(t)
	in := startAuth(t, authConfig(idp, ""))
	const unknown = -1 // the answer of an unknown path: 404 not_found
	for _, tc := range []struct {
		method, target string
		anon, ci, ops  int // 0: the same as the column before
	}{
		{"GET", "/nothing", unknown, 0, 0},
		{"GET", "/api/hello/ping", 200, 0, 0},
		{"GET", "/api/hello/whoami", 401, 200, 0},
		{"GET", "/API/hello/ping", unknown, 0, 0},
		{"GET", "/Api/hello/ping", unknown, 0, 0},
		{"GET", "/aPI/hello/whoami", unknown, 0, 0},
		{"POST", "/API/hello/echo", unknown, 0, 0},
		{"GET", "/API", unknown, 0, 0},
		{"GET", "/Api/", unknown, 0, 0},
		{"GET", "/API?x=1", unknown, 0, 0},
		{"GET", "/api", 401, 404, 0},
		{"GET", "/api/HELLO/ping", 401, 404, 0},
		{"GET", "/api/hello/PING", 401, 404, 0},
		{"GET", "//api/hello/ping", unknown, 0, 0},
		{"GET", "/api//hello/ping", 401, 404, 0},
		{"GET", "/api/hello//ping", 401, 307, 0},
		{"GET", "/api/hello/ping/", 401, 404, 0},
		{"GET", "/%61pi/hello/ping", unknown, 0, 0},
		{"GET", "/%41PI/hello/ping", unknown, 0, 0},
		{"GET", "/api/%68ello/ping", 401, 404, 0},
		{"GET", "/api/hello/%70ing", 401, 200, 0},
		{"GET", "/%2Fapi/hello/ping", unknown, 0, 0},
		{"GET", "/api%2Fhello/ping", unknown, 0, 0},
		{"GET", "/api/hello/../hello/ping", 401, 307, 0},
		{"GET", "/x/../api/hello/whoami", unknown, 0, 0},
		{"GET", "/X/../API/hello/ping", unknown, 0, 0},
		{"GET", "/.greenroom/plugins/v1/", 401, 403, 200},
		{"GET", "/.greenroom/plugins/v1", 401, 403, 200},
		{"GET", "/.GREENROOM/plugins/v1/", unknown, 0, 0},
		{"GET", "/.Greenroom/plugins/v1", unknown, 0, 0},
		{"GET", "/.%67reenroom/plugins/v1/", unknown, 0, 0},
		{"GET", "//.greenroom/plugins/v1/", unknown, 0, 0},
		{"GET", "/.greenroom/PLUGINS/v1/", 401, 403, unknown},
		{"GET", "/.greenroom//plugins/v1/", 401, 403, unknown},
		{"POST", "/.GREENROOM/plugins/v1/reload", unknown, 0, 0},
		{"POST", "/.greenroom/plugins/v1/RELOAD", 401, 403, unknown},
		{"GET", "/.greenroom/Scheduler/v1/tasks", 401, 403, unknown},
		{"GET", "/.greenroom/scheduler/v1/TASKS", 401, 403, unknown},
		{"GET", "/.greenroom/health/v1/liveness", 200, 0, 0},
		{"GET", "/.greenroom/health/v1/liveness/", 200, 0, 0},
		{"GET", "/.greenroom/health/v1/readiness", 200, 0, 0},
		{"GET", "/.greenroom/health/v1/LIVENESS", unknown, 0, 0},
		{"POST", "/.greenroom/health/v1/LIVENESS", unknown, 0, 0},
		{"GET", "/.greenroom/health/v1/Readiness/", unknown, 0, 0},
		{"GET", "/.greenroom/HEALTH/v1/liveness", 401, 403, unknown},
		{"GET", "/.GREENROOM/health/v1/readiness", unknown, 0, 0},
		{"GET", "/.greenroom/health//v1/liveness", unknown, 0, 0},
		{"GET", "/metrics", 401, 403, 200},
		{"GET", "/metrics/", 401, 403, 200},
		{"GET", "/METRICS", unknown, 0, 0},
		{"GET", "/Metrics", unknown, 0, 0},
		{"POST", "/METRICS", unknown, 0, 0},
		{"GET", "//metrics", unknown, 0, 0},
		{"GET", "/%6detrics", unknown, 0, 0},
	} {
		want := [3]int{tc.anon, tc.ci, tc.ops}
		for i, tok := range []string{"", ciToken, opsToken} {
			if want[i] == 0 {
				want[i] = want[i-1]
			}
			var extra []string
			if tok != "" {
				extra = []string{"Authorization: Bearer " + tok}
			}
			who := [3]string{"anonymous", "ci", "admin"}[i]
			status, h, body := rawMethod(t, in.URL, tc.method, tc.target, extra...)
			if want[i] == unknown {
				var e map[string]any
				json.Unmarshal([]byte(body), &e)
				path, _, _ := strings.Cut(tc.target, "?")
				if status != 404 || e["code"] != "not_found" || e["error"] != "no route for "+tc.method+" "+path || e["plugin"] != nil ||
					!strings.HasPrefix(h.Get("Content-Type"), "application/json") {
					t.Errorf("%s %s %s: %d %.200s, want the unknown path's 404 not_found", who, tc.method, tc.target, status, body)
				}
				continue
			}
			if status != want[i] {
				t.Errorf("%s %s %s: %d %.200s, want %d", who, tc.method, tc.target, status, body, want[i])
			}
			// Without a credential nothing but the listed public route
			// and the health endpoints is served; the admin API never
			// to a credential that is not an admin's.
			if status < 300 && (i == 0 && tc.target != "/api/hello/ping" && !strings.HasPrefix(tc.target, "/.greenroom/health/v1/") ||
				i == 1 && !strings.HasPrefix(tc.target, "/api/") && !strings.HasPrefix(tc.target, "/.greenroom/health/v1/")) {
				t.Errorf("%s %s %s served: %d %.200s", who, tc.method, tc.target, status, body)
			}
		}
	}
	// No variant spelling ran the admin API's reload (the RELOAD one was
	// audited, as the admin API's 404).
	for _, l := range in.LogLines(t) {
		if p, _ := l["path"].(string); l["audit"] == "admin" && strings.Contains(strings.ToLower(p), "reload") && l["status"] == float64(200) {
			t.Errorf("a reload ran: %v", l)
		}
	}
}
