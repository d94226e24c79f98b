package server_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
	"github.com/greenroom-dev/greenroom/runtime/urlreader"
)

// leakedRun returns the first run of 4 or more ASCII letters and digits
// of secret, or of secret percent-decoded, that text holds in any case,
// "" when it holds none: every spelling a URL's escaping, Go's quoting or
// JSON give a secret keeps those runs whole.
func leakedRun(text, secret string) string {
	runs := regexp.MustCompile(`[A-Za-z0-9]{4,}`)
	all := runs.FindAllString(secret, -1)
	if d, err := url.PathUnescape(secret); err == nil {
		all = append(all, runs.FindAllString(d, -1)...)
	}
	low := strings.ToLower(text)
	for _, r := range all {
		if strings.Contains(low, strings.ToLower(r)) {
			return r
		}
	}
	return ""
}

// linesHolding returns the lines of log that hold run in any case.
func linesHolding(log, run string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(strings.ToLower(l), strings.ToLower(run)) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A plugin's secret (a ${VAR} of its config) in the host, path, query or
// userinfo of a URL it reads, through ReadURL and through HTTPClient, the
// plugin logging the error it gets: the runtime's "url read" line and the
// plugin's own line hold it in no spelling, though the URL reader's
// errors lower-case the host (a denial, "no such host"), decode the path
// no rule covers and Go-quote a host it refuses. And an integration token
// that its host's redirect puts, in another case, into the next URL's
// host, path or query reaches neither the log nor the guest's error. The
// guest's error may quote the plugin's own secret: it is the plugin's
// own text, which the plugin wrote into the URL.
func TestURLReaderSecretInAURLReachesNoLog(t *testing.T) {
	const tenant = "AcmeTenant7Qz9"   // a host label
	const key = `Zq9$Acme"Key<Ab%41x` // characters URLs and lines escape, a percent escape written as it is
	const token = "ghp_TESTTOKEN0123456789abcdefghij"
	mixed := "GHP_TestToken0123456789ABCDEFghij"
	docs := newTarget(t, false, func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	var gh *target
	gh = newTarget(t, true, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-host":
			http.Redirect(w, r, "https://"+mixed+".example.test/x", http.StatusFound)
		case "/to-path":
			http.Redirect(w, r, "https://nohost.example.test/"+mixed+"/x", http.StatusFound)
		case "/to-query":
			http.Redirect(w, r, "https://nohost.example.test/x?t="+mixed, http.StatusFound)
		case "/to-self":
			http.Redirect(w, r, fmt.Sprintf("https://example.com:%d/missing/%s?t=%s", gh.port(), mixed, mixed), http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	})
	cfg := fmt.Sprintf(`
[reading]
allow = [{ host = "*.example.test" }, { host = "docs.test", scheme = "http", paths = ["/pub/"] }, { host = "example.com" }]
[[integrations.github]]
host = "example.com"
token = "${GH_TOKEN}"
[plugins.logurl]
path = %q
capabilities = { urlreader = ["*.example.test", "docs.test", "example.com"] }
[plugins.logurl.config]
tenant = "${TENANT}"
key = "${KEY}"
`, logurlWasm)
	in := servertest.Start(t, cfg, servertest.Options{
		CacheDir: cacheDir,
		Env:      map[string]string{"GH_TOKEN": token, "TENANT": tenant, "KEY": key},
		Runtime: runtime.Options{URLReader: urlreader.Options{
			Resolver:          testResolver{"docs.test": "127.0.0.1", "example.com": "127.0.0.1"},
			TestOnlyReachable: []netip.AddrPort{docs.addr(), gh.addr()},
			TLSConfig:         &tls.Config{RootCAs: gh.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs},
		}},
	})
	base := fmt.Sprintf("http://docs.test:%d", docs.port())
	for _, secret := range []string{tenant, key} {
		for _, u := range []string{
			"https://" + secret + ".example.test/x",      // no such host
			"https://" + secret + ".nope.test/x",         // not granted
			"http://" + secret + ".example.test/x",       // http refused
			"https://" + secret + ".example.test:8443/x", // with a port
			base + "/priv/" + url.PathEscape(secret),     // no rule covers the path
			base + "/priv/" + secret,                     // the same, as it is
			"https://nohost.example.test/" + url.PathEscape(secret) + "/x",
			"https://nohost.example.test/x?key=" + url.QueryEscape(secret),
			"https://nohost.example.test/x?key=" + secret,
			"https://user:" + url.QueryEscape(secret) + "@a.example.test/x",
			"https://" + url.QueryEscape(secret) + "@a.example.test/x",
		} {
			for _, route := range []string{"/read", "/client"} {
				if r := guestRead(t, in, "logurl", route, "url", u, "log", "1"); r.Error == "" {
					t.Errorf("%s %s: read succeeded: %+v", route, u, r)
				}
			}
		}
		if l := linesWith(t, in, "read failed"); len(l) == 0 {
			t.Fatalf("the plugin logged no error:\n%s", in.Log)
		}
		if run := leakedRun(in.Log.String(), secret); run != "" {
			t.Errorf("secret %q: the log holds %q:\n%s", secret, run, linesHolding(in.Log.String(), run))
		}
	}
	for _, path := range []string{"/to-host", "/to-path", "/to-query", "/to-self"} {
		for _, route := range []string{"/read", "/client"} {
			r := guestRead(t, in, "logurl", route, "url", fmt.Sprintf("https://example.com:%d%s", gh.port(), path), "log", "1")
			if route == "/read" && r.Error == "" {
				t.Errorf("%s %s: read succeeded: %+v", route, path, r)
			}
			if run := leakedRun(fmt.Sprintf("%+v", r), token); run != "" {
				t.Errorf("%s %s: the guest got the token (%q): %+v", route, path, run, r)
			}
		}
	}
	if run := leakedRun(in.Log.String(), token); run != "" {
		t.Errorf("the log holds the token (%q):\n%s", run, linesHolding(in.Log.String(), run))
	}
}
