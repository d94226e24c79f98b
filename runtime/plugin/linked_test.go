package plugin

import (
	"bytes"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/internal/guesttest"
)

// The guest SDK links into a plugin only what the plugin uses: a plugin
// that makes no HTTP requests and does not log (plugins/hello) carries
// neither net/http's client (with TLS and HTTP/2: 2.5 MB of its 9, which
// every start-up validates and every instance's memory holds) nor slog's
// logger. A Go module keeps its functions' names for tracebacks, so what
// was linked shows in its bytes.
func TestSDKLinksOnlyWhatThePluginUses(t *testing.T) {
	b := guesttest.Read(t, "plugins/hello")
	for _, name := range []string{
		"crypto/tls.(*Conn).Handshake", // net/http's Transport
		"log/slog.(*Logger)",           // greenroom.Logger()
	} {
		if bytes.Contains(b, []byte(name)) {
			t.Errorf("plugins/hello (%d bytes) links %s, which it does not use: something in the guest SDK references it for every plugin", len(b), name)
		}
	}
	if !bytes.Contains(b, []byte("net/http.(*ServeMux).ServeHTTP")) {
		t.Fatal("plugins/hello lacks net/http's ServeMux: the names this test looks for are not where it looks")
	}
}
