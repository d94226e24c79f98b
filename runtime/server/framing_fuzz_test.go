package server

import (
	"bytes"
	"strings"
	"testing"
)

// splitAt cuts s into reads at the offsets cuts gives (each byte of cuts
// a read's length, 0 an empty read), the rest in one.
func splitAt(s, cuts []byte) [][]byte {
	var reads [][]byte
	for _, c := range cuts {
		n := min(int(c), len(s))
		reads = append(reads, s[:n])
		s = s[n:]
	}
	return append(reads, s)
}

// FuzzNoteEmptyLines: whatever reads a connection's bytes arrive in,
// and whatever bufSize, lastEmpty is where the last empty line (LF LF or
// LF CR LF) begins, as a byte-by-byte search finds it among the bytes
// heldEmptyLine may look at (the last bufSize of each read, and the two
// bytes before a read no longer than bufSize).
func FuzzNoteEmptyLines(f *testing.F) {
	ok := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, s := range []string{
		ok + "GET / HTTP/1.1\nHost: x\n\n",
		ok + "GET / HTTP/1.1\r\nHost: x\n\r\nGET",
		"\n\n\n\r\n\r\r\n" + strings.Repeat("a\r\n", 300),
	} {
		f.Add([]byte(s), []byte{3, 14, 1, 1}, uint16(4096))
		f.Add([]byte(s), []byte{1, 1, 1, 1, 1, 1, 1, 1}, uint16(3))
	}
	f.Fuzz(func(t *testing.T, s, cuts []byte, bufSize uint16) {
		c := &lingerConn{bufSize: int(bufSize%8192) + 3, lastEmpty: -1}
		want, from, cut := int64(-1), 0, false
		for _, r := range splitAt(s, cuts) {
			cut = cut || len(r) > c.bufSize
			// The bytes a byte-by-byte search looks at: r's last
			// bufSize, and those before it when r is no longer.
			lo := from + max(0, len(r)-c.bufSize)
			if len(r) <= c.bufSize {
				lo = max(0, from-2)
			}
			for i := max(lo, from-2); i < from+len(r)-1; i++ {
				if i >= lo && s[i] == '\n' && (s[i+1] == '\n' || s[i+1] == '\r' && i+2 < from+len(r) && s[i+2] == '\n') {
					want = int64(i)
				}
			}
			c.noteEmptyLines(r)
			from += len(r)
		}
		if c.lastEmpty != want || c.total != int64(len(s)) {
			t.Fatalf("%q read as %v, bufSize %d: last empty line at %d of %d; want %d", s, cuts, c.bufSize, c.lastEmpty, c.total, want)
		}
		// The line before it ends where a byte-by-byte search finds
		// it, when no read was cut to its last bufSize bytes; never
		// later.
		wantLine := int64(0)
		for k := want - 1; k >= 0; k-- {
			if s[k] != '\r' && s[k] != '\n' {
				wantLine = k + 1
				break
			}
		}
		if want >= 0 && (c.lineBefore > wantLine || !cut && c.lineBefore != wantLine) {
			t.Fatalf("%q read as %v, bufSize %d: empty line at %d after a line ending at %d; want %d", s, cuts, c.bufSize, c.lastEmpty, c.lineBefore, wantLine)
		}
	})
}

// wellFormed builds, from a fuzzer's bytes, n bodiless requests with
// every line ended by CRLF: methods greenroom serves, and targets,
// header names and values made of the bytes each may hold. It returns
// the stream and each request's header lines (what framingProblem reads),
// and whether one request names both Transfer-Encoding and
// Content-Length.
func wellFormed(n uint8, b []byte) (stream []byte, heads [][]byte, teCL bool) {
	methods := []string{"GET", "HEAD", "DELETE", "OPTIONS", "POST", "PUT", "PATCH"}
	pick := func(keep func(byte) bool, def string) string {
		var s []byte
		for len(b) > 0 && b[0] != 0 {
			if keep(b[0]) {
				s = append(s, b[0])
			}
			b = b[1:]
		}
		if len(b) > 0 {
			b = b[1:]
		}
		if len(s) == 0 {
			return def
		}
		return string(s)
	}
	visible := func(c byte) bool { return c > ' ' && c < 0x7f }
	value := func(c byte) bool { return c == '\t' || c >= ' ' && c != 0x7f }
	token := func(c byte) bool { return isToken([]byte{c}) }
	var out bytes.Buffer
	for i := 0; i < int(n%8)+1; i++ {
		m := methods[0]
		if len(b) > 0 {
			m, b = methods[int(b[0])%len(methods)], b[1:]
		}
		out.WriteString(m + " /" + pick(visible, "") + " HTTP/1.1\r\n")
		var head bytes.Buffer
		te, cl := false, false
		for h := 0; len(b) > 0 && h < 4; h++ {
			name := pick(token, "X")
			te = te || strings.EqualFold(name, "transfer-encoding")
			cl = cl || strings.EqualFold(name, "content-length")
			head.WriteString(name + ": " + strings.TrimSpace(pick(value, "")) + "\r\n")
		}
		head.WriteString("\r\n")
		out.Write(head.Bytes())
		heads = append(heads, head.Bytes())
		teCL = teCL || te && cl
	}
	return out.Bytes(), heads, teCL
}

