//go:build !wasip1

package greenroom

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestNativeConfigAndHandler(t *testing.T) {
	SetConfig(map[string]string{"greeting": "hi"})
	if v, ok := Config("greeting"); !ok || v != "hi" {
		t.Errorf("Config = %q %v", v, ok)
	}
	if _, ok := Config("other"); ok {
		t.Error("unset key found")
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	Handle(h)
	if Handler() == nil {
		t.Error("Handler() nil after Handle")
	}
}

// A WriteHeader after the status was written is a handler's bug: the
// status it meant is not sent. It is logged as a warning, as net/http's
// server logs it, naming the caller, once per response; natively the
// warning goes to stderr (in the runtime, to the plugin's log).
func TestSuperfluousWriteHeader(t *testing.T) {
	defer Handle(nil)
	for _, tc := range []struct {
		name    string
		h       http.HandlerFunc
		status  int
		warning string
	}{
		{"twice and thrice", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusCreated)
			w.WriteHeader(http.StatusInternalServerError)
			w.WriteHeader(http.StatusTeapot)
		}, http.StatusCreated, "(status 201 sent, 500 ignored)"},
		{"after a write", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("partial"))
			w.WriteHeader(http.StatusBadGateway)
		}, http.StatusOK, "(status 200 sent, 502 ignored)"},
		{"once", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) }, http.StatusAccepted, ""},
		{"informational first", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusNoContent)
		}, http.StatusNoContent, ""},
		{"through StripPrefix", func(w http.ResponseWriter, r *http.Request) {
			http.StripPrefix("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusCreated)
				w.WriteHeader(http.StatusConflict)
			})).ServeHTTP(w, r)
		}, http.StatusCreated, "(status 201 sent, 409 ignored)"},
	} {
		Handle(tc.h)
		req, w, _ := decodeRequest(string(sampleEnvelope(time.Now().Add(time.Minute))))
		out := stderrOf(t, func() { serve(w, req) })
		if w.status != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, w.status, tc.status)
		}
		if tc.warning == "" {
			if out != "" {
				t.Errorf("%s: logged %q, want nothing", tc.name, out)
			}
			continue
		}
		const prefix = "http: superfluous response.WriteHeader call from github.com/greenroom-dev/greenroom/guest-sdk/greenroom.TestSuperfluousWriteHeader.func"
		if strings.Count(out, "superfluous") != 1 || !strings.HasPrefix(out, prefix) || !strings.Contains(out, "envelope_native_test.go:") || !strings.Contains(out, tc.warning) {
			t.Errorf("%s: logged %q, want one warning naming the caller and %s", tc.name, out, tc.warning)
		}
	}
}
