package logging

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

// DefaultDropReport is how often a plugin's dropped log lines are reported,
// at most: one summary line per interval, only when something was dropped.
const DefaultDropReport = time.Second

// PluginOptions bound what one plugin may log.
type PluginOptions struct {
	// Level is the plugin's level floor ("debug", "info", "warn",
	// "error"); "" for none. It only raises the runtime's log.level.
	Level string
	// Rate is how many tokens per second the plugin may spend on average,
	// Burst how many at once (a token bucket). A line costs one token per
	// TokenBytes started (LineCost).
	Rate  float64
	Burst int
	// RateSecret, BurstSecret: Rate, Burst came from the environment (a
	// config secret): the dropped-lines summary does not quote them
	// (a short one, "200", is too short for the log's redaction).
	RateSecret, BurstSecret bool
	// ReportEvery is the interval of the dropped-lines summary;
	// DefaultDropReport when 0.
	ReportEvery time.Duration
}

// PluginLogger writes what one plugin logs — its structured records and the
// lines it prints on stdout and stderr — tagged with the plugin and the
// call, under its level floor and rate limit. Lines over the rate limit are
// counted and reported in one summary line per interval.
//
// A PluginLogger costs nothing until the plugin logs: no goroutine runs, and
// the summary timer is armed only when a line is dropped.
type PluginLogger struct {
	log     *logrus.Logger
	redact  *Redactor
	id      string
	floor   atomic.Int32
	limiter *rate.Limiter
	every   time.Duration
	limits  atomic.Pointer[string] // "log_rate 100/s, log_burst 200", for the summary

	dropped atomic.Int64
	total   atomic.Int64 // every line ever dropped, for metrics
	pending atomic.Bool  // a summary is scheduled
	mu      sync.Mutex
	timer   *time.Timer
	closed  bool
}

// slogLevels maps config level names to the slog level of their floor.
var slogLevels = map[string]int32{
	"debug": math.MinInt32,
	"info":  hostfuncs.LevelInfo,
	"warn":  hostfuncs.LevelWarn,
	"error": hostfuncs.LevelError,
}

// NewPluginLogger returns the logger of plugin id, writing to log.
func NewPluginLogger(log *logrus.Logger, id string, o PluginOptions) (*PluginLogger, error) {
	floor, err := checkOptions(id, o)
	if err != nil {
		return nil, err
	}
	if o.ReportEvery <= 0 {
		o.ReportEvery = DefaultDropReport
	}
	l := &PluginLogger{
		log:     log,
		redact:  RedactorOf(log),
		id:      id,
		limiter: rate.NewLimiter(rate.Limit(o.Rate), o.Burst),
		every:   o.ReportEvery,
	}
	l.floor.Store(floor)
	l.limits.Store(limitsText(o))
	return l, nil
}

// Update applies new settings (a config reload): the level floor at once,
// the new rate and burst to the same bucket, so that what the plugin
// already spent still counts. ReportEvery is kept.
func (l *PluginLogger) Update(o PluginOptions) error {
	floor, err := checkOptions(l.id, o)
	if err != nil {
		return err
	}
	l.floor.Store(floor)
	l.limiter.SetLimit(rate.Limit(o.Rate))
	l.limiter.SetBurst(o.Burst)
	l.limits.Store(limitsText(o))
	return nil
}

// Check reports whether Update would accept o.
func (l *PluginLogger) Check(o PluginOptions) error {
	_, err := checkOptions(l.id, o)
	return err
}

// checkOptions validates o and returns the slog level of its floor.
func checkOptions(id string, o PluginOptions) (int32, error) {
	floor := int32(math.MinInt32)
	if o.Level != "" {
		f, ok := slogLevels[o.Level]
		if !ok {
			return 0, fmt.Errorf("plugins.%s.log_level: unknown level %q", id, o.Level)
		}
		floor = f
	}
	if o.Rate <= 0 || o.Burst < 1 {
		return 0, fmt.Errorf("plugins.%s.limits: log_rate must be more than 0 and log_burst at least 1", id)
	}
	return floor, nil
}

