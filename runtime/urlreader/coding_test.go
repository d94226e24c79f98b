package urlreader

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return buf.Bytes()
}

// The runtime asks for gzip and decodes one gzip layer itself. A body
// encoded twice (two Content-Encoding lines or a list) used to reach the
// plugin with its second layer on and no Content-Encoding left: net/http
// decoded the first line's gzip and deleted every line, so the check for
// bodies still encoded saw nothing, and a token echoed inside escaped the
// scrub (an audit).
func TestContentCodings(t *testing.T) {
	const tok = "tok_coding_0123456789abcdefghij"
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		echo := []byte("you sent " + r.Header.Get("X-Api-Key") + " with Accept-Encoding " + r.Header.Get("Accept-Encoding"))
		inner := gzipped(t, echo)
		twice := gzipped(t, inner)
		switch r.URL.Path {
		case "/gzip":
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(inner)
		case "/GZIP":
			w.Header().Set("Content-Encoding", "GZIP")
			w.Write(inner)
		case "/two-lines":
			w.Header()["Content-Encoding"] = []string{"gzip", "gzip"}
			w.Write(twice)
		case "/gzip-br":
			w.Header()["Content-Encoding"] = []string{"gzip", "br"}
			w.Write(twice)
		case "/list":
			w.Header().Set("Content-Encoding", "gzip, gzip")
			w.Write(twice)
		case "/corrupt":
			w.Header().Set("Content-Encoding", "gzip")
			w.Write([]byte("not gzip at all"))
		case "/bomb":
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(gzipped(t, make([]byte, 4<<20)))
		case "/empty-coding":
			w.Header()["Content-Encoding"] = []string{" "}
			w.Write(echo)
		case "/identity":
			w.Header().Set("Content-Encoding", "Identity")
			w.Write(echo)
		default:
			w.Write(echo)
		}
	})
	cfg := `
[reading]
allow = [{ host = "api.test", scheme = "http" }]
max_bytes = "1MiB"
[[integrations.generic]]
host = "api.test"
token = "` + tok + `"
header = "X-Api-Key"
`
	p := reader(t, cfg, mapResolver{"api.test": {"127.0.0.1"}}, srv).For("p", []string{"api.test"})
	base := "http://api.test:" + srv.port()
	for _, path := range []string{"/gzip", "/GZIP"} {
		resp, err := read(p, base+path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if got := string(resp.Body); got != "you sent [REDACTED] with Accept-Encoding gzip" {
			t.Errorf("%s: body %q, want it decoded and the echoed token scrubbed", path, got)
		}
		// Said, for the plugin's client to tell its caller as Go's
		// does (Response.Uncompressed, read_hop_flags).
		if !resp.Decoded {
			t.Errorf("%s: Decoded is false for a body the runtime decoded", path)
		}
		for _, h := range resp.Header {
			if strings.EqualFold(h[0], "Content-Encoding") || strings.EqualFold(h[0], "Content-Length") {
				t.Errorf("%s: the decoded body's headers still say %s: %s", path, h[0], h[1])
			}
		}
	}
	// No coding named: the body is as sent (an empty value failed the
	// read as "encoded", an audit's).
	for _, path := range []string{"/empty-coding", "/identity"} {
		resp, err := read(p, base+path)
		if err != nil || string(resp.Body) != "you sent [REDACTED] with Accept-Encoding gzip" || resp.Decoded {
			t.Errorf("%s: %v %q (decoded: %t), want the body as sent", path, err, respBody(resp), err == nil && resp.Decoded)
		}
	}
	for _, path := range []string{"/two-lines", "/gzip-br", "/list"} {
		resp, err := read(p, base+path)
		if err == nil {
			t.Errorf("%s: read succeeded (body %q), want it refused as still encoded", path, resp.Body)
			continue
		}
		wantErr(t, err, Failed, "the response is encoded")
	}
	_, err := read(p, base+"/corrupt")
	wantErr(t, err, Failed, "gzip")
	_, err = read(p, base+"/bomb")
	wantErr(t, err, TooLarge, "reading.max_bytes")
	// A Range request is not offered gzip (its bytes are the encoding's).
	resp, err := read(p, base+"/plain", "Range", "bytes=0-")
	if err != nil || !strings.HasSuffix(string(resp.Body), "Accept-Encoding ") {
		t.Errorf("a Range request: %v %q, want no Accept-Encoding sent", err, respBody(resp))
	}
}

