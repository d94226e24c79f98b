package urlreader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// hopTransport reads through p as the guest SDK's HTTPClient does: each
// request one Hop read, its Via the chain of requests Go's client made
// before it (Request.Response), so that the client follows redirects and
// its CheckRedirect decides.
type hopTransport struct{ p *PluginReader }

func (h hopTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	req := Request{URL: r.URL.String(), Method: r.Method, Hop: true}
	for prev := r.Response; prev != nil && prev.Request != nil; prev = prev.Request.Response {
		req.Via = append([]string{prev.Request.URL.String()}, req.Via...)
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			req.Header = append(req.Header, [2]string{k, v})
		}
	}
	resp, err := h.p.Read(r.Context(), req)
	if err != nil {
		return nil, err
	}
	hdr := http.Header{}
	for _, kv := range resp.Header {
		hdr.Add(kv[0], kv[1])
	}
	return &http.Response{StatusCode: resp.Status, Header: hdr, Body: io.NopCloser(bytes.NewReader(resp.Body)), Request: r}, nil
}

// get reads url with a client of p's hop reads and its body.
func get(c *http.Client, u string, header ...string) (*http.Response, string, error) {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, "", err
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

// A plugin's client that follows redirects itself (Hop reads) gets each
// redirect as a response, and its CheckRedirect decides (ErrUseLastResponse
// hands it the 3xx); each next hop is checked as the first request and as
// a redirect the runtime follows: grant, allow and address rules, at most
// 5 redirects, no Referer, errors naming the redirect.
func TestHopReadsFollowedByThePluginsClient(t *testing.T) {
	internal := newServer(t, false, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "internal secrets") })
	front := redirector(t, internal, internal)
	p := reader(t, localConfig, mapResolver{"docs.test": {"127.0.0.1"}}, front).For("p", []string{"docs.test"})
	base := "http://docs.test:" + front.port()
	c := &http.Client{Transport: hopTransport{p}}
	if resp, body, err := get(c, base+"/chain?n=5"); err != nil || body != "end of chain" || resp.Request.URL.String() != base+"/chain?n=0" {
		t.Fatalf("5 redirects: %v %q", err, body)
	}
	if ref := front.referer.Load(); ref != nil {
		t.Errorf("a hop carried Referer %q", ref)
	}
	_, _, err := get(c, base+"/chain?n=6")
	wantErr(t, err, Failed, "redirect from "+base+"/chain?n=1: "+base+"/chain?n=0: stopped after 5 redirects")
	_, _, err = get(c, base+"/to-elsewhere")
	wantErr(t, err, Denied, "redirect from "+base+"/to-elsewhere: https://evil.example/: refused: not granted to plugin p")
	loose := reader(t, localConfig, mapResolver{"docs.test": {"127.0.0.1"}}, front).For("p", localGrants)
	_, _, err = get(&http.Client{Transport: hopTransport{loose}}, base+"/to-loopback")
	wantErr(t, err, Denied, "redirect from "+base+"/to-loopback to http://127.0.0.1:"+internal.port()+"/", "address 127.0.0.1 is loopback")
	if internal.hits.Load() != 0 {
		t.Errorf("internal server reached through a redirect")
	}

	// The plugin's CheckRedirect decides.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, body, err := get(c, base+"/chain?n=2")
	if err != nil || resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/chain?n=1" || !strings.Contains(body, "Found") {
		t.Errorf("ErrUseLastResponse: %v %+v %q", err, resp, body)
	}
	stop := errors.New("no further")
	c.CheckRedirect = func(_ *http.Request, via []*http.Request) error {
		if len(via) >= 2 {
			return stop
		}
		return nil
	}
	if _, _, err := get(c, base+"/chain?n=5"); !errors.Is(err, stop) {
		t.Errorf("CheckRedirect's error: %v", err)
	}
}

// What the runtime does about integration tokens on a redirect it follows
// holds on one the plugin's client follows: a redirect whose URL quotes
// the token for another host is refused, and the hops after one that
// carried a token lose their Set-Cookie (a session the token may have
// opened on the way).
func TestHopReadsKeepTokenRules(t *testing.T) {
	const tok = "key-0123456789abcdefghij"
	var plain *server
	plain = newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "SESSION=from-the-token-hop")
		fmt.Fprint(w, "landed")
	})
	withToken := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, "http://plain.test:"+plain.port()+"/landing", http.StatusFound)
		case "/leakother":
			http.Redirect(w, r, "http://plain.test:"+plain.port()+"/landing?t="+url.QueryEscape(r.Header.Get("X-Api-Key")), http.StatusFound)
		}
	})
	cfg := `integrations.generic = [{ host = "token.test", token = "` + tok + `", header = "X-Api-Key" }]
reading.allow = [{ host = "token.test", scheme = "http" }, { host = "plain.test", scheme = "http" }]`
	res := mapResolver{"token.test": {"127.0.0.1"}, "plain.test": {"127.0.0.1"}}
	p := reader(t, cfg, res, withToken, plain).For("p", []string{"token.test", "plain.test"})
	c := &http.Client{Transport: hopTransport{p}}
	resp, body, err := get(c, "http://token.test:"+withToken.port()+"/away")
	if err != nil || body != "landed" || resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("after a hop with the token: %v %q, Set-Cookie %q", err, body, resp.Header.Values("Set-Cookie"))
	}
	if resp, _, err := get(c, "http://plain.test:"+plain.port()+"/landing"); err != nil || resp.Header.Get("Set-Cookie") == "" {
		t.Errorf("a read without a token lost its Set-Cookie: %v", err)
	}
	_, _, err = get(c, "http://token.test:"+withToken.port()+"/leakother")
	wantErr(t, err, Denied, "redirect from http://token.test:"+withToken.port()+"/leakother: refused: the redirect's URL quotes an integration token sent on this read")
	if strings.Contains(err.Error(), tok) {
		t.Errorf("the refusal quotes the token: %v", err)
	}
}
