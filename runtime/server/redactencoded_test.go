package server_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime"
	"github.com/greenroom-dev/greenroom/runtime/internal/secrettest"
	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
	"github.com/greenroom-dev/greenroom/runtime/urlreader"
)

// A plugin that encodes its ${VAR} secret itself and logs it — an HTTP
// Basic Authorization header, base64 of "user:" + secret with the secret
// at each of the three offsets of a 3-byte group, URL-safe base64, hex
// in either case — in a message, an attribute, an error, stdout and
// stderr, and reads a URL that carries it (the runtime's "url read"
// line), and a client that sends it in a request's path (the access
// log's): no line holds a run of base64 or hex that decodes to the
// secret less its first and last byte (what the characters left at a
// run's ends may hold of it).
func TestPluginEncodedSecretsRedacted(t *testing.T) {
	const key = "Zq9-s3cr3t-Key/Val?" // from ${LOGURL_KEY}
	cfg := fmt.Sprintf(`
[reading]
allow = [{ host = "*.example.test" }]
[plugins.logurl]
path = %q
capabilities = { urlreader = ["*.example.test"] }
[plugins.logurl.config]
api_key = "${LOGURL_KEY}"
`, logurlWasm)
	in := servertest.Start(t, cfg, servertest.Options{
		CacheDir: cacheDir,
		Env:      map[string]string{"LOGURL_KEY": key},
		Runtime:  runtime.Options{URLReader: urlreader.Options{Resolver: testResolver{}}},
	})
	if status, _, body := in.Get(t, "/api/logurl/secret-encoded"); status != 200 || body != "logged" {
		t.Fatalf("%d %q", status, body)
	}
	basic := base64.URLEncoding.EncodeToString([]byte("user:" + key))
	if status, _, _ := in.Get(t, "/api/logurl/missing/"+basic); status != 404 {
		t.Fatalf("missing: %d", status)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(in.Log.String(), "/api/logurl/missing") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	out := in.Log.String()
	if run := secrettest.EncodedRun(out, []byte(key[1:len(key)-1])); run != "" {
		t.Errorf("the log holds %q, which decodes to the secret:\n%s", run, linesHolding(out, run))
	}
	for _, want := range []string{"Basic dXNlcjp[REDACTED]", "Basic dXNlcjE6[REDACTED]w==", "Basic dXNlcjEyOl[REDACTED]8=", "url read", "/api/logurl/missing/dXNlcjp[REDACTED]"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "[REDACTED]"); n < 15 {
		t.Errorf("only %d redactions:\n%s", n, out)
	}
}
