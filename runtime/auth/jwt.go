package auth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/greenroom-dev/greenroom/runtime/config"
)

const (
	// jwksTimeout bounds one fetch of the JWKS, and a request's wait for
	// a refresh caused by an unknown key id.
	jwksTimeout = 10 * time.Second
	// jwksRefresh is how often the JWKS is fetched (Options.RefreshInterval
	// by default), and by a token naming an unknown key id
	// (unknownKIDRefresh).
	jwksRefresh = 15 * time.Minute
	// jwksRetry is how long after a periodic fetch that failed the next
	// is tried, doubling after each failure up to jwksRefresh
	// (Options.RetryInterval by default).
	jwksRetry = 30 * time.Second
	// maxJWKS is the largest JWKS response used, in bytes.
	maxJWKS = 1 << 20
	// cacheTTL is the longest a verified JWT is remembered (never past
	// its expiry); cacheMax bounds how many are.
	cacheTTL = time.Minute
	cacheMax = 10000
	// minRSABits is the shortest RSA modulus a key of the JWKS may have
	// to verify tokens (NIST SP 800-131A; jose refuses shorter ones too).
	minRSABits = 2048
	// maxCandidates is the most keys of the JWKS one token is tried
	// with: those that fit its alg (type, curve, the key's own alg and
	// use), found by its kid, or among the whole set when it has none.
	// A token that more keys fit is refused before any signature check:
	// anyone can send a token without a kid, and each key tried is a
	// signature check (10 000 Ed25519 keys fit in maxJWKS: half a second
	// of CPU per token). jose, Backstage's verifier, refuses by default a
	// token that more than one key fits; a few allow an issuer that sends
	// no kid to rotate its keys.
	maxCandidates = 4
)

// withdrawnKeyBound is the longest a key withdrawn from the JWKS may still
// let a token in, when the fetches succeed (docs/auth.md): the next
// periodic fetch is due at most jwksRefresh after the withdrawal, may
// first wait for a fetch under way (one at a time, so that an older set
// never replaces a newer one) and ends at most jwksTimeout after it
// starts; a token verified with the key just before the set was
// replaced is remembered for at most cacheTTL from when its check
// started. A fetch that fails keeps the previous set, and the key with
// it, until one succeeds (tried again after jwksRetry, doubling).
const withdrawnKeyBound = jwksRefresh + 2*jwksTimeout + cacheTTL

// jwtVerifier checks bearer JWTs: signature against the issuer's JWKS
// (jwksFetcher fetches it into a github.com/MicahParks/jwkset storage,
// unknownKIDRefresh refreshes it, and keyfunc picks the key), then the
// claims (github.com/golang-jwt/jwt/v5).
type jwtVerifier struct {
	cfg    *config.JWT
	typ    Type
	parser *jwt.Parser
	keys   keyfunc.Keyfunc
	store  *unknownKIDRefresh // keys's storage
	warn   *warner            // the JWKS's warnings
	now    func() time.Time
	log    *logrus.Logger
	cancel context.CancelFunc
	// unknownKID is how often the JWKS may be fetched again for a key id
	// it lacks.
	unknownKID time.Duration

	mu    sync.RWMutex
	cache map[[sha256.Size]byte]cachedJWT

	// tried counts the keys handed to the signature check (tests).
	tried atomic.Int64
}

type cachedJWT struct {
	p     *Principal
	until time.Time
}

func newJWTVerifier(cfg *config.JWT, opts Options) (*jwtVerifier, error) {
	v := &jwtVerifier{now: opts.Now, log: opts.Log}
	v.setClaims(cfg)
	client := &http.Client{Timeout: jwksTimeout}
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient
		client = &c
	}
	base := client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	// The URL may hold a password ("https://svc:pw@idp/jwks"): it is
	// logged without it. (The config registers it as a secret too.) Its
	// warnings are logged at most once a minute each (warner).
	warn := newWarner(opts.Log.WithField("jwks_url", redactedURL(cfg.JWKSURL)), opts.Now)
	v.warn = warn
	client.Transport = limitedTransport{base: base, max: maxJWKS}
	// A redirect's request would carry the JWKS URL as its Referer, and
	// with it a credential in its query (?api_key=...), to wherever the
	// redirect points.
	check := client.CheckRedirect
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		req.Header.Del("Referer")
		if plainRedirect(via[0].URL, req.URL) {
			return fmt.Errorf("refused a redirect of the JWKS fetch to plain http:// (host %s): whoever sits on the path could answer with keys of its own and forge any token; the JWKS must stay on https://", req.URL.Host)
		}
		if check != nil {
			return check(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}

	refresh := opts.RefreshInterval
	if refresh <= 0 {
		refresh = jwksRefresh
	}
	retry := opts.RetryInterval
	if retry <= 0 {
		retry = jwksRetry
	}
	unknownKID := opts.UnknownKIDInterval
	if unknownKID <= 0 {
		unknownKID = time.Second
	}
	v.unknownKID = unknownKID
	ctx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	// Refused here as the config refuses it, before keyfunc quotes the
	// parser's message (see config.ParseJWKSURL).
	if _, err := config.ParseJWKSURL(cfg.JWKSURL); err != nil {
		cancel()
		return nil, fmt.Errorf("auth.jwt.jwks_url: %w", err)
	}
	// The JWKS is kept in one storage, fetched here once and then only
	// by unknownKIDRefresh: every refresh (keepFresh), and for a key id
	// it lacks at most every unknownKID for all such ids together. Each
	// fetch reads the response once (jwksFetcher): the keys checked are
	// the keys used. Every failed fetch goes through failed, which counts
	// it.
	failures := new(atomic.Uint64)
	if _, err := url.ParseRequestURI(cfg.JWKSURL); err != nil {
		cancel()
		// The parser's errors quote the URL, password and all.
		return nil, &jwksURLError{msg: "auth.jwt.jwks_url: " + scrubURL(fmt.Sprintf("failed to parse given URL %q: %v", cfg.JWKSURL, err), cfg.JWKSURL), err: err}
	}
	fetcher := &jwksFetcher{url: cfg.JWKSURL, client: client, store: jwkset.NewMemoryStorage(), warn: warn, failures: failures}
	// The first fetch also ends when opts.Wait does (a newer reload, the
	// shutdown): then it is no failure of the identity provider's, and
	// the verifier is not made.
	abandoned := func() bool { return opts.Wait != nil && opts.Wait.Err() != nil }
	fctx, fcancel := context.WithTimeout(ctx, jwksTimeout)
	if opts.Wait != nil {
		defer context.AfterFunc(opts.Wait, fcancel)()
	}
	if err := fetcher.replace(fctx); err != nil && !abandoned() {
		fetcher.failed(err)
	}
	fcancel()
	if abandoned() {
		cancel()
		return nil, fmt.Errorf("auth.jwt.jwks_url: %w (%w)", ErrAbandoned, context.Cause(opts.Wait))
	}
	storage := &unknownKIDRefresh{Storage: fetcher.store, fetcher: fetcher, life: ctx, limit: rate.NewLimiter(rate.Every(unknownKID), 1), failures: failures}
	storage.reindex()
	v.store = storage
	go storage.keepFresh(refresh, retry)
	// Keys marked for encryption ("use": "enc") never verify a signature;
	// keys that say nothing of their use do.
	kf, err := keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: storage, UseWhitelist: []jwkset.USE{jwkset.UseSig, ""}})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("auth.jwt.jwks_url: %w", err)
	}
	v.keys = kf
	return v, nil
}

