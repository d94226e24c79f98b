//go:build !wasip1

package greenroom

import (
	"net/http"
	"testing"
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
