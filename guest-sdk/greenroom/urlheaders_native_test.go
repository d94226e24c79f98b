//go:build !wasip1

package greenroom

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/urlreader"
)

// Natively, a request header the runtime refuses is refused too, sending
// nothing, with the error a deployed plugin gets: a unit test passed with
// a header its deployed read was refused for (or, Host, one net/http
// dropped without a word).
func TestNativeRefusesTheRuntimesHeaders(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, r.Header.Get("Accept"))
	}))
	defer srv.Close()
	SetURLTransport(srv.Client().Transport)
	defer SetURLTransport(nil)
	ctx := context.Background()

	if resp, err := ReadURL(ctx, srv.URL+"/", WithHeader("Accept", "text/plain")); err != nil || string(resp.Body) != "text/plain" {
		t.Fatalf("Accept: %v", err)
	}
	for _, tc := range []struct {
		k, v string
		kind *Error
		want string
	}{
		{"Authorization", "Bearer mine", ErrDenied, "greenroom: request header Authorization may not be set by a plugin: it carries credentials, which the host adds from [[integrations]]"},
		{"Cookie", "a=b", ErrDenied, "greenroom: request header Cookie may not be set by a plugin: it carries credentials"},
		{"Host", "billing.internal", ErrDenied, "greenroom: request header Host may not be set by a plugin: the host is the URL's"},
		{"X_Forwarded_For", "10.0.0.1", ErrDenied, "greenroom: request header X_forwarded_for may not be set by a plugin: it would speak for the runtime's network"},
		{"X-Forwarded-Prefix", "/", ErrDenied, "greenroom: request header X-Forwarded-Prefix may not be set by a plugin: it would speak for the runtime's network"},
		{"Accept-Encoding", "br", ErrDenied, "greenroom: request header Accept-Encoding may not be set by a plugin: the host negotiates compression and hands bodies over decoded"},
		{"X-HTTP-Method-Override", "DELETE", ErrDenied, "greenroom: request header X-Http-Method-Override may not be set by a plugin: reads are GET or HEAD"},
		{"X-Ok", "a\r\nInjected: 1", ErrInvalid, "greenroom: request header X-Ok has a control character in its value"},
	} {
		_, err := ReadURL(ctx, srv.URL+"/", WithHeader(tc.k, tc.v))
		if !errors.Is(err, tc.kind) || err == nil || err.Error() != tc.want {
			t.Errorf("ReadURL with %s: got %v, want %v %q", tc.k, err, tc.kind, tc.want)
		}
	}
	// Through HTTPClient: what its transport sends on (it drops Host,
	// Accept-Encoding and the connection headers, as documented) is
	// checked as the runtime checks it.
	for _, tc := range []struct{ k, v, want string }{
		{"Authorization", "Bearer mine", "request header Authorization may not be set by a plugin: it carries credentials, which the host adds from [[integrations]]"},
		{"X-Forwarded-For", "10.0.0.1", "request header X-Forwarded-For may not be set by a plugin: it would speak for the runtime's network"},
		{"Upgrade", "websocket", "request header Upgrade may not be set by a plugin: it is hop-by-hop"},
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/", nil)
		req.Header.Set(tc.k, tc.v)
		resp, err := HTTPClient().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		if !errors.Is(err, ErrDenied) || !strings.HasSuffix(err.Error(), ": greenroom: "+tc.want) {
			t.Errorf("HTTPClient with %s: got %v, want ErrDenied %q", tc.k, err, tc.want)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("refused requests reached the server: %d requests", n)
	}
}

// The native build's header rules are the runtime's: the same names
// refused for the same reasons, with the same errors. It fails when one
// list changes without the other (runtime/urlreader deniedHeaders,
// urlheaders_native.go deniedHeaders).
func TestNativeHeaderRulesMatchTheRuntime(t *testing.T) {
	rt := urlreader.DeniedRequestHeaders()
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
	names := []string{"", "Accept", "Accept-Language", "If-None-Match", "If-Modified-Since", "Range", "User-Agent", "Referer", "X-Api-Key",
		"x-forwarded-prefix", "X_Forwarded_Anything", "X-Forwarded-", "Private-Token", "Bad Name", "a:b", "X-Ok\r", "Ünicode"}
	for k := range rt {
		names = append(names, k, strings.ToUpper(k), http.CanonicalHeaderKey(k), strings.ReplaceAll(k, "-", "_"))
	}
	codes := map[urlreader.Kind]int32{urlreader.Denied: errDenied, urlreader.Invalid: errInvalid}
	for _, k := range names {
		for _, v := range []string{"v", "", "tab\tok", "a\r\nInjected: 1", "nul\x00", "del\x7f", "ü"} {
			native, runtime := checkHeader(k, v), urlreader.CheckRequestHeader(k, v)
			switch {
			case native == nil && runtime == nil:
			case native == nil || runtime == nil:
				t.Errorf("%q: %q: native %v, runtime %v", k, v, native, runtime)
			case native.Message != runtime.Error() || native.Code != codes[urlreader.KindOf(runtime)] || native.Code == 0:
				t.Errorf("%q: %q: native %d %q, runtime %v %q", k, v, native.Code, native.Message, urlreader.KindOf(runtime), runtime)
			}
		}
	}
}