// plainRedirect reports whether a redirect of the JWKS fetch that began at
// first to target must be refused: target is plain http:// to another
// machine than this one, and first was not (https://, or http:// to
// loopback, which config check does not warn about). Go's client follows
// a redirect from https:// to http://, so an https:// jwks_url, which
// config check takes as safe, had its keys fetched in plain text, where
// whoever sits on the path could answer with keys of its own. A jwks_url
// that is itself plain http:// to another machine (config check warns at
// every start) may go on being redirected over http://.
func plainRedirect(first, target *url.URL) bool {
	if target.Scheme != "http" || config.IsLoopback(target.Hostname()) {
		return false
	}
	return first.Scheme != "http" || config.IsLoopback(first.Hostname())
}

// redactedURL returns raw with the password in its userinfo replaced by
// "xxxxx", as url.URL.Redacted does. A URL that does not parse loses its
// whole userinfo, up to the last '@' (a password may hold '/' or '@').
func redactedURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if at := strings.LastIndexByte(rest, '@'); ok && at >= 0 {
		return scheme + "://xxxxx@" + rest[at+1:]
	}
	return raw
}

// scrubURL replaces raw, as is and Go-quoted (%q), in msg with its
// redacted form.
func scrubURL(msg, raw string) string {
	red := redactedURL(raw)
	if red == raw {
		return msg
	}
	q, rq := strconv.Quote(raw), strconv.Quote(red)
	msg = strings.ReplaceAll(msg, q[1:len(q)-1], rq[1:len(rq)-1])
	return strings.ReplaceAll(msg, raw, red)
}

// jwksURLError is an error about the JWKS URL whose message shows the URL
// without its password; errors.Is and As still see the cause.
type jwksURLError struct {
	msg string
	err error
}

func (e *jwksURLError) Error() string { return e.msg }
func (e *jwksURLError) Unwrap() error { return e.err }

// errCritical refuses a JWT that names critical header parameters: RFC
// 7515 requires a verifier that does not understand one to refuse the
// token, and greenroom understands none.
var errCritical = errors.New("JWT has critical header parameters (crit), which greenroom does not support")

// typeError refuses a JWT whose header's typ says it is not an access or
// ID token (RFC 8725 3.11): a DPoP proof (dpop+jwt), a logout token
// (logout+jwt), a security event token (secevent+jwt) the issuer signed
// with the same keys, and carrying the same iss, aud and sub, is not a
// bearer credential.
type typeError struct {
	typ      string
	notAText bool // typ is not a JSON string
}

func (e *typeError) Error() string {
	if e.notAText {
		return "JWT type (typ) is not a string"
	}
	return fmt.Sprintf("JWT type (typ) %s is not an access or ID token's (accepted: none, JWT, at+jwt)", quoteField(e.typ))
}

// checkType refuses a header whose typ is present and is not "JWT" or
// "at+jwt" (RFC 9068), compared without regard to letter case and with
// or without "application/", as media types are (RFC 7515 4.1.9).
func checkType(header map[string]any) error {
	v, ok := header["typ"]
	if !ok {
		return nil
	}
	typ, ok := v.(string)
	if !ok {
		return &typeError{notAText: true}
	}
	t := typ
	if len(t) > len("application/") && strings.EqualFold(t[:len("application/")], "application/") {
		t = t[len("application/"):]
	}
	if strings.EqualFold(t, "JWT") || strings.EqualFold(t, "at+jwt") {
		return nil
	}
	return &typeError{typ: typ}
}

// keyfunc finds the key that verifies tok. A token without a kid when no
// key at all is known (the JWKS could not be fetched yet, or was empty)
// asks for the same rate-limited fetch an unknown kid does, so that an
// issuer that sends no kid is not refused until the next periodic fetch.
func (v *jwtVerifier) keyfunc(ctx context.Context) jwt.Keyfunc {
	inner := v.keys.KeyfuncCtx(ctx)
	return func(tok *jwt.Token) (any, error) {
		if _, ok := tok.Header["crit"]; ok {
			return nil, errCritical
		}
		// Before any key is looked up: a token of another type naming an
		// unknown kid does not fetch the JWKS.
		if err := checkType(tok.Header); err != nil {
			return nil, err
		}
		k, err := v.findKey(ctx, inner, tok)
		if err != nil {
			return k, err
		}
		k, err = ecdsaKeys(tok.Method.Alg(), k)
		if set, ok := k.(jwt.VerificationKeySet); ok {
			v.tried.Add(int64(len(set.Keys)))
		} else if err == nil && k != nil {
			v.tried.Add(1)
		}
		return k, err
	}
}

