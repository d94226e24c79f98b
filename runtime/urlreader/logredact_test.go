package urlreader

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime/logging"
)

// secretRuns returns the runs of ASCII letters and digits of secret, and
// of secret percent-decoded, 4 or more long: every spelling a URL's or a
// line's escaping gives a secret (percent-, Go- or JSON-escaped, in
// either case) keeps them whole, so a line that holds one in any case
// leaks (a part of) the secret.
func secretRuns(secret string) []string {
	runs := regexp.MustCompile(`[A-Za-z0-9]{4,}`)
	out := runs.FindAllString(secret, -1)
	if d, err := url.PathUnescape(secret); err == nil && d != secret {
		out = append(out, runs.FindAllString(d, -1)...)
	}
	return out
}

// A secret the log's redactor knows (a plugin's ${VAR}, an integration
// token) that a plugin puts in a URL's host, path, query or userinfo
// reaches the URL reader's errors transformed: the reader lower-cases a
// host (a denial, a DNS or TLS error quote it so), decodes the path it
// says no rule covers, Go-quotes a host it refuses and the URL net/http
// failed on. The runtime logs that error (the "url read" line), and the
// plugin logs the error it got: neither line may hold the secret in any
// spelling, in either format. An audit found the lower-cased secret of a
// host in clear in both.
func TestURLReaderErrorsLeakNoSecretToTheLog(t *testing.T) {
	srv := newServer(t, false, func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	r := reader(t, `
[reading]
allow = [{ host = "*.example.test" }, { host = "docs.test", scheme = "http", paths = ["/pub/"] }]
`, mapResolver{"docs.test": {"127.0.0.1"}}, srv)
	// The grant covers docs.test whole, so that the allow rule says which
	// path it does not cover (decoded).
	p := r.For("logurl", []string{"*.example.test", "docs.test", "*.other.test"})
	docs := "http://docs.test:" + srv.port()
	for _, secret := range []string{
		"AcmeTenant7Qz9",      // letters, digits: a host label
		"Zq9$Acme!Key'Ab",     // characters a host may hold, which net/url keeps and the reader refuses
		`Zq9"Acme<Key>Ab`,     // and ones a line's quoting escapes
		"Ab9-Tenant_Q.Xy7zW",  // a name of labels
		"Pa%41th%2Bkey9Zw",    // a secret with percent escapes in it, written as it is
		`Zq9$Acme"Key<Ab%41x`, // the same with characters net/url escapes again once it decoded them
	} {
		urls := map[string]string{
			"host, no such host":    "https://" + secret + ".example.test/x",
			"host, not granted":     "https://" + secret + ".nope.test/x",
			"host, http refused":    "http://" + secret + ".example.test/x",
			"host with a port":      "https://" + secret + ".other.test:8443/x",
			"path, not covered":     docs + "/priv/" + url.PathEscape(secret),
			"path, as it is":        docs + "/priv/" + secret,
			"path, no such host":    "https://nohost.example.test/" + url.PathEscape(secret) + "/x",
			"query, no such host":   "https://nohost.example.test/x?key=" + url.QueryEscape(secret),
			"query, as it is":       "https://nohost.example.test/x?key=" + secret,
			"query, not covered":    docs + "/priv/?key=" + url.QueryEscape(secret),
			"userinfo, password":    "https://user:" + url.QueryEscape(secret) + "@a.example.test/x",
			"userinfo, user":        "https://" + url.QueryEscape(secret) + "@a.example.test/x",
			"userinfo, as it is":    "https://user:" + secret + "@a.example.test/x",
			"host and path, hop":    "https://" + secret + ".example.test/" + url.PathEscape(secret),
			"host, hop not granted": "https://" + secret + ".nope.test/",
		}
		for name, u := range urls {
			for _, hop := range []bool{false, true} {
				_, err := p.Read(context.Background(), Request{URL: u, Hop: hop || strings.Contains(name, "hop")})
				if err == nil {
					t.Fatalf("%s %q: read succeeded", name, u)
				}
				for _, format := range []string{"text", "json"} {
					var out bytes.Buffer
					log, _, lerr := logging.New(&out, format, "debug", []string{secret})
					if lerr != nil {
						t.Fatal(lerr)
					}
					// The runtime's line about the read, and the plugin's
					// own about the error it got.
					log.WithFields(logrus.Fields{"plugin": "logurl", "url": u, "error": err.Error()}).Debug("url read")
					log.WithFields(logrus.Fields{"plugin": "logurl", "err": err.Error()}).Warn("read failed: " + err.Error())
					low := strings.ToLower(out.String())
					for _, run := range secretRuns(secret) {
						if strings.Contains(low, strings.ToLower(run)) {
							t.Errorf("secret %q, %s (hop %v), %s: the log holds %q:\nerror: %s\n%s", secret, name, hop, format, run, err, out.String())
							break
						}
					}
				}
			}
		}
	}
}
