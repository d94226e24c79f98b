package greenroom

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// PrincipalType says what kind of caller made a request.
type PrincipalType string

const (
	// PrincipalNone: the request carried no credential valid for this
	// plugin. Only public routes (see Public) are called without one.
	PrincipalNone PrincipalType = "none"
	// PrincipalUser: a person, authenticated by the organisation's
	// identity provider (a JWT) or a user token.
	PrincipalUser PrincipalType = "user"
	// PrincipalService: a script or service, authenticated by a static
	// token (or a service JWT).
	PrincipalService PrincipalType = "service"
)

// Principal is who is calling: the runtime has verified the caller's
// credential before the plugin runs, and the plugin sees the result, never
// the credential (the Authorization header and cookies are removed).
type Principal struct {
	Type PrincipalType
	// Subject identifies the caller, e.g. "user:default/jane" or
	// "service:ci"; empty for PrincipalNone.
	Subject string
	// Claims are the verified claims of the caller's JWT; nil for static
	// tokens and for PrincipalNone. Numbers are float64, as encoding/json
	// decodes them, except integers beyond 2^53 (which float64 would
	// round) and numbers beyond float64's range: those are json.Number,
	// as written in the token. Each call of PrincipalFrom returns a fresh
	// map.
	Claims map[string]any
}

type principalKey struct{}

// PrincipalFrom returns who made request r. Outside a greenroom request it
// returns a PrincipalNone principal, except for requests prepared with
// WithPrincipal in native tests.
func PrincipalFrom(r *http.Request) Principal {
	if r == nil {
		return Principal{Type: PrincipalNone}
	}
	ctx := r.Context()
	if c := requestContextFrom(ctx); c != nil {
		return c.meta.principal.decode()
	}
	if p, ok := ctx.Value(principalKey{}).(Principal); ok {
		if p.Type == "" {
			p.Type = PrincipalNone
		}
		// A fresh map each call, as in the runtime, which decodes the
		// claims again: a handler changing them changes no later call's.
		if p.Claims != nil {
			p.Claims = cloneValue(p.Claims).(map[string]any)
		}
		return p
	}
	return Principal{Type: PrincipalNone}
}

// cloneValue copies the maps and slices of a decoded JSON value, at any
// depth.
func cloneValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = cloneValue(e)
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, e := range t {
			s[i] = cloneValue(e)
		}
		return s
	}
	return v
}

func (d principalData) decode() Principal {
	var p Principal
	switch d.typ {
	case principalUser:
		p.Type = PrincipalUser
	case principalService:
		p.Type = PrincipalService
	default:
		return Principal{Type: PrincipalNone}
	}
	p.Subject = d.subject
	if d.claims != "" {
		dec := json.NewDecoder(strings.NewReader(d.claims))
		dec.UseNumber()
		var m map[string]any
		if dec.Decode(&m) == nil && !dec.More() {
			p.Claims = numbers(m).(map[string]any)
		}
	}
	return p
}

// numbers turns the json.Numbers of a value decoded with UseNumber into
// float64, as encoding/json decodes them, except integers float64 cannot
// hold exactly (beyond 2^53: a numeric user id, say), which stay
// json.Number, their digits intact.
func numbers(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = numbers(e)
		}
	case []any:
		for i, e := range t {
			t[i] = numbers(e)
		}
	case json.Number:
		if !strings.ContainsAny(string(t), ".eE") {
			if i, err := t.Int64(); err != nil || i > 1<<53 || i < -(1<<53) {
				return t
			}
		}
		f, err := t.Float64()
		if err != nil {
			return t // out of float64's range
		}
		return f
	}
	return v
}

// Public asks the runtime to serve the given routes without a credential.
// Call it from an init function, like Handle:
//
//	greenroom.Public("/ping", "/healthz")
//
// A route is an exact path relative to the plugin's mount ("/ping" is
// /api/<plugin>/ping, for every method; "/ping/" and "/ping/x" are other
// routes), as the client sends it, without query or wildcards.
//
// The plugin only asks: a route becomes public when the operator also
// lists it in the plugin's public_routes. A route the operator did not
// list stays protected (the runtime logs that once). A public route is
// called by anyone; PrincipalFrom tells whether the caller sent a valid
// credential.
//
// A malformed route panics (the plugin then fails to load, with the reason
// in its log). Calls after initialization are refused and logged.
func Public(paths ...string) {
	for _, p := range paths {
		if err := checkRoute(p); err != nil {
			panic(fmt.Sprintf("greenroom.Public: %v", err))
		}
		if err := hostPublic(p); err != nil {
			fmt.Fprintf(os.Stderr, "greenroom.Public(%q): %v\n", p, err)
		}
	}
}

// checkRoute applies the runtime's rule for public routes, so that a bad
// route fails in native tests too.
func checkRoute(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("route %q must start with /", p)
	case len(p) > 1024:
		return fmt.Errorf("route of %d bytes is longer than 1024", len(p))
	case strings.ContainsAny(p, "?#*{}"):
		// {name} and {path...} are ServeMux's wildcards, not the
		// runtime's: such a route would be public only as written.
		return fmt.Errorf("route %q must be an exact path, without ?, #, * or a {wildcard}", p)
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] == 0x7f {
			return fmt.Errorf("route %q must not contain spaces or control characters", p)
		}
	}
	return nil
}
