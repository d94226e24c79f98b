package logging

import (
	"fmt"
	"io"
	"testing"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

// BenchmarkPluginWrite is the host's share of one plugin log line: the
// level and rate checks, the fields, logrus's JSON formatting and
// redaction, to io.Discard.
//
//	go test -run '^$' -bench PluginWrite -benchmem ./runtime/logging/
func BenchmarkPluginWrite(b *testing.B) {
	log, _, err := New(io.Discard, "json", "info", []string{"a-secret-value", "another-secret"})
	if err != nil {
		b.Fatal(err)
	}
	pl, err := NewPluginLogger(log, "bench", PluginOptions{Rate: 1e12, Burst: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	rec := &hostfuncs.LogRecord{Level: 0, Message: "bench", Attrs: []hostfuncs.LogAttr{attr("i", int64(7)), attr("user", "jane")}}
	call := Call{RequestID: "0123456789ab-1"}
	b.ReportAllocs()
	for b.Loop() {
		pl.Write(call, rec)
	}
}

// BenchmarkRedactLine is the redaction of one formatted line of about
// 250 bytes that holds no secret (the common case), with 2 and with 12
// secrets configured, each in its many forms.
//
//	go test -run '^$' -bench RedactLine -benchmem ./runtime/logging/
func BenchmarkRedactLine(b *testing.B) {
	line := []byte(`{"level":"info","msg":"url read","plugin":"docs","request_id":"0123456789ab-1","status":200,"time":"2026-12-08T03:04:05.678Z","url":"https://api.example.com/v1/items?page=2\u0026per_page=50","bytes":18342,"duration_ms":41.2,"user":"jane@example.com"}` + "\n")
	for _, n := range []int{2, 12} {
		b.Run(fmt.Sprintf("secrets=%d", n), func(b *testing.B) {
			var secrets []string
			for i := range n {
				secrets = append(secrets, fmt.Sprintf("s3cr3t-%02d-Zq9xKeyVal", i))
			}
			_, r, err := New(io.Discard, "json", "info", secrets)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			for b.Loop() {
				r.Redact(line)
			}
		})
	}
}