// findKey returns the key, or keys, that may verify tok: for a token
// without a kid, the keys of the set that fit its alg (candidates), at
// most maxCandidates of them; for one whose kid names more than one key,
// those of them that fit, as many at most; otherwise keyfunc's key.
func (v *jwtVerifier) findKey(ctx context.Context, inner jwt.Keyfunc, tok *jwt.Token) (any, error) {
	alg := tok.Method.Alg()
	kidv, hasKID := tok.Header[jwkset.HeaderKID]
	if !hasKID {
		if v.store.index().n == 0 {
			v.store.KeyRead(ctx, "") // fetches, unless fetched too recently
		}
		ix := v.store.index()
		fit := ix.noKID[alg]
		if fit.count > maxCandidates {
			e := &tooManyKeysError{alg: alg, count: fit.count}
			// The operator learns it, once a minute at most: an issuer
			// that sends no kid has all its tokens refused so.
			v.warn.warn(logrus.Fields{"alg": alg}, nil, fmt.Sprintf("refused a JWT without a kid: %d keys of the JWKS fit its algorithm, and a token without a kid is tried with at most %d; the issuer should name its key in the token's kid header", fit.count, maxCandidates))
			return nil, e
		}
		if fit.count == 0 {
			return nil, &tooManyKeysError{alg: alg, count: 0, held: ix.n}
		}
		return jwt.VerificationKeySet{Keys: slices.Clone(fit.keys)}, nil
	}
	k, err := inner(tok)
	// keyfunc takes the first key of the kid; a JWKS may hold more
	// (RFC 7517 4.5 allows one kid for keys of different types, and
	// a rotation may repeat one): every one of them that fits the
	// token's alg is tried, up to maxCandidates.
	if kid, ok := kidv.(string); ok {
		if named := v.store.index().byKID[kid]; len(named) > 1 {
			var set jwt.VerificationKeySet
			count := 0
			for _, e := range named {
				if e.fits(alg) {
					count++
					if count <= maxCandidates {
						set.Keys = append(set.Keys, e.key)
					}
				}
			}
			if count > maxCandidates {
				return nil, &tooManyKeysError{alg: alg, count: count, kid: kid, named: true}
			}
			if count > 0 {
				return set, nil
			}
		}
	}
	return k, err
}

// tooManyKeysError refuses a token that more than maxCandidates keys of
// the JWKS fit, or, without a kid, none of the held ones.
type tooManyKeysError struct {
	alg   string
	count int
	held  int // keys of the set, when count is 0
	kid   string
	named bool // the token names kid
}

func (e *tooManyKeysError) Error() string {
	if e.count == 0 {
		return fmt.Sprintf("JWT has no kid, and none of the %d keys of the JWKS fits its algorithm %s", e.held, quoteField(e.alg))
	}
	if e.named {
		return fmt.Sprintf("%d keys of the JWKS named %s fit JWT algorithm %s: a token is tried with at most %d", e.count, quoteField(e.kid), quoteField(e.alg), maxCandidates)
	}
	return fmt.Sprintf("JWT has no kid, and %d keys of the JWKS fit its algorithm %s: a token without a kid is tried with at most %d (the issuer should name its key in the token's kid header)", e.count, quoteField(e.alg), maxCandidates)
}

// ecdsaKeys keeps of k (a key, or a jwt.VerificationKeySet) what may
// verify a token of alg: for ES256, ES384 and ES512, no ECDSA key on
// another curve than P-256, P-384 and P-521 (RFC 7518 3.4). golang-jwt
// verifies with whatever ECDSA key it is given, so a JWKS key on P-256
// that names no alg verified an "ES512" token, its r and s padded to 66
// bytes; and the twin canonicalSum remembers as one with a verified
// token must verify with the key that verified it. A key of another type
// is left for golang-jwt to refuse.
func ecdsaKeys(alg string, k any) (any, error) {
	curve, ok := ecdsaCurves[alg]
	if !ok {
		return k, nil
	}
	want := curve.Params().Name
	fits := func(key any) bool {
		pub, ok := key.(*ecdsa.PublicKey)
		return !ok || pub.Curve.Params().Name == want
	}
	wrong := func(key any) error {
		return fmt.Errorf("JWT algorithm %s signs on %s, and the key of the JWKS is on %s (RFC 7518 3.4)", alg, want, key.(*ecdsa.PublicKey).Curve.Params().Name)
	}
	set, ok := k.(jwt.VerificationKeySet)
	if !ok {
		if !fits(k) {
			return nil, wrong(k)
		}
		return k, nil
	}
	var kept jwt.VerificationKeySet
	for _, key := range set.Keys {
		if fits(key) {
			kept.Keys = append(kept.Keys, key)
		}
	}
	if len(kept.Keys) == 0 && len(set.Keys) > 0 {
		return nil, wrong(set.Keys[0])
	}
	return kept, nil
}

func (v *jwtVerifier) close() { v.cancel() }

// setClaims makes v check tokens as cfg says, apart from its JWKS URL:
// algorithms, issuer, audience, leeway, the subject and admin claims and
// the principal type. It starts an empty cache of verified tokens.
func (v *jwtVerifier) setClaims(cfg *config.JWT) {
	c := *cfg
	v.cfg, v.typ, v.cache = &c, parseType(c.PrincipalType), map[[sha256.Size]byte]cachedJWT{}
	// Only the configured algorithms, which config validation limits to
	// asymmetric ones: "none" and HMAC never verify, so a token "signed"
	// with HS256 and the issuer's public key as the secret is refused
	// before any key is looked up.
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(c.Algorithms),
		jwt.WithIssuer(c.Issuer),
		jwt.WithAudience(c.Audience),
		jwt.WithLeeway(c.Leeway.D()),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(), // an iat later than now (past the leeway) is refused
		jwt.WithTimeFunc(v.now),
		// Numbers as written: a claim beyond float64's range (which
		// encoding/json refuses) does not make the token malformed; the
		// guest gets the payload itself and decodes it (docs/auth.md).
		jwt.WithJSONNumber(),
		// Each segment in the one base64url encoding of its bytes: with
		// the unused low bits of a last character set, a signature
		// decodes to the same bytes, so a token changed in its last
		// character still verified.
		jwt.WithStrictDecoding(),
	)
}

