package urlreader

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/config"
)

var update = flag.Bool("update", false, "rewrite guest-sdk/greenroom/testdata/runtime_url_answers.json with the runtime's answers")

// nativeAnswersFile holds the runtime's answers that the guest SDK's
// native build must give too. The SDK's tests may import only the
// standard library (go mod tidy in a plugin's own module loads the tests
// of every package the plugin imports, and would list the runtime's
// dependencies), so they cannot ask this package: TestRuntimeAnswersForTheNativeBuild
// keeps the file equal to what the runtime answers (go test
// ./runtime/urlreader -run TestRuntimeAnswersForTheNativeBuild -update
// rewrites it), and the SDK's TestNative...MatchTheRuntime tests
// (urlparity_native_test.go) check that the native build answers as the
// file says. A runtime rule or message that changes fails the first until
// the file is rewritten, and then the second until the native build
// follows.
const nativeAnswersFile = "../../guest-sdk/greenroom/testdata/runtime_url_answers.json"

// The types of the answers file; guest-sdk/greenroom/urlparity_native_test.go
// has the same, and the same answersServer.
type nativeAnswers struct {
	Comment       string            `json:"comment"`
	Defaults      answerDefaults    `json:"defaults"`
	DeniedHeaders map[string]string `json:"denied_headers"`
	Headers       []headerAnswer    `json:"headers"`
	URLs          []urlAnswer       `json:"urls"`
	HopHeaders    hopAnswer         `json:"hop_headers"`
	Server        []serverRoute     `json:"server"`
	Reads         []readAnswer      `json:"reads"`
}

type answerDefaults struct {
	MaxBytes  int64  `json:"max_bytes"`
	Timeout   string `json:"timeout"`
	UserAgent string `json:"user_agent"`
}

// headerAnswer is the check of a request header a plugin sets, by a
// reader without integrations: Kind and Message are the error's, none if
// the header is sent.
type headerAnswer struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	Kind    string `json:"kind,omitempty"`
	Message string `json:"message,omitempty"`
}

// urlAnswer is the check of a URL's form every read makes first.
type urlAnswer struct {
	URL     string `json:"url"`
	Kind    string `json:"kind,omitempty"`
	Message string `json:"message,omitempty"`
}

// hopAnswer: of a response's headers In, the plugin gets Out.
type hopAnswer struct {
	In  http.Header `json:"in"`
	Out http.Header `json:"out"`
}

// serverRoute is one path of the test server the reads read.
type serverRoute struct {
	Path   string      `json:"path"`
	Status int         `json:"status,omitempty"` // 200 if none
	Header [][2]string `json:"header,omitempty"` // $SERVER in a value is the request's Host
	Body   string      `json:"body,omitempty"`
	// Echo are request headers the body tells, as name=value, separated
	// by spaces, after Body.
	Echo []string `json:"echo,omitempty"`
	// EchoURI: the body, after those, tells the request's URI, as sent
	// (uri=...).
	EchoURI bool `json:"echo_uri,omitempty"`
	Gzip    bool `json:"gzip,omitempty"` // the body is gzip-encoded
	// NotModifiedIfNoneMatch: a request with this If-None-Match gets a
	// 304 (with Header).
	NotModifiedIfNoneMatch string `json:"not_modified_if_none_match,omitempty"`
}

// readAnswer is one read of the test server, by a plugin granted and
// allowed 127.0.0.1 over http, and its answer: the error's Kind and
// Message, or the response. $SERVER in a URL or a message is the server's
// 127.0.0.1:port, $PORT its port.
type readAnswer struct {
	Method string      `json:"method"`
	URL    string      `json:"url"`
	Header [][2]string `json:"header,omitempty"`
	Hop    bool        `json:"hop,omitempty"` // HTTPClient's read: a redirect is the response, a 304 too
	Via    []string    `json:"via,omitempty"`

	Kind           string      `json:"kind,omitempty"`
	Message        string      `json:"message,omitempty"`
	Status         int         `json:"status,omitempty"`
	FinalURL       string      `json:"final_url,omitempty"`
	ETag           string      `json:"etag,omitempty"`
	LastModified   string      `json:"last_modified,omitempty"`
	Decoded        bool        `json:"decoded,omitempty"`
	ResponseHeader [][2]string `json:"response_header,omitempty"` // but Date
	Body           string      `json:"body,omitempty"`
}

