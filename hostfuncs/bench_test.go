package hostfuncs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Micro-benchmarks of the host's side of each wire format: what the runtime
// encodes for a guest and decodes from one, without wazero. Payloads are
// built by the encoders and test helpers of this package (as docs/abi.md
// describes them), and each is decoded once and checked before the loop, so
// that a codec that breaks fails the benchmark instead of timing an error
// path.
//
//	go test -run '^$' -bench . -benchmem ./hostfuncs/
//
// Compare runs with benchstat (-count 10 on each side).

// benchLoop runs op b.N times, timed, reporting allocations and size bytes
// per op as throughput; an error fails the benchmark. (The call through a
// closure adds a nanosecond or two per op.)
func benchLoop(b *testing.B, size int, op func() error) {
	b.Helper()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
}

// benchRequest is the request of a typical API call as the server builds
// it: the headers left after credentials and hop-by-hop headers are
// removed (plus Host), a signed-in user, a request id and a deadline.
func benchRequest(method string, body []byte) *Request {
	h := func(k, v string) [2][]byte { return [2][]byte{[]byte(k), []byte(v)} }
	return &Request{
		Method:     []byte(method),
		Path:       []byte("/todos/42"),
		RawQuery:   []byte("expand=owner&fields=title,done"),
		RequestID:  "01JDQ8V6Z4K3M9X2C7B5N1P0AE",
		RemoteAddr: "203.0.113.7:51234",
		Deadline:   time.Date(2026, 11, 29, 12, 0, 10, 0, time.UTC).UnixNano(),
		Principal: Principal{
			Type:    PrincipalUser,
			Subject: "user:default/jane.doe",
			Claims:  []byte(`{"sub":"user:default/jane.doe","ent":["user:default/jane.doe","group:default/team-a"]}`),
		},
		Headers: [][2][]byte{
			h("Host", "portal.example.com"),
			h("Accept", "application/json"),
			h("Accept-Encoding", "gzip, deflate, br"),
			h("Accept-Language", "en-US,en;q=0.9"),
			h("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"),
			h("Referer", "https://portal.example.com/catalog/default/component/todo"),
			h("X-Forwarded-For", "203.0.113.7"),
			h("X-Forwarded-Proto", "https"),
		},
		Body: body,
	}
}

// BenchmarkAppendRequest measures encoding the request envelope of one HTTP
// request into a reused buffer, as Plugin.Handle does for every call: a GET
// with 8 headers and a principal, and the same as a POST with a 16 KiB
// body.
func BenchmarkAppendRequest(b *testing.B) {
	for _, tc := range []struct {
		name string
		req  *Request
	}{
		{"get", benchRequest("GET", nil)},
		{"post-16KiB", benchRequest("POST", bytes.Repeat([]byte("0123456789abcdef"), 1<<10))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dst := AppendRequest(nil, tc.req)
			if want := len(tc.req.Body); !bytes.HasSuffix(dst, tc.req.Body) || binary.LittleEndian.Uint32(dst[len(dst)-want-4:]) != uint32(want) {
				b.Fatalf("envelope of %d bytes does not end with the %d-byte body", len(dst), want)
			}
			n := len(dst)
			benchLoop(b, n, func() error {
				if dst = AppendRequest(dst[:0], tc.req); len(dst) != n {
					return fmt.Errorf("envelope is %d bytes, then %d", n, len(dst))
				}
				return nil
			})
		})
	}
}

// appendResponse writes a response envelope as docs/abi.md describes it (a
// guest's job; the SDK's encoder is unexported): u32 status, u32 count,
// (bytes name, bytes value) × count, bytes body.
func appendResponse(dst []byte, status int, body []byte, headers ...string) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(status))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(headers)/2))
	for _, s := range headers {
		dst = appendString(dst, s)
	}
	return appendBytes(dst, body)
}

// BenchmarkDecodeResponse measures decoding a guest's response envelope
// (status, 3 headers, a 148-byte JSON body) with a reused header slice, as
// Plugin.Handle does for every call.
func BenchmarkDecodeResponse(b *testing.B) {
	body := []byte(`{"id":42,"title":"Write the micro-benchmarks","done":false,"owner":"user:default/jane.doe","created_at":"2026-11-29T12:00:00Z","tags":["perf","ci"]}`)
	env := appendResponse(nil, 200, body,
		"Content-Type", "application/json", "Cache-Control", "no-store", "Etag", `"5f3a9c"`)
	headers := make([][2][]byte, 0, 8)
	r, err := DecodeResponse(env, headers)
	if err != nil || r.Status != 200 || len(r.Headers) != 3 || !bytes.Equal(r.Body, body) {
		b.Fatalf("decoded %d %q %q, %v", r.Status, r.Headers, r.Body, err)
	}
	benchLoop(b, len(env), func() error {
		r, err = DecodeResponse(env, headers)
		headers = r.Headers
		return err
	})
}

