//go:build !wasip1

package greenroom

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// In the runtime, the host refuses some request headers a plugin sets
// (docs/urlreader.md, "What is checked", 3.); natively the SDK refuses the
// same, with the same errors, so that a plugin's unit test does not pass
// with a header its deployed read is refused for. What the host refuses
// besides, a configured integration's header (PRIVATE-TOKEN for a GitLab
// one), depends on the operator's config and is not known here.

// deniedHeaders is a copy of the runtime's list (runtime/urlreader,
// deniedHeaders): TestNativeHeaderRulesMatchTheRuntime fails when the two
// differ, in a name or a reason, as testdata/runtime_url_answers.json
// records the runtime's (runtime/urlreader's
// TestRuntimeAnswersForTheNativeBuild writes it). The SDK, its tests too,
// imports only the standard library, so it cannot share the runtime's.
var deniedHeaders = map[string]string{
	"authorization":       "it carries credentials, which the host adds from [[integrations]]",
	"proxy-authorization": "it carries credentials",
	"cookie":              "it carries credentials",
	"cookie2":             "it carries credentials",
	"host":                "the host is the URL's",
	"connection":          "it is hop-by-hop",
	"keep-alive":          "it is hop-by-hop",
	"proxy-connection":    "it is hop-by-hop",
	"transfer-encoding":   "it is hop-by-hop",
	"te":                  "it is hop-by-hop",
	"trailer":             "it is hop-by-hop",
	"upgrade":             "it is hop-by-hop",
	"content-length":      "reads have no body",
	// Bodies arrive decoded: the host asks for compression itself and
	// decodes, so that it can find an integration token a server echoes.
	"accept-encoding":     "the host negotiates compression and hands bodies over decoded",
	"expect":              "reads have no body",
	"forwarded":           "it would speak for the runtime's network",
	"x-forwarded-for":     "it would speak for the runtime's network",
	"x-forwarded-host":    "it would speak for the runtime's network",
	"x-forwarded-proto":   "it would speak for the runtime's network",
	"x-real-ip":           "it would speak for the runtime's network",
	"x-client-ip":         "it would speak for the runtime's network",
	"client-ip":           "it would speak for the runtime's network",
	"true-client-ip":      "it would speak for the runtime's network",
	"x-cluster-client-ip": "it would speak for the runtime's network",
	"x-originating-ip":    "it would speak for the runtime's network",
	"x-remote-ip":         "it would speak for the runtime's network",
	"x-remote-addr":       "it would speak for the runtime's network",
	"cf-connecting-ip":    "it would speak for the runtime's network",
	"fastly-client-ip":    "it would speak for the runtime's network",
	"x-host":              "the host is the URL's",
	// Front ends that route by these (IIS ARR and Azure's gateways by
	// X-Original-Host, middleware by X-HTTP-Host-Override) would send the
	// read to another virtual host than the allow rules checked.
	"x-original-host":      "the host is the URL's",
	"x-http-host-override": "the host is the URL's",
	"x-forwarded":          "it would speak for the runtime's network",
	// Servers behind some proxies and frameworks take these for the
	// request's path or method, which the allow rules and the reader's
	// GET/HEAD decide.
	"x-original-url":         "it would change the path the allow rules checked",
	"x-rewrite-url":          "it would change the path the allow rules checked",
	"x-http-method-override": "reads are GET or HEAD",
	"x-http-method":          "reads are GET or HEAD",
	"x-method-override":      "reads are GET or HEAD",
}

// checkHeader is the runtime's check of a request header k: v that a
// plugin sets (runtime/urlreader, checkHeader), with its messages: names
// compared in any letter case and with '_' as '-', every x-forwarded-*
// name refused, a name that is not an HTTP token and a control character
// in a value malformed.
func checkHeader(k, v string) *Error {
	fail := func(code int32, format string, args ...any) *Error {
		return &Error{Op: "urlreader_call", Code: code, Message: fmt.Sprintf(format, args...)}
	}
	if k == "" {
		return fail(errInvalid, "empty request header name")
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return fail(errInvalid, "request header name %q is not an HTTP token", k)
		}
	}
	lk := strings.ReplaceAll(strings.ToLower(k), "_", "-")
	why, ok := deniedHeaders[lk]
	if !ok && strings.HasPrefix(lk, "x-forwarded-") {
		why, ok = "it would speak for the runtime's network", true
	}
	if ok {
		return fail(errDenied, "request header %s may not be set by a plugin: %s", http.CanonicalHeaderKey(k), why)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return fail(errInvalid, "request header %s has a control character in its value", http.CanonicalHeaderKey(k))
		}
	}
	return nil
}

