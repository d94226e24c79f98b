// Package auth verifies the credentials callers present to greenroom —
// static bearer tokens from the config and JWTs from the organisation's
// identity provider — and turns them into a Principal. It knows nothing of
// HTTP frameworks: the server hands it the Authorization header and gets a
// Principal, or an error saying why not.
//
// Nothing in this package logs or returns a credential: errors carry a
// reason fit for the audit log, principals name their credential
// ("token:ci", "jwt"), never its value.
package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime/config"
)

// Type is the kind of principal. The values are those of the request
// envelope (docs/abi.md).
type Type uint8

const (
	TypeNone    Type = 0
	TypeUser    Type = 1
	TypeService Type = 2
)

func (t Type) String() string {
	switch t {
	case TypeUser:
		return "user"
	case TypeService:
		return "service"
	}
	return "none"
}

func parseType(s string) Type {
	if s == "user" {
		return TypeUser
	}
	return TypeService
}

// Principal is a verified caller. Principals of static tokens are shared
// between requests: never modify one.
type Principal struct {
	Type    Type
	Subject string
	// Claims is the JSON object of a JWT's verified claims; nil for static
	// tokens.
	Claims []byte
	// Admin allows the admin API.
	Admin bool
	// Credential names the credential for logs: "token:<name>" or "jwt".
	Credential string
	// plugins restricts the principal to these plugins; nil allows all.
	plugins map[string]bool
	// key is what Key returns.
	key string
}

// Key identifies the principal for what the server keeps per principal
// (the rate limit's budget, its share of the request budget): its kind
// of credential and, for a static
// token, its subject; for a JWT, the issuer and the subject. A JWT whose
// subject is a static token's, or an earlier issuer's, is another
// principal: keyed by the subject alone, it spent that principal's
// budget. Static tokens of one subject are one principal (the operator
// named them so), and so are all the JWTs of one issuer and subject,
// whatever their bytes.
func (p *Principal) Key() string { return p.key }

// staticKey and jwtKey make principals' keys, each unambiguous: the kind
// comes first, and the issuer, a JWT's first part, is counted.
func staticKey(subject string) string { return "token:" + subject }

func jwtKey(issuer, subject string) string {
	return "jwt:" + strconv.Itoa(len(issuer)) + ":" + issuer + ":" + subject
}

// AllowsPlugin reports whether the principal may call plugin id.
func (p *Principal) AllowsPlugin(id string) bool {
	return p.plugins == nil || p.plugins[id]
}