// BenchmarkDecodeStatement measures decoding a db_exec/db_query request: an
// INSERT with 4 arguments (two strings, a bool, a time), into the
// Statement handed to the database provider.
func BenchmarkDecodeStatement(b *testing.B) {
	const sql = "INSERT INTO todos (owner, title, done, created_at) VALUES ($1, $2, $3, $4) RETURNING id"
	args := []any{"user:default/jane.doe", "Write the micro-benchmarks", false, time.Date(2026, 11, 29, 12, 0, 0, 123456789, time.UTC)}
	req := appendUint32(nil, 0)
	req = appendString(req, sql)
	req = appendUint32(req, uint32(len(args)))
	for _, v := range args {
		req = AppendValue(req, v)
	}
	st, err := DecodeStatement(req, 0)
	if err != nil || st.SQL != sql || len(st.Args) != len(args) || st.Args[3] != args[3] {
		b.Fatalf("decoded %+v, %v", st, err)
	}
	benchLoop(b, len(req), func() error {
		_, err := DecodeStatement(req, 0)
		return err
	})
}

// benchRows returns n rows of a todo table: id int64, owner and title
// string, done bool, created_at and updated_at time.Time, as a
// database/sql driver returns them.
func benchRows(n int) (names, types []string, rows [][]any) {
	names = []string{"id", "owner", "title", "done", "created_at", "updated_at"}
	types = []string{"INT8", "TEXT", "TEXT", "BOOL", "TIMESTAMPTZ", "TIMESTAMPTZ"}
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for i := range n {
		rows = append(rows, []any{int64(i + 1), "user:default/jane.doe", fmt.Sprintf("todo item number %d", i+1),
			i%3 == 0, t0.Add(time.Duration(i) * time.Minute), t0.Add(time.Duration(i) * time.Hour)})
	}
	return names, types, rows
}

// BenchmarkRowWriter measures encoding a db_query result of 100 rows of 6
// columns (int64, string, bool, time.Time) with a reused RowWriter, as
// db_query does with the rows a provider scans.
func BenchmarkRowWriter(b *testing.B) {
	names, types, rows := benchRows(100)
	var w RowWriter
	write := func() error {
		w.Reset(0)
		w.Columns(names, types)
		for _, r := range rows {
			if err := w.Row(r); err != nil {
				return err
			}
		}
		return nil
	}
	if err := write(); err != nil || w.Rows() != len(rows) || binary.LittleEndian.Uint32(w.Bytes()) != uint32(len(names)) {
		b.Fatalf("%d rows, %d bytes, %v", w.Rows(), w.Len(), err)
	}
	n := len(w.Bytes())
	benchLoop(b, n, func() error {
		if err := write(); err != nil {
			return err
		}
		if out := w.Bytes(); len(out) != n {
			return fmt.Errorf("result is %d bytes, then %d", n, len(out))
		}
		return nil
	})
}

// BenchmarkDecodeLogRecord measures decoding a log_write record (a message
// and 4 attributes: two strings, an int, a duration) into a reused
// LogRecord, as log_write does before the record reaches the logger.
func BenchmarkDecodeLogRecord(b *testing.B) {
	rec := newRec(LevelInfo, "request handled").
		kind(LogKindString, "method").str("GET").
		kind(LogKindInt64, "status").u64(200).
		kind(LogKindDuration, "took").u64(uint64(1500*time.Microsecond)).
		kind(LogKindString, "user").str("user:default/jane.doe").b
	var r LogRecord
	if err := DecodeLogRecord(rec, &r); err != nil || r.Message != "request handled" || len(r.Attrs) != 4 {
		b.Fatalf("decoded %+v, %v", r, err)
	}
	benchLoop(b, len(rec), func() error { return DecodeLogRecord(rec, &r) })
}

// BenchmarkDecodeURLRequest measures decoding a urlreader_call request: a
// conditional GET with 2 headers.
func BenchmarkDecodeURLRequest(b *testing.B) {
	const url = "https://raw.githubusercontent.com/example/catalog/main/catalog-info.yaml"
	env := encURLRequest(URLOpRead, url, "GET", uint64(time.Date(2026, 11, 29, 12, 0, 5, 0, time.UTC).UnixNano()),
		"If-None-Match", `"5f3a9c0e"`, "Accept", "application/yaml")
	var req URLRequest
	if err := DecodeURLRequest(env, &req); err != nil || req.URL != url || len(req.Header) != 2 {
		b.Fatalf("decoded %+v, %v", req, err)
	}
	benchLoop(b, len(env), func() error { return DecodeURLRequest(env, &req) })
}

// BenchmarkAppendURLResponse measures encoding a urlreader_call response (a
// 4 KiB YAML body, 3 headers, ETag and Last-Modified) into a reused buffer,
// as urlreader_call does into the result slot.
func BenchmarkAppendURLResponse(b *testing.B) {
	resp := &URLResponse{
		Status:       200,
		URL:          "https://raw.githubusercontent.com/example/catalog/main/catalog-info.yaml",
		ETag:         `"5f3a9c0e"`,
		LastModified: "Sun, 29 Nov 2026 11:58:00 GMT",
		Header: [][2]string{
			{"Content-Type", "text/plain; charset=utf-8"},
			{"Cache-Control", "max-age=300"},
			{"Etag", `"5f3a9c0e"`},
		},
		Body: []byte(strings.Repeat("apiVersion: backstage.io/v1alpha1\nkind: Component\n", 4<<10/50)),
	}
	dst := AppendURLResponse(nil, resp)
	if len(dst) != urlResponseSize(resp) {
		b.Fatalf("encoded %d bytes, size says %d", len(dst), urlResponseSize(resp))
	}
	n := len(dst)
	benchLoop(b, n, func() error {
		if dst = AppendURLResponse(dst[:0], resp); len(dst) != n {
			return fmt.Errorf("encoded %d bytes, then %d", n, len(dst))
		}
		return nil
	})
}
