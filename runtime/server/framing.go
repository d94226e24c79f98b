package server

import "bytes"

// framing follows the framing of the requests in a connection's bytes, as
// they are read, the way fasthttp frames them, to find a chunked body's
// trailer section with a line ended by a bare LF (see lingerConn.Read):
// the end of each head, its Transfer-Encoding: chunked or Content-Length,
// a body of known length (skipped by its length, byte for byte unseen),
// and a chunked body's size lines, data (skipped likewise), CRLFs and
// trailer section. Its zero value is at the start of a connection.
//
// It agrees with fasthttp on every request greenroom serves: a head whose
// header lines all end with CRLF, with no folded line and no header name
// that is not a token (framingProblem), after empty lines fasthttp skips
// and a request line ended by CRLF or a bare LF; a Transfer-Encoding of
// chunked alone, and no Content-Length then (framingProblem); a
// Content-Length of digits (fasthttp refuses any other). Where a head or
// a chunked body is one fasthttp or greenroom refuses, answering 400 and
// closing the connection (a chunk-size line or a chunk's data ended by a
// bare LF: fasthttp checks both ends strictly), it may not agree, and it
// stops following the connection (framingOff).
type framing struct {
	state uint8
	// field is the header field whose name or value is being matched
	// (fieldTE, fieldCL), at how many bytes of it were matched.
	field uint8
	at    uint8
	// chunked and length are those of the head being read.
	chunked bool
	length  int64
	// n is what is left of a body of known length or of a chunk's data,
	// or a chunk's size as its line is read (digits its hex digits).
	n      int64
	digits int
}

const (
	framingHead          = iota // before a request line (empty lines skipped)
	framingHeadCR               // after a CR there
	framingRequestLine          // in a request line
	framingLine                 // at a header line's start (or the head's empty line)
	framingLineCR               // after a CR there
	framingOther                // in a header line of no interest
	framingName                 // matching a header line's name with field's
	framingValueOWS             // after field's colon
	framingValue                // matching field's value
	framingBody                 // in a body of known length
	framingSize                 // in a chunk-size line's hex digits
	framingSizeRest             // after them (extensions)
	framingSizeCR               // after its CR
	framingData                 // in a chunk's data
	framingDataCR               // after it, before its CR
	framingDataLF               // after that CR
	framingTrailer              // at a trailer line's start (or the section's empty line)
	framingTrailerCR            // after a CR there
	framingTrailerLine          // in a trailer line
	framingTrailerLineCR        // after a CR in it
	framingOff                  // not followed: fasthttp refuses what it read, and closes the connection
)

const (
	fieldTE = iota
	fieldCL
)

var (
	fieldNames = [2]string{"transfer-encoding:", "content-length:"}
	chunked    = "chunked"
)

// maxChunkSizeDigits is fasthttp's most hex digits in a chunk size on
// 64-bit platforms (7 on 32-bit ones: it refuses, and closes the
// connection, before the framing stops following).
const maxChunkSizeDigits = 15

// lower returns ch in lower case when it is an ASCII letter.
func lower(ch byte) byte {
	if 'A' <= ch && ch <= 'Z' {
		return ch + 'a' - 'A'
	}
	return ch
}