// Plugins returns the plugins the principal is restricted to, sorted, or
// nil when it may call every plugin.
func (p *Principal) Plugins() []string {
	if p.plugins == nil {
		return nil
	}
	out := make([]string, 0, len(p.plugins))
	for id := range p.plugins {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// ErrNoCredential: the request carries no Authorization header.
var ErrNoCredential = errors.New("no credential")

// Error is a credential that was refused.
type Error struct {
	// Reason says why, for the audit log. It never holds the credential.
	Reason string
	// Public is what the client is told: short, and no more precise than
	// it needs to be to act on it.
	Public string
}

func (e *Error) Error() string { return e.Reason }

func refuse(public, format string, args ...any) *Error {
	return &Error{Public: public, Reason: fmt.Sprintf(format, args...)}
}

const invalidCredential = "invalid credential"

// Options tune an Authenticator; the zero value is production's.
type Options struct {
	Log *logrus.Logger
	// HTTPClient fetches the JWKS. A response over 1 MiB is not used,
	// whatever client is given. Default: a client with a 10s timeout.
	HTTPClient *http.Client
	// Now is the clock JWTs are checked against, and the JWKS's warnings
	// are logged at most once a minute by.
	Now func() time.Time
	// RefreshInterval is how often the JWKS is fetched (default 15m).
	RefreshInterval time.Duration
	// RetryInterval is how long after a periodic fetch of the JWKS that
	// failed the next is tried, doubling after each failure up to
	// RefreshInterval (default 30s).
	RetryInterval time.Duration
	// UnknownKIDInterval is the least time between two fetches of the
	// JWKS caused by tokens whose key id is unknown (default 1s), so a
	// flood of such tokens cannot hammer the identity provider.
	UnknownKIDInterval time.Duration
	// Wait, when set, bounds the wait for the JWKS's first fetch (a
	// reload's context): when it ends before the fetch has answered, the
	// fetch is abandoned and New and Renew return ErrAbandoned, having
	// built nothing, so that a newer reload does not wait for it (up to
	// 10 s) before its own credentials apply.
	Wait context.Context
}

// ErrAbandoned: Options.Wait ended before the JWKS's first fetch answered.
var ErrAbandoned = errors.New("the first fetch of the JWKS was abandoned")

// Authenticator verifies credentials. It is safe for concurrent use.
type Authenticator struct {
	// tokens maps the SHA-256 of each static token to it. The presented
	// token is hashed and looked up: whatever timing the lookup shows is
	// about digests, which tell nothing about a token's bytes, and no
	// comparison ever runs on the token itself or depends on its length.
	// The candidate's digest is then compared in constant time.
	tokens map[[sha256.Size]byte]*staticToken
	jwt    *jwtVerifier
	// jwtCfg is the [auth.jwt] jwt was built from; handedOver is set when
	// Renew gave jwt to a successor, which closes it instead.
	jwtCfg     config.JWT
	handedOver atomic.Bool
}

type staticToken struct {
	sum [sha256.Size]byte
	p   *Principal
}

// New builds an Authenticator from the [auth] config. With [auth.jwt] it
// fetches the JWKS once before returning (a failure is logged, not
// returned: tokens are refused until a later fetch succeeds) and keeps it
// fresh in the background until Close.
func New(cfg *config.Auth, opts Options) (*Authenticator, error) {
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &Authenticator{tokens: map[[sha256.Size]byte]*staticToken{}}
	for name, t := range cfg.Tokens {
		if t == nil || t.Token == "" {
			continue
		}
		p := &Principal{Type: parseType(t.Type), Subject: t.Subject, Admin: t.Admin, Credential: "token:" + name, key: staticKey(t.Subject)}
		if len(t.Plugins) > 0 {
			p.plugins = map[string]bool{}
			for _, id := range t.Plugins {
				p.plugins[id] = true
			}
		}
		sum := sha256.Sum256([]byte(t.Token))
		a.tokens[sum] = &staticToken{sum: sum, p: p}
	}
	if cfg.JWT != nil {
		v, err := newJWTVerifier(cfg.JWT, opts)
		if err != nil {
			return nil, err
		}
		a.jwt, a.jwtCfg = v, *cfg.JWT
	}
	return a, nil
}

// Renew returns the Authenticator for cfg that replaces a (a config
// reload). When cfg's [auth.jwt] names the JWKS URL a's does, the new one
// keeps a's keys instead of fetching the JWKS again: a reload while the
// identity provider is down or slow must not refuse every JWT until its
// next refresh, and one that changes the other JWT settings (issuer,
// audience, algorithms, claims) applies them at once. When nothing of
// [auth.jwt] changed it keeps a's cache of verified tokens too. a stays
// usable until it is closed, which then leaves the keys to its successor.
func (a *Authenticator) Renew(cfg *config.Auth, opts Options) (*Authenticator, error) {
	if !a.keepsKeys(cfg) {
		return New(cfg, opts)
	}
	tokensOnly := *cfg
	tokensOnly.JWT = nil
	n, err := New(&tokensOnly, opts)
	if err != nil {
		return nil, err
	}
	n.jwt, n.jwtCfg = a.jwt, a.jwtCfg
	if !reflect.DeepEqual(*cfg.JWT, a.jwtCfg) {
		n.jwt, n.jwtCfg = a.jwt.withClaims(cfg.JWT), *cfg.JWT
	}
	a.handedOver.Store(true)
	return n, nil
}

// keepsKeys reports whether Renew(cfg) keeps a's JWKS keys: cfg's
// [auth.jwt] names the same JWKS URL as a's, whose keys a still owns.
func (a *Authenticator) keepsKeys(cfg *config.Auth) bool {
	return a != nil && a.jwt != nil && cfg.JWT != nil && cfg.JWT.JWKSURL == a.jwtCfg.JWKSURL && !a.handedOver.Load()
}

// Interim returns what decides requests while Renew(cfg) builds a new JWT
// verifier, which fetches the JWKS first (up to 10 s), because cfg names
// another JWKS URL: cfg's static tokens, and JWTs checked as cfg says with
// a's keys, which a keeps (its Close stops their refresh). It returns nil
// when Renew(cfg) fetches nothing. A reload stores it so that a static
// token it revokes, or a JWT its new issuer, audience or algorithms
// refuse, is refused from its start, not once the fetch answered (an
// audit).
func (a *Authenticator) Interim(cfg *config.Auth, opts Options) *Authenticator {
	if a == nil || cfg.JWT == nil || a.keepsKeys(cfg) {
		return nil
	}
	tokensOnly := *cfg
	tokensOnly.JWT = nil
	n, err := New(&tokensOnly, opts)
	if err != nil {
		return nil
	}
	if a.jwt != nil && !a.handedOver.Load() {
		n.jwt, n.jwtCfg = a.jwt.withClaims(cfg.JWT), *cfg.JWT
		n.handedOver.Store(true) // borrowed: n's Close leaves the keys to a
	}
	return n
}

// JWKSFetched reports whether the JWKS a's JWTs are verified with was
// fetched at least once: false when [auth.jwt] is set and no fetch of its
// jwks_url has succeeded yet, so that every JWT is refused until one does
// (a reload to an identity provider that is down, or a wrong URL).
func (a *Authenticator) JWKSFetched() bool {
	return a.jwt == nil || a.jwt.store.fetcher.fetched.Load()
}

// Configured reports whether any credential can succeed: a static token
// or a JWT issuer is configured.
func (a *Authenticator) Configured() bool { return len(a.tokens) > 0 || a.jwt != nil }

// Close stops the background JWKS refresh.
func (a *Authenticator) Close() {
	if a.jwt != nil && !a.handedOver.Load() {
		a.jwt.close()
	}
}

var bearer = []byte("bearer")

// maxJWT is the longest JWT verified, in bytes. golang-jwt decodes a
// token's header and claims before it checks the signature, so anyone
// could make each request decode as much JSON as the request head holds
// (server.header_limit, up to 1 MiB: 150 000 claims took 14 MB and 30 ms
// of CPU). An identity provider's tokens are a few KiB; a thousand
// group ids of 36 characters make one of some 51 KiB.
const maxJWT = 64 << 10

// Authenticate verifies the value of an Authorization header. It returns
// ErrNoCredential for an empty header, an *Error for a refused credential.
func (a *Authenticator) Authenticate(ctx context.Context, authorization []byte) (*Principal, error) {
	h := trimOWS(authorization)
	if len(h) == 0 {
		return nil, ErrNoCredential
	}
	scheme, token, _ := bytes.Cut(h, []byte(" "))
	if !bytes.EqualFold(scheme, bearer) {
		return nil, refuse("unsupported authorization scheme: send the header Authorization: Bearer TOKEN", "authorization scheme is not Bearer")
	}
	token = trimOWS(token)
	if len(token) == 0 {
		return nil, refuse(invalidCredential, "empty bearer token")
	}
	sum := sha256.Sum256(token)
	if st, ok := a.tokens[sum]; ok && subtle.ConstantTimeCompare(st.sum[:], sum[:]) == 1 {
		return st.p, nil
	}
	if a.jwt != nil && bytes.Count(token, []byte(".")) == 2 {
		// Go's base64 decoder skips line breaks, so a token with a \r or
		// \n inside a part decoded to the same bytes and verified: one
		// token, many spellings. A JWS in compact form is base64url and
		// dots only.
		if i := bytes.IndexFunc(token, func(r rune) bool { return !isBase64URL(r) && r != '.' }); i >= 0 {
			return nil, refuse(invalidCredential, "malformed JWT: a character that is not base64url at byte %d", i)
		}
		if len(token) > maxJWT {
			return nil, refuse(invalidCredential, "JWT of %d bytes is longer than %d, the longest verified", len(token), maxJWT)
		}
		return a.jwt.verify(ctx, token, sum)
	}
	return nil, refuse(invalidCredential, "unknown token")
}

// trimOWS trims RFC 9110's optional white space, spaces and tabs, from
// both ends of b, as a header value and the token in it may be padded.
// Nothing else is trimmed: bytes.TrimSpace also took away Unicode's white
// space (U+00A0, U+0085, U+2028, U+3000, ...), which a header carries as
// the bytes they are, so "Bearer TOKEN\u00a0" was TOKEN: one credential
// in many spellings, which a proxy or firewall in front that refuses
// TOKEN (a leaked one it blocks) let through. A configured token never
// begins or ends with any white space (config check), so such a spelling
// matches none.
func trimOWS(b []byte) []byte { return bytes.Trim(b, " \t") }

// isBase64URL reports whether r is of the base64url alphabet (RFC 4648
// section 5), without padding.
func isBase64URL(r rune) bool {
	return 'A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '_'
}

// GenerateToken returns a new random static token: 32 bytes from the
// operating system's CSPRNG, base64url, with a prefix that secret scanners
// can match.
func GenerateToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return "greenroom_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}