// maxURL is the runtime's limit on a URL's length (runtime/urlreader).
const maxURL = 8 << 10

// checkURL applies the runtime's rules for a URL that do not depend on the
// operator's config (runtime/urlreader, parseTarget; docs/urlreader.md,
// "What is checked", 1.), with its errors: at most 8 KiB, absolute, http or
// https, not opaque, no credentials in it (net/http sends them as Basic
// authorization), a host, no backslash or dot segment in the path. An
// encoded slash (%2F, GitLab's group%2Fproject) is read, as the runtime
// reads it under an allow rule and a grant for the whole host: natively
// every host is read whole. The runtime's other rules (allow rules and
// grants, an encoded slash or a segment servers that decode it again or
// read it loosely take for a dot segment under a path prefix, https only
// unless a rule says http, host spellings, path segments as lax or
// normalising servers read them, internal addresses) are not applied
// natively, where a unit test reads an httptest.Server on 127.0.0.1 over
// http.
func checkURL(raw string) *Error {
	fail := func(code int32, format string, args ...any) *Error {
		return &Error{Op: "urlreader_call", Code: code, Message: fmt.Sprintf(format, args...)}
	}
	if len(raw) > maxURL {
		return fail(errInvalid, "URL is %d bytes, over the limit of %d", len(raw), maxURL)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fail(errInvalid, "%v", err)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "https" && u.Scheme != "http" {
		if u.Scheme == "" {
			return fail(errInvalid, "%q is not an absolute URL (want https://host/path)", raw)
		}
		return fail(errInvalid, "%s: scheme %q is not supported (https, or http where an allow rule says so)", raw, u.Scheme)
	}
	if u.Opaque != "" {
		return fail(errInvalid, "%s: opaque URLs are not supported", raw)
	}
	if u.User != nil {
		return fail(errDenied, "%s://%s: credentials in the URL are refused; the host adds credentials from [[integrations]]", u.Scheme, u.Host)
	}
	if h := u.Hostname(); h == "" || !strings.HasPrefix(u.Host, "[") && strings.TrimSuffix(h, ".") == "" {
		return fail(errInvalid, "%s: URL has no host", u.Redacted())
	}
	// The path: no backslash, encoded or not, no dot segment, also with
	// ;parameters or encoded twice (..%252F: a server that decodes twice
	// reads its pieces as segments), as the runtime refuses them whatever
	// its config.
	path := u.Path
	if path == "" {
		path = "/"
	}
	esc, lp := strings.ToLower(u.EscapedPath()), strings.ToLower(path)
	if strings.Contains(esc, "%5c") || strings.Contains(path, "\\") || strings.Contains(lp, "%5c") {
		return fail(errInvalid, "%s: backslashes in the path, encoded or not (\\, %%5C, or %%255C encoded twice), are refused", raw)
	}
	// Go sends a path that is not a valid escaping of itself (a space,
	// "{", "|" or a non-ASCII byte left unescaped) escaped anew from its
	// decoded form, %2F as "/": another path than the one written
	// (GitLab's group/project is not group%2Fproject).
	if strings.Contains(strings.ToLower(u.RawPath), "%2f") && !strings.Contains(esc, "%2f") {
		return fail(errInvalid, "%s: the path holds an encoded slash (%%2F) beside characters left unescaped (a space, {, |, non-ASCII), which would be sent with %%2F decoded to /; escape them too (url.PathEscape)", raw)
	}
	for _, seg := range strings.Split(path, "/") {
		twice, err := url.PathUnescape(seg)
		if err != nil {
			twice = seg
		}
		for _, s := range append([]string{seg}, strings.Split(twice, "/")...) {
			if name, _, _ := strings.Cut(s, ";"); name == "." || name == ".." {
				return fail(errInvalid, "%s: dot segments (. and .., also with ;parameters as in ..;, or encoded twice as in %%252e%%252e) in the path are refused", raw)
			}
		}
	}
	return nil
}

// hopHeaders are the runtime's hop-by-hop response headers, which it does
// not pass to the plugin (runtime/urlreader, hopHeaders).
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Trailer", "Te",
	"Proxy-Authenticate", "Proxy-Authorization",
}

// dropHopHeaders deletes the hop-by-hop headers from a response's, as the
// runtime does (runtime/urlreader, dropHopHeaders): the standard ones and
// those its Connection headers name.
func dropHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}
