// Package scenario runs what a plugin builder writes with an *http.Client
// (NewRequestWithContext, Do, Get, Post, Head, redirects, cookies,
// timeouts, cancellation, bodies), for tests that compare the guest SDK's
// HTTPClient, in a plugin, with net/http's own client, natively.
package scenario

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"
)

// Scenario is one thing a plugin does with a client.
type Scenario struct {
	// Calls are made in turn with one client: "GET /path", "HEAD /path",
	// "POST /path body", "Get /path" (client.Get), "Head /path"
	// (client.Head), "Post /path body" (client.Post).
	Calls []string
	// Header is set on each request made with NewRequestWithContext.
	Header map[string]string
	// Jar gives the client a cookie jar.
	Jar bool
	// NoFollow: CheckRedirect returns http.ErrUseLastResponse.
	NoFollow bool
	// TimeoutMS is the client's Timeout; CtxTimeoutMS the context's.
	TimeoutMS, CtxTimeoutMS int
	// Canceled: the context is canceled before the calls.
	Canceled bool
	// CloseFirst: the body is closed before it is read (then read).
	CloseFirst bool
	// Close: the request's Close field.
	Close bool
}

// Result is what a call saw.
type Result struct {
	Status        int
	Body          string // the first 64 bytes
	BodyLen       int
	ContentLength int64
	Uncompressed  bool
	Header        map[string]string // a few headers a builder reads
	URL           string            // the final request's path and query
	Err           string
	Timeout       bool // err's Timeout() (url.Error)
	Deadline      bool // errors.Is(err, context.DeadlineExceeded)
	Canceled      bool // errors.Is(err, context.Canceled)
	ReadErr       string
	Cookies       int // the jar's cookies for the last URL
}

// Run makes s's calls against base with client (its Jar, Timeout and
// CheckRedirect set here).
func Run(ctx context.Context, client *http.Client, base string, s Scenario) []Result {
	if s.Jar {
		client.Jar, _ = cookiejar.New(nil)
	}
	if s.NoFollow {
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	client.Timeout = time.Duration(s.TimeoutMS) * time.Millisecond
	if s.CtxTimeoutMS > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(s.CtxTimeoutMS)*time.Millisecond)
		defer cancel()
	}
	if s.Canceled {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		cancel()
	}
	var out []Result
	for _, call := range s.Calls {
		verb, rest, _ := strings.Cut(call, " ")
		path, body, _ := strings.Cut(rest, " ")
		u := base + path
		var resp *http.Response
		var err error
		switch verb {
		case "Get":
			resp, err = client.Get(u)
		case "Head":
			resp, err = client.Head(u)
		case "Post":
			resp, err = client.Post(u, "text/plain", strings.NewReader(body))
		default:
			var rb io.Reader
			if body != "" {
				rb = strings.NewReader(body)
			}
			req, e := http.NewRequestWithContext(ctx, verb, u, rb)
			if e != nil {
				out = append(out, Result{Err: e.Error()})
				continue
			}
			for k, v := range s.Header {
				req.Header.Set(k, v)
			}
			req.Close = s.Close
			resp, err = client.Do(req)
		}
		r := Result{}
		if err != nil {
			r.Err = strings.ReplaceAll(err.Error(), base, "BASE")
			var ue *url.Error
			r.Timeout = errors.As(err, &ue) && ue.Timeout()
			r.Deadline = errors.Is(err, context.DeadlineExceeded)
			r.Canceled = errors.Is(err, context.Canceled)
		}
		if resp != nil {
			r.Status = resp.StatusCode
			r.ContentLength = resp.ContentLength
			r.Uncompressed = resp.Uncompressed
			r.Header = map[string]string{}
			for _, k := range []string{"Content-Type", "Content-Encoding", "Content-Length", "Location", "Set-Cookie", "X-Seen"} {
				if v := resp.Header.Get(k); v != "" {
					r.Header[k] = strings.ReplaceAll(v, base, "BASE")
				}
			}
			r.URL = resp.Request.URL.RequestURI()
			if s.CloseFirst {
				resp.Body.Close()
			}
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr != nil {
				r.ReadErr = rerr.Error()
			}
			r.BodyLen = len(b)
			r.Body = string(b[:min(len(b), 64)])
		}
		if client.Jar != nil {
			pu, _ := url.Parse(u)
			r.Cookies = len(client.Jar.Cookies(pu))
		}
		out = append(out, r)
	}
	return out
}
