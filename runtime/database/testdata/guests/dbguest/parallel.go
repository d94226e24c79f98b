package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

// parallel serves GET /parallel?g=G&k=K: it runs K statements in each of G
// goroutines at once through greenroom.DB(), as a *sql.DB allows, and
// checks that each gets its own answer: a row carrying the number it
// sent, or (every third statement) the error naming its own column. It
// answers {"bad": N, "examples": [...]}.
func parallel(w http.ResponseWriter, r *http.Request) {
	g, _ := strconv.Atoi(r.URL.Query().Get("g"))
	k, _ := strconv.Atoi(r.URL.Query().Get("k"))
	db := greenroom.DB()
	var mu sync.Mutex
	var bad []string
	var wg sync.WaitGroup
	for i := range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range k {
				want := i*1000 + j
				// Rows of different sizes, so that the goroutines'
				// allocations differ and the collector runs.
				pad := strings.Repeat("x", i*100)
				q := "SELECT CAST(? AS BIGINT), CAST(? AS TEXT)"
				if j%3 == 0 {
					q = fmt.Sprintf("SELECT ?, nosuchcol%d, ?", want)
				}
				var got int
				var gotPad string
				err := db.QueryRow(q, want, pad).Scan(&got, &gotPad)
				var problem string
				switch {
				case j%3 == 0 && (err == nil || !strings.Contains(err.Error(), fmt.Sprintf("nosuchcol%d", want))):
					problem = fmt.Sprintf("statement %d: error %v, want one naming nosuchcol%d", want, err, want)
				case j%3 != 0 && err != nil:
					problem = fmt.Sprintf("statement %d: %v", want, err)
				case j%3 != 0 && (got != want || gotPad != pad):
					problem = fmt.Sprintf("statement %d: got row %d with %d bytes, want %d bytes", want, got, len(gotPad), len(pad))
				}
				if problem != "" {
					problem = problem[:min(len(problem), 200)]
					mu.Lock()
					bad = append(bad, problem)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	json.NewEncoder(w).Encode(map[string]any{"bad": len(bad), "examples": bad[:min(len(bad), 5)]})
}
