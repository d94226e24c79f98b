//go:build !wasip1

package greenroom

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strconv"
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

// A handler's Content-Length holds as with net/http: a write past it fails
// with http.ErrContentLength (and none of it is sent), and a body short
// of it, which net/http's client sees cut short when the server closes the
// connection, is not sent as if whole: the answer is a 502
// plugin_bad_response and the log says why. A HEAD's Content-Length is
// the GET's length, and its body none. Both were sent as written, framed
// by the bytes the handler wrote.
func TestContentLengthAsNetHTTP(t *testing.T) {
	defer Handle(nil)
	for _, tc := range []struct {
		name, method, declared string
		writes                 []string
		errs                   []error
		status                 int
		body, log              string
	}{
		{"exact", "GET", "5", []string{"ab", "cde"}, []error{nil, nil}, 200, "abcde", ""},
		{"past it", "GET", "5", []string{"abc", "defg", "ef"}, []error{nil, http.ErrContentLength, http.ErrContentLength}, 502, "", "wrote 3 bytes of the 5 its Content-Length declared"},
		{"one write past it", "GET", "2", []string{"abc"}, []error{http.ErrContentLength}, 502, "", "wrote 0 bytes of the 2"},
		{"short", "GET", "10", []string{"abc"}, []error{nil}, 502, "", "wrote 3 bytes of the 10"},
		{"HEAD", "HEAD", "10", nil, nil, 200, "", ""},
		{"none declared", "GET", "", []string{"abc"}, []error{nil}, 200, "abc", ""},
		{"not a number", "GET", "x", []string{"abc"}, []error{nil}, 200, "abc", ""},
	} {
		Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			if tc.declared != "" {
				w.Header().Set("Content-Length", tc.declared)
			}
			for i, s := range tc.writes {
				if _, err := io.WriteString(w, s); err != tc.errs[i] {
					t.Errorf("%s: write %d: %v, want %v", tc.name, i, err, tc.errs[i])
				}
			}
		}))
		env := sampleEnvelope(time.Now().Add(time.Minute))
		env = append(binary.LittleEndian.AppendUint32(nil, uint32(len(tc.method))), append([]byte(tc.method), env[4+len("POST"):]...)...)
		req, w, err := decodeRequest(string(env))
		if err != nil {
			t.Fatal(err)
		}
		out := stderrOf(t, func() { serve(w, req) })
		w.finish("")
		st, got, body := decodeResponse(t, w.envelope())
		if st != tc.status || tc.status == 200 && body != tc.body {
			t.Errorf("%s: %d %q, want %d %q", tc.name, st, body, tc.status, tc.body)
		}
		if tc.status == 502 && (!strings.Contains(body, `"code":"plugin_bad_response"`) || !strings.Contains(body, tc.log) || got["Content-Length"] != nil) {
			t.Errorf("%s: %v %s", tc.name, got, body)
		}
		if !strings.Contains(out, tc.log) || tc.log == "" && out != "" {
			t.Errorf("%s: logged %q, want %q", tc.name, out, tc.log)
		}
	}
}

// A response may have 1022 header lines of the handler's (the runtime
// takes 1024 with the two the SDK may add, a sniffed Content-Type and
// :route); with more, the SDK answers 502 plugin_bad_response itself,
// saying how many the handler set, and logs it. The runtime refused the
// envelope, naming a count the handler never set (its own plus the
// SDK's), and discarded the instance.
func TestTooManyHeadersSaid(t *testing.T) {
	defer Handle(nil)
	// A flush after a first write adds the sniffed type then, which
	// counts as the one the SDK adds at the end (TestFlushFixesTheSniffedType).
	for _, c := range []struct {
		n     int
		flush bool
	}{{maxHandlerHeaders, false}, {maxHandlerHeaders + 1, false}, {maxHandlerHeaders, true}, {maxHandlerHeaders + 1, true}} {
		n := c.n
		Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for i := range n {
				w.Header().Add("X-H", strconv.Itoa(i))
			}
			io.WriteString(w, "<html>")
			if c.flush {
				w.(http.Flusher).Flush()
				io.WriteString(w, "</html>")
			}
		}))
		req, w, _ := decodeRequest(string(sampleEnvelope(time.Now().Add(time.Minute))))
		req.Pattern = "GET /many"
		out := stderrOf(t, func() { serve(w, req) })
		w.finish(req.Pattern)
		st, got, body := decodeResponse(t, w.envelope())
		env := envReader{s: string(w.envelope())}
		env.u32()
		if lines := env.u32(); lines > 1024 {
			t.Errorf("%d headers: the envelope holds %d, over the runtime's 1024", n, lines)
		}
		want := fmt.Sprintf("the handler set %d response header lines, more than the %d a response may have", n, maxHandlerHeaders)
		if n == maxHandlerHeaders {
			if st != 200 || len(got["X-H"]) != n || out != "" {
				t.Errorf("%d headers (flush %v): %d, %d X-H, logged %q", n, c.flush, st, len(got["X-H"]), out)
			}
		} else if st != 502 || !strings.Contains(body, want) || !strings.Contains(body, "plugin_bad_response") || !strings.Contains(out, want) {
			t.Errorf("%d headers (flush %v): %d %q, logged %q", n, c.flush, st, body, out)
		}
	}
}
