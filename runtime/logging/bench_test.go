package logging

import (
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
