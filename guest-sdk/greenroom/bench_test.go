package greenroom

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// BenchmarkRequestCycle is the guest side of one request, natively: decode
// the envelope, route through a ServeMux, write, encode the response head.
//
//	go test -run '^$' -bench RequestCycle ./guest-sdk/greenroom/
func BenchmarkRequestCycle(b *testing.B) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	})
	e := &envBuilder{}
	e.str("GET").str("/ok").str("").str("rid-1").str("127.0.0.1:5555").u64(uint64(time.Now().Add(time.Hour).UnixNano()))
	e.u8(principalNone).str("").str("")
	e.u32(3).str("User-Agent").str("bench").str("Accept").str("*/*").str("Host").str("127.0.0.1")
	e.str("")
	env := e.b
	var head, body []byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		req, w, err := decodeRequest(string(env))
		if err != nil {
			b.Fatal(err)
		}
		w.head, w.body = head[:0], body[:0]
		mux.ServeHTTP(w, req)
		w.finish("")
		if w.status != 200 {
			b.Fatal(w.status)
		}
		head, body = w.head, w.body
		w.retire()
	}
	_ = fmt.Sprint
}
