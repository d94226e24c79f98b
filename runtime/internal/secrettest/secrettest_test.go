package secrettest

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

// EncodedRun finds a secret in base64 at each offset, in either
// alphabet, and in hex of either case, and nothing where it is not.
func TestEncodedRun(t *testing.T) {
	secret := []byte("Zq9-s3cr3t-Key/Val?")
	for _, prefix := range []string{"", "u:", "us:"} {
		in := append([]byte(prefix), secret...)
		for _, text := range []string{
			"Basic " + base64.StdEncoding.EncodeToString(in),
			"x=" + base64.RawURLEncoding.EncodeToString(in) + "&y",
			"h " + hex.EncodeToString(in),
			"H " + strings.ToUpper(hex.EncodeToString(in)),
		} {
			if EncodedRun(text, secret) == "" {
				t.Errorf("%q: not found", text)
			}
		}
	}
	for _, text := range []string{
		"Basic dXNlcjE6[REDACTED]w==",
		base64.StdEncoding.EncodeToString([]byte("Zq9-s3cr3t-Key/Val!")),
		hex.EncodeToString(secret[:len(secret)-1]),
	} {
		if run := EncodedRun(text, secret); run != "" {
			t.Errorf("%q: found %q", text, run)
		}
	}
}