// withClaims returns a verifier that checks tokens as cfg says with v's
// keys: v's key set and its background refresh, which v.close stops, and
// so does the new verifier's close. Only one of the two may be closed.
func (v *jwtVerifier) withClaims(cfg *config.JWT) *jwtVerifier {
	n := &jwtVerifier{keys: v.keys, store: v.store, warn: v.warn, cancel: v.cancel, unknownKID: v.unknownKID, now: v.now, log: v.log}
	n.setClaims(cfg)
	return n
}

// unknownKIDRefresh is the JWKS storage JWTs are verified with. A key id
// the JWKS holds is answered from memory; one it lacks waits for a fetch
// of the JWKS that starts after the caller asked (at most
// jwtVerifier.unknownKID after the previous one), then is looked up
// again. All callers share the fetches, whatever key id they name: a
// flood of made-up key ids, which anyone can send, costs the issuer one
// fetch per interval and delays a key just rotated in by at most one
// interval plus a fetch. Each fetch runs on its own time limit, not on
// what a caller has left of its own.
type unknownKIDRefresh struct {
	jwkset.Storage // the keys held, never fetched on a miss
	// fetcher fetches the JWKS into the storage.
	fetcher *jwksFetcher
	life    context.Context // the verifier's
	limit   *rate.Limiter
	rounds  singleflight.Group
	// one lets one fetch run at a time, the periodic ones (keepFresh)
	// and those for unknown key ids (rounds): the set a fetch installs is
	// never replaced by that of a fetch that started before it.
	one sync.Mutex
	// failures counts the fetches that failed (the storage's error
	// handler).
	failures *atomic.Uint64
	// keys is the index of the set held, built anew after each fetch
	// (reindex): a token's kid is looked up in a map, and the keys a
	// token without one may be tried with are found once per fetch, not
	// per token (the storage's reads scan the set and copy it whole:
	// some 10 MB per token naming a kid of a set of 10 000 keys).
	keys atomic.Pointer[keyIndex]
}

// keyIndex indexes a snapshot of the JWKS's keys.
type keyIndex struct {
	all []jwkset.JWK // KeyReadAll's answer; never modified
	n   int          // len(all)
	// first is each kid's first key, which keyfunc verifies a token
	// naming it with (as the storage's KeyRead gives it).
	first map[string]jwkset.JWK
	// byKID is each kid's keys, in the set's order.
	byKID map[string][]indexedKey
	// noKID is, for each algorithm, the keys a token without a kid may
	// be tried with: at most maxCandidates of them, and how many fit.
	noKID map[string]candidates
}

type candidates struct {
	keys  []jwt.VerificationKey
	count int
}

// indexedKey is a public key of the set and what of its JWK decides
// which tokens it may verify.
type indexedKey struct {
	key jwt.VerificationKey
	alg string
	use jwkset.USE
}

// verifyAlgs are the algorithms a token may be verified with (those
// config validation allows).
var verifyAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// fits reports whether e may verify a token of alg: its own alg, when it
// names one, is alg; its use is a signature's or unsaid (keyfunc's
// checks); and its type is alg's: RSA for RS* and PS*, EC on alg's curve
// for ES* (RFC 7518 3.4), Ed25519 for EdDSA, as jose picks keys.
func (e indexedKey) fits(alg string) bool {
	if (e.alg != "" && e.alg != alg) || (e.use != jwkset.UseSig && e.use != "") {
		return false
	}
	switch k := e.key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		c, ok := ecdsaCurves[alg]
		return ok && k.Curve.Params().Name == c.Params().Name
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// reindex indexes the set the storage holds now.
func (s *unknownKIDRefresh) reindex() {
	all, err := s.Storage.KeyReadAll(context.Background())
	if err != nil {
		all = nil
	}
	ix := &keyIndex{all: all, n: len(all), first: map[string]jwkset.JWK{}, byKID: map[string][]indexedKey{}, noKID: map[string]candidates{}}
	for _, j := range all {
		m := j.Marshal()
		key := j.Key()
		if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
			key = pk.Public()
		}
		if _, ok := ix.first[m.KID]; !ok {
			ix.first[m.KID] = j
		}
		e := indexedKey{key: key, alg: m.ALG.String(), use: m.USE}
		ix.byKID[m.KID] = append(ix.byKID[m.KID], e)
		for _, alg := range verifyAlgs {
			if !e.fits(alg) {
				continue
			}
			c := ix.noKID[alg]
			if c.count < maxCandidates {
				c.keys = append(c.keys, key)
			}
			c.count++
			ix.noKID[alg] = c
		}
	}
	s.keys.Store(ix)
}

// index returns the index of the set held.
func (s *unknownKIDRefresh) index() *keyIndex {
	if ix := s.keys.Load(); ix != nil {
		return ix
	}
	return &keyIndex{}
}

// read looks keyID up in the set held.
func (s *unknownKIDRefresh) read(keyID string) (jwkset.JWK, error) {
	if j, ok := s.index().first[keyID]; ok {
		return j, nil
	}
	return jwkset.JWK{}, fmt.Errorf("%w: kid %q", jwkset.ErrKeyNotFound, keyID)
}

// KeyReadAll returns the set held, which the caller must not modify.
func (s *unknownKIDRefresh) KeyReadAll(context.Context) ([]jwkset.JWK, error) {
	return s.index().all, nil
}

// round is what a fetch of the JWKS did: when it started, and whether it
// replaced the set.
type round struct {
	started time.Time
	ok      bool
}

func (s *unknownKIDRefresh) KeyRead(ctx context.Context, keyID string) (jwkset.JWK, error) {
	jwk, err := s.read(keyID)
	if !errors.Is(err, jwkset.ErrKeyNotFound) {
		return jwk, err
	}
	asked := time.Now()
	for {
		ch := s.rounds.DoChan("", s.fetch)
		select {
		case res := <-ch:
			jwk, err = s.read(keyID)
			// A fetch that was already under way when the caller asked
			// may predate its key: one more, which starts after. A
			// token without a kid (keyfunc asks for "") needs only some
			// key: once any is held, it tries them.
			r, ok := res.Val.(round)
			if errors.Is(err, jwkset.ErrKeyNotFound) && ok && r.started.Before(asked) && (keyID != "" || s.index().n == 0) {
				continue
			}
			return jwk, err
		case <-ctx.Done():
			return jwkset.JWK{}, fmt.Errorf("%w %q: %w", jwkset.ErrKeyNotFound, keyID, ctx.Err())
		}
	}
}

