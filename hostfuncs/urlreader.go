package hostfuncs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/tetratelabs/wazero/api"
)

// CapabilityURLReader is the grant the URL reader function belongs to.
const CapabilityURLReader = "urlreader"

// URL reader operations: the first byte of a urlreader_call request.
// Backstage's UrlReaderService reads single URLs, trees (archives of a
// directory) and searches (globs); this runtime implements reading a URL,
// and the other two have their codes reserved.
const (
	URLOpRead   uint8 = 1 // read one URL (GET or HEAD)
	URLOpTree   uint8 = 2 // reserved: read a directory tree
	URLOpSearch uint8 = 3 // reserved: search by glob
	// URLOpReadHop reads one URL without following a redirect: one hop of
	// a chain the guest's client follows, its earlier hops (Via) named
	// after the headers.
	URLOpReadHop uint8 = 4
	// URLOpReadHopFlags is read_hop whose response ends with a u32 of
	// flags (URLFlagDecoded), and may be a 304 with its headers (not
	// ErrNotModified), which a guest that knows only read_hop would not
	// parse or expect.
	URLOpReadHopFlags uint8 = 5
)

// URLFlagDecoded, in read_hop_flags' response: the body arrived
// gzip-encoded and the runtime decoded it, dropping its Content-Encoding
// and Content-Length headers (Go's client tells its caller as much:
// Response.Uncompressed).
const URLFlagDecoded uint32 = 1

// MaxURLRequest bounds a urlreader_call request envelope.
const MaxURLRequest = 64 << 10

// URLRequest is a decoded urlreader_call request.
type URLRequest struct {
	Op     uint8
	URL    string
	Method string
	// Deadline is the guest's own deadline for this read, in Unix
	// nanoseconds, or 0. The host uses the earliest of it, the call's
	// deadline and reading.timeout.
	Deadline int64
	Header   [][2]string
	// Hop: operation read_hop (or read_hop_flags), a redirect comes back
	// as the response.
	Hop bool
	// Flags: operation read_hop_flags, the response ends with its flags,
	// and a 304 is a response (status 304, its headers), not
	// ErrNotModified.
	Flags bool
	// Via are a hop's earlier hops, the first URL the guest addressed
	// first (read_hop only).
	Via []string
}

// URLResponse is the result of a read, encoded into the result slot.
type URLResponse struct {
	Status       int
	URL          string // the final URL, after redirects
	ETag         string
	LastModified string // the raw Last-Modified header
	Header       [][2]string
	Body         []byte
	// Decoded: the body arrived gzip-encoded and was decoded
	// (URLFlagDecoded).
	Decoded bool
}

// ErrBadURLRequest is wrapped by DecodeURLRequest errors.
var ErrBadURLRequest = errors.New("malformed urlreader request")

// DecodeURLRequest parses a urlreader_call request envelope (docs/abi.md,
// "URL reader"). Unknown and reserved operations are refused with a message
// naming them.
func DecodeURLRequest(b []byte, req *URLRequest) error {
	d := logDecoder{b: b}
	req.Op = d.u8()
	if d.err != nil {
		return fmt.Errorf("%w: empty request", ErrBadURLRequest)
	}
	switch req.Op {
	case URLOpRead, URLOpReadHop, URLOpReadHopFlags:
	case URLOpTree:
		return fmt.Errorf("operation %d (read_tree) is reserved and not implemented by this runtime", req.Op)
	case URLOpSearch:
		return fmt.Errorf("operation %d (search) is reserved and not implemented by this runtime", req.Op)
	default:
		return fmt.Errorf("%w: unknown operation %d", ErrBadURLRequest, req.Op)
	}
	req.URL = string(d.bytes())
	req.Method = string(d.bytes())
	req.Deadline = int64(d.u64())
	n := d.u32()
	if d.err != nil {
		return urlDecodeErr(d.err)
	}
	if uint64(n) > uint64(len(b)-d.off)/8 {
		return fmt.Errorf("%w: header count %d exceeds the request", ErrBadURLRequest, n)
	}
	req.Header = make([][2]string, 0, n)
	for i := uint32(0); i < n; i++ {
		k := d.bytes()
		v := d.bytes()
		if d.err != nil {
			return urlDecodeErr(d.err)
		}
		req.Header = append(req.Header, [2]string{string(k), string(v)})
	}
	req.Flags = req.Op == URLOpReadHopFlags
	req.Hop, req.Via = req.Op == URLOpReadHop || req.Flags, nil
	if req.Hop {
		n := d.u32()
		if d.err != nil {
			return urlDecodeErr(d.err)
		}
		if uint64(n) > uint64(len(b)-d.off)/4 {
			return fmt.Errorf("%w: via count %d exceeds the request", ErrBadURLRequest, n)
		}
		for i := uint32(0); i < n; i++ {
			v := d.bytes()
			if d.err != nil {
				return urlDecodeErr(d.err)
			}
			req.Via = append(req.Via, string(v))
		}
	}
	if d.off != len(b) {
		return fmt.Errorf("%w: %d trailing bytes", ErrBadURLRequest, len(b)-d.off)
	}
	return nil
}