// FuzzWellFormedHeads: a stream of well-formed pipelined requests
// without bodies, in any reads, is never taken for a head ended by a bare
// LF: wherever a read ends inside a head, the bytes of it fasthttp holds
// then (those since the head before ended, which it has taken) hold no
// empty line heldEmptyLine refuses; and framingProblem finds nothing in
// their header lines.
func FuzzWellFormedHeads(f *testing.F) {
	f.Add(uint8(3), []byte("\x01api/hello?x=1\x00Host\x00127.0.0.1:7007\x00Accept\x00*/*\x00"), []byte{5, 20, 1, 1, 2})
	f.Add(uint8(1), []byte("\x02\x00\x00\x00"), []byte{0, 1, 0, 30})
	f.Fuzz(func(t *testing.T, n uint8, b, cuts []byte) {
		s, heads, teCL := wellFormed(n, b)
		// Where each request begins (each CRLF CRLF ends one), and
		// the end.
		starts := []int{0}
		for at := 0; ; {
			i := bytes.Index(s[at:], []byte("\r\n\r\n"))
			if i < 0 {
				break
			}
			at += i + 4
			starts = append(starts, at)
		}
		if len(starts) != len(heads)+1 || starts[len(heads)] != len(s) {
			t.Fatalf("%q: %d requests ending at %v, want %d", s, len(starts)-1, starts, len(heads))
		}
		c := &lingerConn{bufSize: len(s) + 1, lastEmpty: -1}
		c.reading.Store(true)
		read := 0
		for _, r := range splitAt(s, cuts) {
			c.noteEmptyLines(r)
			read += len(r)
			for i := 0; i+1 < len(starts); i++ {
				if read <= starts[i] || read >= starts[i+1] {
					continue
				}
				held := read - starts[i]
				if c.heldEmptyLine(make([]byte, c.bufSize-held)) {
					t.Fatalf("%q read as %v: refused holding %q", s, cuts, s[starts[i]:read])
				}
			}
		}
		if teCL {
			return
		}
		for _, h := range heads {
			if p := framingProblem(h); p != "" {
				t.Fatalf("%q: framingProblem %q", h, p)
			}
		}
	})
}

// FuzzFramingProblem: framingProblem reads any header bytes without
// failing, and finds nothing in header lines a client sends well formed
// (CRLF ends, token names, no fold) but for Transfer-Encoding with
// Content-Length.
func FuzzFramingProblem(f *testing.F) {
	for _, s := range []string{
		"Host: x\r\nContent-Length: 3\r\n\r\n",
		"Host: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
		"X: a\nTransfer-Encoding: chunked\r\n\r\n",
		"X: a\r\n Transfer-Encoding: chunked\r\n\r\n",
		"X A: b\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		p := framingProblem(raw)
		if p != "" || bytes.Contains(raw, []byte("\n")) {
			return
		}
		// One line, no LF: only a name that is not a token is a problem.
		k, _, ok := bytes.Cut(raw, []byte(":"))
		if ok && len(raw) > 0 && raw[0] != ' ' && raw[0] != '\t' && !isToken(k) {
			t.Fatalf("%q: no problem found in a name that is not a token", raw)
		}
	})
}

// FuzzLastEmptyLine: lastEmptyLine, which searches 8 bytes at a time and
// skips 512 bytes without an LF at once, finds the LF that begins the
// last empty line (LF LF or LF CR LF) where a byte-by-byte search from
// the end does: at 0 or at the end, across every place in 8 bytes and the
// 512-byte steps, after long runs of LFs, CRs or other bytes. s is
// repeated n%1100 times after a prefix of pad%600 bytes ('x', or LFs
// with lfs odd), so that short inputs land anywhere in long ones.
func FuzzLastEmptyLine(f *testing.F) {
	ref := func(b []byte) int {
		for i := len(b) - 2; i >= 0; i-- {
			if b[i] == '\n' && (b[i+1] == '\n' || b[i+1] == '\r' && i+2 < len(b) && b[i+2] == '\n') {
				return i
			}
		}
		return -1
	}
	for _, s := range []string{
		"", "\n", "\n\n", "\n\r\n", "\r\n\r\n", "\n\r\r\n", "\n\r", "\r\n",
		"a\n\r\nb\n\nc", "\n\n\n\r\n\r\r\n", "a\nb\rc\r\nd", "\na", "a\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\n\r\nGET",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\r\nx",
	} {
		for _, pad := range []uint16{0, 1, 5, 6, 7, 8, 9, 14, 15, 16, 501, 502, 503, 504, 505, 506, 507, 508, 509, 510, 511, 512, 513, 1022, 1024} {
			f.Add([]byte(s), pad, uint16(0), false)
		}
		f.Add([]byte(s), uint16(0), uint16(1000), false)
		f.Add([]byte(s), uint16(3), uint16(1000), true)
	}
	// Long runs: of LFs, of CRs, of text lines, of CRLFs.
	for _, s := range []string{"\n", "\r", "a\n", "ABCDEFGHIJKLMNO\n", "a,b\r\n", "\n\r\r"} {
		for _, n := range []uint16{1, 63, 64, 65, 300, 1023} {
			f.Add([]byte(s), uint16(0), n, false)
			f.Add([]byte(s), uint16(509), n, true)
		}
	}
	f.Fuzz(func(t *testing.T, s []byte, pad, n uint16, lfs bool) {
		fill := byte('x')
		if lfs {
			fill = '\n'
		}
		b := bytes.Repeat([]byte{fill}, int(pad%600))
		if n%1100 == 0 || len(s) == 0 {
			b = append(b, s...)
		} else {
			// No more than 128 KiB of repeats (millions of bytes
			// hold the fuzzer up).
			b = append(b, bytes.Repeat(s, min(int(n%1100), 1+(128<<10)/len(s)))...)
		}
		// The 8 bytes after b, if any, are not b's.
		c := append(b[:len(b):len(b)], "\n\n\n\r\n\r\n"...)[:len(b)]
		if got, want := lastEmptyLine(c), ref(b); got != want {
			t.Fatalf("%d bytes (pad %d, then %q × %d): last empty line at %d; want %d", len(b), pad%600, s, n%1100, got, want)
		}
	})
}