// fetch waits for the rate limiter and fetches the JWKS (fetchNow); a
// limiter that would make it wait longer than jwksTimeout returns at
// once with an error (the key stays unknown).
func (s *unknownKIDRefresh) fetch() (any, error) {
	ctx, cancel := context.WithTimeout(s.life, jwksTimeout)
	defer cancel()
	if err := s.limit.Wait(ctx); err != nil {
		return nil, err
	}
	return s.fetchNow()
}

// fetchNow fetches the JWKS once the fetch under way, if any, has ended,
// and returns its round.
func (s *unknownKIDRefresh) fetchNow() (any, error) {
	s.one.Lock()
	defer s.one.Unlock()
	failed := s.failures.Load()
	started := time.Now()
	fctx, fcancel := context.WithTimeout(s.life, jwksTimeout)
	defer fcancel()
	s.fetcher.fetch(fctx) // logs and counts a failure
	s.reindex()
	return round{started: started, ok: s.failures.Load() == failed}, nil
}

// keepFresh fetches the JWKS every `every` until the verifier closes,
// the first time `every` after now (the set was fetched at start), or
// retry after now when that fetch failed. A fetch that fails is tried again after retry, then after twice as long
// each time it fails again, up to `every`: an issuer briefly unreachable
// at the time of a fetch does not leave a key it withdrew verifying for
// a whole interval more.
func (s *unknownKIDRefresh) keepFresh(every, retry time.Duration) {
	next, backoff := time.Now().Add(every), retry
	if s.failures.Load() > 0 { // the fetch at start failed
		next, backoff = time.Now().Add(min(retry, every)), min(2*retry, every)
	}
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-s.life.Done():
			t.Stop()
			return
		case <-t.C:
		}
		asked := time.Now()
		if r, _ := s.fetchNow(); r.(round).ok {
			next, backoff = asked.Add(every), retry
			continue
		}
		next = time.Now().Add(min(backoff, every))
		backoff = min(2*backoff, every)
	}
}

// ecdsaCurves is the curve each ECDSA algorithm signs on (RFC 7518 3.4).
var ecdsaCurves = map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}

// canonicalSum returns the digest a verified token is remembered by, and
// the algorithm its header names (golang-jwt's reading: "alg", exactly).
// An ECDSA signature (r, s) has a twin, (r, n-s), that verifies the same
// token, and most issuers do not sign with the lower s only, so neither
// can be refused: the twins are remembered as one, by the SHA-256 of the
// token whose signature has the lower s. That is sum itself, the SHA-256
// of token, for a token that has it already and for every token that is
// not an ES256, ES384 or ES512 one, or whose signature is not in the one
// base64url encoding of the size its algorithm gives (golang-jwt refuses
// those), or whose s is not one a signature can have (0, or n or more).
// Two tokens have one canonical sum only when they have the same header
// and payload and the same r, and their s are s and n-s: both verify, or
// neither (the key is on the algorithm's curve, ecdsaKeys).
func canonicalSum(token []byte, sum [sha256.Size]byte) ([sha256.Size]byte, string) {
	dot := bytes.IndexByte(token, '.')
	last := bytes.LastIndexByte(token, '.')
	if dot < 0 || last == dot {
		return sum, ""
	}
	strict := base64.RawURLEncoding.Strict()
	hjs, err := strict.DecodeString(string(token[:dot]))
	if err != nil {
		return sum, ""
	}
	var header map[string]any
	if json.Unmarshal(hjs, &header) != nil {
		return sum, ""
	}
	alg, _ := header["alg"].(string)
	curve, ok := ecdsaCurves[alg]
	if !ok {
		return sum, alg
	}
	size := (curve.Params().BitSize + 7) / 8
	sig, err := strict.DecodeString(string(token[last+1:]))
	if err != nil || len(sig) != 2*size {
		return sum, alg
	}
	n := curve.Params().N
	sv := new(big.Int).SetBytes(sig[size:])
	if sv.Sign() == 0 || sv.Cmp(n) >= 0 || sv.Cmp(new(big.Int).Rsh(n, 1)) <= 0 {
		return sum, alg
	}
	sv.Sub(n, sv).FillBytes(sig[size:])
	h := sha256.New()
	h.Write(token[:last+1])
	h.Write([]byte(base64.RawURLEncoding.EncodeToString(sig)))
	var c [sha256.Size]byte
	h.Sum(c[:0])
	return c, alg
}

// cached returns the principal of the verified token remembered by key,
// if it has not expired.
func (v *jwtVerifier) cached(key [sha256.Size]byte, now time.Time) *Principal {
	v.mu.RLock()
	c, ok := v.cache[key]
	v.mu.RUnlock()
	if ok && now.Before(c.until) {
		return c.p
	}
	return nil
}

