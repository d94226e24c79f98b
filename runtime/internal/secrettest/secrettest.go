// Package secrettest helps tests check that no encoded form of a secret
// is left in a log: it decodes what is there rather than look for the
// forms the redactor knows.
package secrettest

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// EncodedRun returns a run of base64 (either alphabet, or a mix of both)
// or hex characters in text that decodes, from some offset, to bytes
// holding secret; "" when none does.
func EncodedRun(text string, secret []byte) string {
	isB64 := func(c byte) bool {
		return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("+/-_", c) >= 0
	}
	for i := 0; i < len(text); {
		if !isB64(text[i]) {
			i++
			continue
		}
		j := i
		for j < len(text) && isB64(text[j]) {
			j++
		}
		run := text[i:j]
		i = j
		std := strings.NewReplacer("-", "+", "_", "/").Replace(run)
		for off := 0; off < 4 && off < len(std); off++ {
			part := std[off:]
			// All of it that decodes: a last group of 2 or 3
			// characters holds 1 or 2 bytes; one of 1 holds none.
			if len(part)%4 == 1 {
				part = part[:len(part)-1]
			}
			if d, err := base64.RawStdEncoding.DecodeString(part); err == nil && bytes.Contains(d, secret) {
				return run
			}
		}
		for off := 0; off < 2 && off < len(run); off++ {
			part := run[off:]
			if d, err := hex.DecodeString(part[:len(part)/2*2]); err == nil && bytes.Contains(d, secret) {
				return run
			}
		}
	}
	return ""
}
