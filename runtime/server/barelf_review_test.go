package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/internal/servertest"
)

// TestPipelinedWellFramedNeverBareLF: well-framed requests pipelined on one
// connection and written in two pieces, cut at every byte, are all
// answered as usual, never 400 bare LF (nor 408): requests without a
// body, HTTP/1.0 ones kept alive, Content-Length: 0, Expect:
// 100-continue with the body sent at once, bodies that begin with an
// upper-case word and a space and hold what would end a head, chunked
// (with trailer fields or not, with chunk extensions, with data that
// looks like a trailer section ended by a bare LF).
func TestPipelinedWellFramedNeverBareLF(t *testing.T) {
	in := start(t, fmt.Sprintf("[server]\nread_timeout = \"20s\"\n[plugins.hello]\npath = %q\npublic_routes = [\"/echo\"]\n", helloWasm))
	authz := "Authorization: Bearer " + servertest.Token + "\r\n"
	get := "GET " + liveness + " HTTP/1.1\r\nHost: x\r\n\r\n"
	stream := get +
		"GET " + liveness + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" +
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\n" + authz + "Content-Length: 0\r\n\r\n" +
		get +
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\n" + authz + "Expect: 100-continue\r\nContent-Length: 13\r\n\r\nHELLO w\n\nrld\n" +
		get +
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\n" + authz + "Content-Length: 10\r\n\r\nGET a\r\n\nb\n" +
		"POST " + liveness + " HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\nPUT x\n\n\n" +
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\n" + authz + "Transfer-Encoding: chunked\r\n\r\n7\r\nGET \n\n\n\r\n0\r\n\r\n" +
		get +
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\n" + authz + "Transfer-Encoding: chunked\r\n\r\n2\r\n\n\n\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n" +
		get +
		"POST /api/hello/echo HTTP/1.1\r\nHost: x\r\n" + authz + "Transfer-Encoding: chunked\r\n\r\n4;a=b\r\n0\r\n\n\r\n0;c\r\nX: 1\r\n\r\n" +
		get
	want := strings.Count(stream, " HTTP/1.")
	cuts := make([]int, 0, len(stream))
	for k := 1; k < len(stream); k++ {
		cuts = append(cuts, k)
	}
	cuts = append(cuts, -1) // byte by byte
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, k := range cuts {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := pipelineCut(in.URL, stream, k, want); err != nil {
				t.Errorf("cut at %d (%q|%q): %v", k, stream[max(0, k-20):max(0, k)], stream[max(0, k):min(len(stream), max(0, k)+20)], err)
			}
		}()
	}
	wg.Wait()
}

// pipelineCut writes stream on a new connection in two writes, cut at k
// (byte by byte when k < 0), and reads want answers (1xx aside), none of
// which may be 400, 408 or 5xx.
func pipelineCut(url, stream string, k, want int) error {
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	conn.(*net.TCPConn).SetNoDelay(true)
	if k < 0 {
		for i := range len(stream) {
			io.WriteString(conn, stream[i:i+1])
			time.Sleep(time.Millisecond)
		}
	} else {
		io.WriteString(conn, stream[:k])
		time.Sleep(15 * time.Millisecond)
		io.WriteString(conn, stream[k:])
	}
	br := bufio.NewReader(conn)
	for i := 0; i < want; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Errorf("answer %d: %w", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == 100 {
			i--
			continue
		}
		if resp.StatusCode == 400 || resp.StatusCode == 408 || resp.StatusCode >= 500 {
			return fmt.Errorf("answer %d: %d %s", i, resp.StatusCode, b)
		}
	}
	return nil
}