func (v *jwtVerifier) verify(ctx context.Context, token []byte, sum [sha256.Size]byte) (*Principal, error) {
	now := v.now()
	if p := v.cached(sum, now); p != nil {
		return p, nil
	}
	// The token's ECDSA twin may have been verified: it is remembered by
	// the canonical sum of both.
	csum, calg := canonicalSum(token, sum)
	if csum != sum {
		if p := v.cached(csum, now); p != nil {
			return p, nil
		}
	}
	raw := string(token)

	ctx, cancel := context.WithTimeout(ctx, jwksTimeout)
	defer cancel()
	claims := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(raw, claims, v.keyfunc(ctx))
	if err == nil || errors.Is(err, jwt.ErrTokenInvalidClaims) {
		// Signed by the issuer: golang-jwt turns a date past int64 seconds
		// into one billions of years ago, so a far-future nbf or iat
		// passed its check and a far-future exp read as expired.
		if e := dateRange(claims); e != nil {
			return nil, e
		}
	}
	if err != nil {
		return nil, v.refusal(tok, err)
	}
	sub, _ := lookupClaim(claims, v.cfg.SubjectClaim).(string)
	if sub == "" {
		return nil, refuse(invalidCredential, "token has no %s claim with a string value (auth.jwt.subject_claim)", v.cfg.SubjectClaim)
	}
	_, payload, _ := strings.Cut(raw, ".")
	payload, _, _ = strings.Cut(payload, ".")
	js, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(payload, "="))
	// golang-jwt decodes only the payload's first JSON value: one that
	// goes on after it ({claims}{"sub":"admin"}) verified, and the guest,
	// whose SDK reads the claims as one JSON object (RFC 7519 7.2),
	// got none.
	if err != nil || !json.Valid(js) {
		return nil, refuse(invalidCredential, "malformed token payload: it is not one JSON object")
	}
	// Member names must be unique (RFC 7519 4, 5.3). golang-jwt and the
	// guest SDK take the last of two, other JSON readers the first, so a
	// token carrying "sub" or "alg" twice reads as two different tokens
	// to greenroom and to a plugin, a proxy or the issuer's own logs.
	// A signed one is refused, whichever object it is in.
	head, _, _ := strings.Cut(raw, ".")
	hjs, _ := base64.RawURLEncoding.DecodeString(strings.TrimRight(head, "="))
	if name, ok := duplicateName(hjs); ok {
		return nil, refuse(invalidCredential, "JWT header has the member %s twice", quoteField(name))
	}
	if name, ok := duplicateName(js); ok {
		return nil, refuse(invalidCredential, "JWT payload has the member %s twice (claim names must be unique)", quoteField(name))
	}
	// The issuer is auth.jwt.issuer, which the token's iss was checked
	// against.
	p := &Principal{Type: v.typ, Subject: sub, Claims: js, Admin: v.isAdmin(claims), Credential: "jwt", key: jwtKey(v.cfg.Issuer, sub)}

	// Remember the result until the token expires (with the leeway the
	// check allows), and never longer than cacheTTL, so a key the issuer
	// withdraws stops working within withdrawnKeyBound.
	until := now.Add(cacheTTL)
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		if e := exp.Add(v.cfg.Leeway.D()); e.Before(until) {
			until = e
		}
	}
	v.mu.Lock()
	if len(v.cache) >= cacheMax {
		for k, e := range v.cache {
			if !now.Before(e.until) {
				delete(v.cache, k)
			}
		}
		if len(v.cache) >= cacheMax {
			clear(v.cache)
		}
	}
	// By its canonical sum, so that its ECDSA twin finds it, and by its
	// own when that differs, so that the token itself is found at once;
	// both name one entry. (A canonical sum is used only when the header
	// read for it names the algorithm the token was verified with.)
	e := cachedJWT{p: p, until: until}
	v.cache[sum] = e
	if csum != sum && calg == tok.Method.Alg() {
		v.cache[csum] = e
	}
	v.mu.Unlock()
	return p, nil
}

// duplicateName returns the first member name that one object of the JSON
// text js, at any depth, has twice, compared as decoded ("sub" and
// "\u0073ub" are one name). Text that is not JSON has none: its validity
// is checked apart.
func duplicateName(js []byte) (string, bool) {
	type object struct {
		names map[string]struct{}
		key   bool // the next string is a member name
	}
	var stack []*object // nil for an array
	d := json.NewDecoder(bytes.NewReader(js))
	d.UseNumber()
	for {
		t, err := d.Token()
		if err != nil {
			return "", false
		}
		top := (*object)(nil)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := t.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, &object{names: map[string]struct{}{}, key: true})
				continue
			case '[':
				stack = append(stack, nil)
				continue
			}
			stack = stack[:len(stack)-1] // '}' or ']': a value of the one around it ended
			if len(stack) > 0 {
				top = stack[len(stack)-1]
			} else {
				top = nil
			}
		case string:
			if top != nil && top.key {
				if _, dup := top.names[t]; dup {
					return t, true
				}
				top.names[t] = struct{}{}
				top.key = false
				continue
			}
		}
		if top != nil {
			top.key = true // a member's value ended
		}
	}
}

// maxNumericDate is the last second of year 9999, the latest exp, nbf or
// iat a token may carry.
const maxNumericDate = 253402300799

// dateRange refuses a token whose exp, nbf or iat is a number outside
// [-maxNumericDate, maxNumericDate]; golang-jwt checks their types.
func dateRange(claims jwt.MapClaims) *Error {
	for _, name := range []string{"exp", "nbf", "iat"} {
		n, ok := claims[name].(json.Number)
		if !ok {
			continue
		}
		// golang-jwt ignores Float64's error: 1e400 would be +Inf.
		if f, err := n.Float64(); err != nil || !(math.Abs(f) <= maxNumericDate) {
			return refuse(invalidCredential, "JWT %s claim %s is out of range (a date up to the year 9999)", name, truncateClaim(n.String()))
		}
	}
	return nil
}

// refusal explains a failed verification for the audit log. golang-jwt's
// errors never include the token.
func (v *jwtVerifier) refusal(tok *jwt.Token, err error) *Error {
	alg := ""
	if tok != nil && tok.Header != nil {
		alg, _ = tok.Header["alg"].(string)
	}
	var te *typeError
	var many *tooManyKeysError
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refuse(invalidCredential, "malformed JWT")
	case alg != "" && !slices.Contains(v.cfg.Algorithms, alg):
		return refuse(invalidCredential, "JWT algorithm %s is not allowed (auth.jwt.algorithms: %s)", quoteField(alg), strings.Join(v.cfg.Algorithms, ", "))
	case errors.Is(err, errCritical):
		return refuse(invalidCredential, "%v", errCritical)
	case errors.As(err, &te):
		return refuse(invalidCredential, "%v", te)
	case errors.As(err, &many):
		return refuse(invalidCredential, "%v", many)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		kid := ""
		if tok != nil {
			kid, _ = tok.Header["kid"].(string)
		}
		if errors.Is(err, jwkset.ErrKeyNotFound) {
			// Not even in the JWKS fetched after the token came
			// (unknownKIDRefresh), or no fetch could be waited for.
			return refuse(invalidCredential, "JWT signing key %s is not in the issuer's JWKS (fetched again for an unknown key at most every %s)", quoteField(kid), v.unknownKID)
		}
		return refuse(invalidCredential, "JWT cannot be verified: %s", errorText(err))
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refuse(invalidCredential, "JWT signature is invalid")
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse("token expired", "JWT expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return refuse("token not valid yet", "JWT not valid yet (nbf)")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return refuse(invalidCredential, "JWT issuer is not %q", v.cfg.Issuer)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refuse(invalidCredential, "JWT audience does not include %q", v.cfg.Audience)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return refuse(invalidCredential, "JWT lacks a required claim: %s", errorText(err))
	}
	return refuse(invalidCredential, "JWT refused: %s", errorText(err))
}