// follow goes on following the framing with b, the next bytes read, and
// returns the index in b of the first LF that ends a trailer line (or is
// the section's empty line) without a CR before it, or -1. The framing
// is not followed any further after such an LF.
func (f *framing) follow(b []byte) int {
	for i := 0; i < len(b); i++ {
		ch := b[i]
		switch f.state {
		case framingHead:
			switch ch {
			case '\r':
				f.state = framingHeadCR
			case '\n':
			default:
				f.state, f.chunked, f.length = framingRequestLine, false, 0
				i-- // the request line's first byte
			}
		case framingHeadCR:
			if ch == '\n' {
				f.state = framingHead
			} else {
				f.state, f.chunked, f.length = framingRequestLine, false, 0
				i--
			}
		case framingRequestLine, framingOther:
			j := bytes.IndexByte(b[i:], '\n')
			if j < 0 {
				return -1
			}
			i += j
			f.state = framingLine
		case framingLine, framingLineCR:
			switch {
			case ch == '\n':
				f.headEnd()
			case ch == '\r' && f.state == framingLine:
				f.state = framingLineCR
			case f.state == framingLine && (ch == 't' || ch == 'T'):
				f.state, f.field, f.at = framingName, fieldTE, 1
			case f.state == framingLine && (ch == 'c' || ch == 'C'):
				f.state, f.field, f.at = framingName, fieldCL, 1
			default:
				f.state = framingOther
				i--
			}
		case framingName:
			name := fieldNames[f.field]
			if lower(ch) != name[f.at] {
				f.state = framingOther
				i--
				continue
			}
			if f.at++; int(f.at) == len(name) {
				f.state, f.at = framingValueOWS, 0
				f.n, f.digits = 0, 0
			}
		case framingValueOWS:
			if ch == ' ' || ch == '\t' {
				continue
			}
			f.state = framingValue
			i--
		case framingValue:
			if f.field == fieldTE {
				if f.at < uint8(len(chunked)) && lower(ch) == chunked[f.at] {
					if f.at++; int(f.at) == len(chunked) {
						f.chunked = true
						f.state = framingOther
					}
					continue
				}
				// Not chunked: framingProblem refuses it.
				f.state = framingOther
				i--
				continue
			}
			if '0' <= ch && ch <= '9' {
				if f.n = f.n*10 + int64(ch-'0'); f.n > 1<<40 {
					// Over server.body_limit (at most 2 GiB): refused,
					// and the connection closed (bodyCheck).
					f.state = framingOff
					return -1
				}
				f.digits++
				continue
			}
			if f.digits == 0 {
				// No digits: fasthttp refuses it.
				f.state = framingOff
				return -1
			}
			f.length = f.n
			f.state = framingOther
			i--
		case framingBody, framingData:
			k := min(int64(len(b)-i), f.n)
			f.n -= k
			i += int(k) - 1
			if f.n == 0 {
				if f.state == framingBody {
					f.state = framingHead
				} else {
					f.state = framingDataCR
				}
			}
		case framingSize:
			if d := hexDigit(ch); d >= 0 {
				if f.digits++; f.digits > maxChunkSizeDigits {
					f.state = framingOff
					return -1
				}
				f.n = f.n<<4 | int64(d)
				continue
			}
			if f.digits == 0 {
				f.state = framingOff
				return -1
			}
			f.state = framingSizeRest
			i--
		case framingSizeRest:
			switch ch {
			case '\r':
				f.state = framingSizeCR
			case '\n':
				// fasthttp refuses it.
				f.state = framingOff
				return -1
			}
		case framingSizeCR:
			switch {
			case ch != '\n':
				f.state = framingOff
				return -1
			case f.n == 0:
				f.state = framingTrailer
			default:
				f.state = framingData
			}
		case framingDataCR, framingDataLF:
			if ch != "\r\n"[f.state-framingDataCR] {
				// fasthttp refuses it.
				f.state = framingOff
				return -1
			}
			if f.state++; f.state > framingDataLF {
				f.state, f.n, f.digits = framingSize, 0, 0
			}
		case framingTrailer:
			switch ch {
			case '\r':
				f.state = framingTrailerCR
			case '\n':
				f.state = framingOff
				return i
			default:
				f.state = framingTrailerLine
			}
		case framingTrailerCR:
			if ch == '\n' {
				f.state = framingHead // the body's end
			} else {
				f.state = framingTrailerLine
				i--
			}
		case framingTrailerLine, framingTrailerLineCR:
			switch {
			case ch == '\n' && f.state == framingTrailerLineCR:
				f.state = framingTrailer
			case ch == '\n':
				f.state = framingOff
				return i
			case ch == '\r':
				f.state = framingTrailerLineCR
			default:
				f.state = framingTrailerLine
			}
		case framingOff:
			return -1
		}
	}
	return -1
}

// headEnd moves on past a head's empty line, to its body.
func (f *framing) headEnd() {
	switch {
	case f.chunked:
		f.state, f.n, f.digits = framingSize, 0, 0
	case f.length > 0:
		f.state, f.n = framingBody, f.length
	default:
		f.state = framingHead
	}
}

// hexDigit returns the value of ch as a hex digit, or -1.
func hexDigit(ch byte) int {
	switch {
	case '0' <= ch && ch <= '9':
		return int(ch - '0')
	case 'a' <= ch && ch <= 'f':
		return int(ch-'a') + 10
	case 'A' <= ch && ch <= 'F':
		return int(ch-'A') + 10
	}
	return -1
}