func limitsText(o PluginOptions) *string {
	rate, burst := fmt.Sprintf("%g/s", o.Rate), strconv.Itoa(o.Burst)
	if o.RateSecret {
		rate = Redacted
	}
	if o.BurstSecret {
		burst = Redacted
	}
	s := "log_rate " + rate + ", log_burst " + burst
	return &s
}

// LogrusLevel maps an slog level to the logrus level its lines are written
// at: below info is debug, 0-3 info, 4-7 warn, 8 and above error, which is
// the level slog names it after ("INFO+3" is info, "DEBUG-4" debug; the
// name itself is kept in SlogLevelKey). Plugin lines are never written at
// logrus's fatal or panic levels.
func LogrusLevel(level int32) logrus.Level {
	switch {
	case level < hostfuncs.LevelInfo:
		return logrus.DebugLevel
	case level < hostfuncs.LevelWarn:
		return logrus.InfoLevel
	case level < hostfuncs.LevelError:
		return logrus.WarnLevel
	}
	return logrus.ErrorLevel
}

// SlogLevelKey is the field that keeps the slog name of a record's level
// when it is none of slog's four named levels (slog.Level(2), which slog
// writes "INFO+2"; LevelDebug-4, "DEBUG-4"): the line's own level is the
// host's that name is relative to (LogrusLevel), and this field says
// which of the plugin's levels it was.
const SlogLevelKey = "slog_level"

// slogLevelName is the name slog gives level when it is not one of its
// four named levels, "" for those.
func slogLevelName(level int32) string {
	switch level {
	case hostfuncs.LevelDebug, hostfuncs.LevelInfo, hostfuncs.LevelWarn, hostfuncs.LevelError:
		return ""
	}
	return slog.Level(level).String()
}

// Enabled reports whether a line at level (an slog level) passes the
// plugin's floor and the runtime's log level.
func (l *PluginLogger) Enabled(level int32) bool {
	return level >= l.floor.Load() && l.log.IsLevelEnabled(LogrusLevel(level))
}

// reserved are the fields the runtime sets on every plugin line, and the
// field that marks its audit lines, the name of a level slog has no name
// for (SlogLevelKey), and logrus's own (level, msg, time), in any case
// ("Plugin", "REQUEST_ID": a log pipeline or consumer that matches keys
// case-insensitively, as Go's encoding/json does, would take them for
// the runtime's); a plugin attribute with one of these keys is written as
// "fields.<key>" (as logrus does for time, msg and level) so that a
// plugin cannot forge them: a line's plugin, request and task are the
// runtime's, and a line with a top-level "audit" field is always the
// runtime's. Every other key is the plugin's to use, the common ones of
// HTTP work (status, path, method, bytes, duration) included.
func reserved(k string) bool {
	switch len(k) {
	case 3, 4, 5, 6, 10: // the lengths of reservedKeys
	default:
		return false
	}
	for _, r := range reservedKeys {
		if len(k) == len(r) && strings.EqualFold(k, r) {
			return true
		}
	}
	return false
}

var reservedKeys = [...]string{"plugin", "request_id", "task", "stream", "phase", "audit", SlogLevelKey, "level", "msg", "time"}

// Call identifies what a plugin was doing when it logged: serving a request,
// running a task, or initialising an instance (its init functions).
type Call struct {
	RequestID string
	Task      string
	Init      bool
}

// CallOf returns the Call in progress on in.
func CallOf(in *hostfuncs.Instance) Call {
	return Call{RequestID: in.RequestID, Task: in.Task, Init: in.Initializing}
}

// Write writes rec for call, or drops it. It returns hostfuncs.LogWritten,
// LogFiltered or LogDropped.
func (l *PluginLogger) Write(call Call, rec *hostfuncs.LogRecord) int32 {
	if !l.Enabled(rec.Level) {
		return hostfuncs.LogFiltered
	}
	if !l.AllowBytes(recordSize(rec)) {
		return hostfuncs.LogDropped
	}
	return l.WriteAllowed(call, rec, recordSize(rec))
}

// TokenBytes is how much of a line one token of the rate limit pays for.
const TokenBytes = 4 << 10