// urlDecodeErr is the error of logDecoder d.err for a urlreader request:
// what was wrong and where, without the log record's name.
func urlDecodeErr(err error) error {
	return fmt.Errorf("%w: %s", ErrBadURLRequest, strings.TrimPrefix(err.Error(), ErrBadLogRecord.Error()+": "))
}

// AppendURLResponse encodes resp as a urlreader_call response envelope onto
// dst (without flags: AppendURLFlags adds them for read_hop_flags).
func AppendURLResponse(dst []byte, resp *URLResponse) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(resp.Status))
	dst = appendString(dst, resp.URL)
	dst = appendString(dst, resp.ETag)
	dst = appendString(dst, resp.LastModified)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(resp.Header)))
	for _, h := range resp.Header {
		dst = appendString(dst, h[0])
		dst = appendString(dst, h[1])
	}
	return appendBytes(dst, resp.Body)
}

// AppendURLFlags appends the flags field of a read_hop_flags response
// for resp onto dst, an envelope AppendURLResponse wrote.
func AppendURLFlags(dst []byte, resp *URLResponse) []byte {
	var flags uint32
	if resp.Decoded {
		flags |= URLFlagDecoded
	}
	return binary.LittleEndian.AppendUint32(dst, flags)
}

// urlResponseSize is the encoded size of resp (without flags).
func urlResponseSize(resp *URLResponse) int {
	n := 4 + 4 + len(resp.URL) + 4 + len(resp.ETag) + 4 + len(resp.LastModified) + 4 + 4 + len(resp.Body)
	for _, h := range resp.Header {
		n += 8 + len(h[0]) + len(h[1])
	}
	return n
}

// urlreader_call(req_ptr, req_len i32) -> i32
//
// Performs the URL reader operation encoded in the req_len bytes at req_ptr
// (docs/abi.md, "URL reader") for a plugin granted "urlreader". Returns the
// length of the response envelope, which waits in the result slot. Errors:
// ErrDenied (capability not granted, or an allow rule, grant or address
// rule refused; the message names it), ErrInvalid (malformed request, bad
// URL, method other than GET or HEAD, reserved operation), ErrNotModified
// (a conditional read found the resource unchanged), ErrTooLarge (request
// over MaxURLRequest, body over reading.max_bytes), ErrTimeout (the read
// passed reading.timeout, the call's deadline or the guest's), ErrFailed
// (network, DNS or TLS failure, too many redirects). Traps if the request
// is outside guest memory.
func urlreaderCall(ctx context.Context, mod api.Module, stack []uint64) {
	const fn = "urlreader_call"
	in := instanceFrom(ctx, fn)
	b := guestBytes(mod, fn, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	// Without the capability, what the request holds does not matter:
	// every call is denied.
	if _, denied := in.Host.ReadURL(ctx, in, nil); denied != nil {
		stack[0] = api.EncodeI32(in.failWith(denied))
		return
	}
	if len(b) > MaxURLRequest {
		stack[0] = api.EncodeI32(in.Fail(ErrTooLarge, "urlreader request is %d bytes, over the limit of %d", len(b), MaxURLRequest))
		return
	}
	var req URLRequest
	if err := DecodeURLRequest(b, &req); err != nil {
		stack[0] = api.EncodeI32(in.Fail(ErrInvalid, "%v", err))
		return
	}
	rctx, release := in.Cancel.stoppable(ctx)
	resp, err := in.Host.ReadURL(rctx, in, &req)
	release()
	if err != nil {
		stack[0] = api.EncodeI32(in.failWith(err))
		return
	}
	size := urlResponseSize(resp)
	if req.Flags {
		size += 4
	}
	if size > math.MaxInt32 {
		stack[0] = api.EncodeI32(in.Fail(ErrTooLarge, "response of %d bytes does not fit the ABI", size))
		return
	}
	in.result = AppendURLResponse(slices.Grow(in.result[:0], size), resp)
	if req.Flags {
		in.result = AppendURLFlags(in.result, resp)
	}
	stack[0] = api.EncodeI32(int32(len(in.result)))
}
