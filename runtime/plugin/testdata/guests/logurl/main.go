// Command logurl is a test guest for the logger and URL reader
// capabilities: it logs on demand (structured, printed, flooded, with its
// own secrets), reads URLs with ReadURL and HTTPClient, and calls the host
// functions with hostile arguments.
package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

//go:wasmimport greenroom log_write
func logWrite(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom urlreader_call
func urlreaderCall(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom request_read
func requestRead(ptr unsafe.Pointer, size uint32) int32

func init() {
	greenroom.Logger().Info("logurl starting")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /nolog", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"ok":true}`))
	})
	mux.HandleFunc("GET /log1", func(w http.ResponseWriter, r *http.Request) {
		greenroom.Logger().Info("handled", "user", "jane", "n", 1)
		w.Write([]byte(`{"ok":true}`))
	})
	mux.HandleFunc("GET /structured", func(w http.ResponseWriter, r *http.Request) {
		greenroom.Logger().With("svc", "docs").WithGroup("req").Warn("fetched",
			"method", "GET", "status", 200, "took", 1500*time.Millisecond, "ok", true, "ratio", 0.5,
			slog.Group("user", "id", uint64(7)))
		greenroom.Logger().Info("forging", "plugin", "forged", "request_id", "forged", "stream", "forged", "level", "forged")
		w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /customlevels", func(w http.ResponseWriter, r *http.Request) {
		l := greenroom.Logger()
		ctx := r.Context()
		l.Log(ctx, slog.Level(2), "custom info+2")
		l.Log(ctx, slog.LevelDebug-4, "custom debug-4")
		l.Log(ctx, slog.LevelWarn-1, "custom info+3")
		l.Log(ctx, slog.LevelError+4, "custom error+4")
		l.Log(ctx, slog.LevelWarn, "custom warn", "slog_level", "forged")
		w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /levels", func(w http.ResponseWriter, r *http.Request) {
		l := greenroom.Logger()
		l.Debug("level debug")
		l.Info("level info")
		l.Warn("level warn")
		l.Error("level error")
		fmt.Println("level stdout")
		w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /flood", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		for i := 0; i < n; i++ {
			greenroom.Logger().Info("flood", "i", i)
		}
		for i := 0; i < n; i++ {
			fmt.Println("printed flood", i)
		}
		w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /secret", func(w http.ResponseWriter, r *http.Request) {
		secret, _ := greenroom.Config("api_key")
		token, _ := greenroom.Config("nested.token")
		l := greenroom.Logger()
		l.Info("the key is "+secret, "api_key", secret, secret, "as a key", "nested", token)
		l.WithGroup(secret).Info("grouped", "k", "v")
		l.Info("json-escaped", "quoted", fmt.Sprintf("%q", secret))
		l.Info("as bytes", "raw", []byte(secret))
		l.Error("failed", "err", fmt.Errorf("login with key %s: %w", secret, errors.New("401")))
		fmt.Println("stdout:", secret)
		fmt.Fprintln(os.Stderr, "stderr:", secret, token)
		log.Print("log.Print: ", secret)
		slog.SetDefault(greenroom.Logger())
		log.Print("log.Print through slog: ", secret)
		w.Write([]byte("logged"))
	})
	mux.HandleFunc("GET /secret-encoded", func(w http.ResponseWriter, r *http.Request) {
		// The secret encoded by the plugin itself: HTTP Basic
		// Authorization headers (base64 of user:secret, the secret at
		// each offset of a 3-byte group), URL-safe base64 and hex.
		secret, _ := greenroom.Config("api_key")
		l := greenroom.Logger()
		var basics []string
		for _, user := range []string{"user:", "user1:", "user12:"} {
			basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+secret))
			basics = append(basics, basic)
			l.Info("sending Authorization: "+basic, "authorization", basic)
			fmt.Println("stdout:", basic)
		}
		fmt.Fprintln(os.Stderr, "stderr:", strings.Join(basics, ", "))
		urlSafe := base64.RawURLEncoding.EncodeToString([]byte("t=" + secret + ";"))
		l.Info("url-safe", "token", urlSafe, "hex", hex.EncodeToString([]byte(secret)), "HEX", strings.ToUpper(hex.EncodeToString([]byte("x"+secret))))
		l.Error("failed", "err", fmt.Errorf("login with %s: %w", basics[0], errors.New("401")))
		// A read whose URL carries it: the runtime's "url read" line
		// quotes the URL and its error.
		_, err := greenroom.ReadURL(r.Context(), "https://nohost.example.test/x?auth="+urlSafe)
		l.Warn("read failed", "err", err)
		w.Write([]byte("logged"))
	})
	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) {
		panic("logurl panics on purpose")
	})
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var opts []greenroom.ReadOption
		if etag := q.Get("etag"); etag != "" {
			opts = append(opts, greenroom.IfNoneMatch(etag))
		}
		if h := q.Get("header"); h != "" {
			opts = append(opts, greenroom.WithHeader(h, q.Get("value")))
		}
		ctx := r.Context()
		if d := q.Get("timeout"); d != "" {
			dur, _ := time.ParseDuration(d)
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, dur)
			defer cancel()
		}
		// n = N reads the URL N times (the last one answers).
		n, _ := strconv.Atoi(q.Get("n"))
		for i := 1; i < n; i++ {
			greenroom.ReadURL(ctx, q.Get("url"), opts...)
		}
		resp, err := greenroom.ReadURL(ctx, q.Get("url"), opts...)
		if q.Get("raw") != "" && err == nil {
			w.Write(resp.Body) // the body as is, for the benchmark
			return
		}
		out := map[string]any{}
		if err != nil && q.Get("log") != "" {
			// As a plugin logs the error of a read: the URL it asked
			// for and the error it got.
			greenroom.Logger().Warn("read failed: "+err.Error(), "url", q.Get("url"), "err", err)
		}
		if err != nil {
			out["error"] = err.Error()
			out["kind"] = kindOf(err)
			var se *greenroom.StatusError
			if errors.As(err, &se) {
				out["status"] = se.Response.Status
			}
		} else {
			out["status"] = resp.Status
			out["etag"] = resp.ETag
			out["last_modified"] = resp.LastModified.UTC().Format(time.RFC3339)
			out["url"] = resp.URL
			out["body"] = string(resp.Body)
			out["content_type"] = resp.Header.Get("Content-Type")
		}
		json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("GET /client", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		method := q.Get("method")
		if method == "" {
			method = "GET"
		}
		var body io.Reader
		if method == "POST" {
			body = http.NoBody
		}
		req, err := http.NewRequestWithContext(r.Context(), method, q.Get("url"), body)
		if err != nil { // a URL net/url refuses never reaches the host
			json.NewEncoder(w).Encode(map[string]any{"error": err.Error(), "kind": "other"})
			return
		}
		if etag := q.Get("etag"); etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		client := greenroom.HTTPClient()
		if q.Get("client") == "default" { // net/http's own, as a builder may try first
			client = http.DefaultClient
		}
		if q.Get("follow") == "no" {
			client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		}
		resp, err := client.Do(req)
		out := map[string]any{}
		if err != nil && q.Get("log") != "" {
			greenroom.Logger().Warn("read failed: "+err.Error(), "url", q.Get("url"), "err", err)
		}
		if err != nil {
			out["error"] = err.Error()
			out["kind"] = kindOf(err)
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			out["status"] = resp.StatusCode
			out["body"] = string(b)
			out["etag"] = resp.Header.Get("ETag")
			out["url"] = resp.Request.URL.String()
		}
		json.NewEncoder(w).Encode(out)
	})
	// Hostile calls straight to the host functions.
	mux.HandleFunc("GET /raw/log", func(w http.ResponseWriter, r *http.Request) {
		var rec []byte
		switch r.URL.Query().Get("case") {
		case "oversize":
			rec = make([]byte, 70<<10)
		case "badkind":
			rec = appendStr(binary.LittleEndian.AppendUint32(nil, 0), "m")
			rec = append(rec, 42)
			rec = appendStr(rec, "k")
		case "unbalanced":
			rec = appendStr(binary.LittleEndian.AppendUint32(nil, 0), "m")
			rec = append(rec, 7)
			rec = appendStr(rec, "group")
		case "short":
			rec = []byte{1, 2}
		case "badptr":
			fmt.Fprint(w, logWrite(unsafe.Pointer(uintptr(0xfffffff0)), 4096))
			return
		case "groupbomb":
			// One group named with 63 000 bytes holding 256 bool
			// attributes with 2-byte keys, written n times; the
			// results are counted by value.
			rec = appendStr(binary.LittleEndian.AppendUint32(nil, 0), "groupbomb")
			rec = append(rec, 7)
			rec = appendStr(rec, strings.Repeat("g", 63000))
			for i := 0; i < 256; i++ {
				rec = append(rec, 5)
				rec = appendStr(rec, fmt.Sprintf("%02d", i%100))
				rec = append(rec, 1)
			}
			rec = append(rec, 8)
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			results := map[int32]int{}
			for i := 0; i < n; i++ {
				results[logWrite(unsafe.Pointer(&rec[0]), uint32(len(rec)))]++
			}
			json.NewEncoder(w).Encode(results)
			return
		}
		fmt.Fprint(w, logWrite(unsafe.Pointer(&rec[0]), uint32(len(rec))))
	})
	mux.HandleFunc("GET /raw/url", func(w http.ResponseWriter, r *http.Request) {
		var req []byte
		switch r.URL.Query().Get("case") {
		case "tree":
			req = []byte{2, 0, 0, 0, 0}
		case "garbage":
			req = []byte{1, 0xff, 0xff, 0xff, 0xff}
		case "oversize":
			req = make([]byte, 65<<10+1)
			req[0] = 1
		}
		fmt.Fprint(w, urlreaderCall(unsafe.Pointer(&req[0]), uint32(len(req))))
	})
	greenroom.Handle(mux)
}

func appendStr(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func kindOf(err error) string {
	for name, e := range map[string]error{
		"denied": greenroom.ErrDenied, "not_modified": greenroom.ErrNotModified, "too_large": greenroom.ErrTooLarge,
		"timeout": greenroom.ErrTimeout, "invalid": greenroom.ErrInvalid, "failed": greenroom.ErrFailed, "not_found": greenroom.ErrNotFound,
	} {
		if errors.Is(err, e) {
			return name
		}
	}
	return "other"
}

// benchLog logs n records; the plugin package's benchmark calls it with n
// in its input envelope (4 bytes, little-endian).
//
//go:wasmexport bench_log
func benchLog(reqLen uint32) uint32 {
	var buf [4]byte
	if reqLen != 4 || requestRead(unsafe.Pointer(&buf[0]), 4) != 4 {
		return 2
	}
	l := greenroom.Logger()
	for i := uint32(0); i < binary.LittleEndian.Uint32(buf[:]); i++ {
		l.Info("bench", "i", int(i), "user", "jane")
	}
	return 0
}

func main() {}