// LineCost is how many tokens a line of size bytes takes from a bucket
// of burst tokens: one per TokenBytes started (one for an empty line),
// so that the limit bounds bytes as well as lines (an audit's plugin
// wrote 528 MB in 20 s of 64 KiB records at one token each), and at
// most burst, so that a record larger than the bucket still passes once
// the bucket is full.
func LineCost(size, burst int) int {
	return max(min((size+TokenBytes-1)/TokenBytes, burst), 1)
}

// Allow takes one short line (the runtime's own about the plugin) from
// the plugin's rate limit: AllowBytes(0).
func (l *PluginLogger) Allow() bool { return l.AllowBytes(0) }

// AllowBytes takes a line of size bytes (LineCost) from the plugin's rate
// limit. Over the limit it counts one dropped line (reported in the next
// summary, and in DroppedTotal) and returns false. log_write asks, with
// the record's encoded size, before it decodes a record; a printed line
// before it is copied; and the runtime before it writes a line of its
// own about the plugin that counts against the plugin's limit.
func (l *PluginLogger) AllowBytes(size int) bool {
	if l.limiter.AllowN(time.Now(), LineCost(size, l.limiter.Burst())) {
		return true
	}
	l.drop()
	return false
}

// recordSize approximates what rec writes: its message, and its
// attributes' keys and values (8 bytes for a number).
func recordSize(rec *hostfuncs.LogRecord) int {
	n := len(rec.Message)
	for _, a := range rec.Attrs {
		n += len(a.Key)
		if s, ok := a.Value.(string); ok {
			n += len(s)
		} else {
			n += 8
		}
	}
	return n
}

// WriteAllowed writes rec for call, a line that passed Enabled and
// AllowBytes(charged) already, and takes from the rate limit what the
// line wrote past charged (chargeWritten). It returns
// hostfuncs.LogWritten.
func (l *PluginLogger) WriteAllowed(call Call, rec *hostfuncs.LogRecord, charged int) int32 {
	fields := make(logrus.Fields, len(rec.Attrs)+3)
	var dups map[string]int // a key written again: the next suffix to try
	for _, a := range rec.Attrs {
		k := l.key(a.Key)
		if _, taken := fields[k]; taken {
			// slog's handlers write a repeated key (and every "!BADKEY")
			// each time; a field map keeps one value per key, so a
			// repeat gets "#2", "#3", ...: no value is lost.
			if dups == nil {
				dups = make(map[string]int)
			}
			base := k
			for n := max(dups[base], 2); ; n++ {
				k = base + "#" + strconv.Itoa(n)
				if _, taken := fields[k]; !taken {
					dups[base] = n + 1
					break
				}
			}
		}
		fields[k] = value(a.Value)
	}
	fields["plugin"] = l.id
	if call.RequestID != "" {
		fields["request_id"] = call.RequestID
	}
	if call.Task != "" {
		fields["task"] = call.Task
	}
	if call.Init {
		fields["phase"] = "init"
	}
	if rec.Stream != "" {
		fields["stream"] = rec.Stream
	} else if name := slogLevelName(rec.Level); name != "" {
		fields[SlogLevelKey] = name
	}
	// One allocation for the entry and the size its Redactor reports
	// (logrus.NewEntry allocated a Data map this replaces).
	pe := &pluginEntry{size: lineSize{Context: context.Background()}}
	e := &pe.e
	e.Logger, e.Data, e.Context = l.log, fields, &pe.size
	e.Log(LogrusLevel(rec.Level), rec.Message)
	l.chargeWritten(charged, pe.size.n)
	return hostfuncs.LogWritten
}

// pluginEntry is a plugin line's entry and the size of what it wrote.
type pluginEntry struct {
	e    logrus.Entry
	size lineSize
}

// lineSize is the context of a plugin line's entry: the Redactor that
// formats it (logrus passes the entry's context on to the formatter)
// sets n to the bytes of the line it wrote.
type lineSize struct {
	context.Context
	n int
}

