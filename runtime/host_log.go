package runtime

import (
	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/logging"
)

// The host is a hostfuncs.LogLimiter: log_write takes a record's line from
// the plugin's rate limit (one token per logging.TokenBytes) before it
// decodes the record, so that a record over the limit is dropped (and
// counted) unread.
var _ hostfuncs.LogLimiter = (*host)(nil)

func (h *host) LogAllow(size int) bool { return h.plog.AllowBytes(size) }

func (h *host) LogAllowed(in *hostfuncs.Instance, rec *hostfuncs.LogRecord, charged int) int32 {
	return h.plog.WriteAllowed(logging.CallOf(in), rec, charged)
}
