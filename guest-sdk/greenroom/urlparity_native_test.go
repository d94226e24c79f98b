//go:build !wasip1

package greenroom

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The parity tests below check that the native build answers as the
// runtime does. The runtime's answers come from runtimeAnswersFile, which
// runtime/urlreader's TestRuntimeAnswersForTheNativeBuild keeps equal to
// what the runtime answers (it fails when they differ; -update rewrites
// the file), and not from runtime/urlreader itself: the SDK's tests may
// import only the standard library (TestImportsOnlyStandardLibrary),
// because go mod tidy in a plugin's own module loads the tests of the
// packages it imports, and would list, and download, the runtime's
// dependencies. A runtime rule or message that changes fails the
// runtime's test until the file is rewritten, and then these until the
// native build follows.
const runtimeAnswersFile = "testdata/runtime_url_answers.json"

// The types of runtimeAnswersFile, as in runtime/urlreader's
// nativeanswers_test.go, which documents them.
type runtimeAnswers struct {
	Defaults struct {
		MaxBytes  int64  `json:"max_bytes"`
		Timeout   string `json:"timeout"`
		UserAgent string `json:"user_agent"`
	} `json:"defaults"`
	DeniedHeaders map[string]string `json:"denied_headers"`
	Headers       []struct {
		Name    string `json:"name"`
		Value   string `json:"value"`
		Kind    string `json:"kind"`
		Message string `json:"message"`
	} `json:"headers"`
	URLs []struct {
		URL     string `json:"url"`
		Kind    string `json:"kind"`
		Message string `json:"message"`
	} `json:"urls"`
	HopHeaders struct {
		In  http.Header `json:"in"`
		Out http.Header `json:"out"`
	} `json:"hop_headers"`
	Server []serverRoute `json:"server"`
	Reads  []struct {
		Method string      `json:"method"`
		URL    string      `json:"url"`
		Header [][2]string `json:"header"`
		Hop    bool        `json:"hop"`
		Via    []string    `json:"via"`

		Kind           string      `json:"kind"`
		Message        string      `json:"message"`
		Status         int         `json:"status"`
		FinalURL       string      `json:"final_url"`
		ETag           string      `json:"etag"`
		LastModified   string      `json:"last_modified"`
		Decoded        bool        `json:"decoded"`
		ResponseHeader [][2]string `json:"response_header"`
		Body           string      `json:"body"`
	} `json:"reads"`
}

// serverRoute is one path of the test server the reads read.
type serverRoute struct {
	Path                   string      `json:"path"`
	Status                 int         `json:"status"`
	Header                 [][2]string `json:"header"`
	Body                   string      `json:"body"`
	Echo                   []string    `json:"echo"`
	EchoURI                bool        `json:"echo_uri"`
	Gzip                   bool        `json:"gzip"`
	NotModifiedIfNoneMatch string      `json:"not_modified_if_none_match"`
}

// answersServer serves routes, as runtime/urlreader's does (keep the two
// the same).
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

func loadRuntimeAnswers(t *testing.T) *runtimeAnswers {
	t.Helper()
	b, err := os.ReadFile(runtimeAnswersFile)
	if err != nil {
		t.Fatal(err)
	}
	var a runtimeAnswers
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("%s: %v", runtimeAnswersFile, err)
	}
	if len(a.DeniedHeaders) < 20 || len(a.Headers) < 100 || len(a.URLs) < 40 || len(a.Server) < 5 || len(a.Reads) < 30 {
		t.Fatalf("%s has too few cases: %d denied headers, %d headers, %d URLs, %d routes, %d reads", runtimeAnswersFile,
			len(a.DeniedHeaders), len(a.Headers), len(a.URLs), len(a.Server), len(a.Reads))
	}
	return &a
}

// kindCodes are the codes of the runtime's error kinds, by their names
// in runtimeAnswersFile.
var kindCodes = map[string]int32{"denied": errDenied, "invalid": errInvalid, "failed": errFailed,
	"timeout": errTimeout, "too_large": errTooLarge, "not_modified": errNotModified}

// sameError says whether err is the runtime's error kind, message (none:
// no error).
func sameError(err *Error, kind, message string) bool {
	if err == nil || kind == "" {
		return err == nil && kind == ""
	}
	return err.Message == message && err.Code == kindCodes[kind] && err.Code != 0
}