// isAdmin applies auth.jwt.admin_claim: the claim is true, or equals
// admin_value, or is an array that contains it.
func (v *jwtVerifier) isAdmin(claims jwt.MapClaims) bool {
	if v.cfg.AdminClaim == "" {
		return false
	}
	switch c := lookupClaim(claims, v.cfg.AdminClaim).(type) {
	case bool:
		return c
	case string:
		return v.cfg.AdminValue != "" && c == v.cfg.AdminValue
	case []any:
		return v.cfg.AdminValue != "" && slices.Contains(c, any(v.cfg.AdminValue))
	}
	return false
}

// lookupClaim returns the claim called name; when there is none and name
// has dots, it walks nested objects ("realm_access.roles"). A claim whose
// own name has dots (a namespaced "https://example.com/roles") is found
// first.
func lookupClaim(claims map[string]any, name string) any {
	if v, ok := claims[name]; ok {
		return v
	}
	var cur any = claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

// limitedTransport caps response bodies: a JWKS larger than max fails to
// decode instead of filling memory.
type limitedTransport struct {
	base http.RoundTripper
	max  int64
}

func (t limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: t.max}
	return resp, nil
}

// jwksFetcher fetches the JWKS at url into store, as jwkset's HTTP
// storage did (the same request, status check and error messages), but
// reading the response once: jwkset decoded the body and built each key
// after readJWKS had done the same to check them, twice the work per
// fetch (a 1 MiB set of 10 000 keys is fetched up to once a second), and
// the keys checked were not always the keys used: a body with two "keys"
// members had the second checked, and jwkset's decoder merged its keys
// into the first's, private members and all.
type jwksFetcher struct {
	url      string
	client   *http.Client
	store    jwkset.Storage
	warn     *warner
	failures *atomic.Uint64
	// fetched is set once a fetch succeeded: until then no JWT verifies.
	fetched atomic.Bool
}

// fetch fetches the JWKS and replaces the keys held with its keys. A
// failure keeps the keys held, is counted, logged (at most once a minute,
// warner) and returned.
func (f *jwksFetcher) fetch(ctx context.Context) error {
	err := f.replace(ctx)
	if err != nil {
		f.failed(err)
	}
	return err
}

// failed counts and logs a failed fetch.
func (f *jwksFetcher) failed(err error) {
	f.failures.Add(1)
	f.warn.warn(nil, err, "could not fetch the JWKS; JWTs signed with keys not fetched before are refused until a fetch succeeds")
}

func (f *jwksFetcher) replace(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
	if err != nil {
		return fmt.Errorf("failed to create HTTP request for JWK Set refresh: %w", err)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return fmt.Errorf("failed to perform HTTP request for JWK Set refresh: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %d", jwkset.ErrInvalidHTTPStatusCode, resp.StatusCode)
	}
	keys, err := readJWKS(resp.Body, f.warn)
	if err != nil {
		return fmt.Errorf("failed to decode JWK Set response: %w", err)
	}
	if err := f.store.KeyReplaceAll(ctx, keys); err != nil {
		return fmt.Errorf("failed to delete all keys from storage: %w", err)
	}
	f.fetched.Store(true)
	return nil
}

// readJWKS reads a JWKS response body and returns the keys to verify
// with: those jwkset can build (NewJWKFromMarshal, as its HTTP storage
// builds them) and supports. A key it cannot build (missing or malformed
// members) is ignored with a warning rather than failing the whole set:
// RFC 7517 section 5 says to ignore such keys. So is every key that
// carries private key material (an RSA, EC or OKP key's private members,
// a symmetric key's "k"): such a key is public to anyone who can fetch
// the JWKS, so anyone could sign tokens with it, and verifying with its
// public half would accept them all. It is refused with a warning, as
// jose (Backstage's verifier) refuses a private key for verification. A
// key whose key_ops (RFC 7517 4.3) does not list "verify" is ignored
// too, without a warning (an issuer may publish its encryption keys): it
// may not verify a signature. So is an RSA key whose modulus is shorter
// than minRSABits, and an Ed25519 key of small order, with a warning;
// and a member of "keys" that is not a JWK object, silently. A body that
// could not be read whole, or is not JSON, fails; so does one whose
// first value has no "keys" (null, {}: errNotJWKS).
func readJWKS(body io.Reader, warn *warner) ([]jwkset.JWK, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		// Nothing of a body that could not be read whole (one over
		// maxJWKS, or cut off) is used: a set at its start still
		// decoded, so a JWKS of any size was taken as long as its keys
		// came first.
		return nil, err
	}
	// Read as jwkset read it (a json.Decoder's first value into a
	// struct: "Keys" is "keys", the last of two wins, nothing after the
	// set is read).
	var doc struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&doc); err != nil {
		// Not a JWKS: the error jwkset's decoder gave it, as before.
		var set jwkset.JWKSMarshal
		if jerr := json.NewDecoder(bytes.NewReader(b)).Decode(&set); jerr != nil {
			return nil, jerr
		}
		return nil, err
	}
	if doc.Keys == nil {
		// null, {}, {"keys": null}: no JWKS (RFC 7517 5: "keys" is
		// required), which jwkset took for an empty one, and every key
		// held was dropped: an error page of JSON logged everybody out.
		return nil, errNotJWKS
	}
	keys := make([]jwkset.JWK, 0, len(*doc.Keys))
	for _, raw := range *doc.Keys {
		var m jwkset.JWKMarshal
		if err := json.Unmarshal(raw, &m); err != nil {
			continue
		}
		// A key whose key_ops leaves out "verify" (an encryption key, or
		// an empty list) may verify nothing, as one published with "use":
		// "enc"; greenroom only verifies, so it is not kept (jose refuses
		// it too).
		if m.KEYOPS != nil && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
			continue
		}
		if hasPrivateMembers(m) {
			warn.warn(logrus.Fields{"kid": m.KID}, nil, "ignoring a key of the JWKS that carries private key material: anyone who can fetch the JWKS could sign tokens with it; publish only the public key")
			continue
		}
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{Private: true}, jwkset.JWKValidateOptions{})
		switch {
		case errors.Is(err, jwkset.ErrUnsupportedKey):
			continue // jwkset's storage skipped it too
		case err != nil:
			warn.warn(logrus.Fields{"kid": m.KID}, err, "ignoring a key of the JWKS that cannot be used")
			continue
		}
		if pub, ok := jwk.Key().(*rsa.PublicKey); ok && pub.N.BitLen() < minRSABits {
			warn.warn(logrus.Fields{"kid": m.KID}, nil, fmt.Sprintf("ignoring an RSA key of the JWKS whose modulus is %d bits, under %d: a key that short can be factored, and whoever did could sign any token; publish a key of at least %d bits", pub.N.BitLen(), minRSABits, minRSABits))
			continue
		}
		if pub, ok := jwk.Key().(ed25519.PublicKey); ok && smallOrder(pub) {
			warn.warn(logrus.Fields{"kid": m.KID}, nil, "ignoring an Ed25519 key of the JWKS that is a point of small order: with it, a signature anyone can write verifies any token")
			continue
		}
		keys = append(keys, jwk)
	}
	return keys, nil
}

