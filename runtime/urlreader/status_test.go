package urlreader

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// A 101 is the only 1xx Go's client hands back (it reads past 100, 103
// and the others itself); with Connection: Upgrade its body is the raw
// connection, which the read's deadline no longer bounds. The reader
// refuses any 1xx at once, naming it, whether the server kept the
// connection open or not; a 103 before the final answer is read past.
func TestSwitchingProtocolsRefused(t *testing.T) {
	release := make(chan struct{})
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/early-hints" {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			w.Write([]byte("final"))
			return
		}
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		switch r.URL.Path {
		case "/upgrade":
			buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nraw bytes of another protocol")
		case "/bare":
			buf.WriteString("HTTP/1.1 101 Switching Protocols\r\n\r\n")
		}
		buf.Flush()
		// Hold the connection open, as a server speaking the other
		// protocol would, until the test ends.
		select {
		case <-release:
		case <-time.After(30 * time.Second):
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	cfg := localConfig + "timeout = \"2s\"\n"
	p := reader(t, cfg, nil, srv).For("p", localGrants)
	base := "http://127.0.0.1:" + srv.port()
	for _, tc := range []struct{ path, method string }{
		{"/upgrade", http.MethodGet}, {"/upgrade", http.MethodHead}, {"/bare", http.MethodGet},
	} {
		t.Run(tc.path+" "+tc.method, func(t *testing.T) {
			type result struct {
				resp *Response
				err  error
			}
			done := make(chan result, 1)
			go func() {
				resp, err := p.Read(t.Context(), Request{URL: base + tc.path, Method: tc.method})
				done <- result{resp, err}
			}()
			select {
			case res := <-done:
				if res.err == nil {
					t.Fatalf("read succeeded with status %d, body %q; want a 101 refused", res.resp.Status, res.resp.Body)
				}
				// Failed, not Timeout: refused when the 101 came, not
				// when the read's 2s ran out.
				wantErr(t, res.err, Failed, base+tc.path+": refused: the server answered 101 Switching Protocols")
			case <-time.After(10 * time.Second):
				t.Fatal("the read was still running 10s after it started (its timeout is 2s): a 101 held it open")
			}
		})
	}
	resp, err := read(p, base+"/early-hints")
	if err != nil || resp.Status != http.StatusOK || string(resp.Body) != "final" {
		t.Errorf("103 Early Hints then 200: %v %+v", err, resp)
	}
}

// Hop-by-hop response headers, the standard ones and those the target's
// Connection header names, are the connection's, not the response's:
// none reaches the plugin. A Connection header naming Content-Encoding
// does not hide the body's coding from the check for bodies still
// encoded. (Go's client deletes a Connection header holding "close"
// before the reader sees it, so what such a header names passes:
// docs/urlreader.md says so.)
func TestHopByHopResponseHeaders(t *testing.T) {
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		head := map[string]string{
			"/named": "Connection: X-Secret, keep-alive\r\nconnection: x-other ,ETag\r\nX-Secret: s1\r\nX-Other: s2\r\nETag: \"v1\"\r\n" +
				"Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic realm=\"inner\"\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTE: trailers\r\n" +
				"X-Kept: yes\r\n",
			"/encoded": "Connection: Content-Encoding\r\nContent-Encoding: x-rot13\r\n",
		}[r.URL.Path]
		buf.WriteString("HTTP/1.1 200 OK\r\n" + head + "Content-Length: 2\r\n\r\nok")
		buf.Flush()
	})
	p := reader(t, localConfig, nil, srv).For("p", localGrants)
	base := "http://127.0.0.1:" + srv.port()
	resp, err := read(p, base+"/named")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, h := range resp.Header {
		got[h[0]] = h[1]
	}
	for _, name := range []string{"Connection", "X-Secret", "X-Other", "Etag", "Keep-Alive", "Proxy-Authenticate", "Proxy-Connection", "Upgrade", "Te"} {
		if v, ok := got[name]; ok {
			t.Errorf("hop-by-hop header %s: %s reached the plugin", name, v)
		}
	}
	if got["X-Kept"] != "yes" || got["Content-Length"] != "2" || resp.ETag != "" || string(resp.Body) != "ok" {
		t.Errorf("headers %v, ETag %q, body %q; want X-Kept and Content-Length kept, the ETag the Connection header names dropped", got, resp.ETag, resp.Body)
	}
	_, err = read(p, base+"/encoded")
	wantErr(t, err, Failed, "refused: the response is encoded (Content-Encoding: x-rot13)")
}

// Every final status Go's client accepts reaches the plugin as the
// response's, body included, but 304 (the NotModified error) and the
// redirects the runtime follows (301, 302, 303, 307 and 308 with a
// Location); a 3xx it does not follow (300, 305, 306, any 3xx without a
// Location) is a response like any other. docs/urlreader.md lists them.
func TestStatusesPassed(t *testing.T) {
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/landed" {
			w.Write([]byte("landed"))
			return
		}
		var code int
		var location string
		fmt.Sscanf(r.URL.Path, "/%d", &code)
		if r.URL.Query().Has("to") {
			location = "/landed"
		}
		if location != "" {
			w.Header().Set("Location", location)
		}
		w.WriteHeader(code)
		w.Write([]byte("body"))
	})
	p := reader(t, localConfig, nil, srv).For("p", localGrants)
	base := "http://127.0.0.1:" + srv.port()
	// Passed as they are, body included ("/302" has no Location).
	for _, path := range []string{"/200", "/201", "/299", "/300?to", "/302", "/305?to", "/404", "/451", "/500", "/599", "/600", "/999"} {
		var code int
		fmt.Sscanf(path, "/%d", &code)
		if resp, err := read(p, base+path); err != nil || resp.Status != code || string(resp.Body) != "body" {
			t.Errorf("%s: %v %d %q, want status %d and the body", path, err, respStatus(resp), respBody(resp), code)
		}
	}
	// Followed.
	for _, path := range []string{"/301?to", "/302?to", "/303?to", "/307?to", "/308?to"} {
		if resp, err := read(p, base+path); err != nil || resp.Status != 200 || string(resp.Body) != "landed" {
			t.Errorf("%s: %v %d %q, want the redirect followed", path, err, respStatus(resp), respBody(resp))
		}
	}
	if resp, err := read(p, base+"/204"); err != nil || resp.Status != 204 || len(resp.Body) != 0 {
		t.Errorf("/204: %v %d %q", err, respStatus(resp), respBody(resp))
	}
	_, err := read(p, base+"/304")
	wantErr(t, err, NotModified, "not modified")
	// To the plugin's own client (read_hop_flags), a 304 is the
	// response, with the server's headers, as from any server: it got
	// only the validators it sent, not the server's Cache-Control, Date
	// or ETag (to an If-Modified-Since).
	resp, err := p.Read(context.Background(), Request{URL: base + "/304", Hop: true, NotModifiedResponse: true})
	if err != nil || resp.Status != 304 || len(resp.Body) != 0 || !slices.ContainsFunc(resp.Header, func(h [2]string) bool { return h[0] == "Date" }) {
		t.Errorf("/304 as a response: %v %+v", err, resp)
	}
}

func respStatus(r *Response) int {
	if r == nil {
		return 0
	}
	return r.Status
}
