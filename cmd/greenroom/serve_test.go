package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/greenroom-dev/greenroom/runtime/auth"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/logging"
)

func TestDevToken(t *testing.T) {
	cfg, err := config.Read([]config.Source{{Name: "config.toml", Data: []byte(`
[auth.tokens.dev]
token = "an-operator-token-0123456789abcdef01"
subject = "service:dev"
[plugins.hello]
path = "hello.wasm"
`)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := addDevToken(cfg)
	if err != nil {
		t.Fatal(err)
	}
	added := cfg.Auth.Tokens["dev-2"]
	if added == nil || added.Token != tok || !added.Admin || added.Type != "user" || len(added.Plugins) != 0 || len(tok) < config.MinTokenLength {
		t.Fatalf("dev token = %+v", added)
	}
	if cfg.Auth.Tokens["dev"].Subject != "service:dev" {
		t.Error("the operator's own token was replaced")
	}

	// It works, as an admin.
	a, err := auth.New(&cfg.Auth, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := a.Authenticate(context.Background(), []byte("Bearer "+tok)); err != nil || !p.Admin || !p.AllowsPlugin("hello") {
		t.Errorf("dev token: %+v %v", p, err)
	}

	// Printed once on its own writer; the log redacts it.
	var out, logBuf bytes.Buffer
	printDevToken(&out, tok, "127.0.0.1:7007", cfg)
	if strings.Count(out.String(), tok) != 2 || !strings.Contains(out.String(), "http://127.0.0.1:7007/.greenroom/plugins/v1/") {
		t.Errorf("printed:\n%s", out.String())
	}
	log, _, err := logging.New(&logBuf, "json", "info", cfg.Secrets())
	if err != nil {
		t.Fatal(err)
	}
	log.WithField("oops", tok).Info("a line that holds the token " + tok)
	if strings.Contains(logBuf.String(), tok) {
		t.Errorf("the log shows the dev token: %s", logBuf.String())
	}
}
