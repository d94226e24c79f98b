//go:build !wasip1

package greenroom

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
)

// On the host platform there is no runtime to ask; native tests set values.

var (
	nativeMu     sync.RWMutex
	nativeConfig map[string]string
)

// SetConfig replaces the values Config returns in a native (non-wasm) build,
// for unit tests of a plugin. It does not exist in the wasip1 build.
func SetConfig(values map[string]string) {
	nativeMu.Lock()
	defer nativeMu.Unlock()
	nativeConfig = make(map[string]string, len(values))
	for k, v := range values {
		nativeConfig[k] = v
	}
}

func hostConfig(key string) (string, bool) {
	nativeMu.RLock()
	defer nativeMu.RUnlock()
	v, ok := nativeConfig[key]
	return v, ok
}

// Natively, Logger writes text to stderr.
func newLogHandler() slog.Handler { return slog.NewTextHandler(os.Stderr, nil) }

// emitRecord has no host to send to natively: the caller writes to stderr.
func emitRecord([]byte) bool { return false }

var (
	nativeTransportMu sync.RWMutex
	nativeTransport   http.RoundTripper = http.DefaultTransport
)

// SetURLTransport sets the transport ReadURL and HTTPClient use in a native
// (non-wasm) build, for unit tests of a plugin: point it at an
// httptest.Server's client transport, or at a fake RoundTripper. nil
// restores http.DefaultTransport. It does not exist in the wasip1 build,
// where the runtime reads.
func SetURLTransport(rt http.RoundTripper) {
	nativeTransportMu.Lock()
	defer nativeTransportMu.Unlock()
	if rt == nil {
		rt = http.DefaultTransport
	}
	nativeTransport = rt
}

// nativeMaxBytes is the runtime's default reading.max_bytes.
const nativeMaxBytes = 16 << 20

// urlCall reads with net/http directly: GET and HEAD only, at most 5
// redirects and 16 MiB, 304 as ErrNotModified; no allow rules, grants or
// credentials.
func urlCall(ctx context.Context, req *urlRequest) (*urlResponse, error) {
	fail := func(code int32, format string, args ...any) (*urlResponse, error) {
		return nil, &Error{Func: "urlreader_call", Code: code, Message: fmt.Sprintf(format, args...)}
	}
	if req.method != http.MethodGet && req.method != http.MethodHead {
		return fail(errInvalid, "method %q is not supported: the URL reader reads with GET and HEAD only", req.method)
	}
	nativeTransportMu.RLock()
	rt := nativeTransport
	nativeTransportMu.RUnlock()
	client := &http.Client{Transport: rt, CheckRedirect: func(_ *http.Request, via []*http.Request) error {
		if len(via) > 5 {
			return errors.New("stopped after 5 redirects")
		}
		return nil
	}}
	hreq, err := http.NewRequestWithContext(ctx, req.method, req.url, nil)
	if err != nil {
		return fail(errInvalid, "%v", err)
	}
	hreq.Header = req.header.Clone()
	resp, err := client.Do(hreq)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fail(errTimeout, "%s: deadline passed", req.url)
		}
		return fail(errFailed, "%v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return fail(errNotModified, "%s: not modified (ETag %s)", req.url, resp.Header.Get("ETag"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, nativeMaxBytes+1))
	if err != nil {
		return fail(errFailed, "%s: %v", req.url, err)
	}
	if len(body) > nativeMaxBytes {
		return fail(errTooLarge, "%s: body is over %d bytes", req.url, nativeMaxBytes)
	}
	return &urlResponse{
		status:       resp.StatusCode,
		url:          resp.Request.URL.String(),
		etag:         resp.Header.Get("ETag"),
		lastModified: resp.Header.Get("Last-Modified"),
		header:       resp.Header,
		body:         body,
	}, nil
}
