package config

import (
	"errors"
	"strings"
	"testing"
)

// fuzzSecret is every set variable's value in FuzzRead: no error message
// may show it.
const fuzzSecret = "zq7fuzzsecret9x"

// fuzzEnv sets every variable to fuzzSecret, but for names beginning with
// U (unset) and E (set, empty).
func fuzzEnv(name string) (string, bool) {
	switch {
	case strings.HasPrefix(name, "U"):
		return "", false
	case strings.HasPrefix(name, "E"):
		return "", true
	}
	return fuzzSecret, true
}

// FuzzRead: any config text, merged over another, gives a config or
// errors, never a panic; a config whenever there is no error; and no
// error shows a value from the environment.
func FuzzRead(f *testing.F) {
	for _, s := range []string{
		"[server]\nlisten = \"${LISTEN:-:7007}\"\n",
		"[database]\nclient = \"pg\"\nconnection = \"postgres://u:${DB_PW}@h/db\"\n",
		"[auth.jwt]\nissuer = \"${ISS}\"\naudience = \"a\"\njwks_url = \"https://${H}/jwks?x=${UNSET}\"\n",
		"[auth]\nstatic_tokens = [{token = \"${TOKEN}\", subject = \"s\"}]\n",
		"[plugins.p]\npath = \"p.wasm\"\nsecrets = [\"k\"]\n[plugins.p.config]\nk = \"${K}x\"\nn = [1, {a = \"${E}\"}]\n",
		"[plugins.p.limits]\nmemory = \"${MEM}\"\ntimeout = \"1${S}s\"\n",
		"a = $${X} ${A:-${B}} ${\n",
		"[[x]]\n[[x]]\ny = 1e999\nz = 0x7fffffffffffffff\n",
	} {
		f.Add(s, "[log]\nlevel = \"${LEVEL:-debug}\"\n")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if strings.Contains(a+b, fuzzSecret[:4]) {
			return // the text itself may show it
		}
		c, err := Read([]Source{{Name: "a.toml", Data: []byte(a)}, {Name: "b.toml", Data: []byte(b)}}, fuzzEnv)
		if err == nil {
			if c == nil {
				t.Fatal("no config and no error")
			}
			return
		}
		var es Errors
		if !errors.As(err, &es) {
			t.Fatalf("error %T, want Errors: %v", err, err)
		}
		if msg := strings.ToLower(err.Error()); strings.Contains(msg, fuzzSecret[:6]) || strings.Contains(msg, fuzzSecret[len(fuzzSecret)-6:]) {
			t.Fatalf("an error shows the environment's value:\n%s", err)
		}
	})
}
