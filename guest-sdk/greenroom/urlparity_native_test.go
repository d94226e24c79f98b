//go:build !wasip1

package greenroom

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/urlreader"
)

// The same reads, natively and through the runtime's reader (its allow
// rule and grant letting the test server be read, with no integrations),
// get the same answers: status, URL, body and headers, or the same error,
// in its kind and its words. It fails when a rule or a message of the
// runtime changes without the native build's.
func TestNativeReadsMatchTheRuntimesReads(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/plain":
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
			if r.Header.Get("If-None-Match") == `"v1"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			fmt.Fprintf(w, "ua=%s referer=%s accept=%s", r.UserAgent(), r.Referer(), r.Header.Get("Accept"))
		case "/moved":
			http.Redirect(w, r, "/plain", http.StatusFound)
		case "/group/project":
			io.WriteString(w, "uri="+r.RequestURI) // %2F as sent
		case "/to-group":
			http.Redirect(w, r, "/group%2Fproject?ref=main", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/tocreds":
			http.Redirect(w, r, "http://user:pw@"+r.Host+"/plain", http.StatusFound)
		case "/hop":
			w.Header().Set("Connection", "X-Secret")
			w.Header().Set("X-Secret", "s")
			w.Header().Set("Keep-Alive", "timeout=5")
			w.Header().Set("Proxy-Authenticate", "Basic")
			io.WriteString(w, "ok")
		case "/br":
			w.Header().Set("Content-Encoding", "br")
			io.WriteString(w, "encoded")
		case "/gzip":
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			io.WriteString(zw, "unzipped")
			zw.Close()
		case "/claims":
			w.Header().Set("Content-Length", strconv.Itoa(nativeMaxBytes+1))
		case "/missing":
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	SetURLTransport(srv.Client().Transport)
	defer SetURLTransport(nil)
	cfg, err := config.Read([]config.Source{{Name: "config.toml", Data: []byte(`
[reading]
allow = [{ host = "127.0.0.1", scheme = "http" }]
`)}}, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	r, err := urlreader.New(cfg, urlreader.Options{TestOnlyReachable: []netip.AddrPort{netip.MustParseAddrPort(strings.TrimPrefix(srv.URL, "http://"))}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p := r.For("p", []string{"127.0.0.1"})
	hostPort := strings.TrimPrefix(srv.URL, "http://")

	codes := map[urlreader.Kind]int32{urlreader.Denied: errDenied, urlreader.Invalid: errInvalid, urlreader.Failed: errFailed,
		urlreader.Timeout: errTimeout, urlreader.TooLarge: errTooLarge, urlreader.NotModified: errNotModified}
	for _, tc := range []struct {
		method, url string
		header      [][2]string
		hop         bool // HTTPClient's read: a redirect is the response, a 304 too
		via         []string
	}{
		{method: "GET", url: srv.URL + "/plain"},
		{method: "GET", url: srv.URL + "/plain#frag"},
		{method: "GET", url: srv.URL + "/plain?q=1#frag", hop: true},
		{method: "GET", url: "HTTP://" + hostPort + "/plain"},
		{method: "GET", url: srv.URL + "/moved#frag"},
		{method: "GET", url: "http://127.0.0.1.:" + strings.TrimPrefix(hostPort, "127.0.0.1:") + "/plain"},
		{method: "GET", url: srv.URL + "/plain", header: [][2]string{{"Accept", "text/plain"}, {"User-Agent", "mine"}}},
		{method: "HEAD", url: srv.URL + "/plain"},
		{method: "GET", url: srv.URL + "/plain", header: [][2]string{{"If-None-Match", `"v1"`}}},
		{method: "GET", url: srv.URL + "/plain", header: [][2]string{{"If-None-Match", `"v1"`}}, hop: true},
		{method: "GET", url: srv.URL + "/moved"},
		{method: "GET", url: srv.URL + "/moved", hop: true},
		{method: "GET", url: srv.URL + "/plain", header: [][2]string{{"Referer", srv.URL + "/moved"}}, hop: true, via: []string{srv.URL + "/moved"}},
		{method: "GET", url: srv.URL + "/plain", hop: true, via: []string{"1", "2", "3", "4", "5", "http://127.0.0.1/6"}},
		{method: "GET", url: srv.URL + "/loop"},
		{method: "GET", url: srv.URL + "/tocreds"},
		{method: "GET", url: srv.URL + "/hop"},
		{method: "GET", url: srv.URL + "/br"},
		{method: "GET", url: srv.URL + "/gzip"},
		{method: "GET", url: srv.URL + "/gzip", header: [][2]string{{"Range", "bytes=0-"}}},
		{method: "GET", url: srv.URL + "/claims"},
		{method: "GET", url: srv.URL + "/missing"},
		{method: "POST", url: srv.URL + "/plain"},
		{method: "GET", url: "http://user:pw@" + hostPort + "/plain"},
		{method: "GET", url: "ftp://" + hostPort + "/plain"},
		{method: "GET", url: "/plain"},
		{method: "GET", url: srv.URL + "/group%2Fproject"},
		{method: "GET", url: srv.URL + "/to-group"},
		{method: "GET", url: srv.URL + "/a%2F..%2Fplain"},
		{method: "GET", url: srv.URL + "/a%5Cplain"},
		{method: "GET", url: srv.URL + "/group%2Fproject/a b"},
		{method: "GET", url: srv.URL + "/a/%252e%252e/plain"},
		{method: "GET", url: srv.URL + "/a/./plain", hop: true, via: []string{srv.URL + "/moved"}},
		{method: "GET", url: srv.URL + "/plain", header: [][2]string{{"Authorization", "Bearer x"}}},
		{method: "GET", url: srv.URL + "/plain", header: [][2]string{{"X_Forwarded_For", "10.0.0.1"}}},
		{method: "GET", url: srv.URL + "/plain", header: [][2]string{{"host", "other"}}},
		{method: "GET", url: srv.URL + "/plain", header: [][2]string{{"Cookie2", "a"}}},
		{method: "GET", url: srv.URL + "/plain", header: [][2]string{{"Bad Name", "a"}}},
		{method: "GET", url: srv.URL + "/plain", header: [][2]string{{"X-Ok", "a\nb"}}},
	} {
		name := fmt.Sprintf("%s %s %v hop=%v via=%d", tc.method, tc.url, tc.header, tc.hop, len(tc.via))
		h := http.Header{}
		for _, kv := range tc.header {
			h[kv[0]] = append(h[kv[0]], kv[1])
		}
		native, nerr := urlCall(context.Background(), &urlRequest{method: tc.method, url: tc.url, header: h, hop: tc.hop, flags: tc.hop, via: tc.via})
		rt, rerr := p.Read(context.Background(), urlreader.Request{URL: tc.url, Method: tc.method, Header: tc.header, Hop: tc.hop, Via: tc.via, NotModifiedResponse: tc.hop})
		switch {
		case nerr != nil || rerr != nil:
			e, ok := nerr.(*Error)
			if !ok || rerr == nil || e.Message != rerr.Error() || e.Code != codes[urlreader.KindOf(rerr)] {
				t.Errorf("%s:\n native  %v\n runtime %v", name, nerr, rerr)
			}
		default:
			var nh, rh [][2]string
			for _, k := range slices.Sorted(maps.Keys(native.header)) {
				for _, v := range native.header[k] {
					if k != "Date" {
						nh = append(nh, [2]string{k, v})
					}
				}
			}
			for _, kv := range rt.Header {
				if kv[0] != "Date" {
					rh = append(rh, kv)
				}
			}
			if native.status != rt.Status || native.url != rt.URL || string(native.body) != string(rt.Body) || native.etag != rt.ETag ||
				native.lastModified != rt.LastModified || native.decoded != (tc.hop && rt.Decoded) || !slices.Equal(nh, rh) {
				t.Errorf("%s:\n native  %d %s %q %q %v\n runtime %d %s %q %q %v", name, native.status, native.url, native.body, native.etag, nh,
					rt.Status, rt.URL, rt.Body, rt.ETag, rh)
			}
		}
	}
}