// answersServer serves routes (the same in the SDK's test).
func answersServer(routes []serverRoute) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := slices.IndexFunc(routes, func(rt serverRoute) bool { return rt.Path == r.URL.Path })
		if i < 0 {
			http.NotFound(w, r)
			return
		}
		rt := routes[i]
		for _, kv := range rt.Header {
			w.Header().Add(kv[0], strings.ReplaceAll(kv[1], "$SERVER", r.Host))
		}
		if rt.NotModifiedIfNoneMatch != "" && r.Header.Get("If-None-Match") == rt.NotModifiedIfNoneMatch {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		body := []string{rt.Body}
		for _, k := range rt.Echo {
			body = append(body, k+"="+r.Header.Get(k))
		}
		if rt.EchoURI {
			body = append(body, "uri="+r.RequestURI)
		}
		b := []byte(strings.TrimSpace(strings.Join(body, " ")))
		if rt.Gzip {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(b)
			zw.Close()
			b = buf.Bytes()
		}
		if rt.Status != 0 {
			w.WriteHeader(rt.Status)
		}
		w.Write(b)
	})
}

// The cases the runtime answers; the answers are filled in by
// runtimeAnswers.
func nativeAnswerCases() *nativeAnswers {
	a := &nativeAnswers{
		Comment: "The runtime's answers (runtime/urlreader) that the guest SDK's native build must give too. " +
			"Written by go test ./runtime/urlreader -run TestRuntimeAnswersForTheNativeBuild -update, which fails when it differs; " +
			"the SDK's native tests (guest-sdk/greenroom/urlparity_native_test.go) fail when the native build answers otherwise.",
	}
	// Request headers: every refused name in its spellings, and the
	// values a few names take.
	names := []string{"", "Accept", "Accept-Language", "If-None-Match", "If-Modified-Since", "Range", "User-Agent", "Referer", "X-Api-Key",
		"x-forwarded-prefix", "X_Forwarded_Anything", "X-Forwarded-", "Private-Token", "Bad Name", "a:b", "X-Ok\r", "Ünicode"}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range deniedHeaders {
			if !yield(k) {
				return
			}
		}
	}) {
		names = append(names, k, strings.ToUpper(k), http.CanonicalHeaderKey(k), strings.ReplaceAll(k, "-", "_"))
	}
	seen := map[string]bool{}
	for _, k := range names {
		if !seen[k] {
			seen[k] = true
			a.Headers = append(a.Headers, headerAnswer{Name: k, Value: "v"})
		}
	}
	for _, k := range []string{"Accept", "X-Ok", "Authorization", "x_forwarded_for", "Bad Name", ""} {
		for _, v := range []string{"", "tab\tok", "a\r\nInjected: 1", "nul\x00", "del\x7f", "ü"} {
			a.Headers = append(a.Headers, headerAnswer{Name: k, Value: v})
		}
	}
	for _, raw := range []string{
		"https://docs.example/a", "http://127.0.0.1:8080/x?q=1#frag", "HTTPS://Docs.Example/", "https://user:pw@docs.example/",
		"http://user@127.0.0.1:1/", "https://:pw@docs.example/", "ftp://docs.example/", "file:///etc/passwd", "gopher://x/",
		"/relative", "docs.example/a", "//docs.example/a", "mailto:a@docs.example", "https:opaque", "https:///x", "http://./x",
		"http://:80/", "https://docs.example:99999/", "https://[::1]/", "https://[fe80::1%25eth0]/", "https://%zz/",
		"https://docs.example/" + strings.Repeat("a", maxURL), "", " https://docs.example/", "https://docs.example/\x00",
		"javascript:alert(1)", "data:text/plain,x", "https://docs.example/%2F", "https://docs.example/../x",
		"https://gitlab.example/api/v4/projects/group%2Fproject/repository/files/README.md/raw", "https://docs.example/a%5cb",
		"https://docs.example/a\\b", "https://docs.example/a%252Fb", "https://docs.example/a/%2e%2e/b", "https://docs.example/a/..;/b",
		"https://docs.example/a/..;x/b", "https://docs.example/a/.;/b", "https://docs.example/a/..%3B/b", "https://docs.example/a/%252e%252e/b",
		"https://docs.example/a/./b", "https://docs.example/a/.", "https://docs.example/a/..", "https://docs.example/a..b/c.d/...",
		"https://docs.example/a;b/c", "https://docs.example/a%20b", "https://docs.example/%zz",
		"https://docs.example/a%2F..%2Fb", "https://docs.example/a%252F..%252Fb", "https://docs.example/a/..%252Fb", "https://docs.example/a%255Cb",
		"https://docs.example/a%2F%2e%2e", "https://docs.example/a/%2e%2e%2Fb",
		"https://docs.example/g%2Fp/a b.md", "https://docs.example/g%2fp/a{b}", "https://docs.example/g%2Fp/%C3%A9", "https://docs.example/g%2Fp/\u00e9",
		// Read for a whole host, refused under a path prefix only
		// (wholeOnly): natively every host is read whole.
		"https://docs.example/a/%25252e%25252e/b", "https://docs.example/a%25252Fb", "https://docs.example/a%25255Cb", "https://docs.example/a/%25u002e%25u002e/b",
		"https://docs.example/a/.%e2%80%8b./b", "https://docs.example/a/..%20/b", "https://docs.example/a/.../b", "https://docs.example/a/%e3%80%82%e3%80%82/b",
		"https://docs.example/a/..%e2%88%95b", "https://docs.example/a/..%c2%a5b", "https://docs.example/a/%f0%8f%bc%8e%f0%8f%bc%8e/b",
		"https://docs.example/a/%" + strings.Repeat("25", 9) + "41",
	} {
		a.URLs = append(a.URLs, urlAnswer{URL: raw})
	}
	a.HopHeaders.In = http.Header{
		"Connection": {"X-Secret, keep-alive", " x-other ,ETag"}, "X-Secret": {"s"}, "X-Other": {"s"}, "Etag": {`"v"`},
		"Keep-Alive": {"timeout=5"}, "Proxy-Authenticate": {"Basic"}, "Proxy-Authorization": {"x"}, "Proxy-Connection": {"close"},
		"Transfer-Encoding": {"chunked"}, "Upgrade": {"h2c"}, "Trailer": {"X-T"}, "Te": {"trailers"},
		"X-Kept": {"yes"}, "Content-Type": {"text/plain"}, "Set-Cookie": {"a=b"},
	}
	a.Server = []serverRoute{
		{Path: "/plain", Header: [][2]string{{"ETag", `"v1"`}, {"Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT"}},
			NotModifiedIfNoneMatch: `"v1"`, Echo: []string{"User-Agent", "Referer", "Accept"}},
		{Path: "/moved", Status: http.StatusFound, Header: [][2]string{{"Location", "/plain"}}},
		{Path: "/group/project", EchoURI: true}, // %2F as sent
		{Path: "/to-group", Status: http.StatusFound, Header: [][2]string{{"Location", "/group%2Fproject?ref=main"}}},
		{Path: "/loop", Status: http.StatusFound, Header: [][2]string{{"Location", "/loop"}}},
		{Path: "/tocreds", Status: http.StatusFound, Header: [][2]string{{"Location", "http://user:pw@$SERVER/plain"}}},
		{Path: "/hop", Header: [][2]string{{"Connection", "X-Secret"}, {"X-Secret", "s"}, {"Keep-Alive", "timeout=5"}, {"Proxy-Authenticate", "Basic"}}, Body: "ok"},
		{Path: "/br", Header: [][2]string{{"Content-Encoding", "br"}}, Body: "encoded"},
		{Path: "/gzip", Header: [][2]string{{"Content-Encoding", "gzip"}}, Body: "unzipped", Gzip: true},
		{Path: "/claims", Header: [][2]string{{"Content-Length", "16777217"}}},
	}
	for _, tc := range []readAnswer{
		{Method: "GET", URL: "http://$SERVER/plain"},
		{Method: "GET", URL: "http://$SERVER/plain#frag"},
		{Method: "GET", URL: "http://$SERVER/plain?q=1#frag", Hop: true},
		{Method: "GET", URL: "HTTP://$SERVER/plain"},
		{Method: "GET", URL: "http://$SERVER/moved#frag"},
		{Method: "GET", URL: "http://127.0.0.1.:$PORT/plain"},
		{Method: "GET", URL: "http://$SERVER/plain", Header: [][2]string{{"Accept", "text/plain"}, {"User-Agent", "mine"}}},
		{Method: "HEAD", URL: "http://$SERVER/plain"},
		{Method: "GET", URL: "http://$SERVER/plain", Header: [][2]string{{"If-None-Match", `"v1"`}}},
		{Method: "GET", URL: "http://$SERVER/plain", Header: [][2]string{{"If-None-Match", `"v1"`}}, Hop: true},
		{Method: "GET", URL: "http://$SERVER/moved"},
		{Method: "GET", URL: "http://$SERVER/moved", Hop: true},
		{Method: "GET", URL: "http://$SERVER/plain", Header: [][2]string{{"Referer", "http://$SERVER/moved"}}, Hop: true, Via: []string{"http://$SERVER/moved"}},
		{Method: "GET", URL: "http://$SERVER/plain", Hop: true, Via: []string{"1", "2", "3", "4", "5", "http://127.0.0.1/6"}},
		{Method: "GET", URL: "http://$SERVER/loop"},
		{Method: "GET", URL: "http://$SERVER/tocreds"},
		{Method: "GET", URL: "http://$SERVER/hop"},
		{Method: "GET", URL: "http://$SERVER/br"},
		{Method: "GET", URL: "http://$SERVER/gzip"},
		{Method: "GET", URL: "http://$SERVER/gzip", Hop: true},
		{Method: "GET", URL: "http://$SERVER/gzip", Header: [][2]string{{"Range", "bytes=0-"}}},
		{Method: "GET", URL: "http://$SERVER/claims"},
		{Method: "GET", URL: "http://$SERVER/missing"},
		{Method: "POST", URL: "http://$SERVER/plain"},
		{Method: "GET", URL: "http://user:pw@$SERVER/plain"},
		{Method: "GET", URL: "ftp://$SERVER/plain"},
		{Method: "GET", URL: "/plain"},
		{Method: "GET", URL: "http://$SERVER/group%2Fproject"},
		{Method: "GET", URL: "http://$SERVER/to-group"},
		{Method: "GET", URL: "http://$SERVER/a%2F..%2Fplain"},
		{Method: "GET", URL: "http://$SERVER/a%5Cplain"},
		{Method: "GET", URL: "http://$SERVER/group%2Fproject/a b"},
		{Method: "GET", URL: "http://$SERVER/a/%252e%252e/plain"},
		{Method: "GET", URL: "http://$SERVER/a/./plain", Hop: true, Via: []string{"http://$SERVER/moved"}},
		{Method: "GET", URL: "http://$SERVER/plain", Header: [][2]string{{"Authorization", "Bearer x"}}},
		{Method: "GET", URL: "http://$SERVER/plain", Header: [][2]string{{"X_Forwarded_For", "10.0.0.1"}}},
		{Method: "GET", URL: "http://$SERVER/plain", Header: [][2]string{{"host", "other"}}},
		{Method: "GET", URL: "http://$SERVER/plain", Header: [][2]string{{"Cookie2", "a"}}},
		{Method: "GET", URL: "http://$SERVER/plain", Header: [][2]string{{"Bad Name", "a"}}},
		{Method: "GET", URL: "http://$SERVER/plain", Header: [][2]string{{"X-Ok", "a\nb"}}},
	} {
		a.Reads = append(a.Reads, tc)
	}
	return a
}