func respBody(r *Response) []byte {
	if r == nil {
		return nil
	}
	return r.Body
}

// The internal reach an `internal = true` rule gives a host is that
// rule's: another rule matching the host (a "*." pattern) lends it
// neither other paths nor plain http. An internal wiki allowed for
// /public/ only was read at /admin/secrets through { host = "*.corp" }
// (an audit).
func TestInternalRuleKeepsItsPathsAndScheme(t *testing.T) {
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "page "+r.URL.Path) })
	cfg := `
[reading]
allow = [
  { host = "wiki.corp", scheme = "http", internal = true, paths = ["/public/"] },
  { host = "tls.corp", internal = true },
  { host = "*.corp", scheme = "http" },
]
`
	p := reader(t, cfg, mapResolver{"wiki.corp": {"127.0.0.1"}, "tls.corp": {"127.0.0.1"}}).For("p", []string{"*.corp"})
	if resp, err := read(p, "http://wiki.corp:"+srv.port()+"/public/a"); err != nil || string(resp.Body) != "page /public/a" {
		t.Fatalf("the internal rule's own path: %v %+v", err, resp)
	}
	_, err := read(p, "http://wiki.corp:"+srv.port()+"/admin/secrets")
	wantErr(t, err, Denied, "reading.allow[0]", "/admin/secrets", "read only as its internal rules allow")
	_, err = read(p, "http://tls.corp:"+srv.port()+"/")
	wantErr(t, err, Denied, "scheme http is not allowed by reading.allow[1]")
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("the internal server was reached %d times, want 1", n)
	}
	// With the internal rule alone, the words about other rules send the
	// operator looking for a rule that is not there: they are left out.
	alone := reader(t, "[reading]\nallow = [{ host = \"wiki.corp\", scheme = \"http\", internal = true, paths = [\"/public/\"] }]\n",
		mapResolver{"wiki.corp": {"127.0.0.1"}}).For("p", []string{"wiki.corp"})
	_, err = read(alone, "http://wiki.corp:"+srv.port()+"/admin/secrets")
	wantErr(t, err, Denied, "reading.allow[0] matches host wiki.corp, but none of its paths covers /admin/secrets")
	if strings.Contains(err.Error(), "whatever other rules match it") {
		t.Errorf("the only rule is the internal one, yet the refusal speaks of other rules: %v", err)
	}
}

// A read makes room for at most preGrow bytes of a body before they
// arrive: a server claiming a Content-Length up to reading.max_bytes, and
// sending nothing of it, made each read allocate all of it (an audit).
func TestClaimedLengthCostsNoMemory(t *testing.T) {
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(8<<20))
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("short"))
	})
	cfg := `
[reading]
allow = [{ host = "api.test", scheme = "http" }]
max_bytes = "8MiB"
`
	p := reader(t, cfg, mapResolver{"api.test": {"127.0.0.1"}}, srv).For("p", []string{"api.test"})
	url := "http://api.test:" + srv.port() + "/"
	read(p, url) // connections, TLS-free transport set-up
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const reads = 4
	for range reads {
		if _, err := read(p, url); err == nil {
			t.Fatal("a body cut short read without an error")
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / reads; per > 2<<20 {
		t.Errorf("each read of a body claimed as 8 MiB and cut short allocated %d bytes, want well under the claim", per)
	}
}

// A response without a body (a 304 handed to the plugin's client, a 204,
// a Content-Length of 0) that names gzip keeps its Content-Encoding and
// is not said to be decoded, as net/http's Transport leaves one (it
// decodes only a body): it was flagged decoded, its headers dropped, so
// the plugin's client saw Uncompressed and ContentLength -1 where Go's
// sees neither.
func TestEmptyBodyNotDecoded(t *testing.T) {
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("ETag", `"v1"`)
		switch r.URL.Path {
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/empty":
			w.Header().Set("Content-Length", "0")
		}
	})
	p := reader(t, localConfig, nil, srv).For("p", localGrants)
	base := "http://127.0.0.1:" + srv.port()
	for _, path := range []string{"/304", "/204", "/empty"} {
		resp, err := p.Read(context.Background(), Request{URL: base + path, Hop: true, NotModifiedResponse: true})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if resp.Decoded || len(resp.Body) != 0 || !slices.Contains(resp.Header, [2]string{"Content-Encoding", "gzip"}) {
			t.Errorf("%s: decoded %t, body %q, headers %q; want it as sent", path, resp.Decoded, resp.Body, resp.Header)
		}
	}
}
