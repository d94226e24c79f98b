// Package handlers is one http.Handler written as a Go developer writes
// one, which TestGuestAsNetHTTP serves both natively (httptest) and as a
// greenroom guest, to compare what each answers.
package handlers

import (
	"compress/gzip"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"sort"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

var modTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// New returns the handler.
func New() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "item %q path=%q raw=%q pattern=%q", r.PathValue("id"), r.URL.Path, r.URL.RawPath, r.Pattern)
	})
	mux.HandleFunc("POST /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "created %s", r.PathValue("id"))
	})
	mux.HandleFunc("GET /files/{rest...}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "rest=%q", r.PathValue("rest"))
	})
	mux.HandleFunc("GET /dir/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "dir %s", r.URL.Path)
	})
	mux.HandleFunc("GET /exact/{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "exact")
	})
	mux.HandleFunc("/error", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusTeapot)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/items/1", http.StatusFound)
	})
	mux.HandleFunc("/content", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, "a.txt", modTime, strings.NewReader("0123456789abcdefghij"))
	})
	sub, _ := fs.Sub(static, "static")
	mux.Handle("/static/", http.StripPrefix("/static", http.FileServer(http.FS(sub))))
	mux.HandleFunc("POST /limited", func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 10)
		b, err := io.ReadAll(r.Body)
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			http.Error(w, "too big: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		fmt.Fprintf(w, "ok %d", len(b))
	})
	mux.HandleFunc("/form", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, k := range sorted(r.Form) {
			fmt.Fprintf(w, "%s=%q post=%q\n", k, r.Form[k], r.PostForm[k])
		}
		fmt.Fprintf(w, "FormValue(a)=%q", r.FormValue("a"))
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f, fh, err := r.FormFile("file")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		fmt.Fprintf(w, "name=%s size=%d type=%s content=%q field=%q", fh.Filename, fh.Size, fh.Header.Get("Content-Type"), b, r.FormValue("field"))
	})
	mux.HandleFunc("POST /upload-small", func(w http.ResponseWriter, r *http.Request) {
		// A form larger than maxMemory spills to temporary files.
		if err := r.ParseMultipartForm(16); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "ok %d", len(r.MultipartForm.File["file"]))
	})
	mux.HandleFunc("/query", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		for _, k := range sorted(q) {
			fmt.Fprintf(w, "%q=%q\n", k, q[k])
		}
		fmt.Fprintf(w, "raw=%q uri=%q", r.URL.RawQuery, r.RequestURI)
	})
	mux.HandleFunc("/req", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "proto=%q cl=%d multi=%q accept=%q ua=%q url.host=%q tls=%v", r.Proto, r.ContentLength, r.Header.Values("X-Multi"), r.Header.Get("Accept"), r.UserAgent(), r.URL.Host, r.TLS != nil)
	})
	mux.HandleFunc("/multiheader", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("X-A", "1")
		w.Header().Add("X-A", "2")
		w.Header().Add("Cache-Control", "no-cache")
		w.Header().Add("Cache-Control", "no-store")
		w.WriteHeader(http.StatusAccepted)
		w.WriteHeader(http.StatusNonAuthoritativeInfo) // superfluous: logged, ignored
		w.Header().Set("X-Late", "not sent")
		fmt.Fprint(w, "x")
	})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
		if _, err := w.Write([]byte("body")); !errors.Is(err, http.ErrBodyNotAllowed) {
			panic(fmt.Sprint("write after 204: ", err))
		}
	})
	mux.HandleFunc("/notmodified", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"x"`)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusNotModified)
		w.Write([]byte("body"))
	})
	mux.HandleFunc("/controller", func(w http.ResponseWriter, r *http.Request) {
		// A long download or an event stream lifts its deadlines.
		rc := http.NewResponseController(w)
		for _, err := range []error{rc.SetWriteDeadline(time.Time{}), rc.SetReadDeadline(time.Now().Add(time.Minute)), rc.EnableFullDuplex(), rc.Flush()} {
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		// gin's Context.Stream, in short.
		gone := w.(http.CloseNotifier).CloseNotify()
		for i := 0; i < 3; i++ {
			select {
			case <-gone:
				return
			default:
				fmt.Fprintf(w, "data: %d\n\n", i)
				w.(http.Flusher).Flush()
			}
		}
	})
	mux.HandleFunc("POST /json", func(w http.ResponseWriter, r *http.Request) {
		var v struct{ Name string }
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	})
	mux.HandleFunc("/gzip", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		fmt.Fprint(zw, strings.Repeat("hello gzip ", 100))
		zw.Close()
	})
	mux.Handle("/timeout", http.TimeoutHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
			fmt.Fprint(w, "late")
		case <-r.Context().Done():
		}
	}), 50*time.Millisecond, "timed out"))
	mux.Handle("/maxbytes", http.MaxBytesHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		fmt.Fprint(w, "ok")
	}), 5))
	mux.HandleFunc("/sniff", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "<html><body>hi</body></html>")
	})
	mux.HandleFunc("/nilcontenttype", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil
		fmt.Fprint(w, "<html>")
	})
	mux.HandleFunc("/contentlength", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		w.Write([]byte("hello"))
	})
	mux.HandleFunc("/early", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("X-Final", "1")
		fmt.Fprint(w, "final")
	})
	return mux
}

func sorted[M ~map[string][]string](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