// The native build's header rules are the runtime's: the same names
// refused for the same reasons, with the same errors. It fails when one
// list changes without the other (runtime/urlreader deniedHeaders,
// urlheaders_native.go deniedHeaders).
func TestNativeHeaderRulesMatchTheRuntime(t *testing.T) {
	a := loadRuntimeAnswers(t)
	rt := a.DeniedHeaders
	if !maps.Equal(deniedHeaders, rt) {
		for _, k := range slices.Sorted(maps.Keys(rt)) {
			if deniedHeaders[k] != rt[k] {
				t.Errorf("runtime refuses %s (%q), the native build %q", k, rt[k], deniedHeaders[k])
			}
		}
		for _, k := range slices.Sorted(maps.Keys(deniedHeaders)) {
			if _, ok := rt[k]; !ok {
				t.Errorf("the native build refuses %s, the runtime does not", k)
			}
		}
	}
	for _, c := range a.Headers {
		if native := checkHeader(c.Name, c.Value); !sameError(native, c.Kind, c.Message) {
			t.Errorf("%q: %q: native %v, runtime %s %q", c.Name, c.Value, native, c.Kind, c.Message)
		}
	}
}

// The native build's URL rules are the runtime's where it applies them:
// a URL the native build refuses, the runtime refuses with the same error.
func TestNativeURLRulesMatchTheRuntime(t *testing.T) {
	refused := 0
	for _, c := range loadRuntimeAnswers(t).URLs {
		native := checkURL(c.URL)
		if native == nil {
			continue
		}
		refused++
		if !sameError(native, c.Kind, c.Message) {
			t.Errorf("%q: native %d %q, runtime %s %q", c.URL, native.Code, native.Message, c.Kind, c.Message)
		}
	}
	if refused < 30 {
		t.Errorf("the native build refused only %d URLs", refused)
	}
}

// The native build drops the response headers the runtime drops.
func TestNativeResponseHopHeadersMatchTheRuntime(t *testing.T) {
	a := loadRuntimeAnswers(t)
	native := a.HopHeaders.In.Clone()
	dropHopHeaders(native)
	if !reflect.DeepEqual(native, a.HopHeaders.Out) {
		t.Errorf("native keeps %v, the runtime %v", native, a.HopHeaders.Out)
	}
	if len(a.HopHeaders.Out) != 3 {
		t.Errorf("the runtime keeps %v", a.HopHeaders.Out)
	}
}

// The same reads, natively, get the runtime's answers to them (its reader
// allowing and granting the test server, with no integrations): status,
// URL, body and headers, or the same error, in its kind and its words.
func TestNativeReadsMatchTheRuntimesReads(t *testing.T) {
	a := loadRuntimeAnswers(t)
	srv := httptest.NewServer(answersServer(a.Server))
	defer srv.Close()
	SetURLTransport(srv.Client().Transport)
	defer SetURLTransport(nil)
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	port := hostPort[strings.LastIndexByte(hostPort, ':')+1:]
	expand := strings.NewReplacer("$SERVER", hostPort, "$PORT", port)
	placeholders := strings.NewReplacer(hostPort, "$SERVER", ":"+port, ":$PORT")

	for _, c := range a.Reads {
		name := c.Method + " " + c.URL
		h := http.Header{}
		for _, kv := range c.Header {
			h[kv[0]] = append(h[kv[0]], expand.Replace(kv[1]))
		}
		var via []string
		for _, v := range c.Via {
			via = append(via, expand.Replace(v))
		}
		native, nerr := urlCall(context.Background(), &urlRequest{method: c.Method, url: expand.Replace(c.URL), header: h, hop: c.Hop, flags: c.Hop, via: via})
		if nerr != nil || c.Kind != "" {
			e, ok := nerr.(*Error)
			if ok {
				e = &Error{Code: e.Code, Message: placeholders.Replace(e.Message)}
			}
			if !ok || !sameError(e, c.Kind, c.Message) {
				t.Errorf("%s %v hop=%v via=%v:\n native  %v\n runtime %s %q", name, c.Header, c.Hop, c.Via, nerr, c.Kind, c.Message)
			}
			continue
		}
		var nh [][2]string
		for _, k := range slices.Sorted(maps.Keys(native.header)) {
			for _, v := range native.header[k] {
				if k != "Date" {
					nh = append(nh, [2]string{k, placeholders.Replace(v)})
				}
			}
		}
		if native.status != c.Status || placeholders.Replace(native.url) != c.FinalURL || placeholders.Replace(string(native.body)) != c.Body ||
			native.etag != c.ETag || native.lastModified != c.LastModified || native.decoded != (c.Hop && c.Decoded) || !slices.Equal(nh, c.ResponseHeader) {
			t.Errorf("%s %v hop=%v via=%v:\n native  %d %s %q %q %q %v %v\n runtime %d %s %q %q %q %v %v", name, c.Header, c.Hop, c.Via,
				native.status, native.url, native.body, native.etag, native.lastModified, native.decoded, nh,
				c.Status, c.FinalURL, c.Body, c.ETag, c.LastModified, c.Decoded, c.ResponseHeader)
		}
	}
}
