package hostfuncs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/textproto"
	"strings"
)

// Principal types in the request envelope.
const (
	PrincipalNone    uint8 = 0
	PrincipalUser    uint8 = 1
	PrincipalService uint8 = 2
)

// Request is what the runtime sends a guest for one HTTP request. Byte
// slices are borrowed; Encode copies them into the envelope.
type Request struct {
	Method     []byte
	Path       []byte // relative to the plugin's mount, still escaped
	RawQuery   []byte
	RequestID  string
	RemoteAddr string
	Deadline   int64 // Unix nanoseconds, 0 for none
	Principal  Principal
	Headers    [][2][]byte
	Body       []byte
}

// Principal is who is calling, as the guest may see it.
type Principal struct {
	Type    uint8
	Subject string
	Claims  []byte // JSON object, or empty
}

// CanonicalHeaderName returns k in canonical MIME form ("content-type" →
// "Content-Type"), the form request envelopes carry header names in. It
// returns k itself when it is already canonical or is not a valid header
// name (which is then left as it is, like net/textproto does).
func CanonicalHeaderName(k []byte) []byte {
	upper := true
	for _, c := range k {
		if !isTokenByte(c) {
			return k
		}
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return []byte(textproto.CanonicalMIMEHeaderKey(string(k)))
		}
		upper = c == '-'
	}
	return k
}

func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// AppendRequest encodes req as a request envelope (docs/abi.md) onto dst.
// Header names must be canonical (CanonicalHeaderName).
func AppendRequest(dst []byte, req *Request) []byte {
	dst = appendBytes(dst, req.Method)
	dst = appendBytes(dst, req.Path)
	dst = appendBytes(dst, req.RawQuery)
	dst = appendString(dst, req.RequestID)
	dst = appendString(dst, req.RemoteAddr)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(req.Deadline))
	dst = append(dst, req.Principal.Type)
	dst = appendString(dst, req.Principal.Subject)
	dst = appendBytes(dst, req.Principal.Claims)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(req.Headers)))
	for _, h := range req.Headers {
		dst = appendBytes(dst, h[0])
		dst = appendBytes(dst, h[1])
	}
	return appendBytes(dst, req.Body)
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// Response is a decoded response envelope. Its slices alias the envelope.
type Response struct {
	Status  int
	Headers [][2][]byte
	Body    []byte
}

// MaxResponseHeaders is the most headers a response envelope may hold,
// pseudo-headers (:route) included: 1022 a Go handler may set (its SDK
// answers more with a 502 of its own, naming the handler's count), and
// room for those its SDK adds (a sniffed Content-Type, :route), so that a
// Go handler's 1000th header does not fail its response (an audit).
const MaxResponseHeaders = 1024

// ErrBadResponse is wrapped by DecodeResponse errors.
var ErrBadResponse = errors.New("malformed response envelope")

// DecodeResponse parses a response envelope written by a guest. The guest is
// not trusted: every length is checked against what is left, the header
// count against what the envelope can hold, and the status against 200-599
// (an informational 1xx is not a response: sent as one, it would leave the
// connection waiting for the real answer, or switch its protocol; and
// 600-999, which net/http lets a handler write, are not HTTP status codes:
// RFC 9110, 15, has clients treat them as errors of their own).
// headers is reused when it has room.
func DecodeResponse(b []byte, headers [][2][]byte) (Response, error) {
	var r Response
	d := decoder{b: b}
	status := d.u32()
	n := d.u32()
	if d.err != nil {
		return r, d.err
	}
	if status < 200 || status > 599 {
		return r, fmt.Errorf("%w: status %d out of range 200-599", ErrBadResponse, status)
	}
	if uint64(n) > uint64(len(b)-d.off)/8 {
		return r, fmt.Errorf("%w: header count %d exceeds the envelope", ErrBadResponse, n)
	}
	// Each header costs the server a copy and some bookkeeping: a few
	// million empty ones made it hold hundreds of MiB for one response.
	if n > MaxResponseHeaders {
		return r, fmt.Errorf("%w: %d headers, more than %d", ErrBadResponse, n, MaxResponseHeaders)
	}
	headers = headers[:0]
	for i := uint32(0); i < n; i++ {
		k := d.bytes()
		v := d.bytes()
		if d.err != nil {
			return r, d.err
		}
		headers = append(headers, [2][]byte{k, v})
	}
	body := d.bytes()
	if d.err != nil {
		return r, d.err
	}
	if d.off != len(b) {
		return r, fmt.Errorf("%w: %d trailing bytes", ErrBadResponse, len(b)-d.off)
	}
	r.Status, r.Headers, r.Body = int(status), headers, body
	return r, nil
}

type decoder struct {
	b   []byte
	off int
	err error
	// base is wrapped by decoding errors; nil means ErrBadResponse.
	base error
}

func (d *decoder) fail(format string, args ...any) {
	base := d.base
	if base == nil {
		base = ErrBadResponse
	}
	d.err = fmt.Errorf("%w: "+format, append([]any{base}, args...)...)
}

func (d *decoder) u32() uint32 {
	if d.err != nil {
		return 0
	}
	if len(d.b)-d.off < 4 {
		d.fail("truncated at byte %d", d.off)
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v
}

func (d *decoder) bytes() []byte {
	n := d.u32()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.b)-d.off) {
		d.fail("field of %d bytes at byte %d overruns the buffer", n, d.off)
		return nil
	}
	v := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return v
}
