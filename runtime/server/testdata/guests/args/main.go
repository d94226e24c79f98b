// Command args is a guest that does what ordinary Go programs and
// libraries do with os.Args at start-up: name the program after
// os.Args[0] (as glog and klog do) and parse flags (flag.Parse reads
// os.Args[1:]).
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

var program = filepath.Base(os.Args[0])

func init() {
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /args", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"program":%q,"args":%d,"flags":%d}`, program, len(os.Args), flag.NArg())
	})
	greenroom.Handle(mux)
}

func main() {}
