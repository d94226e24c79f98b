// Command logsplit is a test guest that logs its secret where the runtime
// or the SDK has to split or shrink what it logs: printed lines longer than
// the runtime's 16 KiB line, with the secret across the cut, and records
// over 64 KiB with the secret across the SDK's old cuts; and a handler
// whose superfluous WriteHeader the SDK logs.
package main

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

func init() {
	mux := http.NewServeMux()
	// GET /straddle?pad=N prints N bytes of x then the secret, on stderr in
	// two writes, and only then the newline.
	mux.HandleFunc("GET /straddle", func(w http.ResponseWriter, r *http.Request) {
		secret, _ := greenroom.Config("api_key")
		pad, _ := strconv.Atoi(r.URL.Query().Get("pad"))
		fmt.Fprint(os.Stderr, strings.Repeat("x", pad)+secret)
		fmt.Fprintln(os.Stderr)
		w.Write([]byte("ok"))
	})
	// GET /long?n=N prints one line of N bytes (with its newline) on
	// stdout.
	mux.HandleFunc("GET /long", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		fmt.Println(strings.Repeat("y", n))
		w.Write([]byte("ok"))
	})
	// GET /record logs records over 64 KiB whose secret straddles the
	// 1 KiB and 8 KiB marks.
	mux.HandleFunc("GET /record", func(w http.ResponseWriter, r *http.Request) {
		secret, _ := greenroom.Config("api_key")
		pad := strings.Repeat("p", 70<<10)
		l := greenroom.Logger()
		l.Info("big value", "pad", pad, "v", strings.Repeat("z", 1013)+secret)
		l.Info("big message "+strings.Repeat("m", 8<<10-20)+secret, "pad", pad)
		w.Write([]byte("ok"))
	})
	// GET /superfluous writes its status three times: 201 is sent, and
	// the SDK logs the second call as superfluous, once.
	mux.HandleFunc("GET /superfluous", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		w.WriteHeader(http.StatusInternalServerError)
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte("ok"))
	})
	greenroom.Handle(mux)
}

func main() {}
