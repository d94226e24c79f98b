package runtime

import (
	"context"
	"errors"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
	"github.com/greenroom-dev/greenroom/runtime/config"
	"github.com/greenroom-dev/greenroom/runtime/logging"
	"github.com/greenroom-dev/greenroom/runtime/urlreader"
)

// host gives one plugin its host services. It sees only that plugin's
// config table and grants. One host serves every version of a plugin, so
// its rate limit survives reloads.
type host struct {
	id     string
	config map[string]string
	log    *logging.PluginLogger
	rlog   *logrus.Entry           // the runtime's own lines about this plugin
	urls   *urlreader.PluginReader // nil: urlreader not granted
}

var _ hostfuncs.Host = (*host)(nil)

func newHost(id string, pc *config.Plugin, log *logrus.Logger, reader *urlreader.Reader, dropReport time.Duration) (*host, error) {
	pl, err := logging.NewPluginLogger(log, id, logging.PluginOptions{
		Level:       pc.LogLevel,
		Rate:        pc.Limits.LogRate,
		Burst:       pc.Limits.LogBurst,
		ReportEvery: dropReport,
	})
	if err != nil {
		return nil, err
	}
	return &host{
		id:     id,
		config: pc.FlatConfig(),
		log:    pl,
		rlog:   log.WithField("plugin", id),
		urls:   reader.For(id, pc.Capabilities.URLReader),
	}, nil
}

func (h *host) close() { h.log.Close() }

func (h *host) Config(key string) (string, bool) {
	v, ok := h.config[key]
	return v, ok
}

func (h *host) LogEnabled(level int32) bool { return h.log.Enabled(level) }

func (h *host) Log(in *hostfuncs.Instance, rec *hostfuncs.LogRecord) int32 {
	return h.log.Write(logging.CallOf(in), rec)
}

// urlCodes maps the URL reader's failures to ABI error codes.
var urlCodes = map[urlreader.Kind]int32{
	urlreader.Invalid:     hostfuncs.ErrInvalid,
	urlreader.Denied:      hostfuncs.ErrDenied,
	urlreader.NotModified: hostfuncs.ErrNotModified,
	urlreader.TooLarge:    hostfuncs.ErrTooLarge,
	urlreader.Timeout:     hostfuncs.ErrTimeout,
	urlreader.Failed:      hostfuncs.ErrFailed,
}

func (h *host) ReadURL(ctx context.Context, in *hostfuncs.Instance, req *hostfuncs.URLRequest) (*hostfuncs.URLResponse, error) {
	if h.urls == nil {
		return nil, hostfuncs.Errorf(hostfuncs.ErrDenied,
			"capability urlreader is not granted to plugin %s: the operator grants it with [plugins.%s.capabilities] urlreader = [\"host/path-prefix\", ...]", h.id, h.id)
	}
	r := urlreader.Request{URL: req.URL, Method: req.Method, Header: req.Header}
	if req.Deadline > 0 {
		r.Deadline = time.Unix(0, req.Deadline)
	}
	start := time.Now()
	resp, err := h.urls.Read(ctx, r)
	if h.rlog.Logger.IsLevelEnabled(logrus.DebugLevel) {
		f := logrus.Fields{"url": req.URL, "method": req.Method, "took_ms": time.Since(start).Milliseconds()}
		if in.RequestID != "" {
			f["request_id"] = in.RequestID
		}
		if in.Task != "" {
			f["task"] = in.Task
		}
		if err != nil {
			f["error"] = err.Error()
		} else {
			f["status"], f["bytes"] = resp.Status, len(resp.Body)
		}
		h.rlog.WithFields(f).Debug("url read")
	}
	if err != nil {
		var ue *urlreader.Error
		if errors.As(err, &ue) {
			return nil, &hostfuncs.Error{Code: urlCodes[ue.Kind], Msg: ue.Msg}
		}
		return nil, err
	}
	return &hostfuncs.URLResponse{
		Status:       resp.Status,
		URL:          resp.URL,
		ETag:         resp.ETag,
		LastModified: resp.LastModified,
		Header:       resp.Header,
		Body:         resp.Body,
	}, nil
}