// runtimeAnswers fills in the runtime's answers to the cases.
func runtimeAnswers(t *testing.T) *nativeAnswers {
	a := nativeAnswerCases()
	d := config.Default().Reading
	a.Defaults = answerDefaults{MaxBytes: int64(d.MaxBytes), Timeout: d.Timeout.D().String(), UserAgent: defaultUserAgent}
	a.DeniedHeaders = deniedHeaders
	for i, c := range a.Headers {
		if err := checkHeader(deniedHeaders, c.Name, c.Value); err != nil {
			a.Headers[i].Kind, a.Headers[i].Message = KindOf(err).String(), err.Error()
		}
	}
	for i, c := range a.URLs {
		if _, err := parseTarget(c.URL); err != nil {
			a.URLs[i].Kind, a.URLs[i].Message = KindOf(err).String(), err.Error()
		}
	}
	a.HopHeaders.Out = a.HopHeaders.In.Clone()
	dropHopHeaders(a.HopHeaders.Out)

	srv := httptest.NewServer(answersServer(a.Server))
	defer srv.Close()
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	port := hostPort[strings.LastIndexByte(hostPort, ':')+1:]
	expand := strings.NewReplacer("$SERVER", hostPort, "$PORT", port)
	placeholders := strings.NewReplacer(hostPort, "$SERVER", ":"+port, ":$PORT")
	r, err := New(mustConfig(t, `
[reading]
allow = [{ host = "127.0.0.1", scheme = "http" }]
`), Options{TestOnlyReachable: []netip.AddrPort{netip.MustParseAddrPort(hostPort)}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p := r.For("p", []string{"127.0.0.1"})
	for i := range a.Reads {
		c := &a.Reads[i]
		req := Request{URL: expand.Replace(c.URL), Method: c.Method, Hop: c.Hop, NotModifiedResponse: c.Hop}
		for _, kv := range c.Header {
			req.Header = append(req.Header, [2]string{kv[0], expand.Replace(kv[1])})
		}
		for _, v := range c.Via {
			req.Via = append(req.Via, expand.Replace(v))
		}
		resp, err := p.Read(context.Background(), req)
		if err != nil {
			c.Kind, c.Message = KindOf(err).String(), placeholders.Replace(err.Error())
			continue
		}
		c.Status, c.FinalURL, c.ETag, c.LastModified, c.Decoded = resp.Status, placeholders.Replace(resp.URL), resp.ETag, resp.LastModified, resp.Decoded
		for _, kv := range resp.Header {
			if kv[0] != "Date" {
				c.ResponseHeader = append(c.ResponseHeader, [2]string{kv[0], placeholders.Replace(kv[1])})
			}
		}
		c.Body = placeholders.Replace(string(resp.Body))
	}
	return a
}

// formatAnswers writes a as JSON with a case a line, so that a change
// shows as the lines of the cases it changes.
func formatAnswers(t *testing.T, a *nativeAnswers) []byte {
	var b bytes.Buffer
	enc := func(v any, indent bool) {
		var buf bytes.Buffer
		e := json.NewEncoder(&buf)
		e.SetEscapeHTML(false)
		if indent {
			e.SetIndent("  ", "  ")
		}
		if err := e.Encode(v); err != nil {
			t.Fatal(err)
		}
		b.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	}
	list := func(n int, elem func(int) any) {
		b.WriteString("[\n")
		for i := range n {
			b.WriteString("    ")
			enc(elem(i), false)
			if i < n-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		b.WriteString("  ]")
	}
	b.WriteString("{\n  \"comment\": ")
	enc(a.Comment, false)
	b.WriteString(",\n  \"defaults\": ")
	enc(a.Defaults, false)
	b.WriteString(",\n  \"denied_headers\": ")
	enc(a.DeniedHeaders, true)
	b.WriteString(",\n  \"headers\": ")
	list(len(a.Headers), func(i int) any { return a.Headers[i] })
	b.WriteString(",\n  \"urls\": ")
	list(len(a.URLs), func(i int) any { return a.URLs[i] })
	b.WriteString(",\n  \"hop_headers\": ")
	enc(a.HopHeaders, true)
	b.WriteString(",\n  \"server\": ")
	list(len(a.Server), func(i int) any { return a.Server[i] })
	b.WriteString(",\n  \"reads\": ")
	list(len(a.Reads), func(i int) any { return a.Reads[i] })
	b.WriteString("\n}\n")
	// The SDK's test reads it back with encoding/json: it must be JSON.
	var check nativeAnswers
	if err := json.Unmarshal(b.Bytes(), &check); err != nil {
		t.Fatalf("the answers are not JSON: %v", err)
	}
	return b.Bytes()
}

// The runtime answers as the file the guest SDK's native tests check the
// native build with says (nativeAnswersFile): its header and URL rules
// with their errors, the response headers it drops, its defaults and its
// answers to reads of a test server. When a rule or a message changes,
// rewrite the file with -update, and make the native build
// (guest-sdk/greenroom, urlheaders_native.go, host_native.go) answer so
// too: its tests fail until it does.
func TestRuntimeAnswersForTheNativeBuild(t *testing.T) {
	got := formatAnswers(t, runtimeAnswers(t))
	if *update {
		if err := os.WriteFile(nativeAnswersFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(nativeAnswersFile)
	if err != nil {
		t.Fatalf("%v (go test ./runtime/urlreader -run TestRuntimeAnswersForTheNativeBuild -update writes it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	shown := 0
	for i := 0; i < max(len(gl), len(wl)) && shown < 20; i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Errorf("line %d:\n runtime %s\n file    %s", i+1, g, w)
			shown++
		}
	}
	t.Errorf("the runtime no longer answers as %s says: if that is meant, rewrite it (go test ./runtime/urlreader -run TestRuntimeAnswersForTheNativeBuild -update) and make the guest SDK's native build answer so too", nativeAnswersFile)
}