// p25519 is the field prime of edwards25519, 2^255-19.
var p25519 = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))

// smallOrderY are the y coordinates of the eight points of edwards25519
// whose order divides 8: 0 (order 4), 1 (the identity), p-1 (order 2) and
// the two of the four points of order 8. With such a point as the public
// key A, crypto/ed25519 (which, unlike libsodium, does not refuse it)
// accepts for any message a signature anyone can write: with the
// identity, R = the identity and S = 0 verify every token.
var smallOrderY = func() []*big.Int {
	y8, _ := new(big.Int).SetString("5fc536d880238b13933c6d305acdfd5f098eff289f4c345b027b2c28f95e826", 16)
	return []*big.Int{big.NewInt(0), big.NewInt(1), new(big.Int).Sub(p25519, big.NewInt(1)), y8, new(big.Int).Sub(p25519, y8)}
}()

// smallOrder reports whether pub encodes a point of small order (one of
// smallOrderY, in any encoding: the sign bit either way, y past p).
func smallOrder(pub ed25519.PublicKey) bool {
	if len(pub) != ed25519.PublicKeySize {
		return false
	}
	le := bytes.Clone(pub)
	le[31] &= 0x7f // the sign of x
	slices.Reverse(le)
	y := new(big.Int).SetBytes(le)
	y.Mod(y, p25519)
	for _, s := range smallOrderY {
		if y.Cmp(s) == 0 {
			return true
		}
	}
	return false
}

// hasPrivateMembers reports whether a JWK carries private key material
// (RFC 7518 sections 6.2.2, 6.3.2 and 6.4; RFC 8037 section 2).
func hasPrivateMembers(m jwkset.JWKMarshal) bool {
	return m.D != "" || m.P != "" || m.Q != "" || m.DP != "" || m.DQ != "" || m.QI != "" || len(m.OTH) > 0 || m.K != ""
}

// limitedBody reads at most left bytes of a body: a body of exactly
// that many reads whole, one byte more fails with errJWKSTooLarge.
type limitedBody struct {
	io.ReadCloser
	left int64
}

var errJWKSTooLarge = fmt.Errorf("JWKS response is larger than %d bytes (1 MiB): it is not used, the keys fetched before stay", maxJWKS)

// errNotJWKS is the error of a JWKS response whose first JSON value is
// not an object with a "keys" member (null, {}), which jwkset reads as a
// set of no keys.
var errNotJWKS = errors.New(`JWKS response has no "keys" member (RFC 7517 section 5): it is not used, the keys fetched before stay`)

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errJWKSTooLarge
	}
	// One byte past the limit is asked for, so that a body of exactly
	// left bytes ends with io.EOF and a longer one is told from it.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	if int64(n) > b.left {
		n, b.left = int(b.left), -1
		return n, errJWKSTooLarge
	}
	b.left -= int64(n)
	return n, err
}

// maxQuoted is how many bytes of a field of the token's header (alg,
// kid) a refusal's reason quotes; maxErrorText, how many of a library's
// error message, which may quote such fields itself.
const (
	maxQuoted    = 64
	maxErrorText = 256
)

// quoteField quotes s, a value the caller chose, for a refusal's reason:
// Go-quoted (%q), so that no newline or other control character reaches
// the log line, and at most maxQuoted bytes of it, cut on a character's
// boundary and followed by how long it was when cut.
func quoteField(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%q... (%d bytes, cut)", cutAtRune(s, maxQuoted), len(s))
}

// cutAtRune returns at most the first n bytes of s, cut on a
// character's boundary.
func cutAtRune(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// errorText is err's message for a refusal's reason: on one line (the
// lines errors.Join makes are joined with "; ", other control and
// non-printing characters, U+2028 or a bidi override, escaped as %q
// escapes them) and at most maxErrorText bytes, "..." marking
// a cut. golang-jwt's and keyfunc's messages may quote the token's header.
func errorText(err error) string {
	var b strings.Builder
	for _, r := range strings.ReplaceAll(err.Error(), "\n", "; ") {
		piece := string(r)
		if !strconv.IsPrint(r) {
			q := strconv.QuoteRune(r)
			piece = q[1 : len(q)-1]
		}
		// A character, or its escape, that would take the text past
		// maxErrorText is not written: the cut comes before it.
		if b.Len()+len(piece) > maxErrorText {
			b.WriteString("...")
			break
		}
		b.WriteString(piece)
	}
	return b.String()
}

// truncateClaim shortens a claim's text quoted in an error.
func truncateClaim(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
