package greenroom

import (
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf8"
)

// This file encodes log records (docs/abi.md, "Log records"). It does not
// use log/slog, so that the SDK's own records (a handler's panic, a plugin without a handler) do not
// pull slog into plugins that never log.

// Log levels are slog's.
const (
	levelInfo  = 0
	levelWarn  = 4
	levelError = 8
)

// maxLogRecord is the largest record the runtime accepts.
const maxLogRecord = 64 << 10

// Attribute kinds.
const (
	kindString   = 1
	kindInt64    = 2
	kindUint64   = 3
	kindFloat64  = 4
	kindBool     = 5
	kindDuration = 6
	kindGroup    = 7
	kindGroupEnd = 8
)

func appendU32(dst []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(dst, v) }
func appendU64(dst []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(dst, v) }

func appendStr(dst []byte, s string) []byte {
	dst = appendU32(dst, uint32(len(s)))
	return append(dst, s...)
}

// appendRecordHead starts a record: level and message.
func appendRecordHead(dst []byte, level int32, msg string) []byte {
	return appendStr(appendU32(dst, uint32(level)), msg)
}

func appendKey(dst []byte, kind byte, key string) []byte {
	if key == "" {
		key = "_" // the runtime requires a key
	}
	return appendStr(append(dst, kind), key)
}

func appendStringAttr(dst []byte, key, v string) []byte {
	return appendStr(appendKey(dst, kindString, key), v)
}

func appendInt64Attr(dst []byte, kind byte, key string, v int64) []byte {
	return appendU64(appendKey(dst, kind, key), uint64(v))
}

func appendUint64Attr(dst []byte, key string, v uint64) []byte {
	return appendU64(appendKey(dst, kindUint64, key), v)
}

func appendFloat64Attr(dst []byte, key string, v float64) []byte {
	return appendU64(appendKey(dst, kindFloat64, key), math.Float64bits(v))
}

func appendBoolAttr(dst []byte, key string, v bool) []byte {
	b := byte(0)
	if v {
		b = 1
	}
	return append(appendKey(dst, kindBool, key), b)
}

// dropString returns s, or, when n > 0 and s is longer than n bytes, a
// marker in its place that says how long it was. A string is dropped
// whole, never cut: the runtime redacts secrets whole, and a cut could
// leave the first part of one in the record, which no redaction would
// catch.
func dropString(s string, n int) string {
	if n <= 0 || len(s) <= n {
		return s
	}
	return droppedText(len(s))
}

// droppedText is what replaces a dropped string of n bytes.
func droppedText(n int) string {
	return "[" + strconv.Itoa(n) + " bytes dropped: record over 64 KiB]"
}

// truncate cuts s to at most n bytes at a rune boundary, marking the cut.
// Only for text that holds no secret (a stack trace); other strings are
// dropped whole (dropString).
func truncate(s string, n int) string {
	if n <= 0 || len(s) <= n {
		return s
	}
	n -= len("…")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
