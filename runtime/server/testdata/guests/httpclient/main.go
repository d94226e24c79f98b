// Command httpclient runs scenario.Run with the SDK's HTTPClient, as a
// plugin builder's code uses an *http.Client, for tests that compare it
// with net/http's own client.
package main

import (
	"encoding/json"
	"net/http"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
	"github.com/greenroom-dev/greenroom/runtime/server/testdata/guests/httpclient/scenario"
)

func init() {
	greenroom.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var s scenario.Scenario
		if err := json.Unmarshal([]byte(r.URL.Query().Get("s")), &s); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(scenario.Run(r.Context(), greenroom.HTTPClient(), r.URL.Query().Get("base"), s))
	}))
}

func main() {}
