// Command hostile is a misbehaving guest for the runtime's sandbox tests.
package main

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

//go:wasmimport greenroom request_read
func requestRead(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom config_get
func configGet(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom public_route
func publicRoute(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport greenroom response_write
func responseWrite(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport wasi_snapshot_preview1 random_get
func randomGet(ptr unsafe.Pointer, size uint32) uint32

var sink [][]byte

// kept and churnSink are /churn's working set and last piece of garbage.
var (
	kept      [][]byte
	churnSink []byte
)
var counter int

// initPublic is what public_route answered during init for a malformed
// route; /public-codes reports it.
var initPublic int32

func askPublic(path string) int32 {
	return publicRoute(unsafe.Pointer(unsafe.StringData(path)), uint32(len(path)))
}

func init() {
	if msg, ok := greenroom.Config("init_panic"); ok {
		panic(msg)
	}
	if msg, ok := greenroom.Config("init_exit"); ok { // as log.Fatal does
		fmt.Fprintln(os.Stderr, msg)
		os.Exit(1)
	}
	initPublic = askPublic("no-leading-slash")
	// Routes to open when public_routes lists them too: "/big,/bighead".
	if routes, ok := greenroom.Config("public"); ok {
		greenroom.Public(strings.Split(routes, ",")...)
	}
	// Output written while initializing, which no call answers with.
	if n, ok := greenroom.Config("init_write"); ok {
		b := make([]byte, max(atoi(n), 1))
		responseWrite(unsafe.Pointer(&b[0]), uint32(atoi(n)))
	}
	if ms, ok := greenroom.Config("init_sleep_ms"); ok {
		n, _ := strconv.Atoi(ms)
		time.Sleep(time.Duration(n) * time.Millisecond)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) {
		counter++
		fmt.Fprintf(w, `{"ok":true,"calls":%d}`, counter)
	})
	// A goroutine that writes to the response after the handler returned,
	// when the next call on the instance lets it run (it waits in a sleep).
	mux.HandleFunc("GET /latewrite", func(w http.ResponseWriter, r *http.Request) {
		go func() {
			h := w.Header()
			time.Sleep(50 * time.Millisecond)
			h.Set("X-Leaked", "from-the-previous-request")
			w.Header().Set("X-Leaked-Too", "1")
			w.Write([]byte("LEAKED"))
		}()
		w.Write([]byte("first"))
	})
	// GET and HEAD (ServeMux's GET pattern takes both).
	mux.HandleFunc("GET /content", func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "c.txt", time.Time{}, strings.NewReader("hello, content"))
	})
	// A nil Content-Type suppresses the header (net/http's rule).
	mux.HandleFunc("GET /notype", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil
		w.Write([]byte("<html>no type</html>"))
	})
	mux.HandleFunc("GET /nap", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil {
			ms = 200
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
		w.Write([]byte("second"))
	})
	mux.HandleFunc("GET /loop", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; ; i++ {
			counter += i
		}
	})
	mux.HandleFunc("GET /ctxwait", func(w http.ResponseWriter, r *http.Request) {
		// Answers when its context ends: at the call's deadline.
		<-r.Context().Done()
		w.Write([]byte("ctx done: " + r.Context().Err().Error()))
	})
	mux.HandleFunc("GET /sleep", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Hour)
	})
	mux.HandleFunc("GET /recurse", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, fib(60))
	})
	mux.HandleFunc("GET /alloc", func(w http.ResponseWriter, r *http.Request) {
		for {
			sink = append(sink, make([]byte, 1<<20))
		}
	})
	mux.HandleFunc("GET /grow", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		for i := 0; i < mb; i++ {
			sink = append(sink, make([]byte, 1<<20))
		}
		fmt.Fprint(w, len(sink))
	})
	// /churn keeps live MiB reachable (allocated once per instance) and
	// then allocates garbage MiB in 64 KiB pieces: a plugin with a steady
	// working set and short-lived allocations, for the garbage collector's
	// memory limit.
	mux.HandleFunc("GET /churn", func(w http.ResponseWriter, r *http.Request) {
		live, _ := strconv.Atoi(r.URL.Query().Get("live"))
		garbage, _ := strconv.Atoi(r.URL.Query().Get("garbage"))
		if r.URL.Query().Has("nolimit") {
			debug.SetMemoryLimit(math.MaxInt64) // the Go default
		}
		for len(kept) < live*16 {
			kept = append(kept, make([]byte, 64<<10))
		}
		for i := 0; i < garbage*16; i++ {
			b := make([]byte, 64<<10)
			b[0] = byte(i)
			churnSink = b
		}
		fmt.Fprint(w, len(kept)/16)
	})
	// /gc reports the collector's settings as the SDK left them.
	mux.HandleFunc("GET /gc", func(w http.ResponseWriter, r *http.Request) {
		percent := debug.SetGCPercent(100)
		debug.SetGCPercent(percent)
		fmt.Fprintf(w, `{"memory_limit":%d,"gc_percent":%d}`, debug.SetMemoryLimit(-1), percent)
	})
	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) {
		panic("hostile guest panics on purpose")
	})
	// /exit exits with code 3, or ?code (proc_exit takes its low 32 bits:
	// -1 and 4026531839 are the codes wazero uses for a cancelled context
	// and a deadline).
	mux.HandleFunc("GET /exit", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil {
			code = 3
		}
		if say := r.URL.Query().Get("say"); say != "" { // as log.Fatal would
			fmt.Fprintln(os.Stderr, "starting over")
			fmt.Fprintln(os.Stderr, say)
		}
		os.Exit(code)
	})
	// /gopanic panics in a goroutine of its own, which nothing recovers.
	mux.HandleFunc("GET /gopanic", func(w http.ResponseWriter, r *http.Request) {
		go func() { panic("hostile goroutine panics on purpose") }()
		time.Sleep(time.Second)
	})
	// /framing answers as its case says: flush, a flush between two
	// writes (through http.ResponseController); short, a body short of
	// its Content-Length; headers, n header lines.
	mux.HandleFunc("GET /framing", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch q.Get("case") {
		case "flush":
			io.WriteString(w, "before ")
			if err := http.NewResponseController(w).Flush(); err != nil {
				fmt.Fprint(w, err)
			}
			io.WriteString(w, "after")
		case "short":
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "abc")
		case "sniff":
			// The handler's own X-Content-Type-Options ("v"), any value.
			w.Header().Set("x-content-type-options", q.Get("v"))
			io.WriteString(w, "sniffed")
		case "headers":
			n, _ := strconv.Atoi(q.Get("n"))
			for i := range n {
				w.Header().Add("X-H", strconv.Itoa(i))
			}
			io.WriteString(w, "many")
		}
	})
	// /headers answers the request's headers, one "Name: value" a line,
	// sorted, for any method.
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		var lines []string
		for k, vs := range r.Header {
			for _, v := range vs {
				lines = append(lines, k+": "+v)
			}
		}
		sort.Strings(lines)
		fmt.Fprint(w, strings.Join(lines, "\n"))
	})
	// /deadlock blocks for good with nothing else to run: the Go runtime's
	// fatal error ("all goroutines are asleep"), which ends in a trap.
	mux.HandleFunc("GET /deadlock", func(w http.ResponseWriter, r *http.Request) {
		select {}
	})
	mux.HandleFunc("GET /badptr", func(w http.ResponseWriter, r *http.Request) {
		requestRead(unsafe.Pointer(uintptr(0xfffffff0)), 4096)
	})
	mux.HandleFunc("GET /badkey", func(w http.ResponseWriter, r *http.Request) {
		configGet(unsafe.Pointer(uintptr(0x7ffffff0)), 0x7fffffff)
	})
	// config_get with a key of n zero bytes (each would be quoted as \x00).
	mux.HandleFunc("GET /bigkey", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		key := make([]byte, max(n, 1))
		fmt.Fprintf(w, `{"code":%d}`, configGet(unsafe.Pointer(&key[0]), uint32(n)))
	})
	// n bytes, in one write or in writes of piece bytes (as io.Copy
	// writes).
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		piece, _ := strconv.Atoi(r.URL.Query().Get("piece"))
		// With a Location (a 201 Created's), which the host mounts.
		if loc := r.URL.Query().Get("location"); loc != "" {
			w.Header().Set("Location", loc)
		}
		if piece <= 0 {
			w.Write(make([]byte, n))
			return
		}
		b := make([]byte, piece)
		for ; n > 0; n -= piece {
			w.Write(b[:min(piece, n)])
		}
	})
	// A header of n bytes and no body (GET and HEAD).
	mux.HandleFunc("GET /bighead", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("h", atoi(r.URL.Query().Get("n"))))
	})
	mux.HandleFunc("GET /stdout", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("hello from stdout")
		fmt.Fprintln(os.Stderr, "hello from stderr")
	})
	// One write of mb MiB of empty lines: a single host call that takes
	// seconds unless the deadline stops it inside.
	mux.HandleFunc("GET /flood", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		b := make([]byte, mb<<20)
		for i := range b {
			b[i] = '\n'
		}
		os.Stdout.Write(b)
		w.Write([]byte("done"))
	})
	// One random_get of mb MiB: one host call.
	mux.HandleFunc("GET /random", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		b := make([]byte, mb<<20)
		fmt.Fprintf(w, `{"errno":%d}`, randomGet(unsafe.Pointer(&b[0]), uint32(len(b))))
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, r *http.Request) {
		_, err := os.ReadFile("/etc/passwd")
		env := make([]string, 0, len(os.Environ()))
		for _, kv := range os.Environ() {
			env = append(env, strconv.Quote(kv))
		}
		fmt.Fprintf(w, `{"env":[%s],"fs_error":%q}`, strings.Join(env, ","), fmt.Sprint(err))
	})
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, r *http.Request) {
		v, ok := greenroom.Config(r.URL.Query().Get("key"))
		fmt.Fprintf(w, `{"found":%v,"value":%q}`, ok, v)
	})
	mux.HandleFunc("GET /badheader", func(w http.ResponseWriter, r *http.Request) {
		// A line break the SDK turns into spaces, as net/http does; a
		// terminal escape it passes on, which the host must drop.
		w.Header()["X-Evil"] = []string{"a\r\nInjected: 1"}
		w.Header()["X-Escape"] = []string{"\x1b[2Jcleared"}
		w.Header()["Bad Name"] = []string{"x"}
		// A length that is not the body's: the SDK holds a handler to a
		// Content-Length it set (a write past it fails), but sends a
		// name it does not know for one, which the host must drop.
		w.Header()["content-length"] = []string{"1"}
		w.Header().Set("X-Request-Id", "forged")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Private-Network", "true")
		// State a browser keeps for the whole origin.
		w.Header().Add("Set-Cookie", "session=evil; Path=/")
		w.Header().Set("Clear-Site-Data", `"*"`)
		w.Header().Set("Service-Worker-Allowed", "/")
		w.Header().Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		w.Header().Set("Alt-Svc", `h2="evil.example:443"`)
		// Network Error Logging: every request of that browser to the
		// origin, any plugin's, reported (its URL, query and all) to
		// where Report-To says, for max_age.
		w.Header().Set("NEL", `{"report_to":"spy","max_age":31536000,"success_fraction":1.0,"include_subdomains":true}`)
		w.Header().Set("Report-To", `{"group":"spy","max_age":31536000,"endpoints":[{"url":"https://evil.example/r"}]}`)
		// Client hints the browser then sends to the whole origin.
		w.Header().Set("Accept-CH", "Sec-CH-UA-Full-Version-List, Sec-CH-UA-Platform-Version, Device-Memory")
		w.Header().Set("Critical-CH", "Sec-CH-UA-Full-Version-List")
		w.Header().Set("WWW-Authenticate", `Basic realm="phish"`)
		w.Header().Set("X-Fine", "yes")
		w.Write([]byte("ok"))
	})
	// A redirect, to where the query says (the host keeps root-relative
	// ones inside the plugin's mount), then "repeat" times its "then"
	// (a Location far larger than any request could be).
	mux.HandleFunc("GET /redirect", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		n, _ := strconv.Atoi(q.Get("repeat"))
		w.Header().Set("Location", q.Get("to")+strings.Repeat(q.Get("then"), n))
		w.WriteHeader(http.StatusFound)
	})
	// http.Redirect writes its little body for a GET only.
	mux.HandleFunc("GET /moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/items", http.StatusFound)
	})
	// The status the query names, through WriteHeader.
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		w.WriteHeader(code)
		w.Write([]byte("body"))
	})
	mux.HandleFunc("GET /public-codes", func(w http.ResponseWriter, r *http.Request) {
		// After init, asking to open a route is refused.
		fmt.Fprintf(w, `{"init_malformed":%d,"late":%d}`, initPublic, askPublic("/ok"))
	})
	greenroom.Handle(mux)
}

func fib(n int) int {
	if n < 2 {
		return n
	}
	return fib(n-1) + fib(n-2)
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func main() {}