// chargeWritten takes from the rate limit what a line wrote past what it
// was charged for (charged bytes: LineCost): a line
// is written escaped (a control byte as \u0001 in JSON, six bytes; an
// invalid UTF-8 byte as \ufffd; "<" as \u003c; a format character as
// one or two \u escapes; \x01 in text), with its secrets as [REDACTED]
// and the runtime's fields, so that 4000 control bytes charged one token
// wrote 24 KB, and the limit let six times its bytes through. The
// difference is taken as a debt (the bucket may go below zero), which
// the plugin's next lines wait out: what reaches the log is bounded by
// what is written, within a burst of at most one line more. A line
// whose size the formatter did not report (a logger without this
// package's Redactor) is charged its record's size alone.
func (l *PluginLogger) chargeWritten(charged, written int) {
	burst := l.limiter.Burst()
	if extra := LineCost(written, burst) - LineCost(charged, burst); extra > 0 {
		l.limiter.ReserveN(time.Now(), extra)
	}
}

// key makes a plugin's attribute key safe to write: the text format writes
// keys unquoted, so control characters, spaces, '=' and '"' (which could
// forge fields or lines) become '_'; and a key is written in ASCII, each
// character outside it as its \u escape ("\u0440lugin" for a Cyrillic
// 'р'), so that no look-alike letter (Cyrillic, Greek, fullwidth) nor
// an invisible one (a zero-width space) makes a key read as one of the
// runtime's fields. A secret in the key is redacted before its
// characters are replaced, so that the replacement cannot hide it from
// the redactor.
func (l *PluginLogger) key(k string) string {
	if reserved(k) {
		return "fields." + k
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c == '=' || c == '"' || c >= 0x7f {
			return l.sanitize(k)
		}
	}
	return k
}

func (l *PluginLogger) sanitize(k string) string {
	if l.redact != nil {
		k = string(l.redact.Redact([]byte(k)))
	}
	var b strings.Builder
	for i, r := range k {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(k[i:], "\uFFFD"), r <= ' ', r == '=', r == '"', r == 0x7f:
			b.WriteByte('_')
		case r < utf8.RuneSelf:
			b.WriteByte(byte(r))
		case r <= 0xffff:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			fmt.Fprintf(&b, "\\U%08x", r)
		}
	}
	if reserved(b.String()) {
		return "fields." + b.String()
	}
	return b.String()
}

// value makes a decoded attribute value writable by both formatters: JSON
// cannot encode NaN or infinities, so those become strings.
func value(v any) any {
	if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return fmt.Sprint(f)
	}
	return v
}

// drop counts a dropped line and makes sure a summary is scheduled.
func (l *PluginLogger) drop() {
	l.dropped.Add(1)
	l.total.Add(1)
	if !l.pending.CompareAndSwap(false, true) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.timer = time.AfterFunc(l.every, l.report)
}

// report writes the summary of the interval that just ended. A drop that
// races with it is either counted here or schedules the next summary.
func (l *PluginLogger) report() {
	l.mu.Lock()
	l.timer = nil
	l.mu.Unlock()
	l.pending.Store(false)
	l.flush()
}

func (l *PluginLogger) flush() {
	n := l.dropped.Swap(0)
	if n == 0 {
		return
	}
	// The summary is the runtime's line, not the plugin's: it is not rate
	// limited, and it is written at warn, or at error when the runtime's
	// level would hide warn, so that drops are never silent.
	level := logrus.WarnLevel
	if !l.log.IsLevelEnabled(level) {
		level = logrus.ErrorLevel
	}
	l.log.WithFields(logrus.Fields{"plugin": l.id, "dropped": n}).
		Logf(level, "dropped %d log lines over the plugin's rate limit (%s)", n, *l.limits.Load())
}

// Dropped returns how many lines were dropped and not yet reported.
func (l *PluginLogger) Dropped() int64 { return l.dropped.Load() }

// DroppedTotal returns how many lines were ever dropped.
func (l *PluginLogger) DroppedTotal() int64 { return l.total.Load() }

// Close reports what is still unreported and stops the summary timer. The
// plugin must not log after Close.
func (l *PluginLogger) Close() {
	l.mu.Lock()
	l.closed = true
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.mu.Unlock()
	l.flush()
}
