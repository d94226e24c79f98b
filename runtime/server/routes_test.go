package server

import (
	"fmt"
	"testing"
)

func TestRouteLabel(t *testing.T) {
	for _, tc := range []struct{ pattern, want string }{
		{"GET /items/{id}", "/items/{id}"},
		{"/ping", "/ping"},
		{"POST example.com/hook", "/hook"},
		{"/static/", "/static/"},
		{"/{$}", "/{$}"},
		{"/caf\u00e9", "/caf\u00e9"},
		{"", noRoute},
		{"GET", noRoute},
		{"/a b", noRoute},
		{"/a\nb", noRoute},
		{"/a\x7f", noRoute},
		{"/\xff", noRoute},
		{"/" + string(make([]byte, 300)), noRoute},
	} {
		if got := routeLabel([]byte(tc.pattern)); got != tc.want {
			t.Errorf("routeLabel(%q) = %q, want %q", tc.pattern, got, tc.want)
		}
	}
}

// A plugin names its routes, so it could name a new one per request: past
// maxRoutes patterns a plugin's requests are counted as "other", and
// another plugin keeps its own places.
func TestRouteLabelsBounded(t *testing.T) {
	var l routeLabels
	for i := 0; i < 3*maxRoutes; i++ {
		got := l.label("hostile", fmt.Appendf(nil, "GET /r%d", i), nil)
		want := fmt.Sprintf("/r%d", i)
		if i >= maxRoutes {
			want = otherRoute
		}
		if got != want {
			t.Fatalf("pattern %d: %q, want %q", i, got, want)
		}
	}
	if got := l.label("hostile", []byte("GET /r1"), nil); got != "/r1" {
		t.Errorf("a known pattern past the bound: %q", got)
	}
	if got := l.label("hello", []byte("GET /ping"), nil); got != "/ping" {
		t.Errorf("another plugin: %q", got)
	}
	if got := l.label("hostile", []byte("not a pattern"), nil); got != noRoute {
		t.Errorf("invalid pattern: %q", got)
	}
	if n := len(l.plugins["hostile"]); n != maxRoutes {
		t.Errorf("%d patterns kept, want %d", n, maxRoutes)
	}
}
